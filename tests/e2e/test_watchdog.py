"""A worker that stops taking records while reports wait restarts itself and decides them all.

The fault is injected (the first worker process pauses its inbound partitions after 20 records, as
the stuck consumer seen under load did); the watchdog notices lag without progress and restarts the
worker in place: same process id, a fresh Faust app, every acknowledged report decided.

The module's tests share one broker and API (a stack of the module's own): each test replaces the worker
with one started with its fault, and reads only the part of the stack's log written since.
"""

from __future__ import annotations


import httpx
import pytest

from tests.conftest import read_all, separate_stack
from tests.waiting import eventually
from tests.e2e.faults import body
from topics.catalog import INCIDENTS_DECIDED

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with separate_stack(tmp_path_factory.mktemp("watchdog")) as st:
        yield st


def run_with_fault(stack, fault: dict[str, str], n: int = 60) -> tuple[set[str], set[str], str, object]:
    """The worker replaced by one started with a fault injected; n reports posted; what was acknowledged and
    decided, and the stack's log since the replacement."""
    log_path = stack.settings.data_dir / "stack.log"
    stack.kill_worker()
    mark = log_path.stat().st_size
    worker = stack.start_worker(env=fault)
    client = httpx.Client(base_url=stack.settings.api_url, timeout=30,
                          headers={"Authorization": f"Bearer {stack.token}"})
    acked = set()
    for _ in range(n):
        resp = client.post("/incidents", json=body())
        assert resp.status_code == 202, resp.text
        acked.add(resp.json()["incident_id"])
    client.close()
    decided = eventually(lambda: {e["incident_id"] for e in read_all(stack.settings.bootstrap, INCIDENTS_DECIDED.name, settle_s=0)},
                         until=lambda decided: acked <= decided, timeout=120, every=1, last_on_timeout=True)
    with log_path.open("rb") as f:
        f.seek(mark)
        log = f.read().decode("utf-8", errors="replace")
    return acked, decided, log, worker


def test_stalled_worker_restarts_itself_and_decides_everything(stack):
    acked, decided, log, worker = run_with_fault(stack, {"YINGJI_FAULT_STALL_AFTER": "20", "YINGJI_STALL_RESTART_S": "4"})
    assert "fault_injected_stall" in log
    assert acked <= decided, f"{len(acked - decided)} of {len(acked)} never decided"
    assert "worker_stalled_restarting" in log
    assert worker.poll() is None, "the worker restarts in place: the same process keeps running"


def test_records_skipped_unseen_are_read_again_in_order(stack):
    acked, decided, log, worker = run_with_fault(stack, {"YINGJI_FAULT_SKIP_AFTER": "20"})
    assert log.count("fault_injected_skip") >= 1
    assert acked <= decided, f"{len(acked - decided)} of {len(acked)} never decided"
    assert "records_skipped_restarting" in log
    assert worker.poll() is None
