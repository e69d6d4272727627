"""playbooks/delivery/book.py: a notice's deliveries folded, and what to do now. One row per rule of
issue 19 item 2 (tries, in doubt, backoff, failover, undeliverable) and item 4 (the ladder, the ack)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from playbooks.delivery.book import NoticeBook, work
from playbooks.delivery.channels import load_channels
from playbooks.delivery.ladder import load_ladder
from topics.delivery import (
    AckHow,
    AckRecord,
    DeliveryRecord,
    DeliveryState,
    LadderStepTaken,
    NoticeTaken,
    ack_id,
    delivery_id,
    ladder_step_id,
    send_id,
    taken_id,
)
from topics.models import NotificationRequested, Post, ResponseLevel

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)
KEY = "i-1.notify.u1"
CHANNELS = load_channels()
LADDER = load_ladder()


def notice(level=ResponseLevel.LEVEL_1) -> NotificationRequested:
    return NotificationRequested(id=KEY, dedup_key=KEY, incident_id="i-1", unit_id="u1", unit="区应急局", kind="routing",
                                 level=level, why="一级响应", rule="r", section="4.3.1", requested_at=T0)


def taken(person="p1", channels=("email", "wecom"), spare=(), level=ResponseLevel.LEVEL_1) -> NoticeTaken:
    return NoticeTaken(id=taken_id(KEY), dedup_key=KEY, notice=notice(level), person_id=person, channels=list(channels),
                       spare=list(spare), rule="r", at=T0)


def rec(channel, attempt, state, at=T0, step=0, person="p1", retryable=False) -> DeliveryRecord:
    extra = {"provider_id": "x"} if state == DeliveryState.ACCEPTED else {}
    if state in (DeliveryState.FAILED, DeliveryState.IN_DOUBT):
        extra["reason"] = "r"
    return DeliveryRecord(id=delivery_id(KEY, step, person, channel, attempt, state), dedup_key=KEY, step=step,
                          notice_id=KEY, incident_id="i-1", person_id=person, channel=channel, attempt=attempt,
                          state=state, at=at, retryable=retryable, **extra)


def book(*records) -> NoticeBook:
    b = NoticeBook(KEY)
    for r in records:
        b.apply(r)
    return b


def tries(w):
    return sorted((t.channel, t.attempt, t.resend, t.in_doubt) for t in w.tries)


A, AC, F, D = DeliveryState.ATTEMPTED, DeliveryState.ACCEPTED, DeliveryState.FAILED, DeliveryState.IN_DOUBT
S = timedelta(seconds=1)

# (rule, records, now, in_flight, expected tries, expected unreachable steps, expected ladder steps)
ROWS = [
    ("item 2: a notice taken: try 1 on each channel", [taken()], T0, set(),
     [("email", 1, False, None), ("wecom", 1, False, None)], [], []),
    ("item 2: a try in flight waits for its result", [taken(), rec("email", 1, A), rec("wecom", 1, AC)], T0,
     {send_id(KEY, 0, "p1", "email")}, [], [], []),
    ("item 2: attempted, no result, not in flight: in doubt, resent 【重发】",
     [taken(), rec("email", 1, A), rec("wecom", 1, AC)], T0, set(), [("email", 2, True, 1)], [], []),
    ("item 2: recorded in doubt, its resend not yet made: made", [taken(), rec("email", 1, A), rec("email", 1, D),
                                                                   rec("wecom", 1, AC)], T0, set(), [("email", 2, True, None)], [], []),
    ("item 2: failed, retryable: not before its backoff (10 s)",
     [taken(), rec("email", 1, F, retryable=True), rec("wecom", 1, AC)], T0 + 9 * S, set(), [], [], []),
    ("item 2: failed, retryable: again after its backoff",
     [taken(), rec("email", 1, F, retryable=True), rec("wecom", 1, AC)], T0 + 10 * S, set(), [("email", 2, False, None)], [], []),
    ("item 2: failed on the last try: failed for good, the spare channel takes over",
     [taken(spare=["sms"]), rec("email", 4, F, retryable=True), rec("wecom", 1, AC)], T0 + 60 * S, set(),
     [("sms", 1, False, None)], [], []),
    ("item 2: refused (not retryable): failed for good at once, failover",
     [taken(spare=["sms"]), rec("email", 1, F), rec("wecom", 1, AC)], T0, set(), [("sms", 1, False, None)], [], []),
    ("item 2: every channel failed for good: undeliverable, the ladder's step 1 at once",
     [taken(), rec("email", 1, F), rec("wecom", 1, F)], T0 + S, set(), [], [0], [1]),
    ("item 4: nobody on duty: undeliverable, step 1 at once", [taken(person=None, channels=())], T0, set(), [], [0], [1]),
    ("item 4: no ack within 一级's 3 minutes: step 1", [taken(), rec("email", 1, AC), rec("wecom", 1, AC)],
     T0 + 180 * S, set(), [], [], [1]),
    ("item 4: not before its time", [taken(), rec("email", 1, AC), rec("wecom", 1, AC)], T0 + 179 * S, set(), [], [], []),
    ("item 4: 三级 waits 10 minutes", [taken(level=ResponseLevel.LEVEL_3), rec("email", 1, AC), rec("wecom", 1, AC)],
     T0 + 599 * S, set(), [], [], []),
    ("item 4: a timer late by 7 minutes takes steps 1 and 2, each once",
     [taken(), rec("email", 1, AC), rec("wecom", 1, AC)], T0 + 420 * S, set(), [], [], [1, 2]),
]


@pytest.mark.parametrize(("rule", "records", "now", "in_flight", "want_tries", "want_unreachable", "want_ladder"),
                         ROWS, ids=[r[0] for r in ROWS])
def test_work(rule, records, now, in_flight, want_tries, want_unreachable, want_ladder):
    w = work(book(*records), now, channels=CHANNELS, ladder=LADDER, in_flight=in_flight)
    assert tries(w) == sorted(want_tries)
    assert [u.step for u in w.unreachable] == want_unreachable
    assert [s.n for s in w.ladder] == want_ladder
    assert all(s.reasons for s in w.ladder)


def ack(how=AckHow.LINK) -> AckRecord:
    return AckRecord(id=ack_id(KEY, "p1", "link"), dedup_key=KEY, incident_id="i-1", person_id="p1", at=T0 + S,
                     how=how, by="link")


def test_an_ack_stops_every_try_and_step():
    b = book(taken(), rec("email", 1, F, retryable=True), ack())
    w = work(b, T0 + 3600 * S, channels=CHANNELS, ladder=LADDER, in_flight=set())
    assert (w.tries, w.ladder, w.unreachable, w.next_at) == ([], [], [], None)


def test_a_test_message_ack_does_not_stop_a_notice():
    b = book(taken(), rec("email", 1, AC), rec("wecom", 1, AC), ack(AckHow.TEST))
    assert [s.n for s in work(b, T0 + 180 * S, channels=CHANNELS, ladder=LADDER, in_flight=set()).ladder] == [1]


def test_a_step_taken_sends_to_its_person_and_is_taken_once():
    step = LadderStepTaken(id=ladder_step_id(KEY, 1), dedup_key=KEY, step=1, incident_id="i-1", unit_id="u1", role="值班主任",
                           post=Post.chief, person_id="p2", channels=["email"], at=T0 + 180 * S, recorded_at=T0 + 180 * S)
    b = book(taken(), rec("email", 1, AC), rec("wecom", 1, AC), step)
    w = work(b, T0 + 200 * S, channels=CHANNELS, ladder=LADDER, in_flight=set())
    assert [(t.step, t.person_id, t.channel) for t in w.tries] == [(1, "p2", "email")]
    assert w.ladder == []
    assert w.next_at == T0 + 360 * S  # step 2 at its own time


def test_next_at_is_the_earliest_retry_or_step():
    b = book(taken(), rec("email", 1, F, retryable=True), rec("wecom", 1, AC))
    assert work(b, T0, channels=CHANNELS, ladder=LADDER, in_flight=set()).next_at == T0 + 10 * S


def test_a_record_read_twice_changes_nothing_and_done_stays_done():
    b = book(taken(), rec("email", 1, AC))
    assert not b.apply(rec("email", 1, AC))
    b.apply(rec("email", 1, A))  # an earlier state read late
    sid = send_id(KEY, 0, "p1", "email")
    assert b.sends[sid].state is AC


def test_nothing_before_the_notice_is_taken():
    b = book(rec("email", 1, A))
    assert work(b, T0, channels=CHANNELS, ladder=LADDER, in_flight=set()).tries == []
