"""Stage `incidents`: every incident's life in one agent, keyed by incident id.

In: reports (yingji.incidents.reported), commands (reports filed, approvals, the end, a drill's due
checks) and due ticks. Out: decisions, notifications (each with a dedup key), timeline events, breaches
and escalations. The agent decodes, calls the pure lifecycle (playbooks.lifecycle) and hands what it
returns to the batch (services/worker/outbox.py), which commits it. The worker's composition root
(services/worker/root.py) registers `incident_lifecycle` on the app with the worker it belongs to.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Callable

import structlog
from faust.types import TP, EventT
from pydantic import ValidationError

from playbooks.engine import ReportRejected
from playbooks.lifecycle import check_due, handle, start
from services import metrics
from services.worker.context import Worker
from services.worker.deadletter import dead_letter, reason_label
from services.worker.outbox import Batch
from services.worker.schedule import tick_record
from topics.catalog import DEAD_LETTERS, DUE_TICKS, INCIDENT_COMMANDS, INCIDENTS_REPORTED
from topics.models import DueCheck, DueTick, IncidentCommand, IncidentReported

STAGE = "incidents"
log = structlog.get_logger("yingji", stage=STAGE)
INBOUND = (INCIDENTS_REPORTED, INCIDENT_COMMANDS, DUE_TICKS)


async def newer_plan(worker: Worker) -> bool:
    """Whether the plan moved on once the adoptions are read to their end (issue 24 item 3): the API and the
    workers each switch as they read an adoption, so a replica may accept under a revision a moment before
    this worker has it. The rest of the batch goes on under the plan it began with; the next batch under this."""
    plans = worker.plans
    if plans is None:
        return False
    before = worker.plan.version
    if plans.progress.consumer is not None:
        await plans.progress.read_to_end()
    try:
        await plans.settle()
    except Exception as exc:  # noqa: BLE001 - the plan could not be folded now (the switch loop retries): as before
        log.warning("plan_catch_up_failed", error=type(exc).__name__)
        return False
    if worker.plan.version == before:
        return False
    log.info("plan_caught_up_for_a_report", from_version=before, to_version=worker.plan.version)
    return True


def on_report(worker: Worker, batch: Batch, event: EventT, raw: bytes) -> None:
    rec = IncidentReported.model_validate_json(raw)
    if batch.known(rec.incident_id):  # a report read again: no need to decode its state
        metrics.DUPLICATES.labels(stage=STAGE).inc()
        return
    now = rec.sim_now or worker.clock.now()  # a drill brings its simulated clock's time
    batch.record(event, start(rec, worker.plan, now), rec.accepted_at)


def on_command(worker: Worker, batch: Batch, event: EventT, raw: bytes) -> None:
    cmd = IncidentCommand.model_validate_json(raw)
    state = batch.load(cmd.incident_id)
    if state is None:
        raise ReportRejected.single("incident_id", f"no incident {cmd.incident_id!r}")
    if state.simulated_clock and cmd.sim_now is None:
        raise ReportRejected.single("sim_now", "a drill incident moves only on its drill's clock")
    now = cmd.sim_now or worker.clock.now()
    if isinstance(cmd.body, DueCheck):
        out = check_due(state, worker.plan, now)
    else:
        out = handle(state, cmd, worker.plan, now)
    if not out.empty:
        batch.record(event, out, None)


def on_tick(worker: Worker, batch: Batch, event: EventT, raw: bytes) -> None:
    """A tick: check this partition's due incidents, a bounded number; send the next tick if more are due.

    Each state is written on the tick's own partition, which is the incident's: the schedule keeps
    each incident under the partition its records arrive on."""
    tick = DueTick.model_validate_json(raw)
    partition = event.message.partition
    if tick.partition != partition:
        raise ReportRejected.single("partition", f"a tick for partition {tick.partition} read on partition {partition}")
    schedule = worker.schedule
    if schedule.stale:  # being rebuilt after a rebalance: the rebuilt schedule sends its own ticks
        return
    now = worker.clock.now()
    due = schedule.pop_due(partition, now)
    again = schedule.due_now(partition, now)
    if again:  # sent now, not with the batch: it is read while this batch is handled, and the agent never waits for it
        asyncio.ensure_future(send_tick(worker, partition, now))
    schedule.ticked(partition, time.monotonic(), again)
    for _when, incident_id in due:
        state = batch.load(incident_id)
        if state is None or state.simulated_clock:  # gone with a rebalance; a drill's clock is its runner's
            continue
        out = check_due(state, worker.plan, now)
        if not out.empty:
            batch.record(event, out, None)


# which handler reads which inbound topic (the catalog names the topics)
HANDLERS: dict[str, Callable[[Worker, Batch, EventT, bytes], None]] = {
    INCIDENTS_REPORTED.name: on_report,
    INCIDENT_COMMANDS.name: on_command,
    DUE_TICKS.name: on_tick,
}


async def send_tick(worker: Worker, partition: int, now: datetime) -> None:
    """A lost tick is sent again by the sweep after DueSchedule.TICK_LOST_S: say so, never raise."""
    try:
        await (await worker.produce(DUE_TICKS.name, None, tick_record(partition, now), partition))
    except Exception:  # noqa: BLE001 - a task's exception would go unseen
        log.exception("tick_send_failed", partition=partition)


def dead_letter_record(worker: Worker, batch: Batch, raw: bytes, message, error: Exception) -> None:
    record = dead_letter(raw=raw, topic=message.topic, partition=message.partition, offset=message.offset,
                         stage=STAGE, error=error, now=worker.clock.now())
    metrics.DEAD_LETTERS.labels(stage=STAGE, reason=reason_label(error)).inc()
    log.warning("dead_letter", topic=message.topic, offset=message.offset, fields=record.fields)
    batch.outbox.add(DEAD_LETTERS.name, message.topic, record.model_dump_json().encode())


async def incident_lifecycle(worker: Worker, stream) -> None:
    """The agent: inbound records in batches, each batch committed once (services/worker/outbox.py)."""
    settings = worker.settings
    async for events in stream.take_events(settings.worker_batch_max, within=settings.worker_batch_within_s):
        await handle_batch(worker, events)


async def handle_batch(worker: Worker, events: list[EventT]) -> None:
    """Every record of the batch in order, then one commit; a gap ends the batch and restarts the worker."""
    if worker.plans is not None and not worker.plans.ready.is_set():
        await worker.plans_ready()
    if worker.duty is not None and not worker.duty.caught_up.is_set():
        await worker.duty_ready()
    batch = Batch(table=worker.table, plan=worker.plan, schedule=worker.schedule, watch=worker.watch,
                  produce=worker.produce, address=worker.duty.address if worker.duty is not None else None)
    faults = worker.faults
    gap: tuple[TP, int, int] | None = None
    stall = False
    for event in events:
        tp, offset = event.message.tp, event.message.offset
        if faults.skip(tp, offset):
            continue
        expected = worker.watch.skipped(tp, offset, worker.app.consumer._committed_offset.get(tp))
        if expected is not None:  # handle nothing out of order: a fresh process reads from the gap on
            gap = (tp, expected, offset)
            break
        batch.taken.append(event)
        raw: bytes = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
        try:
            try:
                HANDLERS[event.message.topic](worker, batch, event, raw)
            except ReportRejected:
                # a report an API replica accepted under a revision this worker has not switched to yet (a type
                # or street it adds): the adoptions read to their end, and decided once more if the plan moved
                if event.message.topic != INCIDENTS_REPORTED.name or not await newer_plan(worker):
                    raise
                HANDLERS[event.message.topic](worker, batch, event, raw)
        except (ValidationError, ReportRejected) as exc:
            dead_letter_record(worker, batch, raw, event.message, exc)
        except Exception as exc:  # noqa: BLE001 - Faust acks a record whose agent raised: never lose it silently
            log.exception("incident_failed", offset=offset)
            dead_letter_record(worker, batch, raw, event.message, exc)
        if faults.stall_now():
            stall = True
            break
    try:
        await batch.commit()
    except Exception:  # noqa: BLE001 - nothing of the batch is committed: a fresh process reads it again
        log.exception("batch_send_failed", records=len(batch.taken))
        await worker.restart_in_place("batch_send_failed_restarting")
    if gap is not None:
        tp, expected, offset = gap
        await worker.app.consumer._thread.commit({tp: expected})  # Faust may have committed past the gap
        await worker.restart_in_place("records_skipped_restarting", partition=str(tp), expected=expected, got=offset)
    if stall:
        await faults.stall(worker.watch.processed)
