"""How `deadlines` and `recovery` fill the worker with many open incidents.

Default `--seed changelog`: the incidents' IncidentState values, computed by playbooks.lifecycle.start
(the function the agent runs on each report), are written to the table's changelog while the worker is
down; the worker then recovers them and holds them as it would after ingesting the reports. The ingest
path itself is measured by `pipeline`; `--seed produce` sends the reports through the worker instead
(bounded by the pipeline's throughput: minutes at these sizes).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Iterator

from services.kafka_topics import partition_of
from services.worker.root import TABLE_NAME  # Faust names its changelog <app id>-<table>-changelog
from tests.bench.harness import Phase, Tap, produce_all, until
from topics.catalog import INCIDENTS_DECIDED, INCIDENTS_REPORTED


def changelog_topic(phase: Phase) -> str:
    return f"{phase.settings.app_id}-{TABLE_NAME}-changelog"


async def seed_changelog(producer, phase: Phase, items: Iterator[tuple[str, bytes]]) -> dict[str, float]:
    """Table entries keyed as the agent writes them (JSON key), on the partition of the incident's
    source partition (the default partitioner's murmur2 of the incident id), as Faust does."""
    records, partitions, size, start = [], [], 0, time.monotonic()
    for iid, value in items:
        records.append((json.dumps(iid).encode(), value))
        partitions.append(partition_of(iid))
        size += len(value)
    computed = time.monotonic() - start
    await produce_all(producer, changelog_topic(phase), records, partitions)
    return {"entries": len(records), "mb": round(size / 1e6, 1), "compute_s": round(computed, 1),
            "seed_s": round(time.monotonic() - start, 1)}


async def start_and_recover(phase: Phase, at_least: int) -> tuple[float, dict]:
    """Start the workers; wall time of the start and their schedule_rebuilt line saying >= at_least incidents
    (Phase.start_workers)."""
    started = time.time()
    return started, await asyncio.to_thread(phase.start_workers, at_least)


async def ingest(producer, bootstrap: str, records: list[tuple[bytes, bytes]], timeout: float) -> float:
    """`--seed produce`: the reports through the worker; seconds until every decision is consumed."""
    keys = {k for k, _ in records}
    seen: set[bytes] = set()
    start = time.monotonic()
    async with Tap(bootstrap, [(INCIDENTS_DECIDED.name, INCIDENTS_DECIDED.partitions)],
                   lambda m, t: seen.add(m.key) if m.key in keys else None):
        await produce_all(producer, INCIDENTS_REPORTED.name, records)
        if not await until(lambda: len(seen) >= len(keys), timeout, step=0.1):
            raise RuntimeError(f"ingest: {len(seen)}/{len(keys)} decided within {timeout:.0f}s")
    return time.monotonic() - start
