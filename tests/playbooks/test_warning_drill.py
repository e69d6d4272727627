"""Drills inject warnings (issue 20 item 5): a scenario's warning steps go through the plan's warning rules
on the drill's clock, marked drill (CAP Exercise); a step the rules refuse is a scenario error."""

from __future__ import annotations

import pytest

from playbooks.plan import load_plan
def test_a_drill_injects_a_warning_through_the_plans_rules_as_exercise():
    """Issue 20 item 5: a scenario's warning injects go through the warning rules on the drill's clock,
    marked drill; a step the rules refuse is a scenario error naming the inject."""
    from playbooks.drill.replay import replay
    from playbooks.drill.scenario import parse_scenario
    from playbooks.warning.cap import to_xml, validate
    from playbooks.warning.messages import messages
    from playbooks.warning.rules import load_warnings
    from topics.warnings import WarningCommand

    plan = load_plan()
    text = """
id: storm
name: 暴雨预警演练
kind: 单项
organiser: 区应急办
objectives: [预警发布与解除]
start: 2026-07-20T14:00:00+08:00
duration: 02:00
injects:
  - {at: "00:00", action: warning, step: draft, incident: rain, unit: 区气象局, category: rainstorm, level: blue,
     area: [中仓街道], hazards: 预计降雨50毫米, measures: [collect, analyse, publish_forecast, advise_public]}
  - {at: "00:05", action: warning, step: issue, incident: rain, unit: 区气象局}
  - {at: "01:30", action: warning, step: lift, incident: rain, unit: 区气象局, reason: 降雨结束}
"""
    scenario = parse_scenario(text, plan=plan)
    feed: list = []
    observed = replay(scenario, plan, feed=feed, run="r1")
    events = observed.warnings["rain"]
    assert [e.kind.value for e in events] == ["drafted", "issued", "lifted"] and all(e.drill for e in events)
    assert [type(r) for _, r in feed] == [WarningCommand] * 3
    assert {m.status for _, m in messages(events, load_warnings(), plan)} == {"Exercise"}
    assert all(validate(to_xml(m)) == [] for _, m in messages(events, load_warnings(), plan))
    bad = text.replace("unit: 区气象局, category", "unit: 中仓街道, category")
    with pytest.raises(ValueError, match="injects.0: the warning's draft is refused"):
        replay(parse_scenario(bad, plan=plan), plan)
