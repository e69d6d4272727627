"""/incidents: raise an incident (POST), and read incidents, their timelines and private details."""

from __future__ import annotations

import time
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from playbooks.engine import ReportRejected
from services.intake import accept
from services.privacy import Sealer
from services.view import IncidentView
from services.web.answers import conflict, invalid, problem_fields, responses
from services.web.auth import require
from services.web.publisher import BrokerUnavailable
from services.web.routes.params import IncidentId
from services.web.state import WarningsDep, ClockDep, PlanDep, PublisherDep, SealerDep, ViewDep
from topics.catalog import INCIDENTS_REPORTED
from topics.models import IncidentReported, PrivateDetails, UserRecord
from topics.requests import IncidentAnswer, ReportSubmission

log = structlog.get_logger("yingji", stage="api")
router = APIRouter(prefix="/incidents", tags=["incidents"])
READ = responses(401, 403)


class Accepted(BaseModel):
    incident_id: str
    report_id: str
    status: str = "accepted"


async def read_incident(view: IncidentView, incident_id: str, *, reported: bool = False):
    """The incident as the read model has it, or None. Not known here: read the topics to their end
    first, as they are now (another replica may have accepted it a moment ago)."""
    incident = view.incidents.get(incident_id)
    if (incident is None or (reported and incident.reported is None)) and view.progress.consumer is not None:
        await view.progress.read_to_end()
        incident = view.incidents.get(incident_id)
    return incident


async def known_incident(view: IncidentView, incident_id: str):
    """The incident as the read model has it (reported), or 404 naming the id."""
    incident = await read_incident(view, incident_id, reported=True)
    if incident is None or incident.reported is None:
        raise HTTPException(status_code=404, detail=f"incident_id: no incident {incident_id!r}")
    return incident


@router.post("", status_code=202, response_model=Accepted, responses=responses(401, 403, 409, 413, 422, 503))
async def raise_incident(submission: ReportSubmission, plan: PlanDep, sealer: SealerDep, clock: ClockDep,
                         view: ViewDep, publisher: PublisherDep, warnings: WarningsDep,
                         user: UserRecord = require("incident.raise")) -> Any:
    """Accept a report: answered 202 only once the broker acknowledged it (acks=all)."""
    if submission.warning_id is not None and warnings.state(submission.warning_id) is None:
        return invalid([{"field": "warning_id", "message": f"no warning {submission.warning_id!r}"}])
    try:
        record = accept(submission, plan=plan, sealer=sealer, now=clock.now(), raised_by=user.name)
    except ReportRejected as exc:
        return invalid(problem_fields(exc.problems))
    answer = first_report(view, sealer, record, submission)
    if answer is not None:
        # A retry of the same report (its 202 lost) is answered again and not sent twice; another
        # report under a used id would never be decided (the worker keeps the first), so say so.
        return answer
    written = await publisher.send(INCIDENTS_REPORTED.name, record.incident_id, record, what="the report")
    # Which report of this id counts is the log's to say, not this replica's: the worker decides the first
    # one on the partition. Read back to our own record; then the first one is known here, whichever
    # replica (or a retry sent to two of them at once) wrote it.
    sent = time.monotonic()
    if not await view.progress.reached({written.tp: written.offset}):
        raise BrokerUnavailable("the report was written but not read back yet: send it again (the same "
                                "report_id is answered once it is)")
    answer = first_report(view, sealer, record, submission)
    if answer is None:  # cannot be: our own record was read, so a first one is there
        raise BrokerUnavailable("the report was not read back")
    if isinstance(answer, Accepted):
        log.info("accepted", incident_id=record.incident_id, type=record.report.type,
                 read_back_ms=round((time.monotonic() - sent) * 1000, 1))
    return answer


def first_report(view: IncidentView, sealer: Sealer, record: IncidentReported,
                 submission: ReportSubmission) -> Any:
    """The answer for a report whose id the log has already: Accepted if the first one is this report
    (accepted_at aside), a 409 naming report_id if it is another; None if the id is not there yet."""
    known = view.incidents.get(record.incident_id)
    if known is None or known.reported is None:
        return None
    first = known.reported
    if first.report == record.report and same_private(sealer, first.private_sealed, submission):
        return Accepted(incident_id=first.incident_id, report_id=first.report.report_id)
    return conflict("report_id", f"{record.incident_id!r} was reported already, with other content")


def same_private(sealer: Sealer, sealed: str | None, submission: ReportSubmission) -> bool:
    if sealed is None:  # sealing leaves nothing when there is nothing private
        return submission.private_details() == PrivateDetails()
    try:
        return sealer.open(sealed) == submission.private_details()
    except ValueError:  # sealed with another key: cannot tell, so not the same
        return False


@router.get("", responses=READ)
async def list_incidents(view: ViewDep, drill: bool | None = None,
                         limit: Annotated[int, Query(ge=1, le=5000)] = 500,
                         _: UserRecord = require("incident.read")) -> dict[str, Any]:
    items = [s.as_json() for s in view.incidents.values() if drill is None or s.as_json()["drill"] == drill]
    return {"count": len(items), "incidents": items[-limit:]}


@router.get("/{incident_id}", response_model=IncidentAnswer, responses=responses(401, 403, 404))
async def get_incident(incident_id: IncidentId, view: ViewDep, _: UserRecord = require("incident.read")) -> Any:
    """The incident: report, decision, notifications, obligations, and what became of each notice."""
    incident = await read_incident(view, incident_id)
    if incident is None:
        raise HTTPException(status_code=404, detail=f"incident_id: no incident {incident_id!r}")
    return incident.as_json()


@router.get("/{incident_id}/timeline", responses=responses(401, 403, 404))
async def timeline(incident_id: IncidentId, view: ViewDep, _: UserRecord = require("incident.read")) -> dict[str, Any]:
    incident = await read_incident(view, incident_id)
    if incident is None:
        raise HTTPException(status_code=404, detail=f"incident_id: no incident {incident_id!r}")
    return {"incident_id": incident_id, "events": incident.timeline()}


@router.get("/{incident_id}/private", responses=responses(401, 403, 404))
async def private_details(incident_id: IncidentId, view: ViewDep, sealer: SealerDep,
                          user: UserRecord = require("incident.private")) -> dict[str, Any]:
    """The reporter's name and phone and the summary: only for roles that act on them."""
    incident = await known_incident(view, incident_id)
    sealed = incident.reported.private_sealed
    details = sealer.open(sealed).model_dump() if sealed else {"reporter": {"name": "", "phone": ""}, "summary": ""}
    log.info("private_read", incident_id=incident_id, by=user.name)
    return {"incident_id": incident_id, **details}
