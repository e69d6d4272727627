"""The 迟报/漏报/瞒报 ledger (5.5.2), pure: incidents' records, a period and `now` in; rows with reasons out.

Every obligation an incident owed, each opening of it (a 续报 owed again after each one is a row per
opening), is read from the incident's events through playbooks.fold — the due time, filing and breach
the engine recorded, never computed again — and classed by playbooks/data/ledger.yaml: 按时, 迟报 (with
its minutes), 漏报, 内容不全 (met by a filing marked 报告要素不全), 接报滞后 (the deadline had passed when
the service first learned of the event: recorded against the source, not as the unit's 迟报), or 未到期.
A follow-up far above the first report is a possible 瞒报: flagged for review with both reports side by
side, never concluded. A ledger is of live incidents or of drill ones, never both.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from playbooks.fold import IncidentFold, ObligationFold, next_status
from playbooks.ledger.config import LedgerFile
from topics.models import GRADE_RANK, EventKind, Grade, IncidentEvent, ReportFacts

BEIJING = ZoneInfo("Asia/Shanghai")
ITEM_LABELS = {"time": "时间", "place": "地点", "source": "信息来源", "nature": "事件性质", "harm": "危害程度",
               "trend": "发展趋势", "measures": "已采取的措施", "progress": "后续进展"}  # playbooks.documents.ITEMS
COUNT_LABELS = {"deaths": "死亡", "missing": "失踪", "serious_injuries": "重伤", "injuries": "受伤", "poisoned": "中毒"}
UNKNOWN_SOURCE = "未注明来源"


class Outcome(StrEnum):
    ON_TIME = "on_time"  # 按时
    LATE = "late"  # 迟报
    MISSED = "missed"  # 漏报
    INCOMPLETE = "incomplete"  # 内容不全
    SOURCE_DELAY = "source_delay"  # 接报滞后
    PENDING = "pending"  # 未到期


BREACHES = (Outcome.LATE, Outcome.MISSED, Outcome.INCOMPLETE)


class Units(Protocol):
    """What the ledger reads of the plan (playbooks.plan.Plan is one): a unit's id by its name. A protocol,
    not an import: the plan registers ledger.yaml, so the two modules would import each other."""

    @property
    def unit_ids_by_name(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class IncidentRecords:
    """What the ledger reads of one incident: its first report as accepted and its timeline."""

    incident_id: str
    report: ReportFacts
    type_name: str
    events: tuple[IncidentEvent, ...]


class LedgerModel(BaseModel):
    """Base of what the ledger answers: immutable, unknown fields refused (the API's response models)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Row(LedgerModel):
    """One obligation (one opening of it) and what became of it."""

    incident_id: str
    drill: bool
    type_name: str = Field(description="the incident's type, as table 2.3.6 names it")
    obligation: str = Field(description="the obligation's kind (obligations.yaml)")
    label: str = Field(description="电话报告, 书面报告 …, as the obligation's opening names it")
    opening: int = Field(description="1 for the first time it was owed; a 续报 owed again after each one counts up")
    unit_id: str | None = Field(description="the owner unit's id (units.yaml); None if its name is not the plan's")
    unit: str
    due_at: datetime
    filed_at: datetime | None = Field(description="when the filing counted (a backdated one: when it came in)")
    outcome: Outcome
    outcome_label: str = Field(description="按时, 迟报, 漏报, 内容不全, 接报滞后, 未到期")
    breach: bool = Field(description="counted against the unit (迟报, 漏报, 内容不全)")
    minutes_late: float | None = Field(description="迟报: minutes after the due time (after 接报's grace, for a deadline "
                                                   "passed before 接报)")
    items_missing: list[str] = Field(description="the 4.1.5 items the filing lacked, as the plan names them")
    source: str = Field(description="信息来源: where the report came from")
    source_delay_minutes: float | None = Field(description="the deadline had passed this long when the service first "
                                                           "learned of the event (接报滞后); None otherwise")
    section: str = Field(description="the section of the plan the outcome rests on (ledger.yaml)")
    obligation_section: str | None = Field(description="the section that owes the report (obligations.yaml)")
    reason: str


class ReportSide(LedgerModel):
    """One of the two reports a 瞒报 flag sets side by side."""

    at: datetime
    grade: str | None
    counts: dict[str, int] = Field(description="deaths, missing, serious_injuries, injuries, poisoned")
    by: str | None = None


class ConcealmentFlag(LedgerModel):
    """A possible 瞒报, for a person to review: never a conclusion of the software."""

    incident_id: str
    drill: bool
    type_name: str
    unit_id: str | None = Field(description="who made the first report (the owner of the 电话报告, 4.1.3)")
    unit: str
    first: ReportSide
    followup: ReportSide
    reasons: list[str]
    label: str = Field(description="疑似瞒报（待核实）")
    section: str
    status: Literal["待核实"] = "待核实"


class TrendPoint(LedgerModel):
    start: datetime = Field(description="the bucket's start (an hour or a day, Asia/Shanghai)")
    late: int
    missed: int
    incomplete: int


class UnitLine(LedgerModel):
    unit_id: str | None
    unit: str
    counts: dict[str, int] = Field(description="rows by outcome id")
    breaches: int = Field(description="迟报 + 漏报 + 内容不全")
    minutes_late: float = Field(description="the 迟报 minutes summed")
    concealment_flags: int
    trend: list[TrendPoint]


class SourceLine(LedgerModel):
    source: str
    deadlines_passed: int = Field(description="obligations whose deadline had passed at 接报")
    minutes: float = Field(description="by how long, summed")


class OutcomeInfo(LedgerModel):
    id: Outcome
    label: str
    section: str
    rule: str
    breach: bool
    basis: Literal["plan", "our_choice"]


class Ledger(LedgerModel):
    period_from: datetime
    period_to: datetime
    now: datetime
    drill: bool = Field(description="a drill's ledger (its incidents only) or the live one (no drill in it)")
    unit_id: str | None = Field(description="the unit asked for; None: every unit")
    bucket: Literal["hour", "day"] = Field(description="the trend's bucket, in Asia/Shanghai")
    outcomes: list[OutcomeInfo]
    rows: list[Row]
    units: list[UnitLine] = Field(description="per unit with rows, most breaches first")
    sources: list[SourceLine] = Field(description="接报滞后 by 信息来源")
    flags: list[ConcealmentFlag]
    notes: list[str] = Field(description="the figures that are our choice, not the plan's, as ledger.yaml says them")


# --- obligations, each opening of each, from the events ------------------------------------------


def _openings(events: Iterable[IncidentEvent]) -> list[tuple[ObligationFold, tuple[str, ...]]]:
    """Every opening of every obligation, folded as playbooks.fold folds it, with the 4.1.5 items the
    filing that met it lacked. The fold keeps an obligation's latest opening; an opening that replaces
    one keeps the one before here (the fold makes a new object per opening, the old one is left as it was)."""
    state = IncidentFold()
    done: list[ObligationFold] = []
    lacking: dict[str, tuple[str, ...]] = {}  # report kind -> items its latest filing lacked
    items: dict[int, tuple[str, ...]] = {}
    for e in sorted(events, key=lambda e: e.seq):
        kind = str(e.details.get("report_kind") or "")
        if e.kind is EventKind.REPORT_FILED:
            lacking.pop(kind, None)  # a new filing of the kind: its own items, marked next if any
        elif e.kind is EventKind.REPORT_INCOMPLETE:
            lacking[kind] = tuple(i for i in str(e.details.get("items_missing") or "").split(",") if i)
        if e.kind is EventKind.OBLIGATION_OPENED and e.obligation in state.obligations:
            before = state.obligations[e.obligation]
            if next_status(before.status, e.kind) is not None:
                done.append(before)
        state.apply(e)
        if e.kind in (EventKind.OBLIGATION_MET, EventKind.OBLIGATION_LATE) and e.obligation in lacking:
            items[id(state.obligations[e.obligation])] = lacking[e.obligation]
    return [(ob, items.get(id(ob), ())) for ob in [*done, *state.obligations.values()]]


def _minutes(d: timedelta) -> float:
    return round(d.total_seconds() / 60, 1)


def _classify(ob: ObligationFold, lacking: tuple[str, ...], learned_at: datetime, config: LedgerFile,
              now: datetime) -> tuple[Outcome, float | None, float | None, str] | None:
    """(outcome, minutes late, source delay minutes, reason); None for an obligation no longer owed."""
    if ob.status == "closed" or ob.due_at is None:
        return None  # closed before it fell due (a regrade, the end): not owed, not a breach
    due, filed = ob.due_at, ob.filed_at
    names = "、".join(ITEM_LABELS.get(i, i) for i in lacking)
    if due <= learned_at:
        # 接报滞后: the deadline had passed when the service first learned of the event (4.1.2: the source
        # owed it at once). The unit is held to the grace after 接报 instead (ledger.yaml, our choice).
        delay = _minutes(learned_at - due)
        grace_minutes = config.source_delay.unit_grace_minutes
        held_to = learned_at + timedelta(minutes=grace_minutes)
        head = f"接报时{ob.label}时限已过 {delay:g} 分钟（接报滞后，记在信息来源）"
        if filed is not None and filed <= held_to:
            if lacking:
                return Outcome.INCOMPLETE, None, delay, f"{head}；接报后按时报送，但缺少要素：{names}"
            return Outcome.SOURCE_DELAY, None, delay, f"{head}；单位于接报后 {_minutes(filed - learned_at):g} 分钟内报送"
        if filed is not None:
            late = _minutes(filed - held_to)
            return Outcome.LATE, late, delay, f"{head}；单位超过接报后{grace_minutes}分钟仍未报送，迟报 {late:g} 分钟"
        if now >= held_to:
            return Outcome.MISSED, None, delay, f"{head}；接报后{grace_minutes}分钟仍未报送：漏报"
        return Outcome.SOURCE_DELAY, None, delay, f"{head}；尚未报送，应于接报后{grace_minutes}分钟内报送"
    if ob.status == "met":
        if lacking:
            return Outcome.INCOMPLETE, None, None, f"{ob.label}按时报送，但缺少4.1.5要素：{names}（报告要素不全）"
        return Outcome.ON_TIME, None, None, f"{ob.label}按时报送"
    if ob.status == "late":
        extra = f"；且缺少要素：{names}" if lacking else ""
        return Outcome.LATE, ob.minutes_late, None, f"{ob.label}迟报 {ob.minutes_late or 0:g} 分钟{extra}"
    if ob.status == "missed":
        return Outcome.MISSED, None, None, f"{ob.label}到期未报：漏报" + ("（督办已停止，记录保留）" if ob.closed else "")
    if due <= now:  # open past its due time: the sweep's breach not on the timeline yet
        return Outcome.MISSED, None, None, f"{ob.label}到期未报：漏报（督办记录待写入）"
    return Outcome.PENDING, None, None, f"{ob.label}应于{due.astimezone(BEIJING):%m-%d %H:%M}前报送，尚未到期"


def rows_of(rec: IncidentRecords, units: Units, config: LedgerFile, now: datetime) -> list[Row]:
    """Every obligation of one incident, each opening a row, classed at `now`."""
    out: list[Row] = []
    counters: dict[str, int] = {}
    source = rec.report.source or UNKNOWN_SOURCE
    for ob, lacking in _openings(rec.events):
        counters[ob.kind] = counters.get(ob.kind, 0) + 1
        classed = _classify(ob, lacking, rec.report.received_at, config, now)
        if classed is None:
            continue
        outcome, late, delay, reason = classed
        rule = config.outcomes[outcome.value]
        assert ob.due_at is not None
        out.append(Row.model_construct(  # the values are the fold's and the config's, typed: not validated again
            incident_id=rec.incident_id, drill=rec.report.drill, type_name=rec.type_name, obligation=ob.kind,
            label=ob.label, opening=counters[ob.kind], unit_id=units.unit_ids_by_name.get(ob.owner or ""),
            unit=ob.owner or "", due_at=ob.due_at, filed_at=ob.filed_at, outcome=outcome, outcome_label=rule.label,
            breach=rule.breach, minutes_late=late, items_missing=[ITEM_LABELS.get(i, i) for i in lacking],
            source=source, source_delay_minutes=delay, section=rule.section, obligation_section=ob.section,
            reason=reason))
    return out


# --- 瞒报: a follow-up far above the first report --------------------------------------------------


def flags_of(rec: IncidentRecords, units: Units, config: LedgerFile) -> list[ConcealmentFlag]:
    """Each follow-up that crosses a threshold of ledger.yaml's `concealment` no earlier follow-up of the
    incident crossed, beside the first report (its grade as first decided, its counts as accepted)."""
    c = config.concealment
    first_counts = {k: int(getattr(rec.report.facts, k)) for k in COUNT_LABELS}
    first_grade: str | None = None
    grade: str | None = None
    reporter: str | None = None  # the owner of the 电话报告: the first report to 区应急办 is theirs (4.1.3)
    followups: list[dict] = []
    for e in sorted(rec.events, key=lambda e: e.seq):
        d = e.details
        if e.kind is EventKind.DECIDED and first_grade is None:
            first_grade = grade = str(d.get("grade"))
        elif e.kind is EventKind.REGRADED:
            grade = str(d.get("to_grade"))
            if followups and followups[-1]["open"]:
                followups[-1]["grade"] = grade
        elif e.kind is EventKind.OBLIGATION_OPENED and e.obligation == "phone_report" and reporter is None:
            reporter = str(d.get("owner") or "")
        if e.kind is EventKind.REPORT_FILED:
            if followups:
                followups[-1]["open"] = False
            if d.get("report_kind") == "followup":
                counts = {k: int(d[f"followup_{k}"]) if f"followup_{k}" in d else  # type: ignore[arg-type]
                          (followups[-1]["counts"][k] if followups else first_counts[k]) for k in COUNT_LABELS}
                followups.append({"at": e.at, "by": e.by, "grade": grade, "counts": counts, "open": True})
    out: list[ConcealmentFlag] = []
    crossed: set[str] = set()
    first = ReportSide(at=rec.report.received_at, grade=first_grade, counts=first_counts)
    for f in followups:
        reasons: list[str] = []
        new: set[str] = set()
        g0 = _rank(first_grade)
        g1 = _rank(f["grade"])
        if g0 is not None and g1 is not None and g1 - g0 >= c.grade_rise_steps and (
                first_grade != Grade.UNDETERMINED.value or c.from_undetermined) and "grade" not in crossed:
            reasons.append(f"续报将事件等级由{first_grade}升为{f['grade']}")
            new.add("grade")
        for k, t in c.counts.items():
            before, after = first_counts[k], f["counts"][k]
            if after >= before * t.factor and after - before >= t.min_increase and k not in crossed:
                reasons.append(f"{COUNT_LABELS[k]}人数由首报{before}人增至{after}人（≥首报{t.factor:g}倍且多{t.min_increase}人以上）")
                new.add(k)
        if reasons:
            crossed |= new
            out.append(ConcealmentFlag(
                incident_id=rec.incident_id, drill=rec.report.drill, type_name=rec.type_name,
                unit_id=units.unit_ids_by_name.get(reporter or ""), unit=reporter or "", first=first,
                followup=ReportSide(at=f["at"], grade=f["grade"], counts=f["counts"], by=f["by"]),
                reasons=reasons, label=c.label, section=c.section))
    return out


def _rank(grade: str | None) -> int | None:
    try:
        return GRADE_RANK[Grade(grade)] if grade is not None else None
    except ValueError:
        return None


# --- the ledger of a period ---------------------------------------------------------------------


def buckets(period_from: datetime, period_to: datetime, config: LedgerFile) -> tuple[Literal["hour", "day"], list[datetime]]:
    """The trend's buckets over the period, by the hour or by the day as people in Beijing count them."""
    hourly = period_to - period_from <= timedelta(days=config.hour_buckets_up_to_days)
    start = period_from.astimezone(BEIJING)
    start = start.replace(minute=0, second=0, microsecond=0) if hourly else start.replace(hour=0, minute=0, second=0,
                                                                                          microsecond=0)
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    out: list[datetime] = []
    t = start
    while t < period_to:
        out.append(t)
        t += step  # Beijing keeps no summer time: a day is 24 hours
    return ("hour" if hourly else "day"), out


def ledger(incidents: Iterable[IncidentRecords], units: Units, config: LedgerFile, *, period_from: datetime,
           period_to: datetime, now: datetime, drill: bool = False, unit_id: str | None = None,
           trend: bool = True) -> Ledger:
    """The ledger of a period: the rows whose due time falls in [period_from, period_to) and the flags
    whose follow-up does, of live incidents (drill False) or drill ones (True); of one unit if named."""
    if period_from > period_to:
        raise ValueError("from: must not be after to")
    rows: list[Row] = []
    flags: list[ConcealmentFlag] = []
    for rec in incidents:
        if rec.report.drill != drill:
            continue  # a drill's breaches are never in the live ledger, nor live ones in a drill's
        if not _may_touch(rec, period_from, period_to):
            continue
        rows += [r for r in rows_of(rec, units, config, now) if period_from <= r.due_at < period_to
                 and (unit_id is None or r.unit_id == unit_id)]
        flags += [f for f in flags_of(rec, units, config) if period_from <= f.followup.at < period_to
                  and (unit_id is None or f.unit_id == unit_id)]
    rows.sort(key=lambda r: (r.due_at, r.incident_id, r.obligation, r.opening))
    flags.sort(key=lambda f: (f.followup.at, f.incident_id))
    bucket, starts = buckets(period_from, period_to, config) if trend else ("day", [])  # no trend: a 通报 needs none
    return Ledger(
        period_from=period_from, period_to=period_to, now=now, drill=drill, unit_id=unit_id, bucket=bucket,
        outcomes=[OutcomeInfo(id=Outcome(k), label=o.label, section=o.section, rule=o.rule, breach=o.breach,
                              basis=o.basis) for k, o in config.outcomes.items()],
        rows=rows, units=_unit_lines(rows, flags, starts), sources=_source_lines(rows), flags=flags,
        notes=[config.source_delay.note, config.concealment.note, config.rectification.note, config.chase.note])


def _may_touch(rec: IncidentRecords, period_from: datetime, period_to: datetime) -> bool:
    """Whether any obligation of the incident can fall due, or any follow-up be filed, in the period: not if
    it occurred after the period, nor if every due time it opened and every filing came before it."""
    if rec.report.occurred_at >= period_to:
        return False
    latest = rec.report.received_at
    for e in rec.events:
        if e.kind is EventKind.OBLIGATION_OPENED and e.details.get("due_at"):
            latest = max(latest, datetime.fromisoformat(str(e.details["due_at"])))
        elif e.kind is EventKind.REPORT_FILED:
            latest = max(latest, e.at)
    return latest >= period_from


def _unit_lines(rows: list[Row], flags: list[ConcealmentFlag], starts: list[datetime]) -> list[UnitLine]:
    """Per unit: its rows by outcome and its breaches per bucket. 接报滞后 is the source's, not the unit's:
    its rows are counted (so the unit's obligations add up) and are no breach."""
    by_unit: dict[str, list[Row]] = {}
    for r in rows:
        by_unit.setdefault(r.unit, []).append(r)
    for f in flags:
        by_unit.setdefault(f.unit, [])
    lines = []
    for unit, mine in by_unit.items():
        counts = {o.value: sum(1 for r in mine if r.outcome is o) for o in Outcome}
        tally = [dict.fromkeys(BREACHES, 0) for _ in starts]
        for r in mine:  # each row into its bucket once: the last bucket whose start is not after its due time
            i = bisect_right(starts, r.due_at) - 1
            if i >= 0 and r.outcome in BREACHES:
                tally[i][r.outcome] += 1
        trend = [TrendPoint(start=start, late=t[Outcome.LATE], missed=t[Outcome.MISSED], incomplete=t[Outcome.INCOMPLETE])
                 for start, t in zip(starts, tally)]
        unit_id = next((r.unit_id for r in mine), None) or next((f.unit_id for f in flags if f.unit == unit), None)
        lines.append(UnitLine(unit_id=unit_id, unit=unit, counts=counts,
                              breaches=sum(counts[o.value] for o in BREACHES),
                              minutes_late=round(sum(r.minutes_late or 0 for r in mine if r.outcome is Outcome.LATE), 1),
                              concealment_flags=sum(1 for f in flags if f.unit == unit), trend=trend))
    lines.sort(key=lambda u: (-u.breaches, -u.concealment_flags, u.unit))
    return lines


def _source_lines(rows: list[Row]) -> list[SourceLine]:
    by_source: dict[str, list[float]] = {}
    for r in rows:
        if r.source_delay_minutes is not None:
            by_source.setdefault(r.source, []).append(r.source_delay_minutes)
    return sorted((SourceLine(source=s, deadlines_passed=len(m), minutes=round(sum(m), 1)) for s, m in by_source.items()),
                  key=lambda s: (-s.deadlines_passed, s.source))
