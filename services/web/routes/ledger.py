"""The 迟报/漏报/瞒报 ledger (5.5.2) and its 通报 (5.5.1), issue 23 item 4.

GET /ledger answers the live ledger of a period (JSON; ?format=xlsx the spreadsheet, ?format=docx the
draft 通报; a browser gets the page), GET /drills/{run_id}/ledger a drill run's own. Computed from the
read model's records on each request: nothing is stored by reading it. Issuing a 通报 is a record on
yingji.ledger.circulars that makes each unit's 限期整改 an obligation of its own; a unit's 整改 report
meets it. Thin: the ledger, the draft and the statuses are playbooks.ledger's.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import structlog
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from playbooks.ledger.circular import (MAX_TERM, CircularDraft, RectificationStatus, circular_record, draft_circular,
                                       rectifications)
from playbooks.ledger.config import LedgerFile
from playbooks.ledger.rules import Ledger, ledger
from playbooks.plan import Plan
from services import metrics
from services.ledger_book import incident_records
from services.web.answers import conflict, invalid, responses
from services.web.auth import require, require_page, wants_html
from services.web.documents import DOCX
from services.web.ledger_chart import trend_chart
from services.web.ledger_files import XLSX, circular_docx, ledger_xlsx
from services.web.permissions import can
from services.web.routes.duty import bad_query, plausible
from services.web.routes.params import RecordIdParam, RunId
from services.web.state import (ClockDep, CircularsDep, DrillsDep, LedgerConfigDep, PagesDep, PlanDep,
                                PublisherDep, ViewDep)
from topics.catalog import LEDGER_CIRCULARS
from topics.ledger import CircularIssued, CircularRequest, LedgerRecord, RectificationReported, RectificationRequest
from topics.models import UserRecord

log = structlog.get_logger("yingji", stage="ledger")
router = APIRouter(tags=["ledger"])
BEIJING = ZoneInfo("Asia/Shanghai")
MAX_SPAN = timedelta(days=366)
FILED_SKEW = timedelta(minutes=5)  # a client's clock a little ahead of ours is no report from the future
STATUS_NAMES = {"open": "整改中", "met": "按期整改", "late": "逾期整改", "missed": "逾期未整改"}
Format = Annotated[Literal["json", "xlsx", "docx"], Query(description="json; xlsx: the ledger as a spreadsheet; "
                                                                      "docx: the draft 通报 of its units with breaches")]
FROM = Annotated[datetime | None, Query(alias="from", description="the period's start, with its offset; "
                                                                   "absent: today's 00:00 in Beijing")]
TO = Annotated[datetime | None, Query(alias="to", description="the period's end (excluded); absent: a day after from")]
UNIT = Annotated[str | None, Query(description="a unit's id (units.yaml): its rows only", max_length=64)]
FILES = {200: {"content": {"application/json": {}, XLSX: {}, DOCX: {}, "text/html": {}},
               "description": "the ledger as JSON; with format=xlsx or docx, the file; a browser, the page"},
         303: {"description": "a browser (Accept: text/html) not signed in: to /login, and back"}}


def period(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """[from, to) as asked; today in Beijing when absent. `from` after `to` is refused naming `from`."""
    for name, t in (("from", start), ("to", end)):
        if t is not None:
            plausible(name, t)
    if start is None:
        start = now.astimezone(BEIJING).replace(hour=0, minute=0, second=0, microsecond=0)
        if end is not None and end <= start:
            start = end - timedelta(days=1)
    end = end or start + timedelta(days=1)
    if start > end:
        raise bad_query("from", "must not be after to")
    if end - start > MAX_SPAN:
        raise bad_query("to", f"at most {MAX_SPAN.days} days after from")
    return start, end


def known(plan: Plan, unit: str | None) -> str | None:
    if unit is not None and unit not in plan.units:
        raise bad_query("unit", f"no unit {unit!r} in the plan (units.yaml ids, e.g. district_emergency_office)")
    return unit


def answer(request: Request, book: Ledger, *, plan: Plan, config: LedgerFile, pages, who: UserRecord,
           format: str, title: str, drill_run: str | None = None,
           owed: list[RectificationStatus] | None = None) -> Any:
    """The ledger as the client asked: the page, a file, or JSON."""
    stem = quote(f"{title}-{book.period_from.astimezone(BEIJING):%Y%m%d}")
    if format == "xlsx":
        return Response(ledger_xlsx(book), media_type=XLSX,
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{stem}.xlsx"})
    if format == "docx":
        draft = draft_circular(book, config, plan, issued_at=book.now)
        return Response(circular_docx(draft, drill=book.drill), media_type=DOCX,
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{stem}-{quote('通报')}.docx"})
    if wants_html(request):
        return page(request, book, plan=plan, pages=pages, who=who, title=title, drill_run=drill_run, owed=owed or [],
                    term_days=config.rectification.due_after_days)
    return book


def page(request: Request, book: Ledger, *, plan: Plan, pages, who: UserRecord, title: str,
         drill_run: str | None, owed: list[RectificationStatus], term_days: int) -> Response:
    query = {"from": book.period_from.isoformat(), "to": book.period_to.isoformat()}
    if book.unit_id:
        query["unit"] = book.unit_id
    here = request.url.path
    units = [{"line": u, "chart": trend_chart(u, book.bucket)} for u in book.units]
    return pages.render(request, "ledger.html", user=who, book=book, units=units, title=title, drill_run=drill_run,
                        plan_units=[(u.id, u.name) for u in plan.units.values()],
                        local=lambda t: t.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if t else "",
                        from_day=book.period_from.astimezone(BEIJING).strftime("%Y-%m-%d"),
                        to_day=(book.period_to - timedelta(microseconds=1)).astimezone(BEIJING).strftime("%Y-%m-%d"),
                        xlsx=f"{here}?{urlencode({**query, 'format': 'xlsx'})}",
                        docx=f"{here}?{urlencode({**query, 'format': 'docx'})}",
                        can_issue=can(who, "ledger.issue") and not book.drill, owed=owed,
                        # the 整改期限 the page offers: ledger.yaml's term from today (Beijing); changed, it is sent
                        rectify_default=(book.now + timedelta(days=term_days)).astimezone(BEIJING).strftime("%Y-%m-%d"),
                        status_names=STATUS_NAMES)


@router.get("/ledger", response_model=Ledger, responses={**responses(401, 403, 422), **FILES})
async def live_ledger(request: Request, plan: PlanDep, view: ViewDep, clock: ClockDep, config: LedgerConfigDep,
                      pages: PagesDep, circulars: CircularsDep, start: FROM = None, end: TO = None, unit: UNIT = None, format: Format = "json",
                      who: UserRecord | Response = require_page("ledger.read")) -> Any:
    """Per unit, every obligation it owned whose due time falls in [from, to), with its outcome (按时, 迟报
    with its minutes, 漏报, 内容不全, 接报滞后 recorded against the source, 未到期), each with its reason
    and section; the units' counts and trends; possible 瞒报 flagged for review beside the first report.
    Live incidents only: a drill's are at /drills/{run_id}/ledger. Nothing is stored by asking."""
    if isinstance(who, Response):
        return who
    now = clock.now()
    start, end = period(start, end, now)
    unit = known(plan, unit)
    # the records taken here, on the loop (the view changes as it reads the log); the ledger computed off it,
    # so a long period of many incidents does not hold up the board's streams
    book = await asyncio.to_thread(partial(ledger, incident_records(view), plan, config, period_from=start, period_to=end,
                                           now=now, unit_id=unit))
    log.info("ledger_read", rows=len(book.rows), flags=len(book.flags), format=format)
    owed = [r for r in rectifications(circulars.records, now=now) if unit is None or r.unit_id == unit]
    return answer(request, book, plan=plan, config=config, pages=pages, who=who, format=format, title="信息报送台账",
                  owed=owed)


@router.get("/drills/{run_id}/ledger", response_model=Ledger, responses={**responses(401, 403, 404, 422), **FILES})
async def drill_ledger(request: Request, run_id: RunId, plan: PlanDep, view: ViewDep, drills: DrillsDep,
                       config: LedgerConfigDep, pages: PagesDep, start: FROM = None, end: TO = None,
                       unit: UNIT = None, format: Format = "json",
                       who: UserRecord | Response = require_page("ledger.drill")) -> Any:
    """A drill run's own ledger: its incidents only, on its simulated clock (the run's simulated time now,
    or its end), over the run's period unless from/to say otherwise. Never part of the live ledger."""
    if isinstance(who, Response):
        return who
    run = await drills.read(run_id)
    if run is None:
        raise HTTPException(status_code=404, detail=f"run_id: no drill run {run_id!r}")
    now = run.simulated_now or run.end
    start, end = period(start or run.start, end or max(run.end, now) + timedelta(days=1), now)
    unit = known(plan, unit)
    book = await asyncio.to_thread(partial(ledger, incident_records(view, run.incidents), plan, config,
                                           period_from=start, period_to=end, now=now, drill=True, unit_id=unit))
    return answer(request, book, plan=plan, config=config, pages=pages, who=who, format=format,
                  title=f"演练信息报送台账-{run_id}", drill_run=run_id)


# --- the 通报 issued, and its 限期整改 ---------------------------------------------------------------


class CircularAnswer(BaseModel):
    circular: CircularIssued
    draft: CircularDraft


@router.post("/ledger/circulars", status_code=201, response_model=CircularAnswer,
             responses=responses(401, 403, 409, 422, 503))
async def issue_circular(body: CircularRequest, plan: PlanDep, view: ViewDep, clock: ClockDep, config: LedgerConfigDep,
                         publisher: PublisherDep, circulars: CircularsDep,
                         user: UserRecord = require("ledger.issue")) -> Any:
    """Issue the 通报 of the live ledger of [start, end) (5.5.1): each unit with a breach then owes a 限期整改
    by the term of ledger.yaml (our choice) or by `rectify_by`, recorded on the log; the worker reminds and
    then 督办 a unit that has not reported (ledger.yaml `chase`). 409 naming `units` when nobody breached,
    and naming `period` (with the circular's id) when a 通报 of the same period was issued already:
    nothing is stored then."""
    now = clock.now()
    if body.rectify_by is not None and not now < body.rectify_by <= now + MAX_TERM:
        return invalid([{"field": "rectify_by", "message": f"must be after now and within {MAX_TERM.days} days"}],
                       error="invalid 通报")
    # the log read to its end first: a 通报 of the period issued through another replica is seen
    if circulars.progress.consumer is not None:
        await circulars.progress.read_to_end()
    if (done := circulars.issued_for(body.start, body.end)) is not None:
        return _issued_already(done)
    book = await asyncio.to_thread(partial(ledger, incident_records(view), plan, config, period_from=body.start,
                                           period_to=body.end, now=now, trend=False))
    draft = draft_circular(book, config, plan, issued_at=now, rectify_by=body.rectify_by)  # rectify_by checked above
    try:
        record = circular_record(draft, circular_id=f"circular-{uuid.uuid4().hex[:16]}", issued_by=user.name)
    except ValueError as exc:  # nobody breached in the period: what is on record leaves nothing to 通报
        field, _, message = str(exc).partition(": ")
        return conflict(field, message)
    issued = LedgerRecord(id=record.id, body=record)
    async with circulars.writing:  # checked again under the lock: two requests of one period, one 通报
        if (done := circulars.issued_for(body.start, body.end)) is not None:
            return _issued_already(done)
        await publisher.send(LEDGER_CIRCULARS.name, record.id, issued, what="the 通报")
        circulars.apply(issued)  # acknowledged (acks=all): shown at once here; read back later, it is the same record
    metrics.CIRCULARS_ISSUED.inc()
    log.info("circular_issued", circular_id=record.id, units=len(record.units))
    return CircularAnswer(circular=record, draft=draft)


def _issued_already(done: CircularIssued) -> Any:
    log.info("circular_refused", reason="period_issued", circular_id=done.id)
    return conflict("period", f"a 通报 of this period was issued already: {done.id} "
                              f"(issued {done.issued_at.astimezone(BEIJING):%Y-%m-%d %H:%M} Beijing time)")


@router.get("/ledger/rectifications", response_model=list[RectificationStatus], responses=responses(401, 403))
async def rectification_statuses(clock: ClockDep, circulars: CircularsDep,
                                 _: UserRecord = require("ledger.read")) -> Any:
    """Every unit's 限期整改 of every 通报 issued: open, met, late (with its minutes) or missed, at now."""
    return rectifications(circulars.records, now=clock.now())


@router.post("/ledger/circulars/{circular_id}/rectifications", status_code=201, response_model=RectificationStatus,
             responses=responses(401, 403, 404, 422, 503))
async def report_rectification(circular_id: RecordIdParam, body: RectificationRequest, clock: ClockDep,
                               publisher: PublisherDep, circulars: CircularsDep,
                               _: UserRecord = require("ledger.rectify")) -> Any:
    """A unit named in the 通报 reports its 整改: met if by its deadline, late after it."""
    circular = circulars.circulars.get(circular_id)
    if circular is None and circulars.progress.consumer is not None and await circulars.progress.read_to_end():
        circular = circulars.circulars.get(circular_id)
    if circular is None:
        raise HTTPException(status_code=404, detail=f"circular_id: no 通报 {circular_id!r}")
    if body.unit_id not in {u.unit_id for u in circular.units}:
        return invalid([{"field": "unit_id", "message": f"{body.unit_id!r} is not named in 通报 {circular_id}"}],
                       error="not named in the 通报")
    if body.filed_at > clock.now() + FILED_SKEW:  # a report from the future would stop the 督办 before it is made
        return invalid([{"field": "filed_at", "message": "must not be in the future (give the time with its offset, "
                                                          "+08:00 for Beijing)"}], error="filed in the future")
    rid = f"rect-{uuid.uuid4().hex[:16]}"
    record = RectificationReported(id=rid, circular_id=circular_id, unit_id=body.unit_id, reported_at=body.filed_at,
                                   reported_by=body.filed_by)
    reported = LedgerRecord(id=rid, body=record)
    await publisher.send(LEDGER_CIRCULARS.name, circular_id, reported, what="the 整改 report")
    circulars.apply(reported)
    log.info("rectification_reported", circular_id=circular_id, unit=body.unit_id)
    return next(r for r in rectifications(circulars.records, now=clock.now())
                if r.circular_id == circular_id and r.unit_id == body.unit_id)
