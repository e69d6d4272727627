"""Verified contacts (issue 19 item 6) on an app built from its own parts: POST
/people/{id}/test-message writes one test notice; a person's 已阅 of a test message, folded from topic
deliveries, marks them verified in the duty answers and the API's metric; the board counts each
incident's notices that reached nobody and those not yet read."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from services.delivery.tokens import make_token
from services.web import board
from services.web.publisher import BrokerUnavailable
from tests.services.test_ack_api import INCIDENT, NOTICE, event_bytes, incident_view
from tests.services.test_duty_api import NOW, OFFICE, api  # noqa: F401 - the fixture
from topics.catalog import DELIVERIES, NOTIFICATIONS_REQUESTED
from topics.delivery import AckHow, AckRecord, Undeliverable, ack_id, undeliverable_id
from topics.models import NotificationRequested, Role


def ack_bytes(dedup_key: str, person_id: str | None, at=NOW, by: str = "link", incident: str = "test") -> bytes:
    return event_bytes(AckRecord(id=ack_id(dedup_key, person_id, by), dedup_key=dedup_key, incident_id=incident,
                                 person_id=person_id, at=at, how=AckHow.LINK, by=by))



def officer_of(client) -> dict:
    return {p["post"]: p for p in client.get(f"/units/{OFFICE}/duty").json()["posts"]}["officer"]["person"]


def test_the_post_writes_exactly_one_test_notice_to_the_person(api):
    app, client, sent = api
    resp = client(Role.ADMIN).post("/people/zhang/test-message")
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["person_id"] == "zhang" and body["dedup_key"].startswith("test.zhang.")
    [(topic, key, note)] = sent.records
    assert topic == NOTIFICATIONS_REQUESTED.name and key == body["dedup_key"]
    assert isinstance(note, NotificationRequested)
    assert (note.kind, note.incident_id, note.dedup_key, note.unit_id) == ("test", "test", key, OFFICE)
    assert note.on_duty.person_id == "zhang" and note.requested_at == NOW
    assert "u-admin" in note.why
    # the view holds it at once: the ack link of the message finds its notice
    assert app.state.view.notice(key) == note
    assert client(Role.COMMANDER).post("/people/zhang/test-message").json()["dedup_key"] != key  # a new message each time


def test_who_may_send_and_to_whom(api):
    app, client, sent = api
    for role in (Role.VIEWER, Role.DUTY_OFFICER, Role.DRILL_CONTROLLER):
        assert client(role).post("/people/zhang/test-message").status_code == 403, role
    assert TestClient(app).post("/people/zhang/test-message").status_code == 401
    resp = client(Role.ADMIN).post("/people/nobody/test-message")
    assert resp.status_code == 404 and resp.json()["detail"].startswith("person_id")
    assert client(Role.ADMIN).post("/people/bad id!/test-message").status_code == 422
    assert sent.records == []


def test_503_until_the_rosters_are_read_back_and_when_the_broker_does_not_take_it(api):
    app, client, sent = api
    app.state.duty.caught_up.clear()
    resp = client(Role.ADMIN).post("/people/zhang/test-message")
    assert resp.status_code == 503 and resp.headers["retry-after"]
    app.state.duty.caught_up.set()

    async def down(*_, **__):
        raise BrokerUnavailable("broker not reachable yet")

    sent.send = down
    assert client(Role.ADMIN).post("/people/zhang/test-message").status_code == 503
    assert sent.records == [] and app.state.view.notices == {}


def test_the_verified_flag_flips_once_an_ack_of_a_test_message_is_folded(api):
    app, client, _ = api
    view = app.state.view
    officer = client(Role.DUTY_OFFICER)
    assert (officer_of(officer)["contacts_verified"], officer_of(officer)["verified_at"]) == (False, None)
    # acks that verify nothing: an incident's notice, a signed-in user's ack of a test message
    view.apply(DELIVERIES.name, ack_bytes(NOTICE, "zhang", incident=INCIDENT))
    view.apply(DELIVERIES.name, ack_bytes("test.zhang.aaaa", None, by="u-admin"))
    assert officer_of(officer)["contacts_verified"] is False
    later, earlier = NOW - timedelta(minutes=5), NOW - timedelta(minutes=20)
    view.apply(DELIVERIES.name, ack_bytes("test.zhang.bbbb", "zhang", at=later))
    view.apply(DELIVERIES.name, ack_bytes("test.zhang.cccc", "zhang", at=earlier))  # read late: the first stands
    mine = officer_of(officer)
    assert mine["contacts_verified"] is True and mine["verified_at"] == "2026-12-07T08:20:00+08:00"
    viewer_posts = client(Role.VIEWER).get(f"/units/{OFFICE}/duty").json()["posts"]
    assert [p["person"]["contacts_verified"] for p in viewer_posts] == [False, False, True]  # leader, chief, officer
    shifts = officer.get(f"/units/{OFFICE}/roster").json()["shifts"]
    assert {s["person_id"]: s["person"]["contacts_verified"] for s in shifts} == {"zhang": True, "li": False,
                                                                                    "sun": False, "liu": False}
    assert "test" not in view.incidents and view.tests["test.zhang.bbbb"].acks


def test_the_ack_link_of_a_test_message_verifies_the_person_and_says_so(api):
    app, client, sent = api
    key = client(Role.ADMIN).post("/people/zhang/test-message").json()["dedup_key"]
    url = f"/ack/{make_token(key, 'zhang', NOW, app.state.ack_key)}"
    anon = TestClient(app, follow_redirects=False)
    assert ">已阅</button>" in anon.get(url).text
    assert anon.post(url).status_code == 303
    ack = sent.records[-1][2].body
    assert (ack.dedup_key, ack.person_id, ack.incident_id) == (key, "zhang", "test")
    assert "已确认已阅" in anon.get(url).text and ">已阅</button>" not in anon.get(url).text
    assert officer_of(client(Role.VIEWER))["contacts_verified"] is True


def metric(text: str, unit: str) -> float | None:
    line = f'yingji_duty_unverified_on_duty{{unit="{unit}"}} '
    return next((float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line)), None)


def test_the_metric_counts_the_people_on_duty_now_with_no_verified_contact(api):
    app, client, _ = api
    viewer = client(Role.VIEWER)
    assert metric(viewer.get("/metrics").text, OFFICE) == 3  # 刘局长, 孙主任, 张伟 on duty at 08:40
    app.state.view.apply(DELIVERIES.name, ack_bytes("test.zhang.x", "zhang"))
    app.state.view.apply(DELIVERIES.name, ack_bytes("test.li.x", "li"))  # 李娜 is off duty: counts nowhere
    assert metric(viewer.get("/metrics").text, OFFICE) == 2
    assert metric(viewer.get("/metrics").text, "tongzhou_police") is None  # no roster kept: its posts fall back


def test_the_board_counts_notices_undeliverable_and_unread():
    view = incident_view()
    row = board.snapshot(view)["rows"][0]
    assert (row["notices_undeliverable"], row["notices_unacked"]) == (0, 5)
    queue = view.subscribe()
    street = f"{INCIDENT}.town_liyuan.notify.street"
    view.apply(DELIVERIES.name, event_bytes(Undeliverable(id=undeliverable_id(street, 0), dedup_key=street,
                                                          incident_id=INCIDENT, reason="no contact", at=NOW)))
    view.apply(DELIVERIES.name, ack_bytes(NOTICE, "zhang", incident=INCIDENT))
    view.apply(DELIVERIES.name, ack_bytes("test.zhang.x", "zhang"))  # a test message: no incident's notice
    batch = [queue.get_nowait() for _ in range(queue.qsize())]
    assert len(batch) == 2  # each change goes to the board's stream
    [row] = board.changes(view, batch)["rows"]
    assert (row["notices_undeliverable"], row["notices_unacked"]) == (1, 4)


def test_the_openapi_document_declares_the_route_and_the_verified_fields(api):
    app, _, _ = api
    doc = app.openapi()
    op = doc["paths"]["/people/{person_id}/test-message"]["post"]
    assert set(op["responses"]) == {"202", "401", "403", "404", "413", "422", "503"}
    assert op["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/ContactTestAnswer")
    person = doc["components"]["schemas"]["PersonAnswer"]
    assert {"contacts_verified", "verified_at"} <= set(person["required"])
