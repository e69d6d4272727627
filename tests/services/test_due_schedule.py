"""The worker's due schedule: earliest first, each incident once, nothing early, and never more due
checks in flight than allowed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.agents.incidents import DueSchedule
from services.table_codec import Head

T0 = datetime(2026, 11, 22, 1, 30, tzinfo=timezone.utc)


def _head(seconds: int) -> Head:
    return Head(due=T0 + timedelta(seconds=seconds), level="三级", open_kinds=("phone_report",))


def _schedule(n: int, in_flight_max: int) -> DueSchedule:
    s = DueSchedule(in_flight_max=in_flight_max)
    for i in reversed(range(n)):  # pushed latest first: the heap must still hand out the earliest
        s.track(f"i{i}", _head(i))
    return s


def test_due_incidents_leave_earliest_first_each_once_and_nothing_early():
    s = _schedule(5, in_flight_max=100)
    s.track("i0", _head(3))  # its state moved on: a second entry, later
    assert [iid for _, iid in s.pop_due(T0 + timedelta(seconds=3))] == ["i0", "i1", "i2", "i3"]
    assert [iid for _, iid in s.pop_due(T0 + timedelta(seconds=3))] == []
    assert [iid for _, iid in s.pop_due(T0 + timedelta(seconds=4))] == ["i4"]


def test_a_flood_of_due_checks_leaves_in_batches_earliest_first():
    s = _schedule(10, in_flight_max=4)
    now = T0 + timedelta(minutes=1)
    assert [iid for _, iid in s.pop_due(now)] == ["i0", "i1", "i2", "i3"]
    assert s.in_flight == 4 and s.waiting(now) == 6
    assert s.pop_due(now) == []  # no room until the agent has handled some
    s.checked()
    s.checked()
    assert [iid for _, iid in s.pop_due(now)] == ["i4", "i5"]
    for _ in range(10):  # a check handled twice, or one from before a restart, frees no room it never took
        s.checked()
    assert s.in_flight == 0
    assert [iid for _, iid in s.pop_due(now)] == ["i6", "i7", "i8", "i9"]
    assert s.waiting(now) == 0


def test_a_rebuild_forgets_the_checks_in_flight():
    s = _schedule(5, in_flight_max=2)
    s.pop_due(T0 + timedelta(minutes=1))
    assert s.in_flight == 2
    s.rebuild([])
    assert s.in_flight == 0


def test_an_ended_incident_leaves_the_gauges_but_its_due_time_stays():
    s = DueSchedule(in_flight_max=100)
    s.track("i0", _head(0))
    assert s.summary == {"i0": ("三级", ("phone_report",))}
    s.track("i0", Head(due=None, level=None, open_kinds=()))
    assert s.summary == {} and len(s.heap) == 1
