"""Who is on duty (issue 18): a unit's posts now or at a time, its 值班表 for a period with the rule
breaks, the .ics of a unit or a person, and changes to the rosters (a 值班表 imported, an override,
a swap), each checked against the duty rules and refused whole, naming row and column or field.

Names are shown to every signed-in role (the command center's screen shows who is on duty);
contacts only to the roles of `duty.contacts`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Callable, Mapping
from urllib.parse import quote

import structlog
from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from playbooks.duty.handover import HandoverRefused, HandoverState, Item, changes, confirm, handovers, open_items
from playbooks.duty.ical import to_ics
from playbooks.duty.log import KIND_NAMES, ShiftLog, duty_log, log_rows
from playbooks.duty.roster import SHANGHAI, on_duty, shifts, week_start
from playbooks.duty.rules import Problem as DutyProblem
from playbooks.duty.rules import check
from playbooks.duty.table import TableRefused
from playbooks.plan import Plan
from services.delivery.testmsg import test_notice
from services.duty.book import DutyBook
from services.duty.changes import Change, add_override, add_swap, import_file
from services.duty.desk import incident_entries, open_incidents
from services.duty.files import write_csv, write_xlsx
from services.view import IncidentView
from services.web.answers import conflict, invalid, responses
from services.web.auth import require
from services.web.permissions import can
from services.web.publisher import BrokerUnavailable, Publisher
from services.web.routes.params import RecordIdParam, UnitIdParam
from services.web.state import ClockDep, DutyDep, PlanDep, PublisherDep, ViewDep
from topics.catalog import DUTY_LOG, DUTY_ROSTERS, NOTIFICATIONS_REQUESTED
from topics.duty import POST_NAMES, Post, Shift
from topics.models import EARLIEST, LATEST, UserRecord
from topics.requests import (
    ContactTestAnswer,
    DutyAnswer,
    DutyLogAnswer,
    DutyLogLine,
    DutyPost,
    HandoverAnswer,
    HandoverConfirmRequest,
    HandoverItem,
    OverrideRequest,
    PersonRef,
    PersonAnswer,
    RosterAnswer,
    RosterChanged,
    RosterProblem,
    ShiftAnswer,
    SwapRequest,
)

log = structlog.get_logger("yingji", stage="api")
router = APIRouter(tags=["duty"])
READ = responses(401, 403, 404, 422)
MAX_SPAN = timedelta(days=62)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def known_unit(plan: Plan, unit_id: str) -> str:
    if unit_id not in plan.units:
        raise HTTPException(status_code=404, detail=f"unit_id: no unit {unit_id!r} in the plan")
    return plan.unit_name(unit_id)


def person_answer(book: DutyBook, person_id: str | None, user: UserRecord,
                  verified: Mapping[str, datetime]) -> PersonAnswer | None:
    """The person as `user` may see them; `verified`: IncidentView.verified (first 已阅 of a test message)."""
    person = book.roster().person(person_id) if person_id else None
    if person is None:
        return None
    contacts = person.contacts if can(user, "duty.contacts") else None
    at = verified.get(person.id)
    return PersonAnswer(id=person.id, name=person.name, unit_id=person.unit_id, post=person.post,
                        is_leader=person.is_leader, employment=person.employment, contacts=contacts,
                        contacts_verified=at is not None, verified_at=at.astimezone(SHANGHAI) if at else None)


def shift_answer(book: DutyBook, plan: Plan, s: Shift, user: UserRecord, verified: Mapping[str, datetime]) -> ShiftAnswer:
    return ShiftAnswer(unit_id=s.unit_id, unit=plan.unit_name(s.unit_id), post=s.post, post_name=POST_NAMES[s.post],
                       person=person_answer(book, s.person_id, user, verified), person_id=s.person_id,
                       start=s.start, end=s.end, source=s.source, ref=s.ref, row=s.row, column=s.column)


@router.get("/units/{unit_id}/duty", response_model=DutyAnswer, responses=READ)
async def who_is_on_duty(unit_id: UnitIdParam, plan: PlanDep, clock: ClockDep, book: DutyDep, view: ViewDep,
                         at: datetime | None = None, user: UserRecord = require("duty.read")) -> Any:
    """Person per post of the unit at `at` (now when absent): where the answer came from (rotation,
    值班表, override, swap, or a fallback along duty.yaml's chain), and why; each person with whether
    their contacts are verified (a test message acknowledged) and since when."""
    known_unit(plan, unit_id)
    when = plausible("at", at) if at is not None else clock.now()
    return duty_answer(book, plan, unit_id, when, user, view.verified)


def duty_answer(book: DutyBook, plan: Plan, unit_id: str, when: datetime, user: UserRecord,
                verified: Mapping[str, datetime]) -> DutyAnswer:
    """Who stands each post of the unit at `when` (the route's answer; the 值班表 page's top)."""
    roster, index = book.roster(), book.index_for(when)
    posts = []
    for post in (Post.leader, Post.chief, Post.officer):
        found = on_duty(roster, plan.duty, unit_id, post, when, in_force=index.in_force(when))
        posts.append(DutyPost(post=post, post_name=POST_NAMES[post],
                              person=person_answer(book, found.person.id if found.person else None, user, verified),
                              source=found.source, reasons=found.reasons,
                              shift=shift_answer(book, plan, found.shift, user, verified) if found.shift else None))
    return DutyAnswer(unit_id=unit_id, unit=plan.unit_name(unit_id), at=when.astimezone(SHANGHAI), posts=posts,
                      roster_kept=unit_id in book.records)


@router.get("/units/{unit_id}/roster", response_model=RosterAnswer, responses=READ)
async def unit_roster(unit_id: UnitIdParam, plan: PlanDep, clock: ClockDep, book: DutyDep, view: ViewDep,
                      start: Annotated[datetime | None, Query(alias="from")] = None,
                      end: Annotated[datetime | None, Query(alias="to")] = None,
                      user: UserRecord = require("duty.read")) -> Any:
    """The unit's shifts in [from, to) (this week from its Monday's shift change when absent; at most
    62 days), and every duty rule the roster breaks for the unit over the next 30 days."""
    known_unit(plan, unit_id)
    now = clock.now()
    start, end = span(start, end, now, plan)
    return roster_answer(book, plan, unit_id, start, end, now, user, view.verified)


def roster_answer(book: DutyBook, plan: Plan, unit_id: str, start: datetime, end: datetime, now: datetime,
                  user: UserRecord, verified: Mapping[str, datetime]) -> RosterAnswer:
    """The unit's shifts in [start, end) and the rules its roster breaks over the next 30 days from `now`."""
    roster = book.roster()
    mine = [s for s in shifts(roster, start, end) if s.unit_id == unit_id]
    problems = check(roster, plan.duty, plan.unit_names, now, only_units={unit_id})
    return RosterAnswer(unit_id=unit_id, unit=plan.unit_name(unit_id), start=start.astimezone(SHANGHAI), end=end.astimezone(SHANGHAI),
                        shifts=[shift_answer(book, plan, s, user, verified) for s in mine],
                        problems=[RosterProblem(rule=p.rule, message=p.message, row=p.row, column=p.column, field=p.field)
                                  for p in problems],
                        changed_at=book.records[unit_id].changed_at if unit_id in book.records else None,
                        changed_by=book.records[unit_id].changed_by if unit_id in book.records else None)


def bad_query(name: str, message: str) -> RequestValidationError:
    """A query parameter refused as FastAPI refuses one: a 422 Problem naming it (the answer the
    OpenAPI document declares for 422), not a bare {"detail"}."""
    return RequestValidationError([{"loc": ("query", name), "msg": message, "type": "value_error"}])


def plausible(name: str, t: datetime) -> datetime:
    """A time asked about: with its offset, and within 2000-2100 as every time people enter is (a
    year 9000 would have every rotation walk millions of days)."""
    if t.tzinfo is None:
        raise bad_query(name, "give the time with its offset (+08:00)")
    if not EARLIEST <= t < LATEST:
        raise bad_query(name, "must be between 2000 and 2100")
    return t


def span(start: datetime | None, end: datetime | None, now: datetime, plan: Plan,
         days: int = 7) -> tuple[datetime, datetime]:
    """[from, to) as asked; from: this week's Monday shift change when absent (the duty day: before
    08:30 it is still the day before's); to: `days` later. Refused past MAX_SPAN or reversed."""
    for name, t in (("from", start), ("to", end)):
        if t is not None:
            plausible(name, t)
    start = start or week_start(now, plan.duty)
    end = end or start + timedelta(days=days)
    if end <= start:
        raise bad_query("to", "must be after from")
    if end - start > MAX_SPAN:
        raise bad_query("to", f"at most {MAX_SPAN.days} days after from")
    return start, end


# --- changes: each checked whole against the duty rules, then one record per touched unit ----------


def refusal(problems: list[DutyProblem], error: str) -> JSONResponse:
    """422 naming each problem's row and column (a 值班表's cell) or field, with the rule it breaks."""
    fields = []
    for p in problems:
        where = f"row {p.row}, column {p.column}" if p.row is not None else (p.field or "roster")
        fields.append({"field": where, "message": p.message, "row": p.row, "column": p.column, "rule": p.rule})
    return invalid(fields, error=error)


def read_back(book: DutyBook) -> None:
    """A change is made on the roster in force: refused (503, nothing written) until it is read back."""
    if not book.caught_up.is_set():
        raise BrokerUnavailable("the rosters are still being read back from the broker")


async def up_to_date(book: DutyBook) -> None:
    """The rosters and the duty log read to their end as they are now, before a change is made on them:
    another API replica's change of a moment ago is in the roster this change is made on. (Two replicas
    changing one unit in the same few milliseconds: the later record on the log is the unit's roster.)"""
    if book.progress.consumer is not None:
        await book.progress.read_to_end()


async def change_roster(book: DutyBook, publisher: Publisher, make: Callable[[], Change], refused: str, *,
                        unreadable: str | None = None) -> Any:
    """A change made on the rosters read back, one at a time (the next is made on the roster this one
    leaves), kept whole or refused whole: 422 naming each problem, or `unreadable` for a file that
    cannot be read at all."""
    read_back(book)
    async with book.writing:
        await up_to_date(book)
        try:
            change = make()
        except TableRefused as exc:
            return refusal(exc.problems, refused)
        except ValueError as exc:
            if unreadable is None:
                raise
            return invalid([{"field": unreadable, "message": str(exc)}], error="the file cannot be read")
        return await keep(change, book, publisher)


async def keep(change: Change, book: DutyBook, publisher: Publisher) -> RosterChanged:
    """Every record acknowledged, then applied here (the next read sees it before the topic echoes it)."""
    for rec in change.records:
        await publisher.send(DUTY_ROSTERS.name, rec.unit_id, rec, what="the roster")
    for ev in change.events:
        await publisher.send(DUTY_LOG.name, ev.unit_id, ev, what="the duty log")
    for rec in change.records:
        book.apply_roster(rec)
    for ev in change.events:
        book.apply_event(ev)
    units = [r.unit_id for r in change.records]
    log.info("roster_changed", units=units, shifts=change.shifts, people=change.people)
    return RosterChanged(units=units, people=change.people, shifts=change.shifts, rotations=change.rotations,
                         changed_at=change.records[0].changed_at if change.records else datetime.now(SHANGHAI))


@router.post("/rosters", status_code=201, response_model=RosterChanged, responses=responses(401, 403, 413, 422, 503))
async def import_roster(file: Annotated[UploadFile, File(description="值班表.xlsx or .csv (columns: 日期, 班次, 单位, 带班领导, 值班主任, 值班员, 电话; an .xlsx may add a 人员 sheet), or .ics")],
                        plan: PlanDep, clock: ClockDep, book: DutyDep, publisher: PublisherDep,
                        unit_id: Annotated[str | None, Form(max_length=64, pattern=r"^[a-z][a-z0-9_]*$",
                                                            description="the unit, when the file has no 单位 column")] = None,
                        user: UserRecord = require("duty.manage")) -> Any:
    """Import a 值班表 (and its 人员 sheet) or an .ics: all of it kept, or nothing (422 naming each row and column)."""
    data = await file.read()
    return await change_roster(book, publisher, lambda: import_file(
        book, plan, data, file.filename or "upload", unit_id=unit_id, now=clock.now(), by=user.name),
        "the roster is refused: nothing of it was kept", unreadable="file")


@router.post("/units/{unit_id}/duty/overrides", status_code=201, response_model=RosterChanged,
             responses=responses(401, 403, 404, 413, 422, 503))
async def add_duty_override(unit_id: UnitIdParam, req: OverrideRequest, plan: PlanDep, clock: ClockDep, book: DutyDep,
                            publisher: PublisherDep, user: UserRecord = require("duty.manage")) -> Any:
    """代班: another person on a post for an interval, with who approved it; refused if it breaks a duty rule."""
    known_unit(plan, unit_id)
    return await change_roster(book, publisher, lambda: add_override(book, plan, unit_id, req, now=clock.now(), by=user.name),
                               "the override is refused")


@router.post("/units/{unit_id}/duty/swaps", status_code=201, response_model=RosterChanged,
             responses=responses(401, 403, 404, 413, 422, 503))
async def add_duty_swap(unit_id: UnitIdParam, req: SwapRequest, plan: PlanDep, clock: ClockDep, book: DutyDep,
                        publisher: PublisherDep, user: UserRecord = require("duty.manage")) -> Any:
    """换班: a planned shift stood by another person, with who approved it; refused if it breaks a duty rule."""
    known_unit(plan, unit_id)
    return await change_roster(book, publisher, lambda: add_swap(book, plan, unit_id, req, now=clock.now(), by=user.name),
                               "the swap is refused")


# --- handovers (交接班) ----------------------------------------------------------------------------


def person_ref(book: DutyBook, person_id: str | None) -> PersonRef | None:
    return PersonRef(id=person_id, name=book.name(person_id)) if person_id else None


def handover_answer(book: DutyBook, plan: Plan, view: IncidentView, state: HandoverState) -> HandoverAnswer:
    assert state.at is not None
    change = next((c for c in changes(book.roster(), state.unit_id, state.at, state.at + timedelta(microseconds=1))
                   if c.handover_id == state.handover_id), None)
    if state.confirmed:
        listed = {i.id: i for i in open_items(state.unit_id, change, open_incidents(view))} if change else {}
        items = [listed.get(i) or Item("incident" if ":" not in i else "obligation", i, i.split(":")[0], i) for i in state.items]
    else:
        items = open_items(state.unit_id, change, open_incidents(view)) if change else []
    return HandoverAnswer(
        handover_id=state.handover_id, unit_id=state.unit_id, unit=plan.unit_name(state.unit_id),
        at=state.at.astimezone(SHANGHAI), end=change.end.astimezone(SHANGHAI) if change and change.end else None,
        outgoing=person_ref(book, state.outgoing_id), incoming=person_ref(book, state.incoming_id),
        opened_at=state.opened_at, confirmed_at=state.confirmed_at, confirmed_by=state.confirmed_by,
        escalated_at=state.escalated_at,
        confirm_by=(state.at + timedelta(minutes=plan.duty.handover_confirm_minutes.value)).astimezone(SHANGHAI),
        items=[HandoverItem(kind=i.kind, id=i.id, incident_id=i.incident_id, text=i.text, due_at=i.due_at) for i in items])


@router.get("/units/{unit_id}/handovers", response_model=list[HandoverAnswer], responses=READ)
async def unit_handovers(unit_id: UnitIdParam, plan: PlanDep, book: DutyDep, view: ViewDep,
                         limit: Annotated[int, Query(ge=1, le=100)] = 10,
                         _: UserRecord = require("duty.read")) -> Any:
    """The unit's handovers, latest first: an open one with the items to take over as they stand now."""
    known_unit(plan, unit_id)
    return latest_handovers(book, plan, view, unit_id, limit)


def latest_handovers(book: DutyBook, plan: Plan, view: IncidentView, unit_id: str, limit: int) -> list[HandoverAnswer]:
    """The unit's handovers, latest first (the route's answer; the 值班表 page shows the first)."""
    mine = sorted((s for s in handovers(book.events).values() if s.unit_id == unit_id and s.at is not None),
                  key=lambda s: s.at, reverse=True)[:limit]
    return [handover_answer(book, plan, view, s) for s in mine]


@router.post("/handovers/{handover_id}/confirm", status_code=201, response_model=HandoverAnswer,
             responses=responses(401, 403, 404, 409, 413, 422, 503))
async def confirm_handover(handover_id: RecordIdParam, req: HandoverConfirmRequest, plan: PlanDep, clock: ClockDep,
                           book: DutyDep, view: ViewDep, publisher: PublisherDep,
                           user: UserRecord = require("duty.handover")) -> Any:
    """The incoming 值班员 confirms: what was listed (or the ids sent) is recorded as taken over, with
    the signed-in user who confirmed. Users are not linked to the directory's people: a confirmation
    on behalf of the rostered incoming 值班员 is recorded as theirs by that user; one naming another
    person is refused (403)."""
    read_back(book)
    async with book.writing:
        await up_to_date(book)
        state = handovers(book.events).get(handover_id)
        person_id = req.person_id or (state.incoming_id if state else None) or user.name
        listed = handover_answer(book, plan, view, state).items if state is not None and state.at is not None else []
        items = req.items or [i.id for i in listed]
        try:
            event = confirm(state, by=user.name, person_id=person_id, now=clock.now(), items=items)
        except HandoverRefused as exc:
            if exc.code in ("unknown", "not_opened"):
                raise HTTPException(status_code=404, detail=f"handover_id: {exc}") from None
            if exc.code == "already_confirmed":
                return conflict("handover_id", str(exc))
            raise HTTPException(status_code=403, detail=f"person_id: {exc}") from None
        await publisher.send(DUTY_LOG.name, event.unit_id, event, what="the confirmation")
        book.apply_event(event)
    log.info("handover_confirmed", unit=event.unit_id, handover_id=handover_id, by=user.name, items=len(items))
    return handover_answer(book, plan, view, handovers(book.events)[handover_id])


# --- the duty log (值班记录) ------------------------------------------------------------------------


@router.get("/units/{unit_id}/duty-log", response_model=DutyLogAnswer,
            responses={**READ, 200: {"content": {"text/csv": {}, XLSX: {}},
                                     "description": "JSON; or with format=csv / xlsx, the file to download"}})
async def duty_log_of(unit_id: UnitIdParam, plan: PlanDep, clock: ClockDep, book: DutyDep, view: ViewDep,
                      start: Annotated[datetime | None, Query(alias="from")] = None,
                      end: Annotated[datetime | None, Query(alias="to")] = None,
                      format: Annotated[str, Query(pattern="^(json|csv|xlsx)$")] = "json",
                      _: UserRecord = require("duty.read")) -> Any:
    """Per shift of the unit's 值班员, every incident received, report filed, breach, 督办, handover and
    roster change, in order; this week when no period is given. format=csv or xlsx downloads it."""
    unit = known_unit(plan, unit_id)
    start, end = span(start, end, clock.now(), plan)
    logs = unit_duty_log(book, view, unit_id, start, end)
    names = person_names(book)
    if format != "json":
        rows = log_rows(logs, plan.unit_names, names)
        stem = f"值班记录-{unit}-{start.astimezone(SHANGHAI):%Y%m%d}"
        data, media, ext = (write_csv(rows), "text/csv; charset=utf-8", "csv") if format == "csv" else \
            (write_xlsx({"值班记录": rows}), XLSX, "xlsx")
        return Response(data, media_type=media,
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(stem)}.{ext}"})
    lines = []
    for lg in logs:
        for e in lg.entries:
            lines.append(DutyLogLine(shift_start=lg.start, shift_end=lg.end, officer=person_ref(book, lg.officer_id),
                                     at=e.at.astimezone(SHANGHAI), kind=e.kind, kind_name=KIND_NAMES.get(e.kind, e.kind),
                                     ref=e.ref, text=e.text))
    return DutyLogAnswer(unit_id=unit_id, unit=unit, start=start.astimezone(SHANGHAI), end=end.astimezone(SHANGHAI),
                         lines=lines)


def unit_duty_log(book: DutyBook, view: IncidentView, unit_id: str, start: datetime, end: datetime) -> list[ShiftLog]:
    """The unit's 值班记录 in [start, end): its shifts overlapping the period, each with its entries;
    last, the entries of the period in no shift (the route's lines and files; the log page)."""
    shift_changes = changes(book.roster(), unit_id, start - timedelta(days=1), end)
    logs = [lg for lg in duty_log(unit_id, shift_changes, book.log_of(unit_id), incident_entries(view, unit_id))
            if (lg.start is None or lg.end is None or lg.end > start) and (lg.start is None or lg.start < end)]
    return [lg if lg.start is not None else lg.__class__(**{**lg.__dict__, "entries": tuple(
        e for e in lg.entries if start <= e.at < end)}) for lg in logs]


def person_names(book: DutyBook) -> dict[str, str]:
    return {p.id: p.name for p in book.roster().people}


# --- calendars ------------------------------------------------------------------------------------


ICS = "text/calendar; charset=utf-8"


def calendar(book: DutyBook, plan: Plan, clock_now: datetime, chosen: list[Shift], title: str, stem: str) -> Response:
    data = to_ics(chosen, names=person_names(book), units=plan.unit_names, title=title, stamp=clock_now)
    return Response(data, media_type=ICS, headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(stem)}.ics"})


@router.get("/units/{unit_id}/duty.ics", response_class=Response, responses={**READ, 200: {"content": {ICS: {}},
            "description": "the unit's shifts as an iCalendar file (RFC 5545), one event per shift and post"}})
async def unit_calendar(unit_id: UnitIdParam, plan: PlanDep, clock: ClockDep, book: DutyDep,
                        start: Annotated[datetime | None, Query(alias="from")] = None,
                        end: Annotated[datetime | None, Query(alias="to")] = None,
                        _: UserRecord = require("duty.read")) -> Any:
    """The unit's 值班表 as a calendar, from `from` (this week's Monday) for up to 62 days (a month when absent)."""
    unit = known_unit(plan, unit_id)
    start, end = span(start or clock.now(), end, clock.now(), plan, days=31)
    chosen = [s for s in shifts(book.roster(), start, end) if s.unit_id == unit_id]
    return calendar(book, plan, clock.now(), chosen, f"{unit} 值班表", f"值班表-{unit}")


@router.get("/people/{person_id}/duty.ics", response_class=Response, responses={**READ, 200: {"content": {ICS: {}},
            "description": "the person's shifts as an iCalendar file, to subscribe to in a phone's calendar"}})
async def person_calendar(person_id: RecordIdParam, plan: PlanDep, clock: ClockDep, book: DutyDep,
                          start: Annotated[datetime | None, Query(alias="from")] = None,
                          end: Annotated[datetime | None, Query(alias="to")] = None,
                          _: UserRecord = require("duty.read")) -> Any:
    """One person's shifts as a calendar (every unit and post they stand), a month ahead when no period is given."""
    person = book.roster().person(person_id)
    if person is None:
        raise HTTPException(status_code=404, detail=f"person_id: no person {person_id!r} in the directory")
    start, end = span(start or clock.now(), end, clock.now(), plan, days=31)
    chosen = [s for s in shifts(book.roster(), start, end) if s.person_id == person_id]
    return calendar(book, plan, clock.now(), chosen, f"{person.name} 值班", f"值班-{person.id}")


# --- a test message (issue 19 item 6) ---------------------------------------------------------------


def unverified_on_duty(book: DutyBook, plan: Plan, verified: Mapping[str, datetime], when: datetime) -> dict[str, int]:
    """Per unit with a roster kept: its people on duty at `when` (any post, its own roster: a fallback
    counts at the person's own unit) whose contacts are not verified. The API's /metrics sets
    yingji_duty_unverified_on_duty from it at each scrape."""
    roster, index = book.roster(), book.index_for(when)
    in_force = index.in_force(when)
    out = {}
    for unit_id in sorted(book.records):
        if unit_id not in plan.units:
            continue
        people = {found.person.id for post in (Post.leader, Post.chief, Post.officer)
                  if (found := on_duty(roster, plan.duty, unit_id, post, when, in_force=in_force)).person is not None
                  and found.source not in ("fallback", "nobody")}
        out[unit_id] = len(people - set(verified))
    return out


@router.post("/people/{person_id}/test-message", status_code=202, response_model=ContactTestAnswer,
             responses=responses(401, 403, 404, 413, 422, 503))
async def send_test_message(person_id: RecordIdParam, plan: PlanDep, clock: ClockDep, book: DutyDep,
                            view: ViewDep, publisher: PublisherDep,
                            user: UserRecord = require("duty.manage")) -> Any:
    """A test message to the person on every channel they have, each with its 「已阅」 link (the
    delivery stage sends it, as `yingji notify test` does); their 已阅 marks their contacts verified."""
    read_back(book)  # the directory as kept: an unknown person is only known once it is read back
    person = book.roster().person(person_id)
    if person is None:
        raise HTTPException(status_code=404, detail=f"person_id: no person {person_id!r} in the directory")
    unit = plan.unit_names.get(person.unit_id, person.unit_id)
    note = test_notice(person, unit, clock.now(), by=user.name)
    await publisher.send(NOTIFICATIONS_REQUESTED.name, note.dedup_key, note, what="the test message")
    # the broker has it: the ack link works at once, before the view reads it back
    view.apply(NOTIFICATIONS_REQUESTED.name, note.model_dump_json().encode())
    log.info("test_message_requested", dedup_key=note.dedup_key, unit=person.unit_id, by=user.name)
    return ContactTestAnswer(dedup_key=note.dedup_key, person_id=person.id)
