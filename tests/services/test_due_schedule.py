"""The worker's due schedule: earliest first, each incident once, nothing not yet due."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.agents.incidents import DueSchedule
from services.table_codec import Head

T0 = datetime(2026, 11, 22, 1, 30, tzinfo=timezone.utc)


def _head(seconds: int) -> Head:
    return Head(due=T0 + timedelta(seconds=seconds), level="三级", open_kinds=("phone_report",))


def test_due_incidents_leave_earliest_first_each_once_and_nothing_early():
    s = DueSchedule()
    for i in reversed(range(5)):  # pushed latest first: the heap must still hand out the earliest
        s.track(f"i{i}", _head(i))
    s.track("i0", _head(3))  # its state moved on: a second entry, later
    assert [iid for _, iid in s.pop_due(T0 + timedelta(seconds=3))] == ["i0", "i1", "i2", "i3"]
    assert [iid for _, iid in s.pop_due(T0 + timedelta(seconds=3))] == []
    assert [iid for _, iid in s.pop_due(T0 + timedelta(seconds=4))] == ["i4"]


def test_an_ended_incident_leaves_the_gauges_but_its_due_time_stays():
    s = DueSchedule()
    s.track("i0", _head(0))
    assert s.summary == {"i0": ("三级", ("phone_report",))}
    s.track("i0", Head(due=None, level=None, open_kinds=()))
    assert s.summary == {} and len(s.heap) == 1
