"""The duty routes (issue 18) on an app built from its own parts: a simulated clock, a publisher that
records what it sends, a duty book filled here. No broker: what a route would write is what it sent."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from fastapi.testclient import TestClient

from playbooks.duty.handover import due
from playbooks.plan import load_plan
from services.clock import SimulatedClock
from services.duty.book import to_record
from services.settings import Settings
from services.users import new_token, user_record
from services.web.app import create_app
from topics.catalog import DUTY_LOG, DUTY_ROSTERS
from topics.duty import DutyEventKind, Person, Roster, Rotation
from topics.models import Role
from tests.services.publishers import Kept

SH = ZoneInfo("Asia/Shanghai")
OFFICE = "district_emergency_office"
START = datetime(2026, 12, 1, 8, 30, tzinfo=SH)
NOW = datetime(2026, 12, 7, 8, 40, tzinfo=SH)  # ten minutes after a shift change
PLAN = load_plan()



def roster() -> Roster:
    people = [Person(id="zhang", name="张伟", unit_id=OFFICE, post="officer", is_leader=False, employment="regular",
                     contacts={"mobile": "13800000001", "email": "zhang@tz.example.cn"}),
              Person(id="li", name="李娜", unit_id=OFFICE, post="officer", is_leader=False, employment="regular"),
              Person(id="wang", name="王强", unit_id=OFFICE, post="officer", is_leader=False, employment="regular"),
              Person(id="sun", name="孙主任", unit_id=OFFICE, post="chief", is_leader=True, employment="regular"),
              Person(id="liu", name="刘局长", unit_id=OFFICE, post="leader", is_leader=True, employment="regular")]
    rotations = [Rotation(id=f"r-{p}", unit_id=OFFICE, post=p, rrule="FREQ=DAILY", dtstart=START, people=who)
                 for p, who in (("officer", ["zhang", "li"]), ("chief", ["sun"]), ("leader", ["liu"]))]
    return Roster(people=people, rotations=rotations)


@pytest.fixture
def api(tmp_path):
    sent = Kept()
    app = create_app(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1"), plan=PLAN,
                     clock=SimulatedClock(start=NOW, speed=0.0), publisher=sent)
    book = app.state.duty
    book.apply_roster(to_record(roster(), OFFICE, book.sealer, source="json", now=START, by="test"))
    book.caught_up.set()
    tokens = {}
    for role in Role:
        tokens[role] = new_token()
        app.state.users.apply(user_record(f"u-{role.value}", role, tokens[role], now=NOW, by="test"))

    def client(role: Role) -> TestClient:
        return TestClient(app, headers={"Authorization": f"Bearer {tokens[role]}"})

    return app, client, sent


def test_who_is_on_duty_each_side_of_the_0830_change_with_contacts_by_role(api):
    _, client, _ = api
    officer, viewer = client(Role.DUTY_OFFICER), client(Role.VIEWER)
    for at, who in (("2026-12-07T08:29:59+08:00", "li"), ("2026-12-07T08:30:00+08:00", "zhang")):
        body = officer.get(f"/units/{OFFICE}/duty", params={"at": at}).json()
        posts = {p["post"]: p for p in body["posts"]}
        assert posts["officer"]["person"]["id"] == who and posts["officer"]["source"] == "rotation"
        assert posts["leader"]["person"]["name"] == "刘局长"
    assert officer.get(f"/units/{OFFICE}/duty").json()["posts"][2]["person"]["contacts"]["mobile"] == "13800000001"
    assert viewer.get(f"/units/{OFFICE}/duty").json()["posts"][2]["person"]["contacts"] is None
    # a unit with no roster: every post falls back to 区应急办's 值班主任, and says so
    other = officer.get("/units/tongzhou_police/duty").json()
    assert other["roster_kept"] is False
    assert {(p["source"], p["person"]["id"]) for p in other["posts"]} == {("fallback", "sun")}
    assert officer.get("/units/no_such_unit/duty").status_code == 404
    assert officer.get(f"/units/{OFFICE}/duty", params={"at": "2026-12-07T08:30:00"}).status_code == 422


def test_an_override_that_breaks_a_rule_is_refused_naming_the_field_and_one_that_keeps_them_is_kept(api):
    app, client, sent = api
    admin, viewer = client(Role.ADMIN), client(Role.VIEWER)
    informal = {"post": "officer", "person_id": "nobody", "start": "2026-12-08T08:30:00+08:00",
                "end": "2026-12-08T20:00:00+08:00", "approved_by": "liu"}
    resp = admin.post(f"/units/{OFFICE}/duty/overrides", json=informal)
    assert resp.status_code == 422 and resp.json()["fields"][0]["rule"] == "reference", resp.text
    assert sent.records == []
    assert viewer.post(f"/units/{OFFICE}/duty/overrides", json={**informal, "person_id": "wang"}).status_code == 403
    resp = admin.post(f"/units/{OFFICE}/duty/overrides", json={**informal, "person_id": "wang"})
    assert resp.status_code == 201, resp.text
    assert [t for t, _, _ in sent.records] == [DUTY_ROSTERS.name, DUTY_LOG.name]
    at = admin.get(f"/units/{OFFICE}/duty", params={"at": "2026-12-08T12:00:00+08:00"}).json()
    assert at["posts"][2]["person"]["id"] == "wang" and at["posts"][2]["source"] == "override"
    assert app.state.duty.log_of(OFFICE)[-1].kind == DutyEventKind.ROSTER_CHANGED


def test_an_import_with_bad_cells_answers_422_naming_each_row_and_column_and_sends_nothing(api):
    _, client, sent = api
    rows = [["日期", "班次", "带班领导", "值班主任", "值班员", "电话"],
            ["2026-12-10", "", "刘局长", "孙主任", "张伟", "1380000"],
            ["2026-12-11", "25:00-次日08:30", "刘局长", "孙主任", "某某", ""]]
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    resp = client(Role.ADMIN).post("/rosters", data={"unit_id": OFFICE},
                                   files={"file": ("值班表.csv", buf.getvalue().encode("utf-8-sig"), "text/csv")})
    assert resp.status_code == 422, resp.text
    cells = {(f["row"], f["column"]) for f in resp.json()["fields"]}
    assert cells == {(2, "电话"), (3, "班次"), (3, "值班员")}, resp.json()
    assert sent.records == []
    resp = client(Role.ADMIN).post("/rosters", files={"file": ("值班表.xls", b"not a workbook", "x")})
    assert resp.status_code == 422 and resp.json()["fields"][0]["field"] == "file"


def test_a_handover_opened_by_the_timer_is_confirmed_once_by_the_incoming_officer(api):
    app, client, sent = api
    book = app.state.duty
    out = due(book.roster(), PLAN.duty, book.events, NOW.astimezone(SH), units={OFFICE: "区应急办"},
              lookback=timedelta(days=1))
    for e in out.events:
        book.apply_event(e)
    [handover] = client(Role.VIEWER).get(f"/units/{OFFICE}/handovers").json()
    assert (handover["outgoing"]["id"], handover["incoming"]["id"]) == ("li", "zhang")
    assert handover["confirmed_at"] is None
    assert client(Role.VIEWER).post(f"/handovers/{handover['handover_id']}/confirm", json={}).status_code == 403
    resp = client(Role.DUTY_OFFICER).post(f"/handovers/{handover['handover_id']}/confirm", json={})
    assert resp.status_code == 201, resp.text
    assert resp.json()["confirmed_by"] == "u-duty_officer"
    [(topic, key, event)] = sent.records
    assert (topic, key, event.kind) == (DUTY_LOG.name, OFFICE, DutyEventKind.HANDOVER_CONFIRMED)
    again = client(Role.DUTY_OFFICER).post(f"/handovers/{handover['handover_id']}/confirm", json={})
    assert again.status_code == 409 and again.json()["fields"][0]["field"] == "handover_id"
    assert client(Role.DUTY_OFFICER).post("/handovers/handover.x.1/confirm", json={}).status_code == 404


def test_the_duty_log_downloads_as_csv_and_xlsx_and_calendars_as_ics(api):
    app, client, _ = api
    book = app.state.duty
    for e in due(book.roster(), PLAN.duty, book.events, NOW, units={OFFICE: "区应急办"}, lookback=timedelta(days=1)).events:
        book.apply_event(e)
    c = client(Role.VIEWER)
    lines = c.get(f"/units/{OFFICE}/duty-log").json()["lines"]
    assert [ln["kind"] for ln in lines] == ["handover_opened"]
    text = c.get(f"/units/{OFFICE}/duty-log", params={"format": "csv"}).content.decode("utf-8-sig")
    assert text.splitlines()[0] == "班次开始,班次结束,值班员,时间,事项,事件编号,说明"
    assert "交接班" in text and "李娜 → 张伟" in text
    xlsx = c.get(f"/units/{OFFICE}/duty-log", params={"format": "xlsx"})
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet.cell(row=1, column=1).value == "班次开始" and sheet.max_row >= 2
    ics = c.get(f"/units/{OFFICE}/duty.ics", params={"from": "2026-12-07T08:30:00+08:00", "to": "2026-12-09T08:30:00+08:00"})
    assert ics.headers["content-type"].startswith("text/calendar")
    assert ics.text.count("BEGIN:VEVENT") == 6 and "区应急办 值班员 张伟" in ics.text
    mine = c.get("/people/zhang/duty.ics", params={"from": "2026-12-07T08:30:00+08:00", "to": "2026-12-11T08:30:00+08:00"})
    assert mine.text.count("BEGIN:VEVENT") == 2
    assert c.get("/people/nobody/duty.ics").status_code == 404


def test_a_broken_upload_form_is_a_422_naming_the_body(api):
    _, client, sent = api
    resp = client(Role.ADMIN).post("/rosters", content=b"--b\r\n72--b--\r\n",
                                   headers={"content-type": "multipart/form-data; boundary=b"})
    assert resp.status_code == 422 and resp.json()["fields"][0]["field"] == "(body)", resp.text
    assert sent.records == []


def test_times_outside_2000_2100_are_refused_naming_the_parameter(api):
    _, client, _ = api
    c = client(Role.VIEWER)
    for path, params, name in ((f"/units/{OFFICE}/duty", {"at": "0001-01-01T00:00:00Z"}, "at"),
                               (f"/units/{OFFICE}/duty", {"at": "9000-01-01T00:00:00+08:00"}, "at"),
                               (f"/units/{OFFICE}/roster", {"from": "9999-12-31T00:00:00Z"}, "from"),
                               (f"/units/{OFFICE}/duty.ics", {"from": "1900-01-01T00:00:00Z"}, "from")):
        resp = c.get(path, params=params)
        # the 422 the document declares (a Problem), naming the parameter as FastAPI's own query errors do
        assert resp.status_code == 422 and resp.json()["fields"][0]["field"] == f"query.{name}", (path, resp.text)
    resp = c.get(f"/units/{OFFICE}/roster", params={"from": "2026-12-08T08:30:00+08:00", "to": "2026-12-08T08:30:00+08:00"})
    assert resp.status_code == 422 and resp.json()["fields"] == [{"field": "query.to", "message": "must be after from"}]


def test_a_change_waits_for_the_rosters_to_be_read_back(api):
    app, client, sent = api
    app.state.duty.caught_up.clear()
    resp = client(Role.ADMIN).post(f"/units/{OFFICE}/duty/overrides", json={
        "post": "officer", "person_id": "wang", "start": "2026-12-08T08:30:00+08:00",
        "end": "2026-12-08T20:00:00+08:00", "approved_by": "liu"})
    assert resp.status_code == 503 and sent.records == [], resp.text


def test_an_urgent_override_is_not_refused_for_a_gap_the_unit_had_already(api):
    """The office's 值班员 rotation stops in two weeks (next month's table not in yet): a 代班 today is
    kept; one that makes a gap of its own is refused."""
    app, client, sent = api
    book = app.state.duty
    short = roster()
    rotations = [r.model_copy(update={"rrule": "FREQ=DAILY;COUNT=20"}) if r.post == "officer" else r for r in short.rotations]
    book.apply_roster(to_record(short.model_copy(update={"rotations": rotations}), OFFICE, book.sealer, source="json",
                                now=START, by="test"))
    body = {"post": "officer", "person_id": "wang", "start": "2026-12-07T12:00:00+08:00",
            "end": "2026-12-07T20:00:00+08:00", "approved_by": "liu", "reason": "张伟 病假"}
    resp = client(Role.ADMIN).post(f"/units/{OFFICE}/duty/overrides", json=body)
    assert resp.status_code == 201, resp.text
    # the reason is free text: sealed on the topic, read back in the book
    [(topic, _, record), _] = sent.records
    assert topic == DUTY_ROSTERS.name and "病假" not in record.model_dump_json()
    assert any(o.reason == "张伟 病假" for o in book.roster().overrides)
    informal = client(Role.ADMIN).post(f"/units/{OFFICE}/duty/overrides", json={**body, "person_id": "nobody"})
    assert informal.status_code == 422


def test_a_confirmation_naming_another_person_is_forbidden(api):
    app, client, sent = api
    book = app.state.duty
    for e in due(book.roster(), PLAN.duty, book.events, NOW, units={OFFICE: "区应急办"}, lookback=timedelta(days=1)).events:
        book.apply_event(e)
    [handover] = client(Role.VIEWER).get(f"/units/{OFFICE}/handovers").json()
    resp = client(Role.DUTY_OFFICER).post(f"/handovers/{handover['handover_id']}/confirm", json={"person_id": "wang"})
    assert resp.status_code == 403 and sent.records == [], resp.text
