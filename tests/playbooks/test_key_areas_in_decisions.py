"""Key areas as people type them and 涉外 types (issue 20 item 1), read by the plan's rules: one row
per rule with its section."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from playbooks.engine import decide
from playbooks.plan import load_plan
from topics.models import Location, ReportFacts

PLAN = load_plan()
T = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)


def notified(type_: str, key_area: list[str] | None = None) -> set[str]:
    report = ReportFacts(report_id="r", type=type_, occurred_at=T, received_at=T, location=Location(key_area=key_area or []))
    return {n.unit for n in decide(report, PLAN, T).notify}


ROWS = [
    ("4.1.7: 城市副中心核心区 is 城市副中心: its party is told", "燃气事故（管道燃气）", ["城市副中心核心区"], "北京城市副中心", True),
    ("4.1.7: 副中心, as people shorten it", "燃气事故（管道燃气）", ["副中心"], "北京城市副中心", True),
    ("4.1.7: a place that is no key area tells no party", "燃气事故（管道燃气）", ["梨园镇某小区"], "北京城市副中心", False),
    ("4.1.4: a 涉外 type implies foreign involvement: 区外事办 told", "foreign_related_incident", [], "区外事办", True),
    ("4.1.4: a type that is not 涉外 does not", "燃气事故（管道燃气）", [], "区外事办", False),
]


@pytest.mark.parametrize(("rule", "type_", "areas", "unit", "told"), ROWS, ids=[r[0] for r in ROWS])
def test_rule(rule, type_, areas, unit, told):
    assert (unit in notified(type_, areas)) is told


def test_the_memo_never_mixes_a_typed_alias_with_no_key_area():
    assert "北京城市副中心" not in notified("燃气事故（管道燃气）")
    assert "北京城市副中心" in notified("燃气事故（管道燃气）", ["城市副中心核心区"])
    assert "北京城市副中心" not in notified("燃气事故（管道燃气）")
