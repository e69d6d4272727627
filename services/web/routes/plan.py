"""The plan in force and its revisions (issue 24 item 3, 7.1.5 修订), as followed from yingji.plan.adoptions
(services/plan_book.py).

GET /plan: the version in force on this replica and every adoption with its status. POST /plan/adoptions: the
what-if page's 采纳此修订, as `yingji plan adopt` does it: the revision's files validated, its what-if run over
the last N days and its counts recorded, written against the version the page showed. POST /plan/rollbacks:
回退到此版本, as `yingji plan rollback`. Both answer 202 once the record is on the log: whether it took effect
is decided as every process reads it (compare-and-set in log order, playbooks/adoptions.py), and GET /plan's
history says so by its id (生效中, or 冲突未生效 when another adoption written against the same version came
first).
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse
from kafka.errors import KafkaError
from pydantic import ValidationError

from playbooks.adoptions import whatif_summary
from playbooks.plan import Plan
from playbooks.whatif import RevisionRefused, WhatIfReport, load_revision
from services.plan_book import RecordTooLarge, plan_texts, rollback_texts, with_changes
from services.web.answers import Refused, conflict, field_errors, invalid, responses
from services.web.auth import require
from services.web.publisher import BrokerUnavailable
from services.web.routes.whatif import ADOPT_WHATIF_DAYS, MAX_SPAN, in_force_texts, overlay, refused, replay_lock
from services.web.state import ClockDep, PlanDep, PublisherDep, SettingsDep
from topics.catalog import PLAN_ADOPTIONS
from topics.models import UserRecord
from topics.plan import AdoptionWritten, PlanAdopted, RollbackRequest, adoption_id

log = structlog.get_logger("yingji", stage="plan")
router = APIRouter(tags=["plan"])

# File, not Form as POST /whatif's: the document then says multipart/form-data, which is what is read
Files = Annotated[list[UploadFile], File(description="the revision's changed YAML files, each named as in "
                                                     "playbooks/data (e.g. grading.yaml); the rest are the plan in "
                                                     "force's")]
Reason = Annotated[str, Form(min_length=1, max_length=4000, description="why: the revision's grounds (7.1.5)")]
Expected = Annotated[str, Form(pattern=r"^[0-9a-f]{12}$", description=(
    "the version in force as the page showed it: the adoption takes effect only if it is still in force when "
    "the adoption is read"))]
Days = Annotated[int, Form(ge=1, le=MAX_SPAN.days, description="the what-if's period: the last N days (default "
                                                               f"{ADOPT_WHATIF_DAYS}, as the CLI's)")]
WRITTEN = {**responses(401, 403, 409, 413, 422, 503),
           202: {"model": AdoptionWritten, "description": "on the log; GET /plan's history says whether it took effect"}}


@router.get("/plan", responses=responses(401, 403))
async def plan_in_force(request: Request, plan: PlanDep, _: UserRecord = require("plan.read")) -> dict[str, Any]:
    book = request.app.state.plans
    current = book.current if book is not None else None
    # the version, the adoption and the history all read off the book here, at once: PlanDep was resolved
    # before the sign-in's check, which may wait, and a switch meanwhile paired an old version with the new
    # history (the page then showed the old version as in force after a rollback; seen in CI)
    return {
        "version": book.plan.version if book is not None else plan.version,
        "adoption": current.id if current is not None else None,  # None: the plan shipped with the service
        "shipped_version": book.shipped.version if book is not None else plan.version,
        "caught_up": book.ready.is_set() if book is not None else True,
        "history": book.history() if book is not None else [],
    }


def _check_in_force(request: Request, plan: Plan, expected: str) -> JSONResponse | None:
    """A 409 when the page's version is not the one in force here (another adoption came first: nothing is
    written); a 503 while this replica is still reading the adoptions (what is in force is not known yet)."""
    book = request.app.state.plans
    if book is not None and not book.ready.is_set():
        raise BrokerUnavailable("the plan's adoptions are still being read: what is in force is not known yet")
    if expected != plan.version:
        return conflict("previous_version", f"version {expected} is no longer in force: {plan.version} is "
                                            "(adopted since the page was loaded); nothing written")
    return None


async def _publish(publisher, record: PlanAdopted, who: UserRecord) -> AdoptionWritten:
    # not applied to the book here: the book folds the log in its order, and that order decides a conflict
    await publisher.send(PLAN_ADOPTIONS.name, record.id, record, what="the adoption")
    log.info("plan_adoption_written", adoption=record.id, version=record.version,
             previous_version=record.previous_version, rollback_of=record.rollback_of, by_role=who.role.value)
    return AdoptionWritten(id=record.id, version=record.version, previous_version=record.previous_version,
                           rollback_of=record.rollback_of, whatif=record.whatif)


@router.post("/plan/adoptions", status_code=202, response_model=AdoptionWritten, responses=WRITTEN)
async def adopt(request: Request, files: Files, reason: Reason, previous_version: Expected, plan: PlanDep,
                clock: ClockDep, settings: SettingsDep, publisher: PublisherDep, whatif_days: Days = ADOPT_WHATIF_DAYS,
                who: UserRecord = require("plan.adopt")) -> Any:
    """Adopt a revision: the files it changes over the plan in force's (as POST /whatif takes them), validated
    first (refused whole, each problem naming file, line and field); the version already in force refused
    (409); the what-if run over the last `whatif_days` days and its counts recorded in the adoption; written
    against `previous_version`, the version the page showed (409 when it is no longer in force here). 202: on
    the log. An adoption written against the same version by someone else a moment before is refused as it
    is read (GET /plan's history: status conflict) and the plan in force stays."""
    if not reason.strip():
        raise refused((("reason",), "say why the plan is revised (7.1.5): the reason is recorded with it"))
    if (stale := _check_in_force(request, plan, previous_version)) is not None:
        return stale
    now = clock.now()
    with tempfile.TemporaryDirectory(prefix="yingji-adopt-") as tmp:
        data = Path(tmp) / "data"
        base = in_force_texts(request)
        changed = await overlay(files, base, data)
        try:
            revised = await asyncio.to_thread(load_revision, data)
        except RevisionRefused as exc:
            raise refused(*((("files",), p.replace(str(data) + "/", "")) for p in exc.problems)) from None
        texts = plan_texts(data)
        # the version in force, or its own files sent again (over an adoption of before district_grid.yaml was a plan
        # file, the grid written out makes another version of the same texts): nothing to adopt
        if revised.version == plan.version or all(texts[name] == base.get(name) for name in changed):
            return conflict("files", f"the revision is version {revised.version}, the plan in force already: "
                                     "nothing to adopt")
    try:
        record = PlanAdopted(id=adoption_id(revised.version, now), version=revised.version, files=texts,
                             adopted_by=who.name, adopted_at=now, reason=reason, previous_version=plan.version)
        with_changes(record, plan, revised)  # what the topic takes, before the what-if's replay: asked again after it
    except ValidationError as exc:  # the texts too large for the topic
        return invalid(field_errors(exc.errors()), error="invalid adoption")
    except RecordTooLarge as exc:
        raise refused((("files",), str(exc))) from None
    busy = replay_lock(request)
    async with busy.lock:  # one replay at a time on a replica, as POST /whatif
        try:
            report = await asyncio.to_thread(_whatif, now - timedelta(days=whatif_days), now, settings.bootstrap,
                                             plan, revised, busy.baseline())
        except KafkaError as exc:
            raise BrokerUnavailable(f"the log could not be read for the what-if: {type(exc).__name__}") from None
    try:
        record = with_changes(record.model_copy(update={"whatif": whatif_summary(report)}), plan, revised)
    except RecordTooLarge as exc:
        raise refused((("files",), str(exc))) from None
    return await _publish(publisher, record, who)


def _whatif(start: datetime, end: datetime, bootstrap: str, in_force: Plan, revised: Plan,
            baseline: dict) -> WhatIfReport:
    from services.whatif import compare_parallel, read_history

    # workers=1: forking a threaded server is unsafe (services.whatif.run_whatif)
    return compare_parallel(read_history(bootstrap, start, end), in_force, revised, workers=1,
                            revised_source="采纳前推演", baseline=baseline)


@router.post("/plan/rollbacks", status_code=202, response_model=AdoptionWritten,
             responses={**WRITTEN, 404: {"model": Refused, "description": "no such version was ever in force"}})
async def rollback(request: Request, body: RollbackRequest, plan: PlanDep, clock: ClockDep, publisher: PublisherDep,
                   who: UserRecord = require("plan.adopt")) -> Any:
    """Go back to a version that was in force (an earlier adoption's texts, or the shipped plan's): an adoption
    like any other, written against `previous_version`. 404: no adoption of that version took effect and it is
    not the shipped one; 409: it is in force already, or `previous_version` no longer is."""
    if (stale := _check_in_force(request, plan, body.previous_version)) is not None:
        return stale
    if body.version == plan.version:
        return conflict("version", f"version {body.version} is the plan in force already: nothing to roll back")
    book = request.app.state.plans
    source = rollback_texts(book.ruling, body.version, book.shipped) if book is not None else None
    if source is None:
        raise HTTPException(status_code=404, detail=f"no version {body.version} was in force: GET /plan lists them")
    files, rollback_of = source
    now = clock.now()
    record = PlanAdopted(id=adoption_id(body.version, now), version=body.version, files=files, adopted_by=who.name,
                         adopted_at=now, reason=body.reason, previous_version=plan.version, rollback_of=rollback_of)
    target = book.plans.cache.get(body.version)  # a recent version is loaded already; else from its texts
    try:
        record = await asyncio.to_thread(with_changes, record, plan, target)
    except RecordTooLarge as exc:  # a version written before the check, its texts larger than the topic now takes
        raise refused((("version",), str(exc))) from None
    return await _publish(publisher, record, who)
