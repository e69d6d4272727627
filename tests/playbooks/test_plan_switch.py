"""An open incident's next record handled under a revised plan (issue 24 item 3; 7.1.5 修订): the timeline says
so once, the obligations it already had stay as they were (their due times and their 督办 chain), and the
revision's rules apply from that record on. A revision that renames or removes what an old obligation names
does not break it. Each revision is the shipped plan's YAML with one edit, loaded by the plan's own loader."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from playbooks.lifecycle import IncidentState, check_due, handle, next_due_at
from playbooks.plan import DATA_DIR, Plan, load_plan
from tests.playbooks.test_lifecycle import M, RECEIVED, cmd, filed, kinds, opened
from topics.models import EndRecorded, FollowupFacts


def revised(tmp_path: Path, file: str, old: str, new: str, count: int = 1) -> Plan:
    data = tmp_path / "revised"
    if not data.exists():
        shutil.copytree(DATA_DIR, data)
    path = data / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= count, f"{file}: {old!r} not found"
    path.write_text(text.replace(old, new, count if count > 0 else -1), encoding="utf-8")
    return load_plan(data)


GAS_LEAD = ("name: 燃气事故\n    note: null\n    category: accident_disaster\n    category_name: 事故灾难类\n"
            "    subcategory: 公共设施和设备事故\n    lead_units: [district_urban_management_commission]")


def lead_moved(tmp_path):  # 燃气事故: 区城市管理委 → 区应急局
    return revised(tmp_path, "incident_types.yaml", GAS_LEAD,
                   GAS_LEAD.replace("district_urban_management_commission", "district_emergency_bureau"))


def chain_renamed(tmp_path):  # report_chain_fast → report_chain_quick, everywhere it is named
    return revised(tmp_path, "obligations.yaml", "report_chain_fast", "report_chain_quick", count=0)


def chain_slowed(tmp_path):  # report_chain_fast's second step 10 → 25 minutes after the due time
    return revised(tmp_path, "obligations.yaml", "- {step: 2, after_minutes: 10,", "- {step: 2, after_minutes: 25,")


def unit_renamed(tmp_path):  # 区城市管理委's id changed in every file that names it
    data = tmp_path / "renamed"
    shutil.copytree(DATA_DIR, data)
    for path in data.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("district_urban_management_commission", "district_city_administration"),
                        encoding="utf-8")
    return load_plan(data)


def switched(out) -> list:
    return [e for e in out.events if e.kind.value == "plan_switched"]


# --- rows -------------------------------------------------------------------------------------------------


def the_next_record_under_a_revision_says_so_once_and_keeps_what_was_owed(plan, tmp_path):
    new = lead_moved(tmp_path)
    st = opened(plan)
    owed = {k: ob.obligation for k, ob in st.obligations.items()}
    out = handle(st, filed(st, "phone_report", RECEIVED + 8 * M), new, RECEIVED + 8 * M)
    [note] = switched(out)
    assert note.details == {"from_version": plan.version, "to_version": new.version} and note.section == "7.1.5"
    assert kinds(out)[0] == "plan_switched"  # before what the record does under it
    assert out.state.plan_version == new.version
    assert {k: ob.obligation for k, ob in out.state.obligations.items()} == owed  # the same deadlines, unchanged
    assert out.state.decision.plan_version == plan.version  # no new decision: nothing re-decided by a filing
    again = handle(out.state, filed(out.state, "written_report", RECEIVED + 20 * M), new, RECEIVED + 20 * M)
    assert switched(again) == []


def the_same_version_says_nothing(plan):
    st = opened(plan)
    out = handle(st, filed(st, "phone_report", RECEIVED + 8 * M), plan, RECEIVED + 8 * M)
    assert switched(out) == [] and out.state.plan_version == plan.version


def a_due_check_under_a_revision_is_no_record_of_the_incident(plan, tmp_path):
    new = lead_moved(tmp_path)
    st = opened(plan)
    out = check_due(st, new, RECEIVED + 5 * M)
    assert kinds(out, "phone_report") == ["reminder"] and switched(out) == []
    assert out.state.plan_version == plan.version


def a_followup_under_a_revision_decides_with_its_rules(plan, tmp_path):
    new = lead_moved(tmp_path)
    st = opened(plan, type_="燃气事故")
    assert st.decision.lead_unit_ids == ["district_urban_management_commission"]
    t = RECEIVED + 30 * M
    out = handle(st, filed(st, "followup", t, followup=FollowupFacts(facts={"injuries": 2})), new, t)
    assert kinds(out)[0] == "plan_switched"
    [decision] = out.decisions
    assert decision.plan_version == new.version and decision.lead_unit_ids == ["district_emergency_bureau"]


def a_renamed_chain_still_chases_an_obligation_opened_under_the_old_name(plan, tmp_path):
    new = chain_renamed(tmp_path)
    assert "report_chain_fast" not in new.escalation_chains
    st = opened(plan)
    assert st.obligations["phone_report"].obligation.escalation == "report_chain_fast"
    due = st.obligations["phone_report"].obligation.due_at
    out = check_due(st, new, due + 11 * M)  # breach, step 1 at the due time, step 2 ten minutes past it
    assert kinds(out, "phone_report") == ["breach", "escalation", "escalation"]
    assert next_due_at(out.state, new) is not None  # the other obligations' times, still computed


def a_slower_chain_applies_to_new_obligations_not_to_those_already_owed(plan, tmp_path):
    new = chain_slowed(tmp_path)
    st = opened(plan)
    due = st.obligations["phone_report"].obligation.due_at
    out = check_due(st, new, due + 11 * M)
    assert [e.details["step"] for e in out.events if e.kind.value == "escalation" and e.obligation == "phone_report"] == [1, 2]
    fresh = opened(new)
    later = check_due(fresh, new, due + 11 * M)
    assert [e.details["step"] for e in later.events if e.kind.value == "escalation" and e.obligation == "phone_report"] == [1]


def a_state_from_before_chains_were_kept_follows_the_plans_chain_or_none(plan, tmp_path):
    st = opened(plan)
    raw = st.model_dump(mode="json")
    raw.pop("plan_version")
    for ob in raw["obligations"].values():
        ob.pop("chain")
    old = IncidentState.model_validate(raw)
    due = old.obligations["phone_report"].obligation.due_at
    assert kinds(check_due(old, plan, due + 11 * M), "phone_report") == ["breach", "escalation", "escalation"]
    gone = chain_renamed(tmp_path)  # its chain gone: breached, not chased, and no crash
    assert kinds(check_due(old, gone, due + 11 * M), "phone_report") == ["breach"]
    out = handle(old, filed(old, "written_report", RECEIVED + 8 * M), gone, RECEIVED + 8 * M)
    assert switched(out)[0].details["from_version"] == plan.version  # read from its decision


def a_followup_the_revision_cannot_decide_is_kept_and_counted(plan, tmp_path):
    new = revised(tmp_path, "incident_types.yaml", "name: 燃气事故", "name: 城镇燃气事故")
    st = opened(plan, type_="燃气事故")
    t = RECEIVED + 30 * M
    out = handle(st, filed(st, "followup", t, followup=FollowupFacts(facts={"injuries": 2})), new, t)
    assert kinds(out)[:3] == ["plan_switched", "report_filed", "rejected"]
    assert out.decisions == [] and out.state.decision == st.decision
    end = EndRecorded(id="end1", incident_id=st.incident_id, authority="district_committee", decided_by="区应急委",
                      ended_at=t + 60 * M, recorded_by="指挥员乙")
    ended = handle(out.state, cmd(out.state, end), new, t + 60 * M)  # the end under the revision: no crash
    assert "ended" in kinds(ended)


def a_unit_renamed_since_is_still_told_and_chased_by_its_old_id(plan, tmp_path):
    new = unit_renamed(tmp_path)
    assert "district_urban_management_commission" not in new.units
    st = opened(plan, type_="燃气事故")
    assert "district_urban_management_commission" in st.routed
    due = st.obligations["phone_report"].obligation.due_at
    breached = check_due(st, new, due + 11 * M)  # the owner ($owner) is the old id: chased under it
    assert any(n.unit_id == "district_urban_management_commission" for n in breached.notifications if n.kind == "escalation")
    t = due + 60 * M
    end = EndRecorded(id="end2", incident_id=st.incident_id, authority="district_committee", decided_by="区应急委",
                      ended_at=t, recorded_by="指挥员乙")
    ended = handle(breached.state, cmd(breached.state, end), new, t)
    told = {n.unit_id: n.unit for n in ended.notifications if n.kind == "end"}
    assert told["district_urban_management_commission"] == "district_urban_management_commission"  # named by its id


def an_obligation_the_revision_drops_is_closed_at_the_next_followup_saying_why(plan, tmp_path):
    caliber = "label: 拟定信息发布口径并报区委宣传部\n" + \
        "    section: \"4.7.1（一般突发事件：事件处置主责单位拟定信息发布口径，并及时报区委宣传部）\"\n    when: {grade_in: [一般]}"
    new = revised(tmp_path, "obligations.yaml", caliber, caliber.replace("[一般]", "[特别重大]"))  # dropped for 一般
    assert new.version != plan.version
    st = opened(plan, type_="燃气事故")
    assert st.obligations["release_caliber"].pending
    t = RECEIVED + 20 * M
    due_check = check_due(st, new, t)  # not a record of the incident: nothing closed by the revision yet
    assert not any(e.kind.value == "obligation_closed" for e in due_check.events)
    out = handle(st, filed(st, "followup", t, followup=FollowupFacts()), new, t)  # nothing new: the same grade and level
    [closed] = [e for e in out.events if e.kind.value == "obligation_closed"]
    assert closed.obligation == "release_caliber" and closed.section == "7.1.5" and new.version in closed.reason
    assert out.state.obligations["phone_report"].obligation == st.obligations["phone_report"].obligation


def an_incident_whose_type_id_a_revision_removed_still_ends(plan, tmp_path):
    data = tmp_path / "type-renamed"
    shutil.copytree(DATA_DIR, data)
    for path in data.glob("*.yaml"):  # gas_accident's id changed in every file that names it
        path.write_text(path.read_text(encoding="utf-8").replace("gas_accident", "gas_accident_v2"), encoding="utf-8")
    new = load_plan(data)
    assert "gas_accident" not in new.types
    st = opened(plan, type_="燃气事故")
    t = RECEIVED + 60 * M
    end = EndRecorded(id="end3", incident_id=st.incident_id, authority="district_committee", decided_by="区应急委",
                      ended_at=t, recorded_by="指挥员乙")
    ended = handle(st, cmd(st, end), new, t)  # crashed with KeyError before: dead-lettered, never ended
    assert ended.state.end is not None and "ended" in kinds(ended)
    [note] = [e for e in ended.events if e.kind.value == "rejected"]
    assert note.section == "7.1.5" and "gas_accident" in note.reason and "人工安排" in note.reason
    assert not [e for e in ended.events if e.kind.value == "obligation_opened"]  # nothing guessed


ROWS = [
    pytest.param(the_next_record_under_a_revision_says_so_once_and_keeps_what_was_owed,
                 id="7.1.5 the next record under a revision says so once and keeps what was owed"),
    pytest.param(the_same_version_says_nothing, id="7.1.5 the same version says nothing"),
    pytest.param(a_due_check_under_a_revision_is_no_record_of_the_incident,
                 id="7.1.5 a due check under a revision is no record of the incident"),
    pytest.param(a_followup_under_a_revision_decides_with_its_rules,
                 id="7.1.5; 2.3.6 a followup under a revision decides with its rules"),
    pytest.param(a_renamed_chain_still_chases_an_obligation_opened_under_the_old_name,
                 id="7.1.5; 5.5.2 a renamed chain still chases an obligation opened under the old name"),
    pytest.param(a_slower_chain_applies_to_new_obligations_not_to_those_already_owed,
                 id="7.1.5; 5.5.2 a slower chain applies to new obligations not to those already owed"),
    pytest.param(a_state_from_before_chains_were_kept_follows_the_plans_chain_or_none,
                 id="7.1.5 a state from before chains were kept follows the plan's chain or none"),
    pytest.param(a_unit_renamed_since_is_still_told_and_chased_by_its_old_id,
                 id="7.1.5; 4.8.2 a unit renamed since is still told and chased by its old id"),
    pytest.param(an_obligation_the_revision_drops_is_closed_at_the_next_followup_saying_why,
                 id="7.1.5 an obligation the revision drops is closed at the next followup saying why"),
    pytest.param(a_followup_the_revision_cannot_decide_is_kept_and_counted,
                 id="7.1.5 a followup the revision cannot decide is kept and counted"),
    pytest.param(an_incident_whose_type_id_a_revision_removed_still_ends,
                 id="7.1.5; 4.8.2 an incident whose type id a revision removed still ends"),
]


@pytest.mark.parametrize("row", ROWS)
def test_plan_switch(plan, tmp_path, row):
    if "tmp_path" in row.__code__.co_varnames[:row.__code__.co_argcount]:
        row(plan, tmp_path)
    else:
        row(plan)
