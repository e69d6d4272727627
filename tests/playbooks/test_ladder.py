"""The re-notification ladder (issue 19 item 4): ladder.yaml read and checked, ladder_due table-driven."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from playbooks.delivery.ladder import LadderFile, ladder_due, load_ladder, next_due_at, steps_taken, taken
from playbooks.duty.config import load_duty
from topics.delivery import AckHow, AckRecord, DeliveryEvent, ack_id
from topics.models import NotificationRequested, Post, ResponseLevel

T0 = datetime(2026, 11, 22, 1, 30, tzinfo=timezone.utc)
KEY = "inc-1.route.gas_office"


@pytest.fixture(scope="module")
def config() -> LadderFile:
    return load_ladder(duty=load_duty())


def notice(*, drill: bool = False, key: str = KEY) -> NotificationRequested:
    return NotificationRequested(id=key, dedup_key=key, incident_id="inc-1", drill=drill, unit_id="gas_office",
                                 unit="区燃气办", why="燃气事故", rule="route", section="4.1", requested_at=T0)


def ack(at: timedelta, *, step: int = 0, how: AckHow = AckHow.LINK, key: str = KEY, person: str = "p-chief") -> AckRecord:
    return AckRecord(id=ack_id(key, person, "link"), dedup_key=key, incident_id="i-1", step=step, person_id=person, at=T0 + at,
                     how=how, by="link")


def m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


# (case id, level, elapsed, acks, steps_done) -> the steps due
CASES = [
    ("一级 2:59 nothing", ResponseLevel.LEVEL_1, m(2) + timedelta(seconds=59), [], set(), []),
    ("一级 3:00 step 1", ResponseLevel.LEVEL_1, m(3), [], set(), [1]),
    ("一级 5:59 step 1 taken, nothing", ResponseLevel.LEVEL_1, m(5) + timedelta(seconds=59), [], {1}, []),
    ("一级 6:00 step 2", ResponseLevel.LEVEL_1, m(6), [], {1}, [2]),
    ("一级 9:00 step 3", ResponseLevel.LEVEL_1, m(9), [], {1, 2}, [3]),
    ("一级 an hour: all taken, nothing more", ResponseLevel.LEVEL_1, m(60), [], {1, 2, 3}, []),
    ("一级 7:00 none taken: both due, each at its time", ResponseLevel.LEVEL_1, m(7), [], set(), [1, 2]),
    ("一级 each step once: 1 taken at 6:00", ResponseLevel.LEVEL_1, m(6), [], {1}, [2]),
    ("一级 ack at 2:00 stops every step", ResponseLevel.LEVEL_1, m(9), [ack(m(2))], set(), []),
    ("一级 ack at 4:00 (after step 1) stops steps 2 and 3", ResponseLevel.LEVEL_1, m(9), [ack(m(4))], {1}, []),
    ("一级 ack of step 2's message stops step 3", ResponseLevel.LEVEL_1, m(9), [ack(m(7), step=2)], {1, 2}, []),
    ("一级 a test message's ack stops nothing", ResponseLevel.LEVEL_1, m(3), [ack(m(1), how=AckHow.TEST)], set(), [1]),
    ("一级 another notice's ack stops nothing", ResponseLevel.LEVEL_1, m(3), [ack(m(1), key="other")], set(), [1]),
    ("二级 5 minutes (our_choice)", ResponseLevel.LEVEL_2, m(5), [], set(), [1]),
    ("二级 4:59 nothing", ResponseLevel.LEVEL_2, m(5) - timedelta(seconds=1), [], set(), []),
    ("三级 10 minutes (our_choice)", ResponseLevel.LEVEL_3, m(20), [], set(), [1, 2]),
    ("no level: the default", None, m(10), [], set(), [1]),
]


@pytest.mark.parametrize(("level", "elapsed", "acks", "done", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_ladder_due(config, level, elapsed, acks, done, expected):
    steps = ladder_due(notice(), level=level, acks=acks, steps_done=done, now=T0 + elapsed, config=config)
    assert [s.n for s in steps] == expected
    minutes = config.minutes_for(level).value
    for s in steps:
        assert s.at == T0 + m(minutes * s.n)
        assert s.id == f"{KEY}.ladder{s.n}"
        assert s.dedup_key == KEY and s.incident_id == "inc-1"
        assert s.reasons and f"第 {s.n} 步" in s.reasons[0]


def test_steps_name_roles_and_posts_duty_yaml_understands(config):
    steps = ladder_due(notice(), level=ResponseLevel.LEVEL_1, acks=[], steps_done=set(), now=T0 + m(9), config=config)
    assert [(s.unit_id, s.role, s.post) for s in steps] == [
        ("gas_office", "值班主任", Post.chief),
        ("gas_office", "带班领导", Post.leader),
        ("district_emergency_office", "值班主任", Post.chief),
    ]
    duty = load_duty()
    for s in steps:
        assert duty.post_for(s.role, s.unit_id) == (s.unit_id, s.post)
    assert steps[0].unit == "区燃气办" and steps[2].unit is None
    assert "区应急办值班主任" in steps[2].reasons[0]


def test_level_one_source_is_the_issue_and_the_others_are_our_choice(config):
    assert config.minutes[ResponseLevel.LEVEL_1].value == 3
    assert config.minutes[ResponseLevel.LEVEL_1].our_choice is False
    assert all(config.minutes[lv].our_choice for lv in (ResponseLevel.LEVEL_2, ResponseLevel.LEVEL_3))
    assert config.default_minutes.our_choice is True


def test_a_level_missing_from_the_yaml_takes_the_default_marked_our_choice(config):
    trimmed = config.model_copy(update={"minutes": {ResponseLevel.LEVEL_1: config.minutes[ResponseLevel.LEVEL_1]}})
    default = trimmed.default_minutes.value
    assert trimmed.minutes_for(ResponseLevel.LEVEL_2) == trimmed.default_minutes
    early = ladder_due(notice(), level=ResponseLevel.LEVEL_2, acks=[], steps_done=set(),
                       now=T0 + m(default) - timedelta(seconds=1), config=trimmed)
    assert early == []
    [step] = ladder_due(notice(), level=ResponseLevel.LEVEL_2, acks=[], steps_done=set(), now=T0 + m(default),
                        config=trimmed)
    assert "default_minutes" in step.reasons[1] and "our_choice" in step.reasons[1]


def test_a_drills_notice_walks_its_ladder_marked_drill(config):
    steps = ladder_due(notice(drill=True), level=ResponseLevel.LEVEL_1, acks=[], steps_done=set(), now=T0 + m(3),
                       config=config)
    assert [s.drill for s in steps] == [True]
    assert steps[0].reasons[0].startswith("【演练】")
    live = ladder_due(notice(), level=ResponseLevel.LEVEL_1, acks=[], steps_done=set(), now=T0 + m(3), config=config)
    assert live[0].drill is False


def test_run_twice_acts_once_through_its_own_records(config):
    """The timer's output fed back in (LadderStepTaken on the deliveries topic) makes the next run emit nothing."""
    now = T0 + m(7)
    first = ladder_due(notice(), level=ResponseLevel.LEVEL_1, acks=[], steps_done=set(), now=now, config=config)
    records = [taken(s, person_id=None, on_duty_reasons=["nobody on duty"], recorded_at=now) for s in first]
    for r in records:  # each travels on the topic
        DeliveryEvent.model_validate_json(DeliveryEvent.of(r).model_dump_json())
    done = steps_taken(records, KEY)
    assert done == {1, 2}
    assert ladder_due(notice(), level=ResponseLevel.LEVEL_1, acks=[], steps_done=done, now=now, config=config) == []
    assert next_due_at(notice(), level=ResponseLevel.LEVEL_1, acks=[], steps_done=done, config=config) == T0 + m(9)
    assert next_due_at(notice(), level=ResponseLevel.LEVEL_1, acks=[ack(m(8))], steps_done=done, config=config) is None


def test_now_must_carry_its_timezone(config):
    with pytest.raises(ValueError, match="timezone"):
        ladder_due(notice(), level=None, acks=[], steps_done=set(), now=datetime(2026, 11, 22, 9, 40), config=config)


def test_a_step_whose_role_is_not_its_post_in_duty_yaml_is_refused(tmp_path: Path):
    text = (Path(__file__).resolve().parents[2] / "playbooks" / "data" / "ladder.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "ladder.yaml"
    bad.write_text(text.replace("role: 带班领导, post: leader", "role: 带班领导, post: officer"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"steps\[1\]"):
        load_ladder(bad, duty=load_duty())


def test_a_level_the_plan_does_not_know_is_refused_at_load(tmp_path: Path):
    text = (Path(__file__).resolve().parents[2] / "playbooks" / "data" / "ladder.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "ladder.yaml"
    bad.write_text(text.replace("  三级:", "  四级:"), encoding="utf-8")
    with pytest.raises(ValidationError, match="四级"):
        load_ladder(bad)
