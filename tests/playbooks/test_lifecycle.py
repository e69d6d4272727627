"""The incident's life on a simulated clock: reminders, filings, breaches, escalation, regrade,
approval, end and the evaluation report. Each path names its plan section."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from playbooks.lifecycle import IncidentState, check_due, handle, live_summary, next_due_at, start, sweep_due_at
from tests.playbooks.conftest import make_report
from topics.models import (
    ApprovalRecorded,
    DueCheck,
    EndRecorded,
    FollowupFacts,
    IncidentCommand,
    IncidentReported,
    ReleaseApproval,
    ReportFiled,
)

RECEIVED = datetime(2026, 11, 22, 1, 20, tzinfo=timezone.utc)  # 09:20 +08:00
OCCURRED = datetime(2026, 11, 22, 1, 15, tzinfo=timezone.utc)
M = timedelta(minutes=1)
_n = 0


def opened(plan, **over) -> IncidentState:
    report = make_report(**over)
    rec = IncidentReported(id=report.report_id, incident_id=report.report_id, report=report, accepted_at=RECEIVED)
    out = start(rec, plan, RECEIVED)
    return out.state


def cmd(state: IncidentState, body) -> IncidentCommand:
    global _n
    _n += 1
    return IncidentCommand(id=f"c{_n}", incident_id=state.incident_id, body=body)


def filed(state, kind, at, **over) -> IncidentCommand:
    return cmd(state, ReportFiled(id=f"f{_n}", incident_id=state.incident_id, kind=kind, unit_id="x",
                                  filed_at=at, filed_by="值班员甲", **over))


def kinds(out, obligation=None):
    """The events' kinds; of one obligation's events only when named (4.7.1's fall due beside the reports')."""
    return [e.kind.value for e in out.events if obligation is None or e.obligation == obligation]


# What every incident reported at 一般 owes from the start: the three reports and 4.7.1's information release
OWED_AT_START = {"phone_report", "written_report", "detailed_report",
                 "publicity_briefing", "first_release", "release_caliber"}  # the default report: 一般, 三级


def start_opens_the_obligations_of_the_decision(plan):
    st = opened(plan)
    assert set(st.obligations) == OWED_AT_START
    assert next_due_at(st, plan) == RECEIVED + 5 * M  # phone report reminder, 5 minutes before


def reminder_before_the_deadline_once(plan):  # duty rules: 电话报告 10 分钟, reminded 5 before
    st = opened(plan)
    out = check_due(st, plan, RECEIVED + 5 * M)
    assert kinds(out, "phone_report") == ["reminder"]
    assert [n.kind for n in out.notifications if ".phone_report." in n.dedup_key] == ["reminder"]
    again = check_due(out.state, plan, RECEIVED + 6 * M)
    assert again.empty


def on_time_filing_meets_the_obligation(plan):
    st = opened(plan)
    out = handle(st, filed(st, "phone_report", RECEIVED + 8 * M), plan, RECEIVED + 8 * M)
    assert "obligation_met" in kinds(out)
    assert out.state.obligations["phone_report"].status == "met"
    assert kinds(check_due(out.state, plan, RECEIVED + 11 * M), "phone_report") == []


def no_filing_breach_then_escalation_steps_each_once(plan):  # 漏报
    st = opened(plan)
    out = check_due(st, plan, RECEIVED + 10 * M)
    assert "breach" in kinds(out) and "escalation" in kinds(out)
    breach = next(e for e in out.events if e.kind.value == "breach")
    assert breach.at == RECEIVED + 10 * M and breach.details["detected_late"] is False
    step1 = {(n.unit_id, n.role) for n in out.notifications if n.kind == "escalation" and ".phone_report." in n.dedup_key}
    assert step1 == {("district_urban_management_commission", "值班领导"), ("district_emergency_office", "值班主任")}
    st = out.state
    assert check_due(st, plan, RECEIVED + 15 * M).empty  # nothing repeated
    out2 = check_due(st, plan, RECEIVED + 20 * M)  # step 2, 10 minutes after the due time
    assert kinds(out2, "phone_report") == ["escalation"]
    assert {(n.unit_id, n.role) for n in out2.notifications if ".phone_report." in n.dedup_key} == {
        ("district_government", "分管区领导")}
    later = check_due(out2.state, plan, RECEIVED + 59 * M)
    assert not [e for e in later.events if e.obligation == "phone_report"]  # the chain has ended


def breach_detected_late_after_downtime_says_so_and_sends_each_step_once(plan):
    st = opened(plan)
    out = check_due(st, plan, RECEIVED + 45 * M)  # the worker was down for half an hour
    breach = next(e for e in out.events if e.kind.value == "breach" and e.obligation == "phone_report")
    assert breach.details["detected_late"] is True and breach.details["detection_lag_s"] == 35 * 60
    steps = [e.details["step"] for e in out.events if e.kind.value == "escalation" and e.obligation == "phone_report"]
    assert steps == [1, 2]
    assert not any(e.kind.value == "reminder" and e.obligation == "phone_report" for e in out.events)


def late_filing_after_breach_is_chi_bao_with_minutes(plan):  # 迟报
    st = check_due(opened(plan), plan, RECEIVED + 10 * M).state
    out = handle(st, filed(st, "phone_report", RECEIVED + 13 * M), plan, RECEIVED + 13 * M)
    late = next(e for e in out.events if e.kind.value == "obligation_late")
    assert late.details["minutes_late"] == 3.0
    assert out.state.obligations["phone_report"].status == "late"
    assert "escalation" not in kinds(check_due(out.state, plan, RECEIVED + 30 * M), "phone_report")  # filing stops the chain


def regrade_up_adds_city_report_and_public_release(plan):  # and 区政府工作规则 二十七 (public release)
    st = opened(plan)
    t = RECEIVED + 60 * M
    out = handle(st, filed(st, "followup", t, followup=FollowupFacts(facts={"deaths": 10})), plan, t)
    ks = kinds(out)
    assert "regraded" in ks and "level_adjusted" in ks
    assert out.state.decision.grade.value == "重大" and out.state.decision.response_level.value == "一级"
    assert {"city_report", "public_release"} <= set(out.state.obligations)
    assert out.state.obligations["city_report"].obligation.due_at == t + 60 * M  # counts from the follow-up
    assert out.state.obligations["public_release"].obligation.due_at == OCCURRED + timedelta(hours=24)
    units = {n.unit_id for n in out.notifications}
    assert "district_emergency_committee" in units and "city_emergency_office" not in units  # needs approval
    assert "approval_requested" in ks and out.state.approval_requested_at == t  # the wait starts here


def regrade_down_closes_what_is_no_longer_owed(plan):
    st = opened(plan, facts={"deaths": 10})
    t = RECEIVED + 30 * M
    out = handle(st, filed(st, "followup", t, followup=FollowupFacts(facts={"deaths": 1})), plan, t)
    assert out.state.decision.grade.value == "一般"
    closed = {e.obligation for e in out.events if e.kind.value == "obligation_closed"}
    assert closed == {"public_release", "city_report", "city_publicity_report"}
    assert out.state.obligations["release_caliber"].status == "open"  # 一般 now: the lead's 口径 (4.7.1)
    assert out.state.obligations["public_release"].status == "closed"
    assert "phone_report" in out.state.obligations  # none vanish


def regrade_down_then_up_owes_the_city_report_again_with_its_own_notices(plan):
    st = opened(plan, facts={"deaths": 3})  # 较大: the city report is owed
    assert st.obligations["city_report"].status == "open"
    down, up = RECEIVED + 20 * M, RECEIVED + 40 * M
    st = handle(st, filed(st, "followup", down, followup=FollowupFacts(facts={"deaths": 1})), plan, down).state
    assert st.obligations["city_report"].status == "closed"
    out = handle(st, filed(st, "followup", up, followup=FollowupFacts(facts={"deaths": 12})), plan, up)
    again = out.state.obligations["city_report"]
    assert out.state.decision.grade.value == "重大"
    assert again.status == "open" and again.opened == 2
    assert again.obligation.due_at == up + 60 * M  # counts from the filing that raised it again
    assert "city_report" in {e.obligation for e in out.events if e.kind.value == "obligation_opened"}
    missed = check_due(out.state, plan, up + 61 * M)
    assert any(e.kind.value == "breach" and e.obligation == "city_report" for e in missed.events)
    keys = [n.dedup_key for n in missed.notifications if ".city_report." in n.dedup_key]
    assert keys and all(".city_report.open2." in k for k in keys)  # not taken for the first opening's notices


def an_ended_incident_owes_nothing_again_on_a_later_followup(plan):
    st = opened(plan, facts={"deaths": 3})
    t = RECEIVED + 20 * M
    st = handle(st, filed(st, "followup", t - M, followup=FollowupFacts(facts={"deaths": 1})), plan, t - M).state
    st = handle(st, cmd(st, EndRecorded(id="end-1", incident_id=st.incident_id, authority="district_committee",
                                        decided_by="区应急委", ended_at=t, recorded_by="指挥员乙")), plan, t).state
    assert st.end is not None
    closed = {k for k, o in st.obligations.items() if o.status == "closed"}
    assert "city_report" in closed
    out = handle(st, filed(st, "followup", t + M, followup=FollowupFacts(facts={"deaths": 4})), plan, t + M)
    assert {k for k, o in out.state.obligations.items() if o.status == "closed"} >= closed
    # nothing opened again after the end (the follow-up before it had met the 续报 owed and opened the next)
    assert {k: o.opened for k, o in out.state.obligations.items()} == {k: o.opened for k, o in st.obligations.items()}


def approval_sends_the_city_report_notice_once(plan):
    st = opened(plan, facts={"deaths": 3})
    t = RECEIVED + 20 * M
    body = ApprovalRecorded(id="a1", incident_id=st.incident_id, approver="李某", approver_role="deputy_director",
                            approved_at=t, recorded_by="指挥员乙")
    out = handle(st, cmd(st, body), plan, t)
    approved = next(e for e in out.events if e.kind.value == "approved")
    assert approved.details["waited_minutes"] == 20.0
    assert [n.unit_id for n in out.notifications if n.kind == "approved_report"] == ["city_emergency_office"]
    again = handle(out.state, cmd(out.state, body), plan, t)
    assert not again.notifications


def a_city_report_filed_before_approval_does_not_count(plan):  # 报请…批准后…向市应急办报告
    st = opened(plan, facts={"deaths": 3})
    early = RECEIVED + 10 * M
    out = handle(st, filed(st, "city_report", early), plan, early)
    rejected = [e for e in out.events if e.kind.value == "rejected"]
    assert len(rejected) == 1 and rejected[0].obligation == "city_report" and rejected[0].section == "4.1.3"
    assert out.state.obligations["city_report"].status == "open"
    t = RECEIVED + 20 * M
    approval = ApprovalRecorded(id="a-city", incident_id=st.incident_id, approver="李某", approver_role="deputy_director",
                                approved_at=t, recorded_by="指挥员乙")
    st = handle(out.state, cmd(out.state, approval), plan, t).state
    out = handle(st, filed(st, "city_report", t + 5 * M), plan, t + 5 * M)
    assert "obligation_met" in kinds(out) and "rejected" not in kinds(out)
    assert out.state.obligations["city_report"].status == "met"


def a_filing_backdated_past_a_recorded_breach_is_late_not_on_time(plan):  # 迟报, rules 瞒报
    st = check_due(opened(plan), plan, RECEIVED + 25 * M).state  # phone report missed at +10, chased
    assert st.obligations["phone_report"].status == "missed"
    now = RECEIVED + 26 * M
    out = handle(st, filed(st, "phone_report", RECEIVED + 8 * M), plan, now)  # claims +8
    assert "obligation_met" not in kinds(out)
    late = next(e for e in out.events if e.kind.value == "obligation_late")
    assert late.details["backdated"] is True and late.details["minutes_late"] == 16.0  # as of when it came in
    assert out.state.obligations["phone_report"].status == "late"


def a_breach_stays_on_record_when_the_incident_ends_and_its_chase_stops(plan):
    st = check_due(opened(plan), plan, RECEIVED + 10 * M).state  # phone report missed, step 1 sent
    t = RECEIVED + 12 * M
    end = EndRecorded(id="end-m", incident_id=st.incident_id, authority="district_committee", decided_by="区应急委",
                      ended_at=t, recorded_by="指挥员乙")
    out = handle(st, cmd(st, end), plan, t)
    phone = out.state.obligations["phone_report"]
    assert phone.status == "missed" and phone.closed_reason == "事件已结束"
    closed = next(e for e in out.events if e.kind.value == "obligation_closed" and e.obligation == "phone_report")
    assert closed.details["still_missed"] is True
    assert out.state.obligations["written_report"].status == "closed"  # open ones close as before
    later = check_due(out.state, plan, RECEIVED + 60 * M)
    assert not [e for e in later.events if e.kind.value == "escalation"]  # step 2 never comes


def a_downgrade_keeps_a_missed_report_missed(plan):
    st = check_due(opened(plan, facts={"deaths": 10}), plan, RECEIVED + 61 * M).state
    assert st.obligations["city_report"].status == "missed"
    t = RECEIVED + 62 * M
    out = handle(st, filed(st, "followup", t, followup=FollowupFacts(facts={"deaths": 1})), plan, t)
    assert out.state.decision.grade.value == "一般"
    city = out.state.obligations["city_report"]
    assert city.status == "missed" and city.closed_reason  # no longer owed, its 漏报 kept, its chase over
    assert out.state.obligations["public_release"].status == "closed"  # open, no longer owed
    assert not [e for e in check_due(out.state, plan, t + 120 * M).events if e.obligation == "city_report"]


def a_followup_after_the_end_is_recorded_but_changes_nothing(plan):
    st = opened(plan)
    t = RECEIVED + 20 * M
    end = EndRecorded(id="end-f", incident_id=st.incident_id, authority="district_committee", decided_by="区应急委",
                      ended_at=t, recorded_by="指挥员乙")
    st = handle(st, cmd(st, end), plan, t).state
    out = handle(st, filed(st, "followup", t + M, followup=FollowupFacts(facts={"deaths": 5})), plan, t + M)
    assert kinds(out) == ["report_filed", "rejected"]
    assert out.state.decision.grade.value == "一般" and not out.decisions
    assert "city_report" not in out.state.obligations


def a_city_report_filed_before_its_approval_was_recorded_counts_once_it_is(plan):
    st = opened(plan, facts={"deaths": 3})  # the director approves by phone at +10; it is recorded at +20
    filed_at = RECEIVED + 15 * M
    out = handle(st, filed(st, "city_report", filed_at), plan, filed_at)
    assert "rejected" in kinds(out) and out.state.obligations["city_report"].status == "open"
    t = RECEIVED + 20 * M
    approval = ApprovalRecorded(id="a-phone", incident_id=st.incident_id, approver="李某", approver_role="director",
                                approved_at=RECEIVED + 10 * M, recorded_by="指挥员乙")
    out = handle(out.state, cmd(out.state, approval), plan, t)
    assert "approved" in kinds(out) and "obligation_met" in kinds(out)
    assert out.state.obligations["city_report"].status == "met"
    assert out.state.obligations["city_report"].filed_at == filed_at


def a_city_report_filed_before_its_approval_is_not_counted_by_it(plan):
    st = opened(plan, facts={"deaths": 3})
    out = handle(st, filed(st, "city_report", RECEIVED + 5 * M), plan, RECEIVED + 5 * M)
    approval = ApprovalRecorded(id="a-late", incident_id=st.incident_id, approver="李某", approver_role="director",
                                approved_at=RECEIVED + 10 * M, recorded_by="指挥员乙")
    out = handle(out.state, cmd(out.state, approval), plan, RECEIVED + 12 * M)
    assert "obligation_met" not in kinds(out) and out.state.obligations["city_report"].status == "open"


def the_end_is_sent_to_every_unit_that_took_part_once(plan):  # 通知参与事件处置的各相关部门
    st = opened(plan)
    routed = {n.unit_id for n in start(IncidentReported(id=st.incident_id, incident_id=st.incident_id,
                                                        report=st.report, accepted_at=RECEIVED), plan, RECEIVED).notifications}
    t = RECEIVED + 30 * M
    body = EndRecorded(id="end-n", incident_id=st.incident_id, authority="district_committee", decided_by="区应急委",
                       ended_at=t, recorded_by="指挥员乙")
    out = handle(st, cmd(st, body), plan, t)
    ends = [n for n in out.notifications if n.kind == "end"]
    assert {n.unit_id for n in ends} == routed | set(st.decision.lead_unit_ids)
    assert len(ends) == len({n.dedup_key for n in ends}) and all(n.section == "4.8.2" for n in ends)
    assert not [n for n in handle(out.state, cmd(out.state, body), plan, t).notifications if n.kind == "end"]


def approval_refused_for_general_events(plan):
    st = opened(plan)
    body = ApprovalRecorded(id="a2", incident_id=st.incident_id, approver="李某", approver_role="director",
                            approved_at=RECEIVED, recorded_by="指挥员乙")
    assert kinds(handle(st, cmd(st, body), plan, RECEIVED)) == ["rejected"]


@pytest.mark.parametrize(
    ("facts", "authority", "ok"),
    [
        ({}, "district_committee", True),
        ({}, "city", False),
        ({"deaths": 3}, "city", True),
        ({"deaths": 3}, "district_committee", False),
    ],
    ids=["4.8.2-一般-district", "4.8.2-一般-not-city", "4.8.2-较大-city", "4.8.2-较大-not-district"],
)
def test_end_authority(plan, facts, authority, ok):
    st = opened(plan, facts=facts)
    t = RECEIVED + 3 * 60 * M
    body = EndRecorded(id="e1", incident_id=st.incident_id, authority=authority, decided_by="区应急委",
                       ended_at=t, recorded_by="指挥员乙")
    out = handle(st, cmd(st, body), plan, t)
    assert ("ended" in kinds(out)) is ok
    if ok and not facts:  # 5.4.2: an ended 一般 event owes the lead unit's evaluation report
        ev = out.state.obligations["evaluation_report"]
        assert ev.status == "open" and ev.obligation.owner == "区城市管理委"
    if ok and facts:
        assert "evaluation_report" not in out.state.obligations


def test_same_command_twice_changes_nothing(plan):
    st = opened(plan)
    c = filed(st, "phone_report", RECEIVED + 2 * M)
    once = handle(st, c, plan, RECEIVED + 2 * M)
    twice = handle(once.state, c, plan, RECEIVED + 2 * M)
    assert twice.empty and twice.state == once.state


def due_check_command_acts_on_what_is_due(plan):
    st = opened(plan)
    out = handle(st, cmd(st, DueCheck(id="d1", incident_id=st.incident_id, at=RECEIVED + 10 * M)), plan,
                 RECEIVED + 10 * M)
    assert "breach" in kinds(out)


def test_state_round_trips_as_json(plan):
    st = check_due(opened(plan, facts={"deaths": 3}), plan, RECEIVED + 11 * M).state
    assert IncidentState.model_validate_json(st.model_dump_json()) == st


def a_live_incident_is_counted_with_its_level_and_open_obligations(plan):
    st = opened(plan)
    met = handle(st, filed(st, "phone_report", RECEIVED + 2 * M), plan, RECEIVED + 2 * M).state
    level = st.decision.response_level.value
    assert live_summary(st) == (level, tuple(st.obligations))
    assert set(live_summary(st)[1]) == OWED_AT_START
    assert live_summary(met) == (level, tuple(k for k in st.obligations if k != "phone_report"))
    missed = check_due(st, plan, RECEIVED + 11 * M).state  # a missed obligation is not open: it is chased
    assert "phone_report" not in live_summary(missed)[1]


@pytest.mark.parametrize("change", [{"drill": True}, {"end": "ended"}], ids=["drill", "ended-4.8.2"])
def test_a_drill_or_an_ended_incident_is_not_counted(plan, change):
    st = opened(plan)
    if change.get("end"):
        t = RECEIVED + 3 * 60 * M
        body = EndRecorded(id="e1", incident_id=st.incident_id, authority="district_committee", decided_by="区应急委",
                           ended_at=t, recorded_by="指挥员乙")
        st = handle(st, cmd(st, body), plan, t).state
        assert st.end is not None
    else:
        st = st.model_copy(update=change)
    assert live_summary(st) is None


def test_the_live_sweep_leaves_a_drill_on_its_own_clock_alone(plan):
    st = opened(plan)
    assert sweep_due_at(st, plan) == next_due_at(st, plan) == RECEIVED + 5 * M
    assert sweep_due_at(st.model_copy(update={"simulated_clock": True}), plan) is None


def test_the_longest_report_id_accepted_lives_through_routing_breach_and_escalation(plan):
    """ReportSubmission takes report ids up to 100 characters; the notices keyed on them (incident,
    unit and rule, up to 80 more characters) still fit a record id."""
    from topics.requests import ReportSubmission

    rid = "r" * 100
    ReportSubmission(report_id=rid, type="燃气事故", occurred_at=OCCURRED, received_at=RECEIVED)
    report = make_report(report_id=rid, facts={"deaths": 3}, flags={"foreign_involved": True})
    rec = IncidentReported(id=rid, incident_id=rid, report=report, accepted_at=RECEIVED)
    out = start(rec, plan, RECEIVED)
    later = check_due(out.state, plan, RECEIVED + 3 * 60 * M)  # every breach and escalation step
    keys = [n.dedup_key for n in [*out.notifications, *later.notifications]]
    assert any(n.kind == "escalation" for n in later.notifications)
    assert max(map(len, keys)) <= 120 and len(set(keys)) == len(keys)
    assert check_due(out.state, plan, RECEIVED + 3 * 60 * M).notifications == later.notifications  # stable keys


def an_undetermined_grade_settled_in_time_meets_the_grade_determination(plan):  # 4.1.3 研判定级
    st = opened(plan, type_="information_security_incident")
    assert st.decision.grade.value == "未判明" and st.obligations["grade_determination"].status == "open"
    t = RECEIVED + 40 * M
    out = handle(st, filed(st, "followup", t, followup=FollowupFacts(asserted_grade="一般", asserted_by="区委网信办")), plan, t)
    assert out.state.obligations["grade_determination"].status == "met"
    assert "obligation_met" in kinds(out, "grade_determination")
    assert out.state.obligations["release_caliber"].obligation.due_at == t + 45 * M  # 一般 now: 口径 from the follow-up


def an_undetermined_grade_left_past_its_term_is_missed_then_late(plan):  # 4.1.3; 5.5.2
    st = opened(plan, type_="information_security_incident")
    st = check_due(st, plan, RECEIVED + 61 * M).state
    assert st.obligations["grade_determination"].status == "missed"
    t = RECEIVED + 75 * M
    out = handle(st, filed(st, "followup", t, followup=FollowupFacts(asserted_grade="较大", asserted_by="区委网信办")), plan, t)
    late = next(e for e in out.events if e.kind.value == "obligation_late" and e.obligation == "grade_determination")
    assert late.details["minutes_late"] == 15.0 and out.state.obligations["grade_determination"].status == "late"


def a_followup_that_leaves_the_grade_undetermined_does_not_meet_it(plan):
    st = opened(plan, type_="information_security_incident")
    t = RECEIVED + 20 * M
    out = handle(st, filed(st, "followup", t, followup=FollowupFacts(facts={"injuries": 1})), plan, t)
    assert out.state.decision.grade.value == "未判明"
    assert out.state.obligations["grade_determination"].status == "open"


def an_approved_release_is_drafted_approved_and_published_on_the_timeline(plan):  # 4.7.1
    st = opened(plan)
    drafted, approved, published = RECEIVED + 20 * M, RECEIVED + 35 * M, RECEIVED + 40 * M
    release = ReleaseApproval(drafted_by="区城市管理委", drafted_at=drafted, approved_by="现场指挥部（总指挥）",
                              approved_at=approved)
    out = handle(st, filed(st, "first_release", published, release=release), plan, published)
    assert [(e.kind.value, e.at) for e in out.events if e.kind.value in ("release_drafted", "release_approved", "report_filed")] \
        == [("release_drafted", drafted), ("release_approved", approved), ("report_filed", published)]
    assert out.state.obligations["first_release"].status == "met"


def a_release_without_approval_is_refused_naming_the_field(plan):  # 4.7.1 未经批准不得擅自对外发布
    st = opened(plan)
    with pytest.raises(ValidationError, match="release"):
        filed(st, "first_release", RECEIVED + 30 * M)
    early = ReleaseApproval(drafted_by="x", drafted_at=RECEIVED + 30 * M, approved_by="现场指挥部", approved_at=RECEIVED + 50 * M)
    with pytest.raises(ValidationError, match="release.approved_at"):
        filed(st, "public_release", RECEIVED + 40 * M, release=early)  # published before it was approved
    with pytest.raises(ValidationError, match="only a public release"):
        filed(st, "phone_report", RECEIVED + 30 * M, release=early)


def a_written_report_lacking_items_is_met_and_marked_incomplete(plan):  # 4.1.5; not refused
    st = opened(plan)
    t = RECEIVED + 40 * M
    out = handle(st, filed(st, "written_report", t, items_missing=["trend", "measures"]), plan, t)
    assert out.state.obligations["written_report"].status == "met"
    mark = next(e for e in out.events if e.kind.value == "report_incomplete")
    assert mark.reason == "written_report缺少4.1.5要素：发展趋势、已采取的措施" and mark.section == "4.1.5"
    assert mark.details["items_missing"] == "trend,measures"
    whole = handle(out.state, filed(out.state, "detailed_report", t, items_missing=[]), plan, t)
    assert "report_incomplete" not in kinds(whole)


def a_level_1_incident_owes_a_followup_every_hour_counted_from_each(plan):  # 4.1.5 及时续报; cadence our choice
    st = opened(plan, facts={"deaths": 3})  # 较大: 一级
    assert st.decision.response_level.value == "一级"
    assert st.obligations["followup"].obligation.due_at == RECEIVED + 60 * M
    t = RECEIVED + 50 * M
    out = handle(st, filed(st, "followup", t, followup=FollowupFacts(facts={"deaths": 3, "injuries": 4})), plan, t)
    again = out.state.obligations["followup"]
    assert kinds(out, "followup") == ["obligation_met", "obligation_opened"]
    assert again.status == "open" and again.opened == 2 and again.obligation.due_at == t + 60 * M
    missed = check_due(out.state, plan, t + 61 * M)
    assert any(e.kind.value == "breach" and e.obligation == "followup" for e in missed.events)
    assert all(".followup.open2." in n.dedup_key for n in missed.notifications if ".followup." in n.dedup_key)


def a_followup_owed_at_level_2_is_due_in_two_hours_and_none_at_level_3(plan):
    assert opened(plan, facts={"injuries": 2}).obligations["followup"].obligation.due_at == RECEIVED + 120 * M
    assert "followup" not in opened(plan).obligations  # 三级: follow-ups as things change, none on a clock


def the_end_closes_the_followup_owed(plan):  # 4.8.2
    st = opened(plan, facts={"deaths": 3})
    t = RECEIVED + 20 * M
    out = handle(st, cmd(st, EndRecorded(id="end-f", incident_id=st.incident_id, authority="city", decided_by="市应急办",
                                         ended_at=t, recorded_by="值班员")), plan, t)
    assert out.state.obligations["followup"].status == "closed"
    assert not [e for e in check_due(out.state, plan, t + 3 * 60 * M).events if e.obligation == "followup"]


def ended(plan, st, *, authority="district_committee", announce=False):
    t = RECEIVED + 3 * 60 * M
    body = EndRecorded(id="e-ann", incident_id=st.incident_id, authority=authority, decided_by="区应急委",
                       ended_at=t, recorded_by="指挥员乙", announce_public=announce)
    return handle(st, cmd(st, body), plan, t), t


def an_end_the_committee_announces_owes_an_approved_public_announcement(plan):  # 4.8.2 必要时向社会发布
    out, t = ended(plan, opened(plan), announce=True)
    ob = out.state.obligations["end_announcement"]
    assert ob.status == "open" and ob.obligation.due_at == t + 120 * M  # 120: our choice (obligations.yaml)
    assert ob.obligation.owner == "区委宣传部" and ob.obligation.section.startswith("4.8.2")
    release = ReleaseApproval(drafted_by="区委宣传部", drafted_at=t + 20 * M, approved_by="区应急委",
                              approved_at=t + 30 * M)
    with pytest.raises(ValidationError, match="release"):  # 未经批准不得擅自对外发布 holds for this one too
        filed(out.state, "end_announcement", t + 40 * M)
    done = handle(out.state, filed(out.state, "end_announcement", t + 40 * M, release=release), plan, t + 40 * M)
    assert done.state.obligations["end_announcement"].status == "met"


def an_end_not_announced_owes_no_public_announcement(plan):  # 4.8.2: only 必要时, the committee's call
    out, _ = ended(plan, opened(plan))
    assert "end_announcement" not in out.state.obligations
    assert out.state.obligations["evaluation_report"].status == "open"  # 5.4.2 still owed


def a_larger_event_ended_by_the_city_owes_no_district_announcement(plan):  # 4.8.2: the city announces 较大+
    out, _ = ended(plan, opened(plan, facts={"deaths": 3}), authority="city", announce=True)
    assert "ended" in kinds(out) and "end_announcement" not in out.state.obligations


RELEASES = [
    pytest.param(a_level_1_incident_owes_a_followup_every_hour_counted_from_each,
                 id="4.1.5 a level 1 incident owes a followup every hour counted from each"),
    pytest.param(a_followup_owed_at_level_2_is_due_in_two_hours_and_none_at_level_3,
                 id="4.1.5 a followup owed at level 2 is due in two hours and none at level 3"),
    pytest.param(the_end_closes_the_followup_owed, id="4.1.5; 4.8.2 the end closes the followup owed"),
    pytest.param(a_written_report_lacking_items_is_met_and_marked_incomplete,
                 id="4.1.5 a written report lacking items is met and marked incomplete"),
    pytest.param(an_undetermined_grade_settled_in_time_meets_the_grade_determination,
                 id="4.1.3 an undetermined grade settled in time meets the grade determination"),
    pytest.param(an_undetermined_grade_left_past_its_term_is_missed_then_late,
                 id="4.1.3; 5.5.2 an undetermined grade left past its term is missed then late"),
    pytest.param(a_followup_that_leaves_the_grade_undetermined_does_not_meet_it,
                 id="4.1.3 a followup that leaves the grade undetermined does not meet it"),
    pytest.param(an_approved_release_is_drafted_approved_and_published_on_the_timeline,
                 id="4.7.1 an approved release is drafted approved and published on the timeline"),
    pytest.param(a_release_without_approval_is_refused_naming_the_field,
                 id="4.7.1 a release without approval is refused naming the field"),
    pytest.param(an_end_the_committee_announces_owes_an_approved_public_announcement,
                 id="4.8.2 an end the committee announces owes an approved public announcement"),
    pytest.param(an_end_not_announced_owes_no_public_announcement,
                 id="4.8.2 an end not announced owes no public announcement"),
    pytest.param(a_larger_event_ended_by_the_city_owes_no_district_announcement,
                 id="4.8.2 a larger event ended by the city owes no district announcement"),
]


@pytest.mark.parametrize("path", RELEASES)
def test_information_release_and_grade_determination(plan, path):
    path(plan)


# --- the tables: one row per path of the incident's life, by its plan section --------------

DEADLINES = [
    pytest.param(start_opens_the_obligations_of_the_decision, id="4.1.3 start opens the obligations of the decision"),
    pytest.param(reminder_before_the_deadline_once, id="4.1.3; 值班值守 reminder before the deadline once"),
    pytest.param(on_time_filing_meets_the_obligation, id="4.1.3 on time filing meets the obligation"),
    pytest.param(no_filing_breach_then_escalation_steps_each_once,
                 id="5.5.2 no filing breach then escalation steps each once"),
    pytest.param(breach_detected_late_after_downtime_says_so_and_sends_each_step_once,
                 id="5.5.2 breach detected late after downtime says so and sends each step once"),
    pytest.param(late_filing_after_breach_is_chi_bao_with_minutes,
                 id="5.5.2 late filing after breach is chi bao with minutes"),
    pytest.param(a_filing_backdated_past_a_recorded_breach_is_late_not_on_time,
                 id="5.5.2 a filing backdated past a recorded breach is late not on time"),
    pytest.param(due_check_command_acts_on_what_is_due, id="5.5.2 due check command acts on what is due"),
    pytest.param(a_live_incident_is_counted_with_its_level_and_open_obligations,
                 id="4.1.3; 4.2 a live incident is counted with its level and open obligations"),
]


@pytest.mark.parametrize("path", DEADLINES)
def test_deadlines(plan, path):
    path(plan)


REGRADES = [
    pytest.param(regrade_up_adds_city_report_and_public_release,
                 id="4.3.1; 4.1.3 regrade up adds city report and public release"),
    pytest.param(regrade_down_closes_what_is_no_longer_owed, id="4.3.1 regrade down closes what is no longer owed"),
    pytest.param(regrade_down_then_up_owes_the_city_report_again_with_its_own_notices,
                 id="4.1.3; 4.3.1 regrade down then up owes the city report again with its own notices"),
    pytest.param(a_downgrade_keeps_a_missed_report_missed, id="4.3.1; 5.5.2 a downgrade keeps a missed report missed"),
]


@pytest.mark.parametrize("path", REGRADES)
def test_regrades(plan, path):
    path(plan)


APPROVALS = [
    pytest.param(approval_sends_the_city_report_notice_once, id="4.1.3 approval sends the city report notice once"),
    pytest.param(a_city_report_filed_before_approval_does_not_count,
                 id="4.1.3 a city report filed before approval does not count"),
    pytest.param(a_city_report_filed_before_its_approval_was_recorded_counts_once_it_is,
                 id="4.1.3 a city report filed before its approval was recorded counts once it is"),
    pytest.param(a_city_report_filed_before_its_approval_is_not_counted_by_it,
                 id="4.1.3 a city report filed before its approval is not counted by it"),
    pytest.param(approval_refused_for_general_events, id="4.1.3 approval refused for general events"),
]


@pytest.mark.parametrize("path", APPROVALS)
def test_approvals(plan, path):
    path(plan)


THE_END = [
    pytest.param(an_ended_incident_owes_nothing_again_on_a_later_followup,
                 id="4.8.2 an ended incident owes nothing again on a later followup"),
    pytest.param(a_breach_stays_on_record_when_the_incident_ends_and_its_chase_stops,
                 id="5.5.2; 4.8.2 a breach stays on record when the incident ends and its chase stops"),
    pytest.param(a_followup_after_the_end_is_recorded_but_changes_nothing,
                 id="4.8.2 a followup after the end is recorded but changes nothing"),
    pytest.param(the_end_is_sent_to_every_unit_that_took_part_once,
                 id="4.8.2 the end is sent to every unit that took part once"),
]


@pytest.mark.parametrize("path", THE_END)
def test_the_end(plan, path):
    path(plan)
