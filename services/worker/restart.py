"""What the watchdog does about a stall or a gap: restart the worker in place (services/worker/watchdog.py
keeps the bookkeeping that tells it when)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any, NoReturn

import structlog

from services.worker.context import Worker
from services.worker.watchdog import consumer_state

log = structlog.get_logger("yingji", stage="incidents")
WATCH_INTERVAL_S = 2.0


async def stall_watchdog(worker: Worker) -> None:
    """Lag on this worker's inbound partitions and nothing processed for `stall_restart_s`: restart in place."""
    if worker.settings.stall_restart_s <= 0:
        return
    watch, app = worker.watch, worker.app
    if not worker.settled():
        watch.pause()
        return
    tps = [tp for tp in app.consumer.assignment() if tp.topic in worker.inbound_topics]
    if not tps:
        watch.pause()
        return
    try:
        ends = await asyncio.wait_for(app.consumer.highwaters(*tps), timeout=10)
    except Exception:  # noqa: BLE001 - the broker unreachable is an outage, not a stalled consumer
        watch.pause()
        return
    unread = watch.unread(ends, app.consumer._committed_offset)
    stalled = watch.check(unread, time.monotonic())
    if stalled is None:
        return
    behind = {tp: watch.positions[tp] for tp in tps if tp in watch.positions and ends.get(tp, 0) > watch.positions[tp]}
    if behind:  # read again from what this worker really handled, whatever Faust committed
        await app.consumer._thread.commit(behind)
    await worker.restart_in_place("worker_stalled_restarting", unread=unread, stalled_s=round(stalled, 1))


async def restart_in_place(worker: Worker, event: str, **details: Any) -> NoReturn:
    """A fresh process image: a new Faust app joins the group and resumes from the committed offsets."""
    app = worker.app
    restarts = worker.settings.worker_restarts
    try:
        state = consumer_state(app)
    except Exception as exc:  # noqa: BLE001 - the restart matters more than the diagnostic
        state = {"unavailable": repr(exc)}
    log.error(event, restarts=restarts, consumer=state, **details)
    try:  # table writes still in Faust's buffer would die with this image, their records committed
        await asyncio.wait_for(app.producer.flush(), timeout=30)
    except Exception:  # noqa: BLE001 - then their records are read again: the commit waits for no flush
        log.exception("flush_before_restart_failed")
    sys.stdout.flush()
    sys.stderr.flush()
    # the next image reads its restart count from the settings (YINGJI_WORKER_RESTARTS)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]],
              {**os.environ, "YINGJI_WORKER_RESTARTS": str(restarts + 1)})
