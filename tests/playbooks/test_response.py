"""Response levels and commanders (4.3), one row per rule."""

from __future__ import annotations

import pytest

from playbooks.engine import decide
from tests.playbooks.conftest import NOW, make_report

P = pytest.param
LEVELS = [
    P({"facts": {"deaths": 3}}, "一级", "level.large_and_above", id="4.3.4-较大-一级"),
    P({"facts": {"deaths": 10}}, "一级", "level.large_and_above", id="4.3.4-重大-一级"),
    P({"facts": {"deaths": 30}}, "一级", "level.large_and_above", id="4.3.4-特别重大-一级"),
    P({"facts": {"deaths": 1}}, "二级", "level.general_casualties_or_multi_agency", id="4.3.3-一般-dead"),
    P({"facts": {"missing": 1}}, "二级", "level.general_casualties_or_multi_agency", id="4.3.3-一般-missing"),
    P({"facts": {"injuries": 1}}, "二级", "level.general_casualties_or_multi_agency", id="4.3.3-一般-injured"),
    P({"facts": {"serious_injuries": 1}}, "二级", "level.general_casualties_or_multi_agency", id="4.3.3-一般-serious"),
    P({"facts": {"poisoned": 1}}, "二级", "level.general_casualties_or_multi_agency", id="4.3.3-一般-poisoned"),
    P({"flags": {"multi_agency": True}}, "二级", "level.general_casualties_or_multi_agency", id="4.3.3-一般-multi-agency"),
    P({}, "三级", "level.general", id="4.3.2-一般-quiet"),
    P({"facts": {"evacuated": 100}}, "三级", "level.general", id="4.3.2-一般-evacuation-only"),
    P({"type": "food_safety_incident"}, "三级", "level.undetermined", id="4.1.3-未判明-三级"),
    P({"type": "food_safety_incident", "facts": {"deaths": 5}}, "二级", "level.undetermined_casualties_or_multi_agency",
      id="4.3.3-未判明-dead-二级"),
    P({"type": "food_safety_incident", "facts": {"poisoned": 2}}, "二级",
      "level.undetermined_casualties_or_multi_agency", id="4.3.3-未判明-poisoned-二级"),
    P({"type": "food_safety_incident", "flags": {"multi_agency": True}}, "二级",
      "level.undetermined_casualties_or_multi_agency", id="4.3.3-未判明-multi-agency-二级"),
    P({"type": "food_safety_incident", "facts": {"evacuated": 100}}, "三级", "level.undetermined",
      id="4.1.3-未判明-evacuation-only-三级"),
    P({"type": "food_safety_incident", "facts": {"deaths": 1}, "flags": {"sensitive": True}}, "一级", "raise.sensitive",
      id="4.3.1-未判明-二级→一级"),
    # 4.3.1: one level higher if sensitive, in a key area or during a major event
    P({"flags": {"sensitive": True}}, "二级", "raise.sensitive", id="4.3.1-sensitive-三级→二级"),
    P({"location": {"key_area": ["人员密集场所"]}}, "二级", "raise.key_area", id="4.3.1-key-area-三级→二级"),
    P({"flags": {"major_event": True}}, "二级", "raise.major_event", id="4.3.1-major-event-三级→二级"),
    P({"facts": {"injuries": 1}, "flags": {"sensitive": True}}, "一级", "raise.sensitive", id="4.3.1-二级→一级"),
    P({"facts": {"deaths": 3}, "flags": {"sensitive": True}}, "一级", "raise.sensitive", id="4.3.1-一级-stays"),
    P(
        {"flags": {"sensitive": True, "major_event": True}, "location": {"key_area": ["城市副中心"]}},
        "二级",
        "raise.key_area",
        id="4.3.1-raised-once-only",
    ),
    P({"type": "food_safety_incident", "flags": {"sensitive": True}}, "二级", "raise.sensitive", id="4.3.1-未判明-raised"),
]


@pytest.mark.parametrize(("over", "level", "rule"), LEVELS)
def test_response_level(plan, over, level, rule):
    over = dict(over)
    decision = decide(make_report(over.pop("type", "gas_accident"), **over), plan, NOW)
    assert decision.response_level.value == level
    assert rule in {r.rule for r in decision.reasons}


def test_undetermined_is_marked_for_triage(plan):
    decision = decide(make_report("food_safety_incident"), plan, NOW)
    assert decision.grade.value == "未判明"
    assert decision.triage_by_district_office
    assert decide(make_report("food_safety_incident", facts={"deaths": 5}), plan, NOW).triage_by_district_office
    assert not decide(make_report(), plan, NOW).triage_by_district_office


COMMANDERS = [
    P({}, "三级", [("总指挥", "区城市管理委行政一把手")], False, False, id="4.3.2-三级-head-of-lead-unit"),
    P({"facts": {"injuries": 2}}, "二级", [("总指挥", "分管区领导"), ("执行总指挥", "区城市管理委行政一把手")], True, False,
      id="4.3.3-二级-district-leader-and-field-hq"),
    P({"facts": {"deaths": 5}}, "一级", [("总指挥", "区应急委主要领导"), ("执行总指挥", "区城市管理委行政一把手")], True, True,
      id="4.3.4-一级-committee-leader-under-city"),
    P({"facts": {"injuries": 1}, "flags": {"sensitive": True}}, "一级",
      [("总指挥", "区应急委主要领导"), ("执行总指挥", "区城市管理委行政一把手")], True, False,
      id="2.1.1-一般-raised-to-一级-commanded-by-the-district"),
]


@pytest.mark.parametrize(("over", "level", "roles", "field_hq", "city"), COMMANDERS)
def test_commanders(plan, over, level, roles, field_hq, city):
    decision = decide(make_report("gas_accident", **over), plan, NOW)
    assert decision.response_level.value == level
    got = [(c.role, c.who) for c in decision.commanders]
    assert len(got) == len(roles)
    for (role, who_prefix), (got_role, got_who) in zip(roles, got):
        assert got_role == role and got_who.startswith(who_prefix)
    assert decision.field_hq is field_hq
    assert decision.under_city_command is city
