"""A drill scored: what was observed (replayed, or gathered from the topics) against the scenario's
expectations, as an Evaluation rendered in Markdown or JSON. Obligations are read through the one
fold of an incident's events (playbooks.fold), as the API's read model reads them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Union

from pydantic import Field

from playbooks.drill.replay import IncidentObserved, Observed, replay
from playbooks.drill.scenario import (
    DrillModel,
    Expect,
    Scenario,
    ScenarioError,
    ScenarioProblem,
    _dotted,
    format_offset,
    plan_problems,
)
from playbooks.fold import IncidentFold, ObligationStatus, fold
from playbooks.plan import Plan
from topics.models import EventKind, Grade, ObligationKind, ResponseLevel

DISPLAY_TZ = timezone(timedelta(hours=8), "+08:00")  # Asia/Shanghai has had no DST since 1991

Value = Union[bool, int, float, str, list[str], None]


class ExpectationResult(DrillModel):
    incident: str
    what: str
    expected: Value
    actual: Value
    passed: bool


class ObligationResult(DrillModel):
    incident: str
    kind: ObligationKind
    label: str
    due_at: datetime
    filed_at: datetime | None
    minutes: float | None = Field(description="filed minus due, in minutes: negative = early, positive = late")
    status: ObligationStatus = Field(description="missed stays missed when the incident's end closes it")
    escalation_step: int


class IncidentSummary(DrillModel):
    incident: str
    incident_id: str
    type_name: str
    grade: Grade | None
    response_level: ResponseLevel | None
    lead_units: list[str]
    breaches: int
    escalations: int
    notifications: int


class Totals(DrillModel):
    incidents: int
    expectations: int
    passed: int
    failed: int
    obligations: int
    met: int
    late: int
    missed: int
    breaches: int
    escalations: int
    reminders: int
    notifications: int


class Evaluation(DrillModel):
    scenario: str
    name: str
    kind: str
    organiser: str
    objectives: list[str]
    start: datetime
    end: datetime
    plan_version: str | None
    score: float | None = Field(description="passed / total expectations, percent; None without expectations")
    totals: Totals
    incidents: list[IncidentSummary]
    expectations: list[ExpectationResult]
    obligations: list[ObligationResult]


def _obligations(key: str, inc: IncidentObserved, folded: IncidentFold) -> list[ObligationResult]:
    """The obligation table from the timeline alone (its fold), so topics serve as well as a replay."""
    labels = {ob.kind.value: ob.label for d in inc.decisions for ob in d.obligations}
    return [
        ObligationResult(
            incident=key, kind=ObligationKind(kind), label=labels.get(kind) or ob.label, due_at=ob.due_at,
            filed_at=ob.filed_at,
            minutes=None if ob.filed_at is None else round((ob.filed_at - ob.due_at).total_seconds() / 60, 1),
            status=ob.status, escalation_step=ob.escalation_step or 0,
        )
        for kind, ob in folded.obligations.items()
    ]


def _matches(ref: str, unit_id: str, name: str) -> bool:
    return ref in (unit_id, name)


def _check(key: str, exp: Expect, inc: IncidentObserved | None, folded: IncidentFold,
           obligations: list[ObligationResult]) -> list[ExpectationResult]:
    rows: list[ExpectationResult] = []

    def add(what: str, expected: Value, actual: Value, passed: bool | None = None) -> None:
        rows.append(ExpectationResult(incident=key, what=what, expected=expected, actual=actual,
                                      passed=(expected == actual) if passed is None else passed))

    inc = inc or IncidentObserved(incident_id="")
    last = inc.decisions[-1] if inc.decisions else None
    events = inc.events
    if exp.grade is not None:
        add("grade", exp.grade.value, last.grade.value if last else None)
    if exp.response_level is not None:
        add("response_level", exp.response_level.value, last.response_level.value if last else None)
    if exp.lead_units is not None:
        actual = list(zip(last.lead_unit_ids, last.lead_units)) if last else []
        same = len(actual) == len(exp.lead_units) and all(any(_matches(r, i, n) for i, n in actual) for r in exp.lead_units)
        add("lead_units", list(exp.lead_units), [n for _, n in actual], same)
    routed = [(n.unit_id, n.unit) for n in inc.notifications if n.kind in ("routing", "approved_report")]
    for ref in exp.notified:
        add(f"notified.{ref}", True, any(_matches(ref, i, n) for i, n in routed))
    for ref in exp.not_notified:
        add(f"not_notified.{ref}", False, any(_matches(ref, i, n) for i, n in routed))
    chased = [(n.unit_id, n.unit) for n in inc.notifications if n.kind == "escalation"]
    for ref in exp.escalated_to:
        add(f"escalated_to.{ref}", True, any(_matches(ref, i, n) for i, n in chased))
    if exp.regraded_to is not None:
        add("regraded_to", [g.value for g in exp.regraded_to], list(folded.regraded_to))
    if exp.level_adjusted_to is not None:
        add("level_adjusted_to", [lv.value for lv in exp.level_adjusted_to], list(folded.level_adjusted_to))
    by_kind = {o.kind: o for o in obligations}
    for kind, status in exp.obligations.items():
        add(f"obligations.{kind.value}", status, by_kind[kind].status if kind in by_kind else "not opened")
    if exp.breaches is not None:
        add("breaches", exp.breaches, sum(e.kind is EventKind.BREACH for e in events))
    for kind, step in exp.escalation_steps.items():
        add(f"escalation_steps.{kind.value}", step, by_kind[kind].escalation_step if kind in by_kind else 0)
    if exp.approved is not None:
        add("approved", exp.approved, folded.approved)
    if exp.ended is not None:
        add("ended", exp.ended, folded.ended)
    return rows


def score(scenario: Scenario, observed: Observed) -> Evaluation:
    """Observed against the scenario's expectations; deterministic for the same input."""
    obligations: list[ObligationResult] = []
    summaries: list[IncidentSummary] = []
    folded = {key: fold(inc.events) for key, inc in observed.incidents.items()}
    for key, inc in observed.incidents.items():
        obligations += _obligations(key, inc, folded[key])
        last = inc.decisions[-1] if inc.decisions else None
        summaries.append(IncidentSummary(
            incident=key, incident_id=inc.incident_id, type_name=last.type_name if last else "",
            grade=last.grade if last else None, response_level=last.response_level if last else None,
            lead_units=list(last.lead_units) if last else [],
            breaches=sum(e.kind is EventKind.BREACH for e in inc.events),
            escalations=sum(e.kind is EventKind.ESCALATION for e in inc.events),
            notifications=len(inc.notifications),
        ))
    results: list[ExpectationResult] = []
    for key, exp in scenario.expect.items():
        results += _check(key, exp, observed.incidents.get(key), folded.get(key) or IncidentFold(),
                          [o for o in obligations if o.incident == key])
    passed = sum(r.passed for r in results)
    every_event = [e for inc in observed.incidents.values() for e in inc.events]
    versions = sorted({d.plan_version for inc in observed.incidents.values() for d in inc.decisions})
    totals = Totals(
        incidents=len(observed.incidents), expectations=len(results), passed=passed, failed=len(results) - passed,
        obligations=len(obligations), met=sum(o.status == "met" for o in obligations),
        late=sum(o.status == "late" for o in obligations), missed=sum(o.status == "missed" for o in obligations),
        breaches=sum(e.kind is EventKind.BREACH for e in every_event),
        escalations=sum(e.kind is EventKind.ESCALATION for e in every_event),
        reminders=sum(e.kind is EventKind.REMINDER for e in every_event),
        notifications=sum(len(inc.notifications) for inc in observed.incidents.values()),
    )
    return Evaluation(
        scenario=scenario.id, name=scenario.name, kind=scenario.kind, organiser=scenario.organiser,
        objectives=list(scenario.objectives), start=scenario.start, end=scenario.end,
        plan_version=", ".join(versions) or None,
        score=round(100 * passed / len(results), 1) if results else None,
        totals=totals, incidents=summaries, expectations=results, obligations=obligations,
    )


def evaluate(scenario: Scenario, plan: Plan, *, run: str = "drill") -> Evaluation:
    """`drill eval`: replay in-process, then score."""
    problems = plan_problems(scenario, plan)
    if problems:
        raise ScenarioError(scenario.id, [ScenarioProblem(None, _dotted(loc), msg) for loc, msg in problems])
    return score(scenario, replay(scenario, plan, run=run))


# --- rendering --------------------------------------------------------------------------------

_WHAT = {
    "grade": "事件等级", "response_level": "响应级别", "lead_units": "牵头单位", "notified": "应通知",
    "not_notified": "不应通知", "escalated_to": "督办到",
    "regraded_to": "等级调整", "level_adjusted_to": "响应级别调整",
    "obligations": "报送义务", "breaches": "逾期（漏报）次数", "escalation_steps": "督办级数",
    "approved": "区应急委批准", "ended": "应急结束",
}
_STATUS = {"open": "未到期", "met": "按时", "late": "迟报", "missed": "漏报", "closed": "已关闭", "not opened": "未产生"}


def value_text(value: Value) -> str:
    """An expected or actual value as people read it: 是/否, 按时/迟报…, a list joined."""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list):
        return "、".join(value) or "（无）"
    if value is None:
        return "—"
    return _STATUS.get(str(value), str(value))


def what_text(what: str, labels: dict[str, str] | None = None) -> str:
    """An expectation's item as people read it: 报送义务：电话报告 for obligations.phone_report (`labels`: the
    obligations' labels by kind, when known)."""
    head, _, rest = what.partition(".")
    return _WHAT.get(head, head) + (f"：{(labels or {}).get(rest, rest)}" if rest else "")


def _cell(value: Value) -> str:
    return value_text(value).replace("|", "\\|").replace("\n", " ")


def _when(ev: Evaluation, at: datetime | None) -> str:
    if at is None:
        return "—"
    local, origin = at.astimezone(DISPLAY_TZ), ev.start.astimezone(DISPLAY_TZ)
    shown = f"{local:%H:%M}" if local.date() == origin.date() else f"{local:%m-%d %H:%M}"
    return f"T+{format_offset(at - ev.start)}（{shown}）"


def to_markdown(ev: Evaluation) -> str:
    """The evaluation as Markdown; the same evaluation gives the same text."""
    t = ev.totals
    score = f"{ev.score:g}%（{t.passed}/{t.expectations} 项符合预期）" if ev.score is not None else "（未设预期）"
    lines = [
        f"# 演练评估：{ev.name}", "",
        f"- 演练：`{ev.scenario}`，{ev.kind}演练，组织单位 {ev.organiser}",
        f"- 模拟时间：{ev.start.astimezone(DISPLAY_TZ):%Y-%m-%d %H:%M} 至 {ev.end.astimezone(DISPLAY_TZ):%Y-%m-%d %H:%M}"
        f"（+08:00，时长 {format_offset(ev.end - ev.start)}）",
        f"- 预案版本：{ev.plan_version or '—'}",
        f"- **得分：{score}**", "", "演练目标：", *[f"- {o}" for o in ev.objectives], "",
        "## 事件概况", "", "| 事件 | 类型 | 等级 | 响应 | 牵头单位 | 逾期 | 督办 | 通知 |", "|---|---|---|---|---|---|---|---|",
    ]
    for s in ev.incidents:
        lines.append(f"| {s.incident} | {s.type_name} | {_cell(s.grade.value if s.grade else None)} | "
                     f"{_cell(s.response_level.value if s.response_level else None)} | {_cell(s.lead_units)} | "
                     f"{s.breaches} | {s.escalations} | {s.notifications} |")
    lines += ["", "## 预期核对", ""]
    if ev.expectations:
        lines += ["| 事件 | 项目 | 预期 | 实际 | 结果 |", "|---|---|---|---|---|"]
        labels = {(o.incident, o.kind.value): o.label for o in ev.obligations}
        for r in ev.expectations:
            what = what_text(r.what, {k: v for (i, k), v in labels.items() if i == r.incident})
            lines.append(f"| {r.incident} | {_cell(what)} | {_cell(r.expected)} | {_cell(r.actual)} | "
                         f"{'✔ 符合' if r.passed else '✘ 不符'} |")
    else:
        lines.append("（本演练未设预期）")
    lines += ["", "## 报送义务", "", "| 事件 | 义务 | 应报时间 | 实际报送 | 早(−)/迟(+)分钟 | 状态 | 督办级数 |",
              "|---|---|---|---|---|---|---|"]
    for o in ev.obligations:
        minutes = "—" if o.minutes is None else f"{o.minutes:+g}"
        lines.append(f"| {o.incident} | {_cell(o.label)} | {_when(ev, o.due_at)} | {_when(ev, o.filed_at)} | {minutes} | "
                     f"{_cell(o.status)} | {o.escalation_step or '—'} |")
    lines += ["", "## 合计", "",
              f"- 事件 {t.incidents} 起；报送义务 {t.obligations} 项：按时 {t.met}，迟报 {t.late}，漏报 {t.missed}",
              f"- 逾期 {t.breaches} 次，逐级督办 {t.escalations} 次，到期提醒 {t.reminders} 次，通知 {t.notifications} 条",
              f"- 预期 {t.expectations} 项：符合 {t.passed}，不符 {t.failed}", ""]
    return "\n".join(lines)


def to_json(ev: Evaluation) -> str:
    return json.dumps(ev.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n"
