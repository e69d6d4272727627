"""The decision engine: a report, the plan and `now` in; a decision with its reasons out.

Pure: no I/O, no clock, no Kafka. The same function serves the live agents, drills and unit tests.
The rules are here; what a condition reads is playbooks.conditions, and the memo that keeps a
decision cheap is playbooks.memo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from playbooks.conditions import Context, fact_value, holds
from playbooks.memo import DECISIONS, match_key, memo, report_key, report_reading
from playbooks.plan import IncidentType, Plan
from topics.models import (
    GRADE_RANK,
    LEVEL_RANK,
    Commander,
    Contract,
    Decision,
    Grade,
    Notice,
    Obligation,
    Reason,
    RecordId,
    ReportFacts,
    ResponseLevel,
    SpecialCommand,
    UtcDatetime,
)
from topics.requests import FileReportRequest

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class PlanCannotDecide(ValueError):
    """The plan loads, yet has no rule for this report (a revision narrowed a rule every grade needs): its fault,
    not the report's. A what-if or a drill under such a revision says so instead of failing."""


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
        near = plan.nearest_type_names(report.type)
        hint = f"; nearest: {'、'.join(near)}" if near else ""
        problems.append(FieldProblem(
            "type", f"unknown incident type {report.type!r}: not in table 2.3.6{hint}; 其他 (other) if none fits (2.3.3)"))
    problems += _street_problems(report.location.street, "location.street", plan)
    return problems


def check_filing(req: FileReportRequest, plan: Plan) -> list[FieldProblem]:
    """What the plan must know of a filing: its unit (a unit, party or street of the plan), and a
    follow-up's street."""
    problems = []
    if req.unit_id not in plan.units and req.unit_id not in plan.parties:  # streets are units of the plan
        problems.append(FieldProblem("unit_id", f"{req.unit_id!r} is not a unit of the plan (units.yaml)"))
    location = req.followup.location if req.followup else None
    if location is not None:
        problems += _street_problems(location.street, "followup.location.street", plan)
    return problems


def _street_problems(street: str | None, field: str, plan: Plan) -> list[FieldProblem]:
    if street and street not in plan.streets:
        return [FieldProblem(field, f"{street!r} is not one of the district's 22 streets and townships")]
    return []


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


def response_level(ctx: Context, plan: Plan) -> tuple[ResponseLevel, bool, list[Reason]]:
    level, triage, reasons = memo(match_key(ctx, plan, "level"), lambda: _response_level(ctx, plan))
    return level, triage, list(reasons)


def _response_level(ctx: Context, plan: Plan) -> tuple[ResponseLevel, bool, list[Reason]]:
    rules = sorted(plan.response.base_levels, key=lambda r: r.order)
    base = next((r for r in rules if holds(r.when, ctx)), None)
    if base is None:  # the plan's rules cover every grade; this guards a broken YAML edit
        raise PlanCannotDecide(f"response.yaml: no base level rule matches grade {ctx.grade.value}")
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


def notices(ctx: Context, plan: Plan, street_id: str | None) -> tuple[list[Notice], list[Reason]]:
    matched = memo(match_key(ctx, plan, "notify_rules"), lambda: _matching_notification_rules(ctx, plan))
    # Many signatures match the same rules: their notices are built once per rule set, type and street.
    key = (plan.version, "notices", ctx.itype.id, street_id, *(i for i, _, _ in matched))
    out, reasons = memo(key, lambda: _notices(matched, ctx.itype, plan, street_id))
    return list(out), list(reasons)


def _matching_notification_rules(ctx: Context, plan: Plan) -> tuple:
    """The notification rules that hold, each with its place in the plan and its reason: the street
    plays no part in matching."""
    return tuple((i, rule, memo((plan.version, "notify_reason", rule.id),
                                 lambda: Reason(rule=rule.id, section=rule.section, text=rule.text)))
                 for i, rule in enumerate(plan.notifications) if holds(rule.when, ctx))


def _notices(matched: tuple, itype: IncidentType, plan: Plan,
             street_id: str | None) -> tuple[list[Notice], list[Reason]]:
    by_unit: dict[str, dict] = {}
    reasons: list[Reason] = []
    for i, rule, reason in matched:
        reasons.append(reason)
        for ref in rule.units:
            ids = list(itype.lead_units) if ref == "$lead" else ([street_id] if ref == "$street" else [ref])
            for unit_id in ids:
                if unit_id is None:
                    continue
                entry = by_unit.get(unit_id)
                if entry is None:
                    by_unit[unit_id] = {
                        "unit_id": unit_id,
                        "unit": plan.unit_name(unit_id),
                        "rules": [i],
                        "why": [rule.text],
                        "rule": rule.id,
                        "section": rule.section,
                        "after_approval": rule.after_approval,
                    }
                else:
                    entry["rules"].append(i)
                    entry["why"].append(rule.text)
                    entry["after_approval"] = entry["after_approval"] and rule.after_approval
    # A unit's notice follows from the unit and the rules that name it: built once per pair.
    out = [
        memo((plan.version, "notice", e["unit_id"], *e["rules"]), lambda: Notice(
            unit_id=e["unit_id"],
            unit=e["unit"],
            why="；".join(e["why"]),
            rule=e["rule"],
            section=e["section"],
            after_approval=e["after_approval"],
        ))
        for e in by_unit.values()
    ]
    return out, reasons


def obligations(ctx: Context, plan: Plan, basis_at: datetime) -> list[Obligation]:
    return _timed(_matching_obligations(ctx, plan), ctx.report, basis_at)


def _matching_obligations(ctx: Context, plan: Plan) -> tuple:
    lead = ctx.itype.lead_units[0]
    # the templates name the lead unit, which no condition reads: it is part of the key
    # the level is part of both keys: a rule's term may be the level's own (due_after_minutes_by_level)
    return memo(match_key(ctx, plan, "obligations", lead, ctx.level),
                lambda: tuple(memo((plan.version, "obligation", i, lead, ctx.level),
                                   lambda: _obligation_template(rule, lead, plan, ctx.level))
                              for i, rule in enumerate(plan.obligations) if holds(rule.when, ctx)))


def _timed(matched: tuple, report: ReportFacts, basis_at: datetime) -> list[Obligation]:
    out = []
    for counts_from, due_after, remind_before, template in matched:
        start: datetime = basis_at if counts_from == "basis_at" else getattr(report, counts_from)
        if start.tzinfo is not timezone.utc:
            start = start.astimezone(timezone.utc)  # as the contract's validator would
        due = start + due_after
        # the template was validated once; only the times differ between reports. copy_with inlined
        # for a frozen template with every field set (three per decision: a tenth of a warm decide)
        ob = _new(Obligation)
        _set(ob, "__dict__", template.__dict__ | {"starts_at": start, "due_at": due, "remind_at": due - remind_before})
        _set(ob, "__pydantic_fields_set__", template.__pydantic_fields_set__)
        _set(ob, "__pydantic_extra__", None)
        _set(ob, "__pydantic_private__", None)
        out.append(ob)
    return out


def _obligation_template(rule, lead: str, plan: Plan, level: ResponseLevel | None) -> tuple:
    """The rule's obligation without its times, validated once, and the offsets that time it."""
    owner = lead if rule.owner == "$lead" else rule.owner
    recipient = lead if rule.recipient == "$lead" else rule.recipient
    epoch = datetime(2000, 1, 1, tzinfo=timezone.utc)
    template = Obligation(
        kind=rule.kind,
        label=rule.label,
        owner_id=owner,
        owner=plan.unit_name(owner),
        recipient_id=recipient,
        recipient=plan.unit_name(recipient),
        counts_from=rule.counts_from,
        starts_at=epoch,
        due_at=epoch,
        remind_at=epoch,
        escalation=rule.escalation,
        met_by=rule.met_by,
        recurs=rule.recurs,
        rule=f"obligation.{rule.kind.value}",
        section=rule.section,
    )
    minutes = rule.due_after_minutes_by_level.get(level, rule.due_after_minutes) if level else rule.due_after_minutes
    return (rule.counts_from, timedelta(minutes=minutes), timedelta(minutes=rule.remind_before_minutes), template)


_new, _set = object.__new__, object.__setattr__


def copy_with(model: M, changes: dict) -> M:
    """model.model_copy(update=changes) for a model without extra fields or private attributes (every
    contract and state here), at half the cost: each decision is a copy of its template, as is each
    obligation, and each step of an incident's life starts from a copy of its state."""
    cls = model.__class__
    new = _new(cls)
    _set(new, "__dict__", model.__dict__ | changes)
    fields_set = model.__pydantic_fields_set__
    # A frozen model's set never changes after validation, so copies may share it (a template has
    # every field set: the common case); a state's copy gets its own.
    if not (cls.model_config.get("frozen") and changes.keys() <= fields_set):
        fields_set = fields_set | changes.keys()
    _set(new, "__pydantic_fields_set__", fields_set)
    _set(new, "__pydantic_extra__", None)
    _set(new, "__pydantic_private__", None)
    return new


def obligations_at_end(decision: Decision, report: ReportFacts, plan: Plan, *, ended_at: datetime,
                       announce: bool = False) -> list[Obligation]:
    """What an ended incident still owes (5.4.2: the evaluation report after a 一般 event; 4.8.2: the end
    announced to the public when 区应急委 decided so, `announce`)."""
    itype = plan.types[decision.type_id]
    live = Context(report=report, itype=itype, grade=decision.grade, level=decision.response_level)
    ended = Context(report=report, itype=itype, grade=decision.grade, level=decision.response_level, ended=True,
                    announce_end=announce)
    before = {o.kind for o in obligations(live, plan, ended_at)}
    return [o for o in obligations(ended, plan, ended_at) if o.kind not in before]


def _lead_reason(itype: IncidentType, plan: Plan) -> Reason:
    return Reason(
        rule="type.lead_units",
        section=itype.section,
        text=f"{itype.category_name}·{itype.subcategory}·{itype.name}：处置主责部门 "
        + "、".join(plan.unit_name(u) for u in itype.lead_units),
    )


def _commanders(itype: IncidentType, level: ResponseLevel, plan: Plan) -> tuple[Commander, ...]:
    command = plan.response.commanders[level]
    lead_name = plan.unit_name(itype.lead_units[0])
    return tuple(Commander(role=c.role, who=c.who.replace("{lead}", lead_name), section=command.section)
                 for c in command.roles)


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
    report = _normalized(report, plan)
    key = report_key(report, plan)
    hit = DECISIONS.get(key)
    template, matched = hit if hit is not None else DECISIONS.get_or_compute(
        key, lambda: _decision_template(report, plan))
    d = template.__dict__
    # each decision its own lists, as if validated (spelled out: a dict comprehension over the names
    # cost a sixth of a warm decision)
    changes = {"lead_unit_ids": d["lead_unit_ids"].copy(), "lead_units": d["lead_units"].copy(),
               "commanders": d["commanders"].copy(), "notify": d["notify"].copy(), "reasons": d["reasons"].copy(),
               "report_id": report.report_id,
               "obligations": _timed(matched, report, basis_at or report.received_at)}
    changes.update(_caller_fields(incident_id, report, now))
    return copy_with(template, changes)


def _normalized(report: ReportFacts, plan: Plan) -> ReportFacts:
    """The report as the plan's conditions read it (issue 20 item 1): a key area typed as people type it
    (城市副中心核心区, 副中心) also under the name the plan writes (4.1.7, 4.3.1, command.yaml's aliases), and a
    type that implies foreign involvement (涉外, 4.1.4) with its flag set. Before the memo's key, so two
    reports that read alike share a decision and two that do not never do."""
    areas = list(report.location.key_area)
    named = [area.name for a in areas if (area := plan.key_area(a)) is not None and area.name not in areas]
    itype = plan.find_type(report.type)
    foreign = itype is not None and not report.flags.foreign_involved and plan.implies_foreign(itype.id)
    if not named and not foreign:
        return report
    update: dict = {}
    if named:
        update["location"] = report.location.model_copy(update={"key_area": [*areas, *dict.fromkeys(named)]})
    if foreign:
        update["flags"] = report.flags.model_copy(update={"foreign_involved": True})
    return report.model_copy(update=update)


class _CallerFields(Contract):
    """What decide() takes from its caller into the decision, checked by the decision's own rules."""

    model_config = ConfigDict(title="Decision")  # so a refusal reads as it would from Decision itself
    incident_id: RecordId
    decided_at: UtcDatetime


def _caller_fields(incident_id: str | None, report: ReportFacts, now: datetime) -> dict:
    # The common case needs no validator: the report's id is a record id already, and the contract
    # would keep a UTC time as it is.
    if incident_id is None and type(now) is datetime and now.tzinfo is timezone.utc:
        return {"incident_id": report.report_id, "decided_at": now}
    caller = _CallerFields(incident_id=incident_id or report.report_id, decided_at=now)
    return {"incident_id": caller.incident_id, "decided_at": caller.decided_at}


def _decision_template(report: ReportFacts, plan: Plan) -> tuple[Decision, tuple]:
    """The decision on this report, validated, and the obligations it opens, not yet timed. Its ids,
    times and obligations are placeholders that decide() replaces for each report."""
    problems = check_report(report, plan)
    if problems:
        raise ReportRejected(problems)
    itype = plan.find_type(report.type)
    assert itype is not None  # check_report guarantees it
    reasons: list[Reason] = [memo((plan.version, "lead", itype.id), lambda: _lead_reason(itype, plan))]
    computed, grade_reasons = grade_from_facts(report, itype, plan)
    grade, assert_reasons = final_grade(computed, report)
    reasons += grade_reasons + assert_reasons

    reading = report_reading(report, plan)
    ctx = Context(report=report, itype=itype, grade=grade, level=None, reading=reading)
    level, triage, level_reasons = response_level(ctx, plan)
    reasons += level_reasons
    ctx = Context(report=report, itype=itype, grade=grade, level=level, reading=reading)

    command = plan.response.commanders[level]
    commanders = list(memo((plan.version, "commanders", itype.id, level), lambda: _commanders(itype, level, plan)))
    street = report.location.street
    street_id = plan.streets[street].id if street else None
    notify, notify_reasons = notices(ctx, plan, street_id)
    reasons += notify_reasons
    special = memo((plan.version, "special_command", itype.id), lambda: _special_command(itype.id, plan))
    if special is not None:
        reasons += list(special[1])
    decision = Decision(
        incident_id=report.report_id,
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
        under_city_command=command.under_city_command and (
            command.city_command_grades is None or grade in command.city_command_grades),
        triage_by_district_office=triage,
        needs_approval_for_city_report=any(n.after_approval for n in notify),
        notify=notify,
        obligations=[],
        reasons=reasons,
        decided_at=report.received_at,
        plan_version=plan.version,
        special_command=special[0] if special is not None else None,
    )
    return decision, _matching_obligations(ctx, plan)


def _special_command(type_id: str, plan: Plan) -> tuple[SpecialCommand, tuple[Reason, ...]] | None:
    """The HQ and plans behind the type (command.yaml), with their reasons; None for a type it lacks."""
    try:
        c = plan.command_for(type_id)
    except KeyError:
        return None
    return SpecialCommand(hq_id=c.hq_id, hq_name=c.hq_name, temporary=c.temporary, host_unit=c.host_unit,
                          special_plans=[p.name for p in c.plans], our_choice=c.our_choice), tuple(c.reasons)
