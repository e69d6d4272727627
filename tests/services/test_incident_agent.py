"""The decide step of the `incidents` agent under Faust's `agent.test_context()`: what it sends, what it stores.

The pattern of faust's docs/userguide/testing.rst, through the worker's composition root: a worker built
with an in-memory store, a simulated clock and a producer replaced by a recorder that acknowledges at
once; a finalized app, flow control resumed (`test_context` does that); assertions on what was produced
and table writes only.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timedelta, timezone
from unittest.mock import AsyncMock, patch
from zoneinfo import ZoneInfo

import pytest
import structlog
from cryptography.fernet import Fernet

from playbooks.duty.change import units_of
from playbooks.plan import load_plan
from services import logs
from services.clock import SimulatedClock
from services.duty.book import DutyBook, to_record
from services.intake import accept
from services.privacy import Sealer
from services.settings import Settings
from services.worker import incidents as incidents_module
from services.worker import outbox as outbox_module
from services.worker.root import Worker, build_worker
from services.worker.schedule import DueSchedule
from services.worker.table_codec import decode_state
from topics.catalog import (
    DEAD_LETTERS,
    ESCALATIONS,
    INCIDENT_EVENTS,
    INCIDENTS_DECIDED,
    INCIDENTS_REPORTED,
    NOTIFICATIONS_REQUESTED,
)
from topics.duty import Roster
from topics.models import DeadLetter, IncidentDecided, IncidentReported, NotificationRequested
from topics.requests import ReportSubmission

NOW = datetime(2026, 11, 22, 1, 30, tzinfo=timezone.utc)
SHANGHAI = ZoneInfo("Asia/Shanghai")
REPORTER_NAME = "张三丰"
REPORTER_PHONE = "13800138000"
SUMMARY = "李四家厨房燃气管道爆炸，楼道里有人受困"


# --- fixtures -------------------------------------------------------------------------------


PLAN = load_plan()


@pytest.fixture
def produced() -> "Produced":
    return Produced()


@pytest.fixture
async def worker(produced, tmp_path) -> Worker:
    """A worker from the composition root, on this test's running loop: nothing of it touches a broker."""
    settings = Settings(data_dir=tmp_path, app_id="yingji-test", stall_restart_s=0)
    built = build_worker(settings, plan=PLAN, clock=SimulatedClock(start=NOW, speed=0.0), store="memory://",
                         produce=produced.produce, sensors=False, duty=ready_book(settings))
    built.app.loop = asyncio.get_running_loop()
    built.app.finalize()
    return built


def ready_book(settings: Settings, roster: Roster | None = None) -> DutyBook:
    """A duty book read to its end, holding `roster` (or none): no broker behind it."""
    sealer = Sealer.from_file(settings.key_file)
    book = DutyBook(sealer, PLAN.duty)
    for unit_id in sorted(units_of(roster)) if roster else []:
        book.apply_roster(to_record(roster, unit_id, sealer, source="json", now=NOW, by="test"))
    book.caught_up.set()
    return book


class Produced:
    """Every record the agent handed to the producer, in order; the broker acknowledges each at once."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    async def produce(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None):
        self.records.append((topic, key, value))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class TopicSends:
    """What was produced to one topic."""

    def __init__(self, produced: Produced, topic: str):
        self.produced, self.topic = produced, topic

    @property
    def records(self) -> list[tuple[bytes, bytes]]:
        return [(key, value) for topic, key, value in self.produced.records if topic == self.topic]

    @property
    def call_count(self) -> int:
        return len(self.records)

    def assert_not_called(self) -> None:
        assert not self.records, f"{len(self.records)} records produced to {self.topic}"


@pytest.fixture
def decided_send(produced):
    return TopicSends(produced, INCIDENTS_DECIDED.name)


@pytest.fixture
def notifications_send(produced):
    return TopicSends(produced, NOTIFICATIONS_REQUESTED.name)


@pytest.fixture
def deadletter_send(produced):
    return TopicSends(produced, DEAD_LETTERS.name)


@pytest.fixture
def events_send(produced):
    return TopicSends(produced, INCIDENT_EVENTS.name)


@pytest.fixture
def escalations_send(produced):
    return TopicSends(produced, ESCALATIONS.name)


@pytest.fixture
async def agent(worker, decided_send, notifications_send, deadletter_send, events_send, escalations_send):
    async with worker.agent.test_context() as wrapper:
        yield wrapper


# --- helpers --------------------------------------------------------------------------------


async def process(agent, raw: bytes, topic: str = INCIDENTS_REPORTED.name) -> None:
    """Put one record as read from `topic` and wait until the agent has handled it.

    The agent reads two topics and dispatches on the message's topic, but `test_context` names a message
    after the agent's topic, or "<internal>" when that topic has several names: so name it here.
    The agent yields nothing, so `put(wait=True)` returns as soon as the stream has *taken* the value,
    before the agent's body ran; the stream acks the event only once the body is done with it.
    """
    agent._get_strtopic = lambda _channel: topic
    event = await agent.put(raw, wait=False)
    assert event.message.topic == topic
    async with asyncio.timeout(5):
        while not event.message.acked:
            await asyncio.sleep(0.001)
    if agent._crash_reason:
        raise agent._crash_reason


def submission(**over) -> ReportSubmission:
    data = {
        "type": "燃气事故",
        "occurred_at": "2026-11-22T09:25:00+08:00",
        "received_at": "2026-11-22T09:30:00+08:00",  # == NOW: nothing is due yet
        "location": {"street": "梨园镇"},
        "facts": {"deaths": 3},
        "summary": SUMMARY,
        "reporter": {"name": REPORTER_NAME, "phone": REPORTER_PHONE},
    }
    data.update(over)
    return ReportSubmission.model_validate(data)


def reported(**over) -> IncidentReported:
    return accept(submission(**over), plan=PLAN, sealer=Sealer(Fernet.generate_key()), now=NOW)


def sent(sends: TopicSends, model):
    """The records produced to a topic, decoded with their contract; with their keys."""
    return [(key, model.model_validate_json(value)) for key, value in sends.records]


# --- tests ----------------------------------------------------------------------------------


async def test_valid_report_is_decided_and_notifies_each_unit_once(
    agent, worker, decided_send, notifications_send, deadletter_send
):
    rec = reported()

    await process(agent, rec.model_dump_json().encode())

    [(key, decided)] = sent(decided_send, IncidentDecided)
    assert key == rec.incident_id.encode()
    assert decided.incident_id == rec.incident_id
    assert decided.decision.report_id == rec.report.report_id
    assert (decided.decision.grade.value, decided.decision.response_level.value) == ("较大", "一级")
    assert decided.decision.decided_at == NOW

    expected = [n for n in decided.decision.notify if not n.after_approval]
    assert any(n.after_approval for n in decided.decision.notify), "the case should hold a notice awaiting approval"
    notes = sent(notifications_send, NotificationRequested)
    routing = [n for _, n in notes if n.kind == "routing"]
    assert sorted((n.unit_id, n.rule) for n in routing) == sorted((n.unit_id, n.rule) for n in expected)
    assert not [n for _, n in notes if n.kind == "approved_report"]
    assert all(key == n.dedup_key.encode() for key, n in notes)
    assert len({n.dedup_key for _, n in notes}) == len(notes)
    assert all(n.incident_id == rec.incident_id for _, n in notes)

    deadletter_send.assert_not_called()
    state = decode_state(worker.table[rec.incident_id])
    assert state.report.report_id == rec.report.report_id
    assert rec.id in state.seen


async def test_same_record_twice_sends_nothing_the_second_time(
    agent, decided_send, notifications_send, deadletter_send, events_send, escalations_send
):
    raw = reported().model_dump_json().encode()
    mocks = (decided_send, notifications_send, deadletter_send, events_send, escalations_send)
    await process(agent, raw)
    first = [m.call_count for m in mocks]
    assert first[0] == 1 and first[1] > 0 and first[2] == 0

    await process(agent, raw)

    assert [m.call_count for m in mocks] == first


async def test_invalid_bytes_go_to_dead_letters_and_the_agent_lives_on(
    agent, worker, decided_send, notifications_send, deadletter_send
):
    raw = b"\xff{not json"

    await process(agent, raw)

    [(key, dl)] = sent(deadletter_send, DeadLetter)
    assert key == dl.source_topic.encode()
    assert dl.stage == "incidents"
    assert dl.source_topic == INCIDENTS_REPORTED.name
    assert "Invalid JSON" in dl.reason
    assert base64.b64decode(dl.original_b64) == raw
    assert dl.failed_at == NOW
    decided_send.assert_not_called()
    notifications_send.assert_not_called()

    rec = reported()
    await process(agent, rec.model_dump_json().encode())

    [(_, decided)] = sent(decided_send, IncidentDecided)
    assert decided.incident_id == rec.incident_id
    assert deadletter_send.call_count == 1
    assert rec.incident_id in worker.table


async def test_unknown_type_is_dead_lettered_naming_the_field(
    agent, worker, decided_send, notifications_send, deadletter_send
):
    record = {
        "id": "r-unknown-type",
        "incident_id": "r-unknown-type",
        "report": {
            "report_id": "r-unknown-type",
            "type": "外星人入侵",
            "occurred_at": "2026-11-22T01:15:00Z",
            "received_at": "2026-11-22T01:20:00Z",
            "location": {"street": "梨园镇"},
        },
        "accepted_at": "2026-11-22T01:20:01Z",
    }
    raw = json.dumps(record, ensure_ascii=False).encode()

    await process(agent, raw)

    [(_, dl)] = sent(deadletter_send, DeadLetter)
    assert dl.fields == ["type"]
    assert dl.reason.startswith("type: unknown incident type '外星人入侵'")
    assert dl.source_topic == INCIDENTS_REPORTED.name
    assert base64.b64decode(dl.original_b64) == raw
    decided_send.assert_not_called()
    notifications_send.assert_not_called()
    assert "r-unknown-type" not in worker.table


@pytest.fixture
def structlog_restored():
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


async def test_log_lines_bind_the_incident_and_hold_no_personal_data(
    capsys, structlog_restored, agent, deadletter_send
):
    logs.configure(json=True)  # as the worker does, after the agents were imported; here, once capsys is capturing
    rec = reported()

    await process(agent, rec.model_dump_json().encode())
    await process(agent, b"not json")

    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    decided = [line for line in lines if line.get("event") == "decided"]
    assert len(decided) == 1
    assert decided[0]["incident_id"] == rec.incident_id
    assert decided[0]["stage"] == "incidents"
    assert any(line.get("event") == "dead_letter" for line in lines)
    for secret in (REPORTER_NAME, REPORTER_PHONE, SUMMARY, rec.private_sealed):
        assert secret not in err


@pytest.fixture
def fresh_schedule(worker):
    """A schedule of two checks per tick, already built (the sweep's rebuild needs a running worker)."""
    worker.schedule = DueSchedule(per_tick=2)
    worker.schedule.stale = False
    return worker.schedule


def tick(partition: int = 0, at: datetime = NOW) -> bytes:
    from topics.models import DueTick

    return DueTick(id=f"tick.{partition}.{at.timestamp()}", partition=partition, at=at).model_dump_json().encode()


async def test_a_tick_checks_its_partitions_due_incidents_a_few_at_a_time_and_sends_the_next(
    agent, worker, fresh_schedule, produced, escalations_send
):
    from topics.catalog import DUE_TICKS
    from topics.models import DueTick, IncidentEvent

    recs = [reported() for _ in range(3)]
    for rec in recs:
        await process(agent, rec.model_dump_json().encode())
    assert fresh_schedule.waiting(NOW) == 0  # received now: nothing due yet
    worker.clock.advance(timedelta(minutes=11))  # phone reports (10 minutes) missed
    later = worker.clock.now()
    assert fresh_schedule.to_tick(later, mono=1.0) == [0]

    await process(agent, tick(0, later), DUE_TICKS.name)
    breached = {e.incident_id for _, e in sent(escalations_send, IncidentEvent) if e.kind.value == "breach"}
    assert len(breached) == 2 and breached < {r.incident_id for r in recs}  # two per tick, earliest first
    [(_, _, next_tick)] = [(t, k, v) for t, k, v in produced.records if t == DUE_TICKS.name]
    assert DueTick.model_validate_json(next_tick).partition == 0
    assert fresh_schedule.ticking  # the next tick is in flight: the sweep sends none

    await process(agent, next_tick, DUE_TICKS.name)
    breached = {e.incident_id for _, e in sent(escalations_send, IncidentEvent) if e.kind.value == "breach"}
    assert breached == {r.incident_id for r in recs}
    assert [t for t, _, _ in produced.records].count(DUE_TICKS.name) == 1  # nothing more due: no third tick
    assert fresh_schedule.ticking == {}

    await process(agent, next_tick, DUE_TICKS.name)  # a tick read again changes nothing
    # two breaches an incident at 10 minutes: the phone report and 4.7.1's 通报区委宣传部
    assert sum(1 for _, e in sent(escalations_send, IncidentEvent) if e.kind.value == "breach") == 3 * 2


async def test_a_tick_on_the_wrong_partition_is_dead_lettered_naming_the_field(agent, fresh_schedule, deadletter_send):
    from topics.catalog import DUE_TICKS

    await process(agent, tick(partition=3), DUE_TICKS.name)  # the test context reads everything on partition 0
    [(_, letter)] = sent(deadletter_send, DeadLetter)
    assert letter.source_topic == DUE_TICKS.name and letter.fields == ["partition"]


# --- one batch of several records: handle_batch itself ----------------------------------------


class _Message:
    """What handle_batch reads of a Faust message."""

    def __init__(self, topic: str, offset: int):
        from faust.types import TP

        self.topic, self.offset, self.partition = topic, offset, 0
        self.tp = TP(topic, 0)


class _Event:
    def __init__(self, topic: str, offset: int, value: bytes):
        self.message = _Message(topic, offset)
        self.value = value


@pytest.fixture
def batch_of_two(worker, monkeypatch):
    """Two reports as one batch; what happened, in order: records handled, records produced, the commit."""
    steps: list[str] = []
    on_report = incidents_module.on_report

    def handled(worker_, batch, event, raw):
        steps.append(f"handled {event.message.offset}")
        return on_report(worker_, batch, event, raw)

    async def commit(self):  # the real one writes the table: here, only the acknowledgements are awaited
        await self.outbox.send()
        steps.append("committed")

    monkeypatch.setitem(incidents_module.HANDLERS, INCIDENTS_REPORTED.name, handled)
    monkeypatch.setattr(outbox_module.Batch, "commit", commit)
    monkeypatch.setattr(worker.watch, "skipped", lambda *_: None)
    events = [_Event(INCIDENTS_REPORTED.name, i, reported().model_dump_json().encode()) for i in range(2)]
    return events, steps


async def test_a_producer_refusing_a_record_restarts_the_worker_and_commits_nothing(worker, batch_of_two, monkeypatch):
    events, steps = batch_of_two

    async def produce(topic: str, key: bytes | None, value: bytes, partition: int | None = None):
        raise ConnectionError("broker gone")

    class Restarted(Exception):
        pass

    async def restart(event: str, **details):
        steps.append(event)
        raise Restarted

    monkeypatch.setattr(worker, "produce_override", produce)
    monkeypatch.setattr(worker, "restart_in_place", restart)
    with pytest.raises(Restarted):
        await incidents_module.handle_batch(worker, events)
    assert steps == ["handled 0", "handled 1", "batch_send_failed_restarting"]  # both read again by the new process


# --- notices addressed to the person on duty (issue 18 item 4) ----------------------------


def _duty_roster() -> Roster:
    """区应急办 around the clock from the day before NOW: 值班员 in turn at 08:30, one 值班主任, one 带班领导."""
    from topics.duty import Person, Rotation

    start = datetime(2026, 11, 21, 8, 30, tzinfo=SHANGHAI)
    office = "district_emergency_office"
    people = [Person(id="zhang", name="张伟", unit_id=office, post="officer", is_leader=False, employment="regular"),
              Person(id="li", name="李娜", unit_id=office, post="officer", is_leader=False, employment="regular"),
              Person(id="chief1", name="孙主任", unit_id=office, post="chief", is_leader=True, employment="regular"),
              Person(id="boss1", name="刘局长", unit_id=office, post="leader", is_leader=True, employment="regular")]
    rotations = [Rotation(id=f"r-{post}", unit_id=office, post=post, rrule="FREQ=DAILY", dtstart=start, people=who)
                 for post, who in (("officer", ["zhang", "li"]), ("chief", ["chief1"]), ("leader", ["boss1"]))]
    return Roster(people=people, rotations=rotations)


async def test_each_notice_names_the_person_on_duty_at_its_own_time_or_the_fallback(produced, tmp_path):
    settings = Settings(data_dir=tmp_path, app_id="yingji-test", stall_restart_s=0)
    built = build_worker(settings, plan=PLAN, clock=SimulatedClock(start=NOW, speed=0.0), store="memory://",
                         produce=produced.produce, sensors=False, duty=ready_book(settings, _duty_roster()))
    built.app.loop = asyncio.get_running_loop()
    built.app.finalize()
    notifications = TopicSends(produced, NOTIFICATIONS_REQUESTED.name)
    async with built.agent.test_context() as agent:
        await process(agent, reported().model_dump_json().encode())

    notes = [n for _, n in sent(notifications, NotificationRequested)]
    assert notes, "the report should notify units"
    for n in notes:
        ref = n.on_duty
        assert ref is not None and ref.at == n.requested_at == NOW
        if n.unit_id == "district_emergency_office":
            # NOW is 09:30 on the 22nd, the rotation's second day: li's turn since 08:30
            assert (ref.person_id, ref.source, ref.post) == ("li", "rotation", "officer"), ref
        else:
            # no roster for the unit: down the chain to 区应急办's 值班主任, and the notice says so
            assert (ref.unit_id, ref.post, ref.person_id, ref.source) == (
                "district_emergency_office", "chief", "chief1", "fallback"), ref
            assert any("nobody on duty" in r for r in ref.reasons)
    # ids only on the topic: the directory holds the names
    raw = b"".join(v for _, v in notifications.records)
    assert "张伟".encode() not in raw and "李娜".encode() not in raw


def test_a_report_read_again_after_its_phone_report_fell_due_keeps_its_decisions_id():
    """A worker killed after sending a decision but before writing the state reads the report again, later:
    by then the phone report may be due, so the step emits a breach where it had emitted a reminder. The
    decision is the same, and its record keeps its id, so a reader dropping repeats by id keeps it once."""
    from playbooks.lifecycle import start

    rec = reported(occurred_at="2026-11-22T09:15:00+08:00", received_at="2026-11-22T09:21:00+08:00")  # phone report due 09:31
    first = start(rec, PLAN, NOW)  # 09:30: reminded
    again = start(rec, PLAN, NOW + timedelta(minutes=5))  # 09:35: breached, escalated
    assert [e.kind for e in first.events] != [e.kind for e in again.events]
    assert first.state.seq != again.state.seq
    ids = set()
    for out in (first, again):
        box = outbox_module.Outbox(Produced().produce)
        box.add_outcome(out)
        ids |= {IncidentDecided.model_validate_json(value).id for topic, _key, value, _p in box.records
                if topic == INCIDENTS_DECIDED.name}
    assert ids == {f"{rec.incident_id}.decision.0"}
