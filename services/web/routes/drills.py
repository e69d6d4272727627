"""/drills: replay a scenario onto the running service, marked as a drill, and read its runs."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from playbooks.drill.scenario import ScenarioError, parse_scenario
from services.drill_runner import DrillRun, new_run_id, run_drill
from services.web.answers import invalid, responses
from services.web.auth import require
from services.web.publisher import BrokerUnavailable
from services.web.routes.params import RunId
from services.web.state import DrillsDep, DrillTasksDep, PlanDep, PublisherDep, ViewDep, WarningsConfigDep, WarningsDep
from topics.models import UserRecord

log = structlog.get_logger("yingji", stage="api")
router = APIRouter(prefix="/drills", tags=["drills"])


class DrillRequest(BaseModel):
    """POST /drills: a scenario (YAML text, playbooks/drills/README.md) replayed at `speed`× real time."""

    model_config = {"extra": "forbid"}
    scenario: str = Field(max_length=2_000_000)
    speed: float = Field(default=60.0, gt=0, le=100_000)


@router.post("", status_code=202, responses=responses(401, 403, 413, 422, 503))
async def start_drill(req: DrillRequest, plan: PlanDep, view: ViewDep, publisher: PublisherDep, drills: DrillsDep,
                      tasks: DrillTasksDep, warnings: WarningsDep, warnings_config: WarningsConfigDep,
                      user: UserRecord = require("drill.run")) -> Any:
    """Replay a scenario onto the running service, marked as a drill; score it when it ends."""
    try:
        scenario = parse_scenario(req.scenario, source="scenario", plan=plan)
    except ScenarioError as exc:
        return invalid([{"field": p.field, "line": p.line, "message": p.message} for p in exc.problems],
                       error="invalid scenario")
    if publisher.producer is None:
        raise BrokerUnavailable("broker not reachable yet")
    run = DrillRun(run_id=new_run_id(), scenario=scenario, speed=req.speed, started_by=user.name)
    drills[run.run_id] = run
    task = asyncio.create_task(run_drill(run, plan=plan, producer=publisher.producer, view=view,
                                          warnings=warnings, warnings_config=warnings_config))
    tasks.add(task)  # the app's lifespan cancels what is still running when it stops
    task.add_done_callback(tasks.discard)
    log.info("drill_started", run_id=run.run_id, scenario=scenario.id, speed=req.speed, by=user.name)
    return {"run_id": run.run_id, "status": run.status}


@router.get("", responses=responses(401, 403))
async def list_drills(drills: DrillsDep, _: UserRecord = require("incident.read")) -> dict[str, Any]:
    return {"drills": [{k: v for k, v in d.as_json().items() if k not in ("evaluation", "markdown")}
                       for d in drills.values()]}


@router.get("/{run_id}", responses=responses(401, 403, 404))
async def get_drill(run_id: RunId, drills: DrillsDep, _: UserRecord = require("incident.read")) -> dict[str, Any]:
    run = drills.get(run_id)
    if run is None:
        raise HTTPException(status_code=404, detail=f"run_id: no drill run {run_id!r}")
    return run.as_json()
