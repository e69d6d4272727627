"""Each grading family at its boundaries (GRADING.md): 以上 includes the number."""

from __future__ import annotations

import pytest

from playbooks.engine import decide
from tests.playbooks.conftest import NOW, make_report

P = pytest.param
CASES = [
    # production_safety: 国务院令第493号 第三条
    P("gas_accident", {"deaths": 2}, "一般", id="493-deaths-2"),
    P("gas_accident", {"deaths": 3}, "较大", id="493-deaths-3"),
    P("gas_accident", {"deaths": 2, "missing": 1}, "较大", id="493-deaths-incl-missing-3"),
    P("gas_accident", {"deaths": 9}, "较大", id="493-deaths-9"),
    P("gas_accident", {"deaths": 10}, "重大", id="493-deaths-10"),
    P("gas_accident", {"deaths": 29}, "重大", id="493-deaths-29"),
    P("gas_accident", {"deaths": 30}, "特别重大", id="493-deaths-30"),
    P("gas_accident", {"serious_injuries": 9}, "一般", id="493-serious-9"),
    P("gas_accident", {"serious_injuries": 10}, "较大", id="493-serious-10"),
    P("gas_accident", {"serious_injuries": 49}, "较大", id="493-serious-49"),
    P("gas_accident", {"serious_injuries": 40, "poisoned": 10}, "重大", id="493-serious-incl-poisoning-50"),
    P("gas_accident", {"serious_injuries": 99}, "重大", id="493-serious-99"),
    P("gas_accident", {"serious_injuries": 100}, "特别重大", id="493-serious-100"),
    P("gas_accident", {"direct_loss_yuan": 9_999_999}, "一般", id="493-loss-under-1000w"),
    P("gas_accident", {"direct_loss_yuan": 10_000_000}, "较大", id="493-loss-1000w"),
    P("gas_accident", {"direct_loss_yuan": 49_999_999}, "较大", id="493-loss-under-5000w"),
    P("gas_accident", {"direct_loss_yuan": 50_000_000}, "重大", id="493-loss-5000w"),
    P("gas_accident", {"direct_loss_yuan": 99_999_999}, "重大", id="493-loss-under-1yi"),
    P("gas_accident", {"direct_loss_yuan": 100_000_000}, "特别重大", id="493-loss-1yi"),
    P("gas_accident", {"deaths": 3, "direct_loss_yuan": 50_000_000}, "重大", id="493-highest-criterion-wins"),
    P("fire_accident", {"deaths": 3}, "较大", id="493-fire-uses-family"),
    # rail_transit: 国办函〔2015〕32号
    P("rail_transit_incident", {"interruption_hours": 1.9}, "一般", id="rail-interrupt-1.9h"),
    P("rail_transit_incident", {"interruption_hours": 5.9}, "一般", id="rail-interrupt-5.9h"),
    P("rail_transit_incident", {"interruption_hours": 6}, "较大", id="rail-interrupt-6h"),
    P("rail_transit_incident", {"interruption_hours": 23.9}, "较大", id="rail-interrupt-23.9h"),
    P("rail_transit_incident", {"interruption_hours": 24}, "重大", id="rail-interrupt-24h"),
    P("rail_transit_incident", {"deaths": 30}, "特别重大", id="rail-deaths-30"),
    # environment: 国办函〔2014〕119号 附件1
    P("environmental_incident", {"deaths": 2}, "一般", id="env-deaths-2"),
    P("environmental_incident", {"deaths": 3}, "较大", id="env-deaths-3"),
    P("environmental_incident", {"deaths": 10}, "重大", id="env-deaths-10"),
    P("environmental_incident", {"deaths": 30}, "特别重大", id="env-deaths-30"),
    P("environmental_incident", {"poisoned": 10}, "较大", id="env-poisoned-10"),
    P("environmental_incident", {"evacuated": 4_999}, "一般", id="env-evacuated-4999"),
    P("environmental_incident", {"evacuated": 5_000}, "较大", id="env-evacuated-5000"),
    P("environmental_incident", {"evacuated": 10_000}, "重大", id="env-evacuated-1w"),
    P("environmental_incident", {"evacuated": 50_000}, "特别重大", id="env-evacuated-5w"),
    P("environmental_incident", {"direct_loss_yuan": 4_999_999}, "一般", id="env-loss-under-500w"),
    P("environmental_incident", {"direct_loss_yuan": 5_000_000}, "较大", id="env-loss-500w"),
    P("environmental_incident", {"direct_loss_yuan": 20_000_000}, "重大", id="env-loss-2000w"),
    P("environmental_incident", {"direct_loss_yuan": 100_000_000}, "特别重大", id="env-loss-1yi"),
    P("radiation_accident", {"deaths": 3}, "较大", id="env-radiation-uses-family"),
    # earthquake: 国家地震应急预案 (2012), densely populated
    P("destructive_earthquake", {"magnitude": 3.9}, "一般", id="quake-M3.9"),
    P("destructive_earthquake", {"magnitude": 4.0}, "较大", id="quake-M4.0"),
    P("destructive_earthquake", {"magnitude": 5.0}, "重大", id="quake-M5.0"),
    P("destructive_earthquake", {"magnitude": 5.2}, "重大", id="quake-M5.2"),
    P("destructive_earthquake", {"magnitude": 6.0}, "特别重大", id="quake-M6.0"),
    P("destructive_earthquake", {"deaths": 9}, "一般", id="quake-deaths-9"),
    P("destructive_earthquake", {"deaths": 10}, "较大", id="quake-deaths-10"),
    P("destructive_earthquake", {"deaths": 49}, "较大", id="quake-deaths-49"),
    P("destructive_earthquake", {"deaths": 50}, "重大", id="quake-deaths-50"),
    P("destructive_earthquake", {"deaths": 299}, "重大", id="quake-deaths-299"),
    P("destructive_earthquake", {"deaths": 300}, "特别重大", id="quake-deaths-300"),
    # geological: 国家突发地质灾害应急预案 (2006)
    P("geological_disaster", {"deaths": 2}, "一般", id="geo-deaths-2"),
    P("geological_disaster", {"deaths": 3}, "较大", id="geo-deaths-3"),
    P("geological_disaster", {"deaths": 10}, "重大", id="geo-deaths-10"),
    P("geological_disaster", {"deaths": 30}, "特别重大", id="geo-deaths-30"),
    P("geological_disaster", {"direct_loss_yuan": 999_999}, "一般", id="geo-loss-under-100w"),
    P("geological_disaster", {"direct_loss_yuan": 1_000_000}, "较大", id="geo-loss-100w"),
    P("geological_disaster", {"direct_loss_yuan": 5_000_000}, "重大", id="geo-loss-500w"),
    P("geological_disaster", {"direct_loss_yuan": 10_000_000}, "特别重大", id="geo-loss-1000w"),
    # no family: 4.1.3 暂时无法判明事件等级, unless the reporting unit asserts a grade
    P("food_safety_incident", {"deaths": 5}, "未判明", id="4.1.3-no-family-undetermined"),
]


@pytest.mark.parametrize(("type_id", "facts", "grade"), CASES)
def test_grade(plan, type_id, facts, grade):
    decision = decide(make_report(type_id, facts=facts), plan, NOW)
    assert decision.grade.value == grade
    assert any(r.rule.startswith("grade.") for r in decision.reasons)


ASSERTED = [
    P("food_safety_incident", {}, "较大", "较大", "grade.asserted", id="1.4.2-asserted-without-family"),
    P("gas_accident", {"deaths": 3}, "一般", "较大", "grade.disagreement", id="1.4.2-computed-higher-wins"),
    P("gas_accident", {"deaths": 1}, "重大", "重大", "grade.disagreement", id="1.4.2-asserted-higher-wins"),
    P("gas_accident", {"deaths": 3}, "较大", "较大", "grade.asserted_agrees", id="1.4.2-agreement"),
    P("food_safety_incident", {}, "未判明", "未判明", None, id="4.1.3-asserted-undetermined"),
]


@pytest.mark.parametrize(("type_id", "facts", "asserted", "grade", "rule"), ASSERTED)
def test_asserted_grade(plan, type_id, facts, asserted, grade, rule):
    report = make_report(type_id, facts=facts, asserted_grade=asserted, asserted_by="区市场监管局")
    decision = decide(report, plan, NOW)
    assert decision.grade.value == grade
    if rule:
        assert rule in {r.rule for r in decision.reasons}
