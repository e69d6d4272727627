"""Restarts change nothing a user sees (issue 4 §6): the worker is SIGKILLed while obligations are
open, some fall due while it is down; after restart each due obligation yields exactly one breach,
marked as detected late, and no reminder, breach or escalation is sent twice. Also: a broker restart
loses nothing acknowledged.

The module's tests share one stack of the module's own (not the session's): each leaves it whole (the
worker started again, the broker back) and counts only the incidents it raised itself."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.conftest import read_all, separate_stack, unique_id
from tests.waiting import eventually
from topics.catalog import ESCALATIONS, INCIDENT_EVENTS, NOTIFICATIONS_REQUESTED

pytestmark = pytest.mark.e2e
N_INCIDENTS = 30


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with separate_stack(tmp_path_factory.mktemp("restart")) as st:
        yield st


def post_due_soon(client: httpx.Client, seconds: float) -> str:
    now = datetime.now(timezone.utc)
    body = {"report_id": unique_id("k"), "type": "燃气事故",
            "occurred_at": (now - timedelta(minutes=20)).isoformat(),
            "received_at": (now - timedelta(minutes=10) + timedelta(seconds=seconds)).isoformat()}
    resp = client.post("/incidents", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()["incident_id"]


def wait_until(predicate, timeout: float, what: str):
    return eventually(predicate, timeout=timeout, every=0.2, what=what)


def test_worker_sigkill_while_obligations_fall_due(stack):
    client = httpx.Client(base_url=stack.settings.api_url, timeout=15,
                          headers={"Authorization": f"Bearer {stack.token}"})
    # the worker joins its group first: one warm-up incident decided
    warm = post_due_soon(client, 3600)
    wait_until(lambda: client.get(f"/incidents/{warm}").json()["status"] == "decided", 60, "first decision")
    ids = [post_due_soon(client, 8) for _ in range(N_INCIDENTS)]  # phone reports due in 8 s
    wait_until(lambda: all(client.get(f"/incidents/{i}").json()["obligations"] for i in ids), 30, "decisions")
    stack.kill_worker()
    # every phone report falls due while the worker is down: until the latest due time the API gave, and 2 s more
    due = [datetime.fromisoformat(o["due_at"]) for i in ids for o in client.get(f"/incidents/{i}").json()["obligations"]
           if o["kind"] == "phone_report"]
    assert len(due) == N_INCIDENTS
    time.sleep(max(0.0, (max(due) - datetime.now(timezone.utc)).total_seconds() + 2))
    stack.start_worker()

    def breaches(settle_s: float = 1.5) -> list[dict]:
        return [e for e in read_all(stack.settings.bootstrap, ESCALATIONS.name, settle_s=settle_s)
                if e["kind"] == "breach" and e["obligation"] == "phone_report" and e["incident_id"] in ids]

    found = wait_until(lambda: (b := breaches(0)) and len({e["incident_id"] for e in b}) == N_INCIDENTS and b,
                       90, "a breach for every incident")
    time.sleep(2)
    found = breaches()
    per_incident = Counter(e["incident_id"] for e in found)
    assert set(per_incident) == set(ids)  # none lost
    assert max(per_incident.values()) == 1, per_incident  # none repeated
    assert all(e["details"]["detected_late"] for e in found)  # and each says it was noticed late
    events = [e for e in read_all(stack.settings.bootstrap, INCIDENT_EVENTS.name) if e["incident_id"] in ids]
    assert max(Counter(e["id"] for e in events).values()) == 1
    kinds = Counter((e["incident_id"], e["kind"], e["obligation"], e["details"].get("step")) for e in events
                    if e["kind"] in ("reminder", "breach", "escalation"))
    assert max(kinds.values()) == 1, [k for k, v in kinds.items() if v > 1]
    notes = [n for n in read_all(stack.settings.bootstrap, NOTIFICATIONS_REQUESTED.name) if n["incident_id"] in ids]
    dup = [k for k, v in Counter(n["dedup_key"] for n in notes).items() if v > 1]
    assert dup == []
    client.close()


def test_broker_restart_loses_nothing_acknowledged(stack):
    client = httpx.Client(base_url=stack.settings.api_url, timeout=15,
                          headers={"Authorization": f"Bearer {stack.token}"})
    ids = [post_due_soon(client, 3600) for _ in range(10)]
    wait_until(lambda: all(client.get(f"/incidents/{i}").json()["status"] == "decided" for i in ids), 60, "decided")
    stack.broker.stop()
    stack.broker.start()
    later = [post_due_soon(client, 3600) for _ in range(5)]
    wait_until(lambda: all(client.get(f"/incidents/{i}").json()["status"] == "decided" for i in later), 90,
               "decisions after the broker restart")
    events = read_all(stack.settings.bootstrap, INCIDENT_EVENTS.name)
    assert {i for i in ids + later} <= {e["incident_id"] for e in events if e["kind"] == "decided"}
    client.close()


def test_rebalance_to_a_second_worker_keeps_one_breach_each(stack):
    """A second worker joins while obligations fall due: partitions move, tables are recovered on the
    new owner, and still each due obligation yields exactly one breach, no step sent twice."""
    from services.local.kafka import free_port

    client = httpx.Client(base_url=stack.settings.api_url, timeout=15,
                          headers={"Authorization": f"Bearer {stack.token}"})
    warm = post_due_soon(client, 3600)
    wait_until(lambda: client.get(f"/incidents/{warm}").json()["status"] == "decided", 60, "first decision")
    ids = [post_due_soon(client, 6 + i * 0.2) for i in range(N_INCIDENTS)]  # due over the next ~12 s
    wait_until(lambda: all(client.get(f"/incidents/{i}").json()["obligations"] for i in ids), 30, "decisions")
    stack.start_second_worker(free_port())

    def breaches(settle_s: float = 1.5) -> list[dict]:
        return [e for e in read_all(stack.settings.bootstrap, ESCALATIONS.name, settle_s=settle_s)
                if e["kind"] == "breach" and e["obligation"] == "phone_report" and e["incident_id"] in ids]

    wait_until(lambda: len({e["incident_id"] for e in breaches(0)}) == N_INCIDENTS, 90, "a breach for every incident")
    time.sleep(3)
    per_incident = Counter(e["incident_id"] for e in breaches())
    assert set(per_incident) == set(ids) and max(per_incident.values()) == 1, per_incident
    events = [e for e in read_all(stack.settings.bootstrap, INCIDENT_EVENTS.name) if e["incident_id"] in ids]
    kinds = Counter((e["incident_id"], e["kind"], e["obligation"], e["details"].get("step")) for e in events
                    if e["kind"] in ("reminder", "breach", "escalation"))
    assert max(kinds.values()) == 1, [k for k, v in kinds.items() if v > 1]
    assert all(p.poll() is None for p in stack.extra_workers) and stack.worker.poll() is None
    client.close()
