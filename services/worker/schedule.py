"""Deadlines: the due schedule of this worker's incidents, and the sweep that sends due ticks.

The schedule is derived from the table, never the truth: rebuilt after every rebalance or restart,
so nothing due while the worker was down is lost. A breach's path: `sweep` here sends a tick to
`yingji.incidents.due` → the agent (services/worker/incidents.py) checks that partition's due
incidents with `playbooks.lifecycle.check_due` → its records leave through services/worker/outbox.py.
"""

from __future__ import annotations

import heapq
import json
import time
from datetime import datetime
from typing import TYPE_CHECKING, Iterable, Iterator

import structlog
from faust.types import TP
from pydantic import ValidationError

from playbooks.plan import Plan
from services.kafka_topics import partition_of
from services.worker.table_codec import Head, decode_head
from topics.catalog import DUE_TICKS
from topics.models import DueTick

if TYPE_CHECKING:
    from services.worker.root import Worker

log = structlog.get_logger("yingji", stage="incidents")
SWEEP_INTERVAL_S = 0.1


class DueSchedule:
    """Per partition, a min-heap of (next due time, incident id) of this worker's incidents.

    The sweep sends one tick per partition with something due (`yingji.incidents.due`), not one record
    per incident; the agent, reading the tick, checks up to `per_tick` of that partition's due
    incidents, earliest first, and sends the next tick itself while more are due. A flood of them
    (deadlines missed during an outage, a storm of breaches) waits here, not on a topic ahead of new
    reports: a batch holds at most one tick per partition.
    """

    TICK_LOST_S = 30.0  # a tick sent and never handled (its partition moved, say) is sent again after this

    def __init__(self, per_tick: int) -> None:
        self.heaps: dict[int, list[tuple[datetime, str]]] = {}
        self.stale = True
        self.per_tick = per_tick
        self.ticking: dict[int, float] = {}  # partition -> when (monotonic) its tick in flight was sent
        # incident id -> (level, open obligation kinds) of live, not ended incidents: feeds the gauges
        self.summary: dict[str, tuple[str, tuple[str, ...]]] = {}

    def push(self, partition: int, when: datetime | None, incident_id: str) -> None:
        if when is not None:
            heapq.heappush(self.heaps.setdefault(partition, []), (when, incident_id))

    def track(self, partition: int, incident_id: str, head: Head) -> None:
        """Live incidents only: a drill's due checks come from its runner on the drill's own clock."""
        self.push(partition, head.due, incident_id)
        if head.level is None:
            self.summary.pop(incident_id, None)
        else:
            self.summary[incident_id] = (head.level, head.open_kinds)

    def due_now(self, partition: int, now: datetime) -> bool:
        heap = self.heaps.get(partition)
        return bool(heap) and heap[0][0] <= now

    def to_tick(self, now: datetime, mono: float) -> list[int]:
        """Partitions with something due by `now` and no tick in flight; each counts in flight from here."""
        out = [p for p in self.heaps
               if self.due_now(p, now) and (p not in self.ticking or mono - self.ticking[p] >= self.TICK_LOST_S)]
        for p in out:
            self.ticking[p] = mono
        return out

    def pop_due(self, partition: int, now: datetime) -> list[tuple[datetime, str]]:
        """The partition's incidents with something due by `now`, earliest first, each once, at most
        `per_tick` of them."""
        heap = self.heaps.get(partition, [])
        due: dict[str, datetime] = {}
        while heap and heap[0][0] <= now and len(due) < self.per_tick:
            when, incident_id = heapq.heappop(heap)
            due.setdefault(incident_id, when)
        return [(when, iid) for iid, when in due.items()]

    def ticked(self, partition: int, mono: float, again: bool) -> None:
        """A tick of `partition` handled; `again`: its handler sent the next one."""
        if again:
            self.ticking[partition] = mono
        else:
            self.ticking.pop(partition, None)

    def waiting(self, now: datetime) -> int:
        """Incidents due by `now` and not yet checked (a scan: for the gauges, every few seconds)."""
        return len({iid for heap in self.heaps.values() for when, iid in heap if when <= now})

    def rebuild(self, states: Iterable[tuple[int, str, bytes]], plan: Plan) -> int:
        self.heaps = {}
        self.summary = {}
        self.ticking = {}  # ticks sent before a rebalance may be handled by another worker, or twice
        for partition, incident_id, raw in states:
            try:
                head = decode_head(raw, plan)
            except (ValidationError, ValueError):
                log.error("unreadable_state", incident_id=incident_id)
                continue
            self.track(partition, incident_id, head)
        for heap in self.heaps.values():
            heapq.heapify(heap)
        self.stale = False
        return sum(len(heap) for heap in self.heaps.values())


def tick_record(partition: int, now: datetime) -> bytes:
    tid = f"tick.{partition}.{now.timestamp():.6f}"
    return DueTick(id=tid, partition=partition, at=now).model_dump_json().encode()


def table_items(worker: Worker) -> Iterator[tuple[int, str, bytes]]:
    """This worker's incidents, raw, each with its partition. On rocksdb straight from its active
    partitions' databases: Faust's own items() decodes every key through its codec registry
    (100,000 incidents: about 8 s of a restart, against 2 s)."""
    table = worker.table
    store = table.data
    if not hasattr(store, "_dbs"):  # memory://: one dict; the partition is the producers' partitioner's
        for key, value in table.items():
            yield partition_of(key), key, value
        return
    actives = worker.app.assignor.assigned_actives()
    topic = table.changelog_topic_name
    for partition, db in list(store._dbs.items()):
        if TP(topic, partition) not in actives:
            continue
        for key, value in db.items():
            if key != store.offset_key:
                yield partition, json.loads(key), value


async def sweep(worker: Worker) -> None:
    """Send a due tick for each partition of this worker with something due now (timers never write
    tables); rebuild the schedule first when a rebalance or a restart made it stale."""
    if not worker.settled():
        return
    schedule = worker.schedule
    if schedule.stale:
        count = schedule.rebuild(list(table_items(worker)), worker.plan)
        log.info("schedule_rebuilt", incidents=count, worker=worker.settings.group_instance_id)
        worker.gc.settle()
    now = worker.clock.now()
    outbox = worker.outbox()
    for partition in schedule.to_tick(now, time.monotonic()):
        outbox.add(DUE_TICKS.name, None, tick_record(partition, now), partition)
    await outbox.send()


async def sweep_due(worker: Worker) -> None:
    """The sweep timer's body: a failed sweep is retried at the next tick; never crash the worker."""
    try:
        await sweep(worker)
    except Exception:  # noqa: BLE001
        log.exception("sweep_failed")
        worker.schedule.stale = True
