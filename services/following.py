"""Following a small topic from its beginning, as the API and the stages keep their books: every record
handed to `apply` in order, `caught_up` set once the ends seen at the start are reached (by position,
not by a record at end - 1: a log emptied by retention has none), and read again from the start when
the broker goes away.

`ReadProgress` says how far a book has read, so that a replica answers from the log and not from its
own memory: after it writes a record it waits until it has read that record back (what the log kept
first is then what it answers, on every replica alike), and before it says "unknown" (a token, an
incident, a drill run) it reads to the log's end as it is now (another replica may have written it a
moment ago)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

log = structlog.get_logger("yingji")
READ_BACK_S = 5.0  # longest a request waits for its book to read a record back (or to the log's end)


class ReadProgress:
    """Next offset to read, per partition, as the follow loop advances; waiting for an offset to be read."""

    def __init__(self) -> None:
        self.read: dict[TopicPartition, int] = {}
        self.consumer: AIOKafkaConsumer | None = None  # the follow loop's, while it runs
        self.partitions: list[TopicPartition] = []
        # The log's ends are asked on a connection of their own: on the follow loop's, the question waits behind
        # its long-poll fetch (the broker answers a connection's requests in order), so every "unknown" (a
        # 404 for an incident, a drill run, a token) took up to fetch.max.wait (500 ms) instead of ~1 ms.
        self.bootstrap: str | None = None
        self._probe: AIOKafkaConsumer | None = None
        self._moved = asyncio.Event()
        self._to_end: asyncio.Task | None = None

    def advance(self, tp: TopicPartition, next_offset: int) -> None:
        if next_offset > self.read.get(tp, -1):
            self.read[tp] = next_offset
            moved, self._moved = self._moved, asyncio.Event()
            moved.set()

    async def advance_from(self, consumer: AIOKafkaConsumer) -> None:
        """After a batch was applied: each partition's position (the next record to hand over)."""
        for tp in self.partitions:
            with contextlib.suppress(Exception):  # a partition without a position yet
                self.advance(tp, await consumer.position(tp))

    def restart(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition], bootstrap: str | None = None) -> None:
        """The follow loop reads again from the start (the book keeps what it had: a reread applies the same)."""
        self.consumer, self.partitions = consumer, partitions
        self.bootstrap = bootstrap

    async def reached(self, offsets: dict[TopicPartition, int], timeout: float = READ_BACK_S) -> bool:
        """Whether every partition was read past its offset (`offsets[tp]` itself applied) within `timeout`."""
        async def wait() -> None:
            while any(self.read.get(tp, -1) <= offset for tp, offset in offsets.items()):
                await self._moved.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def read_to_end(self, timeout: float = READ_BACK_S) -> bool:
        """Whether everything on the log now (its ends, asked of the broker) was read within `timeout`.
        Requests missing at once share one question to the broker."""
        if self._to_end is None or self._to_end.done():
            self._to_end = asyncio.ensure_future(self._ends())
        try:
            ends = await asyncio.wait_for(asyncio.shield(self._to_end), timeout)
        except Exception:  # noqa: BLE001 - no broker, no answer: the caller answers from what it has
            return False
        return await self.reached({tp: end - 1 for tp, end in ends.items() if end > 0}, timeout)

    async def _ends(self) -> dict[TopicPartition, int]:
        consumer = self.consumer
        if consumer is None or not self.partitions:
            raise RuntimeError("not following")
        if self.bootstrap is None:
            return await consumer.end_offsets(self.partitions)
        if self._probe is None:
            probe = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
            try:
                await probe.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await probe.stop()
                raise
            if self.consumer is not consumer:  # the follow loop stopped while it connected: nobody would close it
                with contextlib.suppress(Exception):
                    await probe.stop()
                raise RuntimeError("not following")
            self._probe = probe
        try:
            return await self._probe.end_offsets(self.partitions)
        except Exception:
            await self.stop_probe()  # a broker gone away: a new connection next time
            raise

    async def stop_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            with contextlib.suppress(Exception):
                await probe.stop()


async def follow_from_start(bootstrap: str, tps: list[TopicPartition], apply: Callable[[str, bytes, int], None],
                            caught_up: asyncio.Event, what: str, progress: ReadProgress | None = None) -> None:
    """`apply(topic, value, offset)` for every record of `tps`, from the beginning, then as they grow."""
    while True:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        try:
            await consumer.start()
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            if progress is not None:
                progress.restart(consumer, tps, bootstrap)
            ends = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            if not pending:
                caught_up.set()
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for tp, records in batches.items():
                    for r in records:
                        apply(tp.topic, r.value, r.offset)
                if progress is not None:
                    await progress.advance_from(consumer)
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
                if not pending:
                    caught_up.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # broker away: read again from the start
            log.warning(f"{what}_retry", error=type(exc).__name__)
            await asyncio.sleep(1)
        finally:
            if progress is not None and progress.consumer is consumer:
                progress.consumer = None
                await progress.stop_probe()
            with contextlib.suppress(Exception):
                await consumer.stop()


class RecordBook:
    """Every record of a one-partition topic of enveloped records (an `id` and a `body`), followed from its
    start, in order, each id once (a retried send is the same record again). The ledger's 通报 and the drill
    programme keep theirs so; a subclass names its envelope model, topic and stage."""

    envelope: type  # the topic's record model: `id` and `body`
    topic: str
    stage: str

    def __init__(self) -> None:
        self.records: list = []
        self.ids: set[str] = set()
        self.caught_up = asyncio.Event()
        self.progress = ReadProgress()

    async def read_to_end(self) -> None:
        """Read the topic to its end first (a record written by another replica a moment ago), when following it."""
        if self.progress.consumer is not None:
            await self.progress.read_to_end()

    def apply(self, record) -> None:
        if record.id in self.ids:
            return  # the same record again (a retried send): once
        self.ids.add(record.id)
        self.records.append(record.body)

    def apply_raw(self, topic: str, value: bytes, offset: int) -> None:  # noqa: ARG002 - follow_from_start's apply
        from pydantic import ValidationError

        try:
            self.apply(self.envelope.model_validate_json(value))
        except (ValidationError, ValueError) as exc:
            log.error(f"bad_{self.stage}_record", stage=self.stage, offset=offset, error=type(exc).__name__)

    async def follow(self, bootstrap: str) -> None:
        await follow_from_start(bootstrap, [TopicPartition(self.topic, 0)], self.apply_raw, self.caught_up, self.stage,
                                self.progress)
