"""The 迟报/漏报/瞒报 ledger (5.5.2) on the local Kafka, issue 23 item 4: an incident with a late phone
report, a missed written report, a follow-up that doubles the deaths and an unapproved release attempt;
the ledger of the day shows each against the right unit, its .xlsx and draft 通报 .docx carry the same
figures, and a drill's breaches are in the drill's ledger, not the live one. Report times are set in the
past (received 65 minutes ago), so the deadlines have passed without waiting for them. A 通报 issued with a
short term of its own is reminded and 督办 by the real worker's timer, once, and a later report is late."""

from __future__ import annotations

import io
import json
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import docx
import openpyxl
import pytest

from playbooks.drill.scenario import SCENARIOS_DIR
from services.worker.rectification import RECTIFICATION_INTERVAL_S
from tests.conftest import unique_id
from tests.waiting import eventually
from topics.catalog import LEDGER_CIRCULARS, NOTIFICATIONS_REQUESTED

pytestmark = pytest.mark.e2e
BEIJING = ZoneInfo("Asia/Shanghai")
LEAD = "district_urban_management_commission"  # 燃气事故's lead unit (table 2.3.6): 区城市管理委
PUBLICITY = "district_publicity_dept"  # 区委宣传部: the first public release is theirs (4.7.1)


def obligation(body: dict, kind: str) -> dict:
    return next((o for o in body["obligations"] if o["kind"] == kind), {})


def the_day(t: datetime) -> dict[str, str]:
    """The Beijing day of `t`, and the next: a deadline of a report received just before midnight is in it."""
    start = t.astimezone(BEIJING).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"from": start.isoformat(), "to": (start + timedelta(days=2)).isoformat()}


def test_the_ledger_of_the_day_shows_each_breach_with_its_unit(service):
    now = datetime.now(timezone.utc)
    received = now - timedelta(minutes=65)
    with service.client() as c:
        resp = c.post("/incidents", json={
            "report_id": unique_id("ledger"), "type": "燃气事故", "source": "110转警",
            "occurred_at": (received - timedelta(minutes=5)).isoformat(), "received_at": received.isoformat(),
            "location": {"street": "梨园镇"}, "facts": {"deaths": 2}})
        assert resp.status_code == 202, resp.text
        iid = resp.json()["incident_id"]
        # received 65 minutes ago: the phone report (10) and the written report (60) were breached on arrival
        eventually(lambda: c.get(f"/incidents/{iid}").json(),
                   until=lambda b: obligation(b, "written_report").get("status") == "missed"
                   and obligation(b, "phone_report").get("status") == "missed",
                   timeout=15, every=0.1, what="the breaches on arrival")
        filed = datetime.now(timezone.utc)
        resp = c.post(f"/incidents/{iid}/reports", json={"kind": "phone_report", "unit_id": LEAD,
                                                         "filed_at": filed.isoformat(), "filed_by": "区城市管理委值班员"})
        assert resp.status_code == 202, resp.text
        timeline_before = c.get(f"/incidents/{iid}/timeline").json()["events"]
        # an unapproved release: refused, naming `release`, and nothing written (4.7.1 未经批准不得擅自对外发布)
        resp = c.post(f"/incidents/{iid}/reports", json={"kind": "first_release", "unit_id": PUBLICITY,
                                                         "filed_at": filed.isoformat(), "filed_by": "区委宣传部"})
        assert resp.status_code == 422 and [f["field"] for f in resp.json()["fields"]] == ["release"], resp.text
        resp = c.post(f"/incidents/{iid}/reports", json={"kind": "followup", "unit_id": LEAD, "filed_at": filed.isoformat(),
                                                         "filed_by": "区城市管理委值班员", "followup": {"facts": {"deaths": 4}}})
        assert resp.status_code == 202, resp.text
        body = eventually(lambda: c.get(f"/incidents/{iid}").json(),
                          until=lambda b: obligation(b, "phone_report").get("status") == "late"
                          and b["decision"]["grade"] == "较大", timeout=15, every=0.1, what="the late phone report, regraded")
        events = c.get(f"/incidents/{iid}/timeline").json()["events"]
        assert not any(e["kind"] == "report_filed" and e["details"].get("report_kind") == "first_release"
                       for e in events[len(timeline_before):])

    day = the_day(received)
    with service.client("viewer") as screen:  # the command center's screen reads it
        resp = screen.get("/ledger", params=day)
        assert resp.status_code == 200, resp.text
        ledger = resp.json()
        xlsx = screen.get("/ledger", params={**day, "format": "xlsx"})
        word = screen.get("/ledger", params={**day, "format": "docx"})
        bad = screen.get("/ledger", params={"from": day["to"], "to": day["from"]})
        unknown = screen.get("/ledger", params={**day, "unit": "no_such_unit"})
    assert bad.status_code == 422 and [f["field"] for f in bad.json()["fields"]] == ["query.from"]
    assert unknown.status_code == 422 and [f["field"] for f in unknown.json()["fields"]] == ["query.unit"]

    rows = {r["obligation"]: r for r in ledger["rows"] if r["incident_id"] == iid and r["opening"] == 1}
    phone, written, release = rows["phone_report"], rows["written_report"], rows["first_release"]
    assert (phone["outcome_label"], phone["unit_id"]) == ("迟报", LEAD)
    expected = (filed - (received + timedelta(minutes=10))).total_seconds() / 60
    assert abs(phone["minutes_late"] - expected) < 1.0, (phone, expected)  # as the engine counted it: from filed_at
    assert phone["minutes_late"] == obligation(body, "phone_report")["minutes_late"]
    assert (written["outcome_label"], written["unit_id"]) == ("漏报", LEAD)
    assert (release["outcome_label"], release["unit_id"]) == ("漏报", PUBLICITY)  # the refused release met nothing
    (flag,) = [f for f in ledger["flags"] if f["incident_id"] == iid]
    assert (flag["first"]["counts"]["deaths"], flag["followup"]["counts"]["deaths"]) == (2, 4)
    assert flag["unit_id"] == LEAD and flag["status"] == "待核实" and (flag["first"]["grade"], flag["followup"]["grade"]) == ("一般", "较大")
    lead_line = next(u for u in ledger["units"] if u["unit_id"] == LEAD)
    assert lead_line["counts"]["late"] >= 1 and lead_line["counts"]["missed"] >= 1 and lead_line["concealment_flags"] >= 1

    # the spreadsheet: the same rows, the same figures
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    sheet = [r for r in book["台账"].iter_rows(min_row=2, values_only=True) if r[0] == iid]
    by_label = {r[2]: r for r in sheet}
    assert by_label["电话报告"][6] == "迟报" and by_label["电话报告"][7] == phone["minutes_late"]
    assert by_label["书面报告"][6] == "漏报" and by_label["书面报告"][3] == "区城市管理委"
    units = {r[0]: r for r in book["单位汇总"].iter_rows(min_row=2, values_only=True)}
    assert units["区城市管理委"][7] == lead_line["breaches"] and units["区城市管理委"][8] == lead_line["minutes_late"]
    flags = [r for r in book["疑似瞒报"].iter_rows(min_row=2, values_only=True) if r[0] == iid]
    assert len(flags) == 1

    # the draft 通报: each unit with breaches, each breach with its incident, due time and delay, a 限期整改 each
    doc = docx.Document(io.BytesIO(word.content))
    text = "\n".join(p.text for p in doc.paragraphs)
    breached = [u for u in ledger["units"] if u["breaches"]]
    assert text.count("限期整改：请于") == len(breached) == len(doc.tables)
    cells = [[c.text for c in r.cells] for t in doc.tables for r in t.rows[1:]]
    late = next(c for c in cells if c[0] == iid and c[2] == "电话报告")
    assert late[4] == "迟报" and late[5] == f"{phone['minutes_late']:g}"
    assert late[3] == datetime.fromisoformat(phone["due_at"]).astimezone(BEIJING).strftime("%Y年%m月%d日 %H:%M")
    assert any(c[0] == iid and c[2] == "首次发布简要信息" and c[4] == "漏报" for c in cells)


def test_a_drills_breaches_are_in_its_own_ledger_not_the_live_one(service):
    scenario = (SCENARIOS_DIR / "gas-explosion.yaml").read_text(encoding="utf-8")  # its phone report never filed
    with service.client("drill_controller") as c:
        resp = c.post("/drills", json={"scenario": scenario, "speed": 3600})
        assert resp.status_code == 202, resp.text
        run_id = resp.json()["run_id"]
        run = eventually(lambda: c.get(f"/drills/{run_id}").json(), until=lambda b: b["status"] != "running",
                         timeout=60, every=0.3, what="the drill to finish")
        assert run["status"] == "done", run
        drill = c.get(f"/drills/{run_id}/ledger")
        assert drill.status_code == 200, drill.text
        assert c.get("/ledger").status_code == 403  # a drill controller reads drills' ledgers only
    body = drill.json()
    incidents = {r["incident_id"] for r in body["rows"]}
    assert body["drill"] and incidents and all(r["drill"] for r in body["rows"])
    phone = next(r for r in body["rows"] if r["obligation"] == "phone_report")
    assert phone["outcome_label"] == "漏报" and phone["unit_id"] == LEAD
    written = next(r for r in body["rows"] if r["obligation"] == "written_report")
    assert written["outcome_label"] == "迟报" and written["minutes_late"] == 12.0  # as the scenario says
    first_due = min(datetime.fromisoformat(r["due_at"]) for r in body["rows"])
    with service.client("viewer") as screen:
        live = screen.get("/ledger", params=the_day(first_due))  # the drill's (simulated) day, live
    assert live.status_code == 200, live.text
    assert not {r["incident_id"] for r in live.json()["rows"]} & incidents
    assert not any(r["drill"] for r in live.json()["rows"])


def test_a_circulars_short_term_is_reminded_then_chased_once_and_a_later_report_is_late(service):
    """5.5.1 限期整改 on the real worker: a 通报 with a 24-second term (rectify_by) reminds the unit half-way
    and 督办 its 带班领导 and 区应急办 at the due time, each step once on yingji.ledger.circulars with its
    notices, acknowledgeable with no incident behind them; the same period again is refused naming the
    通报; a report after the due time makes the 整改 late."""
    now = datetime.now(timezone.utc)
    received = now - timedelta(minutes=65)
    with service.client() as c:
        resp = c.post("/incidents", json={
            "report_id": unique_id("ledger-chase"), "type": "燃气事故", "occurred_at": (received - timedelta(minutes=5)).isoformat(),
            "received_at": received.isoformat(), "location": {"street": "梨园镇"}})
        assert resp.status_code == 202, resp.text
        iid = resp.json()["incident_id"]
        eventually(lambda: c.get(f"/incidents/{iid}").json(),
                   until=lambda b: obligation(b, "written_report").get("status") == "missed",
                   timeout=15, every=0.1, what="the breaches on arrival")
    # a period of this test's own (another test may issue the 通报 of the whole day)
    period = {"start": (received - timedelta(seconds=1)).isoformat(), "end": (received + timedelta(hours=2)).isoformat()}
    before = scrape_steps(service)
    with service.client("commander") as boss:
        resp = boss.post("/ledger/circulars", json={**period, "rectify_by": (datetime.now(timezone.utc)
                                                                            + timedelta(seconds=24)).isoformat()})
        assert resp.status_code == 201, resp.text
        circular = resp.json()["circular"]
        cid = circular["id"]
        mine = next(u for u in circular["units"] if u["unit_id"] == LEAD)
        due, remind = datetime.fromisoformat(mine["due_at"]), datetime.fromisoformat(mine["remind_at"])
        assert timedelta(seconds=11) < remind - datetime.fromisoformat(circular["issued_at"]) < timedelta(seconds=13)
        again = boss.post("/ledger/circulars", json=period)
        assert again.status_code == 409 and again.json()["fields"][0]["field"] == "period", again.text
        assert cid in again.json()["fields"][0]["message"]

        def status():
            return next(s for s in boss.get("/ledger/rectifications").json()
                        if s["circular_id"] == cid and s["unit_id"] == LEAD)

        reminded = eventually(status, until=lambda s: s["reminded_at"] is not None, timeout=30, every=0.5,
                              what="the reminder")
        assert reminded["status"] == "open" and reminded["escalated_at"] is None
        assert datetime.fromisoformat(reminded["reminded_at"]) >= remind
        chased = eventually(status, until=lambda s: s["escalated_at"] is not None, timeout=30, every=0.5,
                            what="the 督办")
        assert chased["status"] == "missed" and datetime.fromisoformat(chased["escalated_at"]) >= due
        page = boss.get("/ledger", params={"from": period["start"], "to": period["end"]},
                        headers={"Accept": "text/html"}).text
        assert "已提醒" in page and "已督办" in page
    time.sleep(2 * RECTIFICATION_INTERVAL_S + 1)  # two more ticks of the timer: still once
    steps = [r["body"] for r in (json.loads(x.value) for x in service.read_topic(LEDGER_CIRCULARS.name, settle_s=0))
             if r["body"].get("circular_id") == cid and r["body"]["record"].startswith("rectification_")
             and r["body"]["record"] != "rectification_reported"]
    owing = {u["unit_id"] for u in circular["units"]}
    ids = [s["id"] for s in steps]
    assert len(ids) == len(set(ids)) == 2 * len(owing), ids  # one reminder and one 督办 per unit, once each
    lead_steps = {s["record"]: s for s in steps if s["unit_id"] == LEAD}
    assert set(lead_steps) == {"rectification_reminded", "rectification_overdue"}
    notices = [json.loads(x.value) for x in service.read_topic(NOTIFICATIONS_REQUESTED.name, settle_s=0)]
    notices = [n for n in notices if n["incident_id"] == cid]
    keys = [n["dedup_key"] for n in notices]
    assert len(keys) == len(set(keys)) == 3 * len(owing)  # a reminder, then the unit's and 区应急办's 督办
    lead_notes = {(n["unit_id"], n["role"], n["rule"]) for n in notices if n["dedup_key"].startswith(f"{cid}.{LEAD}.")}
    assert lead_notes == {(LEAD, "值班主任", "rectification_remind"), (LEAD, "带班领导", "rectification_overdue"),
                          ("district_emergency_office", "值班主任", "rectification_overdue")}
    assert all(n["kind"] == "rectification" and n["section"] == "5.5.1" for n in notices)
    assert set(lead_steps["rectification_overdue"]["notices"]) <= set(keys)
    after = eventually(lambda: scrape_steps(service), until=lambda a: a["overdue"] - before["overdue"] >= len(owing),
                       timeout=20, every=0.5, what="the steps counted")
    assert after["remind"] - before["remind"] >= len(owing)
    with service.client() as officer:
        ack = officer.post(f"/notices/{lead_steps['rectification_overdue']['notices'][0]}/ack")
        assert ack.status_code == 200 and ack.json()["incident_id"] == cid, ack.text
        assert officer.get(f"/incidents/{cid}").status_code == 404  # no incident behind it
        late = officer.post(f"/ledger/circulars/{cid}/rectifications", json={
            "unit_id": LEAD, "filed_at": datetime.now(timezone.utc).isoformat(), "filed_by": "区城市管理委值班员"})
        assert late.status_code == 201 and late.json()["status"] == "late" and late.json()["minutes_late"] > 0, late.text
    with service.client("viewer") as screen:
        issued = value_of(screen.get("/metrics").text, "yingji_ledger_circulars_issued_total")
    assert issued >= 1


def scrape_steps(service) -> dict[str, float]:
    text = service.worker_metrics_text()
    return {step: value_of(text, "yingji_ledger_rectification_steps_total", f'step="{step}"')
            for step in ("remind", "overdue")}


def value_of(text: str, name: str, label: str = "") -> float:
    """The sum of a sample over the expositions in `text` (one per worker)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (not label or label in line) and not line.startswith("#"):
            head, _, val = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(val)
    return total
