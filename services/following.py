"""Following a small topic from its beginning, as the API and the stages keep their books: every record
handed to `apply` in order, `caught_up` set once the ends seen at the start are reached (by position,
not by a record at end - 1: a log emptied by retention has none), and read again from the start when
the broker goes away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

log = structlog.get_logger("yingji")


async def follow_from_start(bootstrap: str, tps: list[TopicPartition], apply: Callable[[str, bytes, int], None],
                            caught_up: asyncio.Event, what: str) -> None:
    """`apply(topic, value, offset)` for every record of `tps`, from the beginning, then as they grow."""
    while True:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        try:
            await consumer.start()
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            if not pending:
                caught_up.set()
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for tp, records in batches.items():
                    for r in records:
                        apply(tp.topic, r.value, r.offset)
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
            with contextlib.suppress(Exception):
                await consumer.stop()
