"""The drill programme's register (7.2.1–7.2.3): one row per rule, its plan section in the id. Facts are the
records the API writes (topics/programme.py) and the runs as their runners record them (topics/drills.py);
the register is asked for a year at a `now`. No mocks, no clock, no event loop."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import pytest
import yaml

from playbooks.drill.programme import (
    adoption_revisions,
    Register,
    expected_units,
    improvement_problems,
    link_problems,
    planning_problems,
    register,
    revision_unit,
)
from playbooks.drills_config import DRILLS_FILE, load_drills
from playbooks.plan import DATA_DIR, PlanError, load_plan
from topics.drills import DrillRunRecorded, DrillRunStatus
from topics.plan import PlanAdopted
from topics.programme import DrillKind, DrillPlanned, ImprovementClosed, ImprovementRecorded, PlanRevised

UTC = timezone.utc
NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)  # mid-year 2026, 10:00 in Beijing
YEAR_OVER = datetime(2027, 1, 2, tzinfo=UTC)
STREET = "town_liyuan"  # 梨园镇 (kind street)
GAS = "district_urban_management_commission"  # 区城市管理委: drafts 8.3 #20 燃气, hosts an HQ
OFFICE = "district_emergency_office"  # 区应急办
D = timedelta(days=1)


@pytest.fixture(scope="module")
def config():
    return load_drills()


def planned(pid: str, unit: str, kind: DrillKind = DrillKind.COMPREHENSIVE, *, year: int = 2026,
            planned_for: date | None = None, validates: str | None = None, scenario: str | None = None) -> DrillPlanned:
    return DrillPlanned(id=pid, year=year, unit_id=unit, kind=kind, title=f"演练{pid}", scenario=scenario,
                        planned_for=planned_for, validates=validates, planned_by="controller",
                        planned_at=datetime(year, 1, 5, tzinfo=UTC))


def run(rid: str, planned_id: str | None, *, status: DrillRunStatus = DrillRunStatus.DONE,
        at: datetime = datetime(2026, 5, 10, 3, 0, tzinfo=UTC), failed: tuple[str, ...] = (), passed: int = 3) -> DrillRunRecorded:
    expectations = [{"incident": "blast", "what": f"ok{n}", "expected": True, "actual": True, "passed": True}
                    for n in range(passed)]
    expectations += [{"incident": "blast", "what": w, "expected": "met", "actual": "missed", "passed": False} for w in failed]
    total = len(expectations)
    evaluation = ({"score": round(100 * passed / total, 1) if total else None, "expectations": expectations, "kind": "综合"}
                  if status is DrillRunStatus.DONE else None)
    return DrillRunRecorded(id=f"{rid}.9", run_id=rid, scenario="gas-explosion", name="燃气", speed=60, started_by="c",
                            started_at=at - timedelta(hours=1), runner="api", status=status, sent=1, total=1,
                            start=at - D, end=at, planned_id=planned_id, evaluation=evaluation, at=at)


def revised(rid: str, plan_id: str, unit: str, at: datetime = datetime(2026, 3, 1, tzinfo=UTC)) -> PlanRevised:
    return PlanRevised(id=rid, plan_id=plan_id, unit_id=unit, revised_at=at, recorded_by="office", recorded_at=at)


def item(iid: str, run_id: str, unit: str, due: datetime, expectation: str | None = "blast/obligations.phone_report",
         ) -> ImprovementRecorded:
    return ImprovementRecorded(id=iid, run_id=run_id, expectation=expectation, unit_id=unit, owner="李四",
                               action="电话报告流程再培训", due_at=due, recorded_by="c", recorded_at=datetime(2026, 5, 11, tzinfo=UTC))


def closed(iid: str, at: datetime) -> ImprovementClosed:
    return ImprovementClosed(id=f"{iid}.closed", item_id=iid, closed_at=at, closed_by="c")


def line(reg: Register, unit: str):
    return next(u for u in reg.units if u.unit_id == unit)


def expectation(reg: Register, unit: str) -> str:
    (e,) = line(reg, unit).expectations
    return e.status


def flags(reg: Register, unit: str) -> list[tuple[str, str]]:
    return sorted((f.rule, f.ref) for f in line(reg, unit).flags)


def items(reg: Register, unit: str) -> list[tuple[str | None, str]]:
    return [(i.item_id, i.status) for i in line(reg, unit).improvements]


FAILED = ("obligations.phone_report",)


@dataclass
class Case:
    id: str
    records: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    now: datetime = NOW
    read: Callable[[Register], object] = lambda reg: None
    expected: object = None


CASES = [
    # --- 7.2.2: what each unit is expected to drill in a year
    Case("7.2.2 a street's held 综合 drill meets its year", [planned("p1", STREET)], [run("r1", "p1")],
         read=lambda r: expectation(r, STREET), expected="met"),
    Case("7.2.2 a street's 单项 drill does not: streets drill 综合", [planned("p1", STREET, DrillKind.SINGLE)],
         [run("r1", "p1")], read=lambda r: expectation(r, STREET), expected="unplanned"),
    Case("7.2.2 a department's 单项 drill meets its year (综合 or 单项)", [planned("p1", GAS, DrillKind.SINGLE)],
         [run("r1", "p1")], read=lambda r: [e.status for e in line(r, GAS).expectations], expected=["met"]),
    Case("7.2.2 planned, not yet run: planned", [planned("p1", STREET)], [],
         read=lambda r: (expectation(r, STREET), line(r, STREET).planned[0].status), expected=("planned", "planned")),
    Case("7.2.2 nothing planned mid-year: unplanned, not flagged", [], [],
         read=lambda r: (expectation(r, STREET), flags(r, STREET)), expected=("unplanned", [])),
    Case("7.2.2 a run that failed or was stopped holds nothing", [planned("p1", STREET)],
         [run("r1", "p1", status=DrillRunStatus.FAILED), run("r2", "p1", status=DrillRunStatus.STOPPED)],
         read=lambda r: (expectation(r, STREET), line(r, STREET).planned[0].status), expected=("planned", "planned")),
    Case("7.2.2 a running run: running", [planned("p1", STREET)], [run("r1", "p1", status=DrillRunStatus.RUNNING)],
         read=lambda r: line(r, STREET).planned[0].status_label, expected="实施中"),
    Case("7.2.2 the year over with nothing held: missed, flagged", [planned("p1", STREET)], [], now=YEAR_OVER,
         read=lambda r: (expectation(r, STREET), flags(r, STREET)),
         expected=("missed", [("drill_overdue", "p1"), ("expectation_missed", "streets_annual")])),
    Case("7.2.2 two runs of one planned drill count once", [planned("p1", OFFICE)],
         [run("r1", "p1"), run("r2", "p1", at=datetime(2026, 6, 1, tzinfo=UTC))],
         read=lambda r: [(e.held, e.status) for e in line(r, OFFICE).expectations], expected=[(1, "met")]),
    Case("7.2.2 a drill planned for another year is not this year's", [planned("p1", STREET, year=2025)],
         [run("r1", "p1", at=datetime(2025, 5, 1, tzinfo=UTC))], read=lambda r: (expectation(r, STREET), line(r, STREET).planned),
         expected=("unplanned", [])),
    # --- 7.2.3: the planned day, the score, the improvement items (评估总结和改进)
    Case("7.2.3 its planned day passed, not held: overdue, flagged", [planned("p1", STREET, planned_for=date(2026, 6, 1))], [],
         read=lambda r: (line(r, STREET).planned[0].status, flags(r, STREET)), expected=("overdue", [("drill_overdue", "p1")])),
    Case("7.2.3 the planned day itself is not overdue yet", [planned("p1", STREET, planned_for=date(2026, 7, 1))], [],
         read=lambda r: line(r, STREET).planned[0].status, expected="planned"),
    Case("7.2.3 the run's score and its failed count", [planned("p1", STREET)], [run("r1", "p1", failed=FAILED)],
         read=lambda r: (line(r, STREET).planned[0].score, line(r, STREET).planned[0].runs[0].failed), expected=(75.0, 1)),
    Case("7.2.3 the latest done run's score is the drill's", [planned("p1", STREET)],
         [run("r1", "p1", failed=FAILED), run("r2", "p1", at=datetime(2026, 6, 1, tzinfo=UTC))],
         read=lambda r: line(r, STREET).planned[0].score, expected=100.0),
    Case("7.2.3 a failed expectation with no item: 待登记 within the term", [planned("p1", STREET)],
         [run("r1", "p1", at=NOW - 14 * D, failed=FAILED)], read=lambda r: (items(r, STREET), flags(r, STREET)),
         expected=([(None, "unrecorded")], [])),
    Case("7.2.3 unrecorded past the term: flagged", [planned("p1", STREET)],
         [run("r1", "p1", at=NOW - 16 * D, failed=FAILED)], read=lambda r: (items(r, STREET), flags(r, STREET)),
         expected=([(None, "unrecorded_overdue")], [("improvement_unrecorded", "r1/blast/obligations.phone_report")])),
    Case("7.2.3 an item recorded answers it: open before its due time", [planned("p1", STREET), item("i1", "r1", STREET, NOW + D)],
         [run("r1", "p1", at=NOW - 20 * D, failed=FAILED)], read=lambda r: (items(r, STREET), flags(r, STREET)),
         expected=([("i1", "open")], [])),
    Case("7.2.3 an item past its due time: overdue, flagged",
         [planned("p1", STREET), item("i1", "r1", STREET, NOW - D)], [run("r1", "p1", failed=FAILED)],
         read=lambda r: (items(r, STREET), flags(r, STREET)), expected=([("i1", "overdue")], [("improvement_overdue", "i1")])),
    Case("7.2.3 closed by its due time: closed",
         [planned("p1", STREET), item("i1", "r1", STREET, NOW - D), closed("i1", NOW - 2 * D)], [run("r1", "p1", failed=FAILED)],
         read=lambda r: (items(r, STREET), flags(r, STREET)), expected=([("i1", "closed")], [])),
    Case("7.2.3 closed after it: closed late, not flagged",
         [planned("p1", STREET), item("i1", "r1", STREET, NOW - 3 * D), closed("i1", NOW - 2 * D)],
         [run("r1", "p1", failed=FAILED)], read=lambda r: items(r, STREET), expected=[("i1", "closed_late")]),
    Case("7.2.3 an item is its unit's (who), not the drill's unit's",
         [planned("p1", STREET), item("i1", "r1", GAS, NOW - D)], [run("r1", "p1", failed=FAILED)],
         read=lambda r: (items(r, STREET), items(r, GAS), flags(r, GAS)),
         expected=([], [("i1", "overdue")], [("improvement_overdue", "i1")])),
    Case("7.2.3 the register shows the failed expectation it answers",
         [planned("p1", STREET), item("i1", "r1", STREET, NOW + D)], [run("r1", "p1", failed=FAILED)],
         read=lambda r: [(i.expectation, i.expected, i.actual, i.owner) for i in line(r, STREET).improvements],
         expected=[("blast/obligations.phone_report", "met", "missed", "李四")]),
    Case("7.2.3 a run naming no planned drill is listed apart and holds nothing", [], [run("r1", None)],
         read=lambda r: ([x.run_id for x in r.unplanned_runs], expectation(r, STREET)), expected=(["r1"], "unplanned")),
    # --- 7.2.1: a special plan revised needs a validation drill (验证性演练)
    Case("7.2.1 revised, no validation drill: its drafting unit flagged", [revised("v1", "sp_gas", GAS)], [],
         read=lambda r: (line(r, GAS).revisions[0].status, flags(r, GAS)),
         expected=("not_validated", [("validation_missing", "v1")])),
    Case("7.2.1 revised, validation planned not yet held: still flagged",
         [revised("v1", "sp_gas", GAS), planned("p1", GAS, DrillKind.SINGLE, validates="sp_gas")], [],
         read=lambda r: (line(r, GAS).revisions[0].status, flags(r, GAS)),
         expected=("validation_planned", [("validation_missing", "v1")])),
    Case("7.2.1 revised and validated in the year: not flagged",
         [revised("v1", "sp_gas", GAS), planned("p1", GAS, DrillKind.SINGLE, validates="sp_gas")], [run("r1", "p1")],
         read=lambda r: (line(r, GAS).revisions[0].validated_by, flags(r, GAS)), expected=(["p1"], [])),
    Case("7.2.1 a validation drill of another plan does not validate it",
         [revised("v1", "sp_gas", GAS), planned("p1", GAS, DrillKind.SINGLE, validates="sp_heating")], [run("r1", "p1")],
         read=lambda r: flags(r, GAS), expected=[("validation_missing", "v1")]),
    Case("7.2.1 a validation drill held in the year before does not validate this year's revision",
         [revised("v1", "sp_gas", GAS), planned("p1", GAS, DrillKind.SINGLE, validates="sp_gas", year=2025)],
         [run("r1", "p1", at=datetime(2025, 11, 1, tzinfo=UTC))], read=lambda r: flags(r, GAS),
         expected=[("validation_missing", "v1")]),
    Case("7.2.1 last year's revision is not this year's flag",
         [revised("v1", "sp_gas", GAS, at=datetime(2025, 12, 31, 15, 59, tzinfo=UTC))], [],  # 23:59 in Beijing
         read=lambda r: (line(r, GAS).revisions, flags(r, GAS)), expected=([], [])),
    Case("7.2.1 the year is Beijing's: 2026-01-01 00:30 +08:00 is 2026's",
         [revised("v1", "sp_gas", GAS, at=datetime(2025, 12, 31, 16, 30, tzinfo=UTC))], [],
         read=lambda r: flags(r, GAS), expected=[("validation_missing", "v1")]),
    Case("7.2.1 the general plan revised: 区应急办 flagged (8.2.1)", [revised("v1", "general", OFFICE)], [],
         read=lambda r: flags(r, OFFICE), expected=[("validation_missing", "v1")]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule(case: Case, plan, config):
    reg = register(records=case.records, runs=case.runs, plan=plan, config=config, year=2026, now=case.now)
    assert case.read(reg) == case.expected


def test_every_flag_of_the_register_is_its_units(plan, config):
    records = [revised("v1", "sp_gas", GAS), planned("p1", STREET, planned_for=date(2026, 6, 1))]
    reg = register(records=records, runs=[], plan=plan, config=config, year=2026, now=NOW)
    assert sorted((f.unit_id, f.rule) for f in reg.flags) == [(GAS, "validation_missing"), (STREET, "drill_overdue")]
    assert reg.totals.units_flagged == 2 and reg.totals.revisions_not_validated == 1
    assert all(f.section in ("7.2.1", "7.2.3") for f in reg.flags)
    one = register(records=records, runs=[], plan=plan, config=config, year=2026, now=NOW, unit_id=GAS)
    assert [u.unit_id for u in one.units] == [GAS] and [f.rule for f in one.flags] == ["validation_missing"]


def test_who_7_2_2_expects_drills_of(plan, config):
    expected = expected_units(plan, config)
    streets = {u.id for u in plan.units.values() if u.kind == "street"}
    assert streets <= set(expected) and len(streets) == 22
    assert [e.id for e in expected[STREET]] == ["streets_annual"]
    assert [e.id for e in expected[OFFICE]] == ["district_cross_system"]
    drafters = {p.drafted_by for p in plan.command.special_plans}
    assert drafters <= set(expected)  # every 8.3 drafting unit
    assert "district_party_committee" not in expected  # 区委 drafts no plan and hosts no HQ


def adopted(aid: str, *, rollback_of: str | None = None, at: datetime = datetime(2026, 3, 1, tzinfo=UTC)) -> PlanAdopted:
    return PlanAdopted(id=aid, version="abc123", files={"units.yaml": "units: []\n"}, adopted_by="plan-office",
                       adopted_at=at, reason="7.1.5 修订", rollback_of=rollback_of)


@pytest.mark.parametrize(("adoptions", "expected"), [
    pytest.param([adopted("a1")], [("validation_missing", "adoption.a1")], id="7.2.1 a revision adopted live is 区应急办's"),
    pytest.param([adopted("a1"), adopted("a2", rollback_of="a1", at=datetime(2026, 3, 2, tzinfo=UTC))],
                 [("validation_missing", "adoption.a1")], id="7.2.1 a rollback is no revision of its own"),
    pytest.param([adopted("a0", at=datetime(2025, 6, 1, tzinfo=UTC))], [], id="7.2.1 last year's adoption is not this year's"),
])
def test_revisions_adopted_live_owe_a_validation_drill(plan, config, adoptions, expected):
    records = adoption_revisions(adoptions, config)
    reg = register(records=records, runs=[], plan=plan, config=config, year=2026, now=NOW)
    assert flags(reg, OFFICE) == expected
    validated = register(records=[*records, planned("p1", OFFICE, DrillKind.SINGLE, validates="general")],
                         runs=[run("r1", "p1")], plan=plan, config=config, year=2026, now=NOW)
    assert flags(validated, OFFICE) == []


def test_an_adoption_never_in_force_or_with_a_long_id_is_read_safely(plan, config):
    long = adopted("a" * 118)
    records = adoption_revisions([adopted("refused-1"), long], config, refused={"refused-1"})
    assert [r.id for r in records] == [records[0].id] and len(records[0].id) <= 120  # refused: never in force
    reg = register(records=records, runs=[], plan=plan, config=config, year=2026, now=NOW)
    assert [rule for rule, _ in flags(reg, OFFICE)] == ["validation_missing"]


def test_who_revises_a_plan(plan, config):
    assert revision_unit(plan, config, "sp_gas") == GAS
    assert revision_unit(plan, config, "general") == OFFICE
    assert revision_unit(plan, config, "sp_nope") is None


@pytest.mark.parametrize(("kwargs", "fields"), [
    ({"unit_id": "nope", "validates": None}, ["unit_id"]),
    ({"unit_id": GAS, "validates": "sp_nope"}, ["validates"]),
    ({"unit_id": GAS, "validates": "sp_gas"}, []),
], ids=["unknown unit", "unknown plan", "a validation drill of 8.3 #20"])
def test_planning_refusals_name_the_field(plan, kwargs, fields):
    assert [f for f, _ in planning_problems(plan=plan, **kwargs)] == fields


@pytest.mark.parametrize(("drill", "scenario_id", "kind", "problem"), [
    (None, "gas-explosion", "单项", "no planned drill"),
    (planned("p1", GAS, DrillKind.COMPREHENSIVE), "gas-explosion", "单项", "综合演练"),
    (planned("p1", GAS, DrillKind.SINGLE, scenario="flood-sub-center"), "gas-explosion", "单项", "flood-sub-center"),
    (planned("p1", GAS, DrillKind.SINGLE, scenario="gas-explosion"), "gas-explosion", "单项", None),
], ids=["not planned", "another kind", "another scenario", "its own"])
def test_a_run_carries_out_a_planned_drill_of_its_kind(drill, scenario_id, kind, problem):
    problems = link_problems(drill, planned_id="p1", scenario_id=scenario_id, scenario_kind=kind)
    if problem is None:
        assert problems == []
    else:
        assert [f for f, _ in problems] == ["planned_id"] and problem in problems[0][1]


@pytest.mark.parametrize(("the_run", "exp", "unit", "fields"), [
    (None, None, GAS, ["run_id"]),
    (run("r1", "p1", status=DrillRunStatus.RUNNING), None, GAS, ["run_id"]),
    (run("r1", "p1", failed=FAILED), "blast/ok0", GAS, ["expectation"]),  # passed: nothing to improve
    (run("r1", "p1", failed=FAILED), "blast/obligations.phone_report", "nope", ["unit_id"]),
    (run("r1", "p1", failed=FAILED), "blast/obligations.phone_report", GAS, []),
    (run("r1", "p1"), None, GAS, []),  # an item of the run as a whole
], ids=["unknown run", "still running", "a passed expectation", "unknown unit", "a failed expectation", "the run"])
def test_improvement_refusals_name_the_field(plan, the_run, exp, unit, fields):
    problems = improvement_problems(run=the_run, run_id="r1", expectation=exp, unit_id=unit, plan=plan)
    assert [f for f, _ in problems] == fields


def test_every_figure_is_marked_and_our_choices_say_so(config):
    raw = yaml.safe_load(DRILLS_FILE.read_text(encoding="utf-8"))
    for block in [*raw["expectations"], raw["validation"], raw["improvement"]]:
        assert block["basis"] in ("plan", "our_choice") and block["note"]
        if block["basis"] == "our_choice" or block.get("units_basis") == "our_choice":
            assert "本系统的选择" in block["note"], block
    assert config.improvement.record_within_days == 15 and "15日" in config.improvement.note
    by_id = {e.id: e for e in config.expectations}
    assert by_id["district_cross_system"].basis == "our_choice"  # 定期: no interval in the plan
    assert by_id["hq_and_departments_annual"].units_basis == "our_choice"  # 相关部门: not listed by the plan


def test_an_unknown_unit_in_drills_yaml_is_refused_at_load_naming_file_line_and_field(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    text = (data / "drills.yaml").read_text(encoding="utf-8").replace("units: [district_emergency_office]",
                                                                      "units: [district_emergency_offic]")
    (data / "drills.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PlanError) as info:
        load_plan(data)
    (problem,) = info.value.problems
    assert (problem.file, problem.field) == ("drills.yaml", "expectations.2.units")
    assert problem.line == next(n for n, s in enumerate(text.splitlines(), 1) if "district_emergency_offic]" in s)
