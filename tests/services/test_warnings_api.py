"""Warnings through the API (issue 20) on an app built from its own parts, no broker: what a route
would write is what it sent. A 橙 warning drafted, approved twice, issued, adjusted to 红 and lifted,
each step's CAP valid; bad input refused naming the field, nothing written; incoming CAP from the
weather bureau taken as a draft, malformed CAP refused; the Atom feed of the live ones."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from playbooks.warning.cap import CapMessage, Level, to_xml, validate
from tests.services.test_duty_api import NOW, api  # noqa: F401 - the fixture
from topics.catalog import DRILL_NOTIFICATIONS, NOTIFICATIONS_REQUESTED, WARNING_EVENTS
from topics.models import Role

OFFICE = "district_emergency_office"
MET = "district_meteorological_bureau"
HIGH = ["collect", "analyse", "publish_forecast", "advise_public", "standby", "evacuate"]
BASE = HIGH[:4]


@pytest.fixture()
def warn(api):  # noqa: F811 - the fixture of test_duty_api
    app, client, sent = api
    app.state.warnings.caught_up.set()
    return app, client, sent


def draft(level="orange", unit=OFFICE, measures=HIGH, **over) -> dict:
    content = {"category": "rainstorm", "level": level, "start": (NOW + timedelta(hours=1)).isoformat(),
               "area": ["street_zhongcang", "town_songzhuang"], "hazards": "预计未来6小时降雨量将达100毫米以上",
               "measures": measures, "issuer": unit}
    content.update(over)
    return {"warning_id": "w-test-1", "unit": unit, "content": content}


def topics(sent) -> list[str]:
    return [t for t, _, _ in sent.records]


def test_an_orange_warning_drafted_approved_twice_issued_adjusted_to_red_and_lifted(warn):
    app, client, sent = warn
    officer, commander = client(Role.DUTY_OFFICER), client(Role.COMMANDER)
    r = officer.post("/warnings", json=draft())
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "draft" and r.json()["level_name"] == "二级橙色"
    cap = officer.get("/warnings/w-test-1/cap")
    assert cap.headers["content-type"].startswith("application/cap+xml") and b"<status>Draft</status>" in cap.content
    assert officer.post("/warnings/w-test-1/issue", json={"unit": OFFICE}).status_code == 422  # no approvals yet
    r = commander.post("/warnings/w-test-1/approvals", json={"unit": "district_government", "approval": "district_leader",
                                                             "approver": "分管副区长"})
    assert r.status_code == 200, r.text
    r = commander.post("/warnings/w-test-1/approvals", json={"unit": "city_emergency_office", "approval": "city_office",
                                                             "approver": "市应急办值班室"})
    assert [a["id"] for a in r.json()["approvals"]] == ["district_leader", "city_office"]
    sent.records.clear()
    r = officer.post("/warnings/w-test-1/issue", json={"unit": OFFICE})
    assert r.status_code == 200 and r.json()["status"] == "issued", r.text
    told = {key.rsplit(".", 1)[-1] for t, key, _ in sent.records if t == NOTIFICATIONS_REQUESTED.name}
    assert topics(sent)[0] == WARNING_EVENTS.name
    streets = [u.id for u in app.state.plan.units.values() if u.kind == "street"]
    assert set(streets) <= told and {"hq_meteorological_disaster", MET, "city_emergency_office"} <= told
    r = commander.post("/warnings/w-test-1/adjust", json={"unit": OFFICE, "level": "red", "approver": "区应急委副主任",
                                                          "measures": HIGH})
    assert r.status_code == 200 and r.json()["level"] == "red", r.text
    r = officer.post("/warnings/w-test-1/lift", json={"unit": OFFICE, "reason": "降雨结束"})
    assert r.status_code == 200 and r.json()["status"] == "lifted"
    history = officer.get("/warnings/w-test-1").json()["history"]
    assert [h["kind"] for h in history] == ["drafted", "approved", "approved", "issued", "adjusted", "lifted"]
    kinds = []
    for h in history:
        if h["kind"] in ("drafted", "issued", "adjusted", "lifted"):
            xml = officer.get(f"/warnings/w-test-1/cap/{h['seq']}").content
            assert validate(xml) == [], h
            kinds.append(xml.split(b"<msgType>")[1].split(b"</msgType>")[0].decode())
    assert kinds == ["Alert", "Alert", "Update", "Cancel"]


@pytest.mark.parametrize(("body", "field"), [
    (draft("blue", "street_zhongcang", BASE), "unit"),  # 3.2.1: a street issues no warning
    (draft(measures=[]), "content.measures"),  # 3.2.4: a warning missing its measures
    (draft(hazards=""), "content.hazards"),
    (draft("blue", "district_water_bureau", BASE), "unit"),  # not rainstorm's department
])
def test_bad_warnings_are_refused_naming_the_field_and_nothing_is_written(warn, body, field):
    _, client, sent = warn
    r = client(Role.DUTY_OFFICER).post("/warnings", json=body)
    assert r.status_code == 422, r.text
    assert field in [f["field"] for f in r.json()["fields"]], r.json()
    assert sent.records == []


def test_a_red_warning_is_not_issued_without_its_approvals_and_unknown_ones_are_not_lifted(warn):
    _, client, sent = warn
    officer = client(Role.DUTY_OFFICER)
    assert officer.post("/warnings", json=draft("red")).status_code == 201
    sent.records.clear()
    r = officer.post("/warnings/w-test-1/issue", json={"unit": OFFICE})
    assert r.status_code == 422 and "区领导批准" in r.text and sent.records == []
    assert officer.post("/warnings/nope/lift", json={"unit": OFFICE}).status_code == 404
    assert sent.records == []


def test_who_may_do_what(warn):
    app, client, _ = warn
    assert client(Role.VIEWER).post("/warnings", json=draft()).status_code == 403
    assert client(Role.DUTY_OFFICER).post("/warnings", json=draft()).status_code == 201
    body = {"unit": "district_government", "approval": "district_leader", "approver": "x"}
    assert client(Role.DUTY_OFFICER).post("/warnings/w-test-1/approvals", json=body).status_code == 403
    assert client(Role.VIEWER).get("/warnings").status_code == 200
    assert TestClient(app).get("/warnings").status_code == 401


def test_a_drill_warning_notifies_the_drill_topic_only_and_its_cap_is_exercise(warn):
    _, client, sent = warn
    officer = client(Role.DUTY_OFFICER)
    assert officer.post("/warnings", json={**draft("blue", MET, BASE), "drill": True}).status_code == 201
    assert officer.post("/warnings/w-test-1/issue", json={"unit": MET}).status_code == 200
    notice_topics = {t for t in topics(sent) if t != WARNING_EVENTS.name}
    assert notice_topics == {DRILL_NOTIFICATIONS.name}
    assert b"<status>Exercise</status>" in officer.get("/warnings/w-test-1/cap").content


def test_the_atom_feed_lists_the_live_warnings_with_their_cap(warn):
    app, client, _ = warn
    officer = client(Role.DUTY_OFFICER)
    officer.post("/warnings", json=draft("blue", MET, BASE))
    feed = TestClient(app).get("/warnings/feed.atom")
    assert feed.status_code == 200 and b"<entry>" not in feed.content  # a draft is not published
    officer.post("/warnings/w-test-1/issue", json={"unit": MET})
    feed = TestClient(app).get("/warnings/feed.atom").content
    assert b"/warnings/w-test-1/cap/2" in feed and "暴雨蓝色预警".encode() in feed


def cap_from_bureau(**over) -> bytes:
    msg = dict(identifier="11011241600000_20260720140000_1", sender="bjtz.weather", sent=NOW, level=Level.of("黄"),
               category="Met", event="暴雨", headline="通州区气象台发布暴雨黄色预警", description="预计未来6小时降雨量将达50毫米以上",
               sender_name="通州区气象台", areas=("中仓街道", "宋庄镇"))
    msg.update(over)
    return to_xml(CapMessage(**msg))


def test_incoming_cap_from_the_weather_bureau_becomes_a_draft_and_malformed_cap_is_refused(warn):
    app, client, sent = warn
    officer = client(Role.DUTY_OFFICER)
    headers = {"content-type": "application/cap+xml"}
    r = officer.post("/warnings/cap/incoming", params={"unit": MET}, content=cap_from_bureau(), headers=headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["status"], body["level"], body["content"]["issuer"]) == ("draft", "yellow", MET)
    assert set(body["content"]["area"]) == {"street_zhongcang", "town_songzhuang"}
    again = officer.post("/warnings/cap/incoming", params={"unit": MET}, content=cap_from_bureau(), headers=headers)
    assert again.json()["warning_id"] == body["warning_id"]  # the same message: the same warning
    sent.records.clear()
    bomb = b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><alert>&lol2;</alert>'
    for bad in (b"not xml", bomb, cap_from_bureau().replace(b"+08:00</sent>", b"Z</sent>")):
        r = officer.post("/warnings/cap/incoming", params={"unit": MET}, content=bad, headers=headers)
        assert r.status_code == 422 and r.json()["fields"], r.text
    assert officer.post("/warnings/cap/incoming", params={"unit": "street_zhongcang"}, content=cap_from_bureau(),
                        headers=headers).status_code == 422
    assert sent.records == []


def test_a_publication_task_is_done_when_its_unit_confirms_it(warn):
    _, client, _ = warn
    officer = client(Role.DUTY_OFFICER)
    officer.post("/warnings", json=draft("blue", MET, BASE))
    body = officer.post("/warnings/w-test-1/issue", json={"unit": MET}).json()
    sms = next(t["task"] for t in body["tasks"] if t["task"]["what"] == "sms")
    assert sms["unit_id"] == OFFICE and all(t["done_at"] is None for t in body["tasks"])
    wrong = officer.post(f"/warnings/w-test-1/tasks/{sms['id']}/confirm", json={"unit": MET})
    assert wrong.status_code == 422 and wrong.json()["fields"][0]["field"] == "unit"
    done = officer.post(f"/warnings/w-test-1/tasks/{sms['id']}/confirm", json={"unit": OFFICE})
    assert done.status_code == 200, done.text
    [confirmed] = [t for t in done.json()["tasks"] if t["task"]["id"] == sms["id"]]
    assert confirmed["done_at"] and confirmed["done_by"]
    assert officer.post(f"/warnings/w-test-1/tasks/{sms['id']}/confirm", json={"unit": OFFICE}).status_code == 422
