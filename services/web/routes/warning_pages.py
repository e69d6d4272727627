"""The 预警 pages (issue 20 item 5): the warnings, live ones first (/warnings/list); the warning form for
the issuing units (/warnings/new); a warning's page with its eight items of 3.2.4, its approvals, its
history with each step's CAP, its tasks (issue 20 item 2: 3.2.5 measures, 3.2.8 publications, 3.2.3
filings, each with its unit's confirmation) and the buttons its reader may use (/warnings/{id}/page).

Thin: each reads the WarningBook as GET /warnings does (the same `answer`) and lays it out; the form and
the buttons are the pages' script (static/warning.js) calling the JSON routes of
services.web.routes.warnings, whose refusals it shows next to their field. Times in Asia/Shanghai.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from playbooks.duty.roster import SHANGHAI
from playbooks.plan import Plan
from playbooks.warning.messages import MESSAGE_KINDS
from playbooks.warning.rules import WarningsFile
from services.web.auth import require_page
from services.web.permissions import can
from services.web.routes.warnings import answer
from services.web.state import ClockDep, PagesDep, PlanDep, WarningsConfigDep, WarningsDep
from topics.models import UserRecord
from topics.warnings import WarningEventKind, WarningStatus

router = APIRouter(include_in_schema=False)

STATUS_LABEL = {"draft": "草案", "issued": "已发布", "lifted": "已解除"}
KIND_LABEL = {"drafted": "拟稿", "approved": "批准", "issued": "发布", "adjusted": "调整级别", "lifted": "解除",
              "task_done": "确认任务"}
# the task groups of the page, in the plan's order; the measures (a 橙/红 warning: 22 streets × up to 6)
# start folded, the publications and filings open
TASK_GROUPS = [("measure", "措施", "3.2.5", False), ("publication", "发布渠道", "3.2.8", True),
               ("filing", "备案", "3.2.3", True)]
# the units of the approvals (3.2.3(1)): 区领导 sit in 区政府, then 市应急办
APPROVAL_UNIT = {"district_leader": "district_government", "city_office": "city_emergency_office"}


def when(t: datetime | None) -> str:
    return t.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S") if t else "—"


def hhmm(t: datetime) -> str:
    return t.astimezone(SHANGHAI).strftime("%H:%M")


def task_groups(ans: Any, plan: Plan) -> list[dict[str, Any]]:
    """The warning's tasks by kind, each row laid out once here (no call per row from the page): its
    unit's name, what it is, its section, the step that made it (the task id's seq) and who confirmed it."""
    steps = {h.seq: KIND_LABEL.get(h.kind.value, h.kind.value) for h in ans.history}
    prefix = f"{ans.warning_id}."
    groups = []
    for kind, label, section, open_ in TASK_GROUPS:
        rows = []
        for t in ans.tasks:
            if t.task.kind != kind:
                continue
            seq = t.task.id[len(prefix):].split(".", 1)[0] if t.task.id.startswith(prefix) else ""
            rows.append({"id": t.task.id, "unit_id": t.task.unit_id, "unit": unit_name(plan, t.task.unit_id),
                         "name": t.task.name, "section": t.task.section,
                         "step": steps.get(int(seq), "") if seq.isdigit() else "",
                         "done_at": hhmm(t.done_at) if t.done_at else None,
                         "done_full": when(t.done_at) if t.done_at else None, "done_by": t.done_by})
        groups.append({"kind": kind, "label": label, "section": section, "open": open_, "rows": rows,
                       "done": sum(1 for r in rows if r["done_at"])})
    return groups


def unit_name(plan: Plan, unit_id: str | None) -> str:
    if not unit_id:
        return "—"
    return plan.unit_name(unit_id) if unit_id in plan.units else unit_id


def issuing_units(config: WarningsFile, plan: Plan) -> list[tuple[str, str]]:
    """Who may issue (3.2.3(1)): the categories' HQs and departments (蓝/黄), 区应急办 (橙/红, and adjusting)."""
    ids = [config.authority["orange_red"]["issuer"]]
    for c in config.categories:
        ids += [c.hq, c.department]
    return [(u, unit_name(plan, u)) for u in dict.fromkeys(ids) if u in plan.units]


def levels(config: WarningsFile) -> list[dict[str, Any]]:
    return [{"id": lv.id.value, "name": lv.name, "grade": lv.grade, "high": lv.id in config.high}
            for lv in sorted(config.levels, key=lambda lv: lv.rank)]


def not_found(request: Request, pages: Any, who: UserRecord, warning_id: str) -> HTMLResponse:
    return pages.render(request, "not_found.html", user=who, status_code=404, what="预警", thing_id=warning_id,
                        back=("/warnings/list", "返回预警列表"))


@router.get("/warnings/list", response_class=HTMLResponse)
async def warnings_list(request: Request, pages: PagesDep, plan: PlanDep, book: WarningsDep, config: WarningsConfigDep,
                        who: UserRecord | Response = require_page("warning.read")) -> Response:
    if isinstance(who, Response):
        return who
    # live ones first (issued), then drafts, then lifted; newest first in each
    order = {WarningStatus.ISSUED: 0, WarningStatus.DRAFT: 1, WarningStatus.LIFTED: 2}
    rows = []
    for st in book.all():
        history = book.history(st.warning_id)
        c = st.content
        lv = config.level(c.level) if c.level else None
        cat = config.category(c.category or "")
        rows.append({"id": st.warning_id, "status": st.status.value, "status_label": STATUS_LABEL[st.status.value],
                     "level": c.level.value if c.level else "", "level_name": f"{lv.name}预警" if lv else "—",
                     "grade": lv.grade if lv else "", "category": cat.name if cat else (c.category or "—"),
                     "area": "、".join(unit_name(plan, a) for a in c.area) or "—", "drill": st.drill,
                     "issuer": unit_name(plan, c.issuer), "at": history[-1].at if history else None,
                     "order": order[st.status]})
    rows.sort(key=lambda r: (r["order"], -(r["at"].timestamp() if r["at"] else 0)))
    return pages.render(request, "warnings.html", user=who, rows=rows, when=when,
                        can_issue=can(who, "warning.issue"))


@router.get("/warnings/new", response_class=HTMLResponse)
async def warning_form(request: Request, pages: PagesDep, plan: PlanDep, config: WarningsConfigDep, clock: ClockDep,
                       who: UserRecord | Response = require_page("warning.issue")) -> Response:
    if isinstance(who, Response):
        return who
    streets = [(u.id, u.name) for u in plan.units.values() if u.kind == "street"]
    page_config = {"high": sorted(lv.value for lv in config.high), "server_time": clock.now().isoformat()}
    return pages.render(request, "warning_new.html", user=who, units=issuing_units(config, plan),
                        categories=config.categories, levels=levels(config), streets=streets,
                        base=config.base_measures, extra=config.extra_measures, config=page_config)


@router.get("/warnings/{warning_id}/page", response_class=HTMLResponse)
async def warning_page(request: Request, warning_id: str, pages: PagesDep, plan: PlanDep, book: WarningsDep,
                       config: WarningsConfigDep, who: UserRecord | Response = require_page("warning.read")) -> Response:
    if isinstance(who, Response):
        return who
    state = book.state(warning_id)
    if state is None:
        return not_found(request, pages, who, warning_id)
    ans = answer(book, state, config)
    c = ans.content
    lv = config.level(ans.level)
    cat = config.category(c.category or "")
    measures = {m.id: m.name for m in (*config.base_measures, *config.extra_measures)}
    items = [  # 3.2.4's eight items, in the plan's order
        ("类别", cat.name if cat else (c.category or "—")),
        ("预警级别", f"{lv.grade}{lv.name}"),
        ("起始时间", when(c.start)),
        ("可能影响范围", "、".join(unit_name(plan, a) for a in c.area) or "—"),
        ("警示事项", c.hazards or "—"),
        ("应采取的措施", None),
        ("发布单位", unit_name(plan, c.issuer)),
        ("发布时间", when(c.issued_at)),
    ]
    approval_names = {a.id: a.name for a in config.approvals}
    approval_names[config.adjustment["approval"]["id"]] = config.adjustment["approval"]["name"]
    approvals = [{"name": approval_names.get(a.id, a.id), "approver": a.approver, "by": a.by, "at": when(a.at)}
                 for a in ans.approvals]
    history = [{"seq": h.seq, "kind": KIND_LABEL.get(h.kind.value, h.kind.value), "at": when(h.at), "by": h.by,
                "level": f"{config.level(h.level).name}", "reasons": h.reasons, "tasks": len(h.tasks),
                "told": len(h.told), "cap": h.kind in MESSAGE_KINDS} for h in ans.history
               if h.kind is not WarningEventKind.TASK_DONE]  # confirmations: in the tasks, each by its row
    draft, issued = ans.status is WarningStatus.DRAFT, ans.status is WarningStatus.ISSUED
    high = ans.level in config.high
    pending = [a for a in config.approvals if a.id not in state.approvals] if draft and high else []
    may_approve, may_issue = can(who, "warning.approve"), can(who, "warning.issue")
    page_config = {
        "warning_id": warning_id, "issuer": c.issuer, "adjuster": config.adjustment["by"],
        "approval_units": APPROVAL_UNIT, "high": sorted(lv.value for lv in config.high),
        "base": [m.id for m in config.base_measures], "measures": c.measures,
    }
    return pages.render(
        request, "warning.html", user=who, w=ans, items=items, measures=[measures.get(m, m) for m in c.measures],
        level_name=f"{lv.name}预警", grade=lv.grade, status_label=STATUS_LABEL[ans.status.value],
        approvals=approvals, history=history, pending=pending if may_approve else [],
        can_issue=draft and may_issue, can_adjust=(draft or issued) and may_approve, can_lift=issued and may_issue,
        levels=levels(config), extra=config.extra_measures, config=page_config, proposer=unit_name(plan, ans.proposer),
        done=request.query_params.get("done", ""), task_groups=task_groups(ans, plan), can_confirm=may_issue)
