"""The drill programme's register (应急演练, 7.2.1–7.2.3), per unit and year: what 7.2.2 expects of each unit
and whether it is met, the drills planned and run (each run's score, from its evaluation), the improvement
items of the runs' failed expectations with who and by when (评估总结和改进), and the plans revised in the
year without a validation drill (验证性演练, 7.2.1), flagged.

Pure: the programme's records (topics/programme.py), the drill runs as their runners recorded them
(topics/drills.py), the plan, drills.yaml, the year and `now` in; the register with its reasons and sections
out. No clock, no Kafka, no services/. A year is Beijing's calendar year.

Precedence, written once here:
- a run counts for the planned drill it names (`planned_id`); a run naming none is listed apart, in the year
  it started, and counts for no unit;
- a planned drill is held (已实施) once one of its runs is done; several runs of it count once;
- a failed expectation of a held run owes an improvement item: one recorded for it (the run and the
  expectation's key) answers it; with none, it is 未登记, overdue `record_within_days` after the run ended;
- a recorded item is in the section of its unit (who); an unrecorded one in the drill's unit's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from playbooks.drills_config import DrillsFile, Expectation
from playbooks.plan import Plan
from topics.delivery import fit_id
from topics.drills import DrillRunRecorded, DrillRunStatus
from topics.plan import PlanAdopted
from topics.programme import (
    GENERAL_PLAN,
    DrillKind,
    DrillPlanned,
    ImprovementClosed,
    ImprovementRecorded,
    PlanRevised,
)

BEIJING = ZoneInfo("Asia/Shanghai")
ProgrammeBody = DrillPlanned | PlanRevised | ImprovementRecorded | ImprovementClosed
# a scenario's `kind` (playbooks/drill/scenario.py) to 7.2.2's kinds
SCENARIO_KINDS = {"综合": DrillKind.COMPREHENSIVE, "单项": DrillKind.SINGLE}

ExpectationStatus = Literal["met", "planned", "unplanned", "missed"]
PlannedStatus = Literal["planned", "running", "held", "overdue"]
RevisionStatus = Literal["validated", "validation_planned", "not_validated"]
ItemStatus = Literal["unrecorded", "unrecorded_overdue", "open", "overdue", "closed", "closed_late"]
LABELS: dict[str, str] = {
    "met": "已完成", "planned": "已计划", "unplanned": "未列计划", "missed": "未完成",
    "running": "实施中", "held": "已实施", "overdue": "逾期未实施",
    "validated": "已开展验证性演练", "validation_planned": "验证性演练已计划，尚未实施", "not_validated": "未开展验证性演练",
    "unrecorded": "待登记", "unrecorded_overdue": "逾期未登记", "open": "整改中", "closed": "按期完成",
    "closed_late": "逾期完成",
}
ITEM_LABELS = {**LABELS, "overdue": "逾期未完成"}


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reason(_M):
    rule: str
    section: str
    text: str


class Flag(_M):
    rule: Literal["validation_missing", "expectation_missed", "drill_overdue", "improvement_overdue",
                  "improvement_unrecorded"]
    section: str
    unit_id: str
    unit: str
    ref: str = Field(description="the revision's, planned drill's, item's or run/expectation's id it is about")
    text: str


class ExpectationLine(_M):
    id: str
    section: str
    basis: Literal["plan", "our_choice"]
    units_basis: Literal["plan", "our_choice"]
    text: str
    kinds: list[DrillKind]
    kind_labels: list[str]
    per_year: int
    held: int
    planned: int = Field(description="planned drills of its kinds not yet held and not overdue")
    status: ExpectationStatus
    status_label: str
    reason: Reason


class RunLine(_M):
    run_id: str
    scenario: str
    name: str
    planned_id: str | None
    status: DrillRunStatus
    score: float | None = Field(description="passed / total expectations, percent (the run's evaluation)")
    expectations: int
    failed: int
    started_at: datetime
    ended_at: datetime | None = Field(description="when its runner recorded it done, failed or stopped")


class PlannedLine(_M):
    id: str
    year: int
    unit_id: str
    kind: DrillKind
    kind_label: str
    title: str
    scenario: str | None
    planned_for: date | None
    validates: str | None
    validates_name: str | None
    status: PlannedStatus
    status_label: str
    score: float | None = Field(description="the latest done run's score")
    runs: list[RunLine]
    reason: Reason


class RevisionLine(_M):
    id: str
    plan_id: str
    plan_name: str
    unit_id: str
    revised_at: datetime
    version: str | None
    note: str
    status: RevisionStatus
    status_label: str
    validated_by: list[str] = Field(description="the held planned drills validating it")
    reason: Reason


class ImprovementLine(_M):
    item_id: str | None = Field(description="None: a failed expectation with no item recorded yet")
    run_id: str
    planned_id: str | None
    drill_unit_id: str | None = Field(description="whose drill found it")
    expectation: str | None = Field(description="incident/what of the failed expectation it answers")
    expected: str | None
    actual: str | None
    unit_id: str = Field(description="who: the unit responsible")
    unit: str
    owner: str
    action: str
    due_at: datetime
    closed_at: datetime | None
    status: ItemStatus
    status_label: str
    overdue: bool
    reason: Reason


class UnitRegister(_M):
    unit_id: str
    unit: str
    expectations: list[ExpectationLine]
    planned: list[PlannedLine]
    revisions: list[RevisionLine]
    improvements: list[ImprovementLine]
    flags: list[Flag]


class Totals(_M):
    units: int
    units_flagged: int
    planned: int
    held: int
    runs_done: int
    improvements_open: int
    improvements_overdue: int
    revisions_not_validated: int


class Register(_M):
    year: int
    now: datetime
    unit_id: str | None
    period_from: datetime
    period_to: datetime
    units: list[UnitRegister]
    unplanned_runs: list[RunLine] = Field(description="runs of the year that name no planned drill")
    flags: list[Flag]
    totals: Totals


# --- reading the inputs ---------------------------------------------------------------------------------


class _Exp(BaseModel):
    model_config = ConfigDict(extra="ignore")
    incident: str
    what: str
    expected: object = None
    actual: object = None
    passed: bool


class _Scored(BaseModel):
    """The part of a run's evaluation (playbooks/drill/evaluation.py Evaluation) the register reads."""

    model_config = ConfigDict(extra="ignore")
    score: float | None = None
    expectations: list[_Exp] = Field(default_factory=list)


def _scored(run: DrillRunRecorded) -> _Scored:
    if not run.evaluation:
        return _Scored()
    try:
        return _Scored.model_validate(run.evaluation)
    except ValidationError:  # an evaluation of another shape: shown unscored, not a broken register
        return _Scored()


def expectation_key(incident: str, what: str) -> str:
    return f"{incident}/{what}"


def failed_expectations(run: DrillRunRecorded) -> dict[str, _Exp]:
    """The run's failed expectations by key (incident/what)."""
    return {expectation_key(e.incident, e.what): e for e in _scored(run).expectations if not e.passed}


def year_bounds(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=BEIJING), datetime(year + 1, 1, 1, tzinfo=BEIJING)


def year_of(t: datetime) -> int:
    return t.astimezone(BEIJING).year


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list):
        return "、".join(str(v) for v in value) or "（无）"
    return str(value)


# --- who owes what ------------------------------------------------------------------------------------


def expected_units(plan: Plan, config: DrillsFile) -> dict[str, list[Expectation]]:
    """Each unit 7.2.2 (as drills.yaml reads it) expects drills of, with the expectations, in the plan's order."""
    hosts = {h.host.unit for h in plan.command.hqs}
    drafters = {p.drafted_by for p in plan.command.special_plans}
    out: dict[str, list[Expectation]] = {}
    for u in plan.units.values():
        for e in config.expectations:
            if (u.id in e.units or u.kind in e.unit_kinds or ("hq_hosts" in e.units_from and u.id in hosts)
                    or ("special_plan_drafters" in e.units_from and u.id in drafters)):
                out.setdefault(u.id, []).append(e)
    return out


def plan_names(plan: Plan) -> dict[str, str]:
    """Every plan a revision or validation drill may name: the special plans of 8.3, and the general plan."""
    return {GENERAL_PLAN: "通州区突发事件总体应急预案", **{p.id: p.name for p in plan.command.special_plans}}


def revision_unit(plan: Plan, config: DrillsFile, plan_id: str) -> str | None:
    """Who revises the plan: a special plan's 牵头编制部门 (8.3), 区应急办 for the general plan (8.2.1)."""
    if plan_id == GENERAL_PLAN:
        return config.validation.general_plan_unit
    found = next((p for p in plan.command.special_plans if p.id == plan_id), None)
    return found.drafted_by if found else None


# --- the register ---------------------------------------------------------------------------------------


def _run_line(run: DrillRunRecorded) -> RunLine:
    scored = _scored(run)
    ended = run.at if run.status is not DrillRunStatus.RUNNING else None
    return RunLine(run_id=run.run_id, scenario=run.scenario, name=run.name, planned_id=run.planned_id, status=run.status,
                   score=scored.score, expectations=len(scored.expectations),
                   failed=sum(not e.passed for e in scored.expectations), started_at=run.started_at, ended_at=ended)


def _planned_line(p: DrillPlanned, runs: list[DrillRunRecorded], *, names: dict[str, str], now: datetime) -> PlannedLine:
    done = sorted((r for r in runs if r.status is DrillRunStatus.DONE), key=lambda r: r.at)
    if p.planned_for is not None:
        deadline = datetime(p.planned_for.year, p.planned_for.month, p.planned_for.day, tzinfo=BEIJING) + timedelta(days=1)
        by = f"计划日期 {p.planned_for.isoformat()}"
    else:
        deadline, by = year_bounds(p.year)[1], f"{p.year}年内"
    if done:
        status: PlannedStatus = "held"
        text = f"已实施：演练 {done[-1].run_id} 已完成并评估"
    elif any(r.status is DrillRunStatus.RUNNING for r in runs):
        status, text = "running", "实施中"
    elif now >= deadline:
        status, text = "overdue", f"{by}未实施（计划的演练应按计划实施，7.2.3）"
    else:
        status, text = "planned", f"已列入计划，应于{by}实施"
    return PlannedLine(
        id=p.id, year=p.year, unit_id=p.unit_id, kind=p.kind, kind_label=p.kind.label, title=p.title,
        scenario=p.scenario, planned_for=p.planned_for, validates=p.validates,
        validates_name=names.get(p.validates) if p.validates else None, status=status, status_label=LABELS[status],
        score=_scored(done[-1]).score if done else None, runs=[_run_line(r) for r in sorted(runs, key=lambda r: r.started_at)],
        reason=Reason(rule="programme.planned_drill", section="7.2.3", text=text))


def _expectation_line(e: Expectation, planned: list[PlannedLine], *, year_over: bool) -> ExpectationLine:
    mine = [p for p in planned if p.kind in e.kinds]
    held = sum(p.status == "held" for p in mine)
    pending = sum(p.status in ("planned", "running") for p in mine)
    kinds = "或".join(k.label for k in e.kinds)
    if held >= e.per_year:
        status: ExpectationStatus = "met"
        text = f"本年已实施{kinds}演练 {held} 次（要求每年至少 {e.per_year} 次）"
    elif year_over:
        status, text = "missed", f"本年实施{kinds}演练 {held} 次，少于要求的每年 {e.per_year} 次"
    elif held + pending >= e.per_year:
        status, text = "planned", f"已实施 {held} 次，另有 {pending} 次已列入计划（要求每年至少 {e.per_year} 次{kinds}演练）"
    else:
        status, text = "unplanned", f"已实施 {held} 次、已计划 {pending} 次，不足每年 {e.per_year} 次{kinds}演练"
    return ExpectationLine(
        id=e.id, section=e.section, basis=e.basis, units_basis=e.units_basis, text=e.text, kinds=list(e.kinds),
        kind_labels=[k.label for k in e.kinds], per_year=e.per_year, held=held, planned=pending, status=status,
        status_label=LABELS[status], reason=Reason(rule=f"programme.{e.id}", section=e.section, text=text))


def _revision_line(rev: PlanRevised, planned: Iterable[PlannedLine], *, names: dict[str, str],
                   config: DrillsFile) -> RevisionLine:
    window = year_of(rev.revised_at)  # same_year: the validation drill held in the revision's year
    validating = [p for p in planned if p.validates == rev.plan_id and p.year == window]
    held = [p.id for p in validating if p.status == "held"]
    name = names.get(rev.plan_id, rev.plan_id)
    if held:
        status: RevisionStatus = "validated"
        text = f"《{name}》{window}年修订，已开展验证性演练（{'、'.join(held)}）"
    elif validating:
        status, text = "validation_planned", f"《{name}》{window}年修订，验证性演练已计划，尚未实施"
    else:
        status, text = "not_validated", f"《{name}》{window}年修订，未开展验证性演练（{config.validation.text}）"
    return RevisionLine(id=rev.id, plan_id=rev.plan_id, plan_name=name, unit_id=rev.unit_id, revised_at=rev.revised_at,
                        version=rev.version, note=rev.note, status=status, status_label=LABELS[status],
                        validated_by=held, reason=Reason(rule="programme.validation", section=config.validation.section,
                                                         text=text))


def _item_status(due: datetime, closed: datetime | None, now: datetime) -> ItemStatus:
    if closed is not None:
        return "closed" if closed <= due else "closed_late"
    return "open" if now < due else "overdue"


def adoption_revisions(adoptions: Iterable[PlanAdopted], config: DrillsFile, *,
                       refused: Iterable[str] = ()) -> list[PlanRevised]:
    """The revisions of the general plan adopted live (issue 24 item 3, `yingji plan adopt`) as the register
    reads a revision (7.1.5; 7.2.1 asks for a validation drill of it): by 区应急办, which revises the general
    plan (8.2.1), at its adoption. A rollback restores an earlier text and is no revision of its own; an
    adoption whose texts were refused (`refused`: their ids) never came into force."""
    skip = set(refused)
    return [PlanRevised(id=fit_id(f"adoption.{a.id}"), plan_id=GENERAL_PLAN, unit_id=config.validation.general_plan_unit,
                        revised_at=a.adopted_at, version=a.version, note=f"预案修订通过系统采用：{a.reason}"[:2000],
                        recorded_by=a.adopted_by, recorded_at=a.adopted_at)
            for a in adoptions if a.rollback_of is None and a.id not in skip]


def register(*, records: Sequence[ProgrammeBody], runs: Iterable[DrillRunRecorded], plan: Plan, config: DrillsFile,
             year: int, now: datetime, unit_id: str | None = None) -> Register:
    """The programme of `year` (Beijing) at `now`, every unit's or `unit_id`'s alone."""
    start, end = year_bounds(year)
    year_over = now >= end
    names = plan_names(plan)
    unit_name = plan.unit_names
    planned_all = {r.id: r for r in records if isinstance(r, DrillPlanned)}
    items = {r.id: r for r in records if isinstance(r, ImprovementRecorded)}
    closes: dict[str, ImprovementClosed] = {}
    for r in records:
        if isinstance(r, ImprovementClosed):
            closes.setdefault(r.item_id, r)  # the first close stands
    revisions = [r for r in records if isinstance(r, PlanRevised) and start <= r.revised_at < end]
    all_runs = list(runs)
    by_planned: dict[str, list[DrillRunRecorded]] = {}
    unplanned: list[DrillRunRecorded] = []
    for run in all_runs:
        if run.planned_id in planned_all:
            by_planned.setdefault(run.planned_id, []).append(run)
        elif start <= run.started_at < end:
            unplanned.append(run)

    planned_lines = [_planned_line(p, by_planned.get(p.id, []), names=names, now=now)
                     for p in planned_all.values() if p.year == year]
    # validation drills of a revision are looked for among every planned drill of its year (= this year)
    revision_lines = [_revision_line(r, planned_lines, names=names, config=config) for r in revisions]

    # improvement rows: every failed expectation of a held planned drill's done runs, and every item recorded
    run_index = {r.run_id: r for r in all_runs}
    run_year = {r.run_id: (planned_all[r.planned_id].year if r.planned_id in planned_all else year_of(r.started_at))
                for r in all_runs}
    term = timedelta(days=config.improvement.record_within_days)
    improvement_lines: list[ImprovementLine] = []
    answered: set[tuple[str, str]] = set()
    for item in items.values():
        run = run_index.get(item.run_id)
        if run_year.get(item.run_id, year_of(item.recorded_at)) != year:
            continue
        failed = failed_expectations(run) if run else {}
        exp = failed.get(item.expectation) if item.expectation else None
        if item.expectation:
            answered.add((item.run_id, item.expectation))
        closed = closes.get(item.id)
        status = _item_status(item.due_at, closed.closed_at if closed else None, now)
        planned = planned_all.get(run.planned_id) if run and run.planned_id else None
        text = f"改进事项：{unit_name.get(item.unit_id, item.unit_id)}于{item.due_at.astimezone(BEIJING):%Y-%m-%d}前完成"
        improvement_lines.append(ImprovementLine(
            item_id=item.id, run_id=item.run_id, planned_id=planned.id if planned else None,
            drill_unit_id=planned.unit_id if planned else None, expectation=item.expectation,
            expected=_text(exp.expected) if exp else None, actual=_text(exp.actual) if exp else None,
            unit_id=item.unit_id, unit=unit_name.get(item.unit_id, item.unit_id), owner=item.owner, action=item.action,
            due_at=item.due_at, closed_at=closed.closed_at if closed else None, status=status,
            status_label=ITEM_LABELS[status], overdue=status == "overdue",
            reason=Reason(rule="programme.improvement", section=config.improvement.section, text=text)))
    for p in planned_all.values():
        if p.year != year:
            continue
        for run in by_planned.get(p.id, []):
            if run.status is not DrillRunStatus.DONE:
                continue
            for key, exp in failed_expectations(run).items():
                if (run.run_id, key) in answered:
                    continue
                due = run.at + term
                status = "unrecorded" if now < due else "unrecorded_overdue"
                improvement_lines.append(ImprovementLine(
                    item_id=None, run_id=run.run_id, planned_id=p.id, drill_unit_id=p.unit_id, expectation=key,
                    expected=_text(exp.expected), actual=_text(exp.actual), unit_id=p.unit_id,
                    unit=unit_name.get(p.unit_id, p.unit_id), owner="", action="", due_at=due, closed_at=None,
                    status=status, status_label=ITEM_LABELS[status], overdue=status == "unrecorded_overdue",
                    reason=Reason(rule="programme.improvement_owed", section=config.improvement.section,
                                  text=f"演练 {run.run_id} 的“{key}”不符合预期：应于"
                                       f"{due.astimezone(BEIJING):%Y-%m-%d}前登记改进事项（责任单位、完成时限）")))

    expected = expected_units(plan, config)
    shown = [u for u in plan.units if u in expected or any(p.unit_id == u for p in planned_lines)
             or any(r.unit_id == u for r in revision_lines) or any(i.unit_id == u for i in improvement_lines)]
    if unit_id is not None:
        shown = [unit_id]
    units: list[UnitRegister] = []
    for u in shown:
        name = unit_name.get(u, u)
        planned = [p for p in planned_lines if p.unit_id == u]
        revs = [r for r in revision_lines if r.unit_id == u]
        owed = [i for i in improvement_lines if i.unit_id == u]
        lines = [_expectation_line(e, planned, year_over=year_over) for e in expected.get(u, [])]
        flags = [Flag(rule="validation_missing", section=config.validation.section, unit_id=u, unit=name, ref=r.id,
                      text=r.reason.text) for r in revs if r.status != "validated"]
        flags += [Flag(rule="expectation_missed", section=e.section, unit_id=u, unit=name, ref=e.id, text=e.reason.text)
                  for e in lines if e.status == "missed"]
        flags += [Flag(rule="drill_overdue", section="7.2.3", unit_id=u, unit=name, ref=p.id,
                       text=f"{p.title}：{p.reason.text}") for p in planned if p.status == "overdue"]
        flags += [Flag(rule="improvement_overdue" if i.item_id else "improvement_unrecorded",
                       section=config.improvement.section, unit_id=u, unit=name, ref=i.item_id or f"{i.run_id}/{i.expectation}",
                       text=(f"改进事项逾期未完成：{i.action}（应于{i.due_at.astimezone(BEIJING):%Y-%m-%d}前）" if i.item_id
                             else i.reason.text.replace("应于", "逾期未登记改进事项，应于")))
                  for i in owed if i.overdue]
        units.append(UnitRegister(unit_id=u, unit=name, expectations=lines, planned=planned, revisions=revs,
                                  improvements=sorted(owed, key=lambda i: (i.due_at, i.run_id, i.expectation or "")),
                                  flags=flags))
    every_flag = [f for line in units for f in line.flags]
    every_item = [i for line in units for i in line.improvements]
    every_planned = [p for line in units for p in line.planned]
    return Register(
        year=year, now=now, unit_id=unit_id, period_from=start, period_to=end, units=units,
        unplanned_runs=[] if unit_id else [_run_line(r) for r in sorted(unplanned, key=lambda r: r.started_at)],
        flags=every_flag,
        totals=Totals(units=len(units), units_flagged=len({f.unit_id for f in every_flag}), planned=len(every_planned),
                      held=sum(p.status == "held" for p in every_planned),
                      runs_done=sum(r.status is DrillRunStatus.DONE for p in every_planned for r in p.runs),
                      improvements_open=sum(i.status in ("open", "overdue") for i in every_item),
                      improvements_overdue=sum(i.overdue for i in every_item),
                      revisions_not_validated=sum(r.status != "validated" for line in units for r in line.revisions)))


# --- checks of what people send (the API refuses with the field named) --------------------------------


Problem = tuple[str, str]  # (field, message)


def planning_problems(*, unit_id: str, validates: str | None, plan: Plan) -> list[Problem]:
    out: list[Problem] = []
    if unit_id not in plan.units:
        out.append(("unit_id", f"no unit {unit_id!r} in the plan (units.yaml ids)"))
    if validates is not None and validates not in plan_names(plan):
        out.append(("validates", f"no plan {validates!r}: a special plan's id of 8.3 (command.yaml) or {GENERAL_PLAN!r}"))
    return out


def link_problems(planned: DrillPlanned | None, *, planned_id: str, scenario_id: str, scenario_kind: str) -> list[Problem]:
    """A run named to carry out a planned drill: the drill must be planned, of the scenario's kind, and of
    its scenario when the plan names one."""
    if planned is None:
        return [("planned_id", f"no planned drill {planned_id!r}")]
    out: list[Problem] = []
    if SCENARIO_KINDS.get(scenario_kind) is not planned.kind:
        out.append(("planned_id", f"the planned drill is {planned.kind.label}演练, the scenario {scenario_kind}演练"))
    if planned.scenario is not None and planned.scenario != scenario_id:
        out.append(("planned_id", f"the planned drill runs scenario {planned.scenario!r}, not {scenario_id!r}"))
    return out


def improvement_problems(*, run: DrillRunRecorded | None, run_id: str, expectation: str | None, unit_id: str,
                         plan: Plan) -> list[Problem]:
    """An item of a run's evaluation: the run is done (scored), the expectation one it failed, the unit the plan's."""
    out: list[Problem] = []
    if run is None:
        out.append(("run_id", f"no drill run {run_id!r}"))
    elif run.status is not DrillRunStatus.DONE:
        out.append(("run_id", f"the drill run {run_id!r} is {run.status.value}: items follow a done run's evaluation"))
    elif expectation is not None and expectation not in failed_expectations(run):
        failed = ", ".join(failed_expectations(run)) or "none"
        out.append(("expectation", f"not a failed expectation of run {run_id!r} (failed: {failed})"))
    if unit_id not in plan.units:
        out.append(("unit_id", f"no unit {unit_id!r} in the plan (units.yaml ids)"))
    return out
