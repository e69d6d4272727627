"""Deadlines: the due schedule of this worker's incidents (the sweep that reads it is
services/worker/sweep.py).

The schedule is derived from the table, never the truth: rebuilt after every rebalance or restart,
so nothing due while the worker was down is lost.
"""

from __future__ import annotations

import heapq
from datetime import datetime
from typing import Iterable

import structlog
from pydantic import ValidationError

from playbooks.plan import Plan
from services.worker.table_codec import Head, decode_head
from topics.models import DueTick

log = structlog.get_logger("yingji", stage="incidents")


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
