"""The duty book: every unit's roster and the duty log, followed from their topics, people unsealed.

One per process (the API, the worker, the CLI's reading), built by its composition root. The topics
are the truth: the rosters topic is compacted (the latest record per unit), the log keeps every
event; a restarted process reads both from the beginning and knows what it knew.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

import structlog
from aiokafka import TopicPartition
from pydantic import ValidationError

from playbooks.duty.address import DutyIndex, address
from playbooks.duty.change import union, unit_roster
from playbooks.duty.config import DutyFile
from services.following import ReadProgress, follow_from_start
from services.privacy import Sealer
from topics.catalog import DUTY_LOG, DUTY_ROSTERS
from topics.duty import DutyEvent, Person, PersonPrivate, Roster, RosterRecord, RosterSource, SealedPerson
from topics.models import NotificationRequested

log = structlog.get_logger("yingji", stage="duty")

# who is on duty is asked for notices around now: the shifts of this window are expanded once
INDEX_BEFORE, INDEX_AFTER = timedelta(days=2), timedelta(days=7)


def seal_people(people: Iterable[Person], sealer: Sealer) -> list[SealedPerson]:
    return [SealedPerson(id=p.id, unit_id=p.unit_id, post=p.post, is_leader=p.is_leader, employment=p.employment,
                         sealed=sealer.seal_model(PersonPrivate(name=p.name, contacts=p.contacts))) for p in people]


def open_people(people: Iterable[SealedPerson], sealer: Sealer) -> list[Person]:
    out = []
    for p in people:
        private = sealer.open_model(p.sealed, PersonPrivate)
        out.append(Person(id=p.id, name=private.name, unit_id=p.unit_id, post=p.post, is_leader=p.is_leader,
                          employment=p.employment, contacts=private.contacts))
    return out


def to_record(roster: Roster, unit_id: str, sealer: Sealer, *, source: RosterSource, now: datetime,
              by: str) -> RosterRecord:
    """A unit's part of the roster as its record on the rosters topic, names and contacts sealed."""
    part = unit_roster(roster, unit_id)
    return RosterRecord(id=f"roster.{unit_id}.{int(now.timestamp() * 1000)}", unit_id=unit_id,
                        people=seal_people(part.people, sealer), rotations=part.rotations, shifts=part.shifts,
                        overrides=[o.model_copy(update={"reason": sealer.seal_text(o.reason) or ""})
                                   for o in part.overrides],  # a reason is free text: it may name people
                        swaps=part.swaps, source=source, changed_at=now, changed_by=by)


class DutyBook:
    """The latest roster record per unit and the duty log, in memory, followed from the topics."""

    def __init__(self, sealer: Sealer, config: DutyFile) -> None:
        self.sealer, self.config = sealer, config
        self.records: dict[str, RosterRecord] = {}
        self._parts: dict[str, Roster] = {}
        self.events: list[DutyEvent] = []
        self._event_ids: set[str] = set()
        self._roster: Roster | None = None
        self._index: DutyIndex | None = None
        self.caught_up = asyncio.Event()
        self.progress = ReadProgress()
        self.writing = asyncio.Lock()  # the API's changes, one at a time (services/web/routes/duty.py)

    def use(self, config: DutyFile) -> None:
        """duty.yaml of a plan revision adopted (issue 24 item 3): who answers for a role is found by its rules
        from now on. The index goes with the old rules: it keeps the answers it found under them."""
        if config != self.config:
            self.config, self._index = config, None

    # --- state ---------------------------------------------------------------------------

    def apply_roster(self, rec: RosterRecord) -> None:
        """The unit's record as the topic orders them: the later one stands (not the writer's clock,
        which may be behind on an operator's machine; after compaction the topic keeps that one too).
        People unsealed first: a record this key cannot open changes nothing (ValueError)."""
        overrides = [o.model_copy(update={"reason": self.sealer.open_text(o.reason)}) if o.reason else o
                     for o in rec.overrides]
        roster = Roster(people=open_people(rec.people, self.sealer), rotations=rec.rotations, shifts=rec.shifts,
                        overrides=overrides, swaps=rec.swaps)
        self.records[rec.unit_id] = rec
        self._parts[rec.unit_id] = roster
        self._roster, self._index = None, None

    def apply_event(self, event: DutyEvent) -> bool:
        """False when the event was seen already (a stage that ran twice): effect once."""
        if event.id in self._event_ids:
            return False
        self._event_ids.add(event.id)
        self.events.append(event)
        return True

    def roster(self) -> Roster:
        if self._roster is None:
            self._roster = union(self._parts[u] for u in sorted(self._parts))
        return self._roster

    def name(self, person_id: str | None) -> str | None:
        person = self.roster().person(person_id) if person_id else None
        return person.name if person else None

    def index_for(self, at: datetime) -> DutyIndex:
        if self._index is None or not self._index.covers(at):
            self._index = DutyIndex(self.roster(), at - INDEX_BEFORE, at + INDEX_AFTER)
        return self._index

    def address(self, notice: NotificationRequested) -> NotificationRequested:
        """The notice naming the person on duty for its role at its own time (playbooks/duty/address.py)."""
        return address(notice, self.roster(), self.config, self.index_for(notice.requested_at))

    def log_of(self, unit_id: str) -> list[DutyEvent]:
        return [e for e in self.events if e.unit_id == unit_id]

    # --- following the topics ----------------------------------------------------------------

    def apply_raw(self, topic: str, value: bytes, offset: int) -> None:
        try:
            if topic == DUTY_ROSTERS.name:
                self.apply_roster(RosterRecord.model_validate_json(value))
            else:
                self.apply_event(DutyEvent.model_validate_json(value))
        except (ValidationError, ValueError) as exc:
            # the topic's producers validate first; a record that fails here was written by something else
            log.error("bad_duty_record", topic=topic, offset=offset, error=type(exc).__name__)

    async def follow(self, bootstrap: str) -> None:
        """Both topics from the beginning, then as they grow; caught_up once both ends were reached."""
        tps = [TopicPartition(DUTY_ROSTERS.name, 0), TopicPartition(DUTY_LOG.name, 0)]
        await follow_from_start(bootstrap, tps, self.apply_raw, self.caught_up, "duty", self.progress)


# --- synchronous edge: the CLI ---------------------------------------------------------------


def read_book(bootstrap: str, sealer: Sealer, config: DutyFile) -> DutyBook:
    """Both topics read to their ends, once."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as SyncTP

    book = DutyBook(sealer, config)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000)
    try:
        tps = [SyncTP(DUTY_ROSTERS.name, 0), SyncTP(DUTY_LOG.name, 0)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + 30
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError("the duty topics were not read to their ends in 30 s")
            batches = consumer.poll(timeout_ms=500)
            for tp, records in batches.items():
                for r in records:
                    book.apply_raw(tp.topic, r.value, r.offset)
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
        book.caught_up.set()
        return book
    finally:
        consumer.close()


def publish(bootstrap: str, records: Iterable[RosterRecord], events: Iterable[DutyEvent]) -> None:
    """The CLI's write: records and events, each acknowledged by every in-sync replica."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5)
    try:
        futures = [producer.send(DUTY_ROSTERS.name, key=r.unit_id.encode(), value=r.model_dump_json().encode())
                   for r in records]
        futures += [producer.send(DUTY_LOG.name, key=e.unit_id.encode(), value=e.model_dump_json().encode())
                    for e in events]
        for f in futures:
            f.get(timeout=15)
    finally:
        producer.close()
