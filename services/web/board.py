"""What the command-center board (指挥中心态势大屏) shows, and the event stream that feeds it.

`GET /board/stream` (Server-Sent Events, through sse-starlette) sends a snapshot of every open
incident (its first event the first screen of rows for the view, filters and search on the stream's
URL, in the order the page shows them; the other rows in `rows` events after it: board_snapshot), the
trends, then each change of the API's read model as it happens (coalesced over 0.1 s; the changed
rows only), and a fresh snapshot whenever the stream fell behind. The browser reconnects by itself
and every (re)connection starts with a snapshot, so the page catches up after a drop. Rows carry no personal data (the
reporter and summary are only ever sealed, and the board never asks for them). After each snapshot, and
whenever it changes, the plan in force for the header (`plan`: the version, and the adoption in force as
GET /plan's history shows it: when, by whom, why, whether a rollback; issue 24 item 3).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import math
import re
import time
from datetime import datetime, timedelta, timezone
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, NamedTuple
from zoneinfo import ZoneInfo

from sse_starlette import JSONServerSentEvent, ServerSentEvent

from services.drill_book import DrillBook
from services.plan_book import change_text
from services.web.district_map import grid_version
from services.view import IncidentView

if TYPE_CHECKING:
    from playbooks.plan import Plan
    from playbooks.warning.rules import WarningsFile
    from services.plan_book import PlanBook
    from services.view import IncidentReadModel
    from services.warnings.book import WarningBook

Warnings = Callable[[], list[dict[str, Any]]]  # the active warnings as the board shows them
PlanShown = Callable[[], dict[str, Any]]  # the plan in force as the board's header shows it (plan_shown)

RECONNECT_MS = 1000  # the browser's EventSource waits this long before it reconnects
TICK_S = 1.0  # a running drill's simulated clock goes out this often
SHOWN_DRILL_S = 3600.0  # a drill run ended longer ago than this is off the board (GET /drills lists every one)
KEEPALIVE_S = 15.0  # and a ping, so proxies, dead peers and the page's watchdog notice
COALESCE_S = 0.1  # changes arriving together (a decision opens several obligations) go out as one message
FEED_KINDS = frozenset({"breach", "escalation", "obligation_late", "regraded", "level_adjusted"})
FEED_SIZE = 60
FIRST_ROWS = 60  # the snapshot's first event: the first screen of rows (a 1080-px screen holds about 12)
CHUNK_ROWS = 1000  # then the other rows, this many an event: the page takes each in a short task
LEVEL_RANK = {"一级": 3, "二级": 2, "三级": 1}  # as common.js's YJ.LEVEL_RANK
VIEWS = ("live", "drill", "all")
GROUPS = ("street", "unit", "level")  # board.js's groupings (its URL's `group`)
FACETS = ("state", "level", "grade", "category", "type", "street", "unit")  # board.js's FACETS, its URL's keys
DUE_SOON_S = 600.0  # board.js's DUE_SOON_MS
STATE_SLACK_S = 60.0  # the page's clock may be ahead of ours: a row about to fall due is kept for 已超时
TREND_FRESH_S = 10.0  # the trends are computed at most this often (they count hours; a snapshot does not wait on them)
TREND_HOURS = 24  # issue 21 item 4: incidents per hour over the last 24 hours
TREND_EVERY_S = 30.0  # the trends go out again this often when they changed (an hour turns, a breach lands)
PLAN_CHANGES_SHOWN = 3  # the plan notice names this many of a revision's changes, then their count
TREND_KINDS = {"breach": "breaches", "escalation": "escalations"}  # 超时未报 and 督办 (逐级上报) per hour
BEIJING = ZoneInfo("Asia/Shanghai")  # "today" and the hours are the duty room's (people read them)
_NOTE = re.compile(r"（[^（）]*）$")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def chip_label(label: str) -> str:
    """An obligation as a board chip names it: the plan's label without its closing note
    (信息发布（24小时内） → 信息发布); the incident's page shows the whole label."""
    return _NOTE.sub("", label)


def notice_counts(st: IncidentReadModel) -> tuple[int, int]:
    """(无法送达, 未阅): the incident's notices with an undeliverable step, and those nobody has
    acknowledged yet; a handover's or a test message's are no incident's and left out."""
    undeliverable = unacked = 0
    for key in {*st.notifications, *st.deliveries}:
        status = st.deliveries.get(key)
        note = st.notifications.get(key) or (status.notice if status else None)
        if note is not None and note.kind in ("handover", "test", "warning", "rectification"):
            continue
        if status is not None and status.undeliverable:
            undeliverable += 1
        if status is None or not status.acks:
            unacked += 1
    return undeliverable, unacked


def board_row(st: IncidentReadModel) -> dict[str, Any] | None:
    """One incident as the board shows it: no reporter, no summary, no address. What its events say
    (obligations, approval, end) is read from the one fold of them, playbooks.fold."""
    if st.reported is None:
        return None
    rep = st.reported.report
    dec = st.decided.decision if st.decided else None
    fold = st.fold
    labels = {o.kind.value: o.label for o in dec.obligations} if dec else {}
    last = st.events[max(st.events)] if st.events else None
    undeliverable, unacked = notice_counts(st)
    obligations = [
        {
            "kind": ob.kind,
            "label": chip_label(labels.get(ob.kind, ob.kind)),
            "status": ob.status,
            "due_at": ob.due_at.isoformat() if ob.due_at else None,
            "escalation_step": ob.escalation_step,
            "minutes_late": ob.minutes_late,
        }
        for ob in fold.obligations.values()
        if ob.status != "closed"
    ]
    return {
        "id": st.incident_id,
        "drill": rep.drill,
        "status": "ended" if fold.ended else ("decided" if dec else "reported"),
        "ended_at": _iso(fold.ended_at),
        "type": dec.type_name if dec else rep.type,
        "type_id": dec.type_id if dec else rep.type,
        "category": dec.category_name if dec else "",
        "grade": dec.grade.value if dec else None,
        "level": dec.response_level.value if dec else None,
        "lead_units": list(dec.lead_units) if dec else [],
        "commanders": [{"role": c.role, "who": c.who} for c in dec.commanders] if dec else [],
        "street": rep.location.street,
        "key_area": list(rep.location.key_area),
        "occurred_at": _iso(rep.occurred_at),
        "received_at": _iso(rep.received_at),
        "obligations": obligations,
        "breached": any(o["status"] == "missed" for o in obligations),
        "needs_approval": bool(dec and dec.needs_approval_for_city_report and not fold.approved),
        "approval_requested_at": fold.approval_requested_at.isoformat() if fold.approval_requested_at else None,
        "clock_at": _iso(last.recorded_at) if last else _iso(st.reported.accepted_at),
        "notices_undeliverable": undeliverable,
        "notices_unacked": unacked,
    }


_UNBUILT: Any = object()


class Shown:
    """What the board shows of an incident at one rev, each part made when first asked for, once per
    change of the incident for every board watching: its row (never changed after it is built: each
    change builds a new one), the row as JSON, what orders and filters it (Facts), its feed events."""

    __slots__ = ("rev", "row", "json", "facts", "feed", "feed_n")

    def __init__(self, rev: int) -> None:
        self.rev = rev
        self.row: dict[str, Any] | None = _UNBUILT
        self.json: str | None = None
        self.facts: Facts | None = None
        self.feed: list[tuple[datetime, int, Any]] | None = None
        self.feed_n = -1  # the number of the incident's events the feed was taken from


def _shown(st: IncidentReadModel) -> Shown:
    old = st.shown
    if old is None or old.rev != st.rev:
        st.shown = Shown(st.rev)
        if old is not None and old.feed is not None and old.feed_n == len(st.events):
            # events are only ever added: a change that added none (a delivery, a decision) keeps the feed
            st.shown.feed, st.shown.feed_n = old.feed, old.feed_n
    return st.shown


def shown_row(st: IncidentReadModel) -> dict[str, Any] | None:
    """The board's row of an incident, built once per change of it for every board watching."""
    shown = _shown(st)
    if shown.row is _UNBUILT:
        shown.row = board_row(st)
    return shown.row


def dumps(value: Any) -> str:
    """JSON as the stream sends it (sse-starlette's JSONServerSentEvent's own choices, compact)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def shown_json(st: IncidentReadModel) -> str | None:
    """The row as JSON text, encoded once per change for every board: a snapshot of 5,000 rows is then
    a join of texts (encoding 5.4 MB took 200-470 ms of the API's event loop per board that loaded)."""
    row = shown_row(st)
    shown = _shown(st)
    if row is not None and shown.json is None:
        shown.json = dumps(row)
    return shown.json


def shown_feed(st: IncidentReadModel) -> list[tuple[datetime, int, Any]]:
    """The incident's events the feed shows, as (recorded_at, seq, event), kept per change of it: a
    snapshot then looks at these, not at every event of thousands of incidents (270 ms a load at 5,000)."""
    shown = _shown(st)
    if shown.feed is None:
        shown.feed = [(e.recorded_at, e.seq, e) for e in st.events.values() if e.kind.value in FEED_KINDS]
        shown.feed_n = len(st.events)
    return shown.feed


class Facts(NamedTuple):
    """What orders a row and what the page's filters read of it, as board.js's makeEntry reads them,
    taken from the read model as board_row takes them (without building the row: in a storm every
    incident changes between two loads, and the first event ranks them all)."""

    id: str
    drill: bool
    ended: bool
    breached: bool
    due: float  # the earliest due time (epoch s) of an open or missed obligation; inf when none
    level: int  # LEVEL_RANK: 一级 3 … 0 undecided
    received: float
    clock_at: float
    text: str  # what the search looks in, lower-cased
    values: dict[str, list[str]]
    grade: str | None
    needs_approval: bool
    st: IncidentReadModel  # the notices' counts are read from it only for a filter on them


def _epoch(text: str | None) -> float:
    return datetime.fromisoformat(text).timestamp() if text else 0.0


def shown_facts(st: IncidentReadModel) -> Facts | None:
    if st.reported is None:
        return None
    shown = _shown(st)
    if shown.facts is None:
        rep = st.reported.report
        dec = st.decided.decision if st.decided else None
        fold = st.fold
        pending = [ob for ob in fold.obligations.values() if ob.status != "closed"]
        dues = [ob.due_at.timestamp() for ob in pending if ob.status in ("open", "missed") and ob.due_at]
        level = dec.response_level.value if dec else None
        grade = dec.grade.value if dec else None
        type_ = dec.type_name if dec else rep.type
        category = dec.category_name if dec else ""
        units = list(dec.lead_units) if dec else []
        street = rep.location.street
        last = st.events[max(st.events)].recorded_at if st.events else st.reported.accepted_at
        shown.facts = Facts(
            id=st.incident_id, drill=rep.drill, ended=fold.ended, breached=any(ob.status == "missed" for ob in pending),
            due=min(dues, default=math.inf), level=LEVEL_RANK.get(level or "", 0), received=rep.received_at.timestamp(),
            clock_at=last.timestamp() if last else 0.0,
            text=" ".join([st.incident_id, type_, category, street or "", *units, *rep.location.key_area]).lower(),
            values={"level": [level or "研判中"], "grade": [grade or "研判中"], "category": [category or "研判中"],
                    "type": [type_], "street": [street or "未明确"], "unit": units or ["研判中"]},
            grade=grade, needs_approval=bool(dec and dec.needs_approval_for_city_report and not fold.approved), st=st)
    return shown.facts


def need_key(f: Facts, now: float) -> tuple:
    """board.js's rank(): what needs a person first. Overdue (the highest level first), then due
    soonest, then level, then the newest; then the id."""
    overdue = not f.ended and (f.breached or f.due < now)
    return (2 if f.ended else (0 if overdue else 1), -f.level if overdue else 0, f.due, -f.level, -f.received, f.id)


@dataclass(frozen=True)
class BoardQuery:
    """The page's view, filters and search as its URL holds them (board.js readUrl), sent on the
    stream's URL so that the snapshot's first event carries the first screen of what the page will
    show. It only chooses which rows go first: it keeps every row the page would keep (where the page
    knows more, e.g. 上次查看后新增 or a drill's own clock, it keeps more), and the page filters again."""

    view: str = "live"
    facets: tuple[tuple[str, frozenset[str]], ...] = ()
    words: tuple[str, ...] = ()
    q: str = ""  # the search as typed (board.js's query), which `words` is read from
    grouped: bool = False  # the page groups its rows (its URL's `group`): headers count every row

    @classmethod
    def from_params(cls, params: Any, default_view: str = "live") -> BoardQuery:
        view = params.get("view")
        facets = tuple((k, frozenset(v for v in params.getlist(k) if v)) for k in FACETS)
        q = (params.get("q") or "").strip()
        return cls(view=view if view in VIEWS else default_view, facets=tuple((k, v) for k, v in facets if v),
                   words=tuple(q.lower().split()), q=q, grouped=params.get("group") in GROUPS)

    @property
    def server_ranks(self) -> bool:
        """Whether the server alone knows which rows the page shows first, so it can draw them (the
        page's inline first screen): not when the page groups them, nor when a filter reads what only the
        page knows (when its user last looked; a drill's clock, ticking in the page between runs' ticks)."""
        states = dict(self.facets).get("state", frozenset())
        return not self.grouped and "new" not in states and not (
            self.view != "live" and states & {"overdue", "due_soon"})

    def as_page(self) -> dict[str, Any]:
        """The query as board.js holds it (view, filters, search): the page draws the inline rows only
        when they were ranked for its own (its view may come from its localStorage, not the URL)."""
        return {"view": self.view, "filters": {k: sorted(v) for k, v in self.facets}, "q": self.q}

    def keeps(self, f: Facts, now: float) -> bool:
        if self.view != "all" and (self.view == "drill") != f.drill:
            return False
        if self.words and not all(w in f.text for w in self.words):
            return False
        chosen = dict(self.facets)
        states = chosen.pop("state", None)
        if not states:
            if f.ended:
                return False
        elif not self._state(f, states, now):
            return False
        return all(any(v in want for v in f.values[k]) for k, want in chosen.items())

    @staticmethod
    def _state(f: Facts, states: frozenset[str], now: float) -> bool:
        if f.ended:  # on the board only the day it ended
            return "ended_today" in states
        if "new" in states or (f.drill and states & {"overdue", "due_soon"}):
            return True  # what the page alone knows: when its user last looked, a drill's clock
        late = f.breached or f.due < now + STATE_SLACK_S
        if (("overdue" in states and late) or ("due_soon" in states and f.due <= now + DUE_SOON_S + STATE_SLACK_S)
                or ("approval" in states and f.needs_approval) or ("undetermined" in states and f.grade == "未判明")):
            return True
        if states & {"unacked", "undeliverable"}:
            undeliverable, unacked = notice_counts(f.st)
            return bool(("unacked" in states and unacked) or ("undeliverable" in states and undeliverable))
        return False


def _feed_item(st: IncidentReadModel, event: dict[str, Any]) -> dict[str, Any]:
    rep = st.reported.report if st.reported else None
    dec = st.decided.decision if st.decided else None
    return {
        "incident_id": st.incident_id,
        "drill": bool(rep and rep.drill),
        "kind": event["kind"],
        "at": event["at"],
        "recorded_at": event["recorded_at"],
        "reason": event["reason"],
        "section": event.get("section"),
        "obligation": event.get("obligation"),
        "step": (event.get("details") or {}).get("step"),
        "type": dec.type_name if dec else (rep.type if rep else ""),
        "street": rep.location.street if rep else None,
        "level": dec.response_level.value if dec else None,
        "lead_units": list(dec.lead_units) if dec else [],
    }


def drill_runs(drills: DrillBook, *, wall_now: float | None = None) -> list[dict[str, Any]]:
    """Drill runs from the log (whichever replica runs them) that are running or ended within the hour,
    each with its simulated time now — estimated from the run's start and speed while it runs — and the
    incidents it raises, so the board shows drill rows on their own clock."""
    wall_now = time.time() if wall_now is None else wall_now
    out = []
    for run in list(drills.runs.values()):
        try:
            status, speed = run.status.value, float(run.speed)
            if status == "running" and drills.runner_lost(run, datetime.fromtimestamp(wall_now, timezone.utc)):
                status = "failed"  # nobody runs it any more (services/drill_book.py): not 演练进行中
            if status != "running" and wall_now - run.at.timestamp() > SHOWN_DRILL_S:
                continue
            sim = run.simulated_now or run.start
            if status == "running":
                estimate = run.start + timedelta(seconds=(wall_now - run.started_at.timestamp()) * speed)
                sim = max(sim, min(estimate, run.end))
            out.append({"run_id": run.run_id, "name": run.name, "speed": speed, "status": status,
                        "simulated_now": _iso(sim), "end": _iso(run.end), "incidents": list(run.incidents)})
        except Exception:  # noqa: BLE001 - a run the board cannot read is not shown; the drill goes on
            continue
    return out


def warning_rows(book: WarningBook, config: WarningsFile, plan: Plan) -> list[dict[str, Any]]:
    """The active (issued, not lifted) warnings, highest level first: each in its colour beside the
    incidents (issue 20 item 3). A warning is no incident: it has no row of the incidents' table."""
    out = []
    for st in book.active():
        c = st.content
        if c.level is None:
            continue
        lv = config.level(c.level)
        cat = config.category(c.category or "")
        out.append({
            "id": st.warning_id, "drill": st.drill, "level": c.level.value, "rank": lv.rank,
            "level_name": lv.name, "grade": lv.grade, "category": cat.name if cat else (c.category or ""),
            "area": [plan.unit_name(a) if a in plan.units else a for a in c.area],
            "area_ids": list(c.area),  # the map colours a street's cell by its id, or the district when no street is named
            "issuer": plan.unit_name(c.issuer) if c.issuer and c.issuer in plan.units else (c.issuer or ""),
            "issued_at": _iso(c.issued_at), "start": _iso(c.start), "hazards": c.hazards[:200],
        })
    out.sort(key=lambda w: (-w["rank"], w["issued_at"] or ""))
    return out


def on_board(st: IncidentReadModel, now: datetime) -> bool:
    """Open, or ended today (Beijing's day, issue 21's 今日已结束 filter); a drill's incident ended on its
    own simulated day stays while its run is shown."""
    ended = st.fold.ended_at
    if ended is None:
        return True
    if st.reported is not None and st.reported.report.drill:
        return False
    return ended.astimezone(BEIJING).date() == now.astimezone(BEIJING).date()


def snapshot(view: IncidentView, incident: str | None = None, drills: list | None = None,
             warnings: Warnings | None = None, trends: dict[str, Any] | None = None) -> dict[str, Any]:
    if incident is not None:
        st = view.incidents.get(incident)
        row = shown_row(st) if st else None
        return {"server_time": _now(), "rows": [row] if row else [], "feed": [], "drills": drills or []}
    now = datetime.now(timezone.utc)
    rows, items = _on_board(view, now, shown_row)
    body = {"server_time": _iso(now), "rows": rows, "feed": items, "drills": drills or [],
            "warnings": warnings() if warnings else []}
    if trends is not None:
        body["trends"] = trends
    return body


def _on_board(view: IncidentView, now: datetime, row_of: Callable) -> tuple[list, list[dict[str, Any]]]:
    """The rows on the board (as row_of gives them) and the latest feed items of the open ones."""
    rows, feed = [], []
    for st in view.incidents.values():
        if not on_board(st, now):
            continue
        row = row_of(st)
        if row is None:
            continue
        rows.append(row)
        if st.fold.ended_at is None:
            feed.append(st)
    return rows, latest_feed(feed)


def latest_feed(open_states: list[IncidentReadModel]) -> list[dict[str, Any]]:
    """The latest FEED_SIZE feed items of these incidents, oldest first: thousands of incidents have
    tens of thousands of breaches and steps, and only the latest are sent."""
    latest = heapq.nlargest(FEED_SIZE, ((t, seq, st, e) for st in open_states for t, seq, e in shown_feed(st)),
                            key=lambda f: (f[0], f[1]))
    return [_feed_item(st, e.model_dump(mode="json")) for _, _, st, e in reversed(latest)]


def _drill_clocks(rows: list[Facts], drills: list[dict[str, Any]]) -> tuple[dict[str, float], float]:
    """A drill row's "now" as board.js's drillNow() has it: its run's simulated time, or else the
    latest clock of the drill rows of no run."""
    runs = {iid: _epoch(d["simulated_now"]) for d in drills for iid in d["incidents"]}
    other = max((f.clock_at for f in rows if f.drill and f.id not in runs), default=time.time())
    return runs, other


class Ranked(NamedTuple):
    """The incidents on the board and the first `size` the page's query keeps, in the page's order."""

    states: list[IncidentReadModel]  # every incident on the board
    open_states: list[IncidentReadModel]  # of them, the open ones (the feed's)
    first: list[int]  # indices into states: the first screen, what needs a person first
    cut: bool  # the query kept more than `first` holds
    clock: dict[str, float]  # the "now" (epoch s) each first row is ranked at: a drill's is its run's
    counts: dict[str, int]  # board.js's drawTiles' figures: the tiles, 显示 N 起, 实战 / 演练


def board_counts(facts: list[Facts], kept: list[int], clock: Callable[[Facts], float]) -> dict[str, int]:
    """What board.js's drawTiles shows, counted here for the page's first paint (the script counts
    again once every row has come): of the rows the query keeps, the open ones by level, breached,
    due within 10 minutes; how many it keeps; the open live and drill incidents, filters aside."""
    out = {"open": 0, "l1": 0, "l2": 0, "l3": 0, "breach": 0, "due": 0, "shown": len(kept), "live": 0, "drill": 0}
    for f in facts:
        if not f.ended:
            out["drill" if f.drill else "live"] += 1
    for i in kept:
        f = facts[i]
        if f.ended:
            continue
        out["open"] += 1
        if f.level:
            out[f"l{4 - f.level}"] += 1
        out["breach"] += f.breached
        t = clock(f)
        out["due"] += t <= f.due <= t + DUE_SOON_S
    return out


def rank_first(view: IncidentView, query: BoardQuery, drills: list[dict[str, Any]], now: datetime,
               size: int) -> Ranked:
    """The first screen of the board for a query: the one ranking the stream's first event and the
    page's inline rows (first_screen.py) both take, so the two never disagree. Ranks from the read
    model's Facts, without building a row."""
    states, open_states, facts = [], [], []
    for st in view.incidents.values():
        if not on_board(st, now):
            continue
        f = shown_facts(st)
        if f is None:
            continue
        states.append(st)
        facts.append(f)
        if st.fold.ended_at is None:
            open_states.append(st)
    runs, drill_other = _drill_clocks(facts, drills)
    wall = now.timestamp()

    def clock(f: Facts) -> float:
        return (runs.get(f.id, drill_other) if f.drill else wall)

    kept = [i for i, f in enumerate(facts) if query.keeps(f, clock(f))]
    first = heapq.nsmallest(size, kept, key=lambda i: need_key(facts[i], clock(facts[i])))
    return Ranked(states, open_states, first, len(kept) > len(first), {facts[i].id: clock(facts[i]) for i in first},
                  board_counts(facts, kept, clock))


def board_snapshot(view: IncidentView, query: BoardQuery, drills: list | None = None,
                   warnings: Warnings | None = None, now: datetime | None = None) -> Iterator[ServerSentEvent]:
    """The board's snapshot as the stream sends it. First a `snapshot` event: the first FIRST_ROWS rows
    the page's query keeps, in the order the page shows them (what needs a person first), with the feed,
    the drills and the warnings; `more` says how many rows follow and `cut` whether the query kept
    more than were sent. Then `rows` events of CHUNK_ROWS rows each, every other row on the board, the
    last with `more` 0. The page draws its first screen from the first event (a few kilobytes) and
    the rest when all has come: at 5,000 incidents the whole list is 5.7 MB of JSON."""
    now = now or datetime.now(timezone.utc)
    drills = drills or []
    ranked = rank_first(view, query, drills, now, FIRST_ROWS)
    states, first = ranked.states, ranked.first
    chosen = set(first)
    rest = [st for i, st in enumerate(states) if i not in chosen]
    head = {"server_time": _iso(now), "more": len(rest), "cut": ranked.cut, "feed": latest_feed(ranked.open_states),
            "drills": drills, "warnings": warnings() if warnings else []}
    yield ServerSentEvent('{"rows":[' + ",".join(shown_json(states[i]) for i in first) + "]," + dumps(head)[1:],
                          event="snapshot")
    for start in range(0, len(rest), CHUNK_ROWS):
        part = [text for text in (shown_json(st) for st in rest[start:start + CHUNK_ROWS]) if text is not None]
        more = max(0, len(rest) - start - CHUNK_ROWS)
        yield ServerSentEvent('{"rows":[' + ",".join(part) + '],"more":' + str(more) + "}", event="rows")


def snapshot_text(view: IncidentView, incident: str | None = None, drills: list | None = None,
                  warnings: Warnings | None = None, trends: dict[str, Any] | None = None) -> str:
    """snapshot() as one JSON text, its rows joined from each row's text made once per change (an
    incident's page's stream sends it; the board's sends board_snapshot)."""
    if incident is not None:
        return dumps(snapshot(view, incident, drills, warnings, trends))
    now = datetime.now(timezone.utc)
    rows, items = _on_board(view, now, shown_json)
    rest = {"server_time": _iso(now), "feed": items, "drills": drills or [], "warnings": warnings() if warnings else []}
    if trends is not None:
        rest["trends"] = trends
    return '{"rows":[' + ",".join(rows) + "]," + dumps(rest)[1:]


async def warm(view: IncidentView, every: int = 200) -> None:
    """Once the view has read the topics back, every row on the board made ahead of the first board's
    load (an API started during a storm: 5,000 rows took 1.4 s of the first load), a turn of the event
    loop every `every` rows. Run by the app's lifespan."""
    await view.caught_up.wait()
    now = datetime.now(timezone.utc)
    for i, st in enumerate(list(view.incidents.values())):
        if on_board(st, now):
            shown_json(st)
            shown_facts(st)
            shown_feed(st)
        if i % every == every - 1:
            await asyncio.sleep(0)


def hour_start(t: datetime) -> datetime:
    """The Beijing hour a time falls in, as an aware datetime."""
    return t.astimezone(BEIJING).replace(minute=0, second=0, microsecond=0)


def trends(view: IncidentView, now: datetime, hours: int = TREND_HOURS) -> dict[str, Any]:
    """Live incidents received per Beijing hour over the last `hours` by response level (研判中 while
    undecided), and breaches (超时未报) and 督办 steps (逐级上报) per hour by the time they fell due.
    Drills are left out: their times are a scenario's, scored on their own."""
    first = hour_start(now) - timedelta(hours=hours - 1)
    levels = ["一级", "二级", "三级", "研判中"]
    incidents = {lv: [0] * hours for lv in levels}
    events = {name: [0] * hours for name in TREND_KINDS.values()}

    def slot(t: datetime) -> int | None:
        i = int((t - first).total_seconds() // 3600)
        return i if 0 <= i < hours else None

    for st in view.incidents.values():
        if st.reported is None or st.reported.report.drill:
            continue
        i = slot(st.reported.report.received_at)
        if i is not None:
            dec = st.decided.decision if st.decided else None
            incidents[dec.response_level.value if dec else "研判中"][i] += 1
        for e in st.events.values():
            name = TREND_KINDS.get(e.kind.value)
            if name is not None and (j := slot(e.at)) is not None:
                events[name][j] += 1
    return {"hours": [_iso(first + timedelta(hours=k)) for k in range(hours)], "incidents": incidents, **events}


class TrendCache:
    """The trends, computed once per view change and minute for every board watching (each stream
    asks every TREND_EVERY_S); held by the app (app.state.trends), not the module."""

    def __init__(self, view: IncidentView) -> None:
        self.view = view
        self._key: tuple | None = None
        self._at = datetime.min.replace(tzinfo=timezone.utc)
        self._value: dict[str, Any] = {}

    def get(self, now: datetime | None = None) -> dict[str, Any]:
        """Computed again when the hour turned, or when the view changed and the last computation is
        TREND_FRESH_S old: on a storm night the view changes many times a second, and the trends
        (a pass over every event, 270 ms at 5,000 incidents) count hours."""
        now = now or datetime.now(timezone.utc)
        hour = hour_start(now)
        if self._key is None or hour != self._key[1] or (
                self.view.version != self._key[0] and (now - self._at).total_seconds() >= TREND_FRESH_S):
            self._value, self._key, self._at = trends(self.view, now), (self.view.version, hour), now
        return self._value


def changes(view: IncidentView, batch: list[dict[str, Any]], incident: str | None = None,
            warnings: Warnings | None = None) -> dict[str, Any] | None:
    ids: dict[str, None] = {}
    feed = []
    warned = False
    for change in batch:
        iid = change["incident_id"]
        if iid is None:  # a warning moved: the board (not an incident's page) re-reads the active ones
            warned = warned or (incident is None and warnings is not None)
            continue
        if incident is not None and iid != incident:
            continue
        ids[iid] = None
        event = change.get("event")
        st = view.incidents.get(iid)
        if event and st is not None and event["kind"] in FEED_KINDS:
            feed.append(_feed_item(st, event))
    rows = [r for r in (shown_row(view.incidents[i]) for i in ids if i in view.incidents) if r is not None]
    if not rows and not feed and not warned:
        return None
    body = {"server_time": _now(), "rows": rows, "feed": feed}
    if warned and warnings is not None:
        body["warnings"] = warnings()
    return body


def plan_shown(book: PlanBook | None, plan: Plan) -> dict[str, Any]:
    """The plan in force as the board's header shows it: its version and the adoption in force (None: the plan
    shipped with the service), with the fields of it GET /plan's history shows (when; by whom, the staff user's
    name as the pages show it; why; `rollback_of` when it went back). Read off the book at once
    (its plan and adoption change together); `plan`: the app's own when it follows no book (a test's app)."""
    if book is None:
        return {"version": plan.version, "adoption": None, "map": grid_version(plan)}
    in_force, current = book.plan, book.current
    version, the_map = in_force.version, grid_version(in_force)  # `map`: the page fetches the map again when it changes
    if current is None:
        return {"version": version, "adoption": None, "map": the_map}
    return {"version": version, "adoption": current.id, "map": the_map, "adopted_at": _iso(current.adopted_at),
            "adopted_by": current.adopted_by, "reason": current.reason, "rollback_of": current.rollback_of,
            # what it changed, for the notice: the first few as text, and how many in all (the what-if page lists them)
            "changes": [change_text(c) for c in current.changes[:PLAN_CHANGES_SHOWN]],
            "changes_total": len(current.changes) + current.changes_more}


def ping() -> ServerSentEvent:
    """sse-starlette's keep-alive, as an event carrying the server's time (the page's clock syncs on it)."""
    return JSONServerSentEvent({"server_time": _now()}, event="ping")


async def events(view: IncidentView, drills: DrillBook, incident: str | None,
                 warnings: Warnings | None = None, trend_cache: TrendCache | None = None,
                 query: BoardQuery | None = None, plan: PlanShown | None = None) -> AsyncIterator[ServerSentEvent]:
    """The board's stream for one client (an incident's page's when `incident` is given). sse-starlette
    ends it when the client goes or the server shuts down (it cancels this generator), and sends the
    pings. `plan` (plan_shown): the plan in force, sent after each snapshot and again when it changed,
    looked at every tick and after every change (a switch goes out within TICK_S)."""
    queue = view.subscribe()
    getter: asyncio.Future | None = None
    trend_cache = trend_cache if incident is None else None  # an incident's page has no trends
    plan = plan if incident is None else None  # nor the plan's header
    query = query or BoardQuery()

    def trend_now() -> dict[str, Any] | None:
        return trend_cache.get() if trend_cache is not None else None

    def snapshot_events(drills_now: list[dict[str, Any]]) -> Iterator[ServerSentEvent]:
        if incident is not None:
            return iter([ServerSentEvent(snapshot_text(view, incident, drills_now), event="snapshot")])
        return board_snapshot(view, query, drills_now, warnings)

    def trends_event(latest: dict[str, Any]) -> ServerSentEvent:
        return JSONServerSentEvent({"server_time": _now(), "trends": latest}, event="trends")

    def plan_event(shown: dict[str, Any]) -> ServerSentEvent:
        return JSONServerSentEvent({"server_time": _now(), "plan": shown}, event="plan")

    try:
        yield ServerSentEvent(retry=RECONNECT_MS)
        drills_seen = drill_runs(drills)
        for event in snapshot_events(drills_seen):
            yield event
        plan_seen = plan() if plan is not None else None
        if plan_seen is not None:  # with every snapshot: a page reconnecting after a switch shows it
            yield plan_event(plan_seen)
        # the trends after the rows: the page draws its charts after its first rows
        trends_seen = trend_now()
        trends_at = time.monotonic()
        if trends_seen is not None:
            yield trends_event(trends_seen)
        while True:
            if plan is not None and (shown := plan()) != plan_seen:  # a revision adopted or rolled back
                plan_seen = shown
                yield plan_event(shown)
            if trend_cache is not None and time.monotonic() - trends_at >= TREND_EVERY_S:
                trends_at = time.monotonic()
                latest = trend_now()
                if latest != trends_seen:
                    trends_seen = latest
                    yield trends_event(latest)
            # one pending get kept across ticks: a get cancelled on a timeout could lose its change
            if getter is None:
                getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter}, timeout=TICK_S)
            if not done:
                runs = drill_runs(drills)
                if runs != drills_seen and (runs or drills_seen):  # a running drill's clock, each second
                    drills_seen = runs
                    yield JSONServerSentEvent({"server_time": _now(), "drills": runs}, event="drills")
                continue
            batch = [getter.result()]
            getter = None
            await asyncio.sleep(COALESCE_S)
            while not queue.empty():
                batch.append(queue.get_nowait())
            if any(change is None for change in batch):  # we fell behind and were dropped: start over
                view.unsubscribe(queue)
                queue = view.subscribe()
                drills_seen = drill_runs(drills)
                for event in snapshot_events(drills_seen):
                    yield event
                if plan is not None:
                    yield plan_event(plan_seen := plan())
                if (trends_seen := trend_now()) is not None:
                    yield trends_event(trends_seen)
                continue
            body = changes(view, batch, incident, warnings)
            if body is not None:
                yield JSONServerSentEvent(body, event="changes")
    finally:
        if getter is not None:
            getter.cancel()
        view.unsubscribe(queue)
