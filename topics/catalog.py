"""The topic catalog: the one place a topic is named.

Agents, the API, the CLI and the tests take topics from here and never spell a topic's name.
A drill runs the same pipeline on the same topics with the record's `drill` flag set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from topics.delivery import DeliveryEvent
from topics.drills import DrillRunEvent
from topics.duty import DutyEvent, RosterRecord
from topics.ledger import LedgerRecord
from topics.programme import ProgrammeRecord
from topics.plan import PlanAdopted
from topics.warnings import WarningEvent
from topics.models import (
    DeadLetter,
    DueTick,
    IncidentCommand,
    IncidentDecided,
    IncidentEvent,
    IncidentReported,
    NotificationRequested,
    UserRecord,
)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    cleanup_policy: Literal["delete", "compact", "compact,delete"]
    retention_ms: int | None
    model: type[BaseModel]
    description: str
    max_message_bytes: int | None = None  # None: the broker's default (message.max.bytes, 1 MiB)

    def configs(self) -> dict[str, str]:
        out = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            out["retention.ms"] = str(self.retention_ms)
        if self.max_message_bytes is not None:
            out["max.message.bytes"] = str(self.max_message_bytes)
        return out


# The keyed topics' partition count: fixed when the topics are created, because a key's partition is
# murmur2(key) % count. Adding partitions later moves keys (an incident's records and its table entry
# would sit on two partitions); growing is a migration (`yingji migrate partitions`, deploy/MIGRATION.md).
# 12: the number of workers (and delivery stages) that can share the load is at most the count, and 12
# splits evenly between 1, 2, 3, 4, 6 or 12 of them, so a district can grow from one machine to three
# of four cores without a migration. Volume does not need more: a partition is read by one worker at
# about 5,000 records/s, the district's busiest hour is a few hundred reports. Not more: every partition
# is a Faust task, a changelog partition and a RocksDB store per worker, and rebalance and recovery
# time grows with them (figures in deploy/MIGRATION.md).
KEYED_PARTITIONS = 12

_WEEK_MS = 7 * 24 * 3600 * 1000
_DAY_MS = 24 * 3600 * 1000
_YEAR_MS = 365 * 24 * 3600 * 1000

INCIDENTS_REPORTED = TopicSpec(
    name="yingji.incidents.reported",
    key="incident_id",
    partitions=KEYED_PARTITIONS,
    cleanup_policy="delete",
    retention_ms=_YEAR_MS,
    model=IncidentReported,
    description="Reports accepted by the API or CLI (接报), personal data sealed.",
)
INCIDENTS_DECIDED = TopicSpec(
    name="yingji.incidents.decided",
    key="incident_id",
    partitions=KEYED_PARTITIONS,
    cleanup_policy="delete",
    retention_ms=_YEAR_MS,
    model=IncidentDecided,
    description="The plan's decision on each report: grade, level, lead units, notices, obligations.",
)
NOTIFICATIONS_REQUESTED = TopicSpec(
    name="yingji.notifications.requested",
    key="dedup_key",
    partitions=KEYED_PARTITIONS,
    cleanup_policy="delete",
    retention_ms=_YEAR_MS,
    model=NotificationRequested,
    description="One record per unit to be told, each with a dedup key.",
)
DRILL_NOTIFICATIONS = TopicSpec(
    name="yingji.drill.notifications",
    key="dedup_key",
    partitions=KEYED_PARTITIONS,
    cleanup_policy="delete",
    retention_ms=_YEAR_MS,
    model=NotificationRequested,
    description="Notifications of drill incidents: kept off the live topic, so no drill pages a real unit.",
)
INCIDENT_COMMANDS = TopicSpec(
    name="yingji.incidents.commands",
    key="incident_id",
    partitions=KEYED_PARTITIONS,
    cleanup_policy="delete",
    retention_ms=_YEAR_MS,
    model=IncidentCommand,
    description="What changes an open incident: reports filed, approvals, the end, a drill's due checks.",
)
DUE_TICKS = TopicSpec(
    name="yingji.incidents.due",
    key="partition",
    partitions=KEYED_PARTITIONS,
    cleanup_policy="delete",
    retention_ms=_DAY_MS,
    model=DueTick,
    description="Internal: the sweep's tick for a partition with incidents due; no key, sent to that partition "
    "(co-partitioned with the incidents' topics and table). A tick read again checks again: checks are idempotent.",
)
INCIDENT_EVENTS = TopicSpec(
    name="yingji.incidents.events",
    key="incident_id",
    partitions=KEYED_PARTITIONS,
    cleanup_policy="delete",
    retention_ms=_YEAR_MS,
    model=IncidentEvent,
    description="Every incident's timeline, in order per incident: each event with its time and reason.",
)
ESCALATIONS = TopicSpec(
    name="yingji.escalations",
    key="incident_id",
    partitions=KEYED_PARTITIONS,
    cleanup_policy="delete",
    retention_ms=_YEAR_MS,
    model=IncidentEvent,
    description="Breaches (漏报/迟报) and escalation steps, for the command center.",
)
USERS = TopicSpec(
    name="yingji.users",
    key="name",
    partitions=1,
    cleanup_policy="compact",
    retention_ms=None,
    model=UserRecord,
    description="Users, roles and token hashes; compacted so the latest record per user is kept.",
)
DEAD_LETTERS = TopicSpec(
    name="yingji.deadletters",
    key="source_topic",
    partitions=1,
    cleanup_policy="delete",
    retention_ms=_YEAR_MS,
    model=DeadLetter,
    description="Records a stage could not decode or validate: reason, failing fields, original bytes.",
)
DUTY_ROSTERS = TopicSpec(
    name="yingji.duty.rosters",
    key="unit_id",
    partitions=1,
    cleanup_policy="compact",
    retention_ms=None,
    model=RosterRecord,
    description="Each unit's roster (值班表: people, rotations, shifts, overrides, swaps) as last changed, names "
    "and contacts sealed; compacted so the latest per unit is kept. One partition: every reader needs every unit.",
)
DUTY_LOG = TopicSpec(
    name="yingji.duty.log",
    key="unit_id",
    partitions=1,
    cleanup_policy="delete",
    retention_ms=_YEAR_MS,
    model=DutyEvent,
    description="The duty log (值班记录) besides the incidents' events: roster changes and handovers (交接班) "
    "opened, confirmed and escalated, in order.",
)
DELIVERIES = TopicSpec(
    name="yingji.deliveries",
    key="dedup_key",
    partitions=KEYED_PARTITIONS,
    cleanup_policy="delete",
    retention_ms=_YEAR_MS,
    model=DeliveryEvent,
    description="Every send of a notice (attempted, accepted, failed, in doubt, delivered), every ack (已阅) and "
    "every re-notification ladder step, keyed by the notice's dedup_key: on the partition of the notice itself.",
)

WARNING_EVENTS = TopicSpec(
    name="yingji.warnings.events",
    key="warning_id",
    partitions=1,
    cleanup_policy="delete",
    retention_ms=_YEAR_MS,
    model=WarningEvent,
    description="Every step of every warning (预警, plan 3.2): drafted, approved, issued, adjusted, lifted, each "
    "carrying the warning's state after it, its tasks and who is told. One partition: a district has few warnings, "
    "and the API reads them all in order.",
)
DRILL_RUNS = TopicSpec(
    name="yingji.drills.runs",
    key="run_id",
    partitions=1,
    cleanup_policy="delete",
    retention_ms=_YEAR_MS,
    model=DrillRunEvent,
    description="Drill runs (演练) as their runner records them (started, progress, done with the evaluation, "
    "failed, stopped) and stops asked of them: every API replica shows and controls the runs from here. One "
    "partition: few runs, read whole by every replica.",
)
LEDGER_CIRCULARS = TopicSpec(
    name="yingji.ledger.circulars",
    key="id",
    partitions=1,
    cleanup_policy="delete",
    retention_ms=-1,  # kept for good (Kafka: -1, no time limit): a 通报 and its 限期整改 are the record of 5.5.1
    model=LedgerRecord,
    description="The 通报 of the 迟报/漏报/瞒报 ledger (5.5.1, 5.5.2) as issued, each naming the units that owe a "
    "限期整改 by a due time, and the units' reports that they have rectified. One partition: a few a month, read "
    "whole by every API replica.",
)
PLAN_ADOPTIONS = TopicSpec(
    name="yingji.plan.adoptions",
    key="id",
    partitions=1,
    cleanup_policy="delete",
    retention_ms=-1,  # kept for good: which plan was in force when, adopted by whom and why (7.1.5)
    model=PlanAdopted,
    # a record carries a whole plan (~120 KB now, at most topics.plan.PLAN_TEXTS_MAX): pinned at Kafka's
    # default 1 MiB plus a batch's overhead, so a cluster configured lower still takes a plan; the
    # producers' default max request size (1 MiB) and the consumers' fetch size match it
    max_message_bytes=1_048_588,
    description="Revisions of the plan adopted and rolled back (7.1.5), each carrying its YAML files' texts: every "
    "worker and API replica follows it from the start and decides under the one in force: each takes effect only if "
    "the version it replaces is still in force when it is read, else it is refused as a conflict (playbooks/"
    "adoptions.py). One partition: a few a year, in order, and that order decides.",
)

DRILL_PROGRAMME = TopicSpec(
    name="yingji.drills.programme",
    key="id",
    partitions=1,
    cleanup_policy="delete",
    retention_ms=-1,  # kept for good (Kafka: -1): a unit's drill programme and its 整改 are the record of 7.2
    model=ProgrammeRecord,
    description="The drill programme (7.2): drills planned per unit and year (7.2.2), plans revised (7.2.1: a "
    "validation drill owed), improvement items of the runs' evaluations with who and by when, and their closing "
    "(7.2.3). One partition: a few hundred a year, read whole by every API replica.",
)

CATALOG: tuple[TopicSpec, ...] = (
    INCIDENTS_REPORTED,
    INCIDENTS_DECIDED,
    NOTIFICATIONS_REQUESTED,
    DRILL_NOTIFICATIONS,
    INCIDENT_COMMANDS,
    DUE_TICKS,
    INCIDENT_EVENTS,
    ESCALATIONS,
    USERS,
    DUTY_ROSTERS,
    DUTY_LOG,
    DELIVERIES,
    WARNING_EVENTS,
    DRILL_RUNS,
    LEDGER_CIRCULARS,
    DRILL_PROGRAMME,
    PLAN_ADOPTIONS,
    DEAD_LETTERS,
)


def by_name(name: str) -> TopicSpec:
    for spec in CATALOG:
        if spec.name == name:
            return spec
    raise KeyError(name)
