"""The delivery stage's parts that need no broker (issue 19): what a notice takes and to whom
(services/delivery/compose.py), drills to the drill addresses only, and a burst to one robot folded
into digests within its limit (services/delivery/stage.py RobotQueue) against the local robot sink,
on an injected clock that a background task moves a minute at a time."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from cryptography.fernet import Fernet

from playbooks.delivery.book import NoticeBook, Try
from playbooks.delivery.channels import load_channels
from playbooks.plan import load_plan
from services.delivery.channels import Outgoing, build_channels
from services.delivery.compose import Composer
from services.delivery.stage import RobotQueue
from services.delivery.tokens import read_token
from services.duty.book import DutyBook, to_record
from services.local.sinks import Sinks, sinks_env
from services.privacy import Sealer
from topics.delivery import send_id
from topics.duty import Contacts, Person, Roster
from topics.models import NotificationRequested, OnDutyRef, Post, ResponseLevel

UNIT = "district_emergency_office"
KEY = b"k" * 32
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)


def book_with(people: list[Person]) -> DutyBook:
    sealer = Sealer(Fernet.generate_key())
    book = DutyBook(sealer, load_plan().duty)
    book.apply_roster(to_record(Roster(people=people), UNIT, sealer, source="json", now=NOW, by="test"))
    return book


PERSON = Person(id="p1", name="张三", unit_id=UNIT, post=Post.officer, is_leader=False, employment="regular",
                contacts=Contacts(mobile="13800138000", email="p1@example.cn", chat_ids={"wecom": "zs"}))


def notice(drill: bool = False, level=ResponseLevel.LEVEL_1) -> NotificationRequested:
    return NotificationRequested(id="i-1.n", dedup_key="i-1.n", incident_id="i-1", drill=drill, unit_id=UNIT, unit="区应急办",
                                 kind="routing", level=level, why="一级响应", rule="r", section="4.3.1", requested_at=NOW,
                                 on_duty=OnDutyRef(unit_id=UNIT, post=Post.officer, person_id="p1", source="rotation", at=NOW))


def composer(built=("wecom", "dingtalk", "sms", "email")) -> Composer:
    return Composer(channels=load_channels(), duty=book_with([PERSON]), built=set(built), link_base="https://yj.example",
                    ack_key=KEY)


def test_a_notice_takes_the_routes_channels_the_person_has_and_this_deployment_built():
    taken = composer(built=("wecom", "email", "sms")).take(notice(), NOW)
    assert (taken.person_id, taken.channels, taken.rule) == ("p1", ["wecom", "sms", "email"], "level_1_2_every_channel")
    assert any("dingtalk skipped" in r for r in taken.reasons)


def test_a_message_carries_its_ack_link_for_the_notice_and_the_person():
    c = composer()
    b = NoticeBook("i-1.n")
    b.apply(c.take(notice(), NOW))
    out = c.outgoing(b, Try(send_id("i-1.n", 0, "p1", "email"), 0, "p1", "email", 1, resend=False), NOW)
    assert out is not None and out.address == "p1@example.cn" and out.subject.startswith("【一级】")
    token = out.text.split("/ack/")[1].split()[0]
    assert read_token(token, NOW, KEY, timedelta(hours=1)) == ("i-1.n", "p1")


def test_a_rectification_notice_names_its_circular_and_takes_chat_and_email():
    """A 限期整改 督办 (issue 23, 5.5.1): no level, no incident; its message names the 通报."""
    c = composer()
    note = notice(level=None).model_copy(update={"kind": "rectification", "incident_id": "circular-1",
                                                 "why": "整改督办：…", "section": "5.5.1"})
    b = NoticeBook("i-1.n")
    taken = c.take(note, NOW)
    assert (taken.channels, taken.rule) == (["wecom", "email"], "rectification_chat_and_email")
    b.apply(taken)
    out = c.outgoing(b, Try(send_id("i-1.n", 0, "p1", "email"), 0, "p1", "email", 1, resend=False), NOW)
    assert out is not None and out.subject == "限期整改：区应急办"
    assert "通报：circular-1　依据：5.5.1" in out.text and "事件：" not in out.text and "/ack/" in out.text


def test_a_drill_reaches_the_drill_address_only_marked_drill():
    c = composer()
    taken = c.take(notice(drill=True), NOW)
    assert taken.channels == ["email"] and taken.rule == "drill"
    b = NoticeBook("i-1.n")
    b.apply(taken)
    out = c.outgoing(b, Try(send_id("i-1.n", 0, "p1", "email"), 0, "p1", "email", 1, resend=True), NOW)
    assert out.address == "drill@localhost" and out.address != PERSON.contacts.email
    assert out.title().startswith("【演练】【重发】")


def test_nobody_on_duty_takes_no_channel_and_says_why():
    n = notice().model_copy(update={"on_duty": None})
    taken = composer().take(n, NOW)
    assert taken.person_id is None and taken.channels == [] and taken.reasons


class MinuteClock:
    def __init__(self) -> None:
        self.at = datetime.now(timezone.utc)

    def now(self) -> datetime:
        return self.at


async def test_a_burst_to_one_robot_goes_in_digests_within_its_limit_every_notice_once(tmp_path):
    clock = MinuteClock()
    with Sinks.on_free_ports(tmp_path, clock=clock) as sinks:
        env = sinks_env(sinks.settings)
        async with httpx.AsyncClient(timeout=10) as client:
            sender = build_channels(load_channels(), env, client=client, clock=clock, only={"wecom"})["wecom"]
            queue = RobotQueue(sender)

            async def minutes() -> None:
                while True:
                    await asyncio.sleep(0.05)
                    clock.at += timedelta(seconds=61)

            ticker = asyncio.create_task(minutes())
            messages = [Outgoing(dedup_key=f"i-{i}.n", person_id="p1", address="zs", subject=f"通知 {i}",
                                 text=f"第 {i} 条 " + "说明" * 40, mobile="13800138000") for i in range(120)]
            results = await asyncio.wait_for(asyncio.gather(*(queue.send(m) for m in messages)), 30)
            ticker.cancel()
            queue.task.cancel()
    assert all(r.ok for r, _ in results), [r for r, _ in results if not r.ok][:3]
    posts = sinks.robots.received("wecom")
    contents = [p["text"]["content"] for p in posts]
    assert len(posts) < len(messages), "a burst is folded into digests"
    assert all(len(c.encode()) <= 2048 for c in contents)
    for i in range(120):
        assert sum(f"通知 {i}\n" in c for c in contents) == 1, f"notice {i} in {sum(f'通知 {i}' in c for c in contents)} posts"
    assert sum(n for _, n in results) >= len(messages)


def test_a_drill_notice_to_a_participant_the_scenario_names_reaches_their_own_channels_marked_drill():
    c = composer()
    n = notice(drill=True).model_copy(update={"drill_participants": ["p1"]})
    taken = c.take(n, NOW)
    assert taken.channels == ["wecom", "sms", "email"] and "participant" in taken.reasons[0]
    b = NoticeBook("i-1.n")
    b.apply(taken)
    out = c.outgoing(b, Try(send_id("i-1.n", 0, "p1", "email"), 0, "p1", "email", 1, resend=False), NOW)
    assert out.address == "p1@example.cn" and out.title().startswith("【演练】")
    other = notice(drill=True).model_copy(update={"drill_participants": ["someone-else"]})
    assert c.take(other, NOW).rule == "drill"


def test_a_scenarios_participants_travel_on_its_reports_and_notices_and_only_a_drills():
    from pydantic import ValidationError

    from playbooks.drill.replay import replay
    from playbooks.drill.scenario import load_scenario
    from topics.models import IncidentReported, ReportFacts

    with pytest.raises(ValidationError, match="only a drill names participants"):
        ReportFacts(report_id="r", type="燃气事故", occurred_at=NOW, received_at=NOW, drill_participants=["p1"])
    plan = load_plan()
    scenario = load_scenario("playbooks/drill/scenarios/gas-explosion.yaml", plan).model_copy(
        update={"participants": ["p1", "p2"]})
    feed: list = []
    observed = replay(scenario, plan, feed=feed)
    reports = [r for _, r in feed if isinstance(r, IncidentReported)]
    assert reports and all(r.report.drill_participants == ["p1", "p2"] for r in reports)
    notices = [n for inc in observed.incidents.values() for n in inc.notifications]
    assert notices and all(n.drill and n.drill_participants == ["p1", "p2"] for n in notices)

