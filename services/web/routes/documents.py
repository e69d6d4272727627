"""Reports as documents (issue 23 item 2): an incident's 书面报告 or 详细信息报告 drafted from its
records, as JSON (the items, which are missing), plain text (what the filing form is filled with) or .docx."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from playbooks.documents import draft
from services.web.answers import conflict, responses
from services.web.auth import require
from services.web.documents import DOCX, as_docx
from services.web.routes.incidents import read_incident
from services.web.routes.params import IncidentId
from services.web.state import ClockDep, ViewDep
from topics.models import ReportKind, UserRecord

router = APIRouter(prefix="/incidents/{incident_id}/documents", tags=["incidents"])
DocumentKind = Literal["written_report", "detailed_report"]


@router.get("/{kind}", responses={**responses(401, 403, 404, 409, 422), 200: {
    "content": {"application/json": {}, "text/plain": {}, DOCX: {}},
    "description": "the draft as JSON; with format=txt or docx, the file"}})
async def report_document(incident_id: IncidentId, kind: DocumentKind, view: ViewDep, clock: ClockDep,
                          format: Annotated[str, Query(pattern="^(json|txt|docx)$")] = "json",
                          _: UserRecord = require("incident.read")) -> Any:
    """The 书面报告 or 详细信息报告 of the incident drafted with 4.1.5's items (时间、地点、信息来源、事件性质、
    危害程度、发展趋势、已采取的措施) and the follow-ups' progress; an item the records cannot fill is
    【待补充】 and listed in `missing`. The officer edits it and files it (POST …/reports)."""
    incident = await read_incident(view, incident_id)
    if incident is None or incident.reported is None:
        raise HTTPException(status_code=404, detail=f"incident_id: no incident {incident_id!r}")
    if incident.decided is None:
        return conflict("incident_id", f"{incident_id!r} is not decided yet: its grade and units are not known")
    events = incident.events.values()
    doc = draft(ReportKind(kind), incident.reported.report, incident.decided.decision, events, clock.now())
    stem = quote(f"{doc.title}-{incident_id}")
    if format == "txt":
        return Response(doc.as_text(), media_type="text/plain; charset=utf-8",
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{stem}.txt"})
    if format == "docx":
        return Response(as_docx(doc), media_type=DOCX,
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{stem}.docx"})
    return {"incident_id": incident_id, "kind": kind, "title": doc.title, "unit": doc.unit,
            "drafted_at": doc.drafted_at.isoformat(), "missing": list(doc.missing),
            "items": [{"id": i.id, "label": i.label, "text": i.text, "missing": i.missing} for i in doc.items],
            "text": doc.as_text()}
