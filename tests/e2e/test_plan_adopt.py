"""Adopting a plan revision live, on the local Kafka (issue 24 item 3): reports flow through the API while
`yingji plan adopt` adopts a revision that moves 燃气事故's lead unit (区城市管理委 → 区应急局), then
`yingji plan rollback` goes back to the plan in force before. Every report is decided exactly once; on each
partition the versions go old → revision → old in log order, never back and forth; the revision's decisions
name its version and the new lead unit, the others the old; an incident open at the switch keeps its
obligations and its timeline says when its next record was handled under the revision. An invalid revision is
refused naming file, line and field, and nothing is written."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from playbooks.plan import DATA_DIR, load_plan
from tests.conftest import read_records, unique_id
from tests.playbooks.test_plan_switch import GAS_LEAD
from tests.waiting import eventually
from topics.catalog import DELIVERIES, INCIDENTS_DECIDED, INCIDENTS_REPORTED, PLAN_ADOPTIONS

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
OLD_LEAD, NEW_LEAD = "district_urban_management_commission", "district_emergency_bureau"


def _report(now: datetime) -> dict:
    return {"report_id": unique_id("adopt"), "type": "燃气事故", "occurred_at": (now - timedelta(minutes=2)).isoformat(),
            "received_at": now.isoformat(), "location": {"street": "梨园镇"}, "facts": {}}


class Flow:
    """Reports posted through the API, one every `every` seconds, until stopped."""

    def __init__(self, service, every: float = 0.25) -> None:
        self.service, self.every = service, every
        self.ids: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.service.client() as c:
            while not self._stop.is_set():
                r = c.post("/incidents", json=_report(datetime.now(timezone.utc)))
                if r.status_code == 202:
                    self.ids.append(r.json()["incident_id"])
                else:
                    self.errors.append(f"{r.status_code} {r.text[:200]}")
                self._stop.wait(self.every)

    def __enter__(self) -> "Flow":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)


def _cli(service, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "YINGJI_BOOTSTRAP_SERVERS": service.bootstrap, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "services.cli", "plan", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _decisions(service, ids: set[str]) -> dict[str, list[dict]]:
    """Every decision on the topic of the incidents `ids`, by incident (a service or a stack)."""
    bootstrap = service.bootstrap if hasattr(service, "bootstrap") else service.settings.bootstrap
    out: dict[str, list[dict]] = defaultdict(list)
    for r in read_records(bootstrap, INCIDENTS_DECIDED.name, settle_s=0):
        rec = json.loads(r.value)
        if rec["incident_id"] in ids:
            out[rec["incident_id"]].append(rec["decision"])
    return out


def _plan(service) -> dict:
    with service.client("viewer") as c:
        r = c.get("/plan")
        assert r.status_code == 200, r.text
        return r.json()


def _adoptions(service) -> int:
    return len(read_records(service.bootstrap, PLAN_ADOPTIONS.name, settle_s=0))


@pytest.fixture
def restores_the_plan(service):
    """The session's service is shared: whatever this test leaves, the plan it found is in force after it."""
    old = _plan(service)["version"]
    yield old
    if _plan(service)["version"] != old:
        _cli(service, "rollback", "--to", old, "--by", "tests", "--reason", "the test's plan restored")
        eventually(lambda: _plan(service)["version"], until=lambda v: v == old, timeout=30, what="the plan restored")


def test_a_revision_adopted_while_reports_flow_then_rolled_back(service, tmp_path, restores_the_plan):
    old = restores_the_plan
    data = tmp_path / "revised"
    shutil.copytree(DATA_DIR, data)
    types = data / "incident_types.yaml"
    types.write_text(types.read_text(encoding="utf-8").replace(GAS_LEAD, GAS_LEAD.replace(OLD_LEAD, NEW_LEAD)),
                     encoding="utf-8")
    new = load_plan(data).version
    assert new != old

    # refused whole before anything is read or written: exit 2, the file, line and field
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    (bad / "grading.yaml").write_text((bad / "grading.yaml").read_text(encoding="utf-8").replace(
        "fact: deaths_incl_missing", "fact: deths", 1), encoding="utf-8")
    written = _adoptions(service)
    refused = _cli(service, "adopt", "--plan", str(bad), "--by", "预案管理科 王某", "--reason", "试行")
    assert refused.returncode == 2, refused.stderr
    assert "grading.yaml, line 12: families.production_safety.criteria.0.fact" in refused.stderr
    assert _adoptions(service) == written

    with service.client() as c:  # open at the switch: its phone report filed after it
        open_id = c.post("/incidents", json=_report(datetime.now(timezone.utc))).json()["incident_id"]
        eventually(lambda: c.get(f"/incidents/{open_id}").json(), until=lambda b: b.get("status") != "reported",
                   timeout=30, every=0.2, what="the open incident decided")
        owed_before = c.get(f"/incidents/{open_id}").json()["obligations"]

    with Flow(service) as flow:
        eventually(lambda: len(flow.ids), until=lambda n: n >= 8, timeout=60, what="reports flowing")
        adopted = _cli(service, "adopt", "--plan", str(data), "--by", "预案管理科 王某", "--reason",
                       "燃气事故改由区应急局牵头（试行）", "--whatif-days", "1")
        assert adopted.returncode == 0, adopted.stderr[-3000:]
        assert "differing" in adopted.stdout and f"adopted {new}" in adopted.stdout, adopted.stdout
        eventually(lambda: _plan(service)["version"], until=lambda v: v == new, timeout=30, what="the API switched")
        eventually(lambda: _decisions(service, set(flow.ids)), timeout=60, every=0.5, what="decisions under the revision",
                   until=lambda d: sum(ds[0]["plan_version"] == new for ds in d.values()) >= 8)

        with service.client() as c:
            r = c.post(f"/incidents/{open_id}/reports", json={
                "kind": "phone_report", "unit_id": OLD_LEAD, "filed_at": datetime.now(timezone.utc).isoformat(),
                "filed_by": "值班员", "content": "电话报告"})
            assert r.status_code == 202, r.text
            timeline = eventually(lambda: c.get(f"/incidents/{open_id}/timeline").json(), timeout=30, every=0.2,
                                  until=lambda t: any(e["kind"] == "report_filed" for e in t["events"]),
                                  what="the filing handled")["events"]
            owed_after = c.get(f"/incidents/{open_id}").json()["obligations"]

        back = _cli(service, "rollback", "--to", old, "--by", "预案管理科 王某", "--reason", "试行结束，恢复原预案")
        assert back.returncode == 0, back.stderr[-3000:]
        eventually(lambda: _plan(service)["version"], until=lambda v: v == old, timeout=30, what="the API rolled back")
        after_back = len(flow.ids)
        eventually(lambda: _decisions(service, set(flow.ids[after_back:])), timeout=60, every=0.5,
                   what="decisions after the rollback", until=lambda d: len(d) >= 8)
    assert not flow.errors, flow.errors[:3]

    ids = set(flow.ids)
    decided = eventually(lambda: _decisions(service, ids), until=lambda d: set(d) == ids, timeout=60, every=0.5,
                         what="every report decided")
    time.sleep(2)  # anything decided twice would be on the topic by now
    decided = _decisions(service, ids)

    # nothing lost, nothing decided twice
    counts = Counter(len(ds) for ds in decided.values())
    assert set(decided) == ids and counts == {1: len(ids)}, counts

    # each decision names its version and that version's lead unit
    for ds in decided.values():
        d = ds[0]
        assert d["plan_version"] in (old, new)
        assert d["lead_unit_ids"] == ([NEW_LEAD] if d["plan_version"] == new else [OLD_LEAD]), d
    # on each partition, in log order: old, then the revision, then old again; never back and forth
    order: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for r in read_records(service.bootstrap, INCIDENTS_REPORTED.name, settle_s=0):
        try:  # the session's topic is shared: the dead-letter tests put garbage on it
            iid = json.loads(r.value).get("incident_id")
        except (ValueError, AttributeError):
            continue
        if iid in ids:
            order[r.partition].append((r.offset, decided[iid][0]["plan_version"]))
    runs = []
    for partition, rows in order.items():
        seq = [v for v, _ in itertools.groupby(v for _, v in sorted(rows))]
        assert seq in ([old], [new], [old, new], [new, old], [old, new, old]), (partition, seq)
        runs.append(seq)
    assert any(new in seq for seq in runs) and sum(v == new for ds in decided.values() for v in [ds[0]["plan_version"]]) >= 8

    # the incident open at the switch: the same obligations; the timeline says when the revision took over
    [note] = [e for e in timeline if e["kind"] == "plan_switched"]
    assert (note["details"]["from_version"], note["details"]["to_version"]) == (old, new)
    filed = next(e for e in timeline if e["kind"] == "report_filed")
    assert note["seq"] < filed["seq"]
    assert {o["kind"]: o["due_at"] for o in owed_after} == {o["kind"]: o["due_at"] for o in owed_before}

    # the history on the log, on the API and at the terminal
    history = _plan(service)["history"]
    assert [(h["version"], h["rollback_of"] is not None) for h in history[-2:]] == [(new, False), (old, True)]
    assert history[-2]["whatif"]["incidents"] >= 8 and history[-1]["in_force"]
    listed = _cli(service, "history")
    adoptions = [line for line in listed.stdout.splitlines() if not line.startswith("\t")]  # each one's changes under it
    assert listed.returncode == 0 and new in listed.stdout and "*in force*" in adoptions[-1]
    assert "\tincident_types.yaml types[gas_accident].lead_units：" in listed.stdout


def test_a_worker_started_after_an_adoption_decides_its_first_record_under_it(stack, tmp_path):
    """Adopted while the worker is down, with reports waiting for it: the restarted worker decides none of them
    under the plan it was shipped with. (Here Faust's own start, its recovery and rebalance, takes longer than
    the book's read of the adoptions, so this passes without the worker's wait for the book too: the wait
    itself is tested broker-free, tests/services/test_plan_book.py.)"""
    import httpx

    data = tmp_path / "revised"
    shutil.copytree(DATA_DIR, data)
    types = data / "incident_types.yaml"
    types.write_text(types.read_text(encoding="utf-8").replace(GAS_LEAD, GAS_LEAD.replace(OLD_LEAD, NEW_LEAD)),
                     encoding="utf-8")
    new = load_plan(data).version
    stack.kill_worker()
    env = {**os.environ, "YINGJI_BOOTSTRAP_SERVERS": stack.settings.bootstrap, "PYTHONPATH": str(ROOT)}
    adopted = subprocess.run([sys.executable, "-m", "services.cli", "plan", "adopt", "--plan", str(data), "--by",
                              "预案管理科 王某", "--reason", "燃气事故改由区应急局牵头"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert adopted.returncode == 0, adopted.stderr[-3000:]
    client = httpx.Client(base_url=stack.settings.api_url, timeout=15, headers={"Authorization": f"Bearer {stack.token}"})
    ids = set()
    for _ in range(5):
        r = client.post("/incidents", json=_report(datetime.now(timezone.utc)))
        assert r.status_code == 202, r.text
        ids.add(r.json()["incident_id"])
    stack.start_worker()
    decided = eventually(lambda: _decisions(stack, ids), until=lambda d: set(d) == ids, timeout=120, every=0.5,
                         what="the waiting reports decided")
    assert {(d["plan_version"], tuple(d["lead_unit_ids"])) for ds in decided.values() for d in ds} == {(new, (NEW_LEAD,))}
    assert all(len(ds) == 1 for ds in decided.values())


def test_the_delivery_stage_walks_the_ladder_of_a_revision_adopted_while_it_runs(service, tmp_path, restores_the_plan):
    """ladder.yaml revised while `yingji run` runs: a step every 6 s, the first to 区政府's 分管区领导. The delivery
    stage switches to it as it reads the adoption, and a notice of a report made afterwards walks the revision's
    ladder: its step 1 goes to 区政府 within seconds (the shipped ladder's would go to the notified unit's own
    值班主任, minutes later)."""
    import yaml

    data = tmp_path / "revised"
    shutil.copytree(DATA_DIR, data)
    ladder = yaml.safe_load((data / "ladder.yaml").read_text(encoding="utf-8"))
    for pace in (*ladder["minutes"].values(), ladder["default_minutes"]):
        pace["value"] = 0.1
    ladder["steps"]["value"][0] = {"unit": "district_government", "role": "分管区领导", "post": "leader",
                                   "label": "区政府分管区领导"}
    (data / "ladder.yaml").write_text(yaml.safe_dump(ladder, allow_unicode=True, sort_keys=False), encoding="utf-8")
    new = load_plan(data).version
    adopted = _cli(service, "adopt", "--plan", str(data), "--by", "预案管理科 王某", "--reason", "督办阶梯提速（试行）",
                   "--whatif-days", "1")
    assert adopted.returncode == 0, adopted.stderr[-3000:]

    def switched() -> bool:
        return any('"delivery_plan_switched"' in line and new in line for line in service.logs().splitlines())

    eventually(switched, timeout=30, every=0.3, what="the delivery stage switched to the revision")
    with service.client() as c:
        incident = c.post("/incidents", json=_report(datetime.now(timezone.utc))).json()["incident_id"]

    def first_steps() -> tuple[dict[str, str], list[dict]]:
        """(each notice's unit by its dedup key, the step 1 records) of the incident's notices."""
        bodies = [json.loads(r.value)["body"] for r in read_records(service.bootstrap, DELIVERIES.name, settle_s=0)]
        units = {b["dedup_key"]: b["notice"]["unit_id"] for b in bodies
                 if b.get("record") == "notice" and b["notice"]["incident_id"] == incident}
        return units, [b for b in bodies if b.get("record") == "ladder_step" and b.get("incident_id") == incident
                       and b["step"] == 1]

    units, steps = eventually(first_steps, timeout=45, every=0.5, what="step 1 of a notice to another unit than 区政府",
                              until=lambda found: any(found[0].get(st["dedup_key"]) not in (None, "district_government")
                                                      for st in found[1]))
    assert {(st["unit_id"], st["role"]) for st in steps} == {("district_government", "分管区领导")}, (units, steps)


def test_two_adoptions_written_against_the_same_version_the_second_is_refused_everywhere(service, tmp_path,
                                                                                         restores_the_plan):
    """Two offices adopt at once, each against the version it read in force: both records reach the log, the
    first on it takes effect, the second is refused as a conflict by the worker (it decides under the first),
    the API (GET /plan's history) and the CLI's history alike; nothing is lost silently."""
    from services.plan_book import plan_texts, publish_adoption
    from topics.plan import PlanAdopted, adoption_id

    old = restores_the_plan
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    shutil.copytree(DATA_DIR, first_dir)
    shutil.copytree(DATA_DIR, second_dir)
    types = first_dir / "incident_types.yaml"
    types.write_text(types.read_text(encoding="utf-8").replace(GAS_LEAD, GAS_LEAD.replace(OLD_LEAD, NEW_LEAD)),
                     encoding="utf-8")
    grading = second_dir / "grading.yaml"  # the other office's revision keeps the old lead unit
    grading.write_text(grading.read_text(encoding="utf-8") + "\n# 另一份修订稿\n", encoding="utf-8")
    records = []
    for n, data in enumerate((first_dir, second_dir)):
        at = datetime.now(timezone.utc) + timedelta(microseconds=n)
        version = load_plan(data).version
        records.append(PlanAdopted(id=adoption_id(version, at), version=version, files=plan_texts(data),
                                   adopted_by=f"预案管理科 {'王李'[n]}某", adopted_at=at, reason=f"同时修订 {n + 1}",
                                   previous_version=old))
    first, second = records
    for record in records:
        publish_adoption(service.bootstrap, record)

    plan = eventually(lambda: _plan(service), timeout=30, what="both adoptions read by the API",
                      until=lambda p: {first.id, second.id} <= {h["id"] for h in p["history"]})
    assert plan["version"] == first.version and plan["adoption"] == first.id
    rows = {h["id"]: h for h in plan["history"]}
    assert (rows[first.id]["status"], rows[second.id]["status"]) == ("in_force", "conflict")
    assert rows[second.id]["refused"] == f"written against version {old} while {first.version} was in force"

    with service.client() as c:  # the worker decides under the first, not the second that came after it
        iid = c.post("/incidents", json=_report(datetime.now(timezone.utc))).json()["incident_id"]
    decided = eventually(lambda: _decisions(service, {iid}), until=lambda d: iid in d, timeout=60, every=0.5,
                         what="the report decided")
    assert (decided[iid][0]["plan_version"], decided[iid][0]["lead_unit_ids"]) == (first.version, [NEW_LEAD])

    listed = _cli(service, "history")
    assert listed.returncode == 0, listed.stderr
    [line_first] = [line for line in listed.stdout.splitlines() if first.id in line]
    [line_second] = [line for line in listed.stdout.splitlines() if second.id in line]
    assert line_first.endswith("*in force*")
    assert line_second.endswith(f"*refused (conflict): written against version {old} while {first.version} was in force*")
