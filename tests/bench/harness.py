"""The harness every phase runs in: sizes and rows, the stack of a Kafka phase (a fresh broker and the
real workers, each process logging to a file of its own), the clients it measures with, and the
table and machine description it prints.

Readiness: a worker says it holds its incidents (table recovered, due schedule rebuilt) with its
`schedule_rebuilt` log line. Each worker writes its own file (LocalStack's `log_dir`), the harness
reads only whole lines of it, and the line's own timestamp is when the worker got there (the figure
`recovery.tables_s` is defined by it). One writer per file: no other process's line can be glued
into it, whatever the buffering.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from tenacity import AsyncRetrying, Retrying, retry_if_result, stop_after_delay, wait_fixed

from playbooks.plan import load_plan
from services.local.kafka import LIB_DIR, free_port, free_port_run
from services.local.stack import LocalStack, stop_group
from services.settings import REPO_ROOT, Settings, get_settings
from services.worker.consumer_fetch import fetch_max_wait_ms
from services.worker.faust_app import build_app
from tests.bench.reports import generate_reports, reported
from topics.catalog import INCIDENTS_DECIDED, INCIDENTS_REPORTED, KEYED_PARTITIONS

T = TypeVar("T")
# The phases, in the order they run (tests/bench/__main__.py maps each to its module).
NAMES = ("engine", "pipeline", "deadlines", "recovery", "drills", "duty", "delivery", "board", "whatif")
# One worker per core unless YINGJI_WORKERS says otherwise: the phases start them and wait until each
# holds its partitions before any traffic, so no worker joins while records flow.
BENCH_WORKERS = get_settings().workers if "workers" in get_settings().model_fields_set else 0


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
    duty_notices: int = 20_000
    delivery_rate: float = 50.0  # issue 19: notice → mail at 50 notices/s for two minutes
    delivery_seconds: float = 120.0
    delivery_acks: int = 200
    robot_notices: int = 200  # issue 19: 200 notices to one robot in 60 s
    robot_seconds: float = 60.0
    board_incidents: int = 5_000  # issue 21: the board at thousands of open incidents
    board_loads: int = 3  # first paint: the median of this many loads
    board_changes: int = 20  # change → screen: this many new incidents, one at a time
    board_background_rate: float = 50.0  # reports filed a second meanwhile
    whatif_incidents: int = 20_000  # issue 24: a synthetic year of this many incidents, besides the busy night


FULL = Sizes()
SMOKE = Sizes(engine_reports=1_000, pipeline_incidents=300, latency_rate=50.0, latency_seconds=4.0,
              light_rate=20.0, light_seconds=2.0,
              open_obligations=2_000, deadline_window_s=10.0, recovery_incidents=2_000, drill_seconds=0.5,
              duty_notices=1_000, delivery_rate=10.0, delivery_seconds=3.0, delivery_acks=10, robot_notices=30,
              robot_seconds=5.0, board_incidents=200, board_loads=3, board_changes=8, board_background_rate=10.0,
              whatif_incidents=200)


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
    seed: str = "changelog"  # how `deadlines` and `recovery` fill the worker (tests/bench/seeding.py)
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


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def now_utc() -> datetime:
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
            stop_group(self.proc, signal.SIGINT, timeout=30)


# ---------------------------------------------------------------------------------------------
# the stack of a Kafka phase


class BenchStack(LocalStack):
    """LocalStack whose workers get this phase's app id and JSON logs."""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "YINGJI_APP_ID": self.settings.app_id, "YINGJI_LOG_JSON": "true"}


class Phase:
    """A fresh broker (temp dir, free ports) and, on request, the workers, for one benchmark."""

    def __init__(self, ctx: Context, name: str):
        self.ctx = ctx
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=ctx.work))
        self.run = uuid.uuid4().hex[:8]
        self.settings = Settings(
            bootstrap_servers="", data_dir=self.dir, kafka_port=free_port(), kafka_controller_port=free_port(),
            api_port=free_port(), worker_web_port=free_port_run(4), app_id=f"bench-{name}-{self.run}", log_json=True,
            workers=BENCH_WORKERS, topic_partitions=KEYED_PARTITIONS)  # what ships, whatever the caller's environment says
        self.log_dir = self.dir / "logs"
        self.stack = BenchStack(self.settings, log_dir=self.log_dir)
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
            stop_group(proc)
        self.stack.stop()
        if exc_type is not None:
            for path in sorted(self.log_dir.glob("*.log")):
                tail = path.read_text(errors="replace").splitlines()[-30:]
                sys.stderr.write(f"--- {self.name}: tail of {path}\n" + "\n".join(tail) + "\n")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def start_workers(self, at_least: int = 0, timeout: float = 600) -> dict:
        """settings.worker_processes workers; back once each has its partitions and together they hold
        at least `at_least` incidents: their `schedule_rebuilt` line (see `rebuilt`)."""
        marks = self.log_marks()
        self.stack.start_workers()

        def ready() -> dict | None:
            if exited := [p.pid for p in self.stack.workers if p.poll() is not None]:
                raise RuntimeError(f"worker process(es) {exited} exited while starting")
            return self.rebuilt(marks, at_least)

        line = wait_for(ready, timeout, step=0.1)
        if line is None:
            raise RuntimeError(f"{self.settings.worker_processes} workers never logged schedule_rebuilt with "
                               f"incidents>={at_least} within {timeout:.0f}s")
        return line

    def worker_log(self, index: int) -> Path:
        path = self.stack.log_path(f"worker-{index}")
        assert path is not None  # a Phase's stack always has its log_dir
        return path

    def log_marks(self) -> dict[int, int]:
        """Where each worker's log ends now: lines after a mark were written after this call."""
        marks = {}
        for index in range(self.settings.worker_processes):
            path = self.worker_log(index)
            marks[index] = path.stat().st_size if path.exists() else 0
        return marks

    def rebuilt(self, marks: dict[int, int], at_least: int) -> dict | None:
        """Every worker's latest `schedule_rebuilt` line (tables recovered, due schedule rebuilt) since
        `marks`, together holding >= at_least incidents: the last of them, `incidents` their sum."""
        latest = []
        for index, mark in marks.items():
            lines = [line for line in log_lines(self.worker_log(index), mark) if line.get("event") == "schedule_rebuilt"]
            if not lines:
                return None
            latest.append(lines[-1])
        total = sum(int(line.get("incidents", 0)) for line in latest)
        if total < at_least:
            return None
        return {**max(latest, key=lambda line: line["timestamp"]), "incidents": total}

    def worker_cpu_s(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.stack.workers)

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        """`python -m tests.bench ARGS` (a bare baseline processor), logging to `<name>.log` beside the workers'."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "tests.bench", *args], env=self.stack.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO_ROOT)
        self.helpers.append(proc)
        return proc


def log_lines(path: Path, offset: int = 0) -> Iterator[dict]:
    """The JSON lines of one process's log from `offset`; only whole lines: one still being written
    (no newline yet) is read on the next call."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return
    for line in data[:data.rfind(b"\n") + 1].splitlines():
        start = line.find(b'{"')  # the worker's terminal codes may precede a JSON line
        if start >= 0:
            try:
                yield json.loads(line[start:])
            except ValueError:
                continue


# ---------------------------------------------------------------------------------------------
# the worker's Faust configuration, as services/worker/faust_app.py builds it (never a copy)


FAUST_KEYS = ("broker_session_timeout", "broker_heartbeat_interval", "broker_rebalance_timeout", "producer_acks",
              "producer_linger", "producer_max_batch_size", "stream_buffer_maxsize", "broker_commit_every",
              "broker_commit_interval", "processing_guarantee", "store", "topic_partitions", "table_standby_replicas")


def faust_conf(app) -> dict[str, str]:
    return {**{k: str(getattr(app.conf, k)) for k in FAUST_KEYS},
            "consumer_fetch_max_wait_ms": str(fetch_max_wait_ms(app))}


def worker_settings(phase: Phase) -> dict[str, Any]:
    """The worker's Faust settings as services/worker/faust_app.py builds them (its app id is this phase's)."""
    app = build_app(phase.settings, sensors=False)

    return {**faust_conf(app), "app_id": phase.settings.app_id, "worker": "python -m services.cli worker",
            "due_checks_per_tick": phase.settings.due_checks_per_tick, "worker_processes": phase.settings.worker_processes,
            "broker_start_s": round(phase.broker_start_s, 1)}


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


async def start_producer(bootstrap: str, *, linger_ms: int = 5):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms,
                                max_batch_size=256 * 1024, max_request_size=8 << 20)
    await producer.start()
    return producer


PRODUCER_SETTINGS = {"client": "aiokafka", "acks": "all", "linger_ms": 5, "max_batch_size": 262144}


def _unmet(value: object) -> bool:
    return value is None or value is False


async def until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Whether `predicate` held within `timeout` seconds, asked every `step` seconds."""

    async def ask() -> bool:
        return predicate()

    poll = AsyncRetrying(stop=stop_after_delay(timeout), wait=wait_fixed(step), retry=retry_if_result(_unmet),
                         retry_error_callback=lambda _state: False)
    return await poll(ask)


def wait_for(ask: Callable[[], T | None], timeout: float, step: float) -> T | None:
    """The first answer of `ask` other than None or False, asked every `step` seconds for `timeout`
    seconds; else None. An exception from `ask` ends the wait at once."""
    poll = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(step), retry=retry_if_result(_unmet),
                    retry_error_callback=lambda _state: None)
    return poll(ask)


async def produce_all(producer, topic: str, records: list[tuple[bytes, bytes]], partitions: list[int] | None = None):
    futures = []
    for i, (key, value) in enumerate(records):
        futures.append(await producer.send(topic, key=key, value=value,
                                           partition=partitions[i] if partitions else None))
    await asyncio.gather(*futures)


async def warm_up(producer, bootstrap: str, *, timeout: float = 120) -> float:
    """One incident through the worker (its group joined, its tables ready): seconds it took."""
    iid = f"warm-{uuid.uuid4().hex[:10]}"
    seen: list[float] = []
    report = generate_reports(1, plan=load_plan(), now=now_utc(), prefix=iid)[0]
    key = report.report_id.encode()
    start = time.monotonic()
    async with Tap(bootstrap, [(INCIDENTS_DECIDED.name, INCIDENTS_DECIDED.partitions)],
                   lambda m, t: seen.append(t) if m.key == key else None):
        await producer.send_and_wait(INCIDENTS_REPORTED.name, key=key,
                                     value=reported(report, now_utc()).model_dump_json().encode())
        if not await until(lambda: bool(seen), timeout):
            raise RuntimeError(f"the worker decided nothing within {timeout:.0f}s")
    return time.monotonic() - start


async def probe(phase: Phase, plan, producer, report_id: str) -> float:
    """A new report produced now; the wall time its decision was received."""
    seen: list[float] = []
    report = generate_reports(1, plan=plan, now=now_utc(), prefix=report_id, seed=11)[0]
    key = report.report_id.encode()
    async with Tap(phase.bootstrap, [(INCIDENTS_DECIDED.name, INCIDENTS_DECIDED.partitions)],
                   lambda m, t: seen.append(t) if m.key == key else None, from_end=True):
        await producer.send_and_wait(INCIDENTS_REPORTED.name, key=key,
                                     value=reported(report, now_utc()).model_dump_json().encode())
        if not await until(lambda: bool(seen), 600, step=0.01):
            raise RuntimeError(f"no decision for probe {report_id} within 600s")
    return seen[0]


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
