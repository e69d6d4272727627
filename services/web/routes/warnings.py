"""Warnings (预警, issue 20): drafted by the issuing unit, approved (橙/红: 区领导, then 市应急办), issued,
adjusted by 区应急办 with the 区应急委 leader's approval, lifted by the issuer (plan 3.2). Each command is
checked against the plan's rules (playbooks/warning/rules.py) on the warning read back, one at a time:
kept (its events on the warnings topic, a notice to every unit it tells) or refused (422, one line
per field, with the section), nothing written."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from playbooks.warning.cap import CapError, format_time, parse, to_xml
from playbooks.warning.messages import content_of, messages

from playbooks.warning.rules import WarningState
from services.warnings.book import WarningBook, WarningConflict, apply_command
from services.web.answers import conflict, invalid, responses
from services.web.auth import require
from services.web.publisher import BrokerUnavailable
from services.web.state import ClockDep, DutyDep, PlanDep, PublisherDep, SettingsDep, WarningsConfigDep, WarningsDep
from topics.models import UserRecord
from topics.requests import (
    WarningActRequest,
    WarningAdjustRequest,
    WarningAnswer,
    WarningApprovalAnswer,
    WarningApproveRequest,
    WarningDraftRequest,
    WarningConfirmRequest,
    WarningStepAnswer,
    WarningTaskAnswer,
)
from topics.warnings import WarningCommand, WarningContent

log = structlog.get_logger("yingji", stage="api")
router = APIRouter(tags=["warnings"])
# path parameters as the records take them: anything else is a 422 naming it, never a record that fails to build
WarningIdParam = Annotated[str, Path(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9._:\-]+$")]
TaskIdParam = Annotated[str, Path(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9._:\-]+$")]
ATOM_NS = "http://www.w3.org/2005/Atom"
WRITE = responses(401, 403, 404, 409, 413, 422, 503)


def answer(book: WarningBook, state: WarningState, config) -> WarningAnswer:
    lv = config.level(state.content.level)
    return WarningAnswer(
        warning_id=state.warning_id, status=state.status, level=state.content.level, level_name=f"{lv.grade}{lv.name}",
        drill=state.drill, proposer=state.proposer, content=state.content,
        approvals=[WarningApprovalAnswer(id=k, by=by, approver=approver, at=at) for k, (by, approver, at) in state.approvals.items()],
        told=state.told,
        tasks=[WarningTaskAnswer(task=t, done_at=state.done[t.id][1] if t.id in state.done else None,
                                 done_by=state.done[t.id][0] if t.id in state.done else None) for t in state.tasks.values()],
        history=[WarningStepAnswer(seq=e.seq, kind=e.kind, at=e.at, by=e.by, level=e.level, status=e.status,
                                   reasons=e.reasons, tasks=e.tasks, told=e.told) for e in book.history(state.warning_id)])


def read_back(book: WarningBook) -> None:
    if not book.caught_up.is_set():
        raise BrokerUnavailable("the warnings are still being read back from the broker")


async def command(book: WarningBook, cmd: WarningCommand, config, plan, publisher, duty) -> Any:
    read_back(book)
    async with book.writing:
        # checked against the warning as the log has it now, whichever replica wrote its last step
        if book.progress.consumer is not None:
            await book.progress.read_to_end()
        if cmd.kind != "draft" and book.state(cmd.warning_id) is None:
            raise HTTPException(404, f"no warning {cmd.warning_id}")

        async def send(topic: str, key: str, record: Any, what: str) -> object:
            return await publisher.send(topic, key, record, what=what)

        try:
            result = await apply_command(book, cmd, config, plan, send,
                                         address=duty.address if duty.caught_up.is_set() else None)
        except WarningConflict as exc:
            if not exc.read_back:
                raise BrokerUnavailable(str(exc)) from exc
            return conflict("warning_id", str(exc))
    if result.refused:
        return invalid([{"field": line.split(":")[0], "message": line} for line in result.refused],
                       error=f"the warning's {cmd.kind} is refused")
    return answer(book, result.state, config)


def _cmd(kind: str, warning_id: str, user: UserRecord, unit: str, clock, **kw) -> WarningCommand:
    return WarningCommand(id=f"{warning_id}.{kind[:7]}.{uuid.uuid4().hex[:12]}", warning_id=warning_id, kind=kind,
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
async def approve_warning(warning_id: WarningIdParam, req: WarningApproveRequest, book: WarningsDep, config: WarningsConfigDep,
                          plan: PlanDep, clock: ClockDep, publisher: PublisherDep, duty: DutyDep,
                          user: UserRecord = require("warning.approve")) -> Any:
    """An approval of an 橙/红 warning, with who approved (3.2.3(1)): 区领导 first, then 市应急办."""
    return await command(book, _cmd("approve", warning_id, user, req.unit, clock, approval=req.approval,
                                    approver=req.approver), config, plan, publisher, duty)


@router.post("/warnings/{warning_id}/issue", response_model=WarningAnswer, responses=WRITE)
async def issue_warning(warning_id: WarningIdParam, req: WarningActRequest, book: WarningsDep, config: WarningsConfigDep,
                        plan: PlanDep, clock: ClockDep, publisher: PublisherDep, duty: DutyDep,
                        user: UserRecord = require("warning.issue")) -> Any:
    """Issue it: the units and streets it names are told, its measures and publications become tasks."""
    return await command(book, _cmd("issue", warning_id, user, req.unit, clock, reason=req.reason),
                         config, plan, publisher, duty)


@router.post("/warnings/{warning_id}/adjust", response_model=WarningAnswer, responses=WRITE)
async def adjust_warning(warning_id: WarningIdParam, req: WarningAdjustRequest, book: WarningsDep, config: WarningsConfigDep,
                         plan: PlanDep, clock: ClockDep, publisher: PublisherDep, duty: DutyDep,
                         user: UserRecord = require("warning.approve")) -> Any:
    """3.2.6: 区应急办 changes the level with the 区应急委 leader's approval."""
    content = WarningContent(level=req.level, measures=req.measures, area=req.area)
    return await command(book, _cmd("adjust", warning_id, user, req.unit, clock, content=content, approval=req.approval,
                                    approver=req.approver, reason=req.reason), config, plan, publisher, duty)


@router.post("/warnings/{warning_id}/lift", response_model=WarningAnswer, responses=WRITE)
async def lift_warning(warning_id: WarningIdParam, req: WarningActRequest, book: WarningsDep, config: WarningsConfigDep,
                       plan: PlanDep, clock: ClockDep, publisher: PublisherDep, duty: DutyDep,
                       user: UserRecord = require("warning.issue")) -> Any:
    """3.2.7: the issuer lifts it at once; everyone told of the issue is told."""
    return await command(book, _cmd("lift", warning_id, user, req.unit, clock, reason=req.reason),
                         config, plan, publisher, duty)


@router.post("/warnings/{warning_id}/tasks/{task_id}/confirm", response_model=WarningAnswer, responses=WRITE)
async def confirm_warning_task(warning_id: WarningIdParam, task_id: TaskIdParam, req: WarningConfirmRequest, book: WarningsDep,
                               config: WarningsConfigDep, plan: PlanDep, clock: ClockDep, publisher: PublisherDep,
                               duty: DutyDep, user: UserRecord = require("warning.issue")) -> Any:
    """A measure taken (3.2.5), a publication made on its channel (3.2.8) or a filing done, confirmed by
    the unit it falls to: a task is done when its unit confirms it."""
    return await command(book, _cmd("confirm", warning_id, user, req.unit, clock, task_id=task_id),
                         config, plan, publisher, duty)


CAP_TYPE = "application/cap+xml"
ATOM_TYPE = "application/atom+xml"


@router.get("/warnings/feed.atom", response_class=Response,
            responses={200: {"content": {ATOM_TYPE: {"schema": {"type": "string"}}},
                             "description": "Atom feed of the issued, live warnings, each linking to its CAP 1.2"}})
async def warnings_feed(book: WarningsDep, config: WarningsConfigDep, plan: PlanDep, settings: SettingsDep) -> Response:
    """The active (issued, not lifted, not drill) warnings as an Atom feed, each entry linking to its CAP
    message: what a publication system (3.2.8) takes. Public, as the warnings themselves are."""
    base = settings.link_base
    feed = ET.Element("feed", xmlns=ATOM_NS)
    ET.SubElement(feed, "id").text = f"{base}/warnings/feed.atom"
    ET.SubElement(feed, "title").text = "通州区预警信息"
    active = [s for s in book.active() if not s.drill]
    updated = max((e.at for s in active for e in book.history(s.warning_id)), default=None)
    ET.SubElement(feed, "updated").text = format_time(updated) if updated else "2000-01-01T00:00:00+08:00"
    ET.SubElement(ET.SubElement(feed, "author"), "name").text = "通州区应急办"
    for state in active:
        sent = messages(book.history(state.warning_id), config, plan)
        if not sent:
            continue
        event, msg = sent[-1]
        entry = ET.SubElement(feed, "entry")
        ET.SubElement(entry, "id").text = f"urn:cap:{msg.sender}:{msg.identifier}"
        ET.SubElement(entry, "title").text = msg.headline
        ET.SubElement(entry, "updated").text = format_time(msg.sent)
        ET.SubElement(entry, "summary").text = msg.description
        ET.SubElement(entry, "link", href=f"{base}/warnings/{state.warning_id}/cap/{event.seq}", type=CAP_TYPE)
    return Response(ET.tostring(feed, encoding="utf-8", xml_declaration=True), media_type=ATOM_TYPE)


@router.post("/warnings/cap/incoming", status_code=201, response_model=WarningAnswer, responses=WRITE,
             openapi_extra={"requestBody": {"required": True, "content": {CAP_TYPE: {"schema": {"type": "string"}},
                                                                         "application/xml": {"schema": {"type": "string"}}}}})
async def incoming_cap(request: Request, unit: Annotated[str, Query(max_length=64, pattern=r"^[a-z][a-z0-9_]*$",
                                                                    description="the issuer whose CAP this is")],
                       book: WarningsDep, config: WarningsConfigDep, plan: PlanDep, clock: ClockDep,
                       publisher: PublisherDep, duty: DutyDep, user: UserRecord = require("warning.issue")) -> Any:
    """A CAP 1.2 warning from an issuer the plan lets issue its own (the weather bureau, 3.2.3(5)): parsed
    safely (no DTD, no entities), validated against the OASIS XSD and the extra rules, and kept as a draft
    for the office to act on; anything wrong is refused naming the element, nothing stored."""
    allowed = config.incoming_issuers["value"]
    if unit not in allowed:
        return invalid([{"field": "unit", "message": f"{unit} is not an issuer whose CAP is taken in {allowed} (3.2.3(5))"}],
                       error="the CAP warning is refused")
    body = await request.body()
    try:
        msg = parse(body)
    except CapError as exc:
        return invalid([{"field": p.split(":", 1)[0], "message": p} for p in exc.problems], error="the CAP warning is refused")
    fields, problems = content_of(msg, config, plan, unit)
    if problems:
        return invalid([{"field": p.split(":", 1)[0], "message": p} for p in problems], error="the CAP warning is refused")
    wid = f"w-cap-{uuid.uuid5(uuid.NAMESPACE_URL, msg.sender + ',' + msg.identifier).hex[:16]}"
    if book.state(wid) is not None:  # the same message sent again: the warning it made
        return answer(book, book.state(wid), config)
    return await command(book, _cmd("draft", wid, user, unit, clock, content=WarningContent(**fields),
                                    drill=msg.status == "Exercise", reason=f"CAP {msg.identifier}"),
                         config, plan, publisher, duty)


@router.get("/warnings", response_model=list[WarningAnswer], responses=responses(401, 403))
async def list_warnings(book: WarningsDep, config: WarningsConfigDep,
                        user: UserRecord = require("warning.read")) -> list[WarningAnswer]:
    """Every warning, issued ones first, newest first."""
    states = sorted(book.all(), key=lambda s: (s.status.value != "issued", -(s.seq)))
    return [answer(book, s, config) for s in states]


def _cap(book: WarningBook, config, plan, warning_id: str, seq: int | None) -> Response:
    sent = messages(book.history(warning_id), config, plan)
    if seq is not None:
        sent = [(e, m) for e, m in sent if e.seq == seq]
    if not sent:
        raise HTTPException(404, f"no CAP message of warning {warning_id}" + (f" step {seq}" if seq else ""))
    return Response(to_xml(sent[-1][1]), media_type=CAP_TYPE)


CAP_ANSWER = {200: {"content": {CAP_TYPE: {"schema": {"type": "string"}}}, "description": "a CAP 1.2 alert"},
              **responses(401, 403, 404)}


@router.get("/warnings/{warning_id}/cap", response_class=Response, responses=CAP_ANSWER)
async def warning_cap(warning_id: WarningIdParam, book: WarningsDep, config: WarningsConfigDep, plan: PlanDep,
                      user: UserRecord = require("warning.read")) -> Response:
    """The warning's latest CAP 1.2 message: Draft before issue, Alert, Update, Cancel; Exercise in a drill."""
    return _cap(book, config, plan, warning_id, None)


@router.get("/warnings/{warning_id}/cap/{seq}", response_class=Response, responses=CAP_ANSWER)
async def warning_cap_step(warning_id: WarningIdParam, seq: Annotated[int, Path(ge=1, le=10_000)], book: WarningsDep,
                           config: WarningsConfigDep, plan: PlanDep, user: UserRecord = require("warning.read")) -> Response:
    """The CAP 1.2 message of one step of the warning."""
    return _cap(book, config, plan, warning_id, seq)


@router.get("/warnings/{warning_id}", response_model=WarningAnswer, responses=responses(401, 403, 404))
async def get_warning(warning_id: WarningIdParam, book: WarningsDep, config: WarningsConfigDep,
                      user: UserRecord = require("warning.read")) -> Any:
    state = book.state(warning_id)
    if state is None:
        raise HTTPException(404, f"no warning {warning_id}")
    return answer(book, state, config)
