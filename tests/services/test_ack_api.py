"""已阅 (issue 19 item 3) on an app built from its own parts: a simulated clock, a publisher that keeps
what it sends, an incident view fed the lifecycle's own records and, where a test says so, records of
topic deliveries. No broker: what a route would write is what it sent.

The ack link: a forged token is 403 and an expired one 410, neither writes; GET and HEAD never write;
the POST writes one AckRecord (how=link) and a second POST is the same ack. POST /notices/{id}/ack:
sign-in and notices.ack, 404 for an unknown notice, once per user. The view folds the deliveries
topic into the incident's JSON, and tells the board's stream only when what it shows changed."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from playbooks.lifecycle import start as start_incident
from playbooks.plan import load_plan
from services.clock import SimulatedClock
from services.delivery.tokens import make_token
from services.duty.book import to_record
from services.settings import Settings
from services.users import new_token, user_record
from services.view import IncidentView
from services.web.app import create_app
from tests.playbooks.conftest import make_report
from topics.catalog import DELIVERIES, INCIDENT_EVENTS, INCIDENTS_DECIDED, INCIDENTS_REPORTED, NOTIFICATIONS_REQUESTED
from topics.delivery import (
    AckHow,
    AckRecord,
    DeliveryEvent,
    DeliveryRecord,
    DeliveryState,
    LadderStepTaken,
    NoticeTaken,
    Undeliverable,
    ack_id,
    delivery_id,
    ladder_step_id,
    taken_id,
    undeliverable_id,
)
from topics.duty import Person, Roster, Rotation
from topics.models import IncidentDecided, IncidentReported, Post, Role
from tests.services.publishers import Kept

SH = ZoneInfo("Asia/Shanghai")
PLAN = load_plan()
INCIDENT = "gas-ack-1"
OFFICE = "district_emergency_office"
NOTICE = f"{INCIDENT}.{OFFICE}.notify.district_office.report"  # 区应急办's notice of the incident
RECEIVED = datetime(2026, 11, 25, 9, 30, tzinfo=SH)
NOW = datetime(2026, 11, 25, 9, 40, tzinfo=SH)


def incident_view(incident_id: str = INCIDENT) -> IncidentView:
    """A 燃气事故 received at 09:30, as the worker decided it: five units told of it (routing)."""
    report = make_report(report_id=incident_id, occurred_at="2026-11-25T09:20:00+08:00",
                         received_at="2026-11-25T09:30:00+08:00")
    accepted = RECEIVED + timedelta(minutes=1)
    rec = IncidentReported(id=incident_id, incident_id=incident_id, report=report, accepted_at=accepted)
    out = start_incident(rec, PLAN, accepted)
    view = IncidentView()
    view.apply(INCIDENTS_REPORTED.name, rec.model_dump_json().encode())
    for d in out.decisions:
        decided = IncidentDecided(id=f"{incident_id}.decision.0", incident_id=incident_id, decision=d, accepted_at=accepted)
        view.apply(INCIDENTS_DECIDED.name, decided.model_dump_json().encode())
    for n in out.notifications:
        view.apply(NOTIFICATIONS_REQUESTED.name, n.model_dump_json().encode())
    for e in out.events:
        view.apply(INCIDENT_EVENTS.name, e.model_dump_json().encode())
    view.caught_up.set()
    return view


def roster() -> Roster:
    people = [Person(id="zhang", name="张伟", unit_id=OFFICE, post="officer", is_leader=False, employment="regular"),
              Person(id="sun", name="孙主任", unit_id=OFFICE, post="chief", is_leader=True, employment="regular"),
              Person(id="liu", name="刘局长", unit_id=OFFICE, post="leader", is_leader=True, employment="regular")]
    start = datetime(2026, 11, 16, 8, 30, tzinfo=SH)
    rotations = [Rotation(id=f"r-{p}", unit_id=OFFICE, post=p, rrule="FREQ=DAILY", dtstart=start, people=[who])
                 for p, who in (("officer", "zhang"), ("chief", "sun"), ("leader", "liu"))]
    return Roster(people=people, rotations=rotations)


def sent_record(when: datetime, state: DeliveryState, *, person: str = "zhang", channel: str = "email",
                attempt: int = 1, step: int = 0, notice: str = NOTICE, incident: str = INCIDENT) -> bytes:
    extra = {"provider_id": f"m-{attempt}"} if state == DeliveryState.ACCEPTED else {}
    if state in (DeliveryState.FAILED, DeliveryState.IN_DOUBT):
        extra["reason"] = "smtp 451"
    body = DeliveryRecord(id=delivery_id(notice, step, person, channel, attempt, state), dedup_key=notice, step=step,
                          notice_id=notice, incident_id=incident, person_id=person, channel=channel, attempt=attempt,
                          state=state, at=when, **extra)
    return DeliveryEvent.of(body).model_dump_json().encode()


def event_bytes(body) -> bytes:
    return DeliveryEvent.of(body).model_dump_json().encode()



def build(tmp_path, view: IncidentView | None = None, publisher=None):
    settings = Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1")
    app = create_app(settings, plan=PLAN, clock=SimulatedClock(start=NOW, speed=0.0), view=view or incident_view(),
                     publisher=publisher or Kept())
    book = app.state.duty
    book.apply_roster(to_record(roster(), OFFICE, book.sealer, source="json", now=RECEIVED - timedelta(days=10), by="test"))
    book.caught_up.set()
    tokens = {}
    for role in Role:
        tokens[role] = new_token()
        app.state.users.apply(user_record(f"u-{role.value}", role, tokens[role], now=NOW, by="test"))
    return app, tokens


@pytest.fixture
def api(tmp_path):
    app, tokens = build(tmp_path)

    def client(role: Role | None = None) -> TestClient:
        headers = {"Authorization": f"Bearer {tokens[role]}"} if role else {}
        return TestClient(app, headers=headers, follow_redirects=False)

    return app, client, app.state.publisher


def link(app, person: str = "zhang", *, issued: datetime = NOW - timedelta(minutes=5), notice: str = NOTICE) -> str:
    return f"/ack/{make_token(notice, person, issued, app.state.ack_key)}"


# --- the ack link ---------------------------------------------------------------------------------


def test_a_forged_token_is_403_for_every_method_and_acknowledges_nothing(api):
    app, client, sent = api
    good = link(app)
    payload, sig = good.removeprefix("/ack/").split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    other_key = make_token(NOTICE, "zhang", NOW, b"k" * 32)
    for url in (f"/ack/{payload}.{flipped}", "/ack/not-a-token", f"/ack/{other_key}", f"/ack/{payload}"):
        for method in ("GET", "HEAD", "POST"):
            resp = client().request(method, url)
            assert resp.status_code == 403, (method, url, resp.status_code)
            if method != "HEAD":
                assert "链接无效" in resp.text and "已阅</button>" not in resp.text
    assert sent.records == []
    assert app.state.view.status_of(NOTICE, INCIDENT) is None


def test_an_expired_token_is_410_and_acknowledges_nothing(api):
    app, client, sent = api
    max_age = timedelta(hours=app.state.settings.ack_max_age_hours)
    old = link(app, issued=NOW - max_age - timedelta(seconds=1))
    for method in ("GET", "HEAD", "POST"):
        resp = client().request(method, old)
        assert resp.status_code == 410, (method, resp.status_code)
    assert "链接已过期" in client().get(old).text
    assert sent.records == []
    # a day younger than the limit still works
    assert client().get(link(app, issued=NOW - max_age + timedelta(minutes=1))).status_code == 200


def test_get_and_head_show_the_notice_and_write_nothing(api):
    app, client, sent = api
    url = link(app)
    page = client().get(url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    for shown in ("区应急办", "事件通报", INCIDENT, "2026-11-25 09:31:00（北京时间）", f'action="{url}"', ">已阅</button>"):
        assert shown in text, shown
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    head = client().head(url)
    assert head.status_code == 200 and head.content == b""
    for _ in range(3):  # a mail scanner, a chat preview, the person opening it
        client().get(url)
    assert sent.records == []
    assert "已确认已阅" not in client().get(url).text


def test_the_post_writes_one_ack_and_a_second_post_is_the_same_ack(api):
    app, client, sent = api
    url = link(app)
    resp = client().post(url)
    assert resp.status_code == 303 and resp.headers["location"] == url
    [(topic, key, event)] = sent.records
    assert topic == DELIVERIES.name and key == NOTICE
    assert isinstance(event, DeliveryEvent) and isinstance(event.body, AckRecord)
    ack = event.body
    assert ack.id == ack_id(NOTICE, "zhang", "link") == event.id
    assert (ack.how, ack.by, ack.person_id, ack.incident_id, ack.step) == (AckHow.LINK, "link", "zhang", INCIDENT, 0)
    assert ack.at == NOW
    # the page now says who and when, and offers no button
    page = client().get(url).text
    assert "已确认已阅：张伟，2026-11-25 09:40:00（北京时间，经通知链接）" in page
    assert "已阅</button>" not in page
    # the same link again (a double click, a second device): the same ack, nothing written again
    again = client().post(url)
    assert again.status_code == 303 and again.headers["location"] == url
    assert len(sent.records) == 1
    # an API that has not read the first one back yet writes it again, under the same id (effect once)
    app2, _ = build(app.state.settings.data_dir, publisher=Kept())
    TestClient(app2, follow_redirects=False).post(url)
    [(_, _, event2)] = app2.state.publisher.records
    assert event2.id == ack.id


def test_another_persons_link_sees_the_notice_acknowledged_and_can_still_acknowledge(api):
    app, client, sent = api
    client().post(link(app, "zhang"))
    page = client().get(link(app, "sun")).text
    assert "此通知已由 张伟 于 2026-11-25 09:40:00（北京时间）确认已阅" in page and ">已阅</button>" in page
    client().post(link(app, "sun"))
    assert [r[2].id for r in sent.records] == [ack_id(NOTICE, "zhang", "link"), ack_id(NOTICE, "sun", "link")]


def test_a_link_to_a_notice_the_view_does_not_hold(api):
    app, client, sent = api
    url = link(app, notice="gas-ack-1.nobody.notify.x")
    assert client().get(url).status_code == 404
    assert client().post(url).status_code == 404
    app.state.view.caught_up.clear()  # still reading the topics: try again shortly
    resp = client().post(url)
    assert resp.status_code == 503 and resp.headers["retry-after"]
    assert sent.records == []


def test_an_ack_link_post_the_broker_did_not_take_is_a_503_page(tmp_path):
    from services.web.publisher import BrokerUnavailable

    class Down(Kept):
        async def send(self, topic, key, record, *, what):
            raise BrokerUnavailable("broker not reachable yet")

    app, _ = build(tmp_path, publisher=Down())
    client = TestClient(app, follow_redirects=False)
    url = link(app)
    resp = client.post(url)
    assert resp.status_code == 503 and "确认未记录" in resp.text and resp.headers["retry-after"]
    assert app.state.view.status_of(NOTICE, INCIDENT) is None


def test_a_ladder_steps_person_acknowledges_that_step(api):
    app, client, sent = api
    step = LadderStepTaken(id=ladder_step_id(NOTICE, 1), dedup_key=NOTICE, step=1, incident_id=INCIDENT, unit_id=OFFICE,
                           role="值班主任", post=Post.chief, person_id="sun", channels=["email"], at=NOW - timedelta(minutes=3),
                           recorded_at=NOW - timedelta(minutes=3))
    app.state.view.apply(DELIVERIES.name, event_bytes(step))
    client().post(link(app, "sun"))
    assert sent.records[0][2].body.step == 1


# --- signed in ------------------------------------------------------------------------------------


def test_notices_ack_needs_sign_in_and_permission_and_a_known_notice(api):
    _, client, sent = api
    url = f"/notices/{NOTICE}/ack"
    assert client().post(url).status_code == 401
    for role in (Role.VIEWER, Role.DRILL_CONTROLLER):
        assert client(role).post(url).status_code == 403, role
    resp = client(Role.DUTY_OFFICER).post("/notices/no-such-notice/ack")
    assert resp.status_code == 404 and resp.json()["detail"].startswith("dedup_key")
    assert client(Role.DUTY_OFFICER).post("/notices/bad key!/ack").status_code == 422
    assert sent.records == []


def test_notices_ack_writes_the_users_ack_once(api):
    app, client, sent = api
    url = f"/notices/{NOTICE}/ack"
    first = client(Role.DUTY_OFFICER).post(url)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body == {"ack_id": ack_id(NOTICE, None, "u-duty_officer"), "dedup_key": NOTICE, "incident_id": INCIDENT,
                    "person_id": None, "by": "u-duty_officer", "how": "api", "at": "2026-11-25T01:40:00Z"}
    [(topic, key, event)] = sent.records
    assert (topic, key, event.body.how, event.body.person_id) == (DELIVERIES.name, NOTICE, AckHow.API, None)
    assert client(Role.DUTY_OFFICER).post(url).json() == body  # again: the same answer, nothing written
    assert len(sent.records) == 1
    # from the incident page, another user: their own ack
    page = client(Role.COMMANDER).post(url, json={"how": "page"})
    assert page.status_code == 200 and page.json()["how"] == "page"
    assert sent.records[-1][2].body.id == ack_id(NOTICE, None, "u-commander")
    assert client(Role.ADMIN).post(url, json={"how": "link"}).status_code == 422  # the link is the link's own
    incident = client(Role.VIEWER).get(f"/incidents/{INCIDENT}").json()
    [mine] = [d for d in incident["deliveries"] if d["dedup_key"] == NOTICE]
    assert (mine["acked_by"], mine["acked_how"], mine["acked_person_id"]) == ("u-duty_officer", "api", None)


# --- the view folds the deliveries topic ------------------------------------------------------------


def test_the_view_folds_deliveries_into_the_incidents_json(api):
    app, client, _ = api
    view: IncidentView = app.state.view
    queue = view.subscribe()
    t = NOW - timedelta(minutes=8)
    note = view.notices[NOTICE]
    view.apply(DELIVERIES.name, event_bytes(NoticeTaken(id=taken_id(NOTICE), dedup_key=NOTICE, notice=note,
                                                        person_id="zhang", channels=["email", "wecom"], rule="三级",
                                                        at=t)))
    view.apply(DELIVERIES.name, sent_record(t + timedelta(seconds=1), DeliveryState.ATTEMPTED))
    assert queue.qsize() == 1  # taken; an attempt shows nothing new (7 changes below: not the repeat, not the test ack)
    view.apply(DELIVERIES.name, sent_record(t + timedelta(seconds=3), DeliveryState.FAILED, channel="wecom"))
    view.apply(DELIVERIES.name, sent_record(t + timedelta(seconds=4), DeliveryState.ACCEPTED, attempt=2))
    view.apply(DELIVERIES.name, sent_record(t + timedelta(seconds=2), DeliveryState.ACCEPTED))  # read late: earlier
    view.apply(DELIVERIES.name, sent_record(t + timedelta(seconds=9), DeliveryState.DELIVERED))
    view.apply(DELIVERIES.name, sent_record(t + timedelta(seconds=9), DeliveryState.DELIVERED))  # again: no change
    test_ack = AckRecord(id=ack_id(NOTICE, "zhang", "link"), dedup_key=NOTICE, incident_id=INCIDENT, person_id="zhang",
                         at=t + timedelta(seconds=20), how=AckHow.TEST, by="link")
    view.apply(DELIVERIES.name, event_bytes(test_ack))  # a test message's ack is nobody's 已阅
    other = f"{INCIDENT}.town_liyuan.notify.street"
    view.apply(DELIVERIES.name, event_bytes(Undeliverable(id=undeliverable_id(other, 0), dedup_key=other,
                                                          incident_id=INCIDENT, reason="no contact on any channel", at=t)))
    view.apply(DELIVERIES.name, event_bytes(LadderStepTaken(
        id=ladder_step_id(other, 1), dedup_key=other, step=1, incident_id=INCIDENT, unit_id="town_liyuan", role="值班主任",
        post=Post.chief, person_id=None, at=t + timedelta(minutes=3), recorded_at=t + timedelta(minutes=3))))
    changes = []
    while not queue.empty():
        changes.append(queue.get_nowait())
    assert [c["topic"] for c in changes] == [DELIVERIES.name] * 7 and {c["incident_id"] for c in changes} == {INCIDENT}

    body = client(Role.VIEWER).get(f"/incidents/{INCIDENT}").json()
    by_key = {d["dedup_key"]: d for d in body["deliveries"]}
    assert len(by_key) == len(body["notifications"]) == 5
    mine = by_key[NOTICE]
    assert mine["unit_id"] == OFFICE and mine["unit"] == "区应急办" and mine["kind"] == "routing"
    assert mine["taken_at"] == "2026-11-25T01:32:00Z"
    assert mine["sent_at"] == "2026-11-25T01:32:02Z" and mine["delivered_at"] == "2026-11-25T01:32:09Z"
    assert mine["acked_at"] is None and mine["failed_sends"] == 1 and mine["undeliverable"] == [] and mine["ladder"] == []
    street = by_key[other]
    assert street["sent_at"] is None and street["undeliverable"] == [
        {"step": 0, "reason": "no contact on any channel", "at": "2026-11-25T01:32:00Z"}]
    assert street["ladder"] == [{"step": 1, "unit_id": "town_liyuan", "role": "值班主任", "post": "chief",
                                 "post_name": "值班主任", "person_id": None, "at": "2026-11-25T01:35:00Z"}]
    untouched = by_key[f"{INCIDENT}.tongzhou_fire_rescue.notify.responder.fire_rescue"]
    assert {k for k, v in untouched.items() if v not in (None, [], 0)} == {"dedup_key", "unit_id", "unit", "kind"}

    # the ack link's ack: 已阅 with its time, who and how
    view.apply(DELIVERIES.name, event_bytes(test_ack.model_copy(update={"how": AckHow.LINK})))
    mine = {d["dedup_key"]: d for d in client(Role.VIEWER).get(f"/incidents/{INCIDENT}").json()["deliveries"]}[NOTICE]
    assert (mine["acked_at"], mine["acked_how"], mine["acked_person_id"]) == ("2026-11-25T01:32:20Z", "link", "zhang")
    view.unsubscribe(queue)


def test_deliveries_read_before_their_incident_are_there_when_it_comes_and_test_messages_make_no_incident():
    view = IncidentView()
    view.apply(DELIVERIES.name, sent_record(NOW, DeliveryState.ACCEPTED, notice="late.x.notify", incident="late-1"))
    ack = AckRecord(id=ack_id("t-1", "zhang", "link"), dedup_key="t-1", incident_id="test", person_id="zhang", at=NOW,
                    how=AckHow.TEST, by="link")
    view.apply(DELIVERIES.name, event_bytes(ack))
    view.apply(DELIVERIES.name, sent_record(NOW, DeliveryState.ACCEPTED, notice="t-1", incident="test"))
    assert view.incidents == {}  # nothing shown of an incident not reported, nor of a test message
    reported = incident_view("late-1").incidents["late-1"].reported
    view.apply(INCIDENTS_REPORTED.name, reported.model_dump_json().encode())
    deliveries = view.incidents["late-1"].as_json()["deliveries"]
    assert [(d["dedup_key"], d["sent_at"]) for d in deliveries] == [("late.x.notify", "2026-11-25T01:40:00+00:00")]
    assert "test" not in view.incidents
    # a notice known only as the delivery stage took it (notifications.requested not read yet): the ack
    # link still finds it
    note = incident_view().notices[NOTICE]
    assert view.notice(NOTICE) is None
    view.apply(DELIVERIES.name, event_bytes(NoticeTaken(id=taken_id(NOTICE), dedup_key=NOTICE, notice=note,
                                                        person_id="zhang", rule="三级", at=NOW)))
    assert view.notice(NOTICE) == note and view.status_of(NOTICE).taken_at == NOW


def test_the_openapi_document_declares_the_ack_and_the_incidents_deliveries(api):
    app, _, _ = api
    doc = app.openapi()
    op = doc["paths"]["/notices/{dedup_key}/ack"]["post"]
    assert set(op["responses"]) == {"200", "401", "403", "404", "413", "422", "503"}
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/AckAnswer")
    schemas = doc["components"]["schemas"]
    assert "deliveries" in schemas["IncidentAnswer"]["required"]
    assert set(schemas["NoticeDelivery"]["properties"]) >= {"sent_at", "delivered_at", "acked_at", "undeliverable", "ladder"}
    assert not any(p.startswith("/ack/") for p in doc["paths"])  # the ack link's page is a page, not the API
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", link(app).removeprefix("/ack/"))


def test_a_rectification_notice_is_acknowledged_with_no_incident_behind_it(api):
    """A 通报's 限期整改 督办 (5.5.1, the worker's timer): its page names the 通报, not an incident; the
    button writes one ack for it; the view makes no incident of it."""
    from datetime import timezone

    from playbooks.ledger.circular import chase
    from playbooks.ledger.config import load_ledger
    from topics.ledger import CircularIssued

    app, client, sent = api
    due = NOW.astimezone(timezone.utc) - timedelta(minutes=1)
    circular = CircularIssued(id="circular-ack1", period_from=due - timedelta(days=20), period_to=due - timedelta(days=16),
                              issued_at=due - timedelta(days=15), issued_by="admin", issuer_unit_id=OFFICE, units=[
                                  {"unit_id": "district_urban_management_commission", "unit": "区城市管理委",
                                   "breaches": 2, "due_at": due, "remind_at": due - timedelta(days=3)}])
    out = chase([circular], load_ledger(), PLAN, now=NOW)
    view = app.state.view
    incidents = set(view.incidents)
    for note in out.notifications:
        view.apply(NOTIFICATIONS_REQUESTED.name, note.model_dump_json().encode())
    to_office = next(n for n in out.notifications if n.unit_id == OFFICE)
    assert to_office.kind == "rectification" and set(view.incidents) == incidents  # no incident made of it
    url = link(app, "sun", notice=to_office.dedup_key)
    page = client().get(url)
    assert page.status_code == 200, page.text
    for shown in ("限期整改", "circular-ack1", "区城市管理委", "5.5.1", ">已阅</button>"):
        assert shown in page.text, shown
    assert "<dt>事件</dt>" not in page.text
    assert client().post(url).status_code == 303
    [(topic, key, event)] = sent.records
    assert topic == DELIVERIES.name and key == to_office.dedup_key
    assert (event.body.incident_id, event.body.person_id, event.body.how) == ("circular-ack1", "sun", AckHow.LINK)
    assert "已确认已阅：孙主任" in client().get(url).text
    assert set(view.incidents) == incidents
