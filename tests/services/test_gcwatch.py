"""The worker's garbage-collection watch: each pause measured, the start-up heap frozen once."""

from __future__ import annotations

import gc

from services import metrics
from services.worker.gcwatch import GcWatch


def _count(generation: str) -> float:
    return metrics.REGISTRY.get_sample_value("yingji_gc_pause_seconds_count", {"generation": generation}) or 0.0


def test_each_collection_is_measured_by_generation():
    watch = GcWatch()
    watch.watch()
    watch.watch()  # idempotent: one callback
    try:
        assert gc.callbacks.count(watch._on_gc) == 1
        before = _count("2")
        gc.collect()
        assert _count("2") == before + 1
    finally:
        watch.unwatch()
    assert watch._on_gc not in gc.callbacks


def test_settle_freezes_once():
    watch = GcWatch()
    try:
        watch.settle()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        watch.settle()
        assert gc.get_freeze_count() == frozen  # a second rebalance freezes nothing more
    finally:
        gc.unfreeze()
