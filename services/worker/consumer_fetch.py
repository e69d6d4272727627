"""How long the broker may hold a Faust worker's fetch: Faust fixes it at 1.5 s; ours is a setting.

aiokafka keeps one fetch in flight per broker, and asks only for partitions with nothing still
buffered. So a fetch sent while the busy partitions' records wait to be handled asks for the idle
ones alone (the commands topic, say), the broker holds it for the whole wait, and no record of the
busy partitions is fetched until it returns. With Faust's fixed 1.5 s (its AIOKafkaConsumerThread
passes fetch_max_wait_ms=1500; a pull request to make it a setting was never merged), bench pipeline
at 150 reports/s had the worker idle for up to 1.2 s at a time, and a decision took 1,382 ms p50 and
1,817 ms p99; with 100 ms, 82 ms and 247 ms. An idle worker's fetches then cost about 1.5 points of a
core more, worker and broker together (30 s of `make run` idle, each way).
"""

from __future__ import annotations

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

FAUST_FETCH_MAX_WAIT_MS = 1500


def set_fetch_max_wait(app: faust.App, wait_ms: int) -> None:
    """Before the app's consumer is made: its worker consumer's fetches wait at most `wait_ms`."""

    class ConsumerThread(AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport):
            consumer = super()._create_worker_consumer(transport)
            # aiokafka's consumer hands this to its fetcher when it starts, not before
            consumer._fetch_max_wait_ms = wait_ms
            return consumer

    class Consumer(AIOKafkaConsumer):
        fetch_max_wait_ms = wait_ms

        def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    if app._consumer is not None:
        raise RuntimeError("set_fetch_max_wait: the app's consumer is made already")
    app.transport.Consumer = Consumer


def fetch_max_wait_ms(app: faust.App) -> int:
    """What the app's worker consumer's fetches wait at most: Faust's 1,500 ms unless set."""
    return getattr(app.transport.Consumer, "fetch_max_wait_ms", FAUST_FETCH_MAX_WAIT_MS)
