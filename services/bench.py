"""Benchmarks (issue 8): the engine, the pipeline, deadlines, recovery and drills, each beside its
target, printed as one table and written as JSON with the machine and the exact settings.

    python -m services.bench [--smoke] [--only NAME ...] [--out FILE] [--profile DIR]

Kafka phases each start a fresh local Apache Kafka (LocalStack: temporary data dir, free loopback
ports, an app id of their own) and the real worker (`python -m services.cli worker`). Baselines run
in the same phase on the same broker. Sizes are bounded: nothing here offers load to anything but
127.0.0.1, and every wait has a deadline. A missed target is printed as missed; a phase that could
not measure its figure prints none and the command exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import asyncio
import cProfile
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from services.settings import REPO_ROOT, Settings, get_settings

NAMES = ("engine", "pipeline", "deadlines", "recovery", "drills")
BUSIEST_SCENARIO = REPO_ROOT / "playbooks" / "drill" / "scenarios" / "busy-night.yaml"
# Bench-only topics for the baselines (not part of the service, so not in the catalog).
BASELINE_TOPICS = {"aiokafka": ("bench.aiokafka.in", "bench.aiokafka.out"),
                   "faust": ("bench.faust.in", "bench.faust.out")}
# One worker per core unless YINGJI_WORKERS says otherwise: the phases start them and wait until each
# holds its partitions before any traffic, so no worker joins while records flow.
BENCH_WORKERS = get_settings().workers if "workers" in get_settings().model_fields_set else 0
from services.worker.root import TABLE_NAME  # noqa: E402 - Faust names its changelog <app id>-<table>-changelog


@dataclass(frozen=True)
class Sizes:
    engine_reports: int = 10_000
    pipeline_incidents: int = 20_000
    latency_rate: float = 200.0
    latency_seconds: float = 30.0
    light_rate: float = 100.0  # below the worker's capacity: how long a decision takes when nothing queues
    light_seconds: float = 20.0
    open_obligations: int = 100_000
    deadline_window_s: float = 60.0
    recovery_incidents: int = 100_000
    drill_seconds: float = 3.0


FULL = Sizes()
SMOKE = Sizes(engine_reports=1_000, pipeline_incidents=300, latency_rate=50.0, latency_seconds=4.0,
              light_rate=20.0, light_seconds=2.0,
              open_obligations=2_000, deadline_window_s=10.0, recovery_incidents=2_000, drill_seconds=0.5)


@dataclass
class Row:
    name: str
    figure: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class Context:
    sizes: Sizes
    smoke: bool
    work: Path
    profile_dir: Path | None
    rows: list[Row] = field(default_factory=list)
    seed: str = "changelog"  # how `deadlines` and `recovery` fill the worker (see section 3)
    pipeline_rate: float | None = None  # incidents/s measured by `pipeline`, used to pace `--seed produce`


# ---------------------------------------------------------------------------------------------
# small helpers


def say(message: str) -> None:
    """Progress on stderr; the table goes to stdout."""
    sys.stderr.write(f"bench: {time.strftime('%H:%M:%S')} {message}\n")
    sys.stderr.flush()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a live process so far (/proc), or nan."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


class PySpy:
    """`py-spy record` of one process for the length of a `with` block (raw collapsed stacks)."""

    def __init__(self, ctx: Context, pid: int | None, name: str):
        self.cmd = None
        if ctx.profile_dir is not None and pid is not None:
            exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            out = ctx.profile_dir / f"{name}.txt"
            self.cmd = [exe, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--output", str(out),
                        "--nonblocking"]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "PySpy":
        if self.cmd and Path(self.cmd[0]).exists():
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            _stop_group(self.proc, signal.SIGINT, timeout=30)


# ---------------------------------------------------------------------------------------------
# generated reports: all 52 types, mixed facts and flags


def generate_reports(n: int, *, plan, now: datetime, prefix: str, seed: int = 8) -> list:
    """n reports cycling through every type of table 2.3.6 (by id or Chinese name), facts from none to
    past the 特别重大 thresholds, flags, streets and key areas mixed; deterministic for a seed."""
    from topics.models import Facts, Flags, Location, ReportFacts

    rng = random.Random(seed)
    types = plan.table_types
    streets = list(plan.streets)
    out = []
    for i in range(n):
        itype = types[i % len(types)]
        scale = rng.choice([0, 0, 0, 1, 1, 2, 3])  # none, minor, serious, catastrophic
        facts = Facts(
            deaths=rng.choice([[0], [0, 1, 2], [3, 5, 9], [10, 30, 40]][scale]),
            injuries=rng.choice([[0], [1, 5], [10, 40], [60, 120]][scale]),
            serious_injuries=rng.choice([[0], [0, 2], [10, 30], [50, 100]][scale]),
            evacuated=rng.choice([[0], [0, 30], [100, 3000], [10000, 50000]][scale]),
            direct_loss_yuan=rng.choice([[0], [1e4, 5e5], [1e7, 5e7], [1e8, 5e8]][scale]),
            magnitude=rng.choice([None, None, 4.2, 5.5, 6.5]) if itype.grading_family == "earthquake" else None,
        )
        flags = Flags(sensitive=rng.random() < 0.1, major_event=rng.random() < 0.05,
                      multi_agency=rng.random() < 0.2, may_escalate=rng.random() < 0.1,
                      foreign_involved=rng.random() < 0.03)
        location = Location(street=rng.choice([*streets, None]),
                            key_area=rng.choice([[], [], [], ["城市副中心"], ["行政办公区"], ["人员密集场所"]]))
        received = now - timedelta(seconds=rng.randint(0, 60))
        asserted = rng.random() < 0.05
        out.append(ReportFacts(
            report_id=f"{prefix}{i:07d}", type=itype.id if i % 2 else itype.name,
            occurred_at=received - timedelta(minutes=rng.randint(1, 30)), received_at=received,
            location=location, facts=facts, flags=flags,
            asserted_grade=rng.choice(["一般", "较大"]) if asserted else None,
            asserted_by="区应急办" if asserted else None, source="bench",
        ))
    return out


def reported(report, accepted_at: datetime):
    from topics.models import IncidentReported

    return IncidentReported(id=report.report_id, incident_id=report.report_id, report=report, accepted_at=accepted_at)


# ---------------------------------------------------------------------------------------------
# 1. engine, 5. drills: in-process


WARM_PASSES = 5


def bench_engine(ctx: Context) -> None:
    from playbooks.engine import decide
    from playbooks.plan import load_plan

    plan = load_plan()
    now = _now()
    reports = generate_reports(ctx.sizes.engine_reports, plan=plan, now=now, prefix="e-")
    prof = cProfile.Profile() if ctx.profile_dir else None
    if prof:
        prof.enable()
    # Passes over the same reports. The first decides each report as never seen (cold: nearly every
    # generated report differs in what the rules read, so the engine's memo rarely helps). The others
    # decide them again (warm): a report alike to one seen before in all but its ids and times, as
    # reports of the same type and place with the same facts are. The target row is the median warm
    # pass (one pass is a third of a second; on this shared machine one pass ranged 26,000-46,000/s);
    # the cold pass is its own row.
    passes = []
    grades: dict[str, int] = {}
    for _ in range(1 + WARM_PASSES):
        grades = {}
        start = time.perf_counter()
        for report in reports:
            grade = decide(report, plan, now).grade.value
            grades[grade] = grades.get(grade, 0) + 1
        passes.append(time.perf_counter() - start)
    if prof:
        prof.disable()
        prof.dump_stats(str(ctx.profile_dir / "engine.prof"))
    from playbooks.memo import DECISIONS, RULES

    cold, *warms = (len(reports) / t for t in passes)
    warm = statistics.median(warms)
    ctx.rows.append(Row("engine.decisions", warm, "decisions/s", ">= 50000", warm >= 50_000, {
        "reports": len(reports), "types": len({plan.find_type(r.type).id for r in reports}),
        "warm_passes": len(warms), "figure": "median warm pass", "warm_min": round(min(warms)),
        "warm_max": round(max(warms)), "cold_pass_decisions_per_s": round(cold),
        "memo_entries": {"decisions": len(DECISIONS), "rules": len(RULES)},
        "grades": grades, "function": "playbooks.engine.decide", "process": "in-process, 1 thread"}))
    ctx.rows.append(Row("engine.decisions_first_seen", cold, "decisions/s", "", None, {
        "reports": len(reports), "figure": "first pass: each report decided as never seen before",
        "function": "playbooks.engine.decide", "process": "in-process, 1 thread"}))


def bench_drills(ctx: Context) -> None:
    from playbooks.drill.evaluation import evaluate
    from playbooks.drill.scenario import load_scenario
    from playbooks.plan import load_plan

    plan = load_plan()
    scenario = load_scenario(BUSIEST_SCENARIO, plan)
    sim_hours = (scenario.end - scenario.start).total_seconds() / 3600
    prof = cProfile.Profile() if ctx.profile_dir else None
    if prof:
        prof.enable()
    runs, start = 0, time.perf_counter()
    while runs == 0 or time.perf_counter() - start < ctx.sizes.drill_seconds:
        evaluate(scenario, plan, run=f"bench{runs}")
        runs += 1
    elapsed = time.perf_counter() - start
    if prof:
        prof.disable()
        prof.dump_stats(str(ctx.profile_dir / "drills.prof"))
    rate = runs * sim_hours / elapsed
    ctx.rows.append(Row("drills.sim_hours", rate, "sim-h/s", ">= 1000", rate >= 1000, {
        "scenario": BUSIEST_SCENARIO.name, "injects": len(scenario.injects), "sim_hours_per_run": sim_hours,
        "runs": runs, "wall_s": round(elapsed, 3), "function": "playbooks.drill.evaluation.evaluate"}))


# ---------------------------------------------------------------------------------------------
# the stack of a Kafka phase


def _stack_class():
    from services.local.stack import LocalStack

    class BenchStack(LocalStack):
        """LocalStack whose worker gets this phase's app id and JSON logs."""

        @property
        def env(self) -> dict[str, str]:
            return {**super().env, "YINGJI_APP_ID": self.settings.app_id, "YINGJI_LOG_JSON": "true"}

    return BenchStack


class Phase:
    """A fresh broker (temp dir, free ports) and, on request, the worker, for one benchmark."""

    def __init__(self, ctx: Context, name: str):
        from services.local.kafka import free_port, free_port_run

        self.ctx = ctx
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=ctx.work))
        self.run = uuid.uuid4().hex[:8]
        self.settings = Settings(
            bootstrap_servers="", data_dir=self.dir, kafka_port=free_port(), kafka_controller_port=free_port(),
            api_port=free_port(), worker_web_port=free_port_run(4), app_id=f"bench-{name}-{self.run}", log_json=True,
            workers=BENCH_WORKERS)
        self.log_path = self.dir / "stack.log"
        self.log: IO[bytes] = self.log_path.open("ab")
        self.stack = _stack_class()(self.settings, log=self.log)
        self.helpers: list[subprocess.Popen] = []

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap

    def __enter__(self) -> "Phase":
        start = time.monotonic()
        self.stack.start_broker()
        self.broker_start_s = time.monotonic() - start
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for proc in self.helpers:
            _stop_group(proc)
        self.stack.stop()
        self.log.close()
        if exc_type is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-30:]
            sys.stderr.write(f"--- {self.name}: tail of {self.log_path}\n" + "\n".join(tail) + "\n")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def start_workers(self, at_least: int = 0, timeout: float = 600) -> dict:
        """settings.worker_processes workers; back once each has its partitions and together they hold
        at least `at_least` incidents: their `_rebuilt` line."""
        offset = self.log_size()
        self.stack.start_workers()
        deadline = time.monotonic() + timeout
        while (line := _rebuilt(self, offset, at_least)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.settings.worker_processes} workers never logged schedule_rebuilt with "
                                   f"incidents>={at_least} within {timeout:.0f}s")
            time.sleep(0.1)
        return line

    def worker_cpu_s(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.stack.workers)

    def spawn(self, args: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "services.bench", *args], env=self.stack.env, stdout=self.log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO_ROOT)
        self.helpers.append(proc)
        return proc

    def log_lines_from(self, offset: int) -> Iterator[dict]:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            for line in f:
                start = line.find(b'{"')  # the worker's terminal codes may precede a JSON line
                if start >= 0:
                    try:
                        yield json.loads(line[start:])
                    except ValueError:
                        continue

    def log_size(self) -> int:
        self.log.flush()
        return self.log_path.stat().st_size


FAUST_KEYS = ("broker_session_timeout", "broker_heartbeat_interval", "broker_rebalance_timeout", "producer_acks",
              "producer_linger", "producer_max_batch_size", "stream_buffer_maxsize", "broker_commit_every",
              "broker_commit_interval", "processing_guarantee", "store", "topic_partitions", "table_standby_replicas")


def _faust_conf(app) -> dict[str, str]:
    from services.worker.consumer_fetch import fetch_max_wait_ms

    return {**{k: str(getattr(app.conf, k)) for k in FAUST_KEYS},
            "consumer_fetch_max_wait_ms": str(fetch_max_wait_ms(app))}


def _worker_settings(phase: Phase) -> dict[str, Any]:
    """The worker's Faust settings as services/worker/faust_app.py builds them (its app id is this phase's)."""
    from services.worker.faust_app import build_app

    app = build_app(phase.settings, sensors=False)

    return {**_faust_conf(app), "app_id": phase.settings.app_id, "worker": "python -m services.cli worker",
            "due_checks_per_tick": phase.settings.due_checks_per_tick, "worker_processes": phase.settings.worker_processes,
            "broker_start_s": round(phase.broker_start_s, 1)}


def bare_faust_app(bootstrap: str, app_id: str):
    """The worker's Faust configuration (services/worker/faust_app.py, the same function) and nothing
    else: no sensors, no tables, no static membership (several baseline processes share one group)."""
    from services.settings import get_settings
    from services.worker.faust_app import build_app

    settings = get_settings().model_copy(update={"bootstrap_servers": bootstrap})
    return build_app(settings, app_id=app_id, store="memory://", sensors=False, consumer_group_instance_id=None)


def _create_topics(bootstrap: str, names: list[str], partitions: int, timeout: float = 30) -> None:
    """Create bench-only topics and wait until every partition has a leader."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="yingji-bench")
    try:
        admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = admin.describe_topics(names)
            if all(len(t["partitions"]) == partitions
                   and all(p.get("leader_id", p.get("leader", -1)) >= 0 for p in t["partitions"])
                   for t in described):
                return
            time.sleep(0.1)
        raise RuntimeError(f"topics {names} have no leaders after {timeout:.0f}s")
    finally:
        admin.close()


# ---------------------------------------------------------------------------------------------
# asyncio clients of the harness (aiokafka)


class Tap:
    """Reads topics from the beginning (assigned, no group) in the background; calls on_record(msg, t)
    with the wall-clock time the harness received the batch.

    from_end: only what is written after entering, which returns once the end offsets are known, so
    nothing sent after it is missed and no earlier phase's records are read first."""

    def __init__(self, bootstrap: str, topics: list[tuple[str, int]], on_record: Callable[[Any, float], None],
                 *, from_end: bool = False):
        self.bootstrap = bootstrap
        self.topics = topics
        self.on_record = on_record
        self.from_end = from_end

    async def __aenter__(self) -> "Tap":
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                         fetch_max_wait_ms=100, max_partition_fetch_bytes=4 << 20)
        await self.consumer.start()
        parts = [TopicPartition(name, p) for name, count in self.topics for p in range(count)]
        self.consumer.assign(parts)
        if self.from_end:
            await self.consumer.seek_to_end(*parts)
            for tp in parts:
                await self.consumer.position(tp)  # the end offsets looked up before anything is sent
        else:
            await self.consumer.seek_to_beginning(*parts)
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            received = time.time()
            for msgs in batch.values():
                for msg in msgs:
                    self.on_record(msg, received)

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        await self.consumer.stop()


async def _producer(bootstrap: str, *, linger_ms: int = 5):
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms,
                                max_batch_size=256 * 1024, max_request_size=8 << 20)
    await producer.start()
    return producer


PRODUCER_SETTINGS = {"client": "aiokafka", "acks": "all", "linger_ms": 5, "max_batch_size": 262144}


async def _until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def _produce_all(producer, topic: str, records: list[tuple[bytes, bytes]], partitions: list[int] | None = None):
    futures = []
    for i, (key, value) in enumerate(records):
        futures.append(await producer.send(topic, key=key, value=value,
                                           partition=partitions[i] if partitions else None))
    await asyncio.gather(*futures)


def _routing_notices(decision: dict) -> int:
    """Notifications start() sends for a decision: routing notices not waiting for approval, by key."""
    return len({(n["unit_id"], n["rule"]) for n in decision["notify"] if not n["after_approval"]})


async def _warm_up(producer, bootstrap: str, *, timeout: float = 120) -> float:
    """One incident through the worker (its group joined, its tables ready): seconds it took."""
    from playbooks.plan import load_plan
    from topics.catalog import INCIDENTS_DECIDED, INCIDENTS_REPORTED

    iid = f"warm-{uuid.uuid4().hex[:10]}"
    seen: list[float] = []
    report = generate_reports(1, plan=load_plan(), now=_now(), prefix=iid)[0]
    key = report.report_id.encode()
    start = time.monotonic()
    async with Tap(bootstrap, [(INCIDENTS_DECIDED.name, INCIDENTS_DECIDED.partitions)],
                   lambda m, t: seen.append(t) if m.key == key else None):
        await producer.send_and_wait(INCIDENTS_REPORTED.name, key=key,
                                     value=reported(report, _now()).model_dump_json().encode())
        if not await _until(lambda: bool(seen), timeout):
            raise RuntimeError(f"the worker decided nothing within {timeout:.0f}s")
    return time.monotonic() - start


# ---------------------------------------------------------------------------------------------
# 2. pipeline, with the two baselines


async def _pipeline_throughput(bootstrap: str, records: list[tuple[bytes, bytes]], prefix: bytes,
                               timeout: float) -> dict[str, Any]:
    """N reports produced at once; time until every decision and its routing notifications are consumed."""
    from topics.catalog import INCIDENTS_DECIDED, INCIDENTS_REPORTED, NOTIFICATIONS_REQUESTED

    n = len(records)
    got = {"decisions": 0, "notifications": 0, "expected_notifications": 0, "other_notifications": 0}

    def on_record(msg, _t: float) -> None:
        if msg.topic == INCIDENTS_DECIDED.name:
            if msg.key.startswith(prefix):
                got["decisions"] += 1
                got["expected_notifications"] += _routing_notices(json.loads(msg.value)["decision"])
        elif msg.key.startswith(prefix) and b'"kind":"routing"' in msg.value:
            got["notifications"] += 1
        elif not msg.key.startswith(b"warm"):
            got["other_notifications"] += 1  # reminders etc. the worker sent meanwhile (due checks competing)

    def complete() -> bool:
        return got["decisions"] >= n and got["notifications"] >= got["expected_notifications"]

    producer = await _producer(bootstrap)
    try:
        async with Tap(bootstrap, [(INCIDENTS_DECIDED.name, INCIDENTS_DECIDED.partitions),
                                   (NOTIFICATIONS_REQUESTED.name, NOTIFICATIONS_REQUESTED.partitions)], on_record):
            await _until(lambda: False, 2)  # the tap has read what is already there (earlier phases)
            got.update(other_notifications=0)
            start = time.monotonic()
            await _produce_all(producer, INCIDENTS_REPORTED.name, records)
            produced_s = time.monotonic() - start
            done = await _until(complete, timeout)
            elapsed = time.monotonic() - start
    finally:
        await producer.stop()
    return {**got, "complete": done, "elapsed_s": elapsed, "produce_s": produced_s}


async def _pipeline_latency(bootstrap: str, plan, rate: float, seconds: float, prefix: str,
                            wait_s: float = 60) -> dict[str, Any]:
    """Reports offered at a steady rate; each one's latency from accepted_at to the harness receiving its
    IncidentDecided. One not decided wait_s after the last send counts as at least that late."""
    from topics.catalog import INCIDENTS_DECIDED, INCIDENTS_REPORTED

    count = int(rate * seconds)
    reports = generate_reports(count, plan=plan, now=_now(), prefix=prefix, seed=9)
    accepted: dict[bytes, float] = {}
    latencies: dict[bytes, float] = {}
    key_prefix = prefix.encode()

    def on_record(msg, received: float) -> None:
        if msg.topic == INCIDENTS_DECIDED.name and msg.key.startswith(key_prefix):
            latencies[msg.key] = received - _ts(json.loads(msg.value)["accepted_at"])

    producer = await _producer(bootstrap, linger_ms=0)
    behind = 0.0
    try:
        decided = [(INCIDENTS_DECIDED.name, INCIDENTS_DECIDED.partitions)]
        async with Tap(bootstrap, decided, on_record, from_end=True):
            loop = asyncio.get_running_loop()
            start = loop.time()
            futures = []
            for i, report in enumerate(reports):
                delay = start + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                behind = max(behind, -delay)
                rec = reported(report, _now())
                key = report.report_id.encode()
                accepted[key] = rec.accepted_at.timestamp()
                futures.append(await producer.send(INCIDENTS_REPORTED.name, key=key, value=rec.model_dump_json().encode()))
            await asyncio.gather(*futures)
            await _until(lambda: len(latencies) >= count, wait_s)
            cut_off = time.time()
            values = list(latencies.values())
            bounds = [cut_off - t for k, t in accepted.items() if k not in latencies]
            # drain what is left, so the next measurement starts on an idle worker
            drained = await _until(lambda: len(latencies) >= count, 300, step=0.1)
    finally:
        await producer.stop()
    return {"sent": count, "received": len(values), "latencies": values, "bounds": bounds,
            "producer_behind_s": behind, "drained": drained}


async def _baseline(phase: Phase, kind: str, records: list[tuple[bytes, bytes]], prefix: bytes,
                    timeout: float) -> dict[str, Any]:
    """Start a bare processor in a subprocess, warm it up, then time N records from produce to consumed."""
    src, dst = BASELINE_TOPICS[kind]
    _create_topics(phase.bootstrap, [src, dst], partitions=4)
    group = f"{phase.settings.app_id}-{kind}"
    # as many processes as the service has workers, so the ratio compares like with like
    procs = [phase.spawn(["--serve-baseline", kind, "--bootstrap", phase.bootstrap, "--src", src, "--dst", dst,
                          "--app-id", group]) for _ in range(phase.settings.worker_processes)]
    proc = procs[0]
    seen: dict[str, Any] = {"warm": False, "n": 0}

    def on_record(msg, _t: float) -> None:
        if msg.key == b"warm":
            seen["warm"] = True
        elif msg.key.startswith(prefix):
            seen["n"] += 1

    producer = await _producer(phase.bootstrap)
    try:
        async with Tap(phase.bootstrap, [(dst, 4)], on_record):
            warm_start = time.monotonic()
            await producer.send_and_wait(src, key=b"warm", value=b"{}")
            if not await _until(lambda: seen["warm"] or proc.poll() is not None, 120) or not seen["warm"]:
                raise RuntimeError(f"bare {kind} processor never passed a record through")
            if not await asyncio.to_thread(_group_has, phase.bootstrap, group, len(procs), 120):
                raise RuntimeError(f"bare {kind} processors: {len(procs)} never all in group {group}")
            warm_s = time.monotonic() - warm_start
            with PySpy(phase.ctx, proc.pid, f"pipeline-bare-{kind}"):
                start = time.monotonic()
                await _produce_all(producer, src, records)
                done = await _until(lambda: seen["n"] >= len(records), timeout)
                elapsed = time.monotonic() - start
    finally:
        await producer.stop()
        for p in procs:
            _stop_group(p)
    return {"records": seen["n"], "complete": done, "elapsed_s": elapsed, "warm_up_s": warm_s,
            "processes": len(procs)}


def _group_has(bootstrap: str, group: str, members: int, timeout: float) -> bool:
    """The consumer group is Stable with `members` members (every process has its partitions)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-group-probe")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            desc = admin.describe_groups([group]).get(group, {})
            if desc.get("group_state") == "Stable" and len(desc.get("members") or []) >= members:
                return True
            time.sleep(0.2)
        return False
    finally:
        admin.close()


PIPELINE_TIMEOUT_S = 300  # throughput over the decisions consumed by then, marked INCOMPLETE


def bench_pipeline(ctx: Context) -> None:
    """Baselines first (worker idle), then latency at a steady load, then throughput: N at once."""
    from playbooks.plan import load_plan

    plan = load_plan()
    n = ctx.sizes.pipeline_incidents
    res: dict[str, Any] = {}
    try:
        with Phase(ctx, "pipeline") as phase:
            settings = _worker_settings(phase)
            phase.start_workers()

            async def run() -> None:
                producer = await _producer(phase.bootstrap)
                try:
                    res["warm_s"] = await _warm_up(producer, phase.bootstrap)
                finally:
                    await producer.stop()
                prefix = f"p-{phase.run}-"
                reports = generate_reports(n, plan=plan, now=_now(), prefix=prefix)
                bare = [(f"b-{i:07d}".encode(), reported(r, _now()).model_dump_json().encode())
                        for i, r in enumerate(reports)]
                say(f"pipeline: bare aiokafka loop, {n} records")
                res["aio"] = await _baseline(phase, "aiokafka", bare, b"b-", timeout=max(60, n / 200))
                say(f"pipeline: bare Faust pass-through, {n} records")
                res["faust"] = await _baseline(phase, "faust", bare, b"b-", timeout=max(60, n / 100))
                say(f"pipeline: latency at {ctx.sizes.light_rate:g}/s for {ctx.sizes.light_seconds:g}s")
                res["light"] = await _pipeline_latency(phase.bootstrap, plan, ctx.sizes.light_rate,
                                                       ctx.sizes.light_seconds, f"m-{phase.run}-")
                say(f"pipeline: latency at {ctx.sizes.latency_rate:g}/s for {ctx.sizes.latency_seconds:g}s")
                with PySpy(ctx, phase.stack.worker.pid, "pipeline-worker-latency"):
                    res["lat"] = await _pipeline_latency(phase.bootstrap, plan, ctx.sizes.latency_rate,
                                                         ctx.sizes.latency_seconds, f"l-{phase.run}-")
                say(f"pipeline: throughput, {n} incidents")
                accepted = _now()  # reports received up to a minute ago: nothing of theirs falls due for 4 min
                records = [(r.report_id.encode(), reported(r, accepted).model_dump_json().encode()) for r in reports]
                with PySpy(ctx, phase.stack.worker.pid, "pipeline-worker-throughput"):
                    res["thr"] = await _pipeline_throughput(phase.bootstrap, records, prefix.encode(),
                                                            timeout=PIPELINE_TIMEOUT_S)

            asyncio.run(run())
    finally:
        _pipeline_rows(ctx, res, n, settings if "warm_s" in res else {})


def _pipeline_rows(ctx: Context, res: dict[str, Any], n: int, settings: dict[str, Any]) -> None:
    common = {"incidents": n, "producer": PRODUCER_SETTINGS, "worker": settings, "same_broker": True,
              "worker_warm_up_s": round(res.get("warm_s", float("nan")), 1)}
    rate = faust_rate = aio_rate = None
    if "thr" in res:
        thr = res["thr"]
        rate = thr["decisions"] / thr["elapsed_s"]
        ctx.pipeline_rate = rate
        note = "" if thr["complete"] else (f"INCOMPLETE: {thr['decisions']}/{n} decided, {thr['notifications']}/"
                                           f"{thr['expected_notifications']} notified in {PIPELINE_TIMEOUT_S}s")
        ctx.rows.append(Row("pipeline.throughput", rate, "incidents/s", "", None, {
            **common, "decisions": thr["decisions"], "routing_notifications": thr["notifications"],
            "expected_routing_notifications": thr["expected_notifications"],
            "other_notifications_meanwhile": thr["other_notifications"], "wall_s": round(thr["elapsed_s"], 2),
            "produce_s": round(thr["produce_s"], 2),
            "timed": "first produce -> every IncidentDecided and routing NotificationRequested consumed"}, note))
    if "aio" in res:
        aio = res["aio"]
        aio_rate = aio["records"] / aio["elapsed_s"]
        ctx.rows.append(Row("pipeline.bare_aiokafka", aio_rate, "records/s", "", None, {
            "records": n, "loop": "aiokafka getmany -> send each -> await the batch's acks -> commit (subprocess)",
            "producer": PRODUCER_SETTINGS, "wall_s": round(aio["elapsed_s"], 2), "processes": aio["processes"]},
            "" if aio["complete"] else f"INCOMPLETE: {aio['records']}/{n}"))
    if "faust" in res:
        fst = res["faust"]
        faust_rate = fst["records"] / fst["elapsed_s"]
        bare_conf = _faust_conf(bare_faust_app("127.0.0.1:9", "bare"))
        differs = sorted(k for k in FAUST_KEYS if settings and bare_conf[k] != settings[k])
        ctx.rows.append(Row("pipeline.bare_faust", faust_rate, "records/s", "", None, {
            "records": n, "agent": "raw bytes pass-through, await topic.send (subprocess, own app id)",
            "faust": bare_conf, "settings_differing_from_worker": differs, "wall_s": round(fst["elapsed_s"], 2),
            "processes": fst["processes"]},
            "" if fst["complete"] else f"INCOMPLETE: {fst['records']}/{n}"))
    if rate is not None and faust_rate:
        ratio = rate / faust_rate
        ctx.rows.append(Row("pipeline.ratio_vs_bare_faust", ratio, "x", ">= 0.5", ratio >= 0.5, {
            "pipeline_incidents_per_s": round(rate, 1), "bare_faust_records_per_s": round(faust_rate, 1)}))
    if rate is not None and aio_rate:
        ctx.rows.append(Row("pipeline.ratio_vs_bare_aiokafka", rate / aio_rate, "x", "", None, {
            "pipeline_incidents_per_s": round(rate, 1), "bare_aiokafka_records_per_s": round(aio_rate, 1)}))
    if "light" in res:
        _latency_rows(ctx, res["light"], "pipeline.light_latency", ctx.sizes.light_rate, ctx.sizes.light_seconds,
                      target=False)
    if "lat" in res:
        _latency_rows(ctx, res["lat"], "pipeline.latency", ctx.sizes.latency_rate, ctx.sizes.latency_seconds,
                      target=True)


def _latency_rows(ctx: Context, lat: dict[str, Any], name: str, rate: float, seconds: float, *, target: bool) -> None:
    lat_settings = {"offered_rate_per_s": rate, "seconds": seconds,
                    "sent": lat["sent"], "received": lat["received"], "producer_linger_ms": 0,
                    "producer_behind_schedule_max_s": round(lat["producer_behind_s"], 3),
                    "measured": "harness receives IncidentDecided - the record's accepted_at (same clock)"}
    note = "" if not lat["bounds"] else (f"{len(lat['bounds'])}/{lat['sent']} not decided 60s after the last "
                                         f"send: counted at that age, figures are lower bounds")
    values = [v * 1000 for v in lat["latencies"] + lat["bounds"]] or [float("nan")]
    ctx.rows.append(Row(f"{name}_p50", percentile(values, 50), "ms", "", None, lat_settings, note))
    p99 = percentile(values, 99)
    ctx.rows.append(Row(f"{name}_p99", p99, "ms", f"<= 50 at {rate:g}/s" if target else "",
                        (p99 <= 50 and not note) if target else None, lat_settings, note))
    ctx.rows.append(Row(f"{name}_max", max(values), "ms", "", None, lat_settings, note))


# ---------------------------------------------------------------------------------------------
# 3. deadlines and 4. recovery: the worker holding many open incidents
#
# Seeding (default `--seed changelog`): the incidents' IncidentState values, computed by
# playbooks.lifecycle.start (the function the agent runs on each report), are written to the table's
# changelog while the worker is down; the worker then recovers them and holds them as it would after
# ingesting the reports. The ingest path itself is measured by `pipeline`; `--seed produce` sends the
# reports through the worker instead (bounded by the pipeline's throughput: minutes at these sizes).


DEADLINE_RATE_FALLBACK = 50.0  # incidents/s assumed for `--seed produce` when `pipeline` did not run first


def _changelog(phase: Phase) -> str:
    return f"{phase.settings.app_id}-{TABLE_NAME}-changelog"


async def _seed_changelog(producer, phase: Phase, items: Iterator[tuple[str, bytes]]) -> dict[str, float]:
    """Table entries keyed as the agent writes them (JSON key), on the partition of the incident's
    source partition (the default partitioner's murmur2 of the incident id), as Faust does."""
    from services.kafka_topics import partition_of

    records, partitions, size, start = [], [], 0, time.monotonic()
    for iid, value in items:
        records.append((json.dumps(iid).encode(), value))
        partitions.append(partition_of(iid))
        size += len(value)
    computed = time.monotonic() - start
    await _produce_all(producer, _changelog(phase), records, partitions)
    return {"entries": len(records), "mb": round(size / 1e6, 1), "compute_s": round(computed, 1),
            "seed_s": round(time.monotonic() - start, 1)}


def _rebuilt(phase: Phase, offset: int, at_least: int) -> dict | None:
    """Every worker's `schedule_rebuilt` log line (tables recovered, due schedule rebuilt) after offset,
    their latest ones together holding >= at_least incidents: the last of them, `incidents` their sum."""
    latest: dict[str, dict] = {}
    for line in phase.log_lines_from(offset):
        if line.get("event") == "schedule_rebuilt":
            latest[line.get("worker", "")] = line
    if len(latest) < phase.settings.worker_processes:
        return None
    total = sum(int(line.get("incidents", 0)) for line in latest.values())
    if total < at_least:
        return None
    return {**max(latest.values(), key=lambda line: line["timestamp"]), "incidents": total}


async def _start_and_recover(phase: Phase, at_least: int) -> tuple[float, dict]:
    """Start the workers; wall time of the start and their schedule_rebuilt lines saying >= at_least incidents."""
    started = time.time()
    return started, await asyncio.to_thread(phase.start_workers, at_least)


async def _ingest(producer, bootstrap: str, records: list[tuple[bytes, bytes]], timeout: float) -> float:
    """`--seed produce`: the reports through the worker; seconds until every decision is consumed."""
    from topics.catalog import INCIDENTS_DECIDED, INCIDENTS_REPORTED

    keys = {k for k, _ in records}
    seen: set[bytes] = set()
    start = time.monotonic()
    async with Tap(bootstrap, [(INCIDENTS_DECIDED.name, INCIDENTS_DECIDED.partitions)],
                   lambda m, t: seen.add(m.key) if m.key in keys else None):
        await _produce_all(producer, INCIDENTS_REPORTED.name, records)
        if not await _until(lambda: len(seen) >= len(keys), timeout, step=0.1):
            raise RuntimeError(f"ingest: {len(seen)}/{len(keys)} decided within {timeout:.0f}s")
    return time.monotonic() - start


def bench_deadlines(ctx: Context) -> None:
    from playbooks.lifecycle import start
    from playbooks.plan import load_plan
    from services.worker.table_codec import encode_state, head_of
    from topics.catalog import ESCALATIONS
    from topics.models import ReportFacts

    plan = load_plan()
    n_inc = math.ceil(ctx.sizes.open_obligations / 3)  # each incident opens 3; counted below from the states
    window = ctx.sizes.deadline_window_s
    types = plan.table_types
    seeded = ctx.seed == "changelog"
    with Phase(ctx, "deadlines") as phase:
        settings = _worker_settings(phase)
        phase.start_workers()
        prefix = f"d-{phase.run}-"
        breaches: list[tuple[float, float, float, str]] = []
        drain_s = 120.0  # after the window closes, breaches still missing count as "at least this late"

        def on_breach(msg, received: float) -> None:
            if msg.key.startswith(prefix.encode()):
                body = json.loads(msg.value)
                if body["kind"] == "breach":
                    breaches.append((body["details"]["detection_lag_s"], _ts(body["recorded_at"]) - _ts(body["at"]),
                                     received - _ts(body["at"]), body["obligation"], body["incident_id"]))

        async def run() -> dict[str, Any]:
            producer = await _producer(phase.bootstrap)
            try:
                await _warm_up(producer, phase.bootstrap)  # group joined; the table's changelog exists
                # The window must open after the worker holds every incident: seeding and recovery take
                # about 2 ms per incident here; ingest through the worker goes at the pipeline's rate.
                lead = 15 + n_inc * 0.002 if seeded else 15 + 1.5 * n_inc / (ctx.pipeline_rate or DEADLINE_RATE_FALLBACK)
                t0 = time.time() + lead
                accepted = _now()
                reports = []
                for i in range(n_inc):
                    due = datetime.fromtimestamp(t0 + window * i / n_inc, timezone.utc)
                    received = due - timedelta(minutes=10)  # phone_report: due 10 minutes after receipt
                    reports.append(reported(ReportFacts(
                        report_id=f"{prefix}{i:07d}", type=types[i % len(types)].id,
                        occurred_at=received - timedelta(minutes=5), received_at=received, source="bench"), accepted))
                open_obligations = due_in_window = 0
                states = []
                for rec in reports:
                    state = start(rec, plan, _now()).state
                    open_obligations += sum(o.pending for o in state.obligations.values())
                    # less a microsecond: a datetime rounds the window's first due time to one
                    due_in_window += sum(t0 - 1e-6 <= o.obligation.due_at.timestamp() < t0 + window
                                         for o in state.obligations.values() if o.pending)
                    if seeded:
                        states.append((rec.incident_id, encode_state(state, head_of(state, plan))))
                async with Tap(phase.bootstrap, [(ESCALATIONS.name, ESCALATIONS.partitions)], on_breach):
                    if seeded:
                        phase.stack.kill_workers()
                        seed = await _seed_changelog(producer, phase, iter(states))
                        del states
                        say(f"deadlines: seeded {seed}; starting the worker on it")
                        _started, line = await _start_and_recover(phase, n_inc)
                        ready = _ts(line["timestamp"])
                    else:
                        records = [(r.incident_id.encode(), r.model_dump_json().encode()) for r in reports]
                        seed = {"ingest_s": round(await _ingest(producer, phase.bootstrap, records, lead + window), 1)}
                        ready = time.time()
                    say(f"deadlines: worker holds {open_obligations} open obligations, "
                        f"{t0 - time.time():.1f}s before the window opens")

                    async def probe_mid_window() -> float:
                        """A duty officer's new report while the breaches fall due: seconds to its decision."""
                        await asyncio.sleep(max(0.0, t0 + window / 2 - time.time()))
                        sent = time.time()
                        return await _probe(phase, plan, producer, f"{prefix}probe") - sent

                    probing = asyncio.create_task(probe_mid_window())
                    await asyncio.sleep(max(0.0, t0 - time.time()))
                    cpu_open = {"broker": cpu_seconds(phase.stack.broker.pid), "workers": phase.worker_cpu_s()}
                    with PySpy(ctx, phase.stack.worker.pid, "deadlines-worker-window"):
                        await _until(lambda: len(breaches) >= due_in_window,
                                     max(1.0, t0 + window + drain_s - time.time()))
                    cpu = {"broker": cpu_seconds(phase.stack.broker.pid) - cpu_open["broker"],
                           "workers": phase.worker_cpu_s() - cpu_open["workers"]}
                    new_report_s = await probing
                    await asyncio.sleep(1)  # a repeated breach would arrive here
                    cut_off = time.time()
            finally:
                await producer.stop()
            return {"t0": t0, "ready": ready, "seed": seed, "open": open_obligations, "due": due_in_window,
                    "new_report_s": new_report_s, "cpu": cpu,
                    "cut_off": cut_off, "due_times": [t0 + window * i / n_inc for i in range(n_inc)]}

        res = asyncio.run(run())
    phone = [b for b in breaches if b[3] == "phone_report"]
    seen_ids = len(phone)
    slack = res["t0"] - res["ready"]
    missing = max(0, res["due"] - seen_ids)
    # A breach not seen by the cut-off was detected at least (cut-off - its due time) late: with those
    # lower bounds in, a percentile is a lower bound of the true one, never an optimistic figure.
    latest_due = sorted(res["due_times"])[seen_ids:] if missing else []
    bounds = [res["cut_off"] - d for d in latest_due]
    common = {
        "incidents": n_inc, "open_obligations": res["open"],
        "obligations": "each incident opens phone_report, written_report and detailed_report (all open at the "
                       "window start); only phone_report (received_at + 10 min) falls due in the window",
        "falling_due_in_window": res["due"], "window_s": window, "spread": "due times uniform over the window",
        "seed": ctx.seed, "seeding": res["seed"], "worker_ready_before_window_s": round(slack, 1),
        "breaches_received": seen_ids, "drain_s": drain_s, "sweep_interval_s": 0.1, "worker": settings}
    notes = []
    if slack < 0:
        notes.append(f"worker ready {-slack:.1f}s after the window opened: lags include that")
    if missing:
        notes.append(f"{missing} of {res['due']} breaches not seen {drain_s:.0f}s after the window: "
                     f"figures are lower bounds")
    repeats = seen_ids - len({b[4] for b in phone})
    if repeats:
        notes.append(f"{repeats} breaches repeated (the same incident's phone_report twice)")
    if len({b[4] for b in phone}) > res["due"]:
        notes.append(f"{len({b[4] for b in phone}) - res['due']} more incidents breached than counted due in "
                     f"the window (a due time on its edge)")
    note = "; ".join(notes)
    lags = [b[0] for b in phone] + bounds or [float("nan")]
    recorded = [b[1] for b in phone] + bounds or [float("nan")]
    visible = [b[2] for b in phone] + bounds or [float("nan")]
    lag_m = {"measured": "breach details.detection_lag_s"}
    ctx.rows.append(Row("deadlines.open_obligations", float(res["open"]), "obligations", "", None, common, note))
    ctx.rows.append(Row("deadlines.lag_p50", percentile(lags, 50), "s", "", None, lag_m, note))
    p99 = percentile(lags, 99)
    ctx.rows.append(Row("deadlines.lag_p99", p99, "s", "<= 1", p99 <= 1 and not notes, lag_m, note))
    ctx.rows.append(Row("deadlines.lag_max", max(lags), "s", "", None, lag_m, note))
    ctx.rows.append(Row("deadlines.recorded_minus_at_p99", percentile(recorded, 99), "s", "", None, {
        "measured": "breach recorded_at - at", "p50": round(percentile(recorded, 50), 3),
        "max": round(max(recorded), 3)}, note))
    ctx.rows.append(Row("deadlines.visible_lag_p99", percentile(visible, 99), "s", "", None, {
        "measured": "harness receives the breach (escalations topic) - at", "p50": round(percentile(visible, 50), 3),
        "max": round(max(visible), 3)}, note))
    per_breach = {name: 1000 * secs / max(1, seen_ids) for name, secs in res["cpu"].items()}
    ctx.rows.append(Row("deadlines.worker_cpu_per_breach", per_breach["workers"], "ms", "", None, {
        "measured": "the workers' CPU (user+system, /proc, all worker processes) from the window's opening to the "
                    "last breach received, per breach", "broker_ms": round(per_breach["broker"], 2),
        "workers_cpu_s": round(res["cpu"]["workers"], 1), "broker_cpu_s": round(res["cpu"]["broker"], 1),
        "worker_processes": settings.get("worker_processes")}))
    ctx.rows.append(Row("deadlines.new_report_s", res["new_report_s"], "s", "", None, {
        "measured": "a new report produced halfway through the window -> its decision received"}))


def _recovery_states(n: int, *, plan, prefix: str) -> Iterator[tuple[str, bytes]]:
    """IncidentState values from playbooks.lifecycle.start for 104 reports (every type, mixed facts), each
    reused with the incident id substituted: the bytes the worker would hold, 100,000 in seconds."""
    from playbooks.lifecycle import start
    from services.worker.table_codec import encode_state, head_of

    now = _now()
    templates = []
    for report in generate_reports(104, plan=plan, now=now, prefix=f"{prefix}T", seed=10):
        state = start(reported(report, now), plan, now).state
        templates.append((report.report_id, encode_state(state, head_of(state, plan)).decode()))
    for i in range(n):
        tmpl_id, body = templates[i % len(templates)]
        iid = f"{prefix}{i:07d}"
        yield iid, body.replace(tmpl_id, iid).encode()


async def _probe(phase: Phase, plan, producer, report_id: str) -> float:
    """A new report produced now; the wall time its decision was received."""
    from topics.catalog import INCIDENTS_DECIDED, INCIDENTS_REPORTED

    seen: list[float] = []
    report = generate_reports(1, plan=plan, now=_now(), prefix=report_id, seed=11)[0]
    key = report.report_id.encode()
    async with Tap(phase.bootstrap, [(INCIDENTS_DECIDED.name, INCIDENTS_DECIDED.partitions)],
                   lambda m, t: seen.append(t) if m.key == key else None, from_end=True):
        await producer.send_and_wait(INCIDENTS_REPORTED.name, key=key,
                                     value=reported(report, _now()).model_dump_json().encode())
        if not await _until(lambda: bool(seen), 600, step=0.01):
            raise RuntimeError(f"no decision for probe {report_id} within 600s")
    return seen[0]


def bench_recovery(ctx: Context) -> None:
    from playbooks.plan import load_plan
    from services.local.kafka import rss_bytes

    plan = load_plan()
    n = ctx.sizes.recovery_incidents
    with Phase(ctx, "recovery") as phase:
        settings = _worker_settings(phase)
        prefix = f"r-{phase.run}-"
        phase.start_workers()

        async def run() -> dict[str, Any]:
            producer = await _producer(phase.bootstrap)
            try:
                await _warm_up(producer, phase.bootstrap)  # group joined; the table's changelog exists
                if ctx.seed == "changelog":
                    phase.stack.kill_workers()
                    seed = await _seed_changelog(producer, phase, _recovery_states(n, plan=plan, prefix=prefix))
                    say(f"recovery: seeded {seed}; starting the worker on it")
                    started, line = await _start_and_recover(phase, n)  # recovers the seeded table
                    seed["cold_start_s"] = round(_ts(line["timestamp"]) - started, 1)
                    say(f"recovery: worker holds {line['incidents']} incidents ({seed['cold_start_s']}s)")
                else:
                    reports = generate_reports(n, plan=plan, now=_now(), prefix=prefix, seed=12)
                    accepted = _now()
                    records = [(r.report_id.encode(), reported(r, accepted).model_dump_json().encode())
                               for r in reports]
                    seed = {"ingest_s": round(await _ingest(producer, phase.bootstrap, records, max(600, n / 20)), 1)}
                await _probe(phase, plan, producer, f"{prefix}before")
                say("recovery: probe decided; SIGKILL and restart")
                await asyncio.sleep(2)  # the probe's table write is on the changelog
                rss = sum(rss_bytes(p.pid) for p in phase.stack.workers)
                phase.stack.kill_workers()  # SIGKILL: no shutdown, no final commit
                offset = phase.log_size()
                restarted = time.time()
                phase.stack.start_workers()
                with PySpy(ctx, phase.stack.worker.pid, "recovery-worker-restart"):
                    served = await _probe(phase, plan, producer, f"{prefix}after")  # produced at once: waits while the worker recovers
                    say(f"recovery: serving again after {served - restarted:.1f}s")
                    if not await _until(lambda: _rebuilt(phase, offset, n + 1) is not None, 600, step=0.1):
                        raise RuntimeError(f"restarted workers never logged schedule_rebuilt with incidents>={n + 1}")
                line = _rebuilt(phase, offset, n + 1)
            finally:
                await producer.stop()
            return {"seed": seed, "rss": rss, "serve_s": served - restarted,
                    "tables_s": _ts(line["timestamp"]) - restarted, "incidents_logged": line["incidents"]}

        res = asyncio.run(run())
    common = {"open_incidents": res["incidents_logged"], "seed": ctx.seed, "seeding": res["seed"],
              "kill": "SIGKILL of every worker (LocalStack.kill_workers)",
              "workers_rss_mb_before_kill": round(res["rss"] / 1e6),
              "worker": settings}
    ctx.rows.append(Row("recovery.serve_s", res["serve_s"], "s", "<= 10", res["serve_s"] <= 10, {
        **common, "measured": "restart -> decision received for a report produced at the restart"}))
    ctx.rows.append(Row("recovery.tables_s", res["tables_s"], "s", "<= 10", res["tables_s"] <= 10, {
        "open_incidents": res["incidents_logged"],
        "measured": "restart -> worker logs schedule_rebuilt (table recovered, due schedule rebuilt)"}))


# ---------------------------------------------------------------------------------------------
# the bare processors (run as subprocesses by the pipeline phase)


async def _serve_aiokafka(bootstrap: str, src: str, dst: str, group: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            futures = [await producer.send(dst, key=m.key, value=m.value) for msgs in batch.values() for m in msgs]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def _serve_faust(bootstrap: str, src: str, dst: str, app_id: str) -> None:
    import faust

    app = bare_faust_app(bootstrap, app_id)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    source, sink = app.topic(src, **raw), app.topic(dst, **raw)

    @app.agent(source)
    async def passthrough(stream):
        async for event in stream.events():
            await sink.send(key=event.key, value=event.value)

    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False,
                 override_logging=False).execute_from_commandline()


# ---------------------------------------------------------------------------------------------
# output


def _fmt(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _short_settings(row: Row) -> str:
    keep = ("reports", "incidents", "records", "open_obligations", "falling_due_in_window", "window_s",
            "offered_rate_per_s", "seconds", "sent", "received", "open_incidents", "runs", "sim_hours_per_run",
            "wall_s", "changelog_mb", "measured")
    parts = [f"{k}={v}" for k, v in row.settings.items() if k in keep]
    return " ".join(parts)[:110]


def render(rows: list[Row]) -> str:
    head = ("name", "figure", "unit", "target", "met?", "settings")
    body = [(r.name, _fmt(r.figure), r.unit, r.target or "-",
             "-" if r.met is None else ("met" if r.met else "MISSED"),
             _short_settings(r) + (f"  [{r.note}]" if r.note else "")) for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(5)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line[:5], widths)) + "  " + line[5] for line in [head, *body]]
    lines.insert(1, "-" * max(len(x) for x in lines))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    from services.local.kafka import LIB_DIR

    jars = sorted(LIB_DIR.glob("kafka_2.13-*.jar"))
    versions = {}
    for dist in ("faust-streaming", "aiokafka", "kafka-python", "pydantic"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "kafka": jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else None,
            **versions, "memory_mb": _mem_total_mb()}


def _mem_total_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


BENCHES: dict[str, Callable[[Context], None]] = {
    "engine": bench_engine, "pipeline": bench_pipeline, "deadlines": bench_deadlines,
    "recovery": bench_recovery, "drills": bench_drills,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes: the harness in about a minute")
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", help=f"some of: {', '.join(NAMES)}")
    parser.add_argument("--size", action="append", default=[], metavar="NAME=VALUE",
                        help=f"override one size, e.g. pipeline_incidents=5000 (of: {', '.join(Sizes.__dataclass_fields__)})")
    parser.add_argument("--out", type=Path, help="JSON file (default bench-results/bench-<timestamp>.json)")
    parser.add_argument("--seed", choices=("changelog", "produce"), default="changelog",
                        help="how deadlines/recovery fill the worker: its table's changelog (default) or "
                             "the reports through the worker (slow)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy raw stacks of the worker per Kafka phase, cProfile of engine and drills")
    parser.add_argument("--serve-baseline", choices=sorted(BASELINE_TOPICS), help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dst", help=argparse.SUPPRESS)
    parser.add_argument("--app-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_baseline == "aiokafka":
        asyncio.run(_serve_aiokafka(args.bootstrap, args.src, args.dst, args.app_id))
        return 0
    if args.serve_baseline == "faust":
        _serve_faust(args.bootstrap, args.src, args.dst, args.app_id)
        return 0

    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so every phase stops its broker and worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = _now()
    out = args.out or REPO_ROOT / "bench-results" / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    names = [n for n in NAMES if not args.only or n in args.only]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="yingji-bench-") as work:
        sizes = SMOKE if args.smoke else FULL
        for item in args.size:
            name, _, value = item.partition("=")
            sizes = dataclasses.replace(sizes, **{name: type(getattr(sizes, name))(value)})
        ctx = Context(sizes=sizes, smoke=args.smoke, work=Path(work), seed=args.seed,
                      profile_dir=args.profile.resolve() if args.profile else None)
        for name in names:
            say(f"{name} …")
            t = time.monotonic()
            try:
                BENCHES[name](ctx)
            except Exception as exc:  # noqa: BLE001 - one phase failing still reports the others
                failures[name] = f"{type(exc).__name__}: {exc}"
                say(f"{name} failed: {failures[name]}")
                ctx.rows.append(Row(f"{name}.failed", None, "-", note=failures[name]))
            timings[name] = round(time.monotonic() - t, 1)
    table = render(ctx.rows)
    print(table)
    doc = {
        "command": " ".join(["python -m services.bench", *(argv if argv is not None else sys.argv[1:])]),
        "mode": "smoke" if args.smoke else "full", "started_at": started.isoformat(),
        "finished_at": _now().isoformat(), "machine": machine(), "sizes": asdict(ctx.sizes),
        "phase_wall_s": timings, "failures": failures,
        "results": [asdict(r) for r in ctx.rows], "table": table,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\n{os.cpu_count()} cores · Python {doc['machine']['python']} · Kafka {doc['machine']['kafka']} · "
          f"faust-streaming {doc['machine']['faust-streaming']} · results: {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
