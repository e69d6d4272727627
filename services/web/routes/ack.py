"""已阅 (issue 19 item 3): acknowledging a notice.

- `/ack/{token}`: the link every message carries. The token (services.delivery.tokens) names the
  notice and the person and is the only credential: no sign-in. GET and HEAD show the notice and a
  「已阅」 button and never write (mail scanners and chat link previews fetch links by themselves);
  only the button's POST acknowledges, then redirects (303) back to the GET, which says who
  acknowledged and when. A forged token is a 403 page, an expired one 410; neither writes anything.
  The POST needs no CSRF token: it carries no cookie and is authorised by the URL's token alone, which
  a forging site would have to know.
- `POST /notices/{dedup_key}/ack`: the same for a signed-in user (the API, the incident page).

An ack is an AckRecord on topic deliveries under the notice's dedup_key; its id is one per notice and
person (or user), so a second POST is the same ack: nothing is written again once the view holds it,
and what was written first is answered.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Body, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from playbooks.duty.roster import SHANGHAI
from services.delivery.tokens import TokenExpired, TokenForged, read_token
from services.duty.book import DutyBook
from services.view import IncidentView, NoticeStatus
from services.web.answers import RETRY_AFTER_S, Refused, responses
from services.web.auth import require
from services.web.publisher import BrokerUnavailable, Publisher
from services.web.rendering import Pages
from services.web.routes.params import RecordIdParam
from services.web.state import AckKeyDep, ClockDep, DutyDep, PagesDep, PublisherDep, SettingsDep, ViewDep
from topics.catalog import DELIVERIES
from topics.delivery import AckHow, AckRecord, DeliveryEvent, ack_id
from topics.models import NotificationRequested, UserRecord
from topics.requests import AckAnswer, AckRequest

log = structlog.get_logger("yingji", stage="api")
router = APIRouter(tags=["notices"])

KIND_NAMES = {"routing": "事件通报", "reminder": "报送提醒", "escalation": "督办", "approved_report": "批准上报后通报",
              "end": "应急结束", "handover": "交接班", "warning": "预警", "rectification": "限期整改"}
NO_INCIDENT = ("handover", "rectification")  # notices whose incident_id names no incident: a handover, a 通报
HOW_NAMES = {"link": "通知链接", "page": "事件页面", "api": "接口", "test": "测试消息"}
LINK_BY = "link"  # AckRecord.by for the ack link


def shanghai(at: datetime | None) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S") if at else "—"


# --- the ack link's page -------------------------------------------------------------------------


def _refused(request: Request, pages: PagesDep, exc: Exception, method: str) -> Response:
    forged = isinstance(exc, TokenForged)
    log.info("ack_link_refused", method=method, reason="forged" if forged else "expired")
    return pages.render(request, "ack.html", user=None, status_code=403 if forged else 410,
                        state="forged" if forged else "expired")


def _unknown(request: Request, pages: Pages, view: IncidentView) -> Response:
    """A genuine token whose notice the view does not hold: not read yet (503, try again), or gone."""
    if not view.caught_up.is_set():
        resp = pages.render(request, "ack.html", user=None, status_code=503, state="loading")
        resp.headers["Retry-After"] = str(RETRY_AFTER_S)
        return resp
    return pages.render(request, "ack.html", user=None, status_code=404, state="unknown")


def _ack_view(status: NoticeStatus | None, book: DutyBook, person_id: str | None = None) -> dict[str, Any] | None:
    """An ack as the page says it: when, by whom (the person's name from the directory), how."""
    ack = None
    if status is not None:
        if person_id is not None:
            ack = status.acks.get(ack_id(status.dedup_key, person_id, LINK_BY))
            ack = ack or next((a for a in status.acks.values() if a.person_id == person_id), None)
        else:
            ack = status.first_ack
    if ack is None:
        return None
    person = book.roster().person(ack.person_id) if ack.person_id else None
    who = person.name if person else (ack.person_id or ack.by)
    return {"at": shanghai(ack.at), "who": who, "how": HOW_NAMES.get(ack.how, ack.how)}


def _notice_context(view: IncidentView, note: NotificationRequested) -> dict[str, Any]:
    incident = view.incidents.get(note.incident_id) if note.kind not in NO_INCIDENT else None
    decided = incident.decided.decision if incident and incident.decided else None
    reported = incident.reported.report if incident and incident.reported else None
    return {
        "incident_id": note.incident_id if note.kind not in NO_INCIDENT else None,
        "circular_id": note.incident_id if note.kind == "rectification" else None,
        "incident_type": decided.type_name if decided else (reported.type if reported else None),
        "level": note.level.value if note.level else None,
        "unit": note.unit,
        "role": note.role,
        "kind": KIND_NAMES.get(note.kind, note.kind),
        "why": note.why,
        "section": note.section,
        "requested_at": shanghai(note.requested_at),
        "drill": note.drill,
    }


@router.api_route("/ack/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
async def ack_page(request: Request, token: str, view: ViewDep, pages: PagesDep, clock: ClockDep,
                   settings: SettingsDep, key: AckKeyDep, book: DutyDep) -> Response:
    """The notice and a 「已阅」 button. Reads only: a link preview that fetches it acknowledges nothing."""
    try:
        dedup_key, person_id = read_token(token, clock.now(), key, timedelta(hours=settings.ack_max_age_hours))
    except (TokenForged, TokenExpired) as exc:
        return _refused(request, pages, exc, request.method)
    note = await view.read_notice(dedup_key)
    if note is None:
        return _unknown(request, pages, view)
    status = view.status_of(dedup_key, note.incident_id)
    mine = _ack_view(status, book, person_id)
    return pages.render(request, "ack.html", user=None, state="acked" if mine else "open", token=token,
                        notice=_notice_context(view, note), mine=mine,
                        other=None if mine else _ack_view(status, book))


@router.post("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
async def ack_link(request: Request, token: str, view: ViewDep, pages: PagesDep, clock: ClockDep,
                   settings: SettingsDep, key: AckKeyDep, publisher: PublisherDep) -> Response:
    """The button: one AckRecord (how=link) for the token's person, then back to the page (303)."""
    now = clock.now()
    try:
        dedup_key, person_id = read_token(token, now, key, timedelta(hours=settings.ack_max_age_hours))
    except (TokenForged, TokenExpired) as exc:
        return _refused(request, pages, exc, "POST")
    note = await view.read_notice(dedup_key)
    if note is None:
        return _unknown(request, pages, view)
    status = view.status_of(dedup_key, note.incident_id)
    record = AckRecord(id=ack_id(dedup_key, person_id, LINK_BY), dedup_key=dedup_key, incident_id=note.incident_id,
                       step=status.step_of(person_id) if status else 0, person_id=person_id, at=now,
                       how=AckHow.LINK, by=LINK_BY, drill=note.drill)
    try:
        await _record(record, view, publisher)
    except BrokerUnavailable:
        resp = pages.render(request, "ack.html", user=None, status_code=503, state="unavailable", token=token,
                            notice=_notice_context(view, note), mine=None, other=None)
        resp.headers["Retry-After"] = str(RETRY_AFTER_S)
        return resp
    return RedirectResponse(request.url.path, status_code=303)


async def _record(record: AckRecord, view: IncidentView, publisher: Publisher) -> AckRecord:
    """Write the ack unless the view holds it already (a second POST); the one on record is answered."""
    status = view.status_of(record.dedup_key, record.incident_id)
    seen = status.acks.get(record.id) if status else None
    if seen is not None:
        return record.model_copy(update={"at": seen.at, "how": AckHow(seen.how)})
    await publisher.send(DELIVERIES.name, record.dedup_key, DeliveryEvent.of(record), what="the acknowledgement")
    # the broker has it (acks=all): shown at once, as the view will read it back
    view.apply(DELIVERIES.name, DeliveryEvent.of(record).model_dump_json().encode())
    log.info("ack_recorded", dedup_key=record.dedup_key, incident_id=record.incident_id, how=record.how.value,
             step=record.step)
    return record


# --- signed in -----------------------------------------------------------------------------------


@router.post("/notices/{dedup_key}/ack", response_model=AckAnswer,
             responses={**responses(401, 403, 413, 422, 503), 404: {"model": Refused, "description": "no such notice"}})
async def ack_notice(dedup_key: RecordIdParam, view: ViewDep, clock: ClockDep, publisher: PublisherDep,
                     req: Annotated[AckRequest | None, Body()] = None,
                     user: UserRecord = require("notices.ack")) -> Any:
    """已阅 for a notice, by the signed-in user (no person of the directory is named: users and people
    are not linked). Once per user and notice: sent again, the ack on record is answered."""
    note = await view.read_notice(dedup_key)
    if note is None:
        raise HTTPException(status_code=404, detail=f"dedup_key: no notice {dedup_key!r}")
    how = AckHow.PAGE if req is not None and req.how == "page" else AckHow.API
    record = AckRecord(id=ack_id(dedup_key, None, user.name), dedup_key=dedup_key, incident_id=note.incident_id,
                       step=0, person_id=None, at=clock.now(), how=how, by=user.name, drill=note.drill)
    done = await _record(record, view, publisher)
    return AckAnswer(ack_id=done.id, dedup_key=done.dedup_key, incident_id=done.incident_id, person_id=done.person_id,
                     by=done.by, how=done.how.value, at=done.at)
