"""The standby site (plan 2.2.2, 区应急委备份指挥平台; deploy/STANDBY.md): what MirrorMaker 2 has copied of the
command center's cluster, and what a cut now would lose.

The figure is the mirror's lag: per partition of every mirrored topic, the records the primary has past the
standby's end. MM2 with the IdentityReplicationPolicy copies a partition record by record from its start, so
an offset on the standby is the primary's offset of the same record (no transactions here: the worker is at
least once, KAFKA-NOTES.md) until MM2 writes a record twice after a retry of its own; a duplicate moves the
standby ahead, and the lag counted is then that much too small (never negative per partition).

`mirror_lag` is the pure part; `end_offsets` and `committed_offsets` ask a cluster.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from topics.catalog import CATALOG

Offsets = Mapping[tuple[str, int], int]  # (topic, partition) -> offset


def mirrored_topics(app_id: str) -> list[str]:
    """What the standby must have: every catalog topic and the worker's table changelog (its state)."""
    return [spec.name for spec in CATALOG] + [changelog(app_id)]


def changelog(app_id: str) -> str:
    return f"{app_id}-incidents-changelog"  # Faust's name for the worker's table (services/worker/root.py)


@dataclass(frozen=True)
class MirrorLag:
    per_topic: dict[str, int]  # records at the primary past the standby's end, summed over the topic's partitions
    missing: tuple[tuple[str, int], ...]  # partitions the primary has and the standby has not (not yet created)

    @property
    def total(self) -> int:
        return sum(self.per_topic.values())

    def line(self) -> str:
        busy = ", ".join(f"{t} {n}" for t, n in sorted(self.per_topic.items(), key=lambda kv: -kv[1]) if n)
        return f"{self.total} records" + (f" ({busy})" if busy else "") + (
            f"; {len(self.missing)} partitions not on the standby" if self.missing else "")


def mirror_lag(primary: Offsets, standby: Offsets) -> MirrorLag:
    """Records the primary has that the standby has not, per topic, from the two clusters' end offsets taken
    at one moment. A partition the standby lacks counts whole."""
    per_topic: dict[str, int] = {}
    missing = []
    for (topic, partition), end in sorted(primary.items()):
        there = standby.get((topic, partition))
        if there is None:
            missing.append((topic, partition))
        per_topic[topic] = per_topic.get(topic, 0) + max(0, end - (there or 0))
    return MirrorLag(per_topic, tuple(missing))


def behind(primary: Offsets, standby: Offsets) -> int:
    """How far the standby's committed offsets of a group are behind the primary's, in records (partitions the
    standby has no offset for count from 0: the group starts there at the earliest offset)."""
    return sum(max(0, end - standby.get(tp, 0)) for tp, end in primary.items())


def end_offsets(bootstrap: str, topics: list[str], *, timeout_ms: int = 15000) -> dict[tuple[str, int], int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=timeout_ms,
                             client_id="yingji-standby-probe")
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        return {(tp.topic, tp.partition): off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, *, timeout_ms: int = 15000) -> dict[tuple[str, int], int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="yingji-standby-probe",
                             request_timeout_ms=timeout_ms)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    finally:
        admin.close()


def log_end_offsets(log_dir: Path, topics: list[str]) -> dict[tuple[str, int], int]:
    """The end offsets a stopped (or killed) broker's disk holds, read from its log directory without starting
    it: the primary's disks once recovered say what a cut lost (deploy/STANDBY.md, reconciling). Each
    partition's last segment is walked batch by batch (Kafka's record batch v2: base offset, int64; length,
    int32; last offset delta, int32 at byte 23); a batch cut short by the crash is not counted."""
    out: dict[tuple[str, int], int] = {}
    for topic in topics:
        for part_dir in log_dir.glob(f"{topic}-*"):
            topic_name, _, partition = part_dir.name.rpartition("-")
            if topic_name != topic or not partition.isdigit():
                continue
            segments = sorted(part_dir.glob("*.log"))
            end = int(segments[-1].stem) if segments else 0  # an empty segment: its base offset is the end
            data = segments[-1].read_bytes() if segments else b""
            pos = 0
            while pos + _BATCH_HEADER <= len(data):
                base, length = struct.unpack_from(">qi", data, pos)
                if length <= 0 or pos + 12 + length > len(data):
                    break
                (last_delta,) = struct.unpack_from(">i", data, pos + 23)
                end = base + last_delta + 1
                pos += 12 + length
            out[(topic, int(partition))] = end
    return out


_BATCH_HEADER = 27  # base offset 8, length 4, partition leader epoch 4, magic 1, crc 4, attributes 2, last offset delta 4


def topic_configs(bootstrap: str, topics: list[str], keys: tuple[str, ...] = ("cleanup.policy", "retention.ms"),
                  *, timeout_ms: int = 5000) -> dict[str, dict[str, str]]:
    """`keys` of each topic's configuration as the cluster has them (a copy made by MM2 must keep the changelog
    compacted and the retentions)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="yingji-standby-probe",
                             request_timeout_ms=timeout_ms)
    try:
        answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t, dict.fromkeys(keys))
                                         for t in topics], config_filter="all")
        found = next(iter(answer.values()), {}) if isinstance(answer, dict) else {}
        return {name: {k: str(v.get("value") if isinstance(v, dict) else v) for k, v in configs.items() if k in keys}
                for name, configs in found.items()}
    finally:
        admin.close()
