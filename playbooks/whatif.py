"""What-if (issue 24; 7.1.5 修订, 7.2.1 验证性演练): a period's live incidents replayed under the plan in
force and under a revised plan, and compared.

Pure: records in (each with the time it reached the service), two plans in, a report out. Each incident
goes through the same lifecycle the worker runs (playbooks.lifecycle), on a simulated clock, through the
drill replay's loop (playbooks.drill.replay.Replayer): a filing is handled at the time it reached the
log, and between records the clock jumps from one due time to the next. Both plans see the very same
records, so the only thing that differs is the plan; every difference names the rule and the plan
section behind it (a decision carries its reasons, an obligation its rule and section).

Incidents are independent of each other, so they are replayed one at a time and only what is compared
is kept: a year of incidents needs the memory of one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from playbooks.drill.replay import IncidentObserved, Replayer
from playbooks.engine import PlanCannotDecide, ReportRejected, decide, obligations_at_end
from playbooks.lifecycle import IncidentState, _merge_followup
from playbooks.plan import Plan, PlanError, load_plan
from playbooks.plan_diff import PlanChange, plan_changes, same_files
from topics.models import (
    Decision,
    DueCheck,
    EndRecorded,
    EventKind,
    IncidentCommand,
    IncidentReported,
    Reason,
    ReportFiled,
    ReportKind,
)

BEIJING = ZoneInfo("Asia/Shanghai")

HistoryRecord = IncidentReported | IncidentCommand


@dataclass
class History:
    """A period's records as the log holds them: each with `at`, the time it reached the service (its
    log timestamp), which is the `now` the worker handled it at. `until` is the period's end: the
    simulated clock runs to it, so what fell due by then (breaches, 督办 steps) is counted."""

    start: datetime
    until: datetime
    records: list[tuple[datetime, HistoryRecord]] = field(default_factory=list)
    unreadable: int = 0  # records the reader could not decode (the worker sent them to the dead letters)


# --- the report ------------------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ObligationStatus = Literal["met", "late", "missed", "closed", "open"]
STATUS_LABEL = {"met": "按时", "late": "迟报", "missed": "漏报（逾期未报）", "closed": "不再需要", "open": "期末未到期"}


# What one plan made of one incident: compared, never output, so plain slotted dataclasses (building a
# pydantic model per obligation and notice cost a sixth of a replay).


@dataclass(slots=True)
class ObligationOutcome:
    kind: str
    label: str
    rule: str
    section: str
    owner_id: str
    owner: str
    due_at: datetime  # of its latest opening
    status: ObligationStatus  # of its latest opening, at the period's end
    opened: int = 1
    met: int = 0
    late: int = 0
    breached: int = 0
    minutes_late: float | None = None
    escalation_steps: list[int] = field(default_factory=list)  # 督办 steps reached, over every opening
    escalation: str = ""  # its chain (obligations.yaml escalation_chains)

    def summary(self, *, owner: bool = False) -> str:
        due = self.due_at.astimezone(BEIJING).strftime("%m-%d %H:%M")
        text = (f"{self.owner}：" if owner else "") + f"{STATUS_LABEL[self.status]}，{due}到期"
        if self.minutes_late is not None:
            text += f"，迟 {self.minutes_late:g} 分钟"
        if self.opened > 1:
            text += f"（共 {self.opened} 次，按时 {self.met}、迟报 {self.late}、漏报 {self.breached}）"
        return text


@dataclass(slots=True)
class NoticeOutcome:
    unit_id: str
    unit: str
    kind: str
    role: str | None
    rule: str
    section: str
    count: int


@dataclass(slots=True)
class IncidentOutcome:
    """What one plan made of one incident by the period's end."""

    refused: list[str] = field(default_factory=list)  # the plan could not take a record: why
    type_id: str | None = None
    grade: str | None = None
    level: str | None = None
    lead_unit_ids: list[str] = field(default_factory=list)
    lead_units: list[str] = field(default_factory=list)
    commanders: list[str] = field(default_factory=list)  # 角色：谁
    commanders_section: str | None = None
    notices: dict[str, NoticeOutcome] = field(default_factory=dict)  # by kind|unit|role|rule
    obligations: dict[str, ObligationOutcome] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)  # the latest decision's


Aspect = Literal["decided", "grade", "level", "lead_units", "commanders", "notice", "obligation", "escalation"]
ASPECT_LABEL = {"decided": "能否受理", "grade": "事件等级", "level": "响应级别", "lead_units": "牵头单位",
                "commanders": "指挥", "notice": "通知", "obligation": "报送义务", "escalation": "督办"}


class Difference(_Out):
    incident_id: str
    aspect: Aspect
    subject: str = Field(description="what of the aspect: an obligation's kind, a notice's unit and kind …")
    before: str | None = Field(description="under the plan in force; None: not there")
    after: str | None = Field(description="under the revised plan; None: not there")
    rule: str = Field(description="the rule that caused it")
    section: str = Field(description="the plan section of that rule")
    reasons: list[Reason] = Field(default_factory=list, description="the decision's reasons behind it, if any")
    units: list[str] = Field(default_factory=list, description="unit ids it concerns")


class IncidentComparison(_Out):
    incident_id: str
    type_name: str
    received_at: datetime
    street: str | None
    differences: list[Difference]


class UnitTotal(_Out):
    unit_id: str
    unit: str
    incidents: int = Field(description="incidents with a difference that concerns the unit")
    differences: int
    led_before: int
    led_after: int
    notices_before: int
    notices_after: int
    breaches_before: int
    breaches_after: int


class RuleTotal(_Out):
    rule: str
    section: str
    incidents: int
    differences: int


class Totals(_Out):
    incidents: int
    differing: int
    replayed_twice: int = Field(description="incidents some decision of which the revision changes: replayed under "
                                            "both plans (the others once: the same decisions, the same course)")
    by_aspect: dict[str, int]
    breaches_before: int
    breaches_after: int
    late_before: int
    late_after: int
    escalation_steps_before: int
    escalation_steps_after: int
    notices_before: int
    notices_after: int
    refused_before: int
    refused_after: int


class Skipped(_Out):
    drill: int = Field(0, description="drill records: never part of a what-if")
    before_period: int = Field(0, description="commands of incidents reported before the period")
    due_checks: int = Field(0, description="the live sweep's due checks: the replay makes its own")
    unreadable: int = Field(0, description="records that do not decode (dead-lettered when the worker met them)")


class ExpectationOutcome(_Out):
    """One of a drill scenario's expectations under both plans (7.2.1 验证性演练): one the revision turns."""

    incident: str
    what: str = Field(description="as the drill evaluation names it: obligations.phone_report, lead_units …")
    label: str = Field(description="as people read it: 报送义务：电话报告 …")
    expected: str
    before: str = Field(description="what happened under the plan in force")
    after: str = Field(description="under the revision")
    passed_before: bool
    passed_after: bool


class ScenarioCheck(_Out):
    """A what-if over a drill scenario also scores the scenario's expectations (playbooks.drill.evaluation) under
    both plans: does the revision still do what the drill expects?"""

    scenario: str = Field(description="the scenario's id")
    name: str
    expectations: int
    failed_before: int
    failed_after: int
    refused_after: list[str] = Field(default_factory=list, description="the revision cannot run the scenario: why "
                                                                       "(it lacks a type, unit or street it names)")
    changed: list[ExpectationOutcome] = Field(description="the expectations whose outcome the revision changes")


class WhatIfReport(_Out):
    period_from: datetime
    period_to: datetime
    plan_in_force: str = Field(description="its version (digest of its YAML)")
    revised_plan: str
    revised_source: str = Field(description="where the revised plan was read from")
    changes: list[PlanChange] = Field(description="what the revision changes in the plan's files, field by field, "
                                                  "with the section of the rule each is in (playbooks.plan_diff)")
    totals: Totals
    units: list[UnitTotal]
    rules: list[RuleTotal]
    incidents: list[IncidentComparison] = Field(description="the incidents that differ, in order received")
    skipped: Skipped
    records: int
    scenario: ScenarioCheck | None = Field(None, description="over a drill scenario (not a period of the log): its "
                                                             "expectations under both plans")


# --- validating a revision -------------------------------------------------------------------------------


class RevisionRefused(ValueError):
    """The revised plan does not load: every problem names its file, line and field."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__("\n".join(problems))


def load_revision(data_dir: Path) -> Plan:
    """The revised plan, validated by the plan's own loader; refused whole with every problem it names."""
    try:
        return load_plan(Path(data_dir))
    except PlanError as exc:
        raise RevisionRefused(str(data_dir), [str(p) for p in exc.problems] or [str(exc)]) from exc


# --- replay ----------------------------------------------------------------------------------------------


def incidents_of(history: History) -> tuple[dict[str, list[tuple[datetime, HistoryRecord]]], Skipped]:
    """Each live incident reported in the period with its records in the order they reached the log."""
    reported: dict[str, list[tuple[datetime, HistoryRecord]]] = {}
    later: list[tuple[int, datetime, IncidentCommand]] = []
    drill = before = due = 0
    for i, (at, rec) in enumerate(history.records):
        if isinstance(rec, IncidentReported):
            if rec.report.drill:
                drill += 1
            elif history.start <= at <= history.until and rec.incident_id not in reported:
                reported[rec.incident_id] = [(at, rec)]
        elif rec.drill:
            drill += 1
        elif isinstance(rec.body, DueCheck):
            due += 1
        else:
            later.append((i, at, rec))
    for _, at, cmd in sorted(later, key=lambda x: (x[1], x[0])):
        if at > history.until:
            continue
        records = reported.get(cmd.incident_id)
        if records is None:
            before += 1
        else:
            records.append((at, cmd))
    return reported, Skipped(drill=drill, before_period=before, due_checks=due, unreadable=history.unreadable)


def replay_incident(records: Sequence[tuple[datetime, HistoryRecord]], plan: Plan,
                    until: datetime) -> IncidentOutcome:
    """One incident's records through the lifecycle under one plan, its due checks in between."""
    rp = Replayer(plan, drill=False)
    first = records[0][1]
    assert isinstance(first, IncidentReported)
    key = first.incident_id
    refused: list[str] = []
    try:
        for at, rec in records:
            rp.advance(at, inclusive=False)
            if isinstance(rec, IncidentReported):
                rp.start(key, rec, at)
            else:
                rp.handle(key, rec, at)
        rp.advance(until, inclusive=True)
    except ReportRejected as exc:
        refused = [str(p) for p in exc.problems]
    except (KeyError, ValueError) as exc:  # a unit or chain the revision removed, named by a record
        refused = [f"{type(exc).__name__}: {exc}"]
    state = rp.states.get(key)
    if state is None:
        return IncidentOutcome(refused=refused)
    return _outcome(state, rp.obs.incidents[key], plan, refused)


def _outcome(state: IncidentState, obs: IncidentObserved, plan: Plan, refused: list[str]) -> IncidentOutcome:
    d = state.decision
    counts: dict[str, Counter] = defaultdict(Counter)
    steps: dict[str, list[int]] = defaultdict(list)
    for e in obs.events:
        if e.obligation is None:
            continue
        if e.kind is EventKind.OBLIGATION_MET:
            counts[e.obligation]["met"] += 1
        elif e.kind is EventKind.OBLIGATION_LATE:
            counts[e.obligation]["late"] += 1
        elif e.kind is EventKind.BREACH:
            counts[e.obligation]["breached"] += 1
        elif e.kind is EventKind.ESCALATION:
            steps[e.obligation].append(int(e.details.get("step") or 0))
    obligations = {}
    for kind, ob_state in state.obligations.items():
        ob = ob_state.obligation
        status: ObligationStatus = "closed" if ob_state.closed_reason is not None and ob_state.status == "open" \
            else ob_state.status  # type: ignore[assignment]
        obligations[kind] = ObligationOutcome(
            kind=kind, label=ob.label, rule=ob.rule, section=ob.section, owner_id=ob.owner_id, owner=ob.owner,
            due_at=ob.due_at, status=status, opened=ob_state.opened, met=counts[kind]["met"],
            late=counts[kind]["late"], breached=counts[kind]["breached"], minutes_late=ob_state.minutes_late,
            escalation_steps=steps.get(kind, []), escalation=ob.escalation)
    notices: dict[str, dict] = {}
    for n in obs.notifications:
        k = f"{n.kind}|{n.unit_id}|{n.role or ''}|{n.rule}"
        if k in notices:
            notices[k]["count"] += 1
        else:
            notices[k] = dict(unit_id=n.unit_id, unit=n.unit, kind=n.kind, role=n.role, rule=n.rule,
                              section=n.section, count=1)
    return IncidentOutcome(
        refused=refused, type_id=d.type_id, grade=d.grade.value, level=d.response_level.value,
        lead_unit_ids=list(d.lead_unit_ids), lead_units=list(d.lead_units),
        commanders=[f"{c.role}：{c.who}" for c in d.commanders],
        commanders_section=d.commanders[0].section if d.commanders else None,
        notices={k: NoticeOutcome(**v) for k, v in notices.items()}, obligations=obligations,
        reasons=list(d.reasons))


# --- the shortcut: an incident the revision does not reach ---------------------------------------------
#
# The lifecycle reads the plan in exactly these places: the decisions it asks for (a report, each
# follow-up's merged report), what an ended incident still owes (obligations_at_end), the escalation
# chains, the end authority, and unit and party names. When the two plans agree on all of them for an
# incident, its replay under the revision is its replay under the plan in force, step for step (only
# the decisions' plan_version differs, which is not compared), so it is replayed once. A test runs
# every revision of the test table with and without the shortcut and asks for the same report.

_NOT_COMPARED = ("plan_version", "decided_at")


# The plan files neither the engine nor the lifecycle reads (the delivery stage's channels and ladder, the duty
# rules, the warnings stage's, the ledger's, the drill programme's, the board's map): a revision of these alone
# decides every incident as the plan in force does, so each is replayed once with no decision compared. A file
# not named here is taken to decide (a new one too, until it is named).
NOT_DECIDING = frozenset({"channels.yaml", "ladder.yaml", "duty.yaml", "warnings.yaml", "ledger.yaml",
                          "drills.yaml", "district_grid.yaml"})


def same_decisions_plan(a: Plan, b: Plan) -> bool:
    """Whether the revision changes nothing the engine and the lifecycle read: every other file the same, as loaded,
    order included (compared whole, not through plan_changes, which leaves out what it does not show)."""
    return same_files(a, b, exclude=NOT_DECIDING)


def same_lifecycle_plan(a: Plan, b: Plan) -> bool:
    """The parts of the plan the lifecycle reads outside decide()."""
    return (a.escalation_chains == b.escalation_chains and a.end_authority == b.end_authority
            and a.units == b.units and a.parties == b.parties)


def _same(x: Decision, y: Decision) -> bool:
    dx, dy = x.__dict__, y.__dict__
    return all(dx[k] == dy[k] for k in dx if k not in _NOT_COMPARED)


def same_course(records: Sequence[tuple[datetime, HistoryRecord]], a: Plan, b: Plan) -> bool:
    """Whether every decision the incident's records lead to is the same under both plans (the report,
    then each follow-up merged into it, as the lifecycle merges them), and what its end would owe."""
    first = records[0][1]
    assert isinstance(first, IncidentReported)
    reports = [first.report]
    ends: set[bool] = set()  # the ends recorded, by whether each was announced to the public (4.8.2)
    for _, rec in records[1:]:
        body = rec.body if isinstance(rec, IncidentCommand) else None
        if isinstance(body, ReportFiled) and body.kind is ReportKind.FOLLOWUP and body.followup is not None:
            reports.append(_merge_followup(reports[-1], body))
        if isinstance(body, EndRecorded):
            ends.add(body.announce_public)
    at = first.accepted_at
    for report in reports:
        try:
            x, y = decide(report, a, at), decide(report, b, at)
        except (ReportRejected, PlanCannotDecide):  # one plan cannot decide it: replayed, and refused there
            return False
        if not _same(x, y):
            return False
        for announce in ends:
            if obligations_at_end(x, report, a, ended_at=at, announce=announce) != \
                    obligations_at_end(y, report, b, ended_at=at, announce=announce):
                return False
    return True


# --- comparing -------------------------------------------------------------------------------------------


def _causes(before: IncidentOutcome, after: IncidentOutcome, prefixes: tuple[str, ...]) -> list[Reason]:
    """The reasons of one kind that one side has and the other lacks: the revised side's first."""
    mine = [r for r in after.reasons if r.rule.startswith(prefixes)]
    theirs = [r for r in before.reasons if r.rule.startswith(prefixes)]
    seen_b = {(r.rule, r.text) for r in theirs}
    seen_a = {(r.rule, r.text) for r in mine}
    return [r for r in mine if (r.rule, r.text) not in seen_b] or [r for r in theirs if (r.rule, r.text) not in seen_a] \
        or mine or theirs


def _difference(iid: str, aspect: Aspect, subject: str, before: str | None, after: str | None,
                reasons: list[Reason], units: Iterable[str], rule: str | None = None,
                section: str | None = None) -> Difference:
    if rule is None:
        rule, section = (reasons[0].rule, reasons[0].section) if reasons else ("(unknown)", "")
    return Difference(incident_id=iid, aspect=aspect, subject=subject, before=before, after=after, rule=rule,
                      section=section or "", reasons=reasons, units=list(dict.fromkeys(units)))


def compare(iid: str, before: IncidentOutcome, after: IncidentOutcome) -> list[Difference]:
    """Every way the revised plan's outcome differs from the plan in force's, each with its cause."""
    out: list[Difference] = []
    if before.refused or after.refused:
        if before.refused != after.refused:
            out.append(_difference(iid, "decided", "受理", "；".join(before.refused) or "受理",
                                   "；".join(after.refused) or "受理", [], after.lead_unit_ids or before.lead_unit_ids,
                                   rule="plan.refused", section="2.3.6; 2.3.3"))
        if before.type_id is None or after.type_id is None:
            return out
    lead = after.lead_unit_ids
    if before.grade != after.grade:
        out.append(_difference(iid, "grade", "事件等级", before.grade, after.grade,
                               _causes(before, after, ("grade.",)), lead))
    if before.level != after.level:
        out.append(_difference(iid, "level", "响应级别", before.level, after.level,
                               _causes(before, after, ("level.", "raise.")), lead))
    if before.lead_unit_ids != after.lead_unit_ids:
        out.append(_difference(iid, "lead_units", "牵头单位", "、".join(before.lead_units), "、".join(after.lead_units),
                               _causes(before, after, ("type.lead_units",)),
                               [*before.lead_unit_ids, *after.lead_unit_ids]))
    if before.commanders != after.commanders:
        level = after.level or before.level
        out.append(_difference(iid, "commanders", "指挥", "；".join(before.commanders), "；".join(after.commanders),
                               _causes(before, after, ("level.", "raise.", "type.lead_units")), lead,
                               rule=f"response.commanders.{level}", section=after.commanders_section))
    for key in sorted(before.notices.keys() | after.notices.keys()):
        b, a = before.notices.get(key), after.notices.get(key)
        if b is not None and a is not None and b.count == a.count:
            continue
        n = a or b
        assert n is not None
        who = f"{n.unit}{n.role or ''}"
        out.append(_difference(iid, "notice", f"{n.kind}：{who}", f"{b.count} 条" if b else None,
                               f"{a.count} 条" if a else None, [], [n.unit_id], rule=n.rule, section=n.section))
    for kind in sorted(before.obligations.keys() | after.obligations.keys()):
        b, a = before.obligations.get(kind), after.obligations.get(kind)
        ob = a or b
        assert ob is not None
        units = [x.owner_id for x in (b, a) if x is not None]
        if b is None or a is None or (b.status, b.due_at, b.opened, b.met, b.late, b.breached, b.minutes_late) != (
                a.status, a.due_at, a.opened, a.met, a.late, a.breached, a.minutes_late) or b.owner_id != a.owner_id:
            moved = b is not None and a is not None and b.owner_id != a.owner_id
            out.append(_difference(iid, "obligation", ob.label, b.summary(owner=moved) if b else None,
                                   a.summary(owner=moved) if a else None, [], units, rule=ob.rule, section=ob.section))
        b_steps, a_steps = (b.escalation_steps if b else []), (a.escalation_steps if a else [])
        if b_steps != a_steps:
            out.append(_difference(iid, "escalation", f"{ob.label}督办",
                                   "、".join(f"第{s}级" for s in b_steps) or None,
                                   "、".join(f"第{s}级" for s in a_steps) or None, [], units,
                                   rule=f"{ob.rule}.escalation.{ob.escalation}", section="5.5.2"))
    return out


# --- the whole period ------------------------------------------------------------------------------------


Baseline = dict[tuple[str, str, int, datetime, datetime], IncidentOutcome]


@dataclass
class Tally:
    """What a share of the period's incidents came to: tallies of several shares add up (a process each)."""

    incidents: int = 0
    replayed_twice: int = 0
    comparisons: list[IncidentComparison] = field(default_factory=list)
    by_aspect: Counter = field(default_factory=Counter)
    sums: Counter = field(default_factory=Counter)
    unit_diffs: Counter = field(default_factory=Counter)
    unit_counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    unit_incidents: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    rule_diffs: Counter = field(default_factory=Counter)
    rule_incidents: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, other: "Tally") -> None:
        self.incidents += other.incidents
        self.replayed_twice += other.replayed_twice
        self.comparisons += other.comparisons
        for mine, theirs in ((self.by_aspect, other.by_aspect), (self.sums, other.sums),
                             (self.unit_diffs, other.unit_diffs), (self.rule_diffs, other.rule_diffs)):
            mine.update(theirs)
        for u, counts in other.unit_counts.items():
            self.unit_counts[u].update(counts)
        for u, ids in other.unit_incidents.items():
            self.unit_incidents[u] |= ids
        for r, ids in other.rule_incidents.items():
            self.rule_incidents[r] |= ids


def tally(history: History, in_force: Plan, revised: Plan, *, part: tuple[int, int] = (0, 1), shortcut: bool = True,
          baseline: Baseline | None = None) -> Tally:
    """The incidents of one share of the period (every n-th, from the i-th, of part=(i, n)) under both plans."""
    incidents, _ = incidents_of(history)
    lifecycle_same = shortcut and same_lifecycle_plan(in_force, revised)
    decisions_same = shortcut and same_decisions_plan(in_force, revised)
    i, n = part
    t = Tally()
    for iid, records in list(incidents.items())[i::n]:
        t.incidents += 1
        key = (in_force.version, iid, len(records), records[-1][0], history.until)
        before = baseline.get(key) if baseline is not None else None
        if before is None:
            before = replay_incident(records, in_force, history.until)
            if baseline is not None:
                baseline[key] = before
        if decisions_same or (lifecycle_same and same_course(records, in_force, revised)):
            after = before
        else:
            after = replay_incident(records, revised, history.until)
            t.replayed_twice += 1
        for side, outcome in (("before", before), ("after", after)):
            t.sums[f"refused_{side}"] += bool(outcome.refused)
            for u in outcome.lead_unit_ids:
                t.unit_counts[u][f"led_{side}"] += 1
            for notice in outcome.notices.values():
                t.unit_counts[notice.unit_id][f"notices_{side}"] += notice.count
                t.sums[f"notices_{side}"] += notice.count
            for ob in outcome.obligations.values():
                t.unit_counts[ob.owner_id][f"breaches_{side}"] += ob.breached
                t.sums[f"breaches_{side}"] += ob.breached
                t.sums[f"late_{side}"] += ob.late
                t.sums[f"escalation_steps_{side}"] += len(ob.escalation_steps)
        diffs = compare(iid, before, after)
        if not diffs:
            continue
        report = records[0][1]
        assert isinstance(report, IncidentReported)
        t.comparisons.append(IncidentComparison(
            incident_id=iid, type_name=report.report.type, received_at=report.report.received_at,
            street=report.report.location.street, differences=diffs))
        for diff in diffs:
            t.by_aspect[diff.aspect] += 1
            t.rule_diffs[(diff.rule, diff.section)] += 1
            t.rule_incidents[(diff.rule, diff.section)].add(iid)
            for u in diff.units:
                t.unit_diffs[u] += 1
                t.unit_incidents[u].add(iid)
    return t


def report_of(history: History, in_force: Plan, revised: Plan, tallies: Iterable[Tally], *,
              revised_source: str = "") -> WhatIfReport:
    """The tallies of every share of the period as one report."""
    t = Tally()
    for one in tallies:
        t.add(one)
    _, skipped = incidents_of(history)
    names = {**in_force.parties, **{u.id: u.name for u in in_force.units.values()},
             **revised.parties, **{u.id: u.name for u in revised.units.values()}}
    units = [UnitTotal(unit_id=u, unit=names.get(u, u), incidents=len(t.unit_incidents[u]), differences=t.unit_diffs[u],
                       **{k: t.unit_counts[u][k] for k in ("led_before", "led_after", "notices_before", "notices_after",
                                                           "breaches_before", "breaches_after")})
             for u in sorted(t.unit_diffs, key=lambda u: (-t.unit_diffs[u], u))]
    rules = [RuleTotal(rule=r, section=s, incidents=len(t.rule_incidents[(r, s)]), differences=n)
             for (r, s), n in sorted(t.rule_diffs.items(), key=lambda kv: (-kv[1], kv[0]))]
    totals = Totals(incidents=t.incidents, differing=len(t.comparisons), replayed_twice=t.replayed_twice,
                    by_aspect=dict(sorted(t.by_aspect.items())),
                    **{k: t.sums[k] for k in ("breaches_before", "breaches_after", "late_before", "late_after",
                                              "escalation_steps_before", "escalation_steps_after", "notices_before",
                                              "notices_after", "refused_before", "refused_after")})
    comparisons = sorted(t.comparisons, key=lambda c: (c.received_at, c.incident_id))
    return WhatIfReport(period_from=history.start, period_to=history.until, plan_in_force=in_force.version,
                        revised_plan=revised.version, revised_source=revised_source,
                        changes=plan_changes(in_force, revised), totals=totals, units=units,
                        rules=rules, incidents=comparisons, skipped=skipped, records=len(history.records))


def what_if(history: History, in_force: Plan, revised: Plan, *, revised_source: str = "",
            shortcut: bool = True, baseline: Baseline | None = None) -> WhatIfReport:
    """Every live incident of the period under both plans, compared; totals per unit and per rule.

    shortcut: an incident whose every decision is the same under both plans is replayed once (above).
    baseline: outcomes under the plan in force kept between questions (a page asked again and again about
    one period): an incident's are reused while its records and the plan's version are the same."""
    one = tally(history, in_force, revised, shortcut=shortcut, baseline=baseline)
    return report_of(history, in_force, revised, [one], revised_source=revised_source)


# --- rendering -------------------------------------------------------------------------------------------


CHANGE_LABEL = {"added": "新增", "removed": "删除", "changed": "修改"}


def _bj(t: datetime) -> str:
    return t.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def _cell(text: object) -> str:
    return "—" if text is None else str(text).replace("|", "｜").replace("\n", " ")


def to_markdown(report: WhatIfReport) -> str:
    t = report.totals
    lines = [
        "# 预案修订推演（what-if）",
        "",
        f"期间：{_bj(report.period_from)} 至 {_bj(report.period_to)}（北京时间）；现行预案 `{report.plan_in_force}`，"
        f"修订稿 `{report.revised_plan}`（{report.revised_source or '—'}）。",
        f"事件 {t.incidents} 起，结果不同 {t.differing} 起；读取记录 {report.records} 条（演练记录 {report.skipped.drill} 条、"
        f"期前事件的指令 {report.skipped.before_period} 条、到期检查 {report.skipped.due_checks} 条、"
        f"无法解读 {report.skipped.unreadable} 条不计）。",
        "",
        "| | 现行预案 | 修订稿 |",
        "|---|---:|---:|",
        f"| 漏报（逾期未报） | {t.breaches_before} | {t.breaches_after} |",
        f"| 迟报 | {t.late_before} | {t.late_after} |",
        f"| 督办步骤 | {t.escalation_steps_before} | {t.escalation_steps_after} |",
        f"| 通知 | {t.notices_before} | {t.notices_after} |",
        f"| 无法受理 | {t.refused_before} | {t.refused_after} |",
        "",
    ]
    if (s := report.scenario) is not None:
        lines += [f"## 演练预期（7.2.1 验证性演练）：{s.name}（{s.scenario}）", "",
                  f"预期 {s.expectations} 项：现行预案不符 {s.failed_before} 项，修订稿不符 {s.failed_after} 项。", ""]
        if s.refused_after:
            lines += ["修订稿无法运行此脚本：" + "；".join(s.refused_after), ""]
        if s.changed:
            lines += ["| 事件 | 预期项目 | 预期 | 现行预案 | 修订稿 |", "|---|---|---|---|---|"]
            lines += [f"| {c.incident} | {_cell(c.label)} | {_cell(c.expected)} | {_cell(c.before)}{'' if c.passed_before else ' ✘'} | "
                      f"{_cell(c.after)}{'' if c.passed_after else ' ✘'} |" for c in s.changed]
            lines.append("")
    lines += ["## 修订内容", ""]
    if report.changes:
        lines += ["| 文件 | 位置 | 变化 | 依据 | 现行预案 | 修订稿 |", "|---|---|---|---|---|---|"]
        lines += [f"| {c.file} | `{_cell(c.path)}` | {CHANGE_LABEL[c.change]} | {_cell(c.basis)}{'（我方选择）' if c.our_choice else ''} | "
                  f"{_cell(c.before)} | {_cell(c.after)} |" for c in report.changes]
    else:
        lines.append("修订稿的规则与现行预案相同（仅注释或格式不同）。")
    lines.append("")
    if t.by_aspect:
        lines += ["差异按方面：" + "，".join(f"{ASPECT_LABEL.get(k, k)} {v}" for k, v in sorted(t.by_aspect.items())), ""]
    lines += ["## 按单位", "", "| 单位 | 涉及事件 | 差异 | 牵头（现行/修订） | 通知 | 漏报 |", "|---|---:|---:|---|---|---|"]
    lines += [f"| {u.unit}（{u.unit_id}） | {u.incidents} | {u.differences} | {u.led_before}/{u.led_after} | "
              f"{u.notices_before}/{u.notices_after} | {u.breaches_before}/{u.breaches_after} |" for u in report.units]
    lines += ["", "## 按规则", "", "| 规则 | 预案条款 | 涉及事件 | 差异 |", "|---|---|---:|---:|"]
    lines += [f"| `{r.rule}` | {_cell(r.section)} | {r.incidents} | {r.differences} |" for r in report.rules]
    lines += ["", "## 各事件差异", ""]
    for c in report.incidents:
        lines += [f"### {c.incident_id}：{c.type_name}（{c.street or '—'}，{_bj(c.received_at)} 接报）", "",
                  "| 方面 | 项目 | 现行预案 | 修订稿 | 规则 | 条款 | 依据 |", "|---|---|---|---|---|---|---|"]
        for d in c.differences:
            why = "；".join(r.text for r in d.reasons)
            lines.append(f"| {ASPECT_LABEL[d.aspect]} | {_cell(d.subject)} | {_cell(d.before)} | {_cell(d.after)} | "
                         f"`{d.rule}` | {_cell(d.section)} | {_cell(why or None)} |")
        lines.append("")
    if not report.incidents:
        lines.append("修订稿与现行预案对本期间每起事件的结果相同。")
    return "\n".join(lines) + "\n"


def to_json(report: WhatIfReport) -> str:
    return report.model_dump_json(indent=2)


# --- a scenario as a history -----------------------------------------------------------------------------


def check_scenario(scenario, in_force: Plan, revised: Plan) -> ScenarioCheck:
    """The scenario's expectations scored under each plan (the drill's own evaluation, in-process), and those
    whose outcome differs (7.2.1: a plan being revised is validated by a drill)."""
    from playbooks.drill.evaluation import evaluate, value_text, what_text
    from playbooks.drill.scenario import ScenarioError

    before = evaluate(scenario, in_force)
    try:
        after = evaluate(scenario, revised)
    except ScenarioError as exc:  # it names a type, unit or street the revision lacks
        refused = [str(p) for p in exc.problems] or [str(exc)]
    except (ReportRejected, PlanCannotDecide) as exc:  # the revision loads, yet cannot decide one of its reports
        refused = [f"{type(exc).__name__}: {exc}"]
    else:
        refused = []
    if refused:
        return ScenarioCheck(scenario=scenario.id, name=scenario.name, expectations=before.totals.expectations,
                             failed_before=before.totals.failed, failed_after=before.totals.expectations,
                             refused_after=refused, changed=[])
    labels = {o.kind.value: o.label for o in before.obligations}
    theirs = {(r.incident, r.what): r for r in after.expectations}
    changed = []
    for r in before.expectations:
        a = theirs.get((r.incident, r.what))
        if a is not None and (a.passed != r.passed or a.actual != r.actual):
            changed.append(ExpectationOutcome(incident=r.incident, what=r.what, label=what_text(r.what, labels),
                                              expected=value_text(r.expected), before=value_text(r.actual),
                                              after=value_text(a.actual), passed_before=r.passed,
                                              passed_after=a.passed))
    return ScenarioCheck(scenario=scenario.id, name=scenario.name, expectations=before.totals.expectations,
                         failed_before=before.totals.failed, failed_after=after.totals.failed, changed=changed)


def scenario_history(scenario, plan: Plan, *, run: str = "whatif") -> History:
    """A drill scenario's records as if they had been live (7.2.1 验证性演练: a revision tried on a scripted
    period as well as on the log): the records the drill would send, with `drill` off, due checks left out."""
    from playbooks.drill.replay import replay  # the drill's own record builder

    feed: list = []
    replay(scenario, plan, run=run, feed=feed)
    records: list[tuple[datetime, HistoryRecord]] = []
    for at, rec in feed:
        if isinstance(rec, IncidentReported):
            report = rec.report.model_copy(update={"drill": False, "drill_participants": []})
            records.append((at, rec.model_copy(update={"report": report})))
        elif isinstance(rec, IncidentCommand) and not isinstance(rec.body, DueCheck):
            records.append((at, rec.model_copy(update={"drill": False})))
    return History(start=scenario.start, until=scenario.end, records=records)
