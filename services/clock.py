"""The one Clock services read "now" from: the wall clock live, a simulated clock in drills and tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class SimulatedClock:
    """Starts at `start` and runs `speed` times faster than the wall clock; `advance` jumps ahead."""

    def __init__(self, start: datetime, speed: float = 1.0, wall: Clock | None = None):
        if start.tzinfo is None:
            raise ValueError("start: must carry a timezone")
        self._wall = wall or WallClock()
        self._origin_wall = self._wall.now()
        self._origin = start
        self._speed = speed
        self._offset = timedelta()

    def now(self) -> datetime:
        elapsed = self._wall.now() - self._origin_wall
        return self._origin + elapsed * self._speed + self._offset

    def advance(self, delta: timedelta) -> None:
        self._offset += delta
