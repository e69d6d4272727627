"""/drills/programme: the drill programme's register (7.2.1–7.2.3), per unit and year, and what changes it:
a drill planned, a plan's revision recorded, an improvement item recorded and closed. Each change is a record
on the drill programme topic (topics/programme.py); the register is computed on each request from those
records and the drill runs the drill book holds (playbooks/drill/programme.py). Thin: parse, check, publish,
answer. Mounted before /drills/{run_id}, which would take `programme` for a run id.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from playbooks.drill.programme import (
    BEIJING,
    adoption_revisions,
    Register,
    improvement_problems,
    planning_problems,
    plan_names,
    register,
    revision_unit,
    year_of,
)
from services.web.answers import conflict, invalid, responses
from services.web.auth import require, require_page, wants_html
from services.web.permissions import can
from services.web.routes.duty import bad_query
from services.web.routes.params import RecordIdParam
from services.web.state import ClockDep, DrillsConfigDep, DrillsDep, PagesDep, PlanDep, ProgrammeDep, PublisherDep
from topics.catalog import DRILL_PROGRAMME
from topics.models import UserRecord
from topics.programme import (
    DrillPlanned,
    DrillPlanRequest,
    ImprovementClosed,
    ImprovementCloseRequest,
    ImprovementRecorded,
    ImprovementRequest,
    PlanRevised,
    ProgrammeRecord,
    RevisionRequest,
)

CLOSE_SKEW = timedelta(minutes=5)
log = structlog.get_logger("yingji", stage="programme")
router = APIRouter(prefix="/drills/programme", tags=["drills"])
YEAR = Annotated[int | None, Query(ge=2000, le=2099, description="the year (Beijing); absent: this year")]
UNIT = Annotated[str | None, Query(max_length=64, description="a unit's id (units.yaml): its register alone")]
PAGE = {200: {"content": {"application/json": {}, "text/html": {}},
              "description": "the register as JSON; a browser (Accept: text/html), the page"},
        303: {"description": "a browser not signed in: to /login, and back"}}


@router.get("", response_model=Register, responses={**responses(401, 403, 422), **PAGE})
async def programme(request: Request, plan: PlanDep, clock: ClockDep, drills: DrillsDep, book: ProgrammeDep,
                    config: DrillsConfigDep, pages: PagesDep, year: YEAR = None, unit: UNIT = None,
                    who: UserRecord | Response = require_page("incident.read")) -> Any:
    """Per unit, for the year: 7.2.2's expectations and whether each is met, the drills planned and run (each
    run's score), the improvement items of the failed expectations (who, by when; overdue ones flagged), and
    the plans revised in the year without a validation drill (7.2.1), flagged. Nothing is stored by asking."""
    if isinstance(who, Response):
        return who
    now = clock.now()
    if unit is not None and unit not in plan.units:
        raise bad_query("unit", f"no unit {unit!r} in the plan (units.yaml ids, e.g. district_emergency_office)")
    year = year or year_of(now)
    plans = getattr(request.app.state, "plans", None)  # the general plan's revisions adopted live count (7.2.1)
    # the folded ones only (plans.ruling): one read but not yet ruled on may be a conflict, never a revision
    adopted = adoption_revisions(list(plans.ruling.records), config, refused=plans.refused) if plans is not None else []
    reg = register(records=[*book.records, *adopted], runs=list(drills.runs.values()), plan=plan, config=config,
                   year=year, now=now, unit_id=unit)
    if wants_html(request):
        return pages.render(
            request, "drill_programme.html", user=who, reg=reg, year=year,
            plan_units=[(u.id, u.name) for u in plan.units.values()], plans=sorted(plan_names(plan).items()),
            can_write=can(who, "drill.run"), local=lambda t: t.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if t else "",
            day=lambda t: t.astimezone(BEIJING).strftime("%Y-%m-%d") if t else "")
    return reg


async def _publish(publisher, book, body) -> None:
    record = ProgrammeRecord(id=body.id, body=body)
    key = body.item_id if isinstance(body, ImprovementClosed) else body.id
    await publisher.send(DRILL_PROGRAMME.name, key, record, what="the programme record")
    book.apply(record)  # acknowledged (acks=all): shown at once here; read back later, it is the same record


@router.post("/planned", status_code=201, response_model=DrillPlanned, responses=responses(401, 403, 422, 503))
async def plan_drill(body: DrillPlanRequest, plan: PlanDep, clock: ClockDep, publisher: PublisherDep,
                     book: ProgrammeDep, user: UserRecord = require("drill.run")) -> Any:
    """A drill in a unit's programme for a year (7.2.2): 综合 or 单项, its scenario and day when known, and the
    plan it validates when it is a validation drill (7.2.1). A run carries it out by naming it (POST /drills
    `planned_id`)."""
    if problems := planning_problems(unit_id=body.unit_id, validates=body.validates, plan=plan):
        return invalid([{"field": f, "message": m} for f, m in problems], error="invalid planned drill")
    record = DrillPlanned(id=f"planned-{uuid.uuid4().hex[:16]}", **body.model_dump(), planned_by=user.name,
                          planned_at=clock.now())
    await _publish(publisher, book, record)
    log.info("drill_planned", planned_id=record.id, unit=record.unit_id, year=record.year, kind=record.kind.value)
    return record


@router.post("/revisions", status_code=201, response_model=PlanRevised, responses=responses(401, 403, 422, 503))
async def record_revision(body: RevisionRequest, plan: PlanDep, config: DrillsConfigDep, clock: ClockDep,
                          publisher: PublisherDep, book: ProgrammeDep, user: UserRecord = require("drill.run")) -> Any:
    """A plan revised (7.1.5): a special plan of 8.3 by its id, or `general`. Its unit (the plan's 牵头编制部门,
    区应急办 for the general plan) then owes a validation drill in the revision's year (7.2.1)."""
    unit = revision_unit(plan, config, body.plan_id)
    if unit is None:
        return invalid([{"field": "plan_id", "message": f"no plan {body.plan_id!r}: a special plan's id of 8.3 "
                                                        "(command.yaml) or 'general'"}], error="invalid revision")
    record = PlanRevised(id=f"revision-{uuid.uuid4().hex[:16]}", **body.model_dump(), unit_id=unit,
                         recorded_by=user.name, recorded_at=clock.now())
    await _publish(publisher, book, record)
    log.info("plan_revised", revision_id=record.id, plan_id=record.plan_id, unit=unit)
    return record


@router.post("/improvements", status_code=201, response_model=ImprovementRecorded,
             responses=responses(401, 403, 422, 503))
async def record_improvement(body: ImprovementRequest, plan: PlanDep, clock: ClockDep, drills: DrillsDep,
                             publisher: PublisherDep, book: ProgrammeDep, user: UserRecord = require("drill.run")) -> Any:
    """An improvement item of a done run's evaluation (评估总结和改进, 7.2.3): who (a unit, and a person when
    named) does what by when, answering one of the run's failed expectations (`incident/what`) or the run."""
    run = await drills.read(body.run_id)
    problems = improvement_problems(run=run, run_id=body.run_id, expectation=body.expectation, unit_id=body.unit_id,
                                    plan=plan)
    if problems:
        return invalid([{"field": f, "message": m} for f, m in problems], error="invalid improvement item")
    record = ImprovementRecorded(id=f"improve-{uuid.uuid4().hex[:16]}", **body.model_dump(), recorded_by=user.name,
                                 recorded_at=clock.now())
    await _publish(publisher, book, record)
    log.info("improvement_recorded", item_id=record.id, run_id=record.run_id, unit=record.unit_id)
    return record


@router.post("/improvements/{item_id}/close", response_model=ImprovementClosed,
             responses=responses(401, 403, 404, 409, 422, 503))
async def close_improvement(item_id: RecordIdParam, body: ImprovementCloseRequest, publisher: PublisherDep,
                            book: ProgrammeDep, clock: ClockDep, user: UserRecord = require("drill.run")) -> Any:
    """An improvement item done: on time by its due time, late after it (the register says which)."""
    if book.item(item_id) is None:
        await book.read_to_end()
    if book.item(item_id) is None:
        raise HTTPException(status_code=404, detail=f"item_id: no improvement item {item_id!r}")
    if (done := book.closed(item_id)) is not None:
        return conflict("item_id", f"closed already, at {done.closed_at.isoformat()} by {done.closed_by}")
    item = book.item(item_id)
    # done between its recording and now (a few minutes' clock skew allowed): a time before it was recorded, or
    # one to come, would make a late item look done on time (7.2.3)
    if not item.recorded_at <= body.closed_at <= clock.now() + CLOSE_SKEW:
        return invalid([{"field": "closed_at", "message": f"must be between the item's recording "
                                                          f"({item.recorded_at.isoformat()}) and now"}],
                       error="closed_at out of range")
    record = ImprovementClosed(id=f"{item_id}.closed", item_id=item_id, closed_at=body.closed_at, closed_by=user.name,
                               note=body.note)
    await _publish(publisher, book, record)
    log.info("improvement_closed", item_id=item_id)
    return record
