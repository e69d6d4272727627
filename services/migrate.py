"""`yingji migrate partitions --to N`: a deployment made with fewer partitions grown to N (issue 22).

Kafka can add partitions to a topic, never take them away, and adding moves keys: murmur2(key) % N is
not murmur2(key) % 4. What moves with them, and how (deploy/MIGRATION.md says it for operators):

- the incidents' history stays where it was written; records after the migration go to the new
  partition. Readers that follow every partition (the API's view, the board) see both.
- the worker's table (the changelog `<app id>-incidents-changelog`) is re-keyed here: each incident's
  latest entry written again to its new partition, and a tombstone on the old one, so the worker that
  now owns the incident has its obligations, and no other worker keeps a stale copy.
- the delivery stage writes a notice's deliveries on the notice's own partition, whatever the count,
  so a ladder under way goes on where it is.

Only a stopped and drained deployment is migrated: no member in the worker's nor the delivery stage's
group (a running worker would decide on a half-moved table) and every record of the keyed topics read
by both groups (a record left unread before the growth could be read after its incident moved).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka import errors as Errors
from kafka.admin import KafkaAdminClient
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from services.kafka_topics import KEYED, every_partition_led, keyed_partitions, partition_counts, partition_of

TABLE_NAME = "incidents"  # services/worker/root.py's table: Faust names its changelog <app id>-incidents-changelog


class MigrationRefused(RuntimeError):
    """The deployment is not in a state to migrate; the message says what to do first."""


@dataclass
class MigrationReport:
    before: int
    after: int
    topics: list[str] = field(default_factory=list)
    changelog: str = ""
    entries: int = 0  # the changelog's live entries (latest value per key)
    moved: int = 0  # of them written to a new partition (and tombstoned on the old one)
    offsets_set: int = 0  # partitions given a committed offset 0 (they had none) in a group that reads their topic
    dry_run: bool = False

    def as_json(self) -> dict:
        return {"before": self.before, "after": self.after, "topics": self.topics, "changelog": self.changelog,
                "entries": self.entries, "moved": self.moved,
                "offsets_set": self.offsets_set, "dry_run": self.dry_run}


def migrate_partitions(bootstrap: str, *, app_id: str, groups: dict[str, list[str]], to: int, dry_run: bool = False,
                       wait_s: float = 30) -> MigrationReport:
    """`groups`: each consumer group of the deployment with the keyed topics it reads. `wait_s`: how long a group may take to empty: a worker stopped cleanly keeps its place (static
    membership) until its session times out, 6 s."""
    before = keyed_partitions(bootstrap)
    if before is None:
        raise MigrationRefused("the keyed topics do not exist yet: `yingji topics` creates them with the count wanted")
    if to < before:
        raise MigrationRefused(f"the keyed topics have {before} partitions; Kafka only adds partitions (--to {before} or more)")
    changelog = f"{app_id}-{TABLE_NAME}-changelog"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="yingji-migrate", request_timeout_ms=30000)
    try:
        _refuse_unless_stopped_and_drained(admin, bootstrap, list(groups), wait_s)
        existing = set(admin.list_topics())
        topics = [spec.name for spec in KEYED if spec.name in existing]
        has_changelog = changelog in existing
        report = MigrationReport(before=before, after=to, topics=topics, changelog=changelog if has_changelog else "",
                                 dry_run=dry_run)
        # every partition the changelog has: a run stopped half-way has written some entries on new ones
        latest = _latest(bootstrap, changelog, partition_counts(bootstrap, [changelog])[changelog]) if has_changelog else {}
        report.entries = len({key for key, _ in latest})
        placed = {key for key, partition in latest if partition == partition_of(json.loads(key), to)}
        moves = [(key, value, old, partition_of(json.loads(key), to)) for (key, old), value in latest.items()
                 if old != partition_of(json.loads(key), to)]
        report.moved = len(moves)
        if dry_run:
            return report
        grow = [name for name in topics + ([changelog] if has_changelog else [])
                if partition_counts(bootstrap, [name]).get(name, to) < to]
        if grow:
            admin.create_partitions({name: to for name in grow})
        if not Retrying(stop=stop_after_delay(60), wait=wait_fixed(0.2), retry=retry_if_result(lambda ok: not ok),
                        retry_error_callback=lambda _state: False)(every_partition_led, admin, grow or topics):
            raise RuntimeError(f"the new partitions have no leader after 60 s: {grow}")
        report.offsets_set = _start_groups_on_every_partition(admin, groups, to)
    finally:
        admin.close()
    if moves:
        # new partitions can answer NotLeaderForPartition for some seconds after the controller says they are led
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=120, retry_backoff_ms=500,
                                 max_in_flight_requests_per_connection=1)
        try:
            for key, value, old, new in moves:
                # the new copy first (unless a run stopped half-way wrote it): stopped in between, the
                # next run finds two copies and only tombstones the old one; never none
                if key not in placed:
                    producer.send(changelog, key=key, value=value, partition=new).get(timeout=30)
                producer.send(changelog, key=key, value=None, partition=old).get(timeout=30)
            producer.flush()
        finally:
            producer.close()
    return report


def _start_groups_on_every_partition(admin: KafkaAdminClient, groups: dict[str, list[str]], to: int) -> int:
    """Each group gets a committed offset 0 on every partition of the topics it reads that has none (the
    new ones). Left to the consumer's reset instead, a worker that started while records were already on
    a new partition was not handed some of them by Faust (seen here: two filings of seventeen, until
    the watchdog restarted it 30 s later)."""
    count = 0
    for group, topics in groups.items():
        committed = admin.list_group_offsets([group]).get(group, {})
        if not committed:  # a group that never ran (no delivery stage here, say) starts from the beginning anyway
            continue
        new = {TopicPartition(t, p): OffsetAndMetadata(0, "", -1) for t in topics for p in range(to)
               if TopicPartition(t, p) not in committed}
        if new:
            errors = admin.alter_group_offsets(group, new)
            failed = {str(tp): err.__name__ for tp, err in errors.items() if err is not Errors.NoError}
            if failed:
                raise RuntimeError(f"the consumer group {group}'s offsets on the new partitions were not set: {failed}")
            count += len(new)
    return count


def _latest(bootstrap: str, topic: str, partitions: int) -> dict[tuple[bytes, int], bytes]:
    """(key, partition) -> the latest value, tombstoned keys left out: the table as a recovery reads it."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=2000)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        table: dict[tuple[bytes, int], bytes | None] = {}
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for tp, records in consumer.poll(timeout_ms=1000, max_records=5000).items():
                for r in records:
                    if r.offset < ends[tp]:
                        table[(r.key, tp.partition)] = r.value
        return {k: v for k, v in table.items() if v is not None}
    finally:
        consumer.close()


def _refuse_unless_stopped_and_drained(admin: KafkaAdminClient, bootstrap: str, groups: list[str], wait_s: float) -> None:
    keyed = {spec.name for spec in KEYED}
    deadline = time.monotonic() + wait_s
    while True:
        busy = {group: d for group, d in admin.describe_groups(groups).items() if d.get("members")}
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(1)
    for group, described in busy.items():
        members = described.get("members") or []
        if members:
            raise MigrationRefused(f"the consumer group {group} has {len(members)} member(s) "
                                   f"({described.get('group_state')}): stop the workers and the delivery stage first")
    lagging: dict[str, list[str]] = defaultdict(list)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        for group in groups:
            committed = {tp: meta.offset for tp, meta in admin.list_group_offsets([group]).get(group, {}).items()
                         if tp.topic in keyed and meta.offset >= 0}
            if not committed:
                continue
            ends = consumer.end_offsets(list(committed))
            lagging[group] = [f"{tp.topic}-{tp.partition} ({ends[tp] - off} unread)"
                              for tp, off in sorted(committed.items()) if ends[tp] > off]
    finally:
        consumer.close()
    for group, parts in lagging.items():
        if parts:
            raise MigrationRefused(f"the consumer group {group} has records unread on {', '.join(parts[:6])}"
                                   f"{' …' if len(parts) > 6 else ''}: start it again until it has read them, then stop it")
