"""Stage `incidents`: every incident's life in one agent, keyed by incident id.

In: reports (yingji.incidents.reported) and commands (reports filed, approvals, the end, due checks).
Out: decisions, notifications (each with a dedup key), timeline events, breaches and escalations.
The agent decodes, calls the pure lifecycle (playbooks.lifecycle) and emits; the incident's state
lives in a Faust table whose changelog is on the broker, so a restarted worker recovers it.
Deadlines: a sweep over this worker's due schedule sends a due check for each incident with
something due; the agent acts on it. The schedule is derived from the table, rebuilt after a
rebalance or a restart, so nothing due while the worker was down is lost.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import os
import sys
import time
import weakref
from datetime import datetime
from typing import Awaitable, Iterable, Iterator, NoReturn

import faust
import structlog
from faust.streams import _current_event
from faust.types import TP, EventT
from pydantic import ValidationError

from playbooks.engine import ReportRejected
from playbooks.lifecycle import IncidentState, Outcome, check_due, handle, start
from services import gcwatch, metrics
from services.admin import partition_of
from services.agents.deadletter import dead_letter, reason_label
from services.app import app, runtime, settings
from services.table_codec import Head, decode_head, decode_state, encode_state, head_of
from services.watchdog import StallWatch, consumer_state
from topics.catalog import (
    DEAD_LETTERS,
    DRILL_NOTIFICATIONS,
    DUE_TICKS,
    ESCALATIONS,
    INCIDENT_COMMANDS,
    INCIDENT_EVENTS,
    INCIDENTS_DECIDED,
    INCIDENTS_REPORTED,
    NOTIFICATIONS_REQUESTED,
)
from topics.models import (
    DueCheck,
    DueTick,
    EventKind,
    IncidentCommand,
    IncidentDecided,
    IncidentReported,
)

STAGE = "incidents"
log = structlog.get_logger("yingji", stage=STAGE)
RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}

INBOUND_TOPICS = (INCIDENTS_REPORTED.name, INCIDENT_COMMANDS.name, DUE_TICKS.name)
inbound = app.topic(*INBOUND_TOPICS, **RAW)

# incident id -> services.table_codec's bytes; keyed like the inbound topics, so co-partitioned with them.
# value_type=bytes makes the changelog raw both ways: recovery hands back the bytes, parsing nothing.
incidents = app.Table(
    "incidents",
    key_type=str,
    value_type=bytes,
    schema=faust.Schema(key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw"),
)

ESCALATION_KINDS = {EventKind.BREACH, EventKind.ESCALATION}


class DueSchedule:
    """Per partition, a min-heap of (next due time, incident id) of this worker's incidents; derived from
    the table, never the truth.

    The sweep sends one tick per partition with something due (`yingji.incidents.due`), not one record
    per incident; the agent, reading the tick, checks up to `per_tick` of that partition's due
    incidents, earliest first, and sends the next tick itself while more are due. A flood of them
    (deadlines missed during an outage, a storm of breaches) waits here, not on a topic ahead of new
    reports: a batch holds at most one tick per partition.
    """

    TICK_LOST_S = 30.0  # a tick sent and never handled (its partition moved, say) is sent again after this

    def __init__(self, per_tick: int) -> None:
        self.heaps: dict[int, list[tuple[datetime, str]]] = {}
        self.stale = True
        self.per_tick = per_tick
        self.ticking: dict[int, float] = {}  # partition -> when (monotonic) its tick in flight was sent
        # incident id -> (level, open obligation kinds) of live, not ended incidents: feeds the gauges
        self.summary: dict[str, tuple[str, tuple[str, ...]]] = {}

    def push(self, partition: int, when: datetime | None, incident_id: str) -> None:
        if when is not None:
            heapq.heappush(self.heaps.setdefault(partition, []), (when, incident_id))

    def track(self, partition: int, incident_id: str, head: Head) -> None:
        """Live incidents only: a drill's due checks come from its runner on the drill's own clock."""
        self.push(partition, head.due, incident_id)
        if head.level is None:
            self.summary.pop(incident_id, None)
        else:
            self.summary[incident_id] = (head.level, head.open_kinds)

    def due_now(self, partition: int, now: datetime) -> bool:
        heap = self.heaps.get(partition)
        return bool(heap) and heap[0][0] <= now

    def to_tick(self, now: datetime, mono: float) -> list[int]:
        """Partitions with something due by `now` and no tick in flight; each counts in flight from here."""
        out = [p for p in self.heaps
               if self.due_now(p, now) and (p not in self.ticking or mono - self.ticking[p] >= self.TICK_LOST_S)]
        for p in out:
            self.ticking[p] = mono
        return out

    def pop_due(self, partition: int, now: datetime) -> list[tuple[datetime, str]]:
        """The partition's incidents with something due by `now`, earliest first, each once, at most
        `per_tick` of them."""
        heap = self.heaps.get(partition, [])
        due: dict[str, datetime] = {}
        while heap and heap[0][0] <= now and len(due) < self.per_tick:
            when, incident_id = heapq.heappop(heap)
            due.setdefault(incident_id, when)
        return [(when, iid) for iid, when in due.items()]

    def ticked(self, partition: int, mono: float, again: bool) -> None:
        """A tick of `partition` handled; `again`: its handler sent the next one."""
        if again:
            self.ticking[partition] = mono
        else:
            self.ticking.pop(partition, None)

    def waiting(self, now: datetime) -> int:
        """Incidents due by `now` and not yet checked (a scan: for the gauges, every few seconds)."""
        return len({iid for heap in self.heaps.values() for when, iid in heap if when <= now})

    def rebuild(self, states: Iterable[tuple[int, str, bytes]]) -> int:
        self.heaps = {}
        self.summary = {}
        self.ticking = {}  # ticks sent before a rebalance may be handled by another worker, or twice
        for partition, incident_id, raw in states:
            try:
                head = decode_head(raw, runtime.plan)
            except (ValidationError, ValueError):
                log.error("unreadable_state", incident_id=incident_id)
                continue
            self.track(partition, incident_id, head)
        for heap in self.heaps.values():
            heapq.heapify(heap)
        self.stale = False
        return sum(len(heap) for heap in self.heaps.values())


schedule = DueSchedule(per_tick=settings.due_checks_per_tick)


watch = StallWatch(stall_after_s=settings.stall_restart_s)
WATCH_INTERVAL_S = 2.0
RESTARTS = int(os.environ.get("YINGJI_WORKER_RESTARTS", "0"))  # in-place restarts of this worker so far


def _settled() -> bool:
    """Not rebalancing and the table recovered: the timers may trust the table and the assignment."""
    return not (app.rebalancing or app.tables.recovery.in_recovery or not app.tables.recovery.completed.is_set())


@app.on_partitions_assigned.connect
async def _on_assigned(app_, assigned, **kwargs) -> None:  # noqa: ARG001 - signal signature
    schedule.stale = True
    watch.reassigned()


class Outbox:
    """The records one batch of inbound records produces, sent together.

    Straight to the producer (not Faust's Topic layer, which cost a fifth of the worker's CPU at about
    17 records per incident), and one wait for the broker's acknowledgements (acks=all) per batch
    instead of one per record.
    """

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes, int | None]] = []

    def add(self, topic: str, key: str | None, value: bytes, partition: int | None = None) -> None:
        """`partition`: None for the producer's partitioner on the key."""
        self.records.append((topic, None if key is None else key.encode(), value, partition))

    def add_outcome(self, out: Outcome) -> None:
        for decision in out.decisions:
            rec = IncidentDecided(
                id=f"{decision.incident_id}.decision.{out.state.seq if out.state else 0}",
                incident_id=decision.incident_id,
                drill=out.state.drill if out.state else False,
                decision=decision,
                accepted_at=out.state.accepted_at if out.state else decision.decided_at,
            )
            self.add(INCIDENTS_DECIDED.name, rec.incident_id, rec.model_dump_json().encode())
        for note in out.notifications:  # a drill never reaches the live notification topic
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
        futures = [await produce(topic, key, value, partition) for topic, key, value, partition in records]
        if futures:
            await asyncio.gather(*futures)


async def produce(topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> Awaitable:
    """One record to the producer; the future resolves when the broker acknowledges it."""
    return await app.producer.send(topic, key, value, partition, None, None)


def _count(out: Outcome, accepted_at: datetime | None = None) -> None:
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
    the table only once the broker holds every output: a worker killed in between reads the records
    again and emits again (each record has an id, each notification a dedup key) instead of finding
    the incident recorded and its outputs lost.
    """

    def __init__(self) -> None:
        self.outbox = Outbox()
        self.states: dict[str, tuple[EventT, IncidentState]] = {}
        self.done: list[tuple[Outcome, datetime | None]] = []
        self.taken: list[EventT] = []

    def known(self, incident_id: str) -> bool:
        return incident_id in self.states or incident_id in incidents

    def load(self, incident_id: str) -> IncidentState | None:
        if incident_id in self.states:
            return self.states[incident_id][1]
        raw = incidents.get(incident_id)
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
            head = head_of(state, runtime.plan)
            token = _current_event.set(weakref.ref(event))  # the changelog partition is the record's
            try:
                incidents[incident_id] = encode_state(state, head)
            finally:
                _current_event.reset(token)
            schedule.track(event.message.partition, incident_id, head)
        for out, accepted_at in self.done:
            _count(out, accepted_at)
            for ev in out.events:
                log.info(ev.kind.value, incident_id=ev.incident_id, drill=ev.drill, obligation=ev.obligation)
        for event in self.taken:
            watch.note(event.message.tp, event.message.offset)


def handle_record(batch: Batch, event: EventT, topic: str, raw: bytes) -> None:
    if topic == INCIDENTS_REPORTED.name:
        rec = IncidentReported.model_validate_json(raw)
        if batch.known(rec.incident_id):  # a report read again: no need to decode its state
            metrics.DUPLICATES.labels(stage=STAGE).inc()
            return
        now = rec.sim_now or runtime.clock.now()  # a drill brings its simulated clock's time
        batch.record(event, start(rec, runtime.plan, now), rec.accepted_at)
        return
    if topic == DUE_TICKS.name:
        check_partition(batch, event, DueTick.model_validate_json(raw))
        return
    cmd = IncidentCommand.model_validate_json(raw)
    state = batch.load(cmd.incident_id)
    if state is None:
        raise ReportRejected.single("incident_id", f"no incident {cmd.incident_id!r}")
    if state.simulated_clock and cmd.sim_now is None:
        raise ReportRejected.single("sim_now", "a drill incident moves only on its drill's clock")
    now = cmd.sim_now or runtime.clock.now()
    if isinstance(cmd.body, DueCheck):
        out = check_due(state, runtime.plan, now)
    else:
        out = handle(state, cmd, runtime.plan, now)
    if not out.empty:
        batch.record(event, out, None)


def check_partition(batch: Batch, event: EventT, tick: DueTick) -> None:
    """A tick: check this partition's due incidents, a bounded number; send the next tick if more are due.

    Each state is written on the tick's own partition, which is the incident's: the schedule keeps
    each incident under the partition its records arrive on."""
    partition = event.message.partition
    if tick.partition != partition:
        raise ReportRejected.single("partition", f"a tick for partition {tick.partition} read on partition {partition}")
    if schedule.stale:  # being rebuilt after a rebalance: the rebuilt schedule sends its own ticks
        return
    now = runtime.clock.now()
    due = schedule.pop_due(partition, now)
    again = schedule.due_now(partition, now)
    if again:  # sent now, not with the batch: it is read while this batch is handled, and the agent never waits for it
        asyncio.ensure_future(_send_tick(partition, now))
    schedule.ticked(partition, time.monotonic(), again)
    for _when, incident_id in due:
        state = batch.load(incident_id)
        if state is None or state.simulated_clock:  # gone with a rebalance; a drill's clock is its runner's
            continue
        out = check_due(state, runtime.plan, now)
        if not out.empty:
            batch.record(event, out, None)


async def _send_tick(partition: int, now: datetime) -> None:
    """A lost tick is sent again by the sweep after DueSchedule.TICK_LOST_S: say so, never raise."""
    try:
        await (await produce(DUE_TICKS.name, None, _tick(partition, now), partition))
    except Exception:  # noqa: BLE001 - a task's exception would go unseen
        log.exception("tick_send_failed", partition=partition)


def _tick(partition: int, now: datetime) -> bytes:
    tid = f"tick.{partition}.{now.timestamp():.6f}"
    return DueTick(id=tid, partition=partition, at=now).model_dump_json().encode()


def dead_letter_record(batch: Batch, raw: bytes, message, error: Exception) -> None:
    record = dead_letter(raw=raw, topic=message.topic, partition=message.partition, offset=message.offset,
                         stage=STAGE, error=error, now=runtime.clock.now())
    metrics.DEAD_LETTERS.labels(stage=STAGE, reason=reason_label(error)).inc()
    log.warning("dead_letter", topic=message.topic, offset=message.offset, fields=record.fields)
    batch.outbox.add(DEAD_LETTERS.name, message.topic, record.model_dump_json().encode())


BATCH_MAX = settings.worker_batch_max
BATCH_WITHIN_S = settings.worker_batch_within_s
_taken = 0  # records taken by this process, for the fault injections


@app.agent(inbound)
async def incident_lifecycle(stream):
    async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
        await handle_batch(events)


async def handle_batch(events: list[EventT]) -> None:
    """Every record of the batch in order, then one commit; a gap ends the batch and restarts the worker."""
    global _taken
    batch = Batch()
    gap: tuple[TP, int, int] | None = None
    stall = False
    for event in events:
        tp, offset = event.message.tp, event.message.offset
        _taken += 1
        if RESTARTS == 0 and 0 < settings.fault_skip_after < _taken <= settings.fault_skip_after + 5:
            log.warning("fault_injected_skip", partition=str(tp), offset=offset)  # the watchdog's test:
            continue  # five records dropped unseen
        expected = watch.skipped(tp, offset, app.consumer._committed_offset.get(tp))
        if expected is not None:  # handle nothing out of order: a fresh process reads from the gap on
            gap = (tp, expected, offset)
            break
        batch.taken.append(event)
        raw: bytes = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
        try:
            handle_record(batch, event, event.message.topic, raw)
        except (ValidationError, ReportRejected) as exc:
            dead_letter_record(batch, raw, event.message, exc)
        except Exception as exc:  # noqa: BLE001 - Faust acks a record whose agent raised: never lose it silently
            log.exception("incident_failed", offset=offset)
            dead_letter_record(batch, raw, event.message, exc)
        if _taken == settings.fault_stall_after and RESTARTS == 0:
            stall = True
            break
    try:
        await batch.commit()
    except Exception:  # noqa: BLE001 - nothing of the batch is committed: a fresh process reads it again
        log.exception("batch_send_failed", records=len(batch.taken))
        await _restart_in_place("batch_send_failed_restarting")
    if gap is not None:
        tp, expected, offset = gap
        await app.consumer._thread.commit({tp: expected})  # Faust may have committed past the gap
        await _restart_in_place("records_skipped_restarting", partition=str(tp), expected=expected, got=offset)
    if stall:
        await _inject_stall()


SWEEP_INTERVAL_S = 0.1


@app.timer(interval=SWEEP_INTERVAL_S)
async def sweep_due() -> None:
    """Send a due check for each incident of this worker with something due now (timers never write tables)."""
    try:
        await _sweep()
    except Exception:  # noqa: BLE001 - a failed sweep is retried at the next tick; never crash the worker
        log.exception("sweep_failed")
        schedule.stale = True


def _table_items() -> Iterator[tuple[int, str, bytes]]:
    """This worker's incidents, raw, each with its partition. On rocksdb straight from its active
    partitions' databases: Faust's own items() decodes every key through its codec registry
    (100,000 incidents: about 8 s of a restart, against 2 s)."""
    store = incidents.data
    if not hasattr(store, "_dbs"):  # memory://: one dict; the partition is the producers' partitioner's
        for key, value in incidents.items():
            yield partition_of(key), key, value
        return
    actives = app.assignor.assigned_actives()
    topic = incidents.changelog_topic_name
    for partition, db in list(store._dbs.items()):
        if TP(topic, partition) not in actives:
            continue
        for key, value in db.items():
            if key != store.offset_key:
                yield partition, json.loads(key), value


async def _sweep() -> None:
    if not _settled():
        return
    if schedule.stale:
        count = schedule.rebuild(list(_table_items()))
        log.info("schedule_rebuilt", incidents=count, worker=settings.group_instance_id)
        gcwatch.settle()
    now = runtime.clock.now()
    outbox = Outbox()
    for partition in schedule.to_tick(now, time.monotonic()):
        outbox.add(DUE_TICKS.name, None, _tick(partition, now), partition)
    await outbox.send()


@app.timer(interval=5.0)
async def gauges() -> None:
    """Open incidents and obligations of live incidents on this worker, and its consumer lag."""
    if app.rebalancing or not app.tables.recovery.completed.is_set():
        return
    try:
        open_obligations: dict[str, int] = {}
        open_incidents: dict[str, int] = {}
        for level, kinds in schedule.summary.values():
            open_incidents[level] = open_incidents.get(level, 0) + 1
            for kind in kinds:
                open_obligations[kind] = open_obligations.get(kind, 0) + 1
        for kind in ("phone_report", "written_report", "detailed_report", "public_release", "city_report",
                     "evaluation_report"):
            metrics.OBLIGATIONS_OPEN.labels(kind=kind).set(open_obligations.get(kind, 0))
        for level in ("一级", "二级", "三级"):
            metrics.INCIDENTS_OPEN.labels(level=level).set(open_incidents.get(level, 0))
        metrics.DUE_CHECKS.labels(state="ticks_in_flight").set(len(schedule.ticking))
        metrics.DUE_CHECKS.labels(state="waiting").set(schedule.waiting(runtime.clock.now()))
        lag: dict[str, int] = {}
        monitor = app.monitor
        for tp, end in (monitor.tp_end_offsets or {}).items():
            committed = (monitor.tp_committed_offsets or {}).get(tp, 0)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - committed)
        for topic in (INCIDENTS_REPORTED.name, INCIDENT_COMMANDS.name):
            metrics.CONSUMER_LAG.labels(topic=topic).set(lag.get(topic, 0))
    except Exception:  # noqa: BLE001 - a gauge refresh must never take the worker down
        log.exception("gauges_failed")


async def _inject_stall() -> None:
    """Fault injection for the watchdog's test: the agent stops taking records and never says why."""
    log.warning("fault_injected_stall", processed=watch.processed)
    await asyncio.Event().wait()


@app.timer(interval=WATCH_INTERVAL_S)
async def stall_watchdog() -> None:
    """Lag on this worker's inbound partitions and nothing processed for `stall_restart_s`: restart in place."""
    if settings.stall_restart_s <= 0:
        return
    if not _settled():
        watch.pause()
        return
    tps = [tp for tp in app.consumer.assignment() if tp.topic in INBOUND_TOPICS]
    if not tps:
        watch.pause()
        return
    try:
        ends = await asyncio.wait_for(app.consumer.highwaters(*tps), timeout=10)
    except Exception:  # noqa: BLE001 - the broker unreachable is an outage, not a stalled consumer
        watch.pause()
        return
    unread = watch.unread(ends, app.consumer._committed_offset)
    stalled = watch.check(unread, time.monotonic())
    if stalled is None:
        return
    behind = {tp: watch.positions[tp] for tp in tps if tp in watch.positions and ends.get(tp, 0) > watch.positions[tp]}
    if behind:  # read again from what this worker really handled, whatever Faust committed
        await app.consumer._thread.commit(behind)
    await _restart_in_place("worker_stalled_restarting", unread=unread, stalled_s=round(stalled, 1))


async def _restart_in_place(event: str, **details) -> NoReturn:
    """A fresh process image: a new Faust app joins the group and resumes from the committed offsets."""
    try:
        state = consumer_state(app)
    except Exception as exc:  # noqa: BLE001 - the restart matters more than the diagnostic
        state = {"unavailable": repr(exc)}
    log.error(event, restarts=RESTARTS, consumer=state, **details)
    try:  # table writes still in Faust's buffer would die with this image, their records committed
        await asyncio.wait_for(app.producer.flush(), timeout=30)
    except Exception:  # noqa: BLE001 - then their records are read again: the commit waits for no flush
        log.exception("flush_before_restart_failed")
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ["YINGJI_WORKER_RESTARTS"] = str(RESTARTS + 1)
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
