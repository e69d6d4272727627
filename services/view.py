"""The API's read model: every incident's report, decision and notifications, rebuilt from the topics.

A projection, not the source of truth: on start it reads the catalog's topics from the beginning, so a
restart of the API (or of everything, with the broker's data kept) shows the same incidents.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from playbooks.fold import IncidentFold
from services.following import ReadProgress
from services.kafka_topics import partition_counts
from topics.catalog import (
    DELIVERIES,
    DRILL_NOTIFICATIONS,
    INCIDENT_EVENTS,
    INCIDENTS_DECIDED,
    INCIDENTS_REPORTED,
    NOTIFICATIONS_REQUESTED,
)
from topics.delivery import (
    AckHow,
    AckRecord,
    DeliveryEvent,
    DeliveryRecord,
    DeliveryState,
    LadderStepTaken,
    NoticeTaken,
    Undeliverable,
)
from topics.duty import POST_NAMES
from topics.models import IncidentDecided, IncidentEvent, IncidentReported, NotificationRequested

log = structlog.get_logger("yingji", stage="view")
TEST_INCIDENT = "test"  # a test message's records name this incident (topics.delivery.AckRecord)
TEST_PREFIX = "test."  # and its dedup_key starts so (services.delivery.testmsg; not imported: delivery reads the view)
YIELD_EVERY = 200  # records applied between two turns of the event loop: a batch (up to 5,000) of a storm's deliveries held every request and stream behind it


def _first(current: datetime | None, at: datetime) -> datetime:
    """The earlier of two times: records of a notice arrive in any order across a restart's replay."""
    return at if current is None or at < current else current


@dataclass
class AckSeen:
    at: datetime
    by: str
    how: str
    person_id: str | None


@dataclass
class NoticeStatus:
    """What became of one notice, folded from topic deliveries: a few times and names, not the records
    (an incident with many notices and retries stays small)."""

    dedup_key: str
    notice: NotificationRequested | None = None  # from NoticeTaken, when the notice itself was not seen
    taken_at: datetime | None = None
    sent_at: datetime | None = None  # first accepted send, any person, channel or step
    delivered_at: datetime | None = None
    failed: set = field(default_factory=set)  # ids of failed attempts (a replayed record counts once)
    acks: dict[str, AckSeen] = field(default_factory=dict)  # by ack id: one per person or user
    ladder: dict[int, LadderStepTaken] = field(default_factory=dict)
    undeliverable: dict[int, Undeliverable] = field(default_factory=dict)

    @property
    def first_ack(self) -> AckSeen | None:
        return min(self.acks.values(), key=lambda a: a.at, default=None)

    def apply(self, body) -> bool:
        """Fold one record; whether anything shown changed (an `attempted` send changes nothing)."""
        before = self.as_json(None)
        if isinstance(body, DeliveryRecord):
            if body.state == DeliveryState.ACCEPTED:
                self.sent_at = _first(self.sent_at, body.at)
            elif body.state == DeliveryState.DELIVERED:
                self.delivered_at = _first(self.delivered_at, body.at)
            elif body.state == DeliveryState.FAILED:
                self.failed.add(body.id)
        elif isinstance(body, AckRecord):
            seen = self.acks.get(body.id)
            if seen is None or body.at < seen.at:  # the same ack again (a second POST): the first one stands
                self.acks[body.id] = AckSeen(body.at, body.by, body.how.value, body.person_id)
        elif isinstance(body, LadderStepTaken):
            self.ladder.setdefault(body.step, body)
        elif isinstance(body, Undeliverable):
            self.undeliverable.setdefault(body.step, body)
        elif isinstance(body, NoticeTaken):
            self.taken_at = _first(self.taken_at, body.at)
            self.notice = self.notice or body.notice
        return self.as_json(None) != before

    def step_of(self, person_id: str) -> int:
        """The ladder step that reached this person (0: the notice itself)."""
        return max((s for s, t in self.ladder.items() if t.person_id == person_id), default=0)

    def as_json(self, note: NotificationRequested | None) -> dict[str, Any]:
        """As topics.requests.NoticeDelivery."""
        note = note or self.notice
        ack = self.first_ack

        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "dedup_key": self.dedup_key,
            "unit_id": note.unit_id if note else None,
            "unit": note.unit if note else None,
            "kind": note.kind if note else None,
            "taken_at": iso(self.taken_at),
            "sent_at": iso(self.sent_at),
            "delivered_at": iso(self.delivered_at),
            "acked_at": iso(ack.at) if ack else None,
            "acked_by": ack.by if ack else None,
            "acked_how": ack.how if ack else None,
            "acked_person_id": ack.person_id if ack else None,
            "failed_sends": len(self.failed),
            "undeliverable": [{"step": u.step, "reason": u.reason, "at": u.at.isoformat()}
                              for _, u in sorted(self.undeliverable.items())],
            "ladder": [{"step": t.step, "unit_id": t.unit_id, "role": t.role, "post": t.post.value,
                        "post_name": POST_NAMES.get(t.post, t.post.value), "person_id": t.person_id,
                        "at": t.at.isoformat()} for _, t in sorted(self.ladder.items())],
        }


@dataclass
class IncidentReadModel:
    """One incident as the API and the board show it, rebuilt from its records on the topics; its
    timeline folded by playbooks.fold, as drill scoring folds it."""

    incident_id: str
    reported: IncidentReported | None = None
    decided: IncidentDecided | None = None
    notifications: dict[str, NotificationRequested] = field(default_factory=dict)
    events: dict[int, IncidentEvent] = field(default_factory=dict)
    decisions: list = field(default_factory=list)  # every decision, first to latest (regrades)
    decision_ids: set = field(default_factory=set)
    fold: IncidentFold = field(default_factory=IncidentFold)
    # per notice (dedup_key): the view's own dict for this incident, shared, so deliveries read before
    # the incident's report are there when it comes
    deliveries: dict[str, NoticeStatus] = field(default_factory=dict)
    rev: int = 0  # counts the changes to this incident: what is computed from it is cached by it
    shown: Any = None  # the board's row of it, its JSON and what orders it, at a rev, for every board (services.web.board.Shown)

    def add_event(self, event: IncidentEvent) -> None:
        if event.seq in self.events:
            return  # redelivered: same seq, same event
        self.events[event.seq] = event
        self.fold.apply(event)

    @property
    def obligations(self) -> dict[str, dict[str, Any]]:
        """Each obligation as JSON; a 漏报 closed by the end or a regrade stays missed (5.5.2)."""
        return {kind: ob.as_json() for kind, ob in self.fold.obligations.items()}

    @property
    def ended(self) -> bool:
        return self.fold.ended

    def timeline(self) -> list[dict[str, Any]]:
        return [self.events[k].model_dump(mode="json") for k in sorted(self.events)]

    def as_json(self) -> dict[str, Any]:
        report = self.reported.report.model_dump(mode="json") if self.reported else None
        return {
            "incident_id": self.incident_id,
            "status": "ended" if self.ended else ("decided" if self.decided else "reported"),
            "drill": bool(self.reported and self.reported.report.drill),
            "accepted_at": self.reported.accepted_at.isoformat() if self.reported else None,
            "report": report,
            "decision": self.decided.decision.model_dump(mode="json") if self.decided else None,
            "notifications": [n.model_dump(mode="json") for n in self.notifications.values()],
            "obligations": list(self.obligations.values()),
            "deliveries": self.deliveries_json(),
        }

    def deliveries_json(self) -> list[dict[str, Any]]:
        """Every notice of the incident, with what became of it (nothing yet: all null)."""
        keys = [*self.notifications, *(k for k in self.deliveries if k not in self.notifications)]
        return [(self.deliveries.get(k) or NoticeStatus(k)).as_json(self.notifications.get(k)) for k in keys]


class IncidentView:
    TOPICS = (INCIDENTS_REPORTED, INCIDENTS_DECIDED, NOTIFICATIONS_REQUESTED, DRILL_NOTIFICATIONS, INCIDENT_EVENTS,
              DELIVERIES)

    def __init__(self) -> None:
        self.incidents: dict[str, IncidentReadModel] = {}
        # every notice by dedup_key (a handover's too, which has no incident): the ack link names one
        self.notices: dict[str, NotificationRequested] = {}
        # incident id -> dedup_key -> status; an incident's read model holds the same dict
        self.deliveries: dict[str, dict[str, NoticeStatus]] = {}
        self.notice_incident: dict[str, str] = {}  # dedup_key -> incident id, of every notice with deliveries
        # test messages (issue 19 item 6), kept apart: no incident of them, but the ack page shows their 已阅
        self.tests: dict[str, NoticeStatus] = {}
        # person id -> their first ack of a test message: their contacts are verified
        self.verified: dict[str, datetime] = {}
        self.caught_up = asyncio.Event()
        self.progress = ReadProgress()  # how far the topics were read: a request can wait for its own record
        self._subscribers: set[asyncio.Queue] = set()
        self.version = 0  # counts the changes shown: what is computed from the whole view is cached by it

    def subscribe(self, maxsize: int = 10_000) -> asyncio.Queue:
        """A queue of changes, each {"incident_id", "topic", "event" (timeline event JSON or None)}.
        A subscriber too slow to keep up is dropped (its queue gets None) and must re-read the state."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=maxsize)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._subscribers.discard(queue)

    def _publish(self, change: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)

    def warning_changed(self, warning_id: str) -> None:
        """A warning moved (services.warnings.book): the board's streams re-read the active warnings.
        Told here so one queue per board carries incidents and warnings in the order they changed."""
        if self._subscribers:
            self._publish({"incident_id": None, "warning_id": warning_id, "topic": "warnings", "event": None})

    def _state(self, incident_id: str) -> IncidentReadModel:
        state = self.incidents.get(incident_id)
        if state is None:
            state = self.incidents[incident_id] = IncidentReadModel(
                incident_id, deliveries=self.deliveries.setdefault(incident_id, {}))
        return state

    def notice(self, dedup_key: str) -> NotificationRequested | None:
        """A notice by its dedup_key: as requested, or as the delivery stage took it."""
        note = self.notices.get(dedup_key)
        if note is None:
            status = self.status_of(dedup_key)
            note = status.notice if status else None
        return note

    async def read_notice(self, dedup_key: str) -> NotificationRequested | None:
        """`notice`, and for one not known here, again once the topics are read to their end."""
        note = self.notice(dedup_key)
        if note is None and self.progress.consumer is not None and await self.progress.read_to_end():
            note = self.notice(dedup_key)
        return note

    def status_of(self, dedup_key: str, incident_id: str | None = None) -> NoticeStatus | None:
        incident_id = incident_id or self.notice_incident.get(dedup_key)
        if incident_id == TEST_INCIDENT:
            return self.tests.get(dedup_key)
        return self.deliveries.get(incident_id, {}).get(dedup_key) if incident_id else None

    def _apply_delivery(self, value: bytes) -> str | None:
        """Fold one deliveries record; the incident to tell subscribers about, if what it shows changed."""
        body = DeliveryEvent.model_validate_json(value).body
        incident_id = body.notice.incident_id if isinstance(body, NoticeTaken) else body.incident_id
        if incident_id == TEST_INCIDENT or (isinstance(body, AckRecord) and body.how == AckHow.TEST):
            self._apply_test(body)
            return None  # a test message is no incident's notice
        status = self.deliveries.setdefault(incident_id, {}).get(body.dedup_key)
        if status is None:
            status = self.deliveries[incident_id][body.dedup_key] = NoticeStatus(body.dedup_key)
            self.notice_incident[body.dedup_key] = incident_id
        changed = status.apply(body)
        return incident_id if changed and incident_id in self.incidents else None

    def _apply_test(self, body) -> None:
        """A test message's record: its status, and a person's ack of it verifies their contacts
        (the ack link names the token's person; a signed-in user's ack names nobody and verifies nothing)."""
        if not body.dedup_key.startswith(TEST_PREFIX):
            return
        self.tests.setdefault(body.dedup_key, NoticeStatus(body.dedup_key)).apply(body)
        if isinstance(body, AckRecord) and body.person_id is not None:
            self.verified[body.person_id] = _first(self.verified.get(body.person_id), body.at)

    def apply(self, topic: str, value: bytes) -> None:
        try:
            event_json = None
            if topic == INCIDENTS_REPORTED.name:
                rec = IncidentReported.model_validate_json(value)
                incident_id = rec.incident_id
                state = self._state(incident_id)
                if state.reported is None:  # the worker decides the first report of an id, so the view keeps it
                    state.reported = rec
            elif topic == INCIDENTS_DECIDED.name:
                dec = IncidentDecided.model_validate_json(value)
                incident_id = dec.incident_id
                state = self._state(incident_id)
                # the latest decision stands, whatever order partitions are read in: after a partition
                # migration (deploy/MIGRATION.md) an incident's decisions sit on two partitions
                if state.decided is None or dec.decision.decided_at >= state.decided.decision.decided_at:
                    state.decided = dec
                if dec.id not in state.decision_ids:
                    state.decision_ids.add(dec.id)
                    state.decisions.append(dec.decision)
            elif topic in (NOTIFICATIONS_REQUESTED.name, DRILL_NOTIFICATIONS.name):
                note = NotificationRequested.model_validate_json(value)
                self.notices[note.dedup_key] = note
                # a handover's, a test message's, a warning's or a 限期整改's notice: no incident of it
                if note.kind in ("handover", "test", "warning", "rectification"):
                    return
                incident_id = note.incident_id
                self._state(incident_id).notifications[note.dedup_key] = note
            elif topic == INCIDENT_EVENTS.name:
                event = IncidentEvent.model_validate_json(value)
                incident_id = event.incident_id
                self._state(incident_id).add_event(event)
                event_json = event.model_dump(mode="json")
            elif topic == DELIVERIES.name:
                incident_id = self._apply_delivery(value)
                if incident_id is None:
                    return
            else:
                return
        except ValidationError:
            return  # the incidents stage dead-letters bad records; the view just does not show them
        self.version += 1
        if (changed := self.incidents.get(incident_id)) is not None:
            changed.rev += 1
        if self._subscribers:
            self._publish({"incident_id": incident_id, "topic": topic, "event": event_json})

    async def follow(self, bootstrap: str) -> None:
        """Read every partition of the view's topics from the beginning, then keep following."""
        while True:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
            try:
                await consumer.start()
                # the cluster's partitions, not the catalog's: a deployment made with 4 keeps 4 until it
                # migrates (deploy/MIGRATION.md); a partition assigned that does not exist is waited on forever
                names = [spec.name for spec in self.TOPICS]
                counts = await asyncio.to_thread(partition_counts, bootstrap, names)
                if missing := sorted(set(names) - set(counts)):
                    raise LookupError(f"topics not there yet: {missing}")
                parts = [TopicPartition(name, p) for name in names for p in range(counts[name])]
                consumer.assign(parts)
                await consumer.seek_to_beginning(*parts)
                self.progress.restart(consumer, parts, bootstrap)
                ends = await consumer.end_offsets(parts)
                pending = {tp for tp, end in ends.items() if end > 0}
                if not pending:
                    self.caught_up.set()
                while True:
                    batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                    applied = 0
                    for tp, records in batches.items():
                        for record in records:
                            self.apply(tp.topic, record.value)
                            applied += 1
                            if applied % YIELD_EVERY == 0:  # the API's other work is not held up by a big batch
                                await asyncio.sleep(0)
                        if tp in pending and records and records[-1].offset + 1 >= ends[tp]:
                            pending.discard(tp)
                    await self.progress.advance_from(consumer)
                    if not pending and not self.caught_up.is_set():
                        self.caught_up.set()
                        log.info("view_caught_up", incidents=len(self.incidents))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker away: retry; the view is only a projection
                log.warning("view_retry", error=type(exc).__name__)
                await asyncio.sleep(1)
            finally:
                if self.progress.consumer is consumer:
                    self.progress.consumer = None
                    await self.progress.stop_probe()
                with contextlib.suppress(Exception):
                    await consumer.stop()
