"""The 值班 pages (issue 18 "who is on duty"): the unit picker with who is on watch at the 24-hour
units now (/duty), a unit's 值班表 by day with its gaps and rule breaks, who is on duty now and the
latest 交接班 (/duty/{unit_id}), and its 值班记录 by shift (/duty/{unit_id}/log).

Thin: each reads what the JSON routes of services.web.routes.duty answer, through the same functions
(duty_answer, roster_answer, latest_handovers, unit_duty_log), and lays it out; 确认接班 is the page's
script calling POST /handovers/{id}/confirm, 发送测试消息 POST /people/{id}/test-message (duty.manage).
Each person on duty now carries 「联系方式未核实」 or 「已核实 HH:MM」 (a test message acknowledged).
Contacts show only where the answers carry them (the roles of duty.contacts). Days and times in Asia/Shanghai.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from playbooks.duty.log import ShiftLog, log_rows
from playbooks.duty.roster import SHANGHAI
from playbooks.duty.rules import Problem, check
from playbooks.plan import Plan
from services.web.auth import require_page
from services.web.permissions import can
from services.web.routes.duty import (
    duty_answer,
    latest_handovers,
    person_names,
    roster_answer,
    span,
    unit_duty_log,
)
from services.web.routes.params import UnitIdParam
from services.web.state import ClockDep, DutyDep, PagesDep, PlanDep, ViewDep
from topics.duty import POST_NAMES, Post
from topics.models import UserRecord
from topics.requests import HandoverAnswer, ShiftAnswer

router = APIRouter(include_in_schema=False)

POSTS = (Post.leader, Post.chief, Post.officer)  # the 值班表's columns, as the plan orders them
WEEKDAYS = "一二三四五六日"
SOURCE_LABEL = {"rotation": "轮班", "table": "值班表", "override": "代班", "swap": "换班", "fallback": "递补",
                "nobody": "无人"}
RULE_LABEL = {"no_gap": "空岗", "leader_on_watch": "无带班领导", "no_informal": "非正式人员值班",
              "seconded_not_alone": "借调人员独立值班", "one_place_at_a_time": "一人多岗",
              "reference": "引用有误", "input": "无法读取"}
ITEM_LABEL = {"incident": "未结事件", "obligation": "到期报送", "notice": "未确认通知"}


def local(t: datetime) -> datetime:
    return t.astimezone(SHANGHAI)


def hhmm(t: datetime) -> str:
    return local(t).strftime("%Y-%m-%d %H:%M")


def day_start(plan: Plan, d: date) -> datetime:
    """A duty day begins at the shift change (duty.yaml)."""
    return datetime.combine(d, plan.duty.shift_change.value, SHANGHAI)


def times(start: datetime, end: datetime, day: date) -> str:
    """A shift's times as read on its day's row: 08:30–次日08:30, 11-30 08:30–12-07 08:30."""
    def one(t: datetime) -> str:
        t = local(t)
        if t.date() == day:
            return t.strftime("%H:%M")
        if t.date() == day + timedelta(days=1):
            return f"次日{t:%H:%M}"
        return t.strftime("%m-%d %H:%M")
    return f"{one(start)}–{one(end)}"


@dataclass
class Cell:
    shifts: list[tuple[ShiftAnswer, str]] = field(default_factory=list)  # each with its times on the row
    problems: list[tuple[Problem, str]] = field(default_factory=list)  # each with its interval on the row


@dataclass
class Day:
    start: datetime
    label: str
    today: bool
    cells: dict[Post, Cell]

    @property
    def bad(self) -> bool:
        return any(c.problems for c in self.cells.values())


def grid(plan: Plan, unit_id: str, first: datetime, days: int, shifts: list[ShiftAnswer], problems: list[Problem],
         now: datetime) -> list[Day]:
    """One row per duty day, a cell per post: the shifts overlapping it, the problems of its post in it."""
    out = []
    for i in range(days):
        start = first + timedelta(days=i)
        end = start + timedelta(days=1)
        d = local(start).date()
        cells = {post: Cell() for post in POSTS}
        for s in shifts:
            if s.start < end and s.end > start and s.post in cells:
                cells[s.post].shifts.append((s, times(s.start, s.end, d)))
        for p in problems:
            if p.unit_id == unit_id and p.post in cells and p.start and p.end and p.start < end and p.end > start:
                when = times(max(p.start, start), min(p.end, end), d)
                cell = cells[p.post]
                # one line per rule and interval (no 带班领导 is found once per other post's shift)
                if not any(q.rule == p.rule and t == when for q, t in cell.problems):
                    cell.problems.append((p, when))
        out.append(Day(start, f"{d:%m-%d} 周{WEEKDAYS[d.weekday()]}", start <= now < end, cells))
    return out


def handover_status(h: HandoverAnswer, now: datetime) -> tuple[str, str]:
    """(state, words): 待确认, 已确认 by whom and when, 已报带班领导."""
    if h.confirmed_at is not None:
        late = "；逾期确认，此前已报带班领导" if h.escalated_at else ""
        return "confirmed", f"已确认（{h.confirmed_by}，{hhmm(h.confirmed_at)}{late}）"
    if h.escalated_at is not None:
        return "escalated", f"已报带班领导（{hhmm(h.escalated_at)}，交班后仍未确认），待确认"
    if now >= h.confirm_by:
        return "overdue", f"待确认（已过确认时限 {hhmm(h.confirm_by)}）"
    return "open", f"待确认（{hhmm(h.confirm_by)} 前）"


def not_found(request: Request, pages: Any, who: UserRecord, unit_id: str) -> HTMLResponse:
    return pages.render(request, "not_found.html", user=who, status_code=404, what="单位", thing_id=unit_id)


@router.get("/duty", response_class=HTMLResponse)
async def duty_index(request: Request, pages: PagesDep, plan: PlanDep, clock: ClockDep, book: DutyDep, view: ViewDep,
                     who: UserRecord | Response = require_page("duty.read")) -> Response:
    if isinstance(who, Response):
        return who
    now = clock.now()
    watch = [duty_answer(book, plan, u, now, who, view.verified) for u in plan.duty.twenty_four_hour_units.value if u in plan.units]
    kept = [u for u in plan.units.values() if u.id in book.records]
    return pages.render(request, "duty_index.html", user=who, watch=watch, kept=kept, units=list(plan.units.values()),
                        source_label=SOURCE_LABEL, now=local(now), config={"server_time": now.isoformat()})


@router.get("/duty/{unit_id}", response_class=HTMLResponse)
async def duty_table(request: Request, unit_id: UnitIdParam, pages: PagesDep, plan: PlanDep, clock: ClockDep,
                     book: DutyDep, view: ViewDep,
                     start: Annotated[date | None, Query(alias="from", description="the first day (YYYY-MM-DD)")] = None,
                     weeks: Annotated[int, Query(ge=1, le=5)] = 1,
                     who: UserRecord | Response = require_page("duty.read")) -> Response:
    if isinstance(who, Response):
        return who
    if unit_id not in plan.units:
        return not_found(request, pages, who, unit_id)
    now = clock.now()
    first = day_start(plan, start) if start else span(None, None, now, plan)[0]
    end = first + timedelta(weeks=weeks)
    roster = roster_answer(book, plan, unit_id, first, end, now, who, view.verified)
    # the period shown, checked by the same rules (the answer's problems look 30 days ahead of now)
    problems = check(book.roster(), plan.duty, plan.unit_names, now, only_units={unit_id}, window=(first, end))
    shown = {p.message for p in problems}
    ahead = [p for p in roster.problems if p.message not in shown]
    handover = next(iter(latest_handovers(book, plan, view, unit_id, 1)), None)
    status = handover_status(handover, now) if handover else None
    can_confirm = bool(handover and can(who, "duty.handover") and handover.confirmed_at is None)
    this_month = local(now).date().replace(day=1)
    first_day = local(first).date()

    def page(d: date, w: int) -> str:
        return f"/duty/{unit_id}?{urlencode({'from': d.isoformat(), 'weeks': w})}"

    links = {"prev": page(first_day - timedelta(weeks=1), weeks), "next": page(first_day + timedelta(weeks=1), weeks),
             "week": f"/duty/{unit_id}", "month": page(this_month, 5),
             "ics": f"/units/{unit_id}/duty.ics",
             "log": f"/duty/{unit_id}/log?{urlencode({'from': first_day.isoformat(), 'to': local(end).date().isoformat()})}"}
    can_test = can(who, "duty.manage")  # 发送测试消息: POST /people/{id}/test-message
    config = {"server_time": now.isoformat(), "unit_id": unit_id,
              "handover_id": handover.handover_id if handover else None, "can_confirm": can_confirm}
    return pages.render(
        request, "duty.html", user=who, unit=roster.unit, unit_id=unit_id, first=local(first), end=local(end),
        weeks=weeks, now=local(now), current=duty_answer(book, plan, unit_id, now, who, view.verified),
        days=grid(plan, unit_id, first, 7 * weeks, roster.shifts, problems, now), posts=POSTS, post_names=POST_NAMES,
        problems=problems, ahead=ahead, rule_label=RULE_LABEL, source_label=SOURCE_LABEL, handover=handover,
        status=status, can_confirm=can_confirm, can_test=can_test, item_label=ITEM_LABEL, links=links, config=config, hhmm=hhmm,
        roster_kept=unit_id in book.records)


@dataclass
class LogLine:
    at: str
    kind: str
    kind_name: str
    ref: str
    incident: bool  # ref is an incident id: linked to its page
    text: str


@dataclass
class LogShift:
    title: str
    officer: str
    lines: list[LogLine]


def log_shifts(logs: list[ShiftLog], units: dict[str, str], names: dict[str, str]) -> list[LogShift]:
    """Each shift with its lines as the export writes them (log_rows: the people named, 北京时间)."""
    out = []
    for lg in logs:
        rows = log_rows([lg], units, names)[1:]
        if lg.start is None:
            title, officer = "班次外", ""
        else:
            title, officer = f"{rows[0][0]} – {rows[0][1] or '…'}", rows[0][2]
        lines = [LogLine(at=r[3], kind=e.kind, kind_name=r[4], ref=r[5], incident=e.event is None, text=r[6])
                 for r, e in zip(rows, lg.entries)]
        out.append(LogShift(title, officer, lines))
    return out


@router.get("/duty/{unit_id}/log", response_class=HTMLResponse)
async def duty_log_page(request: Request, unit_id: UnitIdParam, pages: PagesDep, plan: PlanDep, clock: ClockDep,
                        book: DutyDep, view: ViewDep,
                        start: Annotated[date | None, Query(alias="from", description="the first day (YYYY-MM-DD)")] = None,
                        end: Annotated[date | None, Query(alias="to", description="the day after the last (YYYY-MM-DD)")] = None,
                        who: UserRecord | Response = require_page("duty.read")) -> Response:
    if isinstance(who, Response):
        return who
    if unit_id not in plan.units:
        return not_found(request, pages, who, unit_id)
    now = clock.now()
    first, last = span(day_start(plan, start) if start else None, day_start(plan, end) if end else None, now, plan)
    shifts = log_shifts(unit_duty_log(book, view, unit_id, first, last), plan.unit_names, person_names(book))
    period = {"from": first.isoformat(), "to": last.isoformat()}
    downloads = {fmt: f"/units/{unit_id}/duty-log?{urlencode({**period, 'format': fmt})}" for fmt in ("xlsx", "csv")}
    return pages.render(request, "duty_log.html", user=who, unit=plan.unit_name(unit_id), unit_id=unit_id,
                        first=local(first), last=local(last), shifts=shifts, downloads=downloads,
                        back=f"/duty/{unit_id}?{urlencode({'from': local(first).date().isoformat()})}",
                        config={"server_time": now.isoformat()})
