"""The worker's watchdog: records skipped, or records waiting and nothing processed.

Seen here (issue 5's kill test, about one run in five under load, and in CI): a Faust worker that
joins with a backlog sometimes never hands its agent the first records after the committed offsets
of a partition (fetched while the table recovers, then dropped when the flow resumes; Faust's
commit then stays stuck behind them). The reports were acknowledged, so they must not be lost: the
worker checks that each partition's records reach it in order from the committed offset, and on a
gap restarts itself in place (same process, a fresh Faust app that resumes from the committed
offsets). The same restart follows lag with no progress for `stall_after_s` (an agent or consumer
that hangs). At-least-once processing and the table's duplicate check make a restart safe.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping

import structlog

log = structlog.get_logger("yingji", stage="incidents")


@dataclass
class StallWatch:
    """Pure bookkeeping: what this worker processed, and since when it has lag and no progress."""

    stall_after_s: float
    processed: int = 0
    positions: dict[Hashable, int] = field(default_factory=dict)  # partition -> next offset to process
    seen: dict[Hashable, int] = field(default_factory=dict)  # partition -> next offset to be handed over
    _mark: tuple[int, float] | None = None  # (processed, when) at the first check that saw lag

    def note(self, tp: Hashable, offset: int) -> None:
        """`offset` processed: its effects are on the broker."""
        self.positions[tp] = max(self.positions.get(tp, 0), offset + 1)  # a redelivery never moves it back
        self.seen[tp] = max(self.seen.get(tp, 0), offset + 1)
        self.processed += 1

    def skipped(self, tp: Hashable, offset: int, committed: int | None) -> int | None:
        """The offset expected next when `offset` jumps past it (records never handed over), else None.

        A record handed over in order moves the expectation on, before it is processed: a batch's
        records are checked one by one, then processed together.
        """
        expected = self.seen.get(tp, committed)
        if expected is not None and offset > expected:
            return expected
        self.seen[tp] = max(self.seen.get(tp, 0), offset + 1)
        return None

    def reassigned(self) -> None:
        """Positions from an earlier assignment say nothing now (another worker may have moved on)."""
        self.positions.clear()
        self.seen.clear()
        self._mark = None

    def unread(self, ends: Mapping[Hashable, int], committed: Mapping[Hashable, int | None]) -> int:
        """Records past this worker's position: its own if it processed any, else the group's commit."""
        total = 0
        for tp, end in ends.items():
            position = self.positions.get(tp)
            if position is None:
                position = committed.get(tp) or 0
            total += max(0, end - position)
        return total

    def check(self, unread: int, now: float) -> float | None:
        """Seconds stalled once lag without progress has lasted `stall_after_s`, else None."""
        if unread <= 0:
            self._mark = None
            return None
        if self._mark is None or self._mark[0] != self.processed:
            self._mark = (self.processed, now)
            return None
        stalled = now - self._mark[1]
        return stalled if stalled >= self.stall_after_s else None

    def pause(self) -> None:
        """A rebalance or a recovery is not a stall: start counting again afterwards."""
        self._mark = None


def consumer_state(app: Any) -> dict:
    """What Faust's consumer is doing, for the stall log line and `kill -USR1`."""
    c = app.consumer
    return {
        "flow_active": c.flow_active,
        "assignment": sorted(map(str, c.assignment())),
        "active": sorted(map(str, c._active_partitions or ())),
        "paused": sorted(map(str, c._paused_partitions)),
        "buffered": sorted(map(str, c._buffered_partitions)),
        "unacked": len(c._unacked_messages),
        "read_offset": {str(k): v for k, v in c._read_offset.items()},
        "committed": {str(k): v for k, v in c._committed_offset.items()},
        "aiokafka_paused": sorted(map(str, c._thread._ensure_consumer().paused())),
        "flow_control_active": app.flow_control.is_active(),
        "rebalancing": app.rebalancing,
        "in_recovery": app.tables.recovery.in_recovery,
    }


@dataclass
class Faults:
    """Fault injection for the watchdog's tests, in the first process image only (a restart is the cure)."""

    skip_after: int  # drop five records unseen after this many; 0: never
    stall_after: int  # stop taking records after this many; 0: never
    armed: bool
    taken: int = 0  # records taken by this process image

    def skip(self, tp: Hashable, offset: int) -> bool:
        """Counts the record taken; True for the five to drop unseen."""
        self.taken += 1
        if self.armed and 0 < self.skip_after < self.taken <= self.skip_after + 5:
            log.warning("fault_injected_skip", partition=str(tp), offset=offset)
            return True
        return False

    def stall_now(self) -> bool:
        return self.armed and self.taken == self.stall_after

    async def stall(self, processed: int) -> None:
        """The agent stops taking records and never says why."""
        log.warning("fault_injected_stall", processed=processed)
        await asyncio.Event().wait()
