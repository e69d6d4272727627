"""Create the catalog's topics on a cluster (kafka-python: the synchronous edge)."""

from __future__ import annotations

import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2
from tenacity import Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

from topics.catalog import CATALOG, INCIDENTS_REPORTED, KEYED_PARTITIONS

KEYED = [spec for spec in CATALOG if spec.partitions == KEYED_PARTITIONS]  # co-partitioned: one count for all


class PartitionsMismatch(RuntimeError):
    """The keyed topics on the cluster do not all have the same partition count (an incident's records
    and its table entry would sit on different partitions)."""


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
        if not led(every_partition_led, admin, names):
            raise RuntimeError(f"the catalog's topics have partitions without a leader after {timeout:.0f}s")
        ready = Retrying(stop=stop_after_delay(max(1.0, deadline - time.monotonic())), wait=wait_fixed(0.2),
                         retry=retry_if_result(lambda ok: not ok) | retry_if_exception_type(KafkaError),
                         retry_error_callback=lambda _state: False)
        if not ready(every_partition_serving, bootstrap, names):
            raise RuntimeError(f"the catalog's topics have partitions whose leader does not serve them after {timeout:.0f}s")
        return [t.name for t in wanted]
    finally:
        admin.close()


def every_partition_led(admin: KafkaAdminClient, names: list[str]) -> bool:
    described = admin.describe_topics(names)
    return len(described) == len(names) and all(
        not topic.get("error_code") and topic["partitions"]
        and all(p.get("leader_id", -1) >= 0 for p in topic["partitions"])
        for topic in described)


def partition_counts(bootstrap: str, names: list[str], *, timeout: float = 30) -> dict[str, int]:
    """Each topic's partition count as the cluster has it (topics that do not exist left out)."""
    connect = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.5), retry=retry_if_exception_type(KafkaError),
                       reraise=True)
    admin = connect(KafkaAdminClient, bootstrap_servers=bootstrap, client_id="yingji-admin", request_timeout_ms=10000)
    try:
        existing = set(admin.list_topics())
        wanted = [name for name in names if name in existing]
        if not wanted:
            return {}
        return {t.get("topic", t.get("name")): len(t["partitions"]) for t in admin.describe_topics(wanted)
                if not t.get("error_code") and t["partitions"]}
    finally:
        admin.close()


def keyed_partitions(bootstrap: str, *, timeout: float = 60) -> int | None:
    """The partition count of the keyed topics as the cluster has them (a deployment made with 4 keeps
    4 until it migrates: deploy/MIGRATION.md); None when none of them exists yet. PartitionsMismatch
    when they differ, naming each topic's count."""
    counts = partition_counts(bootstrap, [spec.name for spec in KEYED], timeout=timeout)
    if not counts:
        return None
    if len(set(counts.values())) > 1:
        raise PartitionsMismatch("the keyed topics must have one partition count, the cluster has "
                                 + ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
                                 + " (deploy/MIGRATION.md)")
    return next(iter(counts.values()))


def create_changelog(bootstrap: str, name: str, *, partitions: int, replication: int = 1, timeout: float = 60) -> bool:
    """A table's changelog created before Faust starts, compacted, with the keyed topics' count, and led.
    Faust would create it itself once subscribed, but its consumer's metadata can then say 0 partitions
    for a moment and the first table write raises PartitionsMismatch (seen at 12 partitions: the worker
    restarted, 12 s lost). True when created now."""
    deadline = time.monotonic() + timeout
    connect = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.5), retry=retry_if_exception_type(KafkaError),
                       reraise=True)
    admin = connect(KafkaAdminClient, bootstrap_servers=bootstrap, client_id="yingji-admin", request_timeout_ms=10000)
    try:
        created = False
        if name not in set(admin.list_topics()):
            try:
                admin.create_topics([NewTopic(name=name, num_partitions=partitions, replication_factor=replication,
                                              topic_configs={"cleanup.policy": "compact"})])
                created = True
            except TopicAlreadyExistsError:
                pass
        led = Retrying(stop=stop_after_delay(max(1.0, deadline - time.monotonic())), wait=wait_fixed(0.1),
                       retry=retry_if_result(lambda ok: not ok) | retry_if_exception_type(KafkaError),
                       retry_error_callback=lambda _state: False)
        if not led(every_partition_led, admin, [name]):
            raise RuntimeError(f"{name} has partitions without a leader after {timeout:.0f}s")
        n = len(admin.describe_topics([name])[0]["partitions"])
        if n != partitions:
            raise PartitionsMismatch(f"{name} has {n} partitions, the keyed topics {partitions} (deploy/MIGRATION.md)")
        return created
    finally:
        admin.close()


def every_partition_serving(bootstrap: str, names: list[str]) -> bool:
    """Each partition's leader answers for it (ListOffsets). The metadata says a partition is led a moment
    before its broker has made it: a record produced then meets NotLeaderForPartition, and a producer's
    few quick retries can run out (seen with 12 partitions a topic, a broker just started on two busy
    cores: a user, a roster, a bench's first record lost their send)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=5000)
    try:
        tps = [TopicPartition(name, p) for name in names for p in sorted(consumer.partitions_for_topic(name) or ())]
        offsets = consumer.end_offsets(tps)
        return len(tps) > 0 and all(offsets.get(tp) is not None for tp in tps)
    finally:
        consumer.close()
