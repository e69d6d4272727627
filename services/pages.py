"""Pages: the command-center board (指挥中心态势大屏) and the duty officers' pages, in Chinese.

Server-rendered HTML plus small vanilla JS from services/static/ (no build step, no CDN). The board is
fed by server push: `GET /board/stream` (Server-Sent Events) sends a snapshot of every open incident,
then each change of the API's read model as it happens (coalesced over 0.1 s), and a fresh snapshot
whenever the stream fell behind. The browser reconnects by itself and every (re)connection starts
with a snapshot, so the page catches up after a drop. Thin: no decision logic here; rows carry no
personal data (the reporter and summary are only ever sealed, and the board never asks for them).

Sign-in: `/login` checks a token and keeps it in the HttpOnly `yingji_token` cookie, which the API
accepts like a bearer token. Pages answer a browser without a valid sign-in with a redirect to
/login and a wrong role with a 403 page; other clients keep the API's 401/403.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from playbooks.plan import load_plan
from services.auth import COOKIE, PERMISSIONS, bearer, require
from services.view import IncidentReadModel as IncidentState, IncidentView
from topics.models import Grade, Role, UserRecord

STATIC_DIR = Path(__file__).parent / "static"
COOKIE_MAX_AGE_S = 7 * 24 * 3600
POLL_S = 1.0  # a quiet stream looks for a disconnect or a server shutdown this often
KEEPALIVE_S = 15.0  # and pings this often, so proxies, dead peers and the page's watchdog notice
COALESCE_S = 0.1  # changes arriving together (a decision opens several obligations) go out as one message
FEED_KINDS = frozenset({"breach", "escalation", "obligation_late", "regraded", "level_adjusted"})
FEED_SIZE = 60

ROLE_LABEL = {
    Role.DUTY_OFFICER: "值班员",
    Role.COMMANDER: "指挥员",
    Role.DRILL_CONTROLLER: "演练导调",
    Role.VIEWER: "观察席",
    Role.ADMIN: "管理员",
}
OBLIGATION_LABEL = {
    "phone_report": "电话报告",
    "written_report": "书面报告",
    "detailed_report": "详细信息报告",
    "public_release": "信息发布",
    "city_report": "向市应急办报告",
    "evaluation_report": "总结评估报告",
}
KEY_AREAS = ("城市副中心", "行政办公区", "京津冀临界地区", "人员密集场所")
FLAGS = (
    ("sensitive", "敏感事件"),
    ("major_event", "重大活动或特殊时期"),
    ("multi_agency", "需多部门协同处置"),
    ("may_escalate", "可能演化为较大以上"),
    ("foreign_involved", "涉外"),
)
FACTS = (
    ("deaths", "死亡（人）", "1"),
    ("missing", "失踪（人）", "1"),
    ("serious_injuries", "重伤（人）", "1"),
    ("injuries", "受伤（人）", "1"),
    ("poisoned", "中毒（人）", "1"),
    ("evacuated", "疏散转移（人）", "1"),
    ("direct_loss_yuan", "直接经济损失（元）", "any"),
    ("magnitude", "震级（M）", "0.1"),
    ("interruption_hours", "中断时长（小时）", "any"),
)


@functools.cache
def _plan():
    """The plan's vocabulary for the forms (types, streets, units): read once, not on every page."""
    return load_plan()


# --- sign-in for pages ------------------------------------------------------------------------


def wants_html(request: Request) -> bool:
    """A browser navigating (Accept: text/html) gets pages; API clients keep JSON status codes."""
    return "text/html" in request.headers.get("accept", "")


def require_page(permission: str):
    """`require(permission)` for a page: a browser without a valid sign-in is sent to /login, one
    whose role lacks the permission sees a 403 page; other clients get the API's 401/403. The route
    receives the user, or a Response to return as it is."""
    check = require(permission).dependency

    async def dependency(request: Request) -> UserRecord | Response:
        try:
            return await check(request)
        except HTTPException as exc:
            if not wants_html(request):
                raise
            if exc.status_code == 401:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            if exc.status_code == 403:
                user = request.app.state.users.authenticate(bearer(request) or "")
                return _forbidden(user, permission)
            raise

    dependency.permission = permission  # type: ignore[attr-defined]  # read by the route × role test
    return Depends(dependency)


def _safe_next(target: str | None) -> str:
    """Only paths on this site: no scheme, no host, no `//evil`, no control characters."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)):
        return "/board"
    return target


def _can(user: UserRecord, permission: str) -> bool:
    return user.role in PERMISSIONS[permission]


# --- the server's shutdown, seen by streams ----------------------------------------------------


class _ServerExit:
    """uvicorn waits for open responses before it shuts down, and an event stream never ends by
    itself. Chained onto the server's SIGINT/SIGTERM handlers (installed before the app is built),
    this flag lets every stream end within POLL_S of the signal. Only from the main thread, where
    uvicorn runs the loop; elsewhere (test clients) streams end when the client goes."""

    def __init__(self) -> None:
        self._set = False
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # no server handler to chain onto: the default behaviour stays

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                self._set = True
                previous(signum, frame)

            signal.signal(sig, handler)

    def is_set(self) -> bool:
        return self._set


def _server_exit(request: Request) -> _ServerExit:
    state = request.app.state
    flag = getattr(state, "pages_server_exit", None)
    if flag is None:
        flag = state.pages_server_exit = _ServerExit()
    return flag


# --- what the board shows ---------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def board_row(st: IncidentState) -> dict[str, Any] | None:
    """One incident as the board shows it: no reporter, no summary, no address."""
    if st.reported is None:
        return None
    rep = st.reported.report
    dec = st.decided.decision if st.decided else None
    labels = {o.kind.value: o.label for o in dec.obligations} if dec else {}
    kinds = {e.kind.value for e in st.events.values()}
    last = st.events[max(st.events)] if st.events else None
    obligations = [
        {
            "kind": o["kind"],
            "label": OBLIGATION_LABEL.get(o["kind"]) or labels.get(o["kind"], o["kind"]),
            "status": o["status"],
            "due_at": o.get("due_at"),
            "escalation_step": o.get("escalation_step"),
            "minutes_late": o.get("minutes_late"),
        }
        for o in st.obligations.values()
        if o["status"] != "closed"
    ]
    return {
        "id": st.incident_id,
        "drill": rep.drill,
        "status": "ended" if st.ended else ("decided" if dec else "reported"),
        "type": dec.type_name if dec else rep.type,
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
        "needs_approval": bool(dec and dec.needs_approval_for_city_report and "approved" not in kinds),
        "approval_requested_at": next((e.at.isoformat() for e in sorted(st.events.values(), key=lambda e: e.seq)
                                       if e.kind.value == "approval_requested"), None),
        "clock_at": _iso(last.recorded_at) if last else _iso(st.reported.accepted_at),
    }


def _feed_item(st: IncidentState, event: dict[str, Any]) -> dict[str, Any]:
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
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def drill_runs(app: Any) -> list[dict[str, Any]]:
    """Drill runs the API started (app.state.drills), each with its simulated time now — estimated
    from the run's start and speed while it runs — and the incidents it raises, so the board shows
    drill rows on their own clock."""
    from playbooks.drill import incident_id as drill_incident_id

    out = []
    for run in list((getattr(app.state, "drills", None) or {}).values()):
        try:
            scenario, status, speed = run.scenario, run.status, float(run.speed)
            sim = datetime.fromisoformat(run.sim_now) if run.sim_now else scenario.start
            if status == "running":
                estimate = scenario.start + timedelta(seconds=(time.time() - run.started_wall) * speed)
                sim = max(sim, min(estimate, scenario.end))
            ids = sorted({drill_incident_id(scenario, inj.incident, run.run_id) for inj in scenario.injects})
            out.append({"run_id": run.run_id, "name": scenario.name, "speed": speed, "status": status,
                        "simulated_now": _iso(sim), "end": _iso(scenario.end), "incidents": ids})
        except Exception:  # noqa: BLE001 - a run the board cannot read is not shown; the drill goes on
            continue
    return out


def snapshot(view: IncidentView, incident: str | None = None, drills: list | None = None) -> dict[str, Any]:
    if incident is not None:
        st = view.incidents.get(incident)
        row = board_row(st) if st else None
        return {"server_time": _now(), "rows": [row] if row else [], "feed": [], "drills": drills or []}
    rows, feed = [], []
    for st in view.incidents.values():
        row = board_row(st)
        if row is None or row["status"] == "ended":
            continue
        rows.append(row)
        feed.extend(_feed_item(st, e.model_dump(mode="json")) for e in st.events.values() if e.kind.value in FEED_KINDS)
    feed.sort(key=lambda f: f["recorded_at"])
    return {"server_time": _now(), "rows": rows, "feed": feed[-FEED_SIZE:], "drills": drills or []}


def changes(view: IncidentView, batch: list[dict[str, Any]], incident: str | None = None) -> dict[str, Any] | None:
    ids: dict[str, None] = {}
    feed = []
    for change in batch:
        iid = change["incident_id"]
        if incident is not None and iid != incident:
            continue
        ids[iid] = None
        event = change.get("event")
        st = view.incidents.get(iid)
        if event and st is not None and event["kind"] in FEED_KINDS:
            feed.append(_feed_item(st, event))
    rows = [r for r in (board_row(view.incidents[i]) for i in ids if i in view.incidents) if r is not None]
    if not rows and not feed:
        return None
    return {"server_time": _now(), "rows": rows, "feed": feed}


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def stream(request: Request, view: IncidentView, incident: str | None) -> AsyncIterator[str]:
    exit_flag = _server_exit(request)
    loop = asyncio.get_running_loop()
    queue = view.subscribe()
    getter: asyncio.Task | None = None
    drills_seen: list = []
    try:
        yield "retry: 1000\n\n"
        drills_seen = drill_runs(request.app)
        yield _sse("snapshot", snapshot(view, incident, drills_seen))
        quiet_since = loop.time()
        while not exit_flag.is_set():
            if getter is None:
                getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter}, timeout=POLL_S)
            if not done:
                if await request.is_disconnected():
                    return
                drills = drill_runs(request.app)
                if drills != drills_seen and (drills or drills_seen):  # a running drill's clock, each second
                    drills_seen = drills
                    quiet_since = loop.time()
                    yield _sse("drills", {"server_time": _now(), "drills": drills})
                elif loop.time() - quiet_since >= KEEPALIVE_S:
                    quiet_since = loop.time()
                    yield _sse("ping", {"server_time": _now()})
                continue
            batch = [getter.result()]
            getter = None
            await asyncio.sleep(COALESCE_S)
            while not queue.empty():
                batch.append(queue.get_nowait())
            quiet_since = loop.time()
            if any(change is None for change in batch):  # we fell behind and were dropped: start over
                view.unsubscribe(queue)
                queue = view.subscribe()
                drills_seen = drill_runs(request.app)
                yield _sse("snapshot", snapshot(view, incident, drills_seen))
                continue
            body = changes(view, batch, incident)
            if body is not None:
                yield _sse("changes", body)
    finally:
        if getter is not None:
            getter.cancel()
        view.unsubscribe(queue)


# --- HTML --------------------------------------------------------------------------------------

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _asset_versions() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:10] for p in STATIC_DIR.iterdir() if p.is_file()}


def _json_block(element_id: str, data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


class Layout:
    def __init__(self) -> None:
        self.versions = _asset_versions()

    def asset(self, name: str) -> str:
        return f"/static/{name}?v={self.versions.get(name, '0')}"

    def page(self, title: str, body: str, *, user: UserRecord | None, scripts: tuple[str, ...] = (),
             page_class: str = "", status_code: int = 200) -> HTMLResponse:
        nav = ""
        if user is not None:
            links = ['<a href="/board">态势大屏</a>']
            if _can(user, "incident.raise"):
                links.append('<a href="/raise">接报登记</a>')
            nav = (f'<nav class="nav">{"".join(links)}</nav><div class="who"><span class="user">'
                   f'{escape(user.name)}（{ROLE_LABEL.get(user.role, user.role.value)}）</span>'
                   '<a href="/logout">退出</a></div>')
        js = "".join(f'<script src="{self.asset(s)}" defer></script>' for s in ("common.js", *scripts))
        html = f"""<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · 通州区应急指挥</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{self.asset('yingji.css')}">
{js}
</head>
<body class="{page_class}">
<header class="topbar"><a class="brand" href="/board">通州区应急指挥</a>{nav}<span class="clock" id="clock"></span></header>
{body}
</body>
</html>"""
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


_LAYOUT: Layout | None = None


def layout() -> Layout:
    global _LAYOUT
    if _LAYOUT is None:
        _LAYOUT = Layout()
    return _LAYOUT


def _forbidden(user: UserRecord | None, permission: str) -> HTMLResponse:
    role = ROLE_LABEL.get(user.role, user.role.value) if user else "未登录"
    body = f"""<main class="narrow"><section class="card">
<h1>无权访问</h1>
<p>当前身份（{escape(role)}）不能使用此页面（需要权限 <code>{escape(permission)}</code>）。</p>
<p><a class="button" href="/board">返回态势大屏</a> <a class="button secondary" href="/logout">换个身份登录</a></p>
</section></main>"""
    return layout().page("无权访问", body, user=user, status_code=403)


def _login_form(next_path: str, error: str = "", status_code: int = 200) -> HTMLResponse:
    err = f'<p class="form-error" role="alert">{escape(error)}</p>' if error else ""
    body = f"""<main class="narrow"><section class="card login">
<h1>登录</h1>
<p class="hint">请输入管理员为您分配的访问令牌。</p>
<form method="post" action="/login" autocomplete="off">
<input type="hidden" name="next" value="{escape(next_path)}">
<label for="token">访问令牌</label>
<input id="token" name="token" type="password" required autofocus>
{err}
<button type="submit">登录</button>
</form>
</section></main>"""
    return layout().page("登录", body, user=None, status_code=status_code)


def _board_page(user: UserRecord) -> HTMLResponse:
    default_filter = "drill" if user.role is Role.DRILL_CONTROLLER else "live"
    config = {"user": user.name, "role": user.role.value, "default_filter": default_filter,
              "can_raise": _can(user, "incident.raise")}
    body = f"""{_json_block("config", config)}
<section class="drill-banner" id="drill-banner" hidden>
  <span class="badge drill">演练</span> <span id="drill-text"></span>
  <span class="hint" id="drill-hidden-note">（当前视图未显示演练事件）</span>
  <button type="button" class="small" data-filter="drill">查看演练</button>
</section>
<section class="summary" aria-label="概况">
  <div class="tile"><span class="n" id="sum-open">0</span><span class="t">进行中</span></div>
  <div class="tile l1"><span class="n" id="sum-l1">0</span><span class="t">一级响应</span></div>
  <div class="tile l2"><span class="n" id="sum-l2">0</span><span class="t">二级响应</span></div>
  <div class="tile l3"><span class="n" id="sum-l3">0</span><span class="t">三级响应</span></div>
  <div class="tile breach"><span class="n" id="sum-breach">0</span><span class="t">超时未报</span></div>
  <div class="tile"><span class="n" id="sum-due">0</span><span class="t">10分钟内到期</span></div>
</section>
<div class="toolbar">
  <div class="segmented" role="group" aria-label="筛选">
    <button type="button" data-filter="live">实战 <span id="count-live">0</span></button>
    <button type="button" data-filter="drill">演练 <span id="count-drill">0</span></button>
    <button type="button" data-filter="all">全部 <span id="count-all">0</span></button>
  </div>
  <span class="conn" id="conn" data-state="connecting">连接中…</span>
</div>
<main class="board-main">
  <div class="table-wrap">
    <table class="incidents" id="incidents" data-filter="{default_filter}">
      <thead><tr><th>响应级别</th><th>事件</th><th>等级</th><th>属地</th><th>牵头单位 / 指挥</th><th>接报已</th><th>报送时限</th></tr></thead>
      <tbody id="rows"></tbody>
    </table>
    <p class="empty" id="empty">当前视图无进行中的事件</p>
  </div>
  <aside class="feed" aria-label="超时与升级">
    <h2>超时与升级动态</h2>
    <ol id="feed"></ol>
    <p class="empty" id="feed-empty">暂无超时或升级</p>
  </aside>
</main>
<div class="drawer" id="drawer" hidden>
  <div class="drawer-head"><h2 id="drawer-title">事件详情</h2>
  <a id="drawer-link" class="button small" href="#">打开事件页</a>
  <button type="button" class="small secondary" id="drawer-close" aria-label="关闭">关闭 ✕</button></div>
  <div class="drawer-body" id="drawer-body"></div>
</div>"""
    return layout().page("态势大屏", body, user=user, scripts=("board.js",), page_class="board-page")


def _raise_page(user: UserRecord) -> HTMLResponse:
    plan = _plan()
    groups: dict[str, list[str]] = {}
    for t in sorted(plan.types.values(), key=lambda t: (t.seq == 0, t.seq)):  # 其他, outside the table, last
        label = f"{t.seq}. {escape(t.name)}（{escape(t.subcategory)}）" if t.seq else f"{escape(t.name)}（{escape(t.note or '')}）"
        groups.setdefault(t.category_name, []).append(f'<option value="{escape(t.id)}">{label}</option>')
    types = "".join(f'<optgroup label="{escape(c)}">{"".join(opts)}</optgroup>' for c, opts in groups.items())
    streets = "".join(f'<option value="{escape(s)}">{escape(s)}</option>' for s in plan.streets)
    grades = "".join(f'<option value="{g.value}">{g.value}</option>' for g in Grade)
    facts = "".join(
        f'<div class="field"><label for="f-{k}">{label}</label><input id="f-{k}" name="facts.{k}" type="number" '
        f'min="0" step="{step}" inputmode="decimal"><div class="err" data-err-for="facts.{k}"></div></div>'
        for k, label, step in FACTS)
    flags = "".join(f'<label class="check"><input type="checkbox" name="flags.{k}"> {label}</label>' for k, label in FLAGS)
    areas = "".join(f'<label class="check"><input type="checkbox" name="key_area" value="{a}"> {a}</label>' for a in KEY_AREAS)

    def field(name: str, label: str, control: str, hint: str = "") -> str:
        hint_html = f'<div class="hint">{hint}</div>' if hint else ""
        return f'<div class="field"><label for="{name}">{label}</label>{control}{hint_html}<div class="err" data-err-for="{name}"></div></div>'

    body = f"""<main class="form-page"><h1>接报登记</h1>
<p class="hint">时间均按北京时间（UTC+8）填写。提交后由预案规则自动定级、确定响应级别和报送时限。</p>
<div class="form-error" id="form-error" role="alert" hidden></div>
<div class="form-ok" id="form-ok" role="status" hidden></div>
<form id="raise-form" novalidate autocomplete="off">
<fieldset><legend>事件</legend><div class="grid">
{field("type", "事件类型 *", f'<select id="type" name="type"><option value="">— 请选择 —</option>{types}</select>', f"预案表2.3.6，共{len(plan.table_types)}类；都不符合时选“其他”（2.3.3）")}
{field("occurred_at", "事发时间 *", '<input id="occurred_at" name="occurred_at" type="datetime-local" step="1">')}
{field("received_at", "接报时间 *", '<input id="received_at" name="received_at" type="datetime-local" step="1">', "默认当前时间")}
{field("location.street", "属地街道乡镇", f'<select id="location.street" name="location.street"><option value="">— 未明确 —</option>{streets}</select>')}
{field("location.address", "地点", '<input id="location.address" name="location.address" type="text" maxlength="200">')}
{field("source", "信息来源", '<input id="source" name="source" type="text" maxlength="200" placeholder="如：110转警、街道上报">')}
</div>
<div class="field"><span class="label">重点地区</span><div class="checks">{areas}
<label class="check">其他 <input type="text" name="key_area_other" id="key_area_other" maxlength="200" placeholder="多个用顿号分隔"></label></div>
<div class="err" data-err-for="location.key_area"></div></div>
</fieldset>
<fieldset><legend>伤亡与损失</legend><div class="grid facts">{facts}</div></fieldset>
<fieldset><legend>情形</legend><div class="checks">{flags}</div>
<div class="grid">
{field("asserted_grade", "报告单位认定等级", f'<select id="asserted_grade" name="asserted_grade"><option value="">— 无 —</option>{grades}</select>')}
{field("asserted_by", "认定单位", '<input id="asserted_by" name="asserted_by" type="text" maxlength="200">')}
</div></fieldset>
<fieldset class="private"><legend>报告人（个人信息：加密保存，不在大屏显示）</legend><div class="grid">
{field("reporter.name", "姓名", '<input id="reporter.name" name="reporter.name" type="text" maxlength="200">')}
{field("reporter.phone", "电话", '<input id="reporter.phone" name="reporter.phone" type="tel" maxlength="200">')}
</div>
{field("summary", "事件简况", '<textarea id="summary" name="summary" rows="4" maxlength="4000"></textarea>')}
</fieldset>
<div class="actions"><button type="submit" id="submit">提交接报</button> <a class="button secondary" href="/board">返回大屏</a></div>
</form></main>"""
    return layout().page("接报登记", body, user=user, scripts=("raise.js",), page_class="form-body")


def _incident_page(user: UserRecord, incident_id: str) -> HTMLResponse:
    plan = _plan()
    config = {
        "incident_id": incident_id,
        "user": user.name,
        "can_file": _can(user, "incident.file"),
        "can_approve": _can(user, "incident.approve"),
        "can_end": _can(user, "incident.end"),
        "can_private": _can(user, "incident.private"),
        "units": [{"id": u.id, "name": u.name} for u in plan.units.values()],
        "end_authority": {g.value: a for g, a in plan.end_authority.items()},
        "grades": [g.value for g in Grade],
    }
    body = f"""{_json_block("config", config)}
<main class="incident-page">
<div class="incident-head"><h1 id="title">事件 {escape(incident_id)}</h1><span class="conn" id="conn" data-state="connecting">连接中…</span></div>
<div class="form-ok" id="action-ok" role="status" hidden></div>
<div class="form-error" id="action-error" role="alert" hidden></div>
<section class="actions-bar" id="actions" hidden></section>
<section class="card" id="action-panel" hidden></section>
<div id="detail"><p class="hint">加载中…</p></div>
</main>"""
    return layout().page(f"事件 {incident_id}", body, user=user, scripts=("incident.js",), page_class="form-body")


# --- routes ------------------------------------------------------------------------------------


def build_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    router.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str | None = None) -> Response:
        return _login_form(_safe_next(next))

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        next_path = _safe_next((form.get("next") or [None])[0])
        user = request.app.state.users.authenticate(token) if token else None
        if user is None:
            return _login_form(next_path, "令牌无效或已被吊销，请核对后重试。", status_code=401)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    @router.get("/logout")
    async def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @router.get("/")
    async def home(who: UserRecord | Response = require_page("incident.read")) -> Response:
        return who if isinstance(who, Response) else RedirectResponse("/board", status_code=303)

    @router.get("/board", response_class=HTMLResponse)
    async def board(who: UserRecord | Response = require_page("incident.read")) -> Response:
        return who if isinstance(who, Response) else _board_page(who)

    @router.get("/board/stream")
    async def board_stream(request: Request, incident: str | None = None,
                           _: UserRecord = require("incident.read")) -> Response:
        """Server-Sent Events: `snapshot` (every open incident, or the one asked for), then `changes`."""
        if "text/event-stream" not in request.headers.get("accept", ""):
            return JSONResponse(status_code=406, content={"error": "an event stream: send Accept: text/event-stream"})
        return StreamingResponse(stream(request, request.app.state.view, incident), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @router.get("/raise", response_class=HTMLResponse)
    async def raise_page(who: UserRecord | Response = require_page("incident.raise")) -> Response:
        return who if isinstance(who, Response) else _raise_page(who)

    @router.get("/incidents/{incident_id}/page", response_class=HTMLResponse)
    async def incident_page(request: Request, incident_id: str,
                            who: UserRecord | Response = require_page("incident.read")) -> Response:
        if isinstance(who, Response):
            return who
        if incident_id not in request.app.state.view.incidents:
            body = (f'<main class="narrow"><section class="card"><h1>未找到事件</h1><p>没有编号为 '
                    f'<code>{escape(incident_id)}</code> 的事件。</p><p><a class="button" href="/board">返回态势大屏</a>'
                    '</p></section></main>')
            return layout().page("未找到事件", body, user=who, status_code=404)
        return _incident_page(who, incident_id)

    return router
