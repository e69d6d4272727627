"""Faults (issue 5 §4): the worker SIGKILLed with incidents in flight, and the broker stopped.

Every report answered 202 has its decision; every notification is there for each dedup key (at
least once: a record emitted just before the kill may be emitted again after it, under the same
dedup key — counted and reported); with the broker down the API answers 503 with Retry-After, and
nothing acknowledged is lost once it is back.

The module's tests share one stack of the module's own (not the session's): each leaves it whole (the
worker started again, the broker back) and checks only the reports it posted itself.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import read_all, separate_stack
from tests.e2e.faults import body, check_notifications, post_many, wait_decided
from topics.catalog import INCIDENTS_DECIDED, NOTIFICATIONS_REQUESTED

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with separate_stack(tmp_path_factory.mktemp("faults")) as st:
        yield st


def test_worker_killed_with_incidents_in_flight(stack, request):
    n = request.config.getoption("--fault-incidents")
    api = stack.settings.api_url

    async def scenario():
        posting = asyncio.create_task(post_many(api, stack.token, n))
        await asyncio.sleep(3)  # a few seconds of traffic, then a crash in the middle of it
        stack.kill_worker()
        await asyncio.sleep(2)
        stack.start_worker()
        return await posting

    acked, statuses = asyncio.run(scenario())
    assert statuses[202] == len(acked) and len(acked) > 0
    missing = wait_decided(stack.settings.bootstrap, set(acked), timeout=180)
    notes = check_notifications(read_all(stack.settings.bootstrap, NOTIFICATIONS_REQUESTED.name), set(acked))
    print(f"\nfault figures: in flight={n} acked={len(acked)} statuses={dict(statuses)} kills=1 "
          f"lost={len(missing)} notification records={notes.records} dedup keys={notes.dedup_keys} "
          f"repeated records={notes.repeated_records}")
    assert not missing, f"{len(missing)} acknowledged reports never decided"
    assert not notes.incidents_without  # every incident's notifications exist (a repeat is the same one)


def test_broker_down_means_503_with_retry_after_and_nothing_acked_is_lost(stack):
    headers = {"Authorization": f"Bearer {stack.token}"}
    client = httpx.Client(base_url=stack.settings.api_url, timeout=30, headers=headers)
    before = [client.post("/incidents", json=body()) for _ in range(5)]
    assert all(r.status_code == 202 for r in before)
    deadline = time.monotonic() + 60  # the worker is up and deciding before the outage
    while not {r.json()["incident_id"] for r in before} <= {
            e["incident_id"] for e in read_all(stack.settings.bootstrap, INCIDENTS_DECIDED.name, settle_s=0)}:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    stack.broker.stop()
    started = time.monotonic()
    down = client.post("/incidents", json=body())
    answered_in = time.monotonic() - started
    assert down.status_code == 503, down.text
    assert int(down.headers["Retry-After"]) > 0
    print(f"\nbroker down: 503 after {answered_in:.1f}s")
    stack.broker.start()
    acked = [r.json()["incident_id"] for r in before]
    deadline = time.monotonic() + 90
    while True:  # clients retry after Retry-After; the API's producer reconnects by itself
        resp = client.post("/incidents", json=body())
        if resp.status_code == 202:
            acked.append(resp.json()["incident_id"])
            break
        assert time.monotonic() < deadline, resp.text
        time.sleep(1)
    while True:  # the worker waited and resumes: every acknowledged report is decided
        decided = {e["incident_id"] for e in read_all(stack.settings.bootstrap, INCIDENTS_DECIDED.name, settle_s=0)}
        if set(acked) <= decided:
            break
        assert time.monotonic() < deadline, set(acked) - decided
        time.sleep(1)
    assert stack.worker.poll() is None, "the worker died during the outage"
    client.close()
