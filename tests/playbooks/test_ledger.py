"""The 迟报/漏报/瞒报 ledger (5.5.2), one case per outcome with its section: an incident driven through the
real lifecycle on a simulated clock (its events are what the topics would carry), then read by the ledger.
The ledger never computes a deadline: the due times in its rows are the lifecycle's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from playbooks.ledger.circular import circular_record, draft_circular, rectifications
from playbooks.ledger.config import LEDGER_FILE, LedgerFile, load_ledger
from playbooks.ledger.rules import IncidentRecords, Outcome, buckets, flags_of, ledger, rows_of
from playbooks.lifecycle import Outcome as Step, check_due, handle, start
from tests.playbooks.conftest import make_report
from topics.ledger import CircularIssued, RectificationReported
from topics.models import EndRecorded, FollowupFacts, IncidentCommand, IncidentReported, ReportFiled

RECEIVED = datetime(2026, 11, 22, 1, 20, tzinfo=timezone.utc)  # 09:20 in Beijing
M = timedelta(minutes=1)
DAY_FROM = datetime(2026, 11, 21, 16, 0, tzinfo=timezone.utc)  # 2026-11-22 00:00 in Beijing
DAY_TO = DAY_FROM + timedelta(days=1)


@pytest.fixture(scope="module")
def config(plan) -> LedgerFile:
    return load_ledger(units=frozenset(plan.units))


class Story:
    """An incident on a simulated clock, every event kept, as tests/playbooks/test_fold.py drives one."""

    def __init__(self, plan, received: datetime = RECEIVED, occurred: datetime | None = None, **over):
        self.plan, self.n = plan, 0
        occurred = occurred or received - 5 * M
        self.report = make_report(occurred_at=occurred.isoformat(), received_at=received.isoformat(), **over)
        out = start(IncidentReported(id=self.report.report_id, incident_id=self.report.report_id, report=self.report,
                                     accepted_at=received), plan, received)
        self.received, self.state, self.events = received, out.state, list(out.events)

    def _step(self, out: Step) -> "Story":
        self.state = out.state
        self.events += out.events
        return self

    def due(self, minutes: float) -> "Story":
        return self._step(check_due(self.state, self.plan, self.received + minutes * M))

    def file(self, kind: str, minutes: float, **over) -> "Story":
        self.n += 1
        at = self.received + minutes * M
        body = ReportFiled(id=f"f{self.n}", incident_id=self.state.incident_id, kind=kind, unit_id="x",
                           filed_at=at, filed_by="值班员甲", **over)
        cmd = IncidentCommand(id=f"c{self.n}", incident_id=self.state.incident_id, body=body)
        return self._step(handle(self.state, cmd, self.plan, at))

    def end(self, minutes: float) -> "Story":
        self.n += 1
        at = self.received + minutes * M
        body = EndRecorded(id=f"e{self.n}", incident_id=self.state.incident_id, authority="district_committee",
                           decided_by="区应急委", ended_at=at, recorded_by="指挥员乙")
        cmd = IncidentCommand(id=f"c{self.n}", incident_id=self.state.incident_id, body=body)
        return self._step(handle(self.state, cmd, self.plan, at))

    def records(self) -> IncidentRecords:
        return IncidentRecords(incident_id=self.state.incident_id, report=self.report,
                               type_name=self.state.decision.type_name, events=tuple(self.events))


def row(story: Story, plan, config, kind: str, now_minutes: float, opening: int = 1):
    rows = rows_of(story.records(), plan, config, story.received + now_minutes * M)
    return next(r for r in rows if r.obligation == kind and r.opening == opening)


@dataclass
class Case:
    story: Callable  # plan -> Story
    kind: str
    now: float  # minutes after 接报
    outcome: Outcome
    minutes_late: float | None = None
    items: tuple[str, ...] = ()
    source_delay: float | None = None
    opening: int = 1


CASES = [
    pytest.param(Case(lambda p: Story(p).file("phone_report", 8), "phone_report", 30, Outcome.ON_TIME),
                 id="4.1 值班值守 按时: phone report 8 min after 接报"),
    pytest.param(Case(lambda p: Story(p).due(11).file("phone_report", 17), "phone_report", 30, Outcome.LATE,
                      minutes_late=7.0), id="5.5.2 迟报: phone report 7 min after its 10"),
    pytest.param(Case(lambda p: Story(p).file("phone_report", 17), "phone_report", 30, Outcome.LATE, minutes_late=7.0),
                 id="5.5.2 迟报 without a sweep between"),
    pytest.param(Case(lambda p: Story(p).due(61), "written_report", 90, Outcome.MISSED),
                 id="5.5.2 漏报: written report, due passed, never filed"),
    pytest.param(Case(lambda p: Story(p), "written_report", 90, Outcome.MISSED),
                 id="5.5.2 漏报 before the sweep recorded the breach"),
    pytest.param(Case(lambda p: Story(p), "written_report", 30, Outcome.PENDING), id="4.1 未到期"),
    pytest.param(Case(lambda p: Story(p).file("written_report", 40, items_missing=["trend", "measures"]),
                      "written_report", 90, Outcome.INCOMPLETE, items=("发展趋势", "已采取的措施")),
                 id="4.1.5 内容不全: on time, lacking two items"),
    pytest.param(Case(lambda p: Story(p).file("written_report", 70, items_missing=["trend"]), "written_report", 90,
                      Outcome.LATE, minutes_late=10.0, items=("发展趋势",)),
                 id="5.5.2 迟报 and lacking an item: 迟报, the item listed"),
    pytest.param(Case(lambda p: Story(p, occurred=RECEIVED - 180 * M).file("detailed_report", 30), "detailed_report",
                      90, Outcome.SOURCE_DELAY, source_delay=60.0),
                 id="4.1.2 接报滞后: received 3 h after, the detailed report was due 1 h before 接报"),
    pytest.param(Case(lambda p: Story(p, occurred=RECEIVED - 180 * M), "detailed_report", 30, Outcome.SOURCE_DELAY,
                      source_delay=60.0), id="4.1.2 接报滞后, within the unit's hour after 接报, not filed yet"),
    pytest.param(Case(lambda p: Story(p, occurred=RECEIVED - 180 * M).file("detailed_report", 75), "detailed_report",
                      90, Outcome.LATE, minutes_late=15.0, source_delay=60.0),
                 id="4.1.2; 5.5.2 接报滞后, then the unit 15 min past its hour after 接报: 迟报"),
    pytest.param(Case(lambda p: Story(p, occurred=RECEIVED - 180 * M), "detailed_report", 61, Outcome.MISSED,
                      source_delay=60.0), id="4.1.2; 5.5.2 接报滞后, then nothing in the unit's hour: 漏报"),
    pytest.param(Case(lambda p: Story(p, facts={"deaths": 1}).file("followup", 30).due(151), "followup", 160,
                      Outcome.MISSED, opening=2),
                 id="4.1.5 及时续报: the second 续报 owed (二级, 120 min from the first) missed"),
    pytest.param(Case(lambda p: Story(p, facts={"deaths": 1}).file("followup", 30), "followup", 160,
                      Outcome.ON_TIME, opening=1), id="4.1.5 及时续报: the first one 按时"),
]


@pytest.mark.parametrize("case", CASES)
def test_outcome(plan, config, case: Case):
    story = case.story(plan)
    r = row(story, plan, config, case.kind, case.now, case.opening)
    assert r.outcome is case.outcome, r.reason
    assert r.outcome_label == config.outcomes[case.outcome.value].label
    assert r.breach == (case.outcome in (Outcome.LATE, Outcome.MISSED, Outcome.INCOMPLETE))
    assert r.minutes_late == case.minutes_late
    assert tuple(r.items_missing) == case.items
    assert r.source_delay_minutes == case.source_delay
    assert r.unit_id == story.state.obligations[case.kind].obligation.owner_id  # the engine's owner, by its id
    assert r.section and r.reason


def test_due_times_are_the_engines(plan, config):
    """Every row's due time is one the lifecycle opened, never computed again."""
    story = Story(plan, facts={"deaths": 1}).file("followup", 30).due(200)
    opened = {e.details["due_at"] for e in story.events if e.kind.value == "obligation_opened"}
    rows = rows_of(story.records(), plan, config, RECEIVED + 200 * M)
    assert rows and {r.due_at.isoformat() for r in rows} <= opened


def test_a_closed_obligation_is_not_in_the_ledger(plan, config):  # 4.3.1: a regrade closed it before it fell due
    story = Story(plan).file("followup", 5, followup=FollowupFacts(facts={"deaths": 3}))
    closed = {e.obligation for e in story.events if e.kind.value == "obligation_closed"}
    assert "release_caliber" in closed
    assert "release_caliber" not in {r.obligation for r in rows_of(story.records(), plan, config, RECEIVED + 5 * M)}


FLAGS = [
    pytest.param({"deaths": 2}, {"deaths": 4}, ["死亡人数由首报2人增至4人"], id="5.5.2 瞒报 flag: deaths doubled"),
    pytest.param({"deaths": 0}, {"deaths": 3}, ["死亡人数由首报0人增至3人", "升为较大"],
                 id="5.5.2 瞒报 flag: grade raised 一般→较大 with the deaths"),
    pytest.param({"injuries": 4}, {"injuries": 8}, [], id="5.5.2 no flag: 4 more injured is under the 5 of ledger.yaml"),
    pytest.param({"deaths": 3}, {"deaths": 4}, [], id="5.5.2 no flag: one more death is not double (较大 both)"),
    pytest.param({"injuries": 10}, {"injuries": 20}, ["受伤人数由首报10人增至20人"], id="5.5.2 瞒报 flag: injuries doubled"),
]


@pytest.mark.parametrize(("first", "then", "says"), FLAGS)
def test_concealment_flag(plan, config, first, then, says):
    story = Story(plan, facts=first).file("followup", 30, followup=FollowupFacts(facts=then))
    flags = flags_of(story.records(), plan, config)
    if not says:
        assert flags == []
        return
    (flag,) = flags
    assert flag.status == "待核实" and flag.label == "疑似瞒报（待核实）" and flag.section.startswith("5.5.2")
    text = "；".join(flag.reasons)
    assert all(s in text for s in says), text
    assert flag.first.counts == {**dict.fromkeys(flag.first.counts, 0), **first}  # side by side: the first report
    assert flag.followup.counts == {**dict.fromkeys(flag.followup.counts, 0), **then}
    assert flag.first.grade == "一般" and flag.followup.at == RECEIVED + 30 * M
    assert flag.unit_id == story.state.obligations["phone_report"].obligation.owner_id


def test_settling_an_undetermined_grade_is_no_concealment(plan, config):  # 4.1.3 研判定级, ledger.yaml from_undetermined
    story = Story(plan, type_="other").file("followup", 30, followup=FollowupFacts(asserted_grade="一般"))
    assert story.state.decision.grade.value == "一般"
    assert flags_of(story.records(), plan, config) == []


def test_a_second_followup_repeating_the_same_rise_is_not_flagged_again(plan, config):
    story = (Story(plan, facts={"deaths": 2}).file("followup", 30, followup=FollowupFacts(facts={"deaths": 4}))
             .file("followup", 60, followup=FollowupFacts(facts={"deaths": 4})))
    assert len(flags_of(story.records(), plan, config)) == 1


def test_drills_are_kept_apart(plan, config):  # 7.2: a drill's breaches are never in the live ledger
    live = Story(plan).due(61).records()
    drill = Story(plan, report_id="d-1", drill=True).due(61).records()
    now = RECEIVED + 90 * M
    live_ledger = ledger([live, drill], plan, config, period_from=DAY_FROM, period_to=DAY_TO, now=now)
    drill_ledger = ledger([live, drill], plan, config, period_from=DAY_FROM, period_to=DAY_TO, now=now, drill=True)
    assert {r.incident_id for r in live_ledger.rows} == {live.incident_id}
    assert {r.incident_id for r in drill_ledger.rows} == {drill.incident_id} and drill_ledger.drill
    assert any(r.outcome is Outcome.MISSED for r in drill_ledger.rows)


def test_period_unit_and_summaries(plan, config):
    a = Story(plan).due(11).file("phone_report", 17).due(61).records()  # 区城市管理委: 迟报 7, 漏报 written …
    b = Story(plan, type_="hazardous_chemicals_accident", report_id="t-2").file("phone_report", 5).records()
    now = RECEIVED + 90 * M
    whole = ledger([a, b], plan, config, period_from=DAY_FROM, period_to=DAY_TO, now=now)
    lead_a, lead_b = "district_urban_management_commission", "district_emergency_bureau"
    line = next(u for u in whole.units if u.unit_id == lead_a)
    assert line.counts["late"] == 1 and line.minutes_late == 7.0 and line.counts["missed"] >= 1
    assert line.breaches == line.counts["late"] + line.counts["missed"] + line.counts["incomplete"]
    assert whole.bucket == "hour" and len(line.trend) == 24
    hour = next(p for p in line.trend if p.start == datetime(2026, 11, 22, 9, tzinfo=whole.units[0].trend[0].start.tzinfo))
    assert hour.late == 1  # the phone report due 09:30 Beijing
    one = ledger([a, b], plan, config, period_from=DAY_FROM, period_to=DAY_TO, now=now, unit_id=lead_b)
    assert {r.unit_id for r in one.rows} == {lead_b}
    later = ledger([a, b], plan, config, period_from=DAY_TO, period_to=DAY_TO + timedelta(days=1), now=now)
    assert later.rows == []  # due times outside the period
    with pytest.raises(ValueError, match="from"):
        ledger([a], plan, config, period_from=DAY_TO, period_to=DAY_FROM, now=now)


def test_day_buckets_start_at_midnight_in_beijing(config):
    kind, starts = buckets(DAY_FROM, DAY_FROM + timedelta(days=7), config)
    assert kind == "day" and len(starts) == 7
    assert all(s.hour == 0 and s.utcoffset() == timedelta(hours=8) for s in starts)


def test_circular_lists_units_with_breaches_and_a_rectification_deadline_each(plan, config):  # 5.5.1
    a = Story(plan).due(11).file("phone_report", 17).due(61).records()
    b = Story(plan, type_="hazardous_chemicals_accident", report_id="t-2").file("phone_report", 5).records()
    now = RECEIVED + 90 * M
    book = ledger([a, b], plan, config, period_from=DAY_FROM, period_to=DAY_TO, now=now)
    issued = RECEIVED + 120 * M
    doc = draft_circular(book, config, plan, issued_at=issued)
    breached = {r.unit_id for r in book.rows if r.breach}
    assert {u.unit_id for u in doc.units} == breached and len(breached) >= 2
    for u in doc.units:
        assert len(u.breaches) == sum(1 for r in book.rows if r.breach and r.unit_id == u.unit_id)
    assert [len(u.breaches) for u in doc.units] == sorted((len(u.breaches) for u in doc.units), reverse=True)
    unit = next(u for u in doc.units if u.unit_id == "district_urban_management_commission")
    assert unit.rectify_by == issued + timedelta(days=config.rectification.due_after_days)
    late = next(x for x in unit.breaches if x.obligation == "phone_report")
    assert late.outcome_label == "迟报" and late.minutes_late == 7.0 and late.incident_id == a.incident_id
    assert doc.issuer == "区应急办" and doc.title == config.circular.title
    record = circular_record(doc, circular_id="c-1", issued_by="admin")
    assert {u.unit_id: u.due_at for u in record.units} == {u.unit_id: u.rectify_by for u in doc.units}
    quiet = ledger([b], plan, config, period_from=DAY_FROM, period_to=DAY_TO, now=RECEIVED + 9 * M)
    assert draft_circular(quiet, config, plan, issued_at=issued).units == []  # no breach, nobody named
    with pytest.raises(ValueError, match="units"):
        circular_record(draft_circular(quiet, config, plan, issued_at=issued), circular_id="c-2", issued_by="admin")


def test_rectification_is_an_obligation_with_the_folds_statuses(plan, config):  # 5.5.1 限期整改
    issued = RECEIVED
    due = issued + timedelta(days=15)
    rec = CircularIssued(id="c-1", period_from=DAY_FROM, period_to=DAY_TO, issued_at=issued, issued_by="admin",
                         issuer_unit_id="district_emergency_office", units=[
                             {"unit_id": "district_urban_management_commission", "unit": "区城市管理委", "breaches": 2,
                              "due_at": due, "remind_at": due - timedelta(days=3)},
                             {"unit_id": "district_emergency_bureau", "unit": "区应急局", "breaches": 1,
                              "due_at": due, "remind_at": due - timedelta(days=3)}])
    on_time = RectificationReported(id="r-1", circular_id="c-1", unit_id="district_emergency_bureau",
                                    reported_at=due - timedelta(days=1), reported_by="区应急局")
    before = {r.unit_id: r for r in rectifications([rec, on_time], now=due - timedelta(hours=1))}
    assert before["district_urban_management_commission"].status == "open"
    assert before["district_emergency_bureau"].status == "met"
    after = {r.unit_id: r for r in rectifications([rec, on_time], now=due + timedelta(hours=1))}
    assert after["district_urban_management_commission"].status == "missed"
    late = RectificationReported(id="r-2", circular_id="c-1", unit_id="district_urban_management_commission",
                                 reported_at=due + timedelta(hours=2), reported_by="区城市管理委")
    again = {r.unit_id: r for r in rectifications([rec, on_time, late, late], now=due + timedelta(hours=3))}
    assert again["district_urban_management_commission"].status == "late"
    assert again["district_urban_management_commission"].minutes_late == 120.0


def test_every_figure_of_ours_is_marked(config):
    """ledger.yaml: each block whose figure the plan does not give says basis our_choice and a note saying so."""
    raw = yaml.safe_load(LEDGER_FILE.read_text(encoding="utf-8"))
    for block in ("source_delay", "concealment", "rectification", "chase"):
        assert raw[block]["basis"] == "our_choice", block
        assert "预案未规定" in raw[block]["note"], block
    assert config.outcomes["late"].basis == "plan" and config.outcomes["late"].section == "5.5.2"
    # the notes people read say the figures the rules use: a changed figure with a stale note fails here
    assert f"{config.source_delay.unit_grace_minutes}分钟" in config.source_delay.note
    assert f"{config.rectification.due_after_days}日" in config.rectification.note
    assert f"{config.rectification.remind_before_days}日" in config.rectification.note
    assert f"{config.rectification.remind_before_days * 2}日" in config.rectification.note  # the half-way rule's bound
    for role in (config.chase.remind.role, config.chase.overdue.role, config.chase.overdue.issuer_role):
        assert role in config.chase.note
    assert f"{config.concealment.counts['deaths'].factor:g}倍" in config.concealment.note
    assert config.outcomes["source_delay"].basis == "our_choice"


def test_an_unknown_issuer_fails_at_load(tmp_path, plan):
    bad = tmp_path / "ledger.yaml"
    bad.write_text(LEDGER_FILE.read_text(encoding="utf-8").replace("issuer: district_emergency_office",
                                                                   "issuer: nobody"), encoding="utf-8")
    with pytest.raises(ValueError, match="circular.issuer"):
        load_ledger(bad, units=frozenset(plan.units))


def test_an_old_incident_is_in_the_ledger_of_the_day_its_obligation_falls_due(plan, config):
    """5.5.2 over a month: the 总结评估报告 owed 30 days after the end (5.4.2) is in the ledger of that day,
    and an incident that owes nothing in a period is not read for it."""
    story = Story(plan).file("phone_report", 5).end(30)
    month = DAY_FROM + timedelta(days=30)
    book = ledger([story.records()], plan, config, period_from=month, period_to=month + timedelta(days=1),
                  now=month + timedelta(days=2))
    assert [(r.obligation, r.outcome) for r in book.rows] == [("evaluation_report", Outcome.MISSED)]
    quiet = ledger([story.records()], plan, config, period_from=month + timedelta(days=5),
                   period_to=month + timedelta(days=6), now=month + timedelta(days=7))
    assert quiet.rows == [] and quiet.flags == []
