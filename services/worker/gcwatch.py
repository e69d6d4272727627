"""Garbage collection pauses of the worker: measured, and the start-up heap kept out of them.

A full (generation 2) collection stops the process while it walks every object it holds. In
`bench --only pipeline` the worker's full collections took 95-190 ms, each one a stall of every
incident in flight; they show as `yingji_gc_pause_seconds{generation="2"}`.
"""

from __future__ import annotations

import gc
import time

import structlog

from services import metrics

log = structlog.get_logger("yingji", stage="gc")
SLOW_S = 0.1  # a pause this long is worth a log line


class GcWatch:
    """One per worker process (the interpreter's collector is one per process too)."""

    def __init__(self) -> None:
        self._started: list[float] = []
        self._frozen = False

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started.append(time.perf_counter())
            return
        if not self._started:
            return
        pause = time.perf_counter() - self._started.pop()
        generation = str(info.get("generation"))
        metrics.GC_PAUSE.labels(generation=generation).observe(pause)
        if pause >= SLOW_S:
            log.info("gc_pause", generation=generation, pause_ms=round(pause * 1000, 1), collected=info.get("collected"))

    def watch(self) -> None:
        """Every collection's pause into yingji_gc_pause_seconds; a slow one logged."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def unwatch(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def settle(self) -> None:
        """Once per process, when the worker first holds its partitions: collect, then move every object
        that survived into the permanent generation, so no later collection walks what the process built
        to start (libraries, the plan, Faust's and aiokafka's state). Measured (`bench --only pipeline`,
        500 incidents at 100/s): full collections in the latency window 22-62 ms, against 95-190 ms
        without; what the worker allocates later (the engine's memo above all) is walked still.

        Once only: a frozen object in a reference cycle is never collected, so freezing at every
        rebalance could keep garbage for the process's life."""
        if self._frozen:
            return
        self._frozen = True
        start = time.perf_counter()
        gc.collect()
        gc.freeze()
        log.info("gc_frozen", objects=gc.get_freeze_count(), took_ms=round((time.perf_counter() - start) * 1000, 1))
