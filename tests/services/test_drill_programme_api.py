"""GET /drills/programme and what changes it: a drill planned, a plan's revision, an improvement item recorded
and closed (issue 24 item 4, 7.2.1–7.2.3). No broker: the drill book is fed the run records a runner writes,
the clock is simulated and stands still, the publisher keeps what it is given."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from playbooks.plan import load_plan
from services.clock import SimulatedClock
from services.settings import Settings
from services.users import new_token, user_record
from services.web.app import create_app
from tests.services.publishers import Kept
from topics.catalog import DRILL_PROGRAMME
from topics.drills import DrillRunEvent, DrillRunRecorded, DrillRunStatus
from topics.models import Role
from topics.programme import ProgrammeRecord

PLAN = load_plan()
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)  # 10:00 in Beijing
GAS = "district_urban_management_commission"  # 区城市管理委: drafts 8.3 #20 (燃气)
STREET = "town_liyuan"
FAILED = "blast/obligations.phone_report"
SCENARIO = """id: tiny
name: 小演练
kind: 单项
organiser: 区应急办
objectives: [检验]
start: 2026-11-22T11:30:00+08:00
duration: "01:00"
injects:
  - {at: "00:00", action: report, incident: a, type: 燃气事故, location: {street: 梨园镇}}
"""


def done_run(run_id: str, planned_id: str | None, at: datetime) -> DrillRunRecorded:
    evaluation = {"score": 50.0, "kind": "单项", "expectations": [
        {"incident": "blast", "what": "grade", "expected": "一般", "actual": "一般", "passed": True},
        {"incident": "blast", "what": "obligations.phone_report", "expected": "met", "actual": "missed", "passed": False}]}
    return DrillRunRecorded(id=f"{run_id}.3", run_id=run_id, scenario="gas-explosion", name="燃气爆炸", speed=60,
                            started_by="u", started_at=at - timedelta(minutes=5), runner="test", status=DrillRunStatus.DONE,
                            sent=5, total=5, start=at - timedelta(hours=3), end=at, planned_id=planned_id,
                            evaluation=evaluation, at=at)


@pytest.fixture
def api(tmp_path):
    kept = Kept()
    app = create_app(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1"), plan=PLAN,
                     clock=SimulatedClock(start=NOW, speed=0.0), publisher=kept)
    tokens = {}
    for role in Role:
        tokens[role] = new_token()
        app.state.users.apply(user_record(f"u-{role.value}", role, tokens[role], now=NOW, by="test"))
    return app, TestClient(app), tokens, kept  # no lifespan: no broker


def call(client, tokens, method, url, role=Role.DRILL_CONTROLLER, **kw):
    headers = {"Authorization": f"Bearer {tokens[role]}", **kw.pop("headers", {})}
    return client.request(method, url, headers=headers, **kw)


def plan_one(client, tokens, **over) -> dict:
    body = {"year": 2026, "unit_id": GAS, "kind": "single", "title": "燃气事故单项演练", "scenario": "gas-explosion", **over}
    resp = call(client, tokens, "POST", "/drills/programme/planned", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def unit_line(body: dict, unit: str) -> dict:
    return next(u for u in body["units"] if u["unit_id"] == unit)


def test_the_register_of_this_year_is_not_a_drill_run(api):
    _, client, tokens, kept = api
    resp = call(client, tokens, "GET", "/drills/programme", role=Role.VIEWER)
    assert resp.status_code == 200, resp.text  # not /drills/{run_id} with run_id "programme"
    body = resp.json()
    assert body["year"] == 2026 and body["period_from"].startswith("2026-01-01T00:00:00+08:00")
    street = unit_line(body, STREET)
    assert [(e["id"], e["status"], e["section"]) for e in street["expectations"]] == [("streets_annual", "unplanned", "7.2.2")]
    assert len(body["units"]) == body["totals"]["units"] == 45 and body["flags"] == []
    one = call(client, tokens, "GET", "/drills/programme", params={"year": 2025, "unit": GAS}).json()
    assert one["year"] == 2025 and [u["unit_id"] for u in one["units"]] == [GAS]
    assert kept.records == []


@pytest.mark.parametrize(("params", "field"), [
    ({"year": 1999}, "query.year"),
    ({"year": "2026x"}, "query.year"),
    ({"unit": "no_such_unit"}, "query.unit"),
], ids=["year before 2000", "year not a number", "unknown unit"])
def test_bad_input_is_a_422_naming_the_field(api, params, field):
    _, client, tokens, kept = api
    resp = call(client, tokens, "GET", "/drills/programme", params=params)
    assert resp.status_code == 422, resp.text
    assert [f["field"] for f in resp.json()["fields"]] == [field]
    assert kept.records == []


def test_a_planned_drill_is_a_record_and_in_the_register(api):
    app, client, tokens, kept = api
    assert call(client, tokens, "POST", "/drills/programme/planned", role=Role.VIEWER,
                json={"year": 2026, "unit_id": GAS, "kind": "single", "title": "x"}).status_code == 403
    drill = plan_one(client, tokens, planned_for="2026-12-20")
    (topic, key, record), = kept.records
    assert topic == DRILL_PROGRAMME.name and key == drill["id"] and isinstance(record, ProgrammeRecord)
    assert record.body.unit_id == GAS and record.body.planned_by == "u-drill_controller"
    line = unit_line(call(client, tokens, "GET", "/drills/programme").json(), GAS)
    (p,) = line["planned"]
    assert (p["id"], p["status"], p["kind_label"], p["score"]) == (drill["id"], "planned", "单项", None)
    assert line["expectations"][0]["status"] == "planned"


@pytest.mark.parametrize(("over", "field"), [
    ({"unit_id": "no_such_unit"}, "unit_id"),
    ({"validates": "sp_nope"}, "validates"),
    ({"kind": "joint"}, "kind"),
    ({"planned_for": "2027-01-05"}, "planned_for"),
    ({"year": 1990}, "year"),
    ({"title": ""}, "title"),
], ids=["unknown unit", "unknown plan", "unknown kind", "day outside its year", "year", "no title"])
def test_a_bad_planned_drill_is_refused_naming_the_field_and_nothing_is_written(api, over, field):
    _, client, tokens, kept = api
    body = {"year": 2026, "unit_id": GAS, "kind": "single", "title": "演练", **over}
    resp = call(client, tokens, "POST", "/drills/programme/planned", json=body)
    assert resp.status_code == 422, resp.text
    assert [f["field"] for f in resp.json()["fields"]] == [field]
    assert kept.records == []


def test_a_run_naming_a_planned_drill_must_be_of_its_kind(api):
    _, client, tokens, kept = api
    unknown = call(client, tokens, "POST", "/drills", json={"scenario": SCENARIO, "planned_id": "planned-nope"})
    assert unknown.status_code == 422 and [f["field"] for f in unknown.json()["fields"]] == ["planned_id"]
    drill = plan_one(client, tokens, kind="comprehensive", scenario=None)
    other = call(client, tokens, "POST", "/drills", json={"scenario": SCENARIO, "planned_id": drill["id"]})
    assert other.status_code == 422 and "综合演练" in other.json()["fields"][0]["message"]
    assert len(kept.records) == 1  # the planned drill only: no run started


def test_a_revision_flags_its_unit_until_a_validation_drill_is_held(api):
    app, client, tokens, kept = api
    bad = call(client, tokens, "POST", "/drills/programme/revisions", json={"plan_id": "sp_nope", "revised_at": NOW.isoformat()})
    assert bad.status_code == 422 and [f["field"] for f in bad.json()["fields"]] == ["plan_id"]
    resp = call(client, tokens, "POST", "/drills/programme/revisions",
                json={"plan_id": "sp_gas", "revised_at": "2026-03-01T00:00:00+08:00", "version": "2026修订"})
    assert resp.status_code == 201, resp.text
    revision = resp.json()
    assert revision["unit_id"] == GAS  # 8.3 #20's 牵头编制部门
    body = call(client, tokens, "GET", "/drills/programme", params={"unit": GAS}).json()
    assert [(f["rule"], f["section"], f["ref"]) for f in body["flags"]] == [("validation_missing", "7.2.1", revision["id"])]
    drill = plan_one(client, tokens, validates="sp_gas")
    app.state.drills.apply(DrillRunEvent.of(done_run("r1", drill["id"], NOW - timedelta(days=1))))
    body = call(client, tokens, "GET", "/drills/programme", params={"unit": GAS}).json()
    assert [f["rule"] for f in body["flags"]] == []  # validated; the failed expectation is within its 15 days
    (rev,) = unit_line(body, GAS)["revisions"]
    assert rev["status"] == "validated" and rev["validated_by"] == [drill["id"]]


def test_an_improvement_item_answers_a_failed_expectation_and_is_closed(api):
    app, client, tokens, kept = api
    drill = plan_one(client, tokens)
    app.state.drills.apply(DrillRunEvent.of(done_run("r1", drill["id"], NOW - timedelta(days=20))))
    body = call(client, tokens, "GET", "/drills/programme", params={"unit": GAS}).json()
    line = unit_line(body, GAS)
    assert line["planned"][0]["status"] == "held" and line["planned"][0]["score"] == 50.0
    (owed,) = line["improvements"]
    assert (owed["item_id"], owed["expectation"], owed["status"]) == (None, FAILED, "unrecorded_overdue")
    assert [f["rule"] for f in body["flags"]] == ["improvement_unrecorded"]

    for wrong, field in (({"run_id": "nope"}, "run_id"), ({"expectation": "blast/grade"}, "expectation"),
                         ({"unit_id": "nobody"}, "unit_id"), ({"due_at": "2026-12-31T00:00:00"}, "due_at")):
        resp = call(client, tokens, "POST", "/drills/programme/improvements",
                    json={"run_id": "r1", "expectation": FAILED, "unit_id": GAS, "action": "培训",
                          "due_at": "2026-12-31T23:59:59+08:00", **wrong})
        assert resp.status_code == 422 and [f["field"] for f in resp.json()["fields"]] == [field], (wrong, resp.text)
    resp = call(client, tokens, "POST", "/drills/programme/improvements",
                json={"run_id": "r1", "expectation": FAILED, "unit_id": GAS, "owner": "王五",
                      "action": "电话报告时限再培训", "due_at": (NOW - timedelta(hours=1)).isoformat()})
    assert resp.status_code == 201, resp.text
    item = resp.json()
    body = call(client, tokens, "GET", "/drills/programme", params={"unit": GAS}).json()
    (row,) = unit_line(body, GAS)["improvements"]
    assert (row["item_id"], row["status"], row["owner"], row["overdue"]) == (item["id"], "overdue", "王五", True)
    assert [(f["rule"], f["ref"]) for f in body["flags"]] == [("improvement_overdue", item["id"])]

    url = f"/drills/programme/improvements/{item['id']}/close"
    assert call(client, tokens, "POST", url, role=Role.VIEWER, json={"closed_at": NOW.isoformat()}).status_code == 403
    # closed before it was recorded, or in the future: a late item would look done on time (7.2.3); refused
    for when in (item["recorded_at"][:4] + "-01-01T00:00:00+00:00", (NOW + timedelta(days=1)).isoformat()):
        wrong = call(client, tokens, "POST", url, json={"closed_at": when})
        assert wrong.status_code == 422 and wrong.json()["fields"][0]["field"] == "closed_at", wrong.text
    done = call(client, tokens, "POST", url, json={"closed_at": NOW.isoformat(), "note": "已培训"})
    assert done.status_code == 200, done.text
    again = call(client, tokens, "POST", url, json={"closed_at": NOW.isoformat()})
    assert again.status_code == 409 and again.json()["fields"][0]["field"] == "item_id"
    nope = call(client, tokens, "POST", "/drills/programme/improvements/improve-nope/close", json={"closed_at": NOW.isoformat()})
    assert nope.status_code == 404
    body = call(client, tokens, "GET", "/drills/programme", params={"unit": GAS}).json()
    assert unit_line(body, GAS)["improvements"][0]["status"] == "closed_late" and body["flags"] == []
    assert [r.body.record for _, _, r in kept.records] == ["drill_planned", "improvement_recorded", "improvement_closed"]


def test_the_page_for_a_browser(api):
    app, client, tokens, _ = api
    call(client, tokens, "POST", "/drills/programme/revisions", json={"plan_id": "sp_gas", "revised_at": NOW.isoformat()})
    page = call(client, tokens, "GET", "/drills/programme", role=Role.VIEWER, headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "应急演练计划与评估（2026年）" in html and 'id="register-table"' in html
    assert f'data-unit="{GAS}" data-rule="validation_missing"' in html and "预案修订未开展验证性演练" in html
    assert 'id="plan-form"' not in html  # a viewer plans nothing
    assert 'id="plan-form"' in call(client, tokens, "GET", "/drills/programme", headers={"Accept": "text/html"}).text
    nobody = client.get("/drills/programme", headers={"Accept": "text/html"}, follow_redirects=False)
    assert nobody.status_code == 303 and nobody.headers["location"].startswith("/login")


def test_the_openapi_document_says_what_the_programme_answers(api):
    app, *_ = api
    doc = app.openapi()
    op = doc["paths"]["/drills/programme"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Register")
    assert {p["name"] for p in op["parameters"]} == {"year", "unit"} and "422" in op["responses"]
    unit = next(p for p in op["parameters"] if p["name"] == "unit")
    assert set(unit["schema"]["anyOf"][0]["enum"]) == set(PLAN.units)
    for path, model, code in (("/drills/programme/planned", "DrillPlanned", "201"),
                              ("/drills/programme/revisions", "PlanRevised", "201"),
                              ("/drills/programme/improvements", "ImprovementRecorded", "201"),
                              ("/drills/programme/improvements/{item_id}/close", "ImprovementClosed", "200")):
        responses = doc["paths"][path]["post"]["responses"]
        assert responses[code]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{model}"), path
        assert {"401", "403", "422"} <= set(responses), path
    schemas = doc["components"]["schemas"]
    assert set(schemas["DrillPlanRequest"]["properties"]["unit_id"]["enum"]) == set(PLAN.units)
    assert "sp_gas" in schemas["RevisionRequest"]["properties"]["plan_id"]["enum"]
    assert {"flags", "units", "unplanned_runs", "totals"} <= set(schemas["Register"]["properties"])
    assert "planned_id" in schemas["DrillRequest"]["properties"]
