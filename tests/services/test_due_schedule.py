"""The worker's due schedule: per partition, earliest first, each incident once, nothing early, at
most `per_tick` checks per tick, and one tick in flight per partition."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from aiokafka.partitioner import DefaultPartitioner  # what Faust's producer (and the API's, drills') use

from playbooks.plan import load_plan
from services.kafka_topics import partition_of
from services.worker.schedule import DueSchedule
from services.worker.table_codec import Head
from topics.catalog import INCIDENTS_REPORTED

T0 = datetime(2026, 11, 22, 1, 30, tzinfo=timezone.utc)


def _head(seconds: int) -> Head:
    return Head(due=T0 + timedelta(seconds=seconds), level="三级", open_kinds=("phone_report",))


def _schedule(n: int, per_tick: int = 100, partition: int = 0) -> DueSchedule:
    s = DueSchedule(per_tick=per_tick)
    for i in reversed(range(n)):  # pushed latest first: the heap must still hand out the earliest
        s.track(partition, f"i{i}", _head(i))
    return s


def _ids(due: list) -> list[str]:
    return [iid for _, iid in due]


def test_due_incidents_leave_earliest_first_each_once_and_nothing_early():
    s = _schedule(5)
    s.track(0, "i0", _head(3))  # its state moved on: a second entry, later
    assert _ids(s.pop_due(0, T0 + timedelta(seconds=3))) == ["i0", "i1", "i2", "i3"]
    assert _ids(s.pop_due(0, T0 + timedelta(seconds=3))) == []
    assert _ids(s.pop_due(0, T0 + timedelta(seconds=4))) == ["i4"]


def test_a_flood_leaves_per_tick_at_a_time_earliest_first():
    s = _schedule(10, per_tick=4)
    now = T0 + timedelta(minutes=1)
    assert _ids(s.pop_due(0, now)) == ["i0", "i1", "i2", "i3"]
    assert s.due_now(0, now) and s.waiting(now) == 6
    assert _ids(s.pop_due(0, now)) == ["i4", "i5", "i6", "i7"]
    assert _ids(s.pop_due(0, now)) == ["i8", "i9"]
    assert not s.due_now(0, now) and s.waiting(now) == 0


def _three_partitions(b_on: int) -> DueSchedule:
    """"a" due now on partition 0, "b" due now on `b_on`, "c" on partition 2, due in a minute."""
    s = DueSchedule(per_tick=100)
    s.track(0, "a", _head(0))
    s.track(b_on, "b", _head(0))
    s.track(2, "c", _head(60))
    return s


def test_partitions_are_checked_apart():
    s = _three_partitions(b_on=3)
    now = T0 + timedelta(seconds=1)
    assert _ids(s.pop_due(3, now)) == ["b"]
    assert _ids(s.pop_due(2, now)) == []  # not yet due
    assert _ids(s.pop_due(1, now)) == []  # nothing there
    assert _ids(s.pop_due(0, now)) == ["a"]


def test_one_tick_in_flight_per_partition_until_handled_or_lost():
    s = _three_partitions(b_on=1)
    now = T0 + timedelta(seconds=1)
    assert sorted(s.to_tick(now, mono=100.0)) == [0, 1]
    assert s.to_tick(now, mono=100.1) == []  # in flight: not sent twice
    s.ticked(1, mono=100.2, again=False)  # handled with nothing more due... but "b" was never popped here
    assert s.to_tick(now, mono=100.3) == [1]
    assert s.to_tick(now, mono=100.0 + DueSchedule.TICK_LOST_S) == [0]  # never handled: sent again


def test_a_handler_that_sends_the_next_tick_keeps_the_partition_in_flight():
    s = _schedule(3)
    now = T0 + timedelta(minutes=1)
    assert s.to_tick(now, mono=1.0) == [0]
    s.ticked(0, mono=1.5, again=True)
    assert s.to_tick(now, mono=2.0) == []
    assert s.to_tick(now, mono=1.5 + DueSchedule.TICK_LOST_S) == [0]


def test_a_rebuild_forgets_the_ticks_in_flight_and_keeps_each_incidents_partition():
    s = _schedule(2)
    s.to_tick(T0 + timedelta(minutes=1), mono=1.0)
    raw = b'["2026-11-22T01:30:00+00:00", "\xe4\xb8\x89\xe7\xba\xa7", ["phone_report"]]\n{}'
    assert s.rebuild([(2, "x", raw), (1, "y", raw)], load_plan()) == 2
    assert s.ticking == {}
    assert _ids(s.pop_due(2, T0)) == ["x"] and _ids(s.pop_due(1, T0)) == ["y"] and _ids(s.pop_due(0, T0)) == []


def test_an_ended_incident_leaves_the_gauges_but_its_due_time_stays():
    s = DueSchedule(per_tick=100)
    s.track(0, "i0", _head(0))
    assert s.summary == {"i0": ("三级", ("phone_report",))}
    s.track(0, "i0", Head(due=None, level=None, open_kinds=()))
    assert s.summary == {} and len(s.heaps[0]) == 1


def test_partition_of_is_the_producers_default_partitioner():
    """The memory store's rebuild places an incident where its reports and commands land."""
    parts = list(range(INCIDENTS_REPORTED.partitions))
    for i in range(200):
        iid = f"r-{i:05d}-x"
        assert partition_of(iid) == DefaultPartitioner()(iid.encode(), parts, parts)
