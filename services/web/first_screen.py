"""The board's first screen drawn by the server, inline in GET /board's HTML (issue 21 item 6: first rows
within 1 s at 5,000 open incidents): the page paints them before any script runs or the stream opens.

The rows are the stream's own (board.rank_first ranks both, shown_json is their text), for the view,
filters and search the URL holds; the template (templates/_board_rows.html) draws them as board.js's
buildRow and tickRow would at the server's now, and the same rows go with them as JSON, so board.js
takes the drawn rows over (its virtual window keeps these very nodes) and the stream's snapshot
replaces none that did not change. Nothing is drawn when the URL asks for what only the page knows
(a grouping, 上次查看后新增, a drill's clock): the page then draws from the stream as before."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from markupsafe import Markup

from services.view import IncidentView
from services.web.board import BEIJING, BoardQuery, dumps, rank_first, shown_json, shown_row

INLINE_ROWS = 30  # a 2160-px screen holds about 24 rows of 78 px; the stream's first event brings 60
LEVEL_CLASS = {"一级": "l1", "二级": "l2", "三级": "l3"}  # common.js's YJ.LEVEL_CLASS
OBLIGATION_STATUS = {"open": "待报送", "met": "已按时报送", "late": "迟报", "missed": "超时未报", "closed": "已关闭"}  # YJ's
STATUS_ORDER = {"missed": 0, "open": 1, "late": 2, "met": 3}  # board.js's buildRow
URGENT_S, SOON_S = 60, 300  # board.js's URGENT_MS, SOON_MS
# the page's figures when the server does not count them: … until the script has every row
UNCOUNTED = dict.fromkeys(("open", "l1", "l2", "l3", "breach", "due", "shown", "live", "drill", "all"), "…")


def clock_text(seconds: float) -> str:
    """common.js's YJ.clock: 09:55, 1:02:03, 2天03:04:05."""
    s = max(0, math.floor(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    hms = f"{h:02d}:{m:02d}:{s:02d}" if d else (f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}")
    return f"{d}天{hms}" if d else hms


def ago_text(seconds: float) -> str:
    """common.js's YJ.ago: 不足1分 / 12分 / 3小时5分 / 2天4小时."""
    m = max(0, math.floor(seconds / 60))
    if m < 1:
        return "不足1分"
    if m < 60:
        return f"{m}分"
    h = m // 60
    return f"{h}小时{m % 60}分" if h < 24 else f"{h // 24}天{h % 24}小时"


def beijing(iso: str | None) -> str:
    """common.js's YJ.dateTime: 2026-11-25 19:20:05, Beijing time; — when none."""
    if not iso:
        return "—"
    return datetime.fromisoformat(iso).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _epoch(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else math.nan


def chip(o: dict[str, Any], now: float) -> dict[str, Any]:
    """An obligation's chip as buildRow makes it and tickRow counts it down at `now` (epoch s)."""
    due = _epoch(o["due_at"])
    out = {"kind": o["kind"], "label": o["label"], "due_ms": None if math.isnan(due) else round(due * 1000),
           "status": o["status"], "esc": None,
           "title": f"{o['label']}：{OBLIGATION_STATUS.get(o['status'], o['status'])}，时限 {beijing(o['due_at'])}"}
    if o["status"] == "met":
        return {**out, "cls": "chip met", "cd": "✓ 已报", "ticks": False}
    if o["status"] == "late":
        late = f" {o['minutes_late']}分" if o["minutes_late"] is not None else ""
        return {**out, "cls": "chip late", "cd": f"迟报{late}", "ticks": False}
    if o["status"] == "missed":
        esc = f"已上报第{o['escalation_step']}步" if o["escalation_step"] else None
        return {**out, "cls": "chip missed", "cd": f"超时未报 +{clock_text(now - due)}", "ticks": True, "esc": esc}
    left = due - now
    cls = "chip urgent" if left <= URGENT_S else ("chip soon" if left <= SOON_S else "chip")
    return {**out, "cls": cls, "cd": f"剩 {clock_text(left)}" if left >= 0 else f"已超时 {clock_text(-left)}", "ticks": True}


def row_cells(r: dict[str, Any], now: float) -> dict[str, Any]:
    """What the template draws of a board row at `now` (the row's clock: a drill's is its run's)."""
    obligations = sorted(r["obligations"], key=lambda o: (STATUS_ORDER.get(o["status"], 9), _epoch(o["due_at"])))
    approval = None
    if r["needs_approval"]:
        waited = r["approval_requested_at"]
        approval = f"待批准上报 · 已等 {ago_text(now - _epoch(waited))}" if waited else "待批准上报"
    return {
        "row": r,
        "level_class": LEVEL_CLASS.get(r["level"] or "", "pending"),
        "ended": r["status"] == "ended",
        "chips": [chip(o, now) for o in obligations],
        "approval": approval,
        "since": ago_text(now - _epoch(r["received_at"])),
        "received": beijing(r["received_at"])[5:16],
        "commander": r["commanders"][0] if r["commanders"] else None,
        "commanders_title": "\n".join(f"{c['role']}：{c['who']}" for c in r["commanders"]),
    }


def script_json(text: str) -> Markup:
    """JSON text safe inside <script type="application/json"> (as Jinja's tojson escapes it)."""
    return Markup(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e").replace("'", "\\u0027"))


def first_screen(view: IncidentView, query: BoardQuery, drills: list[dict[str, Any]],
                 now: datetime | None = None, size: int = INLINE_ROWS) -> dict[str, Any]:
    """The page's first screen for its query: `rows` (what the template draws, in the page's order) and
    `json` (the same rows as the stream sends them, with the query they were ranked for, the server's
    time, whether the query kept more (`cut`) and the drills' clocks) and `figures` (the tiles' and the
    views' counts, board.board_counts). No rows, no JSON and … for each figure when the page alone can
    say which rows come first (BoardQuery.server_ranks)."""
    if not query.server_ranks:
        return {"rows": [], "json": None, "figures": UNCOUNTED}
    now = now or datetime.now(timezone.utc)
    ranked = rank_first(view, query, drills, now, size)
    states = [ranked.states[i] for i in ranked.first]
    head = {"cut": ranked.cut, "server_time": now.astimezone(timezone.utc).isoformat(), "drills": drills,
            "query": query.as_page()}
    text = '{"rows":[' + ",".join(shown_json(st) for st in states) + "]," + dumps(head)[1:]
    rows = [row_cells(shown_row(st), ranked.clock[st.incident_id]) for st in states]
    c = ranked.counts
    return {"rows": rows, "json": script_json(text), "figures": {**c, "all": c["live"] + c["drill"]}}
