"""End-to-end fixtures: the service started the way a user starts it (`yingji run`), on a local
Apache Kafka in a temporary folder, on free ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from hypothesis import settings as hypothesis_settings
from kafka import KafkaConsumer, TopicPartition

from services.local.kafka import free_port, free_port_run
from services.settings import Settings
from services.local.stack import LocalStack
from services.users import new_token, publish_user, user_record
from tests.waiting import eventually
from topics.models import Role

# No example of a property is failed for its time (hypothesis's default deadline is 200 ms): a timing
# never decides a test, and make test's two lanes share two cores with brokers and browsers.
hypothesis_settings.register_profile("yingji", deadline=None)
hypothesis_settings.load_profile("yingji")


@dataclass
class Service:
    api: str
    bootstrap: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen
    worker_metrics: list[str] = field(default_factory=list)  # one URL per worker `yingji run` started
    tokens: dict[str, str] = field(default_factory=dict)
    warm_incident: str = ""  # the incident start_service raised to see the worker decide

    def worker_metrics_text(self, timeout: float = 30) -> str:
        """Every worker's exposition, one after the other: a sum over lines sums over the workers."""
        return eventually(lambda: "\n".join(httpx.get(url, timeout=10).text for url in self.worker_metrics),
                          until=lambda _: True, timeout=timeout, every=0.5,
                          retry_on=(httpx.ConnectError,),  # a worker still starting (or restarting)
                          what="every worker's metrics")

    def client(self, role: str = "duty_officer") -> httpx.Client:
        """An HTTP client signed in as a user of that role ('anonymous': none)."""
        headers = {} if role == "anonymous" else {"Authorization": f"Bearer {self.tokens[role]}"}
        return httpx.Client(base_url=self.api, timeout=15, headers=headers)

    def read_topic(self, topic: str, *, settle_s: float = 1.0) -> list:
        return read_records(self.bootstrap, topic, settle_s=settle_s)

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def read_records(bootstrap: str, topic: str, *, settle_s: float = 1.5) -> list:
    """Every record of a topic from the beginning (no consumer group), until it is quiet for settle_s.
    settle_s=0: every record written before the call (up to the end offsets the call looks up), and no
    waiting for more; what a probe inside `eventually` wants: the next try reads what came meanwhile; and
    what a topic the workers go on writing needs (reminders and escalations of thousands of open incidents:
    never quiet for long)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=int(settle_s * 1000) if settle_s else 30_000,
                             max_partition_fetch_bytes=8 * 1024 * 1024)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        if settle_s:
            return list(consumer)
        ends = {tp: end for tp, end in consumer.end_offsets(parts).items() if consumer.position(tp) < end}
        out = []
        while ends:
            batch = consumer.poll(timeout_ms=30_000)
            if not batch:
                raise AssertionError(f"{topic}: nothing read within 30 s, {ends} still to read")
            for tp, records in batch.items():
                out.extend(r for r in records if r.offset < ends.get(tp, 0))
            ends = {tp: end for tp, end in ends.items() if consumer.position(tp) < end}
        return out
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, *, settle_s: float = 1.5) -> list[dict]:
    """The same, each value decoded as JSON."""
    return [json.loads(r.value) for r in read_records(bootstrap, topic, settle_s=settle_s)]


def unique_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


PORT_TRIES = 3  # a free port taken by another process before ours bound it (make test's two lanes both start stacks)


def start_service(data_dir: Path) -> Service:
    """`yingji run` on a local Kafka in `data_dir`, on free ports, with a user per role, back once the
    worker has decided a first incident (`warm_incident`). RuntimeError when it does not start; the
    caller stops it with `stop_service`. The session's `service` and the modules that need a stack of
    their own (tests/pages/test_board_scale.py, tests/bench/board_page.py) start it this one way.
    A port found free and taken by another process before the stack bound it (seen in CI) is no failure of
    the stack: it starts again on other ports, in a folder of its own, up to PORT_TRIES times."""
    for attempt in range(PORT_TRIES):
        here = data_dir if attempt == 0 else data_dir / f"ports-taken-{attempt}"
        here.mkdir(parents=True, exist_ok=True)
        try:
            return _start_service(here)
        except RuntimeError as exc:
            if "address already in use" not in str(exc) or attempt == PORT_TRIES - 1:
                raise
    raise AssertionError("unreachable")


def _start_service(data_dir: Path) -> Service:
    kafka_port, controller_port, api_port = free_port(), free_port(), free_port()
    workers = Settings().worker_processes  # what `yingji run` starts here: worker i serves worker_port + i
    worker_port = free_port_run(workers)  # below the range free_port draws from: no overlap with those
    env = {
        **os.environ,
        "YINGJI_DATA_DIR": str(data_dir),
        "YINGJI_KAFKA_PORT": str(kafka_port),
        "YINGJI_KAFKA_CONTROLLER_PORT": str(controller_port),
        "YINGJI_API_PORT": str(api_port),
        "YINGJI_WORKER_WEB_PORT": str(worker_port),
        "YINGJI_SINKS_SMTP_PORT": str(free_port()),  # `yingji run` starts the local sinks: never on 8025/8026
        "YINGJI_SINKS_HTTP_PORT": str(free_port()),
        "YINGJI_DELIVERY_WEB_PORT": str(free_port()),
        "YINGJI_LOG_JSON": "true",
    }
    env.pop("YINGJI_BOOTSTRAP_SERVERS", None)
    log_path = data_dir / "run.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()  # the child has its own copy of the descriptor
    api = f"http://127.0.0.1:{api_port}"
    svc = Service(api=api, bootstrap=f"127.0.0.1:{kafka_port}", data_dir=data_dir, log_path=log_path, proc=proc,
                  worker_metrics=[f"http://127.0.0.1:{worker_port + i}/metrics" for i in range(workers)])
    try:
        _until_ready(svc, deadline=time.monotonic() + 120)
    except httpx.HTTPError as exc:  # the API went away after saying it was up: its log says why
        _kill_group(proc)
        raise RuntimeError(f"yingji run stopped answering ({exc!r}):\n{svc.logs()[-3000:]}") from exc
    except BaseException:
        _kill_group(proc)
        raise
    return svc


def _until_ready(svc: Service, *, deadline: float) -> None:
    proc = svc.proc

    def started() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"yingji run exited:\n{svc.logs()[-3000:]}")
        return "yingji API:" in svc.logs()

    try:
        eventually(started, timeout=120, every=0.3, what="yingji run to start")
    except AssertionError:
        raise RuntimeError(f"yingji run did not start:\n{svc.logs()[-3000:]}") from None
    svc.tokens["admin"] = (svc.data_dir / "admin.token").read_text().strip()
    with svc.client("admin") as admin:
        for role in ("duty_officer", "commander", "drill_controller", "viewer"):
            resp = admin.post("/users", json={"name": f"e2e-{role}", "role": role})
            if resp.status_code != 201:
                raise RuntimeError(f"POST /users for {role}: {resp.status_code} {resp.text}")
            svc.tokens[role] = resp.json()["token"]
    # the worker joins its group a few seconds after the API answers: wait for a first decision
    warm = {"type": "燃气事故", "occurred_at": "2026-11-22T09:15:00+08:00", "received_at": "2026-11-22T09:20:00+08:00"}
    with svc.client() as c:
        svc.warm_incident = c.post("/incidents", json=warm).json()["incident_id"]
        try:
            eventually(lambda: c.get(f"/incidents/{svc.warm_incident}").json()["status"] == "decided",
                       timeout=max(1.0, deadline - time.monotonic()), every=0.2,
                       what=lambda _: f"a first decision; the worker never decided:\n{svc.logs()[-3000:]}")
        except AssertionError as exc:
            raise RuntimeError(str(exc)) from None


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGINT first: `yingji run` stops the broker, sinks and stages it started in sessions of their own
    (a SIGKILL alone left them running after a failed start); SIGKILL to its group after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
        return
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def stop_service(svc: Service) -> None:
    """SIGINT to `yingji run` (it stops what it started); SIGKILL to its group after 60 s, and raise."""
    os.killpg(svc.proc.pid, signal.SIGINT)
    try:
        svc.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        _kill_group(svc.proc)
        raise


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Service:
    try:
        svc = start_service(tmp_path_factory.mktemp("yingji-data"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield svc
    stop_service(svc)


def start_api_on_a_free_port(st: LocalStack, tries: int = 3) -> None:
    """The stack's API, started again on another port when the one picked was taken meanwhile (a port
    free a moment ago can become a client's ephemeral port)."""
    for attempt in range(tries):
        try:
            st.start_api()
            return
        except RuntimeError:
            if attempt == tries - 1:
                raise
            st.settings = st.settings.model_copy(update={"api_port": free_port()})


@contextmanager
def separate_stack(data_dir: Path) -> Iterator[LocalStack]:
    """Broker, worker and API as separate processes in `data_dir`, so a test can kill one of them; every
    process's output in data_dir/stack.log; `token`: a duty officer's."""
    settings = Settings(data_dir=data_dir, kafka_port=free_port(), kafka_controller_port=free_port(),
                        api_port=free_port(), worker_web_port=free_port_run(1), app_id=unique_id("stack"))
    log = (data_dir / "stack.log").open("wb")
    st = LocalStack(settings, log=log)
    try:
        st.start_broker()
        token = new_token()
        publish_user(settings.bootstrap, user_record("stack-officer", Role.DUTY_OFFICER, token,
                                                     now=datetime.now(timezone.utc), by="test"))
        st.start_worker()
        start_api_on_a_free_port(st)
        st.token = token  # type: ignore[attr-defined]
        yield st
    finally:
        st.stop()
        log.close()


@pytest.fixture()
def stack(tmp_path):
    """A test's own stack (separate_stack)."""
    with separate_stack(tmp_path) as st:
        yield st


def pytest_addoption(parser):
    parser.addoption("--fuzz-examples", type=int, default=8,
                     help="generated cases per API operation in tests/e2e/test_fuzz.py (40 via `make fuzz`)")
    parser.addoption("--fuzz-roles", default="duty_officer",
                     help="roles the OpenAPI contract run signs in as, comma-separated "
                          "(`make fuzz`: duty_officer,commander; each run is minutes on two cores)")
    parser.addoption("--delivery-notices", type=int, default=250,
                     help="notices in flight for the delivery stage's kill test (issue 19: 10000 via `make faults-delivery`)")
    parser.addoption("--delivery-kills", type=int, default=1, help="times the delivery stage is SIGKILLed (issue 19: 5)")
    parser.addoption("--board-incidents", type=int, default=200,
                     help="incidents on the board for its scale test (issue 21: 5000 via `make board-scale`)")
    parser.addoption("--fault-incidents", type=int, default=500,
                     help="incidents in flight for the worker-kill fault test (issue 5: 10000 via `make faults`)")
    parser.addoption("--cluster-rate", type=float, default=100,
                     help="reports a second posted during the three-node cluster's fault runs "
                          "(tests/e2e/test_faults_cluster.py; `make faults-cluster`: 100)")
    parser.addoption("--cluster-seconds", type=float, default=60,
                     help="seconds of load in each of those runs; the fault comes a quarter in, the restart half-way "
                          "(`make faults-cluster`: 60)")
    parser.addoption("--standby-rate", type=float, default=10,
                     help="reports a second posted at the primary before the standby site takes over "
                          "(tests/e2e/test_standby.py; `make standby-drill`: 20)")
    parser.addoption("--standby-seconds", type=float, default=12,
                     help="seconds of load before the primary is cut (`make standby-drill`: 60)")
    parser.addoption("--standby-stall", type=float, default=2.0,
                     help="seconds MirrorMaker 2 is frozen (SIGSTOP) before the cut, so the cut loses reports and their "
                          "re-filing at the standby runs (`make standby-drill`: 0, the mirror's own lag)")
    parser.addoption("--standby-recover", action="store_true",
                     help="after the standby has taken over, start the primary's broker again from its disk and count "
                          "what the cut lost for good (`make standby-drill`; ten seconds more than make test's run)")


# --- the smoke bench beside the layers without a broker (tests/bench/test_bench_smoke.py) ----------------

BENCH_SMOKE = "tests/bench/test_bench_smoke.py::test_smoke_bench_reports_every_figure"
# the folders whose tests need no broker, no browser and no other process of ours: one pytest process on
# one core, the other core free for the smoke bench's brokers and workers meanwhile
QUIET = ("tests/playbooks/", "tests/services/", "tests/topics/", "tests/test_layers.py")
_BENCH_AT: list[str] = []  # the node id at whose set-up the bench starts


@pytest.hookimpl(trylast=True)  # after -m/-k have deselected
def pytest_collection_modifyitems(session, config, items):
    """When the session runs the smoke bench and ends with tests of QUIET, the bench is moved last and
    started in the background as the first of those trailing QUIET tests begins."""
    bench = [item for item in items if item.nodeid == BENCH_SMOKE]
    if not bench:
        return
    rest = [item for item in items if item.nodeid != BENCH_SMOKE]
    tail = 0
    while tail < len(rest) and rest[len(rest) - 1 - tail].nodeid.startswith(QUIET):
        tail += 1
    if not tail:
        return
    items[:] = rest + bench
    _BENCH_AT[:] = [rest[len(rest) - tail].nodeid]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if _BENCH_AT and item.nodeid == _BENCH_AT[0]:
        from tests.bench.test_bench_smoke import BACKGROUND, start_in_background

        if not BACKGROUND:
            run = start_in_background()
            item.config.add_cleanup(run.stop)  # an interrupted session (-x, Ctrl-C) leaves no bench behind
