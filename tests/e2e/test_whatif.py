"""`yingji whatif` on the local Kafka (issue 24): incidents raised and filed through the API, then the CLI run
on that broker with three revisions of the plan: a revised threshold (the one incident between the old threshold
and the new differs, its grade with the rule and section; the others do not), a type's lead unit moved (both
incidents of that type, not the fire) and a shorter phone-report deadline (every incident's due time, nothing
else); nothing is written to any topic and no consumer group is joined."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from playbooks.plan import DATA_DIR
from tests.conftest import unique_id
from tests.playbooks.test_whatif import DEADLINE, LEAD_MOVED
from tests.waiting import eventually
from topics.catalog import CATALOG

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _end_offsets(bootstrap: str) -> dict:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(spec.name, p) for spec in CATALOG for p in sorted(consumer.partitions_for_topic(spec.name) or ())]
        return {(tp.topic, tp.partition): off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def _groups(bootstrap: str) -> set[str]:
    """Every consumer group the cluster knows, each as text (its name among its fields)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {json.dumps(g, default=str, sort_keys=True, ensure_ascii=False) for g in admin.list_groups()}
    finally:
        admin.close()


def _raise(client, type_: str, street: str, facts: dict) -> str:
    now = datetime.now(timezone.utc)
    resp = client.post("/incidents", json={
        "report_id": unique_id("whatif"), "type": type_, "occurred_at": (now - timedelta(minutes=5)).isoformat(),
        "received_at": now.isoformat(), "location": {"street": street}, "facts": facts})
    assert resp.status_code == 202, resp.text
    return resp.json()["incident_id"]


def test_whatif_on_the_log_reads_and_never_writes(service, tmp_path):
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    with service.client() as c:
        g3 = _raise(c, "燃气事故", "梨园镇", {"deaths": 3})
        g5 = _raise(c, "燃气事故", "宋庄镇", {"deaths": 5})
        f1 = _raise(c, "火灾事故", "中仓街道", {"injuries": 1})
        for iid in (g3, g5, f1):  # decided: their filings are then accepted
            eventually(lambda: c.get(f"/incidents/{iid}").json(), until=lambda b: b.get("status") != "reported",
                       timeout=30, every=0.2, what=f"{iid} decided")
        unit = "district_urban_management_commission"
        r = c.post(f"/incidents/{g3}/reports", json={"kind": "phone_report", "unit_id": unit,
                                                    "filed_at": datetime.now(timezone.utc).isoformat(),
                                                    "filed_by": "值班员", "content": "电话报告"})
        assert r.status_code == 202, r.text
    until = datetime.now(timezone.utc) + timedelta(seconds=1)
    data = tmp_path / "revised"
    shutil.copytree(DATA_DIR, data)
    grading = data / "grading.yaml"
    grading.write_text(grading.read_text(encoding="utf-8").replace(
        "thresholds: {特别重大: 30, 重大: 10, 较大: 3}", "thresholds: {特别重大: 30, 重大: 10, 较大: 4}", 1), encoding="utf-8")
    env = {**os.environ, "YINGJI_BOOTSTRAP_SERVERS": service.bootstrap, "PYTHONPATH": str(ROOT)}
    eventually(lambda: _end_offsets(service.bootstrap), until=lambda _: True, timeout=10, what="end offsets")
    groups_before = _groups(service.bootstrap)
    offsets_before = _end_offsets(service.bootstrap)
    out = subprocess.run([sys.executable, "-m", "services.cli", "whatif", "--plan", str(data), "--from", start.isoformat(),
                          "--to", until.isoformat(), "--format", "json"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    offsets_after = _end_offsets(service.bootstrap)
    # the API alone writes reports and commands, and the test posted nothing meanwhile: the CLI wrote none
    for topic in ("yingji.incidents.reported", "yingji.incidents.commands"):
        assert {k: v for k, v in offsets_after.items() if k[0] == topic} == \
            {k: v for k, v in offsets_before.items() if k[0] == topic}
    assert groups_before and not {g for g in _groups(service.bootstrap) - groups_before if "whatif" in g}
    report = json.loads(out.stdout)
    ours = {c["incident_id"]: c for c in report["incidents"] if c["incident_id"] in (g3, g5, f1)}
    assert set(ours) == {g3}, ours.keys()
    grade = next(d for d in ours[g3]["differences"] if d["aspect"] == "grade")
    assert (grade["before"], grade["after"], grade["rule"]) == ("较大", "一般", "grade.production_safety.below_thresholds")
    assert report["totals"]["incidents"] >= 3

    # the same recorded history under two more revisions (issue 24: each gives exactly its differences)
    def whatif(revision: tuple[str, str, str], name: str) -> dict:
        file, old, new = revision
        d = tmp_path / name
        shutil.copytree(DATA_DIR, d)
        text = (d / file).read_text(encoding="utf-8")
        assert old in text, (file, old)
        (d / file).write_text(text.replace(old, new, 1), encoding="utf-8")
        run = subprocess.run([sys.executable, "-m", "services.cli", "whatif", "--plan", str(d), "--from", start.isoformat(),
                              "--to", until.isoformat(), "--format", "json"], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        return {c["incident_id"]: c for c in json.loads(run.stdout)["incidents"] if c["incident_id"] in (g3, g5, f1)}

    moved = whatif(LEAD_MOVED, "lead")  # 燃气事故's lead unit moved: both gas accidents, not the fire
    assert set(moved) == {g3, g5}, moved.keys()
    for c in moved.values():
        lead = next(d for d in c["differences"] if d["aspect"] == "lead_units")
        assert (lead["before"], lead["after"], lead["rule"], lead["section"]) == ("区城市管理委", "区住房和城乡建设委",
                                                                                "type.lead_units", "2.3.6")
        assert {d["aspect"] for d in c["differences"]} <= {"lead_units", "commanders", "notice", "obligation"}
    shorter = whatif(DEADLINE, "deadline")  # the phone report due in 5 minutes, not 10: every incident's due time
    assert set(shorter) == {g3, g5, f1}, shorter.keys()
    for c in shorter.values():
        assert {(d["aspect"], d["subject"], d["rule"]) for d in c["differences"] if d["aspect"] == "obligation"} == \
            {("obligation", "电话报告", "obligation.phone_report")}
        assert not {d["aspect"] for d in c["differences"]} & {"grade", "level", "lead_units", "commanders"}

    # an invalid revision is refused before the log is read: exit 2, file, line and field
    grading.write_text(grading.read_text(encoding="utf-8").replace("fact: deaths_incl_missing", "fact: deths", 1),
                       encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "services.cli", "whatif", "--plan", str(data), "--from", start.isoformat(),
                          "--to", until.isoformat()], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "grading.yaml, line 12: families.production_safety.criteria.0.fact" in bad.stderr
