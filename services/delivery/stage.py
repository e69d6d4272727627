"""The delivery stage (issue 19 item 2): its own process and consumer group, so a slow mail server
never holds back a decision. It reads the notices (live and drill) and the deliveries topic, and for
each notice does what playbooks/delivery/book.py says: tries on the channels, ladder steps, steps
that reach nobody.

Its truth is the deliveries topic alone, keyed by the notice's dedup_key and on the notice's own
partition number. When it is given a partition it reads that partition of the deliveries topic from
the beginning into books (one per notice) before doing anything for it: a try recorded `attempted`
with no result is then known to be in doubt, and resent marked 【重发】; a retry or a ladder step
due while it was down is due now (durable timers: the records' own times, never a sleep). Every
record is written, and acknowledged by the broker, before the step that depends on it: `attempted`
before the send, the notice taken before its offset is committed.

Robots: one queue per robot keeps its limit (20 a minute); what waits for a place goes out as one
digest of at most max_bytes, every waiting notice in one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import heapq
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from pydantic import ValidationError

from playbooks.delivery.book import NoticeBook, Try, Unreachable, work
from playbooks.delivery.channels import ChannelsFile, RobotChannel
from playbooks.delivery.ladder import LadderFile, LadderStep
from services import metrics
from services.clock import Clock
from services.delivery.channels import Accepted, Channel, Failed, Outgoing, RobotSender, SendResult
from services.delivery.compose import Composer, base_time, seconds_since
from topics.catalog import DEAD_LETTERS, DELIVERIES, DRILL_NOTIFICATIONS, NOTIFICATIONS_REQUESTED
from topics.delivery import (
    AckRecord,
    DeliveryEvent,
    DeliveryRecord,
    DeliveryState,
    Undeliverable,
    delivery_id,
    undeliverable_id,
)
from topics.models import DeadLetter, NotificationRequested

log = structlog.get_logger("yingji", stage="delivery")
NOTICE_TOPICS = (NOTIFICATIONS_REQUESTED.name, DRILL_NOTIFICATIONS.name)
# one record to the producer, to an explicit partition; the awaitable resolves when the broker has it
Produce = Callable[[str, bytes, bytes, int], Awaitable[None]]
FAILING_AFTER = 5  # a channel whose last five results all failed is `failing` (gauge, alert)


class RobotQueue:
    """One robot's sends, in order, within its limit: when its minute is full, what waits goes out
    as one digest (≤ max_bytes, whole notices only) as soon as a place frees."""

    def __init__(self, sender: RobotSender) -> None:
        self.sender = sender
        self.items: deque[tuple[Outgoing, asyncio.Future]] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def send(self, message: Outgoing) -> tuple[SendResult, int]:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.run(), name=f"robot-{self.sender.id}")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.items.append((message, future))
        self.wake.set()
        return await future

    def _group(self) -> list[tuple[Outgoing, asyncio.Future]]:
        group = [self.items.popleft()]
        while self.items and self.sender.content_bytes([m for m, _ in group] + [self.items[0][0]]) <= self.sender.max_bytes:
            group.append(self.items.popleft())
        return group

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.items:
                wait = self.sender.limiter.retry_after()
                if wait > 0:
                    await asyncio.sleep(min(wait, 1.0))
                    continue
                group = self._group()
                try:
                    result = await self.sender.send_digest([m for m, _ in group])
                except Exception as exc:  # noqa: BLE001 - every waiting send gets an answer
                    result = Failed(f"robot: {type(exc).__name__}", retryable=True)
                if isinstance(result, Failed) and "errcode 45009" in result.reason:
                    self.sender.limiter.fill()  # the robot counts sends we no longer remember (a restart)
                for _, future in group:
                    if not future.done():
                        future.set_result((result, len(group)))


@dataclass
class Partition:
    books: dict[str, NoticeBook] = field(default_factory=dict)
    ready: bool = False


class DeliveryStage:
    def __init__(self, *, bootstrap: str, group: str, channels: ChannelsFile, ladder: LadderFile,
                 senders: dict[str, Channel], composer: Composer, clock: Clock, produce: Produce,
                 ready: Callable[[], Awaitable[None]] | None = None, instance_id: str | None = None,
                 max_in_flight: int = 200, channel_concurrency: int = 16) -> None:
        self.bootstrap, self.group, self.instance_id = bootstrap, group, instance_id
        self.max_in_flight, self.channel_concurrency = max_in_flight, channel_concurrency
        self.gates = {cid: asyncio.Semaphore(channel_concurrency) for cid in senders}
        self.channels, self.ladder, self.senders, self.composer = channels, ladder, senders, composer
        self.clock, self.produce = clock, produce
        self.ready = ready  # awaited before the first notice: the rosters and the plan in force read
        self.robots = {cid: RobotQueue(s) for cid, s in senders.items() if isinstance(s, RobotSender)}
        self.retired: list[RobotQueue] = []  # a robot's queue before a revision rebuilt its sender: drains, then stops
        self.parts: dict[int, Partition] = {}
        self.in_flight: set[str] = set()
        self.dirty: set[tuple[int, str]] = set()
        self.due: list[tuple[datetime, int, str]] = []
        self.tasks: set[asyncio.Task] = set()
        self.recent: dict[str, deque[bool]] = {cid: deque(maxlen=FAILING_AFTER) for cid in senders}
        self.consumer: AIOKafkaConsumer | None = None
        self.to_rebuild: set[int] = set()  # partitions given to this process and not yet read back

    def changed_channels(self, channels: ChannelsFile) -> set[str]:
        """The channels of a revision's channels.yaml that are new or set otherwise than those in use."""
        old = {c.id: c for c in self.channels.channels}
        return {c.id for c in channels.channels if old.get(c.id) != c}

    def use(self, channels: ChannelsFile, ladder: LadderFile, senders: dict[str, Channel] | None = None) -> None:
        """A plan revision's channels.yaml and ladder.yaml (issue 24 item 3): the routes, retries and drill
        addresses a notice is taken and tried by, the ladder's pace and steps, and `senders` built again for the
        channels it set otherwise (changed_channels), from the next tick on. Every notice held is looked at
        again: a step due later under the old pace may be due now under the new one. A send under way finishes
        on the sender it began on."""
        senders = senders or {}
        kept = sorted(cid for cid in self.changed_channels(channels) if cid in self.senders and cid not in senders)
        if kept:  # not built again (its secret missing, say): it keeps sending as set before
            log.warning("channel_settings_not_switched", channels=kept, fix="set its secrets, restart the stage")
        for cid, sender in senders.items():
            self.senders[cid] = sender
            self.gates.setdefault(cid, asyncio.Semaphore(self.channel_concurrency))
            self.recent.setdefault(cid, deque(maxlen=FAILING_AFTER))
            old = self.robots.pop(cid, None)
            if old is not None:
                self.retired.append(old)
            if isinstance(sender, RobotSender):
                if old is not None and old.sender.limiter.same_rate(sender.limiter):
                    sender.limiter = old.sender.limiter  # the robot counts the last minute's sends: so do we
                self.robots[cid] = RobotQueue(sender)
        self.composer.built |= set(senders)
        self.channels, self.ladder = channels, ladder
        self.composer.channels = channels
        self.dirty.update((p, key) for p, part in self.parts.items() for key in part.books)

    # --- folding ---------------------------------------------------------------------------

    def book(self, partition: int, key: str) -> NoticeBook:
        part = self.parts.setdefault(partition, Partition())
        found = part.books.get(key)
        if found is None:
            found = part.books[key] = NoticeBook(key)
        return found

    def fold(self, partition: int, event: DeliveryEvent, *, live: bool) -> None:
        book = self.book(partition, event.dedup_key)
        first_ack = book.acknowledged is None
        if book.apply(event.body):
            self.dirty.add((partition, event.dedup_key))
            if live and isinstance(event.body, AckRecord) and first_ack and book.taken is not None \
                    and book.acknowledged is not None:
                metrics.ACK_SECONDS.observe(seconds_since(book.taken.notice.requested_at, event.body.at))
                log.info("acknowledged", incident_id=book.taken.notice.incident_id, dedup_key=event.dedup_key,
                         how=event.body.how.value)

    async def write(self, partition: int, body) -> None:
        """Onto the deliveries topic (acknowledged by the broker), then folded."""
        event = DeliveryEvent.of(body)
        await self.produce(DELIVERIES.name, event.dedup_key.encode(), event.model_dump_json().encode(), partition)
        self.fold(partition, event, live=False)

    # --- the partitions ----------------------------------------------------------------------

    async def rebuild(self, partitions: list[int]) -> None:
        """The deliveries topic's partitions read from the beginning to their ends, into books."""
        tps = [TopicPartition(DELIVERIES.name, p) for p in partitions]
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await reader.start()
        try:
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            ends = await reader.end_offsets(tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            while pending:
                batches = await reader.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    for r in records:
                        self._fold_raw(tp.partition, r.value, r.offset, live=False)
                pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
        finally:
            await reader.stop()
        for p in partitions:
            part = self.parts.setdefault(p, Partition())
            part.ready = True
            self.dirty.update((p, key) for key in part.books)
            tp = TopicPartition(DELIVERIES.name, p)
            if self.consumer is not None and tp in self.consumer.assignment():  # read on from where the rebuild ended
                self.consumer.seek(tp, ends[tp])
        log.info("partitions_rebuilt", partitions=partitions,
                 notices=sum(len(self.parts[p].books) for p in partitions))

    def revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            self.parts.pop(p, None)
        self.dirty = {(p, k) for p, k in self.dirty if p in self.parts}

    def _fold_raw(self, partition: int, raw: bytes, offset: int, *, live: bool) -> None:
        try:
            event = DeliveryEvent.model_validate_json(raw)
        except ValidationError as exc:
            # the topic's writers validate first; a record failing here was written by something else
            log.error("bad_delivery_record", partition=partition, offset=offset, error=type(exc).__name__)
            return
        self.fold(partition, event, live=live)

    # --- the notices ---------------------------------------------------------------------------

    async def take(self, topic: str, partition: int, raw: bytes, offset: int) -> bool:
        """False: not taken now (its partition is not read back yet); it is read again."""
        part = self.parts.get(partition)
        if part is None or not part.ready:
            # fetched just before a rebalance took the partition back: read again once it is rebuilt
            if self.consumer is not None and TopicPartition(topic, partition) in self.consumer.assignment():
                self.consumer.seek(TopicPartition(topic, partition), offset)
            return False
        try:
            notice = NotificationRequested.model_validate_json(raw)
        except ValidationError as exc:
            await self._dead(topic, partition, offset, raw, f"not a notice: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
            return True
        book = self.book(partition, notice.dedup_key)
        if book.taken is not None:
            return True  # read again after a restart: taken once
        taken = self.composer.take(notice, self.clock.now())
        await self.write(partition, taken)
        return True

    async def _dead(self, topic: str, partition: int, offset: int, raw: bytes, reason: str) -> None:
        now = self.clock.now()
        letter = DeadLetter(id=f"dl-{topic}-{partition}-{offset}-delivery", source_topic=topic, partition=partition,
                            offset=offset, stage="delivery", reason=reason[:4000],
                            original_b64=base64.b64encode(raw).decode(), failed_at=now)
        await self.produce(DEAD_LETTERS.name, letter.id.encode(), letter.model_dump_json().encode(), 0)

    # --- the work --------------------------------------------------------------------------

    async def tick(self) -> None:
        """Every book changed or due: its work started (tries run as tasks; steps written here)."""
        now = self.clock.now()
        while self.due and self.due[0][0] <= now:
            _, p, key = heapq.heappop(self.due)
            self.dirty.add((p, key))
        rounds = 0
        while self.dirty and rounds < 3:  # a step written makes its own sends due at once
            rounds += 1
            batch, self.dirty = self.dirty, set()
            for p, key in sorted(batch, key=self._age):
                if len(self.in_flight) >= self.max_in_flight:
                    self.dirty.add((p, key))  # its turn comes when tries finish (their end marks it again)
                    continue
                part = self.parts.get(p)
                if part is None or not part.ready or key not in part.books:
                    continue
                await self._work(p, part.books[key], now)
            if len(self.in_flight) >= self.max_in_flight:
                break

    def _age(self, item: tuple[int, str]) -> datetime:
        """Oldest notice first when tries must wait their turn."""
        part = self.parts.get(item[0])
        book = part.books.get(item[1]) if part else None
        return book.taken.notice.requested_at if book is not None and book.taken is not None else datetime.max.replace(
            tzinfo=self.clock.now().tzinfo)

    async def _work(self, p: int, book: NoticeBook, now: datetime) -> None:
        w = work(book, now, channels=self.channels, ladder=self.ladder, in_flight=self.in_flight)
        for t in w.tries:
            self.in_flight.add(t.send_id)
            task = asyncio.create_task(self._try(p, book, t))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        for u in w.unreachable:
            await self._unreachable(p, book, u, now)
        for step in w.ladder:
            await self._step(p, book, step, now)
        if w.next_at is not None:
            heapq.heappush(self.due, (w.next_at, p, book.dedup_key))

    async def _unreachable(self, p: int, book: NoticeBook, u: Unreachable, now: datetime) -> None:
        notice = book.taken.notice  # type: ignore[union-attr]
        rec = Undeliverable(id=undeliverable_id(book.dedup_key, u.step), dedup_key=book.dedup_key, step=u.step,
                            incident_id=notice.incident_id, person_id=u.person_id, reason=u.reason, at=now,
                            drill=notice.drill)
        await self.write(p, rec)
        await self._dead(NOTIFICATIONS_REQUESTED.name, p, -1, notice.model_dump_json().encode(),
                         f"undeliverable: step {u.step} of {book.dedup_key}: {u.reason}")
        metrics.UNDELIVERABLE.labels(drill=str(notice.drill).lower()).inc()
        log.warning("undeliverable", incident_id=notice.incident_id, dedup_key=book.dedup_key, step=u.step)

    async def _step(self, p: int, book: NoticeBook, step: LadderStep, now: datetime) -> None:
        notice = book.taken.notice  # type: ignore[union-attr]
        await self.write(p, self.composer.step_taken(step, notice, now))
        metrics.LADDER_STEPS.labels(step=str(step.n), drill=str(notice.drill).lower()).inc()
        log.info("ladder_step", incident_id=notice.incident_id, dedup_key=book.dedup_key, step=step.n)

    def _delivered_on_accept(self, channel: str) -> bool:
        config = next((c for c in self.channels.channels if c.id == channel), None)
        return isinstance(config, RobotChannel) and config.delivered_on_accept.value

    def _record(self, book: NoticeBook, t: Try, attempt: int, state: DeliveryState, now: datetime, **extra) -> DeliveryRecord:
        notice = book.taken.notice  # type: ignore[union-attr]
        return DeliveryRecord(id=delivery_id(book.dedup_key, t.step, t.person_id, t.channel, attempt, state),
                              dedup_key=book.dedup_key, step=t.step, notice_id=notice.id, incident_id=notice.incident_id,
                              person_id=t.person_id, channel=t.channel, attempt=attempt, state=state, at=now,
                              drill=notice.drill, **extra)

    async def _try(self, p: int, book: NoticeBook, t: Try) -> None:
        notice = book.taken.notice  # type: ignore[union-attr]
        drill = str(notice.drill).lower()
        bound = log.bind(incident_id=notice.incident_id, dedup_key=book.dedup_key, channel=t.channel, step=t.step)
        try:
            if t.in_doubt is not None:
                await self.write(p, self._record(book, t, t.in_doubt, DeliveryState.IN_DOUBT, self.clock.now(),
                                                 reason=t.reason))
                metrics.DELIVERIES.labels(channel=t.channel, outcome="in_doubt", drill=drill).inc()
                bound.warning("in_doubt", attempt=t.in_doubt)
            message = self.composer.outgoing(book, t, self.clock.now())
            await self.write(p, self._record(book, t, t.attempt, DeliveryState.ATTEMPTED, self.clock.now(), resend=t.resend))
            metrics.DELIVERIES.labels(channel=t.channel, outcome="attempted", drill=drill).inc()
            digest = 1
            if message is None:
                result: SendResult = Failed("no contact on the channel any more (the directory changed)", retryable=False)
            elif t.channel in self.robots:
                result, digest = await self.robots[t.channel].send(message)
            elif t.channel in self.senders:
                async with self.gates[t.channel]:
                    result = await self.senders[t.channel].send(message)
            else:
                result = Failed(f"channel {t.channel} not configured in this process", retryable=False)
            now = self.clock.now()
            if isinstance(result, Accepted):
                rec = self._record(book, t, t.attempt, DeliveryState.ACCEPTED, now, provider_id=result.provider_id[:200],
                                   resend=t.resend, digest=digest)
                metrics.DELIVERY_SEND_SECONDS.labels(channel=t.channel).observe(seconds_since(base_time(book, t.step), now))
            else:
                rec = self._record(book, t, t.attempt, DeliveryState.FAILED, now, reason=result.reason[:4000],
                                   retryable=result.retryable, resend=t.resend)
            if t.channel in self.recent:
                self.recent[t.channel].append(isinstance(result, Accepted))
            await self.write(p, rec)
            metrics.DELIVERIES.labels(channel=t.channel, outcome=rec.state.value, drill=drill).inc()
            if isinstance(result, Accepted) and self._delivered_on_accept(t.channel):
                # a robot's errcode 0: the post is in the group, before the person (channels.yaml)
                await self.write(p, self._record(book, t, t.attempt, DeliveryState.DELIVERED, now,
                                                 provider_id=result.provider_id[:200], resend=t.resend, digest=digest))
                metrics.DELIVERIES.labels(channel=t.channel, outcome="delivered", drill=drill).inc()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the try stays `attempted`: in doubt, resent, never lost
            bound.error("try_failed", error=type(exc).__name__)
        finally:
            self.in_flight.discard(t.send_id)
            self.dirty.add((p, book.dedup_key))

    # --- gauges ---------------------------------------------------------------------------

    def refresh_gauges(self) -> None:
        pending = past = 0
        steps = len(self.ladder.steps.value)
        for part in self.parts.values():
            for book in part.books.values():
                if book.taken is None or book.taken.drill or book.acknowledged is not None:
                    continue
                if len(book.steps) >= steps:
                    past += 1
                else:
                    pending += 1
        metrics.NOTICES_UNACKNOWLEDGED.labels(state="pending").set(pending)
        metrics.NOTICES_UNACKNOWLEDGED.labels(state="past_ladder").set(past)
        for cid, recent in self.recent.items():
            metrics.CHANNEL_FAILING.labels(channel=cid).set(
                1 if len(recent) == FAILING_AFTER and not any(recent) else 0)

    # --- the loop ----------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        if self.ready is not None:
            await self.ready()  # contacts come from the directory; the plan from its adoptions
        stage = self

        class Listener(ConsumerRebalanceListener):
            """Paused until rebuilt: the rebuild runs in the loop (and is retried there), not in the
            callback, whose failure aiokafka would only log."""

            async def on_partitions_revoked(self, revoked):
                gone = {tp.partition for tp in revoked}
                stage.revoke(sorted(gone))
                stage.to_rebuild -= gone

            async def on_partitions_assigned(self, assigned):
                if assigned:
                    consumer.pause(*assigned)
                    stage.to_rebuild |= {tp.partition for tp in assigned}

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group, enable_auto_commit=False,
            auto_offset_reset="earliest", partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=500, group_instance_id=self.instance_id)
        self.consumer = consumer
        await consumer.start()
        consumer.subscribe(topics=[*NOTICE_TOPICS, DELIVERIES.name], listener=Listener())
        last_gauges = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not stopping.is_set():
                if self.to_rebuild:
                    parts = sorted(self.to_rebuild)
                    try:
                        await self.rebuild(parts)
                    except Exception as exc:  # noqa: BLE001 - broker away: try again, act on nothing meanwhile
                        log.warning("rebuild_retry", error=type(exc).__name__)
                        await asyncio.sleep(1)
                        continue
                    self.to_rebuild -= set(parts)
                    consumer.resume(*[tp for tp in consumer.assignment() if tp.partition in parts])
                batches = await consumer.getmany(timeout_ms=100, max_records=500)
                took = False
                for tp, records in batches.items():
                    for r in records:
                        if tp.topic == DELIVERIES.name:
                            self._fold_raw(tp.partition, r.value, r.offset, live=True)
                        elif not await self.take(tp.topic, tp.partition, r.value, r.offset):
                            break  # the rest of this partition's batch is read again too
                        else:
                            took = True
                if took:
                    await consumer.commit()  # the notices taken are on the deliveries topic already
                await self.tick()
                if loop.time() - last_gauges > 5:
                    last_gauges = loop.time()
                    self.refresh_gauges()
        finally:
            for task in list(self.tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*self.tasks, return_exceptions=True)
            for robot in [*self.robots.values(), *self.retired]:
                if robot.task is not None:
                    robot.task.cancel()
            with contextlib.suppress(Exception):
                await consumer.stop()
