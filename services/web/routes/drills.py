"""/drills: replay a scenario onto the running service, marked as a drill; read its runs and stop one.

A run is run by the API process that started it, and recorded on the drill runs topic (services/drill_book.py):
every replica answers about every run from there, and a stop asked on any replica is a record the runner obeys."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import structlog
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from playbooks.drill.programme import link_problems
from playbooks.drill.scenario import ScenarioError, parse_scenario
from services.drill_book import run_recorded, snapshot
from services.drill_runner import DrillRun, new_run_id, run_drill
from services.web.answers import conflict, invalid, responses
from services.web.auth import require
from services.web.publisher import BrokerUnavailable
from services.web.routes.params import RunId
from services.web.state import (
    ClockDep,
    DrillsDep,
    DrillTasksDep,
    PlanDep,
    ProgrammeDep,
    PublisherDep,
    ViewDep,
    WarningsConfigDep,
    WarningsDep,
)
from topics.catalog import DRILL_RUNS
from topics.drills import DrillRunEvent, DrillRunStatus, DrillStopRequested
from topics.models import UserRecord

log = structlog.get_logger("yingji", stage="api")
router = APIRouter(prefix="/drills", tags=["drills"])


class DrillRequest(BaseModel):
    """POST /drills: a scenario (YAML text, playbooks/drills/README.md) replayed at `speed`× real time."""

    model_config = {"extra": "forbid"}
    scenario: str = Field(max_length=2_000_000)
    speed: float = Field(default=60.0, gt=0, le=100_000)
    planned_id: str | None = Field(default=None, max_length=120, pattern=r"^[A-Za-z0-9._:\-]+$",
                                   description="the planned drill (POST /drills/programme/planned) this run carries "
                                               "out: its score counts in the unit's drill programme (7.2.2)")


@router.post("", status_code=202, responses=responses(401, 403, 413, 422, 503))
async def start_drill(req: DrillRequest, plan: PlanDep, view: ViewDep, publisher: PublisherDep, drills: DrillsDep,
                      tasks: DrillTasksDep, warnings: WarningsDep, warnings_config: WarningsConfigDep, clock: ClockDep,
                      programme: ProgrammeDep, user: UserRecord = require("drill.run")) -> Any:
    """Replay a scenario onto the running service, marked as a drill; score it when it ends. With `planned_id`,
    the run carries out that planned drill (of the scenario's kind, and its scenario if it names one)."""
    try:
        scenario = parse_scenario(req.scenario, source="scenario", plan=plan)
    except ScenarioError as exc:
        return invalid([{"field": p.field, "line": p.line, "message": p.message} for p in exc.problems],
                       error="invalid scenario")
    if req.planned_id is not None:
        if programme.planned(req.planned_id) is None:
            await programme.read_to_end()  # planned on another replica a moment ago
        problems = link_problems(programme.planned(req.planned_id), planned_id=req.planned_id, scenario_id=scenario.id,
                                 scenario_kind=scenario.kind)
        if problems:
            return invalid([{"field": f, "message": m} for f, m in problems], error="invalid planned drill")
    if publisher.producer is None:
        raise BrokerUnavailable("broker not reachable yet")
    run = DrillRun(run_id=new_run_id(), scenario=scenario, speed=req.speed, started_by=user.name,
                   planned_id=req.planned_id)

    async def send(event: DrillRunEvent) -> object:
        return await publisher.send(DRILL_RUNS.name, event.run_id, event, what="the drill run")

    # on the log before the 202: any replica asked about the run knows it
    await send(DrillRunEvent.of(snapshot(run, n=1, runner=drills.runner, at=clock.now())))
    work = run_drill(run, plan=plan, producer=publisher.producer, view=view, warnings=warnings,
                     warnings_config=warnings_config)
    task = asyncio.create_task(run_recorded(run, work, book=drills, send=send, clock=clock))
    tasks.add(task)  # the app's lifespan cancels what is still running when it stops
    task.add_done_callback(tasks.discard)
    log.info("drill_started", run_id=run.run_id, scenario=scenario.id, speed=req.speed, by=user.name)
    return {"run_id": run.run_id, "status": run.status}


@router.get("", responses=responses(401, 403))
async def list_drills(drills: DrillsDep, clock: ClockDep, _: UserRecord = require("incident.read")) -> dict[str, Any]:
    now = clock.now()
    return {"drills": [drills.answer(rec, now=now, full=False) for rec in drills.runs.values()]}


@router.get("/{run_id}", responses=responses(401, 403, 404))
async def get_drill(run_id: RunId, drills: DrillsDep, clock: ClockDep,
                    _: UserRecord = require("incident.read")) -> dict[str, Any]:
    rec = await drills.read(run_id)
    if rec is None:
        raise HTTPException(status_code=404, detail=f"run_id: no drill run {run_id!r}")
    return drills.answer(rec, now=clock.now())


@router.post("/{run_id}/stop", status_code=202, responses=responses(401, 403, 404, 409, 503))
async def stop_drill(run_id: RunId, drills: DrillsDep, publisher: PublisherDep, clock: ClockDep,
                     user: UserRecord = require("drill.run")) -> Any:
    """Stop a running drill, whichever API process runs it: the stop goes on the log, its runner stops it
    and records it `stopped` (GET /drills/{run_id} says when). A run whose runner is lost is recorded
    stopped here and now."""
    rec = await drills.read(run_id)
    if rec is None:
        raise HTTPException(status_code=404, detail=f"run_id: no drill run {run_id!r}")
    if rec.status is not DrillRunStatus.RUNNING:
        return conflict("run_id", f"the drill run {run_id!r} is {rec.status.value} already")
    now, tag = clock.now(), uuid.uuid4().hex[:12]
    stop = DrillStopRequested(id=f"{run_id}.stop.{tag}", run_id=run_id, by=user.name, at=now)
    await publisher.send(DRILL_RUNS.name, run_id, DrillRunEvent.of(stop), what="the stop")
    if drills.runner_lost(rec, now):
        ended = rec.model_copy(update={"id": f"{run_id}.lost.{tag}", "status": DrillRunStatus.STOPPED, "at": now,
                                       "stopped_by": user.name, "error": f"its runner {rec.runner} was lost"})
        await publisher.send(DRILL_RUNS.name, run_id, DrillRunEvent.of(ended), what="the stop")
        log.info("drill_stopped_runner_lost", run_id=run_id, by=user.name, runner=rec.runner)
        return {"run_id": run_id, "status": "stopped", "runner": rec.runner}
    log.info("drill_stop_requested", run_id=run_id, by=user.name, runner=rec.runner)
    return {"run_id": run_id, "status": "stopping", "runner": rec.runner}
