"""Create the catalog's topics on a cluster (kafka-python: the synchronous edge)."""

from __future__ import annotations

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from topics.catalog import CATALOG, INCIDENTS_REPORTED


def partition_of(incident_id: str, partitions: int = INCIDENTS_REPORTED.partitions) -> int:
    """The partition of an incident's records (and so of its table entry): the default partitioner's
    murmur2 of the key, as every producer here uses it."""
    return (murmur2(incident_id.encode()) & 0x7FFFFFFF) % partitions


def create_topics(bootstrap: str, *, replication: int = 1, partitions: int | None = None, timeout: float = 60) -> list[str]:
    """Idempotent: topics that exist already are left alone. Returns the names created now.
    A cluster not answering yet (a broker still starting) is tried again for up to `timeout` seconds."""
    connect = Retrying(retry=retry_if_exception_type(KafkaError), wait=wait_fixed(0.5),
                       stop=stop_after_delay(timeout), reraise=True)
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
        return [t.name for t in wanted]
    finally:
        admin.close()
