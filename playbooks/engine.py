"""The decision engine: a report, the plan and `now` in; a decision with its reasons out.

Pure: no I/O, no clock, no Kafka. The same function serves the live agents, drills and unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from playbooks.plan import FACTS, Condition, IncidentType, Plan
from topics.models import (
    GRADE_RANK,
    LEVEL_RANK,
    Commander,
    Decision,
    Grade,
    Notice,
    Obligation,
    Reason,
    ReportFacts,
    ResponseLevel,
)


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ReportRejected(ValueError):
    """The report cannot be decided: every problem names its field."""

    def __init__(self, problems: list[FieldProblem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

    @classmethod
    def single(cls, field: str, message: str) -> "ReportRejected":
        return cls([FieldProblem(field, message)])


def check_report(report: ReportFacts, plan: Plan) -> list[FieldProblem]:
    """What the contract alone cannot check: the type and the street must be the plan's own."""
    problems = []
    if plan.find_type(report.type) is None:
        problems.append(FieldProblem("type", f"unknown incident type {report.type!r}: not in table 2.3.6"))
    street = report.location.street
    if street and street not in plan.streets:
        problems.append(
            FieldProblem("location.street", f"{street!r} is not one of the district's 22 streets and townships")
        )
    return problems


def fact_value(report: ReportFacts, fact: str) -> float:
    f = report.facts
    match fact:
        case "deaths_incl_missing":
            return f.deaths + f.missing
        case "serious_injuries_incl_poisoned" | "poisoned_or_serious_injuries":
            return f.serious_injuries + f.poisoned
        case "magnitude" | "interruption_hours":
            value = getattr(f, fact)
            return 0.0 if value is None else float(value)
        case _ if fact in FACTS:
            return float(getattr(f, fact))
    raise KeyError(fact)


@dataclass(frozen=True)
class _Context:
    report: ReportFacts
    itype: IncidentType
    grade: Grade
    level: ResponseLevel | None
    ended: bool = False


def holds(cond: Condition, ctx: _Context) -> bool:
    r = ctx.report
    checks: list[bool] = []
    if cond.always is not None:
        checks.append(cond.always)
    if cond.grade_in is not None:
        checks.append(ctx.grade in cond.grade_in)
    if cond.level_in is not None:
        checks.append(ctx.level is not None and ctx.level in cond.level_in)
    if cond.category_in is not None:
        checks.append(ctx.itype.category in cond.category_in)
    if cond.subcategory_in is not None:
        checks.append(ctx.itype.subcategory in cond.subcategory_in)
    if cond.type_in is not None:
        checks.append(ctx.itype.id in cond.type_in)
    if cond.fact_positive is not None:
        checks.append(any(fact_value(r, f) > 0 for f in cond.fact_positive))
    if cond.flag is not None:
        checks.append(any(getattr(r.flags, f) for f in cond.flag))
    if cond.key_area_nonempty is not None:
        checks.append(bool(r.location.key_area) == cond.key_area_nonempty)
    if cond.key_area_contains is not None:
        checks.append(any(area in cond.key_area_contains for area in r.location.key_area))
    if cond.street_given is not None:
        checks.append(bool(r.location.street) == cond.street_given)
    if cond.ended is not None:
        checks.append(ctx.ended == cond.ended)
    if cond.any is not None:
        checks.append(any(holds(c, ctx) for c in cond.any))
    if cond.all is not None:
        checks.append(all(holds(c, ctx) for c in cond.all))
    return all(checks)


def grade_from_facts(report: ReportFacts, itype: IncidentType, plan: Plan) -> tuple[Grade, list[Reason]]:
    """The highest grade any single criterion of the type's family reaches; 一般 below all of them."""
    if itype.grading_family is None:
        return Grade.UNDETERMINED, [
            Reason(
                rule="grade.no_family",
                section="1.4.2; 4.1.3",
                text=f"{itype.name}由专项预案定性分级，尚无量化标准：暂时无法判明事件等级，以报告单位判断为准",
            )
        ]
    family = plan.grading[itype.grading_family]
    best, reasons = Grade.GENERAL, []
    for crit in family.criteria:
        value = fact_value(report, crit.fact)
        reached = [g for g, threshold in crit.thresholds.items() if value >= threshold]
        if not reached:
            continue
        top = max(reached, key=GRADE_RANK.__getitem__)
        if GRADE_RANK[top] > GRADE_RANK[Grade.GENERAL]:
            reasons.append(
                Reason(
                    rule=f"grade.{itype.grading_family}.{crit.fact}",
                    section=family.source,
                    text=f"{crit.label} {value:g} ≥ {crit.thresholds[top]:g}，达到{top.value}",
                )
            )
        if GRADE_RANK[top] > GRADE_RANK[best]:
            best = top
    if best is Grade.GENERAL:
        reasons.append(
            Reason(
                rule=f"grade.{itype.grading_family}.below_thresholds",
                section=family.source,
                text=f"按{family.name}分级标准，各项指标均未达到较大，定为一般",
            )
        )
    return best, reasons


def final_grade(computed: Grade, report: ReportFacts) -> tuple[Grade, list[Reason]]:
    """The reporting unit's asserted grade against the computed one: the higher wins."""
    asserted = report.asserted_grade
    if asserted is None or asserted is Grade.UNDETERMINED:
        return computed, []
    who = report.asserted_by or "报告单位"
    if computed is Grade.UNDETERMINED:
        return asserted, [
            Reason(rule="grade.asserted", section="1.4.2; 4.1.3", text=f"按{who}研判，定为{asserted.value}")
        ]
    if asserted == computed:
        return computed, [
            Reason(rule="grade.asserted_agrees", section="1.4.2", text=f"{who}研判等级{asserted.value}与计算一致")
        ]
    higher = max(asserted, computed, key=GRADE_RANK.__getitem__)
    return higher, [
        Reason(
            rule="grade.disagreement",
            section="1.4.2",
            text=f"计算等级{computed.value}与{who}研判等级{asserted.value}不一致，取较高者{higher.value}",
        )
    ]


def response_level(ctx: _Context, plan: Plan) -> tuple[ResponseLevel, bool, list[Reason]]:
    rules = sorted(plan.response.base_levels, key=lambda r: r.order)
    base = next((r for r in rules if holds(r.when, ctx)), None)
    if base is None:  # the plan's rules cover every grade; this guards a broken YAML edit
        raise ValueError(f"response.yaml: no base level rule matches grade {ctx.grade.value}")
    level = base.level
    reasons = [Reason(rule=base.id, section=base.section, text=f"{base.text}（{level.value}）")]
    raises = [r for r in plan.response.raise_one_level if holds(r.when, ctx)]
    if raises:
        raised = min(LEVEL_RANK[level] + 1, LEVEL_RANK[ResponseLevel.LEVEL_1])
        new_level = next(lv for lv, rank in LEVEL_RANK.items() if rank == raised)
        for r in raises:
            reasons.append(
                Reason(
                    rule=r.id,
                    section=r.section,
                    text=f"{r.text}：{level.value}→{new_level.value}"
                    if new_level != level
                    else f"{r.text}（已为最高级一级）",
                )
            )
        level = new_level
    return level, base.triage, reasons


def notices(ctx: _Context, plan: Plan, street_id: str | None) -> tuple[list[Notice], list[Reason]]:
    by_unit: dict[str, dict] = {}
    reasons: list[Reason] = []
    for rule in plan.notifications:
        if not holds(rule.when, ctx):
            continue
        reasons.append(Reason(rule=rule.id, section=rule.section, text=rule.text))
        for ref in rule.units:
            ids = list(ctx.itype.lead_units) if ref == "$lead" else ([street_id] if ref == "$street" else [ref])
            for unit_id in ids:
                if unit_id is None:
                    continue
                entry = by_unit.get(unit_id)
                if entry is None:
                    by_unit[unit_id] = {
                        "unit_id": unit_id,
                        "unit": plan.unit_name(unit_id),
                        "why": [rule.text],
                        "rule": rule.id,
                        "section": rule.section,
                        "after_approval": rule.after_approval,
                    }
                else:
                    entry["why"].append(rule.text)
                    entry["after_approval"] = entry["after_approval"] and rule.after_approval
    out = [
        Notice(
            unit_id=e["unit_id"],
            unit=e["unit"],
            why="；".join(e["why"]),
            rule=e["rule"],
            section=e["section"],
            after_approval=e["after_approval"],
        )
        for e in by_unit.values()
    ]
    return out, reasons


def obligations(ctx: _Context, plan: Plan, basis_at: datetime) -> list[Obligation]:
    out = []
    lead = ctx.itype.lead_units[0]
    for rule in plan.obligations:
        if not holds(rule.when, ctx):
            continue
        start: datetime = basis_at if rule.counts_from == "basis_at" else getattr(ctx.report, rule.counts_from)
        due = start + timedelta(minutes=rule.due_after_minutes)
        owner = lead if rule.owner == "$lead" else rule.owner
        recipient = lead if rule.recipient == "$lead" else rule.recipient
        out.append(
            Obligation(
                kind=rule.kind,
                label=rule.label,
                owner_id=owner,
                owner=plan.unit_name(owner),
                recipient_id=recipient,
                recipient=plan.unit_name(recipient),
                counts_from=rule.counts_from,
                starts_at=start,
                due_at=due,
                remind_at=due - timedelta(minutes=rule.remind_before_minutes),
                escalation=rule.escalation,
                rule=f"obligation.{rule.kind.value}",
                section=rule.section,
            )
        )
    return out


def obligations_at_end(decision: Decision, report: ReportFacts, plan: Plan, *, ended_at: datetime) -> list[Obligation]:
    """What an ended incident still owes (5.4.2: the evaluation report after a 一般 event)."""
    itype = plan.types[decision.type_id]
    live = _Context(report=report, itype=itype, grade=decision.grade, level=decision.response_level)
    ended = _Context(report=report, itype=itype, grade=decision.grade, level=decision.response_level, ended=True)
    before = {o.kind for o in obligations(live, plan, ended_at)}
    return [o for o in obligations(ended, plan, ended_at) if o.kind not in before]


def decide(
    report: ReportFacts,
    plan: Plan,
    now: datetime,
    *,
    incident_id: str | None = None,
    basis_at: datetime | None = None,
) -> Decision:
    """Grade, response level, lead units, commanders, notices and obligations for one report.

    basis_at: the time of the record this decision answers (the report's received_at, or the
    follow-up's filing time); obligations that count from it (the city report) start there.
    """
    problems = check_report(report, plan)
    if problems:
        raise ReportRejected(problems)
    itype = plan.find_type(report.type)
    assert itype is not None  # check_report guarantees it
    reasons: list[Reason] = [
        Reason(
            rule="type.lead_units",
            section="2.3.6",
            text=f"{itype.category_name}·{itype.subcategory}·{itype.name}：处置主责部门 "
            + "、".join(plan.unit_name(u) for u in itype.lead_units),
        )
    ]
    computed, grade_reasons = grade_from_facts(report, itype, plan)
    grade, assert_reasons = final_grade(computed, report)
    reasons += grade_reasons + assert_reasons

    ctx = _Context(report=report, itype=itype, grade=grade, level=None)
    level, triage, level_reasons = response_level(ctx, plan)
    reasons += level_reasons
    ctx = _Context(report=report, itype=itype, grade=grade, level=level)

    command = plan.response.commanders[level]
    lead_name = plan.unit_name(itype.lead_units[0])
    commanders = [
        Commander(role=c.role, who=c.who.replace("{lead}", lead_name), section=command.section)
        for c in command.roles
    ]
    street = report.location.street
    street_id = plan.streets[street].id if street else None
    notify, notify_reasons = notices(ctx, plan, street_id)
    reasons += notify_reasons
    return Decision(
        incident_id=incident_id or report.report_id,
        report_id=report.report_id,
        type_id=itype.id,
        type_name=itype.name,
        category=itype.category,
        category_name=itype.category_name,
        grade=grade,
        computed_grade=computed,
        grading_family=itype.grading_family,
        response_level=level,
        lead_unit_ids=list(itype.lead_units),
        lead_units=[plan.unit_name(u) for u in itype.lead_units],
        commanders=commanders,
        field_hq=command.field_hq,
        under_city_command=command.under_city_command,
        triage_by_district_office=triage,
        needs_approval_for_city_report=any(n.after_approval for n in notify),
        notify=notify,
        obligations=obligations(ctx, plan, basis_at or report.received_at),
        reasons=reasons,
        decided_at=now,
        plan_version=plan.version,
    )
