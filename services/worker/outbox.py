"""How the worker commits: a batch's outputs acknowledged by the broker first, its states written after.

A worker killed in between reads the batch again and emits again under the same ids and dedup keys;
it never finds an incident recorded whose outputs were lost.
"""

from __future__ import annotations

import asyncio
import weakref
from datetime import datetime
from typing import Any, Awaitable, Callable

import structlog
from faust.streams import _current_event
from faust.types import EventT

from playbooks.lifecycle import IncidentState, Outcome
from playbooks.plan import Plan
from services import metrics
from services.worker.table_codec import decode_state, encode_state, head_of
from topics.catalog import DRILL_NOTIFICATIONS, ESCALATIONS, INCIDENT_EVENTS, INCIDENTS_DECIDED, NOTIFICATIONS_REQUESTED
from services.worker.schedule import DueSchedule
from services.worker.watchdog import StallWatch
from topics.models import EventKind, IncidentDecided, NotificationRequested

log = structlog.get_logger("yingji", stage="incidents")
ESCALATION_KINDS = {EventKind.BREACH, EventKind.ESCALATION}
# one record to the producer; the awaitable it returns resolves when the broker acknowledges it
Produce = Callable[[str, bytes | None, bytes, int | None], Awaitable[Awaitable]]
# a notice named to the person on duty for its role at its own time (services/duty/book.py)
Address = Callable[[NotificationRequested], NotificationRequested]


class Outbox:
    """The records one batch of inbound records produces, sent together.

    Straight to the producer (not Faust's Topic layer, which cost a fifth of the worker's CPU at about
    17 records per incident), and one wait for the broker's acknowledgements (acks=all) per batch
    instead of one per record.
    """

    def __init__(self, produce: Produce, address: Address | None = None) -> None:
        self.produce = produce
        self.address = address
        self.records: list[tuple[str, bytes | None, bytes, int | None]] = []

    def add(self, topic: str, key: str | None, value: bytes, partition: int | None = None) -> None:
        """`partition`: None for the producer's partitioner on the key."""
        self.records.append((topic, None if key is None else key.encode(), value, partition))

    def add_outcome(self, out: Outcome) -> None:
        for k, decision in enumerate(out.decisions):
            rec = IncidentDecided(
                id=decision_id(out, k),
                incident_id=decision.incident_id,
                drill=out.state.drill if out.state else False,
                decision=decision,
                accepted_at=out.state.accepted_at if out.state else decision.decided_at,
            )
            self.add(INCIDENTS_DECIDED.name, rec.incident_id, rec.model_dump_json().encode())
        for note in out.notifications:  # a drill never reaches the live notification topic
            if self.address is not None:
                try:
                    note = self.address(note)
                except Exception:  # noqa: BLE001 - a notice unaddressed is better than a decision lost
                    log.exception("notice_not_addressed", incident_id=note.incident_id)
                if note.on_duty is not None:
                    metrics.NOTICES_ADDRESSED.labels(source=note.on_duty.source, drill=str(note.drill).lower()).inc()
            topic = DRILL_NOTIFICATIONS.name if note.drill else NOTIFICATIONS_REQUESTED.name
            self.add(topic, note.dedup_key, note.model_dump_json().encode())
        for event in out.events:
            value = event.model_dump_json().encode()
            self.add(INCIDENT_EVENTS.name, event.incident_id, value)
            if event.kind in ESCALATION_KINDS:
                self.add(ESCALATIONS.name, event.incident_id, value)

    async def send(self) -> None:
        """Hand every record to the producer, then wait until the broker has them all."""
        records, self.records = self.records, []
        futures = [await self.produce(topic, key, value, partition) for topic, key, value, partition in records]
        if futures:
            await asyncio.gather(*futures)


def decision_id(out: Outcome, k: int = 0) -> str:
    """The record id of the outcome's k-th decision: the incident's sequence number before the step,
    which a step read again after a crash starts from too (its state was not written). Not the number
    after it: a report read again later makes more events due (a breach where a reminder was), and the
    same decision would get a second id, so a reader that drops repeats by id (the API's read model)
    would keep it twice."""
    before = out.events[0].seq - 1 if out.events else (out.state.seq if out.state else 0)
    return f"{out.decisions[k].incident_id}.decision.{before}" + (f".{k}" if k else "")


def count(out: Outcome, accepted_at: datetime | None = None) -> None:
    drill = str(bool(out.state and out.state.drill)).lower()
    for decision in out.decisions[:1] if accepted_at else []:
        metrics.INCIDENTS.labels(
            category=decision.category, grade=decision.grade.value, level=decision.response_level.value, drill=drill
        ).inc()
        metrics.DECISION_LATENCY.observe(max(0.0, (decision.decided_at - accepted_at).total_seconds()))
    for note in out.notifications:
        metrics.NOTIFICATIONS.labels(rule=note.rule, drill=drill).inc()
    for event in out.events:
        if event.kind is EventKind.BREACH:
            metrics.BREACHES.labels(kind=event.obligation or "", drill=drill).inc()
            metrics.BREACH_LAG.observe(float(event.details.get("detection_lag_s") or 0.0))
        elif event.kind is EventKind.ESCALATION:
            metrics.ESCALATIONS.labels(step=str(event.details.get("step")), drill=drill).inc()


class Batch:
    """One batch of inbound records: their outputs, and the incidents' new states not yet written.

    A later record of the batch sees the state an earlier one left (`load`). The states are written to
    the table only once the broker holds every output.
    """

    def __init__(self, *, table: Any, plan: Plan, schedule: DueSchedule, watch: StallWatch, produce: Produce,
                 address: Address | None = None) -> None:
        self.table, self.plan, self.schedule, self.watch = table, plan, schedule, watch
        self.outbox = Outbox(produce, address)
        self.states: dict[str, tuple[EventT, IncidentState]] = {}
        self.done: list[tuple[Outcome, datetime | None]] = []
        self.taken: list[EventT] = []

    def known(self, incident_id: str) -> bool:
        return incident_id in self.states or incident_id in self.table

    def load(self, incident_id: str) -> IncidentState | None:
        if incident_id in self.states:
            return self.states[incident_id][1]
        raw = self.table.get(incident_id)
        return None if raw is None else decode_state(raw)

    def record(self, event: EventT, out: Outcome, accepted_at: datetime | None) -> None:
        assert out.state is not None
        self.outbox.add_outcome(out)
        self.states[out.state.incident_id] = (event, out.state)
        self.done.append((out, accepted_at))

    async def commit(self) -> None:
        """Outputs acknowledged, then the states written (each on its own record's partition)."""
        await self.outbox.send()
        for incident_id, (event, state) in self.states.items():
            head = head_of(state, self.plan)
            token = _current_event.set(weakref.ref(event))  # the changelog partition is the record's
            try:
                self.table[incident_id] = encode_state(state, head)
            finally:
                _current_event.reset(token)
            self.schedule.track(event.message.partition, incident_id, head)
        for out, accepted_at in self.done:
            count(out, accepted_at)
            for ev in out.events:
                log.info(ev.kind.value, incident_id=ev.incident_id, drill=ev.drill, obligation=ev.obligation)
        for event in self.taken:
            self.watch.note(event.message.tp, event.message.offset)
