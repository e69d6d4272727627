"""The worker's 限期整改 timer (services/worker/rectification.py) through the composition root: a unit
named in a 通报 with no 整改 reported is reminded at its remind_at and 督办 at its due time (its 带班领导
and the issuing unit), each step written on yingji.ledger.circulars and each notice addressed to the
person on duty; run again, or on a second worker that has read the first one's steps, it sends nothing;
a unit that has reported is never chased. No broker: the producer records, the clock is simulated."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

from services import metrics
from services.clock import SimulatedClock
from services.ledger_book import CircularBook
from services.settings import Settings
from services.worker import rectification
from services.worker.root import build_worker
from tests.services.test_incident_agent import PLAN, Produced, _duty_roster, ready_book
from topics.catalog import LEDGER_CIRCULARS, NOTIFICATIONS_REQUESTED
from topics.ledger import CircularIssued, LedgerRecord, RectificationReported

ISSUED = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)  # 10:00 in Beijing, the roster's second day
DUE = ISSUED + timedelta(days=2)
REMIND = ISSUED + timedelta(days=1)
OFFICE, LEAD = "district_emergency_office", "district_urban_management_commission"


def the_circular() -> LedgerRecord:
    owed = {"breaches": 1, "due_at": DUE, "remind_at": REMIND}
    body = CircularIssued(id="circular-t1", period_from=ISSUED - timedelta(days=1), period_to=ISSUED, issued_at=ISSUED,
                          issued_by="admin", issuer_unit_id=OFFICE,
                          units=[{"unit_id": OFFICE, "unit": "区应急办", **owed},
                                 {"unit_id": LEAD, "unit": "区城市管理委", **owed}])
    return LedgerRecord(id=body.id, body=body)


def a_book(*records: LedgerRecord) -> CircularBook:
    book = CircularBook()
    for r in records:
        book.apply(r)
    book.caught_up.set()
    return book


def worker_at(tmp_path, now: datetime, produced: Produced, book: CircularBook):
    settings = Settings(data_dir=tmp_path, app_id="yingji-test", stall_restart_s=0)
    built = build_worker(settings, plan=PLAN, clock=SimulatedClock(start=now, speed=0.0), store="memory://",
                         produce=produced.produce, sensors=False, duty=ready_book(settings, _duty_roster()),
                         circulars=book)
    built.app.loop = asyncio.get_running_loop()
    return built


def sent(produced: Produced, topic: str) -> list[dict]:
    return [json.loads(v) for t, _, v in produced.records if t == topic]


def steps() -> tuple[float, float]:
    return (metrics.RECTIFICATION_STEPS.labels(step="remind")._value.get(),
            metrics.RECTIFICATION_STEPS.labels(step="overdue")._value.get())


async def test_reminded_then_chased_once_each_and_addressed(tmp_path):
    produced, book = Produced(), a_book(the_circular())
    worker = worker_at(tmp_path, REMIND - timedelta(minutes=1), produced, book)
    assert worker.circulars is book
    remind0, overdue0 = steps()
    await rectification.check_rectifications(worker)
    assert produced.records == []  # not yet

    worker.clock = SimulatedClock(start=REMIND + timedelta(seconds=3), speed=0.0)
    await rectification.check_rectifications(worker)
    reminded = [r["body"] for r in sent(produced, LEDGER_CIRCULARS.name)]
    notices = sent(produced, NOTIFICATIONS_REQUESTED.name)
    assert [(r["record"], r["unit_id"]) for r in reminded] == [("rectification_reminded", OFFICE),
                                                               ("rectification_reminded", LEAD)]
    assert {(n["unit_id"], n["role"], n["kind"], n["rule"]) for n in notices} == {
        (OFFICE, "值班主任", "rectification", "rectification_remind"), (LEAD, "值班主任", "rectification", "rectification_remind")}
    office = next(n for n in notices if n["unit_id"] == OFFICE)
    assert office["on_duty"]["person_id"] == "chief1" and datetime.fromisoformat(office["requested_at"]) == REMIND
    lead = next(n for n in notices if n["unit_id"] == LEAD)  # no roster of its own: down the fallback chain, said so
    assert lead["on_duty"]["source"] == "fallback" and lead["on_duty"]["person_id"] is not None
    # keyed as the topic's records are: by the circular
    assert {k for t, k, _ in produced.records if t == LEDGER_CIRCULARS.name} == {b"circular-t1"}
    assert steps() == (remind0 + 2, overdue0)

    before = len(produced.records)
    await rectification.check_rectifications(worker)  # again: held at once, nothing new
    assert len(produced.records) == before

    # the office reports its 整改; the other unit does not, and is 督办 at the due time
    book.apply(LedgerRecord(id="rect-1", body=RectificationReported(
        id="rect-1", circular_id="circular-t1", unit_id=OFFICE, reported_at=DUE - timedelta(hours=1), reported_by="值班员")))
    worker.clock = SimulatedClock(start=DUE + timedelta(seconds=2), speed=0.0)
    await rectification.check_rectifications(worker)
    new = produced.records[before:]
    records = [json.loads(v)["body"] for t, _, v in new if t == LEDGER_CIRCULARS.name]
    notes = [json.loads(v) for t, _, v in new if t == NOTIFICATIONS_REQUESTED.name]
    assert [(r["record"], r["unit_id"]) for r in records] == [("rectification_overdue", LEAD)]
    assert [(n["unit_id"], n["role"]) for n in notes] == [(LEAD, "带班领导"), (OFFICE, "值班主任")]
    assert records[0]["notices"] == [n["dedup_key"] for n in notes]
    to_office = notes[1]
    assert to_office["on_duty"]["person_id"] == "chief1" and "区城市管理委" in to_office["why"]
    assert all(datetime.fromisoformat(n["requested_at"]) == DUE for n in notes)
    assert steps() == (remind0 + 2, overdue0 + 1)
    # the notices go out before the step is on the log: a crash between them sends again, never loses one
    kinds = [t for t, _, _ in new]
    assert kinds.index(LEDGER_CIRCULARS.name) > max(i for i, t in enumerate(kinds) if t == NOTIFICATIONS_REQUESTED.name)

    after = len(produced.records)
    await rectification.check_rectifications(worker)
    assert len(produced.records) == after


async def test_a_second_worker_takes_the_same_steps_and_none_once_it_has_read_them(tmp_path):
    """Two leaders for a moment (a rebalance): the same record ids and dedup keys, so the log's readers
    and the delivery stage keep one; once a worker has read the other's steps, it takes none."""
    first, second = Produced(), Produced()
    at = DUE + timedelta(seconds=1)
    a = worker_at(tmp_path / "a", at, first, a_book(the_circular()))
    b = worker_at(tmp_path / "b", at, second, a_book(the_circular()))
    await rectification.check_rectifications(a)
    await rectification.check_rectifications(b)
    ids = [(t, k, json.loads(v)["id"]) for t, k, v in first.records]
    assert ids and ids == [(t, k, json.loads(v)["id"]) for t, k, v in second.records]
    echoed = a_book(the_circular(), *(LedgerRecord.model_validate_json(v) for t, _, v in first.records
                                      if t == LEDGER_CIRCULARS.name))
    third = Produced()
    c = worker_at(tmp_path / "c", at + timedelta(minutes=5), third, echoed)
    await rectification.check_rectifications(c)
    assert third.records == []


async def test_not_before_the_book_has_read_the_log(tmp_path):
    produced, book = Produced(), a_book(the_circular())
    book.caught_up.clear()  # a restart, the topic not yet read back: it might hold the steps taken already
    worker = worker_at(tmp_path, DUE + timedelta(hours=1), produced, book)
    await rectification.check_rectifications(worker)
    assert produced.records == []


async def test_registered_as_a_timer_that_runs_on_the_leader_only(tmp_path, monkeypatch):
    """The timer as the composition root registers it, one tick of it: a worker not the leader takes no step."""
    produced = Produced()
    worker = worker_at(tmp_path, DUE + timedelta(seconds=1), produced, a_book(the_circular()))
    [timer] = [t for t in worker.app._app_tasks if t.__name__ == "check_rectifications"]

    async def one_tick(interval, **kwargs):
        assert interval == rectification.RECTIFICATION_INTERVAL_S
        yield interval

    monkeypatch.setattr(worker.app, "itertimer", one_tick)
    monkeypatch.setattr(worker.app, "is_leader", lambda: False)
    await timer()
    assert produced.records == []
    monkeypatch.setattr(worker.app, "is_leader", lambda: True)
    await timer()
    assert {json.loads(v)["body"]["record"] for t, _, v in produced.records if t == LEDGER_CIRCULARS.name} == {
        "rectification_overdue"}
