"""The worker's stall watchdog: lag and no progress for the limit is a stall; anything else is not."""

from services.worker.watchdog import StallWatch


def test_lag_without_progress_for_the_limit_is_a_stall():
    w = StallWatch(stall_after_s=30)
    assert w.check(unread=5, now=100.0) is None  # first sight of lag starts the clock
    assert w.check(unread=5, now=129.9) is None
    assert w.check(unread=5, now=130.0) == 30.0


def test_progress_restarts_the_clock():
    w = StallWatch(stall_after_s=30)
    w.check(unread=5, now=100.0)
    w.note("tp0", 7)
    assert w.check(unread=4, now=131.0) is None
    assert w.check(unread=4, now=160.0) is None
    assert w.check(unread=4, now=161.0) == 30.0


def test_no_lag_is_never_a_stall_however_long_idle():
    w = StallWatch(stall_after_s=30)
    for t in range(0, 1000, 10):
        assert w.check(unread=0, now=float(t)) is None


def test_a_rebalance_or_recovery_pauses_the_clock():
    w = StallWatch(stall_after_s=30)
    w.check(unread=5, now=100.0)
    w.pause()
    assert w.check(unread=5, now=140.0) is None
    assert w.check(unread=5, now=170.0) == 30.0


def test_unread_counts_from_own_position_else_the_committed_offset():
    w = StallWatch(stall_after_s=30)
    w.note("a", 9)  # next to process on a: 10
    ends = {"a": 12, "b": 5, "c": 3}
    assert w.unread(ends, committed={"a": 4, "b": 2, "c": None}) == (12 - 10) + (5 - 2) + (3 - 0)
    assert w.unread({"a": 10}, committed={}) == 0


def test_a_new_assignment_forgets_positions():
    w = StallWatch(stall_after_s=30)
    w.note("a", 9)
    w.check(unread=3, now=1.0)
    w.reassigned()
    assert w.unread({"a": 20}, committed={"a": 20}) == 0
    assert w.check(unread=3, now=100.0) is None


def test_records_must_arrive_in_order_from_the_committed_offset():
    w = StallWatch(stall_after_s=30)
    assert w.skipped("a", 4, committed=4) is None  # the first record is the committed one
    assert w.skipped("b", 7, committed=4) == 4  # 4, 5, 6 never handed over
    assert w.skipped("c", 0, committed=None) is None  # nothing committed yet: nothing to compare
    w.note("a", 4)
    assert w.skipped("a", 5, committed=4) is None
    assert w.skipped("a", 9, committed=4) == 6
    w.note("a", 5)
    assert w.skipped("a", 3, committed=4) is None  # a redelivery is handled again (idempotent)
    w.note("a", 3)
    assert w.positions["a"] == 6


def test_a_batch_is_checked_record_by_record_before_it_is_processed():
    w = StallWatch(stall_after_s=30)
    assert [w.skipped("a", o, committed=10) for o in (10, 11, 12)] == [None, None, None]
    assert w.skipped("a", 14, committed=10) == 13  # 13 never handed over, though 10-12 are unprocessed
    assert w.unread({"a": 15}, committed={"a": 10}) == 5  # nothing processed yet: the commit counts
    for o in (10, 11, 12):
        w.note("a", o)
    assert w.unread({"a": 15}, committed={"a": 10}) == 2
    assert w.skipped("a", 12, committed=10) is None  # a redelivery is no gap
