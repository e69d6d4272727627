"""The local Apache Kafka node keeps acknowledged records across a clean stop and a SIGKILL."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from services.local.kafka import LocalKafka, PortInUseError, free_port
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

N = 100


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    broker = LocalKafka(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    try:
        yield broker
    finally:
        broker.kill()  # whatever a test left running, leave no JVM behind


def _create_topic(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        # the metadata may trail the creation's answer by a moment
        eventually(lambda: topic in admin.list_topics(), timeout=10, every=0.1, what=f"{topic} in the metadata")
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        futures = [producer.send(topic, key=b"k%d" % i, value=b"v%d" % i) for i in range(N)]
        producer.flush(timeout=30)
        # Every record acknowledged by the broker (acks=all) before anything is stopped.
        offsets = [f.get(timeout=10).offset for f in futures]
        assert offsets == list(range(N))
    finally:
        producer.close()


def _read_all(bootstrap: str, topic: str, timeout: float = 20) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(values) < N and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
        return values
    finally:
        consumer.close()


EXPECTED = [b"v%d" % i for i in range(N)]


def test_records_survive_clean_restart(kafka: LocalKafka) -> None:
    kafka.start()
    _create_topic(kafka.bootstrap, "durable")
    _produce(kafka.bootstrap, "durable")
    pid = kafka.pid
    assert pid is not None
    kafka.stop()
    assert _pid_gone(pid), "java process left behind after stop()"

    kafka.start()  # same data dir: no re-format, same cluster id
    assert _read_all(kafka.bootstrap, "durable") == EXPECTED
    kafka.stop()


def test_acknowledged_records_survive_sigkill(kafka: LocalKafka) -> None:
    kafka.start()
    _create_topic(kafka.bootstrap, "crash")
    _produce(kafka.bootstrap, "crash")
    pid = kafka.pid
    assert pid is not None
    kafka.kill()
    assert _pid_gone(pid), "java process left behind after kill()"

    kafka.start()  # log recovery after an unclean shutdown
    assert _read_all(kafka.bootstrap, "crash") == EXPECTED
    kafka.stop()


def test_port_held_by_a_stranger_is_a_clear_error(kafka: LocalKafka) -> None:
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", kafka.port))
        stranger.listen()
        with pytest.raises(PortInUseError, match=str(kafka.port)):
            kafka.start()
    assert not kafka.is_running()
