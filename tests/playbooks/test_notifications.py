"""Who must be told (4.1.3, 4.1.4, 4.1.7, 4.2.2, 4.2.4, 4.7.1) and reports owed (4.1, duty rules)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from playbooks.engine import decide
from tests.playbooks.conftest import NOW, make_report

P = pytest.param
NOTIFY = [
    P("gas_accident", {}, "district_urban_management_commission", True, "notify.lead_units", id="2.3.6-lead-unit"),
    P("gas_accident", {}, "district_emergency_office", True, "notify.district_office.report", id="4.1.3-district-office-general"),
    P("food_safety_incident", {}, "district_emergency_office", True, "notify.district_office.report",
      id="4.1.3-district-office-undetermined"),
    P("gas_accident", {"flags": {"may_escalate": True}}, "district_emergency_office", True,
      "notify.district_office.immediate", id="4.1.4-immediate-may-escalate"),
    P("gas_accident", {"location": {"key_area": ["人员密集场所"]}}, "district_emergency_office", True,
      "notify.district_office.immediate", id="4.1.4-immediate-key-area"),
    P("gas_accident", {"facts": {"deaths": 3}}, "city_emergency_office", True, "notify.city_office", id="4.1.3-city-office-较大"),
    P("gas_accident", {"facts": {"deaths": 2}}, "city_emergency_office", False, "notify.city_office", id="4.1.3-no-city-office-一般"),
    P("gas_accident", {"facts": {"deaths": 3}}, "district_emergency_committee", True, "notify.approval_for_city_report",
      id="4.1.3-approval-by-committee"),
    P("gas_accident", {"flags": {"foreign_involved": True}}, "district_taiwan_affairs_office", True, "notify.foreign",
      id="4.1.4-foreign-taiwan-office"),
    P("gas_accident", {"flags": {"foreign_involved": True}}, "district_foreign_affairs_office", True, "notify.foreign",
      id="4.1.4-foreign-affairs-office"),
    P("gas_accident", {"flags": {"foreign_involved": True}}, "tongzhou_police", True, "notify.foreign", id="4.1.4-foreign-police"),
    P("gas_accident", {"location": {"key_area": ["城市副中心"]}}, "party_city_sub_center", True, "notify.party.sub_center",
      id="4.1.7-sub-center"),
    P("gas_accident", {"location": {"key_area": ["行政办公区"]}}, "party_admin_office_area", True, "notify.party.admin_area",
      id="4.1.7-admin-area"),
    P("gas_accident", {"location": {"key_area": ["京津冀临界地区"]}}, "party_jjj_border_areas", True,
      "notify.party.jjj_border", id="4.1.7-jjj-border"),
    P("gas_accident", {}, "town_liyuan", True, "notify.street", id="4.2.2-street"),
    P("gas_accident", {"location": {"street": None}}, "district_emergency_office", True, "notify.street_unknown",
      id="4.2.2-street-unknown"),
    P("criminal_case", {}, "tongzhou_police", True, "notify.lead_units", id="4.2.4-police-social-security"),
    P("gas_accident", {"facts": {"evacuated": 50}}, "tongzhou_police", True, "notify.responder.police", id="4.2.4-police-evacuation"),
    P("road_traffic_accident", {}, "district_transport_bureau", True, "notify.responder.transport", id="4.2.4-transport"),
    P("gas_accident", {}, "tongzhou_fire_rescue", True, "notify.responder.fire_rescue", id="4.2.4-fire-rescue"),
    P("food_safety_incident", {}, "district_health_commission", True, "notify.responder.health", id="4.2.4-health-public-health"),
    P("gas_accident", {"facts": {"injuries": 1}}, "district_health_commission", True, "notify.responder.health",
      id="4.2.4-health-casualties"),
    P("gas_accident", {}, "district_emergency_bureau", True, "notify.responder.emergency", id="4.2.4-emergency"),
    P("gas_accident", {"facts": {"injuries": 1}}, "district_publicity_dept", True, "notify.publicity", id="4.7.1-publicity-二级"),
    P("gas_accident", {}, "district_publicity_dept", False, "notify.publicity", id="4.7.1-no-publicity-三级"),
    P("gas_accident", {"facts": {"deaths": 3}}, "city_publicity_dept", True, "notify.city_publicity", id="4.7.1-city-publicity-较大"),
]


@pytest.mark.parametrize(("type_id", "over", "unit_id", "expected", "rule"), NOTIFY)
def test_notification_rule(plan, type_id, over, unit_id, expected, rule):
    decision = decide(make_report(type_id, **over), plan, NOW)
    units = {n.unit_id: n for n in decision.notify}
    assert (unit_id in units) is expected
    if expected:
        assert rule in {r.rule for r in decision.reasons}
        assert units[unit_id].unit == plan.unit_name(unit_id)


def test_city_office_waits_for_approval(plan):
    decision = decide(make_report(facts={"deaths": 3}), plan, NOW)
    city = next(n for n in decision.notify if n.unit_id == "city_emergency_office")
    assert city.after_approval and decision.needs_approval_for_city_report
    assert not any(n.after_approval for n in decision.notify if n.unit_id != "city_emergency_office")


def test_one_notice_per_unit(plan):
    decision = decide(make_report(flags={"may_escalate": True, "foreign_involved": True}, facts={"evacuated": 5}), plan, NOW)
    ids = [n.unit_id for n in decision.notify]
    assert len(ids) == len(set(ids))


R = datetime(2026, 11, 22, 1, 20, tzinfo=timezone.utc)  # received 09:20 +08:00
O = datetime(2026, 11, 22, 1, 15, tzinfo=timezone.utc)  # occurred 09:15 +08:00
OBLIGATIONS = [
    P({}, "phone_report", R + timedelta(minutes=10), id="duty-rules-phone-10min-after-receipt"),
    P({}, "written_report", R + timedelta(hours=1), id="duty-rules-written-1h-after-receipt"),
    P({}, "detailed_report", O + timedelta(hours=2), id="duty-rules-detailed-2h-after-occurrence"),
    P({"facts": {"deaths": 10}}, "public_release", O + timedelta(hours=24), id="rules-27-public-release-重大"),
    P({"facts": {"deaths": 30}}, "public_release", O + timedelta(hours=24), id="rules-27-public-release-特别重大"),
    P({"facts": {"deaths": 3}}, "public_release", None, id="rules-27-no-release-较大"),
    # 4.7.1 信息发布 (issue 23); the minutes for 同时, 第一时间, 及时 and 立即 are obligations.yaml's choices
    P({}, "publicity_briefing", R + timedelta(minutes=10), id="4.7.1-区应急办通报区委宣传部-with-the-phone-report"),
    P({"facts": {"deaths": 10}}, "publicity_briefing", R + timedelta(minutes=10), id="4.7.1-通报区委宣传部-every-grade"),
    P({}, "first_release", R + timedelta(hours=1), id="4.7.1-first-brief-release-一般"),
    P({"facts": {"deaths": 3}}, "first_release", R + timedelta(hours=1), id="4.7.1-first-brief-release-较大"),
    P({"type_": "information_security_incident"}, "first_release", R + timedelta(hours=1), id="4.7.1-first-brief-release-未判明"),
    P({}, "release_caliber", R + timedelta(minutes=45), id="4.7.1-一般-lead-drafts-the-口径"),
    P({"facts": {"deaths": 3}}, "release_caliber", None, id="4.7.1-no-口径-obligation-较大"),
    P({"facts": {"deaths": 3}}, "city_publicity_report", R + timedelta(minutes=30), id="4.7.1-较大-区委宣传部-reports-to-市委宣传部"),
    P({"facts": {"deaths": 30}}, "city_publicity_report", R + timedelta(minutes=30), id="4.7.1-特别重大-reports-to-市委宣传部"),
    P({}, "city_publicity_report", None, id="4.7.1-一般-no-report-to-市委宣传部"),
    # 4.1.5 及时续报: a cadence per response level (our choice: 一级 60 minutes, 二级 120, 三级 none)
    P({"facts": {"deaths": 3}}, "followup", R + timedelta(minutes=60), id="4.1.5-一级-followup-every-60min"),
    P({"facts": {"injuries": 2}}, "followup", R + timedelta(minutes=120), id="4.1.5-二级-followup-every-120min"),
    P({}, "followup", None, id="4.1.5-三级-no-followup-on-a-clock"),
    # 4.1.3 暂时无法判明事件等级: 区应急办's 研判定级 (term our choice)
    P({"type_": "information_security_incident"}, "grade_determination", R + timedelta(hours=1), id="4.1.3-未判明-owes-研判定级"),
    P({}, "grade_determination", None, id="4.1.3-一般-owes-no-研判定级"),
]


@pytest.mark.parametrize(("over", "kind", "due"), OBLIGATIONS)
def test_obligations(plan, over, kind, due):
    decision = decide(make_report(**over), plan, NOW)
    if kind == "grade_determination" or over.get("type_"):
        assert decision.grade.value == ("未判明" if over.get("type_") else "一般")
    got = {o.kind.value: o for o in decision.obligations}
    if due is None:
        assert kind not in got
        return
    ob = got[kind]
    assert ob.due_at == due and ob.due_at.tzinfo is not None
    assert ob.owner and ob.recipient and ob.section and ob.counts_from in ("received_at", "occurred_at", "basis_at")


def test_deadlines_come_from_the_report_not_now(plan):
    early = decide(make_report(), plan, NOW)
    late = decide(make_report(), plan, NOW + timedelta(days=3))
    assert [o.due_at for o in early.obligations] == [o.due_at for o in late.obligations]
