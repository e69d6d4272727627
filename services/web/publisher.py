"""The API's one Kafka producer. It starts in the background (the broker may come up after the API,
so it retries until it can), and every write waits for the broker's acknowledgement (acks=all): a
202 means the record is on the broker. A write it cannot make raises BrokerUnavailable, which the
app answers 503 with Retry-After."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from typing import NamedTuple

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel
from tenacity import AsyncRetrying, retry_if_exception_type, wait_fixed

log = structlog.get_logger("yingji", stage="api")
SEND_TIMEOUT_S = 5.0
START_RETRY_S = 1.0


class Written(NamedTuple):
    """Where the broker put a record."""

    tp: TopicPartition
    offset: int


class BrokerUnavailable(Exception):
    """The record was not acknowledged: the caller may send the same request again later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Publisher:
    def __init__(self, bootstrap: str, *, send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        self.bootstrap = bootstrap
        self.send_timeout_s = send_timeout_s
        self.producer: AIOKafkaProducer | None = None  # None until the broker took the connection

    @property
    def ready(self) -> bool:
        return self.producer is not None

    async def start(self) -> None:
        """Connect, again every second until the broker answers (cancelled with the app)."""
        async for attempt in AsyncRetrying(retry=retry_if_exception_type(KafkaError), wait=wait_fixed(START_RETRY_S),
                                           before_sleep=_log_retry):
            with attempt:
                producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                            linger_ms=0, request_timeout_ms=5000)
                try:
                    await producer.start()
                except KafkaError:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self.producer = producer

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def send(self, topic: str, key: str, record: BaseModel, *, what: str) -> Written:
        """`record` on `topic` under `key`, acknowledged; `what` names it in the 503 ("the report").
        Returns where it landed: the partition, and in `offset` the record's offset on it."""
        if self.producer is None:
            raise BrokerUnavailable("broker not reachable yet")
        try:
            meta = await asyncio.wait_for(
                self.producer.send_and_wait(topic, key=key.encode(), value=record.model_dump_json().encode()),
                timeout=self.send_timeout_s,
            )
        except (KafkaError, asyncio.TimeoutError) as exc:
            log.warning("produce_failed", topic=topic, key=key, error=type(exc).__name__)
            raise BrokerUnavailable(f"broker did not acknowledge {what}") from exc
        return Written(TopicPartition(meta.topic, meta.partition), meta.offset)


def _log_retry(state) -> None:
    log.warning("producer_retry", error=type(state.outcome.exception()).__name__)
