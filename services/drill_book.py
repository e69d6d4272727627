"""Every drill run, followed from the drill runs topic (topics/drills.py), and the runs this API process
runs. A run started on one replica is shown, and stopped, on any: what a replica answers about a run is
the latest record of it on the log, and a stop is a record the runner reads and obeys.

The runner records the run when it starts (before the 202), about once a second while it moves and every
HEARTBEAT_S when it does not, and when it ends (done, failed or stopped). A runner that dies leaves its
run `running` on the log: one whose records stopped for LOST_AFTER_S is shown `runner_lost`, and a stop
asked of it on any replica is recorded there and then (no replica takes a lost run over: its drill's
remaining injects are never sent, and the run is not scored)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

import structlog
from aiokafka import TopicPartition
from pydantic import ValidationError

from playbooks.drill.evaluation import to_markdown
from playbooks.drill.scenario import incident_id
from services.clock import Clock
from services.drill_runner import DrillRun
from services.following import ReadProgress, follow_from_start
from topics.catalog import DRILL_RUNS
from topics.drills import DrillRunEvent, DrillRunRecorded, DrillRunStatus, DrillStopRequested

log = structlog.get_logger("yingji", stage="drill")
RECORD_EVERY_S = 1.0  # a running drill's progress on the log at most this often
HEARTBEAT_S = 10.0  # and at least this often, moving or not: its runner is alive
LOST_AFTER_S = 3 * HEARTBEAT_S  # a running drill with no record for this long has lost its runner
# a record of the run -> acknowledged by the broker (the API's Publisher.send)
Send = Callable[[DrillRunEvent], Awaitable[object]]


class DrillBook:
    def __init__(self, runner: str = "") -> None:
        self.runner = runner  # this process, as its records name it
        self.runs: dict[str, DrillRunRecorded] = {}
        self.stops: dict[str, DrillStopRequested] = {}
        self.tasks: dict[str, asyncio.Task] = {}  # run id -> the task running it, in this process
        self.caught_up = asyncio.Event()
        self.progress = ReadProgress()

    def apply(self, event: DrillRunEvent) -> None:
        body = event.body
        if isinstance(body, DrillStopRequested):
            self.stops.setdefault(body.run_id, body)
            task = self.tasks.get(body.run_id)
            if task is not None and not task.done():
                log.info("drill_stop", run_id=body.run_id, by=body.by)
                task.cancel()  # ours: the runner records it stopped
            return
        self.runs[body.run_id] = body  # one partition, in order: the latest record is the run's state

    def apply_raw(self, topic: str, value: bytes, offset: int) -> None:  # noqa: ARG002 - follow_from_start's apply
        try:
            self.apply(DrillRunEvent.model_validate_json(value))
        except (ValidationError, ValueError) as exc:
            log.error("bad_drill_run_record", offset=offset, error=type(exc).__name__)

    async def follow(self, bootstrap: str) -> None:
        await follow_from_start(bootstrap, [TopicPartition(DRILL_RUNS.name, 0)], self.apply_raw, self.caught_up,
                                "drills", self.progress)

    async def read(self, run_id: str) -> DrillRunRecorded | None:
        """The run as the log has it; not known here, looked up again once the topic is read to its end."""
        run = self.runs.get(run_id)
        if run is None and self.progress.consumer is not None and await self.progress.read_to_end():
            run = self.runs.get(run_id)
        return run

    def runner_lost(self, rec: DrillRunRecorded, now: datetime) -> bool:
        """Running on the log, but nobody runs it: its runner fell silent, or it was this process before
        a restart (the same name, no task here)."""
        if rec.status is not DrillRunStatus.RUNNING:
            return False
        if rec.runner == self.runner and rec.run_id not in self.tasks:
            return True
        return (now - rec.at).total_seconds() > LOST_AFTER_S

    def answer(self, rec: DrillRunRecorded, *, now: datetime, full: bool = True) -> dict:
        """As GET /drills/{run_id} answers it."""
        stop = self.stops.get(rec.run_id)
        out = {
            "run_id": rec.run_id, "scenario": rec.scenario, "name": rec.name, "speed": rec.speed,
            "status": rec.status.value, "sent": rec.sent, "total": rec.total,
            "simulated_now": rec.simulated_now.isoformat() if rec.simulated_now else None,
            "started_by": rec.started_by, "started_at": rec.started_at.isoformat(), "runner": rec.runner,
            "recorded_at": rec.at.isoformat(), "error": rec.error,
            "stop_requested_by": stop.by if stop else None, "runner_lost": self.runner_lost(rec, now),
            "planned_id": rec.planned_id,
        }
        if full:
            out |= {"evaluation": rec.evaluation, "markdown": rec.markdown}
        return out


def snapshot(run: DrillRun, *, n: int, runner: str, at: datetime, stopped_by: str | None = None) -> DrillRunRecorded:
    scenario = run.scenario
    return DrillRunRecorded(
        id=f"{run.run_id}.{n}", run_id=run.run_id, scenario=scenario.id, name=scenario.name[:200], speed=run.speed,
        started_by=run.started_by, started_at=datetime.fromtimestamp(run.started_wall, timezone.utc), runner=runner,
        status=DrillRunStatus(run.status), sent=run.sent, total=run.total, start=scenario.start, end=scenario.end,
        simulated_now=datetime.fromisoformat(run.sim_now) if run.sim_now else None,
        incidents=sorted({incident_id(scenario, inj.incident, run.run_id) for inj in scenario.injects}),
        error=run.error[:4000] if run.error else None, stopped_by=stopped_by, planned_id=run.planned_id,
        evaluation=run.evaluation.model_dump(mode="json") if run.evaluation else None,
        markdown=to_markdown(run.evaluation) if run.evaluation else None, at=at)


async def run_recorded(run: DrillRun, work: Awaitable[None], *, book: DrillBook, send: Send, clock: Clock) -> None:
    """`work` (run_drill of `run`) in this process, its progress and its end recorded on the log; a stop
    read from the log cancels it. The first record was written by the caller (n = 1)."""
    counter = itertools.count(2)
    task = asyncio.ensure_future(work)
    book.tasks[run.run_id] = task
    if run.run_id in book.stops:  # asked to stop before it began here
        task.cancel()
    last, last_at = None, asyncio.get_running_loop().time()
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=RECORD_EVERY_S)
            seen = (run.status, run.sent, run.sim_now)
            quiet = asyncio.get_running_loop().time() - last_at >= HEARTBEAT_S
            if not task.done() and (seen != last or quiet):
                last, last_at = seen, asyncio.get_running_loop().time()
                with contextlib.suppress(Exception):  # progress is shown when it can be; the end is retried
                    await send(DrillRunEvent.of(snapshot(run, n=next(counter), runner=book.runner, at=clock.now())))
    except asyncio.CancelledError:  # the process stops: its run stops with it
        task.cancel()
        raise
    finally:
        book.tasks.pop(run.run_id, None)
    stop = book.stops.get(run.run_id)
    if task.cancelled():
        run.status = DrillRunStatus.STOPPED.value
    end = snapshot(run, n=next(counter), runner=book.runner, at=clock.now(),
                   stopped_by=stop.by if stop and task.cancelled() else None)
    for _ in range(30):  # the end of a run is worth waiting for the broker
        try:
            await send(DrillRunEvent.of(end))
            return
        except Exception:  # noqa: BLE001 - BrokerUnavailable: again in a second
            await asyncio.sleep(1)
    log.error("drill_end_not_recorded", run_id=run.run_id, status=run.status)
