"""Warm standby tables (issue 22 item 2): with two workers in the group each keeps a copy of the other's
partitions' tables (Faust's table_standby_replicas, `worker_standby_replicas`), so when one dies the other
takes its partitions over with their incidents already on its disk.

Shown on the local Kafka: worker B joins worker A; A decides reports on its partitions; B's own RocksDB
files (opened read-only beside the running worker) hold those incidents before anything happens to A;
A is SIGKILLed; B takes every partition and goes on with A's incidents (a follow-up to one of them re-grades
it from the state A left: the table, not a fresh start), each report decided.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from rocksdict import AccessType, Options, Rdict

from services.kafka_topics import partition_of
from services.local.kafka import free_port
from services.settings import Settings
from tests.conftest import read_all, unique_id
from tests.e2e.faults import group_owners
from tests.waiting import eventually
from topics.catalog import INCIDENTS_DECIDED, INCIDENTS_REPORTED

pytestmark = pytest.mark.e2e
PER_PARTITION = 3  # reports decided on each of the dying worker's partitions


def report(report_id: str) -> dict:
    now = datetime.now(timezone.utc)
    return {"report_id": report_id, "type": "道路交通事故", "location": {"street": "宋庄镇"},
            "occurred_at": (now - timedelta(minutes=2)).isoformat(), "received_at": now.isoformat(),
            "facts": {"injuries": 1}}


def ids_on(partitions: set[int], per_partition: int, count: int) -> list[str]:
    """Report ids (the incidents' keys) that fall on the given partitions, per_partition on each."""
    found: dict[int, list[str]] = {p: [] for p in partitions}
    while any(len(v) < per_partition for v in found.values()):
        rid = unique_id("w")
        p = partition_of(rid, count)
        if p in found and len(found[p]) < per_partition:
            found[p].append(rid)
    return [rid for v in found.values() for rid in v]


def table_keys(worker_dir: Path, partition: int) -> set[str]:
    """The incident ids in a worker's RocksDB file for one partition of its table, read-only (the worker
    holds the lock and goes on writing)."""
    found = sorted(worker_dir.rglob(f"*incidents*-{partition}.db"))
    if not found or not (found[0] / "CURRENT").is_file():  # not there yet, or RocksDB still making it (seen in CI)
        return set()
    db = Rdict(str(found[0]), options=Options(raw_mode=True), access_type=AccessType.read_only())  # as Faust wrote it
    try:
        return {json.loads(k) for k in db.keys() if not k.startswith(b"__faust")}  # keys are JSON; one is its offset
    finally:
        db.close()


def test_a_dead_workers_partitions_are_taken_over_with_warm_tables(stack):
    st = stack
    s = st.settings
    client = httpx.Client(base_url=s.api_url, timeout=15, headers={"Authorization": f"Bearer {st.token}"})
    warm = client.post("/incidents", json=report(unique_id("w"))).json()["incident_id"]
    eventually(lambda: client.get(f"/incidents/{warm}").json()["status"], until=lambda v: v == "decided",
               timeout=60, every=0.3, what="worker A in its group")

    b_port = free_port()
    st.start_second_worker(b_port, env={"YINGJI_WORKER_STANDBY_BUFFER": "1"})  # its standby copy on disk at once
    # as the workers see themselves: the stack's environment over the defaults (its app_id is the API's)
    seen = Settings(**{"data_dir": s.data_dir, "worker_web_port": s.worker_web_port})
    a_id, group = seen.group_instance_id, seen.app_id
    b_dir = seen.model_copy(update={"worker_web_port": b_port}).worker_dir
    count = s.topic_partitions

    def split() -> dict[str, set[int]]:
        return group_owners(s.bootstrap, group)

    shares = eventually(split, until=lambda o: len(o) == 2 and all(o.values()), timeout=90, every=1,
                        what="the two workers sharing the partitions")
    a_parts = shares[a_id]
    ids = ids_on(a_parts, PER_PARTITION, count)
    for rid in ids:
        assert client.post("/incidents", json=report(rid)).status_code == 202
    eventually(lambda: [i for i in ids if client.get(f"/incidents/{i}").json()["status"] != "decided"],
               until=lambda left: not left, timeout=60, every=0.3, what="A's reports decided")
    assert group_owners(s.bootstrap, group)[a_id] == a_parts, "the partitions moved: the test's premise is gone"

    # B's standby copies on its own disk hold every incident A decided, before A dies
    def in_b() -> set[str]:
        return set().union(*(table_keys(b_dir, p) for p in a_parts)) & set(ids)

    # 90 s: with two other test runs beside make test's lanes (load 10) B's standby had read nothing in 30
    eventually(in_b, until=lambda held: held == set(ids), timeout=90, every=0.5,
               what="worker B's standby tables holding worker A's incidents")

    st.kill_worker()  # A, SIGKILLed
    killed = time.monotonic()
    eventually(split, until=lambda o: a_id not in o and len(o) == 1 and set(range(count)) in o.values(),
               timeout=90, every=1, what="worker B owning every partition")
    # a follow-up to one of A's incidents: B goes on from the state A left (re-graded, not a new incident)
    target = ids[0]
    before = client.get(f"/incidents/{target}").json()
    grade_before = before["decision"]["grade"]
    follow = {"kind": "followup", "unit_id": "district_emergency_bureau", "filed_at": datetime.now(timezone.utc).isoformat(),
              "filed_by": "值班员", "followup": {"facts": {"deaths": 12}}}
    assert client.post(f"/incidents/{target}/reports", json=follow).status_code == 202
    regraded = eventually(lambda: client.get(f"/incidents/{target}").json(),
                          until=lambda v: v["decision"]["grade"] != grade_before, timeout=90, every=0.5,
                          what="the follow-up handled by worker B")
    took = time.monotonic() - killed
    later = ids_on(a_parts, 1, count)
    for rid in later:
        assert client.post("/incidents", json=report(rid)).status_code == 202
    eventually(lambda: [i for i in later if client.get(f"/incidents/{i}").json()["status"] != "decided"],
               until=lambda left: not left, timeout=60, every=0.3, what="new reports on A's partitions decided by B")
    print(f"\nworker A SIGKILLed; worker B handled a follow-up to one of A's incidents {took:.1f} s after "
          f"(the group's 6 s session included); grade {grade_before} -> {regraded['decision']['grade']}")

    decided = Counter(d["incident_id"] for d in read_all(s.bootstrap, INCIDENTS_DECIDED.name)
                      if d["incident_id"] in set(ids) | set(later))
    assert set(decided) == set(ids) | set(later)
    assert st.extra_workers[0].poll() is None
    client.close()
