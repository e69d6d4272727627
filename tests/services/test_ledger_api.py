"""GET /ledger, its .xlsx and draft 通报 .docx, the drill's own ledger, the page, and issuing the 通报
(issue 23 item 4). No broker: the view is fed the records the worker would write (the lifecycle's own
events), the clock is simulated and stands still, the publisher keeps what it is given."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import docx
import openpyxl
import pytest
from fastapi.testclient import TestClient

from playbooks.lifecycle import handle, start
from playbooks.plan import load_plan
from services.clock import SimulatedClock
from services.settings import Settings
from services.users import new_token, user_record
from services.web.app import create_app
from topics.catalog import INCIDENT_EVENTS, INCIDENTS_DECIDED, INCIDENTS_REPORTED, LEDGER_CIRCULARS
from topics.drills import DrillRunEvent, DrillRunRecorded, DrillRunStatus
from topics.models import FollowupFacts, IncidentCommand, IncidentDecided, IncidentReported, ReportFacts, ReportFiled, Role
from services import metrics
from tests.services.publishers import Kept

PLAN = load_plan()
RECEIVED = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)  # 10:00 in Beijing
NOW = RECEIVED + timedelta(hours=3)
DAY = {"from": "2026-12-07T00:00:00+08:00", "to": "2026-12-08T00:00:00+08:00"}
M = timedelta(minutes=1)



def feed(app, report: ReportFacts, filings: list[tuple[str, float, dict]]) -> str:
    """An incident as the worker would write it: its report, decisions and events, onto the view."""
    iid = report.report_id
    rec = IncidentReported(id=iid, incident_id=iid, report=report, accepted_at=report.received_at)
    out = start(rec, PLAN, report.received_at)
    state, events, decisions = out.state, list(out.events), list(out.decisions)
    for n, (kind, minutes, over) in enumerate(filings):
        at = report.received_at + minutes * M
        body = ReportFiled(id=f"{iid}-f{n}", incident_id=iid, kind=kind, unit_id="x", filed_at=at, filed_by="值班员", **over)
        step = handle(state, IncidentCommand(id=f"{iid}-c{n}", incident_id=iid, drill=report.drill, body=body), PLAN, at)
        state, events, decisions = step.state, events + step.events, decisions + step.decisions
    view = app.state.view
    view.apply(INCIDENTS_REPORTED.name, rec.model_dump_json().encode())
    for i, d in enumerate(decisions):
        view.apply(INCIDENTS_DECIDED.name, IncidentDecided(id=f"{iid}-d{i}", incident_id=iid, drill=report.drill,
                                                           decision=d, accepted_at=rec.accepted_at).model_dump_json().encode())
    for e in events:
        view.apply(INCIDENT_EVENTS.name, e.model_dump_json().encode())
    return iid


def report(report_id: str, **over) -> ReportFacts:
    return ReportFacts.model_validate({"report_id": report_id, "type": "gas_accident",
                                       "occurred_at": (RECEIVED - 5 * M).isoformat(), "received_at": RECEIVED.isoformat(),
                                       "location": {"street": "梨园镇"}, "source": "12345", **over})


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    kept = Kept()
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("ledger"), bootstrap_servers="127.0.0.1:1"), plan=PLAN,
                     clock=SimulatedClock(start=NOW, speed=0.0), publisher=kept)
    tokens = {}
    for role in Role:
        tokens[role] = new_token()
        app.state.users.apply(user_record(f"u-{role.value}", role, tokens[role], now=NOW, by="test"))
    live = feed(app, report("live-1", facts={"deaths": 1}), [
        ("phone_report", 17, {}),  # 迟报 7
        ("written_report", 40, {"items_missing": ["trend"]}),  # 内容不全
        ("followup", 50, {"followup": FollowupFacts(facts={"deaths": 2})}),  # 瞒报 flag: deaths doubled
    ])
    drill = feed(app, report("drill-1", drill=True), [])
    run = DrillRunRecorded(id="run1.1", run_id="run1", scenario="s", name="演练", speed=60, status=DrillRunStatus.DONE,
                           started_by="u", started_at=NOW, at=NOW, runner="test", sent=1, total=1, start=RECEIVED - M,
                           end=RECEIVED + 60 * M, simulated_now=RECEIVED + 90 * M, incidents=[drill])
    app.state.drills.apply(DrillRunEvent.of(run))
    client = TestClient(app)  # no lifespan: no broker
    return app, client, tokens, kept, live, drill


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def get(client, tokens, url, role=Role.COMMANDER, **kw):
    return client.get(url, headers={"Authorization": f"Bearer {tokens[role]}", **kw.pop("headers", {})}, **kw)


def test_the_ledger_of_the_day(api):
    app, client, tokens, _, live, drill = api
    resp = get(client, tokens, "/ledger", params=DAY)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    rows = {(r["incident_id"], r["obligation"], r["opening"]): r for r in body["rows"]}
    assert {r["incident_id"] for r in body["rows"]} == {live}  # the drill's are not in the live ledger
    lead = "district_urban_management_commission"
    phone = rows[(live, "phone_report", 1)]
    assert (phone["outcome"], phone["outcome_label"], phone["minutes_late"], phone["unit_id"]) == ("late", "迟报", 7.0, lead)
    written = rows[(live, "written_report", 1)]
    assert written["outcome_label"] == "内容不全" and written["items_missing"] == ["发展趋势"]
    assert rows[(live, "detailed_report", 1)]["outcome_label"] == "漏报"  # 3 h on, never filed
    (flag,) = body["flags"]
    assert flag["first"]["counts"]["deaths"] == 1 and flag["followup"]["counts"]["deaths"] == 2
    assert flag["status"] == "待核实" and flag["unit_id"] == lead
    line = next(u for u in body["units"] if u["unit_id"] == lead)
    assert line["counts"]["late"] >= 1 and line["concealment_flags"] == 1
    assert body["bucket"] == "hour" and len(line["trend"]) == 24


def test_the_drill_has_its_own_ledger(api):
    _, client, tokens, _, live, drill = api
    resp = get(client, tokens, "/drills/run1/ledger", role=Role.DRILL_CONTROLLER)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["drill"] and {r["incident_id"] for r in body["rows"]} == {drill}
    assert any(r["outcome"] == "missed" for r in body["rows"])  # its breaches are its own
    assert get(client, tokens, "/drills/nope/ledger").status_code == 404
    assert get(client, tokens, "/ledger", role=Role.DRILL_CONTROLLER, params=DAY).status_code == 403


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-12-08T00:00:00+08:00", "to": "2026-12-07T00:00:00+08:00"}, "query.from"),
    ({**DAY, "unit": "no_such_unit"}, "query.unit"),
    ({"from": "2026-12-07T00:00:00"}, "query.from"),  # no offset: which day is meant?
    ({"from": "2026-01-01T00:00:00+08:00", "to": "2027-06-01T00:00:00+08:00"}, "query.to"),
], ids=["from after to", "unknown unit", "from without offset", "period over 366 days"])
def test_bad_input_is_a_422_naming_the_field_and_stores_nothing(api, params, field):
    app, client, tokens, kept, _, _ = api
    before = (len(kept.records), len(app.state.circulars.records), len(app.state.view.incidents))
    resp = get(client, tokens, "/ledger", params=params)
    assert resp.status_code == 422, resp.text
    assert [f["field"] for f in resp.json()["fields"]] == [field]
    assert (len(kept.records), len(app.state.circulars.records), len(app.state.view.incidents)) == before


def test_xlsx_and_docx_carry_the_jsons_figures(api):
    _, client, tokens, _, live, _ = api
    body = get(client, tokens, "/ledger", params=DAY).json()
    xlsx = get(client, tokens, "/ledger", params={**DAY, "format": "xlsx"})
    assert xlsx.status_code == 200 and xlsx.headers["content-type"].startswith("application/vnd.openxmlformats")
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    sheet = list(book["台账"].iter_rows(values_only=True))
    assert sheet[0][:3] == ("事件编号", "事件类型", "报送事项") and len(sheet) - 1 == len(body["rows"])
    for line, row in zip(sheet[1:], body["rows"]):
        assert (line[0], line[6], line[7]) == (row["incident_id"], row["outcome_label"], row["minutes_late"])
    units = {r[0]: r for r in book["单位汇总"].iter_rows(min_row=2, values_only=True)}
    for u in body["units"]:
        assert units[u["unit"]][7] == u["breaches"] and units[u["unit"]][8] == u["minutes_late"]
    assert len(list(book["疑似瞒报"].iter_rows(min_row=2))) == len(body["flags"])

    word = get(client, tokens, "/ledger", params={**DAY, "format": "docx"})
    assert word.status_code == 200
    doc = docx.Document(io.BytesIO(word.content))
    text = "\n".join(p.text for p in doc.paragraphs)
    assert text.startswith("关于突发事件信息报送情况的通报（草稿）")
    breached = [u for u in body["units"] if u["breaches"]]
    for u in breached:
        assert f"{u['unit']}（" in text
    assert text.count("限期整改：请于") == len(breached) == len(doc.tables)
    cells = [[c.text for c in r.cells] for t in doc.tables for r in t.rows[1:]]
    late = next(c for c in cells if c[0] == live and c[2] == "电话报告")
    assert late[4] == "迟报" and late[5] == "7"
    assert sum(len(t.rows) - 1 for t in doc.tables) == sum(1 for r in body["rows"] if r["breach"])


def test_the_page_for_a_browser(api):
    _, client, tokens, _, live, _ = api
    page = get(client, tokens, "/ledger", role=Role.VIEWER, params=DAY, headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "信息报送台账" in html and "<svg class=\"trend-chart\"" in html and "迟报" in html and live in html
    assert "2026-12-07 10:10" in html  # the phone report's due time, in Beijing
    nobody = client.get("/ledger", headers={"Accept": "text/html"}, follow_redirects=False)
    assert nobody.status_code == 303 and nobody.headers["location"].startswith("/login")


def test_issuing_the_circular_makes_each_units_rectification_an_obligation(api):
    app, client, tokens, kept, _, _ = api
    auth = {"Authorization": f"Bearer {tokens[Role.COMMANDER]}"}
    period = {"start": DAY["from"], "end": DAY["to"]}
    reversed_ = client.post("/ledger/circulars", json={"start": DAY["to"], "end": DAY["from"]}, headers=auth)
    assert reversed_.status_code == 422 and reversed_.json()["fields"][0]["field"] == "start"
    quiet = client.post("/ledger/circulars", json={"start": "2026-12-01T00:00:00+08:00", "end": "2026-12-02T00:00:00+08:00"},
                        headers=auth)  # nobody breached that day: nothing to 通报
    assert quiet.status_code == 409 and quiet.json()["fields"][0]["field"] == "units"
    assert client.post("/ledger/circulars", json=period,
                       headers={"Authorization": f"Bearer {tokens[Role.VIEWER]}"}).status_code == 403
    assert [t for t, _, _ in kept.records] == []  # refused: nothing written
    issued = metrics.CIRCULARS_ISSUED._value.get()
    resp = client.post("/ledger/circulars", json=period, headers=auth)
    assert resp.status_code == 201, resp.text
    circular = resp.json()["circular"]
    (topic, key, record), = kept.records
    assert topic == LEDGER_CIRCULARS.name and key == circular["id"] and record.body.id == circular["id"]
    assert metrics.CIRCULARS_ISSUED._value.get() == issued + 1
    # the same period again (the same instants, written with another offset): refused naming the 通报 on record
    again = client.post("/ledger/circulars", json={"start": "2026-12-06T16:00:00Z", "end": "2026-12-07T16:00:00Z"},
                        headers=auth)
    assert again.status_code == 409, again.text
    (problem,) = again.json()["fields"]
    assert problem["field"] == "period" and circular["id"] in problem["message"]
    assert len(kept.records) == 1 and len(app.state.circulars.circulars) == 1  # nothing stored
    assert metrics.CIRCULARS_ISSUED._value.get() == issued + 1
    owed = {u["unit_id"]: u for u in circular["units"]}
    assert "district_urban_management_commission" in owed
    statuses = get(client, tokens, "/ledger/rectifications").json()
    assert {s["unit_id"] for s in statuses} == set(owed) and {s["status"] for s in statuses} == {"open"}
    due = datetime.fromisoformat(owed["district_urban_management_commission"]["due_at"])
    assert due == NOW + timedelta(days=15)  # ledger.yaml's term (our choice)
    url = f"/ledger/circulars/{circular['id']}/rectifications"
    bad = client.post(url, json={"unit_id": "district_party_committee", "filed_at": NOW.isoformat(),
                                 "filed_by": "区委"}, headers=auth)
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "unit_id"
    # a report stamped in the future (a Beijing time written with Z: 8 hours ahead) would stop the 督办 before
    # the deadline it missed; refused naming filed_at, nothing stored
    sent = len(kept.records)
    ahead = client.post(url, json={"unit_id": "district_urban_management_commission",
                                   "filed_at": (NOW + timedelta(hours=8)).isoformat(), "filed_by": "区城市管理委"},
                        headers=auth)
    assert ahead.status_code == 422 and ahead.json()["fields"][0]["field"] == "filed_at", ahead.text
    assert len(kept.records) == sent
    ok = client.post(url, json={"unit_id": "district_urban_management_commission",
                                "filed_at": (NOW - M).isoformat(), "filed_by": "区城市管理委"}, headers=auth)
    assert ok.status_code == 201 and ok.json()["status"] == "met"
    assert client.post("/ledger/circulars/nope/rectifications", json={"unit_id": "x", "filed_at": NOW.isoformat(),
                                                                      "filed_by": "x"}, headers=auth).status_code == 404


def test_a_circular_with_its_own_term_and_the_timers_steps_on_the_statuses(api):
    """rectify_by: the 通报's own 整改期限 (after now, within a year; else 422 naming it, nothing stored);
    the timer's 整改提醒 and 督办 (records on the topic) shown on GET /ledger/rectifications."""
    from playbooks.ledger.circular import chase
    from topics.ledger import LedgerRecord

    app, client, tokens, kept, _, _ = api
    auth = {"Authorization": f"Bearer {tokens[Role.COMMANDER]}"}
    period = {"start": DAY["from"], "end": "2026-12-08T01:00:00+08:00"}  # another period: the 通报 of DAY stands
    before = len(kept.records)
    for bad in ((NOW - M).isoformat(), (NOW + timedelta(days=400)).isoformat(), "2026-12-31T00:00:00"):
        resp = client.post("/ledger/circulars", json={**period, "rectify_by": bad}, headers=auth)
        assert resp.status_code == 422 and [f["field"] for f in resp.json()["fields"]] == ["rectify_by"], resp.text
    assert len(kept.records) == before
    resp = client.post("/ledger/circulars", json={**period, "rectify_by": (NOW + 40 * M).isoformat()}, headers=auth)
    assert resp.status_code == 201, resp.text
    mine = resp.json()["circular"]
    assert {(at(u["due_at"]), at(u["remind_at"])) for u in mine["units"]} == {(NOW + 40 * M, NOW + 20 * M)}
    # what the worker's timer would write at the due time (its own test runs it: tests/services/test_rectification_timer.py)
    book = app.state.circulars
    for rec in chase(book.records, app.state.plan.ledger, PLAN, now=NOW + 21 * M).records:
        book.apply(LedgerRecord(id=rec.id, body=rec))
    for rec in chase(book.records, app.state.plan.ledger, PLAN, now=NOW + 41 * M).records:
        book.apply(LedgerRecord(id=rec.id, body=rec))
    statuses = [s for s in get(client, tokens, "/ledger/rectifications").json() if s["circular_id"] == mine["id"]]
    assert statuses and all(s["reminded_at"] is None and s["escalated_at"] is None for s in statuses)  # not yet at NOW
    app.state.clock = SimulatedClock(start=NOW + 42 * M, speed=0.0)
    try:
        statuses = [s for s in get(client, tokens, "/ledger/rectifications").json() if s["circular_id"] == mine["id"]]
        html = get(client, tokens, "/ledger", params=DAY, headers={"Accept": "text/html"}).text
    finally:
        app.state.clock = SimulatedClock(start=NOW, speed=0.0)
    assert {(s["status"], at(s["reminded_at"]), at(s["escalated_at"])) for s in statuses} == {
        ("missed", NOW + 21 * M, NOW + 41 * M)}
    assert "已提醒 2026-12-07 13:21" in html and "已督办 2026-12-07 13:41" in html


def test_the_openapi_document_says_what_the_ledger_answers(api):
    app, *_ = api
    doc = app.openapi()
    issue = doc["paths"]["/ledger/circulars"]["post"]
    assert {"201", "409", "422"} <= set(issue["responses"])
    assert "rectify_by" in doc["components"]["schemas"]["CircularRequest"]["properties"]
    status = doc["components"]["schemas"]["RectificationStatus"]["properties"]
    assert {"reminded_at", "escalated_at"} <= set(status)
    op = doc["paths"]["/ledger"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Ledger")
    assert {p["name"] for p in op["parameters"]} >= {"from", "to", "unit", "format"}
    assert "422" in op["responses"] and "/drills/{run_id}/ledger" in doc["paths"]
    row = doc["components"]["schemas"]["Row"]["properties"]
    assert {"outcome", "minutes_late", "due_at", "unit_id", "source_delay_minutes"} <= set(row)


def test_the_unit_parameter_lists_the_plans_units(api):
    app, *_ = api
    param = next(p for p in app.openapi()["paths"]["/ledger"]["get"]["parameters"] if p["name"] == "unit")
    assert set(param["schema"]["anyOf"][0]["enum"]) == set(PLAN.units)
