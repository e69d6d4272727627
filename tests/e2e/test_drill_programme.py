"""The drill programme on the local Kafka (issue 24 item 4, 7.2.2–7.2.3): a drill controller plans a 单项 drill
for 区城市管理委, runs the scripted gas-explosion drill naming it (the existing drills API), and the register
shows it held with the run's score; the expectation the controller set wrong (no breach) failed, so an
improvement item is owed, then recorded with who and by when. Every change is a record on the programme topic,
and the run's record names the planned drill."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from playbooks.drill.scenario import SCENARIOS_DIR
from tests.waiting import eventually
from topics.catalog import DRILL_PROGRAMME, DRILL_RUNS
from topics.drills import DrillRunEvent
from topics.programme import ProgrammeRecord

pytestmark = pytest.mark.e2e
BEIJING = ZoneInfo("Asia/Shanghai")
GAS = "district_urban_management_commission"  # 区城市管理委: 燃气事故's lead unit, drafts 8.3 #20
WRONG = "blast/breaches"  # the scenario's expectation, set to 0 below: the drill has 2 (its phone report is never filed)


def test_a_planned_drill_run_is_in_the_register_with_its_score_and_an_improvement_item(service):
    year = datetime.now(timezone.utc).astimezone(BEIJING).year
    scenario = (SCENARIOS_DIR / "gas-explosion.yaml").read_text(encoding="utf-8")
    assert "    breaches: 2\n" in scenario
    scenario = scenario.replace("    breaches: 2\n", "    breaches: 0\n")  # a controller's wrong expectation
    with service.client("drill_controller") as c:
        resp = c.post("/drills/programme/planned", json={"year": year, "unit_id": GAS, "kind": "single",
                                                         "title": "燃气爆炸电话报告漏报督办演练", "scenario": "gas-explosion"})
        assert resp.status_code == 201, resp.text
        planned = resp.json()
        resp = c.post("/drills", json={"scenario": scenario, "speed": 3600, "planned_id": planned["id"]})
        assert resp.status_code == 202, resp.text
        run_id = resp.json()["run_id"]
        run = eventually(lambda: c.get(f"/drills/{run_id}").json(), until=lambda b: b["status"] != "running",
                         timeout=90, every=0.3, what="the drill to finish")
        assert run["status"] == "done", run
        assert run["planned_id"] == planned["id"]
        score = run["evaluation"]["score"]
        failed = {f"{e['incident']}/{e['what']}" for e in run["evaluation"]["expectations"] if not e["passed"]}
        assert WRONG in failed and score is not None and score < 100

        body = c.get("/drills/programme", params={"year": year, "unit": GAS}).json()
        line = next(u for u in body["units"] if u["unit_id"] == GAS)
        drill = next(p for p in line["planned"] if p["id"] == planned["id"])
        assert drill["status"] == "held" and drill["score"] == score
        (held_run,) = drill["runs"]
        assert (held_run["run_id"], held_run["failed"]) == (run_id, len(failed))
        owed = {i["expectation"]: i for i in line["improvements"] if i["run_id"] == run_id}
        assert set(owed) == failed and owed[WRONG]["status"] == "unrecorded" and owed[WRONG]["item_id"] is None
        assert (owed[WRONG]["expected"], owed[WRONG]["actual"]) == ("0", "2")
        assert any(e["id"] == "hq_and_departments_annual" and e["status"] == "met" for e in line["expectations"])

        due = (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()
        resp = c.post("/drills/programme/improvements", json={
            "run_id": run_id, "expectation": WRONG, "unit_id": GAS, "owner": "区城市管理委值班科",
            "action": "演练预期按督办规则重新核定", "due_at": due})
        assert resp.status_code == 201, resp.text
        item = resp.json()
        body = c.get("/drills/programme", params={"year": year, "unit": GAS}).json()
    line = next(u for u in body["units"] if u["unit_id"] == GAS)
    row = next(i for i in line["improvements"] if i["item_id"] == item["id"])
    assert (row["expectation"], row["status"], row["unit_id"], row["owner"]) == (WRONG, "open", GAS, "区城市管理委值班科")
    assert not any(f["ref"] == item["id"] for f in body["flags"])

    with service.client("viewer") as screen:  # the register is read by everyone; a viewer plans nothing
        assert screen.get("/drills/programme", params={"year": year}).status_code == 200
        assert screen.post("/drills/programme/planned", json={"year": year, "unit_id": GAS, "kind": "single",
                                                             "title": "x"}).status_code == 403
    # on the log: the planned drill and the item on the programme topic; the run's records name the drill
    programme = [ProgrammeRecord.model_validate_json(r.value) for r in service.read_topic(DRILL_PROGRAMME.name)]
    assert {planned["id"], item["id"]} <= {r.id for r in programme}
    runs = [DrillRunEvent.model_validate_json(r.value).body for r in service.read_topic(DRILL_RUNS.name)]
    assert {getattr(b, "planned_id", None) for b in runs if b.run_id == run_id} == {planned["id"]}
