"""Who is on duty (issue 18, first slice): duty.yaml's rules, rotations, overrides, swaps, the 值班表.

Table-driven: each duty rule with its source, each refusal naming its row and column (or field)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from playbooks.duty.config import DUTY_FILE, load_duty
from playbooks.duty.roster import on_duty, rotation_shifts, shifts
from playbooks.duty.rules import CHECKS, check
from playbooks.duty.table import TableRefused, read_table
from playbooks.plan import PlanError, load_plan
from topics.duty import Override, Person, Post, Roster, Rotation, Swap

SH = ZoneInfo("Asia/Shanghai")
OFFICE = "district_emergency_office"  # 区应急办: stands 24-hour duty (duty.yaml)
OTHER = "district_culture_tourism_bureau"  # 区文化和旅游局: not configured as 24-hour
START = datetime(2026, 1, 20, 8, 30, tzinfo=SH)  # a shift change, 12 days before a month boundary


def at(day: int, hour: int = 12, minute: int = 0, month: int = 1) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


def person(pid: str, *, post: str = "officer", leader: bool = False, employment: str = "regular",
           unit: str = OFFICE, mobile: str | None = None) -> Person:
    return Person(id=pid, name=NAMES[pid], unit_id=unit, post=post, is_leader=leader, employment=employment,
                  contacts={"mobile": mobile} if mobile else {})


NAMES = {"zhang": "张伟", "li": "李娜", "wang": "王强", "zhao": "赵敏", "boss1": "刘局长", "boss2": "陈副局长",
         "chief1": "孙主任", "temp": "周临时", "lent": "吴借调", "clerk": "郑科员", "ou": "欧阳主任"}
PEOPLE = [
    person("zhang", mobile="13800000001"), person("li", mobile="13800000002"), person("wang"), person("zhao"),
    person("boss1", post="leader", leader=True), person("boss2", post="leader", leader=True),
    person("chief1", post="chief", leader=True), person("ou", post="chief", unit=OTHER),
    person("temp", employment="informal"), person("lent", employment="seconded"), person("clerk", post="leader"),
]


def rotation(rid: str, post: str, people: list[str], unit: str = OFFICE, rrule: str = "FREQ=DAILY", **kw) -> Rotation:
    return Rotation(id=rid, unit_id=unit, post=post, rrule=rrule, dtstart=kw.pop("dtstart", START), people=people, **kw)


def good_roster(**extra) -> Roster:
    """区应急办 around the clock: 值班员 in turn, two leaders taking a week each, one 值班主任."""
    rotations = [rotation("officers", "officer", ["zhang", "li", "wang"]),
                 rotation("leaders", "leader", ["boss1", "boss2"], rrule="FREQ=WEEKLY", duration=timedelta(days=7)),
                 rotation("chiefs", "chief", ["chief1"])]
    return Roster(people=PEOPLE, rotations=[*rotations, *extra.pop("rotations", [])], **extra)


@pytest.fixture(scope="module")
def plan():
    return load_plan()


@pytest.fixture(scope="module")
def duty(plan):
    return plan.duty


# --- duty.yaml: every rule with its source, our figures marked ---------------------------------------

RULES = [
    # (rule id, words of its source, ours?)
    ("leader_on_watch", "保证每日有主管领导在岗带班", False),
    ("no_informal", "非正式人员顶岗值班", False),
    ("seconded_not_alone", "借调人员独立值班", False),
    ("no_gap", "24小时值班", False),
    ("one_place_at_a_time", "issue 18 item 3", True),
]


@pytest.mark.parametrize(("rule_id", "source_words", "ours"), RULES, ids=[r[0] for r in RULES])
def test_each_rule_names_its_source(duty, rule_id, source_words, ours):
    rule = duty.rule(rule_id)
    assert source_words in rule.source and rule.our_choice is ours
    assert rule_id in CHECKS


def test_every_check_is_a_rule_of_the_file(duty):
    assert sorted(r.id for r in duty.rules) == sorted(CHECKS)


def test_our_figures_are_marked(duty):
    assert duty.shift_change.value.strftime("%H:%M") == "08:30" and duty.shift_change.our_choice
    assert duty.gap_horizon_days.value == 30 and duty.gap_horizon_days.our_choice
    assert duty.twenty_four_hour_units.value == [OFFICE]
    assert [(s.unit, s.post) for s in duty.fallback_chain.value] == [
        ("$unit", Post.officer), ("$unit", Post.chief), ("$unit", Post.leader), (OFFICE, Post.chief)]


def test_a_duty_yaml_naming_an_unknown_unit_fails_the_plan_load(tmp_path):
    for p in DUTY_FILE.parent.glob("*.yaml"):
        (tmp_path / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    data = yaml.safe_load(DUTY_FILE.read_text(encoding="utf-8"))
    data["twenty_four_hour_units"]["value"].append("no_such_unit")
    (tmp_path / "duty.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PlanError, match="duty.yaml: twenty_four_hour_units: unknown unit 'no_such_unit'"):
        load_plan(tmp_path)
    assert load_duty().rules  # the shipped file, read on its own


# --- rotations, overrides, swaps, fallback: who is on duty ----------------------------------------

def test_a_rotation_crosses_the_month_boundary_in_turn():
    got = [(s.start, s.person_id) for s in rotation_shifts(rotation("o", "officer", ["zhang", "li", "wang"]),
                                                              at(30, 0), at(2, 0, month=2))]
    # 20 Jan is occurrence 0 (zhang); 29 Jan is occurrence 9 (zhang); 1 Feb is 12 (zhang)
    assert got == [(at(29, 8, 30), "zhang"), (at(30, 8, 30), "li"), (at(31, 8, 30), "wang"),
                   (at(1, 8, 30, month=2), "zhang")]


ON_DUTY = [
    # (case, roster, post, at, person, source)
    ("before the 08:30 change: yesterday's 值班员", good_roster(), Post.officer, at(21, 8, 29), "zhang", "rotation"),
    ("at 08:30 the next one takes over", good_roster(), Post.officer, at(21, 8, 30), "li", "rotation"),
    ("a weekly 带班领导", good_roster(), Post.leader, at(28, 9), "boss2", "rotation"),
    ("an override wins inside its interval",
     good_roster(overrides=[Override(id="ov1", unit_id=OFFICE, post="officer", person_id="zhao", start=at(21, 12),
                                     end=at(21, 18), approved_by="boss1", reason="病假")]),
     Post.officer, at(21, 13), "zhao", "override"),
    ("and not outside it",
     good_roster(overrides=[Override(id="ov1", unit_id=OFFICE, post="officer", person_id="zhao", start=at(21, 12),
                                     end=at(21, 18), approved_by="boss1")]),
     Post.officer, at(21, 18, 1), "li", "rotation"),
    ("a swap gives the shift to another",
     good_roster(swaps=[Swap(id="sw1", unit_id=OFFICE, post="officer", shift_start=at(22, 8, 30), from_person="wang",
                             to_person="zhao", approved_by="chief1")]),
     Post.officer, at(23, 3), "zhao", "swap"),
    ("no 值班员 on the rotation: the 值班主任 answers", Roster(people=PEOPLE, rotations=[rotation("c", "chief", ["chief1"])]),
     Post.officer, at(21, 3), "chief1", "fallback"),
    ("nobody at the unit: 区应急办's 值班主任",
     Roster(people=PEOPLE, rotations=[rotation("c", "chief", ["chief1"])]), None, at(21, 3), "chief1", "fallback"),
    ("nobody anywhere", Roster(people=PEOPLE), Post.officer, at(21, 3), None, "nobody"),
]


@pytest.mark.parametrize(("case", "roster", "post", "when", "who", "source"), ON_DUTY, ids=[c[0] for c in ON_DUTY])
def test_on_duty(duty, case, roster, post, when, who, source):
    unit = OTHER if post is None else OFFICE  # None: ask 区文化和旅游局's 值班员, which has no roster
    answer = on_duty(roster, duty, unit, post or Post.officer, when)
    assert (answer.person.id if answer.person else None, answer.source) == (who, source)
    assert answer.reasons and (source != "fallback" or "nobody on duty" in answer.reasons[0])


def test_an_override_cuts_the_rotation_shift_in_two():
    roster = good_roster(overrides=[Override(id="ov1", unit_id=OFFICE, post="officer", person_id="zhao",
                                             start=at(21, 12), end=at(21, 18), approved_by="boss1")])
    got = [(s.start, s.end, s.person_id, s.source) for s in shifts(roster, at(21, 9), at(21, 20))
           if s.post == Post.officer]
    assert got == [(at(21, 8, 30), at(21, 12), "li", "rotation"), (at(21, 12), at(21, 18), "zhao", "override"),
                   (at(21, 18), at(22, 8, 30), "li", "rotation")]


def test_fallback_says_which_posts_were_empty(duty):
    answer = on_duty(Roster(people=PEOPLE, rotations=[rotation("c", "chief", ["chief1"])]), duty, OTHER, Post.officer, at(21))
    assert [r.split(":")[0] for r in answer.reasons] == [
        f"{OTHER} 值班员", f"{OTHER} 值班主任", f"{OTHER} 带班领导", f"{OFFICE} 值班主任"]


# --- the rules on a roster ------------------------------------------------------------------------

def test_a_good_roster_keeps_every_rule(plan, duty):
    assert check(good_roster(), duty, plan.units, at(20, 8, 30)) == []


RULE_BREAKS = [
    # (case, roster, rule broken, where (field), words of the message, every rule the roster breaks)
    ("a 非正式 person on duty", good_roster(rotations=[rotation("x", "officer", ["temp"], unit=OTHER)]),
     "no_informal", "rotations[x].people", "非正式", {"no_informal"}),
    ("a 借调 person alone on a post", good_roster(rotations=[rotation("x", "officer", ["lent"], unit=OTHER)]),
     "seconded_not_alone", "rotations[x].people", "借调 and alone", {"seconded_not_alone"}),
    # the non-leader's shifts are no 带班 either: each 值班员 shift is also without one
    ("a non-leader as 带班领导", Roster(people=PEOPLE, rotations=[rotation("officers", "officer", ["zhang", "li"]),
                                                              rotation("leaders", "leader", ["clerk"])]),
     "leader_on_watch", "rotations[leaders].people", "not a leader", {"leader_on_watch"}),
    ("no 带班领导 at all", Roster(people=PEOPLE, rotations=[rotation("officers", "officer", ["zhang", "li"])]),
     "leader_on_watch", "rotations[officers].people", "no 带班领导", {"leader_on_watch", "no_gap"}),
    ("a gap: the rotation ends", good_roster(rotations=[rotation("x", "officer", ["ou"], unit=OTHER, rrule="FREQ=DAILY;COUNT=5")]),
     "no_gap", "rotations[x].people", "nobody on 值班员 2026-01-25 08:30–2026-02-19 08:30", {"no_gap"}),
    ("two places at once", good_roster(rotations=[rotation("x", "officer", ["zhang"], unit=OTHER, dtstart=START - timedelta(hours=23))]),
     "one_place_at_a_time", "rotations[x].people", "is on", {"one_place_at_a_time"}),
    ("a swap of no shift", good_roster(swaps=[Swap(id="sw1", unit_id=OFFICE, post="officer", shift_start=at(22, 9),
                                                  from_person="wang", to_person="zhao", approved_by="chief1")]),
     "reference", "swaps[sw1].shift_start", "no 值班员 shift of wang", {"reference"}),
    ("an override by someone unknown",
     good_roster(overrides=[Override(id="ov1", unit_id=OFFICE, post="officer", person_id="zhao", start=at(21, 12),
                                     end=at(21, 18), approved_by="nobody")]),
     "reference", "overrides[ov1].approved_by", "unknown person", {"reference"}),
]


@pytest.mark.parametrize(("case", "roster", "rule", "field", "words", "broken"), RULE_BREAKS, ids=[c[0] for c in RULE_BREAKS])
def test_each_rule_break_is_a_problem_naming_its_field(plan, duty, case, roster, rule, field, words, broken):
    problems = check(roster, duty, plan.units, at(20, 8, 30))
    mine = [p for p in problems if p.rule == rule and p.field == field]
    assert mine and words in mine[0].message, [str(p) for p in problems]
    assert {p.rule for p in problems} == broken


def test_a_借调_person_beside_a_正式_one_is_fine(plan, duty):
    roster = good_roster(rotations=[rotation("x", "officer", ["lent"], unit=OTHER),
                                    rotation("y", "officer", ["ou"], unit=OTHER)])
    assert check(roster, duty, plan.units, at(20, 8, 30)) == []


def test_a_bad_mobile_is_refused_by_the_directory():
    with pytest.raises(ValidationError, match="contacts.mobile"):
        person("zhang", mobile="1380000000")  # ten digits


# --- the 值班表 -------------------------------------------------------------------------------------

HEADER = ["日期", "班次", "带班领导", "值班主任", "值班员", "电话"]


def month(*changes: tuple[int, dict]) -> list[list[object]]:
    """A 30-day 值班表 of 区应急办 from 20 Jan, every row good; changes: (row number, {column: cell})."""
    rows: list[list[object]] = [HEADER]
    officers, phones = ["张伟", "李娜", "王强"], ["13800000001", "13800000002", ""]
    for k in range(30):
        day = (START + timedelta(days=k)).date()
        rows.append([day.isoformat(), "", "刘局长" if k < 15 else "陈副局长", "孙主任", officers[k % 3], phones[k % 3]])
    for row, cells in changes:
        for column, cell in cells.items():
            rows[row - 1][HEADER.index(column)] = cell
    return rows


def read(rows, plan, unit_id=OFFICE, now=START):
    return read_table(rows, unit_id=unit_id, base=Roster(people=PEOPLE), config=plan.duty,
                      units={u.id: u.name for u in plan.units.values()}, now=now)


def test_a_good_month_is_read_at_the_08_30_change_and_answers(plan):
    roster = read(month(), plan)
    assert len(roster.shifts) == 90
    first = roster.shifts[0]
    assert (first.start, first.end, first.row, first.column) == (START, START + timedelta(days=1), 2, "带班领导")
    answer = on_duty(roster, plan.duty, OFFICE, Post.officer, at(1, 8, 29, month=2))  # row 13: 31 Jan's shift
    assert (answer.person.id, answer.source, answer.shift.row) == ("wang", "table", 13)
    assert on_duty(roster, plan.duty, OFFICE, Post.officer, at(1, 8, 30, month=2)).person.id == "zhang"


SHIFT_CELLS = [
    # (班次, start, end) of row 2 (20 Jan), the next row starting at its 08:30 as usual
    ("", START, START + timedelta(days=1)),  # empty: duty.yaml's 08:30 change
    ("08:30-次日08:30", START, START + timedelta(days=1)),
    ("08:30-08:30", START, START + timedelta(days=1)),  # an end not after the start: the next day
    ("08:30至次日08:30", START, START + timedelta(days=1)),
]


@pytest.mark.parametrize(("cell", "start", "end"), SHIFT_CELLS, ids=[c[0] or "empty" for c in SHIFT_CELLS])
def test_a_班次_cell_sets_the_hours(plan, cell, start, end):
    first = read(month((2, {"班次": cell})), plan).shifts[0]
    assert (first.start, first.end) == (start, end)


REFUSED = [
    # (case, rows, [(row, column, words)])
    ("a day with no 带班领导", month((5, {"带班领导": ""})), [(5, "带班领导", "no 带班领导")]),
    ("a non-leader 带班", month((6, {"带班领导": "郑科员"})), [(6, "带班领导", "not a leader")]),
    ("a 非正式 person", month((7, {"值班员": "周临时", "电话": ""})), [(7, "值班员", "非正式")]),
    ("a 借调 person alone", month((8, {"值班员": "吴借调", "电话": ""})), [(8, "值班员", "借调 and alone")]),
    ("a bad mobile number", month((9, {"电话": "1380000000"})), [(9, "电话", "not a mobile")]),
    ("a mobile not the directory's", month((2, {"电话": "13900000000"})), [(2, "电话", "differs from the directory")]),
    ("someone not in the directory", month((10, {"值班员": "钱多多", "电话": ""})), [(10, "值班员", "not in the directory")]),
    ("a bad date and a bad 班次", month((11, {"日期": "2026-02-30"}), (12, {"班次": "8点半"})),
     [(11, "日期", "not a date"), (12, "班次", "not a shift")]),
    ("overlapping shifts", month((3, {"班次": "08:30-次日12:00"})), [(4, "带班领导", "is on"), (4, "值班主任", "is on")]),
    ("no 值班员", month((14, {"值班员": "", "电话": ""})), [(14, "值班员", "no 值班员")]),
]


@pytest.mark.parametrize(("case", "rows", "expected"), REFUSED, ids=[c[0] for c in REFUSED])
def test_a_bad_table_is_refused_whole_naming_row_and_column(plan, case, rows, expected):
    with pytest.raises(TableRefused) as refused:
        read(rows, plan)
    got = refused.value.problems
    for row, column, words in expected:
        assert any(p.row == row and p.column == column and words in p.message for p in got), [str(p) for p in got]


def test_every_bad_row_is_listed_not_only_the_first(plan):
    rows = month((4, {"电话": "12345"}), (9, {"值班员": "钱多多", "电话": ""}), (20, {"日期": "明天"}))
    with pytest.raises(TableRefused) as refused:
        read(rows, plan)
    assert [(p.row, p.column) for p in refused.value.problems] == [(4, "电话"), (9, "值班员"), (20, "日期")]
    assert "row 4, column 电话" in str(refused.value)


def test_an_unknown_unit_is_refused(plan):
    with pytest.raises(TableRefused) as refused:
        read(month(), plan, unit_id="no_such_unit")
    assert [(p.field, p.message) for p in refused.value.problems] == [("unit_id", "unknown unit 'no_such_unit'")]
    rows = [["单位", *HEADER], *[["区应急办", *r] for r in month()[1:]]]
    rows[5][0] = "区火星局"
    with pytest.raises(TableRefused) as refused:
        read(rows, plan, unit_id=None)
    assert [(p.row, p.column) for p in refused.value.problems] == [(6, "单位")]


def test_a_misspelt_or_missing_column_is_refused(plan):
    rows = month()
    rows[0] = ["日期", "班次", "带班领导", "值班主任", "值班人", "电话"]
    with pytest.raises(TableRefused) as refused:
        read(rows, plan)
    assert sorted((p.row, p.column) for p in refused.value.problems) == [(1, "值班人"), (1, "值班员")]


def test_a_short_table_leaves_a_gap_in_the_30_days(plan):
    with pytest.raises(TableRefused) as refused:
        read(month()[:21], plan)  # 20 days
    assert {p.rule for p in refused.value.problems} == {"no_gap"}
    assert {(p.row, p.column) for p in refused.value.problems} == {(21, "值班员"), (21, "值班主任"), (21, "带班领导")}


# --- one unit's change, checked for that unit -----------------------------------------------------

# 区文化和旅游局's rotation stops after 5 days (a gap of its own); 区应急办's roster is good.
OTHER_GAP = rotation("x", "officer", ["ou"], unit=OTHER, rrule="FREQ=DAILY;COUNT=5")
ONLY_UNITS = [
    # (case, roster, only_units, (rule, the units it is about) of each problem kept)
    ("every unit: the other's gap is there", good_roster(rotations=[OTHER_GAP]), None,
     {("no_gap", (OTHER,))}),
    ("区应急办's change is not refused for the other's gap", good_roster(rotations=[OTHER_GAP]), {OFFICE}, set()),
    ("the other unit's own check still sees it", good_roster(rotations=[OTHER_GAP]), {OTHER}, {("no_gap", (OTHER,))}),
    ("two places at once counts for one unit involved",
     good_roster(rotations=[rotation("x", "officer", ["zhang"], unit=OTHER, dtstart=START - timedelta(hours=23))]),
     {OTHER}, {("one_place_at_a_time", tuple(sorted((OFFICE, OTHER))))}),
    ("and for the other",
     good_roster(rotations=[rotation("x", "officer", ["zhang"], unit=OTHER, dtstart=START - timedelta(hours=23))]),
     {OFFICE}, {("one_place_at_a_time", tuple(sorted((OFFICE, OTHER))))}),
    ("an unknown person is about the unit whose entry names them",
     good_roster(rotations=[OTHER_GAP.model_copy(update={"people": ["ghost"], "rrule": "FREQ=DAILY"})]), {OFFICE}, set()),
    ("the same, asked for that unit",
     good_roster(rotations=[OTHER_GAP.model_copy(update={"people": ["ghost"], "rrule": "FREQ=DAILY"})]), {OTHER},
     {("reference", (OTHER,))}),
]


@pytest.mark.parametrize(("case", "roster", "only", "kept"), ONLY_UNITS, ids=[c[0] for c in ONLY_UNITS])
def test_only_units_keeps_the_problems_about_them(plan, duty, case, roster, only, kept):
    problems = check(roster, duty, plan.units, at(20, 8, 30), only_units=only)
    got = {(p.rule, tuple(sorted({p.unit_id, p.other_unit_id} - {None}))) for p in problems}
    assert got == kept, [str(p) for p in problems]


def test_every_rule_problem_names_its_unit(plan, duty):
    broken = [roster for _, roster, *_ in RULE_BREAKS]
    problems = [p for roster in broken for p in check(roster, duty, plan.units, at(20, 8, 30))]
    assert problems and all(p.unit_id in plan.units for p in problems), [str(p) for p in problems if not p.unit_id]


def test_a_table_for_one_unit_is_not_refused_for_another_units_gap(plan):
    base = Roster(people=PEOPLE, rotations=[OTHER_GAP])
    units = {u.id: u.name for u in plan.units.values()}
    kw = dict(unit_id=OFFICE, base=base, config=plan.duty, units=units, now=START)
    with pytest.raises(TableRefused) as refused:
        read_table(month(), **kw)
    assert {(p.rule, p.unit_id) for p in refused.value.problems} == {("no_gap", OTHER)}
    assert len(read_table(month(), **kw, only_units={OFFICE}).shifts) == 90
    with pytest.raises(TableRefused):  # its own problems are still its own
        read_table(month((5, {"带班领导": ""})), **kw, only_units={OFFICE})


def test_an_indexed_answer_is_the_answer_expanded_from_the_roster_at_every_minute_across_changes():
    """address.DutyIndex reuses an answer until the next shift start or end: asked every 23 minutes for
    three days (a step prime to the hour and the shifts, so the minutes drift; each side of every change
    is asked besides) (across 08:30 changes, an override's ends and a swap), each role of a unit with a
    roster and of one without, it answers as on_duty does from the roster alone."""
    from playbooks.duty.address import DutyIndex, on_duty_ref

    config = load_duty()
    swap = Swap(id="s1", unit_id=OFFICE, post="officer", shift_start=at(22, 8, 30), from_person="zhang",
                to_person="wang", approved_by="boss1")
    override = Override(id="o1", unit_id=OFFICE, post="chief", person_id="boss2", start=at(21, 13),
                        end=at(21, 17, 45), approved_by="boss1")
    roster = good_roster(swaps=[swap], overrides=[override])
    index = DutyIndex(roster, at(20, 0), at(24, 0))
    times = [at(20, 12) + timedelta(minutes=23 * k) for k in range(3 * 24 * 60 // 23)]
    edges = [at(d, 8, 30) for d in (21, 22, 23)] + [at(21, 13), at(21, 17, 45)]
    times += edges + [e - timedelta(microseconds=1) for e in edges]  # each side of every change
    for t in sorted(times):
        for unit in (OFFICE, OTHER):
            for role in (None, "值班员", "值班领导", "带班领导", "分管区领导"):
                fast = on_duty_ref(roster, config, unit, role, t, index)
                slow = on_duty_ref(roster, config, unit, role, t)
                assert fast == slow, (unit, role, t)


@pytest.mark.parametrize(("rrule", "dtstart", "field"), [
    ("FREQ=MINUTELY;INTERVAL=30", START, "rrule"),
    ("FREQ=SECONDLY", START, "rrule"),
    ("FREQ=DAILY", datetime(1900, 1, 1, 8, 30, tzinfo=SH), "dtstart"),
], ids=["minutely", "secondly", "1900"])
def test_a_rotation_too_costly_to_walk_is_refused_naming_the_field(rrule, dtstart, field):
    with pytest.raises(ValidationError, match=field):
        rotation("r", "officer", ["zhang"], rrule=rrule, dtstart=dtstart)


def test_a_table_date_outside_2000_2099_is_refused_naming_its_cell(plan):
    rows = [["日期", "带班领导", "值班员"], ["9999-12-31", "刘局长", "张伟"]]
    with pytest.raises(TableRefused) as exc:
        read_table(rows, unit_id=OFFICE, base=good_roster(), config=load_duty(), units=plan.unit_names, now=START)
    assert [(p.row, p.column) for p in exc.value.problems] == [(2, "日期")]
