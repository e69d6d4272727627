"""Warnings (预警, issue 20): drafted by the issuing unit, approved (橙/红: 区领导, then 市应急办), issued,
adjusted by 区应急办 with the 区应急委 leader's approval, lifted by the issuer (plan 3.2). Each command is
checked against the plan's rules (playbooks/warning/rules.py) on the warning read back, one at a time:
kept (its events on the warnings topic, a notice to every unit it tells) or refused (422, one line
per field, with the section), nothing written."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from fastapi import APIRouter, HTTPException

from playbooks.warning.rules import WarningState
from services.warnings.book import WarningBook, apply_command
from services.web.answers import invalid, responses
from services.web.auth import require
from services.web.publisher import BrokerUnavailable
from services.web.state import ClockDep, DutyDep, PlanDep, PublisherDep, WarningsConfigDep, WarningsDep
from topics.models import UserRecord
from topics.requests import (
    WarningActRequest,
    WarningAdjustRequest,
    WarningAnswer,
    WarningApprovalAnswer,
    WarningApproveRequest,
    WarningDraftRequest,
    WarningStepAnswer,
)
from topics.warnings import WarningCommand, WarningContent

log = structlog.get_logger("yingji", stage="api")
router = APIRouter(tags=["warnings"])
WRITE = responses(401, 403, 404, 413, 422, 503)


def answer(book: WarningBook, state: WarningState, config) -> WarningAnswer:
    lv = config.level(state.content.level)
    return WarningAnswer(
        warning_id=state.warning_id, status=state.status, level=state.content.level, level_name=f"{lv.grade}{lv.name}",
        drill=state.drill, proposer=state.proposer, content=state.content,
        approvals=[WarningApprovalAnswer(id=k, by=by, approver=approver, at=at) for k, (by, approver, at) in state.approvals.items()],
        told=state.told,
        history=[WarningStepAnswer(seq=e.seq, kind=e.kind, at=e.at, by=e.by, level=e.level, status=e.status,
                                   reasons=e.reasons, tasks=e.tasks, told=e.told) for e in book.history(state.warning_id)])


def read_back(book: WarningBook) -> None:
    if not book.caught_up.is_set():
        raise BrokerUnavailable("the warnings are still being read back from the broker")


async def command(book: WarningBook, cmd: WarningCommand, config, plan, publisher, duty) -> Any:
    read_back(book)
    async with book.writing:
        if cmd.kind != "draft" and book.state(cmd.warning_id) is None:
            raise HTTPException(404, f"no warning {cmd.warning_id}")

        async def send(topic: str, key: str, record: Any, what: str) -> None:
            await publisher.send(topic, key, record, what=what)

        result = await apply_command(book, cmd, config, plan, send, address=duty.address if duty.caught_up.is_set() else None)
    if result.refused:
        return invalid([{"field": line.split(":")[0], "message": line} for line in result.refused],
                       error=f"the warning's {cmd.kind} is refused")
    return answer(book, result.state, config)


def _cmd(kind: str, warning_id: str, user: UserRecord, unit: str, clock, **kw) -> WarningCommand:
    return WarningCommand(id=f"{warning_id}.{kind}.{uuid.uuid4().hex[:12]}", warning_id=warning_id, kind=kind,
                          by=user.name, unit=unit, at=clock.now(), **kw)


@router.post("/warnings", status_code=201, response_model=WarningAnswer, responses=WRITE)
async def draft_warning(req: WarningDraftRequest, book: WarningsDep, config: WarningsConfigDep, plan: PlanDep,
                        clock: ClockDep, publisher: PublisherDep, duty: DutyDep,
                        user: UserRecord = require("warning.issue")) -> Any:
    """Draft a warning (3.2.4's items): a 蓝/黄 one by its HQ or department, an 橙/红 one by 区应急办."""
    wid = req.warning_id or f"w-{uuid.uuid4().hex[:16]}"
    if book.state(wid) is not None:
        return invalid([{"field": "warning_id", "message": f"{wid} exists"}], error="the warning's draft is refused")
    return await command(book, _cmd("draft", wid, user, req.unit, clock, content=req.content, drill=req.drill),
                         config, plan, publisher, duty)


@router.post("/warnings/{warning_id}/approvals", response_model=WarningAnswer, responses=WRITE)
async def approve_warning(warning_id: str, req: WarningApproveRequest, book: WarningsDep, config: WarningsConfigDep,
                          plan: PlanDep, clock: ClockDep, publisher: PublisherDep, duty: DutyDep,
                          user: UserRecord = require("warning.approve")) -> Any:
    """An approval of an 橙/红 warning, with who approved (3.2.3(1)): 区领导 first, then 市应急办."""
    return await command(book, _cmd("approve", warning_id, user, req.unit, clock, approval=req.approval,
                                    approver=req.approver), config, plan, publisher, duty)


@router.post("/warnings/{warning_id}/issue", response_model=WarningAnswer, responses=WRITE)
async def issue_warning(warning_id: str, req: WarningActRequest, book: WarningsDep, config: WarningsConfigDep,
                        plan: PlanDep, clock: ClockDep, publisher: PublisherDep, duty: DutyDep,
                        user: UserRecord = require("warning.issue")) -> Any:
    """Issue it: the units and streets it names are told, its measures and publications become tasks."""
    return await command(book, _cmd("issue", warning_id, user, req.unit, clock, reason=req.reason),
                         config, plan, publisher, duty)


@router.post("/warnings/{warning_id}/adjust", response_model=WarningAnswer, responses=WRITE)
async def adjust_warning(warning_id: str, req: WarningAdjustRequest, book: WarningsDep, config: WarningsConfigDep,
                         plan: PlanDep, clock: ClockDep, publisher: PublisherDep, duty: DutyDep,
                         user: UserRecord = require("warning.approve")) -> Any:
    """3.2.6: 区应急办 changes the level with the 区应急委 leader's approval."""
    content = WarningContent(level=req.level, measures=req.measures, area=req.area)
    return await command(book, _cmd("adjust", warning_id, user, req.unit, clock, content=content, approval=req.approval,
                                    approver=req.approver, reason=req.reason), config, plan, publisher, duty)


@router.post("/warnings/{warning_id}/lift", response_model=WarningAnswer, responses=WRITE)
async def lift_warning(warning_id: str, req: WarningActRequest, book: WarningsDep, config: WarningsConfigDep,
                       plan: PlanDep, clock: ClockDep, publisher: PublisherDep, duty: DutyDep,
                       user: UserRecord = require("warning.issue")) -> Any:
    """3.2.7: the issuer lifts it at once; everyone told of the issue is told."""
    return await command(book, _cmd("lift", warning_id, user, req.unit, clock, reason=req.reason),
                         config, plan, publisher, duty)


@router.get("/warnings", response_model=list[WarningAnswer], responses=responses(401, 403))
async def list_warnings(book: WarningsDep, config: WarningsConfigDep,
                        user: UserRecord = require("warning.read")) -> list[WarningAnswer]:
    """Every warning, issued ones first, newest first."""
    states = sorted(book.all(), key=lambda s: (s.status.value != "issued", -(s.seq)))
    return [answer(book, s, config) for s in states]


@router.get("/warnings/{warning_id}", response_model=WarningAnswer, responses=responses(401, 403, 404))
async def get_warning(warning_id: str, book: WarningsDep, config: WarningsConfigDep,
                      user: UserRecord = require("warning.read")) -> Any:
    state = book.state(warning_id)
    if state is None:
        raise HTTPException(404, f"no warning {warning_id}")
    return answer(book, state, config)
