"""The API's read model: every incident's report, decision and notifications, rebuilt from the topics.

A projection, not the source of truth: on start it reads the catalog's topics from the beginning, so a
restart of the API (or of everything, with the broker's data kept) shows the same incidents.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from playbooks.fold import IncidentFold
from topics.catalog import (
    DRILL_NOTIFICATIONS,
    INCIDENT_EVENTS,
    INCIDENTS_DECIDED,
    INCIDENTS_REPORTED,
    NOTIFICATIONS_REQUESTED,
)
from topics.models import IncidentDecided, IncidentEvent, IncidentReported, NotificationRequested

log = structlog.get_logger("yingji", stage="view")


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
        }


class IncidentView:
    TOPICS = (INCIDENTS_REPORTED, INCIDENTS_DECIDED, NOTIFICATIONS_REQUESTED, DRILL_NOTIFICATIONS, INCIDENT_EVENTS)

    def __init__(self) -> None:
        self.incidents: dict[str, IncidentReadModel] = {}
        self.caught_up = asyncio.Event()
        self._subscribers: set[asyncio.Queue] = set()

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

    def _state(self, incident_id: str) -> IncidentReadModel:
        state = self.incidents.get(incident_id)
        if state is None:
            state = self.incidents[incident_id] = IncidentReadModel(incident_id)
        return state

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
                state.decided = dec
                if dec.id not in state.decision_ids:
                    state.decision_ids.add(dec.id)
                    state.decisions.append(dec.decision)
            elif topic in (NOTIFICATIONS_REQUESTED.name, DRILL_NOTIFICATIONS.name):
                note = NotificationRequested.model_validate_json(value)
                if note.kind in ("handover", "test"):  # a handover's notice (its id in incident_id): no incident of it
                    return
                incident_id = note.incident_id
                self._state(incident_id).notifications[note.dedup_key] = note
            elif topic == INCIDENT_EVENTS.name:
                event = IncidentEvent.model_validate_json(value)
                incident_id = event.incident_id
                self._state(incident_id).add_event(event)
                event_json = event.model_dump(mode="json")
            else:
                return
        except ValidationError:
            return  # the incidents stage dead-letters bad records; the view just does not show them
        if self._subscribers:
            self._publish({"incident_id": incident_id, "topic": topic, "event": event_json})

    async def follow(self, bootstrap: str) -> None:
        """Read every partition of the view's topics from the beginning, then keep following."""
        while True:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
            try:
                await consumer.start()
                parts = [
                    TopicPartition(spec.name, p)
                    for spec in self.TOPICS
                    for p in (consumer.partitions_for_topic(spec.name) or range(spec.partitions))
                ]
                consumer.assign(parts)
                await consumer.seek_to_beginning(*parts)
                ends = await consumer.end_offsets(parts)
                pending = {tp for tp, end in ends.items() if end > 0}
                if not pending:
                    self.caught_up.set()
                while True:
                    batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                    for tp, records in batches.items():
                        for record in records:
                            self.apply(tp.topic, record.value)
                        if tp in pending and records and records[-1].offset + 1 >= ends[tp]:
                            pending.discard(tp)
                    if not pending and not self.caught_up.is_set():
                        self.caught_up.set()
                        log.info("view_caught_up", incidents=len(self.incidents))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker away: retry; the view is only a projection
                log.warning("view_retry", error=type(exc).__name__)
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
