"""A warning's steps as CAP 1.2 (issue 20 item 4): each message validates against the OASIS XSD and the
rules it cannot express; Draft before issue, Alert, Update referencing what went before, Cancel;
Exercise in a drill. A hypothesis property over warning histories."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import assume, given
from hypothesis import strategies as st

from playbooks.warning.cap import to_xml, validate
from playbooks.warning.messages import messages
from playbooks.warning.rules import step
from tests.playbooks.test_warning_rules import BASE, CONFIG, HIGH, MET, OFFICE, PLAN, STREETS, T0, cmd, content
from topics.warnings import WarningContent, WarningLevel


def history(commands, *, refused_ok=False):
    state, events = None, []
    for c in commands:
        r = step(state, c, CONFIG, PLAN)
        if refused_ok and r.refused:
            return None
        assert not r.refused, r.refused
        state = r.state
        events += r.events
    return events


ORANGE_TO_RED = [
    cmd("draft", OFFICE, content=content(WarningLevel.ORANGE, OFFICE, measures=HIGH)),
    cmd("approve", "district_government", 2, approval="district_leader", approver="分管副区长"),
    cmd("approve", "city_emergency_office", 3, approval="city_office", approver="市应急办值班"),
    cmd("issue", OFFICE, 4),
    cmd("adjust", OFFICE, 5, content=WarningContent(level=WarningLevel.RED), approval="committee_leader", approver="区应急委副主任"),
    cmd("lift", OFFICE, 6, reason="降雨结束"),
]


def test_an_orange_warning_adjusted_to_red_and_lifted_as_cap():
    out = messages(history(ORANGE_TO_RED), CONFIG, PLAN)
    kinds = [(m.status, m.msg_type, len(m.references)) for _, m in out]
    assert kinds == [("Draft", "Alert", 0), ("Actual", "Alert", 0), ("Actual", "Update", 1), ("Actual", "Cancel", 2)]
    for _, m in out:
        assert validate(to_xml(m)) == [], m
    assert b"Extreme" in to_xml(out[2][1]) and b"Severe" in to_xml(out[1][1])


def test_a_drills_messages_are_exercise():
    drill = [c.model_copy(update={"drill": True}) for c in ORANGE_TO_RED]
    assert {m.status for _, m in messages(history(drill), CONFIG, PLAN)} == {"Exercise"}


LEVELS = list(WarningLevel)


@given(level=st.sampled_from([WarningLevel.BLUE, WarningLevel.YELLOW]), raise_to=st.sampled_from(LEVELS),
       area=st.lists(st.sampled_from(STREETS), min_size=1, max_size=22, unique=True),
       hazards=st.text(min_size=1, max_size=200).filter(lambda t: t.strip() and "\x00" not in t),
       lift=st.booleans(), drill=st.booleans(), minutes=st.integers(min_value=1, max_value=60 * 24 * 365 * 50))
def test_every_message_of_any_valid_history_validates(level, raise_to, area, hazards, lift, drill, minutes):
    def c(kind, unit, n, **kw):
        return cmd(kind, unit, n, drill=drill, at=T0 + timedelta(minutes=minutes + n), **kw)

    measures = HIGH if raise_to in (WarningLevel.ORANGE, WarningLevel.RED) else BASE
    commands = [c("draft", MET, 1, content=content(level, MET, area=area, hazards=hazards, measures=measures)),
                c("issue", MET, 2),
                c("adjust", OFFICE, 3, content=WarningContent(level=raise_to, measures=measures),
                  approval="committee_leader", approver="区应急委副主任")]
    if lift:
        commands.append(c("lift", MET, 4))
    events = history(commands, refused_ok=True)
    assume(events is not None)  # a text the rules refuse (a control character) is no valid history
    for _, m in messages(events, CONFIG, PLAN):
        assert validate(to_xml(m)) == []
