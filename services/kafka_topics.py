"""Create the catalog's topics on a cluster (kafka-python: the synchronous edge)."""

from __future__ import annotations

import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2
from tenacity import Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

from topics.catalog import CATALOG, INCIDENTS_REPORTED


def partition_of(incident_id: str, partitions: int = INCIDENTS_REPORTED.partitions) -> int:
    """The partition of an incident's records (and so of its table entry): the default partitioner's
    murmur2 of the key, as every producer here uses it."""
    return (murmur2(incident_id.encode()) & 0x7FFFFFFF) % partitions


def create_topics(bootstrap: str, *, replication: int = 1, partitions: int | None = None, timeout: float = 60) -> list[str]:
    """Idempotent: topics that exist already are left alone. Returns the names created now, once every
    catalog topic's partitions have a leader: a record produced the moment a topic is created can
    otherwise meet NotLeaderForPartition until the retries of its producer run out (seen in the e2e
    stack fixture publishing a user right after the broker started, on a busy machine). A cluster not
    answering yet (a broker still starting) is tried again; all of it within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    connect = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.5), retry=retry_if_exception_type(KafkaError),
                       reraise=True)
    admin = connect(KafkaAdminClient, bootstrap_servers=bootstrap, client_id="yingji-admin", request_timeout_ms=10000)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name=spec.name,
                num_partitions=partitions if (partitions and spec.partitions > 1) else spec.partitions,
                replication_factor=replication,
                topic_configs=spec.configs(),
            )
            for spec in CATALOG
            if spec.name not in existing
        ]
        if wanted:
            try:
                admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
        names = [spec.name for spec in CATALOG]
        led = Retrying(stop=stop_after_delay(max(1.0, deadline - time.monotonic())), wait=wait_fixed(0.1),
                       retry=retry_if_result(lambda ok: not ok) | retry_if_exception_type(KafkaError),
                       retry_error_callback=lambda _state: False)
        if not led(_every_partition_led, admin, names):
            raise RuntimeError(f"the catalog's topics have partitions without a leader after {timeout:.0f}s")
        return [t.name for t in wanted]
    finally:
        admin.close()


def _every_partition_led(admin: KafkaAdminClient, names: list[str]) -> bool:
    described = admin.describe_topics(names)
    return len(described) == len(names) and all(
        not topic.get("error_code") and topic["partitions"]
        and all(p.get("leader_id", -1) >= 0 for p in topic["partitions"])
        for topic in described)
