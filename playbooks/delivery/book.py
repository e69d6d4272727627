"""One notice's deliveries, folded from the deliveries topic, and what to do about them now (issue 19
item 2): pure. The delivery stage (services/delivery/stage.py) folds every record of a notice into a
NoticeBook and asks `work(book, now, ...)`; it answers the tries to make, the ladder steps to take and
the steps that reached nobody, each with its reasons, and when to ask again.

A send is (notice, step, person, channel). Its tries:
- none yet: try 1;
- the last try recorded `attempted` and not in flight in this process: the process that made it
  stopped before the result, so the send is recorded in doubt and tried again marked 【重发】;
- failed, retryable, tries left: again after channels.yaml's backoff (a durable timer: the failure's
  own time plus the wait, whenever the stage looks);
- failed for good: the person's next spare channel (channels.yaml failover) takes its place;
- accepted or delivered: done.
When every channel of a step failed for good (or the step had nobody), the step is undeliverable:
recorded, dead-lettered by the shell, and the ladder's next step is taken at once. An ack (已阅) of
the notice stops every try and step not yet made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from playbooks.delivery.channels import ChannelsFile
from playbooks.delivery.ladder import LadderFile, LadderStep, ladder_due, next_due_at, step_at_once
from topics.delivery import (
    AckHow,
    AckRecord,
    DeliveryRecord,
    DeliveryState,
    LadderStepTaken,
    NoticeTaken,
    Undeliverable,
    send_id,
)

DONE = {DeliveryState.ACCEPTED, DeliveryState.DELIVERED}


@dataclass
class SendState:
    """The latest of a send's records."""

    step: int
    person_id: str
    channel: str
    attempt: int
    state: DeliveryState
    at: datetime
    retryable: bool = False
    first_attempt_at: datetime | None = None
    done_at: datetime | None = None


@dataclass
class NoticeBook:
    """Everything the deliveries topic says about one notice."""

    dedup_key: str
    taken: NoticeTaken | None = None
    sends: dict[str, SendState] = field(default_factory=dict)
    acks: dict[str, AckRecord] = field(default_factory=dict)
    steps: dict[int, LadderStepTaken] = field(default_factory=dict)
    undeliverable: dict[int, Undeliverable] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def apply(self, body: DeliveryRecord | AckRecord | LadderStepTaken | NoticeTaken | Undeliverable) -> bool:
        """Fold one record; False when it was folded before (a record read twice changes nothing)."""
        if body.id in self.seen:
            return False
        self.seen.add(body.id)
        if isinstance(body, NoticeTaken):
            self.taken = self.taken or body
        elif isinstance(body, AckRecord):
            self.acks[body.id] = body
        elif isinstance(body, LadderStepTaken):
            self.steps.setdefault(body.step, body)
        elif isinstance(body, Undeliverable):
            self.undeliverable.setdefault(body.step, body)
        else:
            self._apply_send(body)
        return True

    def _apply_send(self, rec: DeliveryRecord) -> None:
        sid = rec.send_id
        cur = self.sends.get(sid)
        if cur is None:
            self.sends[sid] = SendState(rec.step, rec.person_id, rec.channel, rec.attempt, rec.state, rec.at,
                                        rec.retryable, first_attempt_at=rec.at,
                                        done_at=rec.at if rec.state in DONE else None)
            return
        if cur.state in DONE and rec.state is not DeliveryState.DELIVERED:
            return  # done stays done (a late record of an earlier try)
        if (rec.attempt, _ORDER[rec.state]) < (cur.attempt, _ORDER[cur.state]):
            return  # an older record read late
        cur.attempt, cur.state, cur.at, cur.retryable = rec.attempt, rec.state, rec.at, rec.retryable
        if rec.state in DONE and cur.done_at is None:
            cur.done_at = rec.at

    @property
    def acknowledged(self) -> AckRecord | None:
        """The first ack of the notice itself (a test message's ack verifies a contact only)."""
        mine = [a for a in self.acks.values() if a.how != AckHow.TEST]
        return min(mine, key=lambda a: (a.at, a.id)) if mine else None

    def targets(self) -> list[tuple[int, str | None, list[str], list[str]]]:
        """(step, person, channels, spare channels) of the notice and of each ladder step taken."""
        out: list[tuple[int, str | None, list[str], list[str]]] = []
        if self.taken is not None:
            out.append((0, self.taken.person_id, list(self.taken.channels), list(self.taken.spare)))
        for n in sorted(self.steps):
            s = self.steps[n]
            out.append((n, s.person_id, list(s.channels), list(s.spare)))
        return out


_ORDER = {DeliveryState.ATTEMPTED: 0, DeliveryState.IN_DOUBT: 1, DeliveryState.FAILED: 2,
          DeliveryState.ACCEPTED: 3, DeliveryState.DELIVERED: 4}


@dataclass(frozen=True)
class Try:
    """One try to make now. `in_doubt`: the attempt to record in doubt first (its result never came)."""

    send_id: str
    step: int
    person_id: str
    channel: str
    attempt: int
    resend: bool
    in_doubt: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Unreachable:
    step: int
    person_id: str | None
    reason: str


@dataclass
class Work:
    tries: list[Try] = field(default_factory=list)
    ladder: list[LadderStep] = field(default_factory=list)
    unreachable: list[Unreachable] = field(default_factory=list)
    next_at: datetime | None = None

    def later(self, at: datetime | None) -> None:
        if at is not None and (self.next_at is None or at < self.next_at):
            self.next_at = at


def _step_sends(book: NoticeBook, step: int, person: str, channels: list[str], spare: list[str], now: datetime,
                in_flight: set[str], config: ChannelsFile, work: Work) -> bool:
    """The tries of one step's person due now (into `work`); True when every channel failed for good."""
    queue = list(channels)
    spares = list(spare)
    failed_for_good = 0
    i = 0
    while i < len(queue):
        channel = queue[i]
        i += 1
        sid = send_id(book.dedup_key, step, person, channel)
        cur = book.sends.get(sid)
        if sid in in_flight:
            continue  # a try under way in this process: its records are coming
        if cur is None:
            work.tries.append(Try(sid, step, person, channel, 1, resend=False))
            continue
        if cur.state in DONE:
            continue
        if cur.state is DeliveryState.ATTEMPTED:
            work.tries.append(Try(sid, step, person, channel, cur.attempt + 1, resend=True, in_doubt=cur.attempt,
                                  reason="no result recorded for the try: the stage stopped between attempt and result"))
            continue
        if cur.state is DeliveryState.IN_DOUBT:
            work.tries.append(Try(sid, step, person, channel, cur.attempt + 1, resend=True))
            continue
        # failed
        if cur.retryable and cur.attempt < config.retry.tries.value:
            due = cur.at + timedelta(seconds=config.retry.wait_after(cur.attempt))
            if due <= now:
                work.tries.append(Try(sid, step, person, channel, cur.attempt + 1, resend=False))
            else:
                work.later(due)
            continue
        failed_for_good += 1
        if spares:  # failover: the person's next channel takes this one's place
            queue.append(spares.pop(0))
    return failed_for_good == len(queue)


def work(book: NoticeBook, now: datetime, *, channels: ChannelsFile, ladder: LadderFile,
         in_flight: set[str]) -> Work:
    """What to do for the notice now: tries, ladder steps, steps that reach nobody; and when to look again."""
    if now.tzinfo is None:
        raise ValueError("now: must carry its timezone")
    out = Work()
    taken = book.taken
    if taken is None or book.acknowledged is not None:
        return out  # not taken yet (its record will come), or read: nothing more to send
    for step, person, chans, spare in book.targets():
        if step in book.undeliverable:
            continue
        if person is None:
            out.unreachable.append(Unreachable(step, None, "nobody on duty for the post at the time"))
            continue
        if not chans:
            out.unreachable.append(Unreachable(step, person, "the person has no contact on any channel"))
            continue
        if _step_sends(book, step, person, chans, spare, now, in_flight, channels, out):
            out.unreachable.append(Unreachable(step, person, "every channel of the person failed for good"))
    notice = taken.notice
    if notice.kind == "test":
        return out  # a test message checks a contact: no ladder behind it
    acks = list(book.acks.values())
    done = set(book.steps)
    out.ladder.extend(ladder_due(notice, level=notice.level, acks=acks, steps_done=done, now=now, config=ladder))
    # a step that reaches nobody sends the next one at once (and not only once its minutes are up)
    dead = sorted({*book.undeliverable, *(u.step for u in out.unreachable)})
    if dead and not any(s.n == dead[-1] + 1 for s in out.ladder):
        nxt = step_at_once(notice, level=notice.level, acks=acks, steps_done=done, failed_step=dead[-1], now=now,
                           config=ladder)
        if nxt is not None:
            out.ladder.append(nxt)
    out.later(next_due_at(notice, level=notice.level, acks=acks, steps_done=done | {s.n for s in out.ladder},
                          config=ladder))
    return out
