"""The pages, in Chinese: the command-center board (指挥中心态势大屏), the raise form (接报登记) and an
incident's page. Server-rendered from templates/ with the plan the app was given; the pages' scripts
(static/) call the API. A browser without a valid sign-in is sent to /login, a wrong role sees a 403
page; other clients keep the API's 401/403."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from playbooks.plan import IncidentType, Plan
from services.web.auth import require_page
from services.web.permissions import can
from services.web.board import BoardQuery, drill_runs, plan_shown
from services.web.first_screen import first_screen
from services.web.state import DrillsDep, PagesDep, PlanDep, ViewDep
from topics.models import Grade, ResponseLevel, Role, UserRecord

router = APIRouter(include_in_schema=False)

# The raise form's own fields, as the form labels them (the plan's rules read these facts and flags;
# their labels here are the form's, for a duty officer typing a report).
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


def type_groups(plan: Plan) -> list[tuple[str, list[IncidentType]]]:
    """Table 2.3.6's types by category, in the table's order; 其他 (2.3.3), outside the table, last."""
    groups: dict[str, list[IncidentType]] = {}
    for t in sorted(plan.types.values(), key=lambda t: (t.seq == 0, t.seq)):
        groups.setdefault(t.category_name, []).append(t)
    return list(groups.items())


@router.get("/")
async def home(who: UserRecord | Response = require_page("incident.read")) -> Response:
    return who if isinstance(who, Response) else RedirectResponse("/board", status_code=303)


@router.get("/board", response_class=HTMLResponse)
async def board(request: Request, pages: PagesDep, plan: PlanDep, view: ViewDep, drills: DrillsDep,
                who: UserRecord | Response = require_page("incident.read")) -> Response:
    """The board, its first screen of rows (for the view, filters and search of its URL) drawn inline:
    painted before its script runs or its stream opens (services.web.first_screen)."""
    if isinstance(who, Response):
        return who
    default_filter = "drill" if who.role is Role.DRILL_CONTROLLER else "live"
    query = BoardQuery.from_params(request.query_params, default_filter)
    config = {"user": who.name, "role": who.role.value, "default_filter": default_filter,
              "can_raise": can(who, "incident.raise"),
              # the filters' values in the plan's order, each shown even at 0 (issue 21 item 1)
              "streets": list(plan.streets), "grades": [g.value for g in Grade],
              "levels": [lv.value for lv in ResponseLevel],
              "categories": [name for name, _ in type_groups(plan)],
              "plan": plan_shown(request.app.state.plans, plan)}  # the header's, until the stream's `plan`
    first = first_screen(view, query, drill_runs(drills))
    return pages.render(request, "board.html", user=who, config=config, first=first)


@router.get("/raise", response_class=HTMLResponse)
async def raise_form(request: Request, pages: PagesDep, plan: PlanDep,
                     who: UserRecord | Response = require_page("incident.raise")) -> Response:
    if isinstance(who, Response):
        return who
    return pages.render(request, "raise.html", user=who, type_groups=type_groups(plan), table_size=len(plan.table_types),
                        streets=list(plan.streets), grades=[g.value for g in Grade], facts=FACTS, flags=FLAGS,
                        key_areas=KEY_AREAS)


@router.get("/incidents/{incident_id}/page", response_class=HTMLResponse)
async def incident_page(request: Request, incident_id: str, pages: PagesDep, plan: PlanDep, view: ViewDep,
                        who: UserRecord | Response = require_page("incident.read")) -> Response:
    if isinstance(who, Response):
        return who
    if incident_id not in view.incidents:
        return pages.render(request, "not_found.html", user=who, status_code=404, incident_id=incident_id)
    config: dict[str, Any] = {
        "incident_id": incident_id,
        "user": who.name,
        "can_file": can(who, "incident.file"),
        "can_approve": can(who, "incident.approve"),
        "can_end": can(who, "incident.end"),
        "can_private": can(who, "incident.private"),
        "can_ack": can(who, "notices.ack"),
        "units": [{"id": u.id, "name": u.name} for u in plan.units.values()],
        "end_authority": {g.value: a for g, a in plan.end_authority.items()},
        "grades": [g.value for g in Grade],
    }
    return pages.render(request, "incident.html", user=who, incident_id=incident_id, config=config)
