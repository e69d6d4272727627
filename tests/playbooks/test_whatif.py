"""What-if (issue 24 item 1): a recorded history replayed under the plan in force and a revision.

The history is what the API would have written (reports and filings, each with the time it reached
the log); the test first replays it through the lifecycle under the shipped plan to pin what happened
(so each revision's expected differences are read against a known course). Each revision then yields
exactly the differences it should, each naming the rule and section behind it, and nothing else.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from playbooks.plan import DATA_DIR, load_plan
from playbooks.whatif import (
    History,
    RevisionRefused,
    load_revision,
    replay_incident,
    scenario_history,
    to_json,
    to_markdown,
    what_if,
)
from topics.models import (
    IncidentCommand,
    IncidentReported,
    ReportFacts,
    ReportFiled,
    ReportKind,
)

T0 = datetime(2026, 11, 22, 1, 0, tzinfo=timezone.utc)  # 09:00 in Beijing
UNTIL = T0 + timedelta(hours=4)


def _report(iid: str, type_: str, minute: int, street: str, **facts: int) -> tuple[datetime, IncidentReported]:
    at = T0 + timedelta(minutes=minute)
    report = ReportFacts(report_id=iid, type=type_, occurred_at=at - timedelta(minutes=5), received_at=at,
                         location={"street": street}, facts=facts)
    return at, IncidentReported(id=iid, incident_id=iid, report=report, accepted_at=at, raised_by="u-officer")


def _filed(iid: str, kind: ReportKind, minute: int, unit: str, *, drill: bool = False) -> tuple[datetime, IncidentCommand]:
    at = T0 + timedelta(minutes=minute)
    cid = f"{iid}.{kind.value}.{minute}"
    body = ReportFiled(id=cid, incident_id=iid, kind=kind, unit_id=unit, filed_at=at, filed_by="值班员")
    return at, IncidentCommand(id=cid, incident_id=iid, drill=drill, body=body)


UMC = "district_urban_management_commission"  # 燃气事故's lead unit (2.3.6)
P = ReportKind.PHONE_REPORT
W = ReportKind.WRITTEN_REPORT

# g3: gas, 3 dead (较大 by 493号令: ≥3), phone report 7 minutes after receipt; g5: gas, 5 dead (较大 under
# either threshold below), phone report at 3 minutes; f1: a fire with one injured, phone report at 8.
RECORDS = [
    _report("g3", "燃气事故", 0, "梨园镇", deaths=3),
    _report("g5", "燃气事故", 20, "宋庄镇", deaths=5),
    _filed("g3", P, 7, UMC),
    _report("f1", "火灾事故", 30, "中仓街道", injuries=1),
    _filed("g5", P, 23, UMC),
    _filed("f1", P, 38, "tongzhou_fire_rescue"),
    _filed("g3", W, 50, UMC),
    _filed("g5", W, 75, UMC),
    _filed("f1", W, 80, "tongzhou_fire_rescue"),
]


@pytest.fixture(scope="module")
def in_force():
    return load_plan()


@pytest.fixture(scope="module")
def history() -> History:
    return History(start=T0, until=UNTIL, records=sorted(RECORDS, key=lambda r: r[0]))


def _revision(tmp: Path, file: str, old: str, new: str):
    data = tmp / "data"
    shutil.copytree(DATA_DIR, data)
    text = (data / file).read_text(encoding="utf-8")
    assert old in text, (file, old)
    (data / file).write_text(text.replace(old, new, 1), encoding="utf-8")
    return data


def test_the_recorded_history_ran_as_the_test_says(in_force, history):
    """What happened under the plan in force, which the expectations below are read against."""
    by = {iid: [r for r in history.records if r[1].incident_id == iid] for iid in ("g3", "g5", "f1")}
    g3, g5, f1 = (replay_incident(by[i], in_force, UNTIL) for i in ("g3", "g5", "f1"))
    assert (g3.grade, g3.level, g3.lead_unit_ids) == ("较大", "一级", [UMC])
    assert (g5.grade, f1.grade) == ("较大", "一般")
    assert g3.obligations["phone_report"].status == "met" and g5.obligations["phone_report"].status == "met"
    assert f1.obligations["phone_report"].status == "met"


# --- each revision, exactly its differences ---------------------------------------------------------------

LEAD_MOVED = ("incident_types.yaml", f"    lead_units: [{UMC}]\n    lead_units_open_ended: false\n    grading_family: production_safety\n  - id: heating_accident",
              "    lead_units: [district_housing_construction_commission]\n    lead_units_open_ended: false\n"
              "    grading_family: production_safety\n  - id: heating_accident")
THRESHOLD = ("grading.yaml", "thresholds: {特别重大: 30, 重大: 10, 较大: 3}", "thresholds: {特别重大: 30, 重大: 10, 较大: 4}")
DEADLINE = ("obligations.yaml", "due_after_minutes: 10\n    remind_before_minutes: 5\n",
            "due_after_minutes: 5\n    remind_before_minutes: 2\n")


def _aspects(report, iid):
    return {(d.aspect, d.subject, d.rule, d.section) for c in report.incidents if c.incident_id == iid
            for d in c.differences}


def test_moving_a_types_lead_unit_changes_who_leads_and_who_owes_for_that_type_only(in_force, history, tmp_path):
    revised = load_revision(_revision(tmp_path, *LEAD_MOVED))
    report = what_if(history, in_force, revised)
    assert {c.incident_id for c in report.incidents} == {"g3", "g5"}  # the fire is another type
    for iid in ("g3", "g5"):
        c = next(c for c in report.incidents if c.incident_id == iid)
        by_aspect = {d.aspect: d for d in c.differences}
        lead = by_aspect["lead_units"]
        assert (lead.before, lead.after, lead.rule, lead.section) == ("区城市管理委", "区住房和城乡建设委", "type.lead_units",
                                                                      "2.3.6")
        assert "区住房和城乡建设委" in lead.reasons[0].text
        cmd = by_aspect["commanders"]
        assert "区城市管理委行政一把手" in cmd.before and "区住房和城乡建设委行政一把手" in cmd.after
        assert cmd.section == "4.3.4"
        # nothing of grade, level, or of when anything fell due: the same course, another unit
        assert {d.aspect for d in c.differences} <= {"lead_units", "commanders", "notice", "obligation"}
        # the notices move from one unit to the other, each under the rule that sends it
        told = {(d.subject.split("：")[1], d.before is None) for d in c.differences if d.aspect == "notice"}
        assert told and {u for u, _ in told} <= {"区城市管理委值班员", "区城市管理委", "区住房和城乡建设委值班员",
                                                  "区住房和城乡建设委", "区城市管理委值班领导", "区住房和城乡建设委值班领导"}
        assert any(u.startswith("区住房和城乡建设委") and gained for u, gained in told)
        assert any(u.startswith("区城市管理委") and not gained for u, gained in told)
        # the reports the lead owes ($lead) change owner, with their own rule and section
        owed = [d for d in c.differences if d.aspect == "obligation"]
        assert owed and all(d.units == [UMC, "district_housing_construction_commission"] for d in owed)
        assert {d.rule for d in owed} >= {"obligation.phone_report", "obligation.written_report"}
    units = {u.unit_id: u for u in report.units}
    assert units[UMC].led_before == 2 and units[UMC].led_after == 0
    assert units["district_housing_construction_commission"].led_after == 2


def test_a_grading_threshold_regrades_only_the_incidents_between_the_old_and_the_new(in_force, history, tmp_path):
    revised = load_revision(_revision(tmp_path, *THRESHOLD))
    report = what_if(history, in_force, revised)
    assert [c.incident_id for c in report.incidents] == ["g3"]  # 5 dead is 较大 either way; a fire is another family
    [c] = report.incidents
    grade = next(d for d in c.differences if d.aspect == "grade")
    assert (grade.before, grade.after) == ("较大", "一般")
    assert (grade.rule, grade.section) == ("grade.production_safety.below_thresholds",
                                           "《生产安全事故报告和调查处理条例》(国务院令第493号) 第三条")
    level = next(d for d in c.differences if d.aspect == "level")
    assert (level.before, level.after) == ("一级", "二级")
    assert level.rule == "level.general_casualties_or_multi_agency" and level.section.startswith("4.3.3")
    # what a 较大 event alone owes or tells (4.1.3 approval and city report, end by the city …) goes, and
    # every such difference names its rule; the phone and written reports are owed alike and met alike
    aspects = {d.aspect for d in c.differences}
    assert aspects <= {"grade", "level", "commanders", "notice", "obligation", "escalation"}
    assert not any(d.subject in ("电话报告", "书面报告") for d in c.differences if d.aspect == "obligation")
    assert all(d.rule and d.section for d in c.differences)
    assert report.totals.by_aspect["grade"] == 1


def test_a_shorter_deadline_makes_the_filings_after_it_late_and_chased(in_force, history, tmp_path):
    revised = load_revision(_revision(tmp_path, *DEADLINE))
    report = what_if(history, in_force, revised)
    rule, section = "obligation.phone_report", "4.1.3; 值班值守（接报后10分钟）"
    # g3 filed at 7 minutes: on time → 2 minutes late, breached, 督办 step 1 (its two notices)
    assert _aspects(report, "g3") == {
        ("obligation", "电话报告", rule, section),
        ("escalation", "电话报告督办", f"{rule}.escalation.report_chain_fast", "5.5.2"),
        ("notice", "escalation：区城市管理委值班领导", rule, "5.5.2"),
        ("notice", "escalation：区应急办值班主任", rule, "5.5.2"),
    }
    g3 = next(d for c in report.incidents if c.incident_id == "g3" for d in c.differences if d.aspect == "obligation")
    assert g3.before.startswith("按时") and g3.after.startswith("迟报") and "迟 2 分钟" in g3.after
    # g5 filed at 3 minutes: on time under both, only its due time moved
    assert _aspects(report, "g5") == {("obligation", "电话报告", rule, section)}
    # f1 filed at 8 minutes: late by 3, chased, and reminded at 3 minutes (filed after it)
    assert _aspects(report, "f1") == {
        ("obligation", "电话报告", rule, section),
        ("escalation", "电话报告督办", f"{rule}.escalation.report_chain_fast", "5.5.2"),
        ("notice", "escalation：通州消防救援支队值班领导", rule, "5.5.2"),
        ("notice", "escalation：区应急办值班主任", rule, "5.5.2"),
    }
    t = report.totals
    assert (t.breaches_after - t.breaches_before, t.late_after - t.late_before) == (2, 2)
    assert (t.escalation_steps_after - t.escalation_steps_before) == 2


def test_an_identical_plan_changes_nothing(in_force, history, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    with (data / "grading.yaml").open("a", encoding="utf-8") as f:
        f.write("# the same plan, another version\n")
    same = load_revision(data)
    assert same.version != in_force.version
    for shortcut in (True, False):
        report = what_if(history, in_force, same, shortcut=shortcut)
        assert report.incidents == [] and report.totals.differing == 0 and report.totals.incidents == 3
        assert report.totals.breaches_before == report.totals.breaches_after > 0


@pytest.mark.parametrize(("change", "twice"), [(LEAD_MOVED, 2), (THRESHOLD, 2), (DEADLINE, 3)],
                         ids=["2.3.6-lead", "1.4.2-threshold", "4.1.3-deadline"])
def test_the_shortcut_gives_the_report_a_full_replay_gives(in_force, history, tmp_path, change, twice):
    """Replayed once when every decision is the same under both plans; the report is the same either way.
    (The threshold replays g5 twice: its grade reason quotes the threshold, though 5 dead is 较大 either way.)"""
    revised = load_revision(_revision(tmp_path, *change))
    quick, full = what_if(history, in_force, revised), what_if(history, in_force, revised, shortcut=False)
    assert quick.model_dump(exclude={"totals": {"replayed_twice"}}) == full.model_dump(exclude={"totals": {"replayed_twice"}})
    assert (full.totals.replayed_twice, quick.totals.replayed_twice) == (3, twice)


# Revisions of files the engine and the lifecycle do not read (playbooks.whatif.NOT_DECIDING): no incident replayed
# twice, and the same report as a full replay
NOT_DECIDING_EDITS = {
    "channels.yaml": ("    levels: [一级, 二级]\n    channels: [wecom, dingtalk, sms, email]",
                      "    levels: [一级, 二级]\n    channels: [email]"),
    "ladder.yaml": ("  一级:\n    value: 3\n", "  一级:\n    value: 0.5\n"),
    "duty.yaml": ("{role: 值班领导, post: chief}", "{role: 值班领导, post: leader}"),
    "district_grid.yaml": ("town_yongledian: {name: 永乐店镇, col: 3, row: 6}", "town_yongledian: {name: 永乐店镇, col: 3, row: 7}"),
    "warnings.yaml": ("hq: hq_meteorological_disaster, department: district_meteorological_bureau,",
                      "hq: hq_meteorological_disaster, department: district_water_bureau,"),
    "ledger.yaml": ("hour_buckets_up_to_days: 2", "hour_buckets_up_to_days: 7"),
    "drills.yaml": ("per_year: 1  # our choice: 定期", "per_year: 2  # the revision: 定期"),
}


@pytest.mark.parametrize("file", sorted(NOT_DECIDING_EDITS))
def test_a_revision_of_what_no_decision_reads_replays_each_incident_once(in_force, history, tmp_path, file):
    revised = load_revision(_revision(tmp_path, file, *NOT_DECIDING_EDITS[file]))
    assert revised.version != in_force.version
    quick, full = what_if(history, in_force, revised), what_if(history, in_force, revised, shortcut=False)
    assert quick.model_dump(exclude={"totals": {"replayed_twice"}}) == full.model_dump(exclude={"totals": {"replayed_twice"}})
    assert (full.totals.replayed_twice, quick.totals.replayed_twice, quick.totals.differing) == (3, 0, 0)
    assert [c.file for c in quick.changes] and {c.file for c in quick.changes} == {file}


class _Bomb:
    """A part of the plan that must not be read: any look at it fails the test."""

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def _fail(self, *_, **__):
        raise AssertionError(f"the replay read plan.{object.__getattribute__(self, '_name')}")

    __getattr__ = __getitem__ = __iter__ = __len__ = __bool__ = __eq__ = __hash__ = __contains__ = _fail


def test_the_replay_reads_none_of_the_files_said_not_to_decide(in_force, history):
    """NOT_DECIDING is a promise about what the replay reads: run it on a plan whose parts of those files fail when
    looked at (under a version of its own, so no memo answers for it), over the test's history and every shipped
    scenario, and it must give what the plan itself gives. A rule that starts to read one of them fails here."""
    from playbooks.drill.scenario import SCENARIOS_DIR, load_scenario
    from playbooks.plan import PLAN_FILES
    from playbooks.whatif import NOT_DECIDING, incidents_of, same_course

    assert NOT_DECIDING < set(PLAN_FILES)
    guarded = in_force.model_copy(update={**{f.removesuffix(".yaml"): _Bomb(f) for f in NOT_DECIDING},
                                          "version": "guarded00000"})
    histories = [history] + [scenario_history(load_scenario(p, in_force), in_force)
                             for p in sorted(SCENARIOS_DIR.glob("*.yaml"))]
    replayed = 0
    for h in histories:
        incidents, _ = incidents_of(h)
        for records in incidents.values():
            mine, theirs = replay_incident(records, guarded, h.until), replay_incident(records, in_force, h.until)
            assert (mine.grade, mine.level, mine.lead_unit_ids, mine.refused) == \
                (theirs.grade, theirs.level, theirs.lead_unit_ids, theirs.refused)
            assert {k: o.status for k, o in mine.obligations.items()} == {k: o.status for k, o in theirs.obligations.items()}
            assert same_course(records, guarded, in_force)
            replayed += 1
    assert replayed >= 30


def test_a_change_of_order_the_decisions_read_is_replayed_twice(in_force, history, tmp_path):
    """The 二级 commanders' roles swapped: no field changed, yet the commanders of a 二级 incident read otherwise; the
    shortcut must not take it for a revision of nothing (it did while plan_diff left such orders out)."""
    data = _revision(tmp_path, "response.yaml", "", "")
    text = (data / "response.yaml").read_text(encoding="utf-8")
    start = text.index("  二级:")
    roles = text.index("    roles:", start)
    items = [i for i in range(roles, len(text)) if text.startswith("      - ", i)][:2]
    first_line_end = text.index("\n", items[0]) + 1
    second_line_end = text.index("\n", items[1]) + 1
    assert first_line_end == items[1], "each role on one line"
    swapped = text[:items[0]] + text[items[1]:second_line_end] + text[items[0]:first_line_end] + text[second_line_end:]
    (data / "response.yaml").write_text(swapped, encoding="utf-8")
    revised = load_revision(data)
    quick, full = what_if(history, in_force, revised), what_if(history, in_force, revised, shortcut=False)
    assert quick.model_dump(exclude={"totals": {"replayed_twice"}}) == full.model_dump(exclude={"totals": {"replayed_twice"}})
    assert [(c.file, c.change) for c in quick.changes] == [("response.yaml", "changed")]


def test_outcomes_kept_between_questions_give_the_same_report(in_force, history, tmp_path):
    baseline: dict = {}
    first = what_if(history, in_force, load_revision(_revision(tmp_path / "a", *DEADLINE)), baseline=baseline)
    assert len(baseline) == 3
    revised = load_revision(_revision(tmp_path / "b", *THRESHOLD))
    again = what_if(history, in_force, revised, baseline=baseline)
    assert again == what_if(history, in_force, revised) and again != first


# --- an invalid revision is refused naming file, line and field -------------------------------------------

@pytest.mark.parametrize(("file", "old", "new", "field", "says"), [
    ("obligations.yaml", "due_after_minutes: 10\n", "due_after_minutes: 0\n", "obligations.0.due_after_minutes",
     "greater than 0"),
    ("incident_types.yaml", LEAD_MOVED[1], LEAD_MOVED[2].replace("district_housing_construction_commission", "no_such_bureau"),
     "types[gas_accident].lead_units", "unknown unit 'no_such_bureau'"),
    ("grading.yaml", "fact: deaths_incl_missing", "fact: deaths_incl_misssing",
     "families.production_safety.criteria.0.fact", "unknown fact 'deaths_incl_misssing'"),
], ids=["4.1.3-term", "2.3.6-unit", "1.4.2-fact"])
def test_an_invalid_revision_is_refused_naming_file_line_and_field(tmp_path, file, old, new, field, says):
    data = _revision(tmp_path, file, old, new)
    edited = new.strip().splitlines()[0]
    line = next(i for i, text in enumerate((data / file).read_text(encoding="utf-8").splitlines(), 1) if edited in text)
    with pytest.raises(RevisionRefused) as err:
        load_revision(data)
    [problem] = err.value.problems
    assert problem.startswith(f"{file}, line {line}: {field}: ") and says in problem, problem


# --- what is replayed --------------------------------------------------------------------------------------

def test_drill_records_and_incidents_before_the_period_are_left_out(in_force):
    records = [
        _report("early", "燃气事故", -30, "梨园镇"),
        _filed("early", P, 5, UMC),  # in the period, for an incident reported before it
        _report("live", "燃气事故", 0, "梨园镇"),
        _filed("live", P, 50, UMC, drill=True),  # a drill's command: never part of a what-if
    ]
    drill_at, drill = _report("d1", "燃气事故", 10, "梨园镇")
    drill = drill.model_copy(update={"report": drill.report.model_copy(update={"drill": True})})
    history = History(start=T0, until=UNTIL, records=[*records, (drill_at, drill)])
    report = what_if(history, in_force, in_force)
    assert report.totals.incidents == 1
    assert (report.skipped.drill, report.skipped.before_period) == (2, 1)


def test_the_report_renders_as_markdown_and_json(in_force, history, tmp_path):
    revised = load_revision(_revision(tmp_path, *DEADLINE))
    report = what_if(history, in_force, revised, revised_source="revision-2027")
    md = to_markdown(report)
    assert "## 按单位" in md and "## 按规则" in md and "`obligation.phone_report`" in md and "revision-2027" in md
    assert re.search(r"\| 漏报（逾期未报） \| \d+ \| \d+ \|", md)
    assert '"incident_id": "g3"' in to_json(report)


def test_a_scenario_replays_as_live_history(in_force):
    from playbooks.drill.scenario import load_scenario

    scenario = load_scenario(DATA_DIR.parent / "drill" / "scenarios" / "busy-night.yaml", in_force)
    history = scenario_history(scenario, in_force)
    assert history.records and not any(getattr(r, "drill", False) or getattr(getattr(r, "report", None), "drill", False)
                                       for _, r in history.records)
    report = what_if(history, in_force, in_force)
    assert report.totals.incidents == 24 and report.totals.differing == 0


def test_shares_of_the_period_add_up_to_the_whole(in_force, history, tmp_path):
    """What a process pool does (services.whatif): each share tallied apart, the report made of them all."""
    from playbooks.whatif import report_of, tally

    revised = load_revision(_revision(tmp_path, *DEADLINE))
    shares = [tally(history, in_force, revised, part=(i, 2)) for i in range(2)]
    assert [s.incidents for s in shares] == [2, 1]
    assert report_of(history, in_force, revised, shares) == what_if(history, in_force, revised)
