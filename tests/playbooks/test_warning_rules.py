"""Warnings (预警, plan 3.2), the pure rules: one row per rule with its section (issue 20 item 2)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from playbooks.plan import load_plan
from playbooks.warning.rules import load_warnings, step
from topics.warnings import WarningCommand, WarningContent, WarningLevel, WarningStatus

PLAN = load_plan()
CONFIG = load_warnings(plan=PLAN)
T0 = datetime(2026, 7, 20, 6, 0, tzinfo=timezone.utc)
BASE = ["collect", "analyse", "publish_forecast", "advise_public"]
MET = "district_meteorological_bureau"
OFFICE = "district_emergency_office"
STREETS = [u.id for u in PLAN.units.values() if u.kind == "street"]


def content(level=WarningLevel.BLUE, issuer=MET, category="rainstorm", measures=None, **over) -> WarningContent:
    body = dict(category=category, level=level, start=T0, area=STREETS[:2], hazards="预计未来6小时降雨量将达50毫米以上",
                measures=measures if measures is not None else BASE, issuer=issuer)
    body.update(over)
    return WarningContent(**body)


def cmd(kind, unit, n=1, **over) -> WarningCommand:
    body = dict(id=f"c{n}-{kind}", warning_id="w-1", kind=kind, by="user", unit=unit, at=T0 + timedelta(minutes=n))
    body.update(over)
    return WarningCommand(**body)


def run(*commands):
    state, results = None, []
    for c in commands:
        r = step(state, c, CONFIG, PLAN)
        results.append(r)
        state = r.state
    return state, results


HIGH = [*BASE, "standby", "evacuate"]

# (rule, commands, expected refusal substring of the last command (None: accepted), expected status)
ROWS = [
    ("3.2.1: a street issues no warning",
     [cmd("draft", STREETS[0], content=content(issuer=STREETS[0]))], "street or township", None),
    ("3.2.3(1): 蓝 issued by the category's competent department",
     [cmd("draft", MET, content=content()), cmd("issue", MET, 2)], None, WarningStatus.ISSUED),
    ("3.2.3(1): 黄 issued by the category's special HQ",
     [cmd("draft", "hq_meteorological_disaster", content=content(WarningLevel.YELLOW, "hq_meteorological_disaster")),
      cmd("issue", "hq_meteorological_disaster", 2)], None, WarningStatus.ISSUED),
    ("3.2.3(1): 黄 not by another category's department",
     [cmd("draft", "district_water_bureau", content=content(WarningLevel.YELLOW, "district_water_bureau"))],
     "not the HQ or department of 暴雨", None),
    ("3.2.3(1): 红 not issued without its approvals",
     [cmd("draft", OFFICE, content=content(WarningLevel.RED, OFFICE, measures=HIGH)), cmd("issue", OFFICE, 2)],
     "区领导批准、市应急办批准", WarningStatus.DRAFT),
    ("3.2.3(1): 橙 not issued after one approval",
     [cmd("draft", OFFICE, content=content(WarningLevel.ORANGE, OFFICE, measures=HIGH)),
      cmd("approve", "district_government", 2, approval="district_leader", approver="分管副区长"),
      cmd("issue", OFFICE, 3)], "市应急办批准", WarningStatus.DRAFT),
    ("3.2.3(1): 市应急办 approves after the district leaders",
     [cmd("draft", OFFICE, content=content(WarningLevel.ORANGE, OFFICE, measures=HIGH)),
      cmd("approve", "city_emergency_office", 2, approval="city_office", approver="市应急办值班")],
     "follows ['district_leader']", WarningStatus.DRAFT),
    ("3.2.3(1): an approval names its approver",
     [cmd("draft", OFFICE, content=content(WarningLevel.ORANGE, OFFICE, measures=HIGH)),
      cmd("approve", "district_government", 2, approval="district_leader")], "approver", WarningStatus.DRAFT),
    ("3.2.3(1): 橙 issued by 区应急办 after both approvals",
     [cmd("draft", OFFICE, content=content(WarningLevel.ORANGE, OFFICE, measures=HIGH)),
      cmd("approve", "district_government", 2, approval="district_leader", approver="分管副区长"),
      cmd("approve", "city_emergency_office", 3, approval="city_office", approver="市应急办值班"),
      cmd("issue", OFFICE, 4)], None, WarningStatus.ISSUED),
    ("3.2.3(1): 橙 is 区应急办's to issue, not a department's",
     [cmd("draft", MET, content=content(WarningLevel.ORANGE, MET, measures=HIGH))], "区应急办", None),
    ("3.2.4: a warning missing its items is refused, one line per item",
     [cmd("draft", MET, content=WarningContent(category="rainstorm", level=WarningLevel.BLUE, issuer=MET))],
     "content.start: 缺少起始时间", None),
    ("3.2.5(2): 红 takes one or more of the further measures",
     [cmd("draft", OFFICE, content=content(WarningLevel.RED, OFFICE, measures=BASE))], "3.2.5(2)", None),
    ("3.2.5(1): the four measures at every level",
     [cmd("draft", MET, content=content(measures=["collect"]))], "3.2.5(1)", None),
    ("3.2.6: 区应急办 adjusts, with the 区应急委 leader's approval",
     [cmd("draft", MET, content=content()), cmd("issue", MET, 2),
      cmd("adjust", OFFICE, 3, content=WarningContent(level=WarningLevel.YELLOW), approval="committee_leader",
          approver="区应急委副主任")], None, WarningStatus.ISSUED),
    ("3.2.6: nobody else adjusts",
     [cmd("draft", MET, content=content()), cmd("issue", MET, 2),
      cmd("adjust", MET, 3, content=WarningContent(level=WarningLevel.YELLOW), approval="committee_leader",
          approver="x")], "区应急办 adjusts", WarningStatus.ISSUED),
    ("3.2.6: an adjustment without its approval is refused",
     [cmd("draft", MET, content=content()), cmd("issue", MET, 2),
      cmd("adjust", OFFICE, 3, content=WarningContent(level=WarningLevel.YELLOW))], "区应急委领导批准", WarningStatus.ISSUED),
    ("3.2.7: the issuer lifts at once, no approval",
     [cmd("draft", MET, content=content()), cmd("issue", MET, 2), cmd("lift", MET, 3, reason="降雨结束")],
     None, WarningStatus.LIFTED),
    ("3.2.7: another unit does not lift it",
     [cmd("draft", MET, content=content()), cmd("issue", MET, 2), cmd("lift", "district_water_bureau", 3)],
     "the issuer", WarningStatus.ISSUED),
    ("3.2.7: a lift of an unknown warning is refused", [cmd("lift", MET)], "no warning", None),
]


@pytest.mark.parametrize(("rule", "commands", "refusal", "status"), ROWS, ids=[r[0] for r in ROWS])
def test_rule(rule, commands, refusal, status):
    state, results = run(*commands)
    for r in results[:-1]:
        assert not r.refused, r.refused
    last = results[-1]
    if refusal is None:
        assert not last.refused, last.refused
        assert last.events and all(e.reasons for e in last.events)
    else:
        assert any(refusal in line for line in last.refused), last.refused
        assert not last.events
    assert (state.status if state else None) == status


def test_a_warning_missing_items_names_each_one():
    _, [r] = run(cmd("draft", MET, content=WarningContent(category="rainstorm", level=WarningLevel.BLUE, issuer=MET)))
    fields = sorted(line.split(":")[0] for line in r.refused)
    assert fields == ["content.area", "content.hazards", "content.measures", "content.start"]


def test_blue_measures_fall_to_the_hq_department_and_the_areas_streets_filed_with_both_offices():
    _, results = run(cmd("draft", MET, content=content()), cmd("issue", MET, 2))
    issued = results[-1].events[0]
    measure_units = {t.unit_id for t in issued.tasks if t.kind == "measure"}
    assert measure_units == {"hq_meteorological_disaster", MET, *STREETS[:2]}
    assert {t.unit_id for t in issued.tasks if t.kind == "filing"} == {OFFICE, "city_emergency_office"}
    assert {t.what for t in issued.tasks if t.kind == "publication"} == {c.id for c in CONFIG.channels}


def test_orange_measures_fall_to_every_street_with_the_chosen_further_ones():
    _, results = run(cmd("draft", OFFICE, content=content(WarningLevel.ORANGE, OFFICE, measures=HIGH)),
                     cmd("approve", "district_government", 2, approval="district_leader", approver="分管副区长"),
                     cmd("approve", "city_emergency_office", 3, approval="city_office", approver="市应急办值班"),
                     cmd("issue", OFFICE, 4))
    issued = results[-1].events[0]
    per_street = {s: {t.what for t in issued.tasks if t.unit_id == s and t.kind == "measure"} for s in STREETS}
    assert len(per_street) == 22 and all(v == {*BASE, "standby", "evacuate"} for v in per_street.values())
    assert issued.approvals == ["district_leader", "city_office"]


def test_a_lift_tells_everyone_told_of_the_issue():
    state, results = run(cmd("draft", MET, content=content()), cmd("issue", MET, 2), cmd("lift", MET, 3))
    issued, lifted = results[1].events[0], results[2].events[0]
    assert set(issued.told) <= set(lifted.told)
    assert not [t for t in lifted.tasks if t.kind == "measure"]
    assert {t.what for t in lifted.tasks if t.kind == "publication"} == {c.id for c in CONFIG.channels}


def test_a_warning_opens_no_incident_and_sets_no_response_level():
    _, results = run(cmd("draft", MET, content=content()), cmd("issue", MET, 2))
    dumped = results[-1].events[0].model_dump()
    assert "incident_id" not in dumped and "response_level" not in dumped


def test_the_state_folded_from_the_events_takes_the_next_command_as_the_live_one_does():
    from playbooks.warning.rules import fold

    commands = [cmd("draft", OFFICE, content=content(WarningLevel.ORANGE, OFFICE, measures=HIGH)),
                cmd("approve", "district_government", 2, approval="district_leader", approver="分管副区长"),
                cmd("approve", "city_emergency_office", 3, approval="city_office", approver="市应急办值班"),
                cmd("issue", OFFICE, 4)]
    live, results = run(*commands)
    events = [e for r in results for e in r.events]
    folded = fold(events + events[:2])  # read twice: the same
    assert (folded.status, folded.content, folded.seq, folded.told) == (live.status, live.content, live.seq, live.told)
    assert folded.approvals.keys() == live.approvals.keys()
    nxt = cmd("lift", OFFICE, 5)
    assert step(folded, nxt, CONFIG, PLAN).events[0].model_dump() == step(live, nxt, CONFIG, PLAN).events[0].model_dump()


def test_a_task_is_confirmed_by_the_unit_it_falls_to_once():
    state, results = run(cmd("draft", MET, content=content()), cmd("issue", MET, 2))
    issued = results[-1].events[0]
    sms = next(t for t in issued.tasks if t.what == "sms")
    other = step(state, cmd("confirm", MET, 3, task_id=sms.id), CONFIG, PLAN)
    assert other.refused and "falls to district_emergency_office" in other.refused[0]  # 3.2.8: its runner confirms
    done = step(state, cmd("confirm", sms.unit_id, 4, task_id=sms.id), CONFIG, PLAN)
    assert not done.refused and done.events[0].kind.value == "task_done" and sms.id in done.state.done
    assert step(done.state, cmd("confirm", sms.unit_id, 5, task_id=sms.id), CONFIG, PLAN).refused  # once
    assert step(done.state, cmd("confirm", MET, 6, task_id="nope"), CONFIG, PLAN).refused[0].startswith("task_id")
    # lifted: the lifting's own publications are still confirmed
    lifted = step(done.state, cmd("lift", MET, 7), CONFIG, PLAN)
    pub = next(t for t in lifted.events[0].tasks if t.kind == "publication")
    assert not step(lifted.state, cmd("confirm", pub.unit_id, 8, task_id=pub.id), CONFIG, PLAN).refused
