"""Commands on an open incident: a filed report, 区应急委's approval, the end. Each becomes one
IncidentCommand on incidents.commands; the worker applies it to the incident (playbooks.lifecycle)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import structlog
from fastapi import APIRouter
from pydantic import BaseModel

from playbooks.documents import DOCUMENT_KINDS, missing_items
from playbooks.engine import check_filing
from services.view import IncidentView
from services.web.answers import conflict, invalid, problem_fields, responses
from services.web.auth import require
from services.web.publisher import Publisher
from services.web.routes.incidents import known_incident
from services.web.routes.params import IncidentId
from services.web.state import PlanDep, PublisherDep, SealerDep, ViewDep
from topics.catalog import INCIDENT_COMMANDS
from topics.models import ApprovalRecorded, EndRecorded, IncidentCommand, ReleaseApproval, ReportFiled, UserRecord
from topics.requests import ApprovalRequest, EndRequest, FileReportRequest

log = structlog.get_logger("yingji", stage="api")
router = APIRouter(prefix="/incidents/{incident_id}", tags=["incidents"])
COMMAND = responses(401, 403, 404, 409, 413, 422, 503)


class CommandAccepted(BaseModel):
    incident_id: str
    command_id: str
    status: str = "accepted"


def command_id(prefix: str, req: FileReportRequest | ApprovalRequest | EndRequest) -> str:
    """A request with a client's request_id names its command by that id and its content: sent again
    as it was, the same command (applied once); edited, another."""
    if req.request_id is None:
        return f"{prefix}-{uuid.uuid4().hex[:20]}"
    return f"{prefix}-{hashlib.sha256(req.model_dump_json().encode()).hexdigest()[:24]}"


async def publish_command(incident_id: str, body: ReportFiled | ApprovalRecorded | EndRecorded, *,
                          view: IncidentView, publisher: Publisher) -> Any:
    incident = await known_incident(view, incident_id)
    if incident.reported.report.drill:
        # a drill's incident moves on its drill's simulated clock: the worker would dead-letter a
        # command without one, so refuse it here, where the caller sees why
        return conflict("incident_id", f"{incident_id!r} is a drill's incident: its scenario files its reports")
    cmd = IncidentCommand(id=body.id, incident_id=incident_id, drill=incident.reported.report.drill, body=body)
    await publisher.send(INCIDENT_COMMANDS.name, incident_id, cmd, what="the command")
    log.info("command_accepted", incident_id=incident_id, command=body.command)
    return CommandAccepted(incident_id=incident_id, command_id=cmd.id)


@router.post("/reports", status_code=202, response_model=CommandAccepted, responses=COMMAND)
async def file_report(incident_id: IncidentId, req: FileReportRequest, plan: PlanDep, sealer: SealerDep,
                      view: ViewDep, publisher: PublisherDep, user: UserRecord = require("incident.file")) -> Any:
    """File a report: phone / written / detailed / follow-up (续报 carries new facts and re-runs the plan), or a
    public release with its draft and approval (4.7.1), or a report to 区委宣传部 / 市委宣传部."""
    problems = check_filing(req, plan)
    if problems:  # the worker would dead-letter it after our 202: the caller must hear it now
        return invalid(problem_fields(problems))
    body = ReportFiled(
        id=command_id("f", req), incident_id=incident_id, kind=req.kind, unit_id=req.unit_id, filed_at=req.filed_at,
        filed_by=req.filed_by, content_sealed=sealer.seal_text(req.content), followup=req.followup,
        release=ReleaseApproval(**req.release.model_dump()) if req.release else None, recorded_by=user.name,
        # 4.1.5's items read from the text before it is sealed: what the timeline marks as missing
        items_missing=list(missing_items(req.content)) if req.kind in DOCUMENT_KINDS and req.content.strip() else None,
    )
    return await publish_command(incident_id, body, view=view, publisher=publisher)


@router.post("/approvals", status_code=202, response_model=CommandAccepted, responses=COMMAND)
async def approve(incident_id: IncidentId, req: ApprovalRequest, view: ViewDep, publisher: PublisherDep,
                  user: UserRecord = require("incident.approve")) -> Any:
    """区应急委主任或副主任's approval to report a 较大+ event to 市应急办 (4.1.3)."""
    body = ApprovalRecorded(id=command_id("a", req), incident_id=incident_id, approver=req.approver,
                            approver_role=req.approver_role, approved_at=req.approved_at, recorded_by=user.name)
    return await publish_command(incident_id, body, view=view, publisher=publisher)


@router.post("/end", status_code=202, response_model=CommandAccepted, responses=COMMAND)
async def end(incident_id: IncidentId, req: EndRequest, view: ViewDep, publisher: PublisherDep,
              user: UserRecord = require("incident.end")) -> Any:
    """应急结束 (4.8.2): 区应急委 approves for 一般; the city's decision is recorded for 较大+."""
    body = EndRecorded(id=command_id("x", req), incident_id=incident_id, authority=req.authority,
                       decided_by=req.decided_by, ended_at=req.ended_at, recorded_by=user.name,
                       announce_public=req.announce_public)
    return await publish_command(incident_id, body, view=view, publisher=publisher)
