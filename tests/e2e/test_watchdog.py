"""A worker that stops taking records while reports wait restarts itself and decides them all.

The fault is injected (the first worker process pauses its inbound partitions after 20 records, as
the stuck consumer seen under load did); the watchdog notices lag without progress and restarts the
worker in place: same process id, a fresh Faust app, every acknowledged report decided.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import read_all
from tests.e2e.test_faults import body
from topics.catalog import INCIDENTS_DECIDED

pytestmark = pytest.mark.e2e


def test_stalled_worker_restarts_itself_and_decides_everything(stack):
    stack.kill_worker()
    worker = stack.start_worker(env={"YINGJI_FAULT_STALL_AFTER": "20", "YINGJI_STALL_RESTART_S": "4"})
    client = httpx.Client(base_url=stack.settings.api_url, timeout=30,
                          headers={"Authorization": f"Bearer {stack.token}"})
    acked = []
    for _ in range(60):
        resp = client.post("/incidents", json=body())
        assert resp.status_code == 202, resp.text
        acked.append(resp.json()["incident_id"])
    deadline = time.monotonic() + 120
    while True:
        decided = {e["incident_id"] for e in read_all(stack.settings.bootstrap, INCIDENTS_DECIDED.name)}
        if set(acked) <= decided or time.monotonic() > deadline:
            break
        time.sleep(1)
    log = (stack.settings.data_dir / "stack.log").read_text(encoding="utf-8", errors="replace")
    assert "fault_injected_stall" in log
    assert set(acked) <= decided, f"{len(set(acked) - decided)} of {len(acked)} never decided"
    assert "worker_stalled_restarting" in log
    assert worker.poll() is None, "the worker restarts in place: the same process keeps running"
    client.close()


def test_records_skipped_unseen_are_read_again_in_order(stack):
    stack.kill_worker()
    worker = stack.start_worker(env={"YINGJI_FAULT_SKIP_AFTER": "20"})
    client = httpx.Client(base_url=stack.settings.api_url, timeout=30,
                          headers={"Authorization": f"Bearer {stack.token}"})
    acked = []
    for _ in range(60):
        resp = client.post("/incidents", json=body())
        assert resp.status_code == 202, resp.text
        acked.append(resp.json()["incident_id"])
    deadline = time.monotonic() + 120
    while True:
        decided = {e["incident_id"] for e in read_all(stack.settings.bootstrap, INCIDENTS_DECIDED.name)}
        if set(acked) <= decided or time.monotonic() > deadline:
            break
        time.sleep(1)
    log = (stack.settings.data_dir / "stack.log").read_text(encoding="utf-8", errors="replace")
    assert log.count("fault_injected_skip") >= 1
    assert set(acked) <= decided, f"{len(set(acked) - decided)} of {len(acked)} never decided"
    assert "records_skipped_restarting" in log
    assert worker.poll() is None
    client.close()
