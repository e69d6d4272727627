"""The worker's gauges: open incidents and obligations of live incidents, due checks, consumer lag."""

from __future__ import annotations

import structlog

from services import metrics
from services.worker.context import Worker
from topics.catalog import INCIDENT_COMMANDS, INCIDENTS_REPORTED
from topics.models import ObligationKind

log = structlog.get_logger("yingji", stage="incidents")
GAUGES_INTERVAL_S = 5.0
OBLIGATION_KINDS = tuple(k.value for k in ObligationKind)  # every kind the plan can owe
LEVELS = ("一级", "二级", "三级")


async def refresh_gauges(worker: Worker) -> None:
    app, schedule = worker.app, worker.schedule
    if app.rebalancing or not app.tables.recovery.completed.is_set():
        return
    try:
        open_obligations: dict[str, int] = {}
        open_incidents: dict[str, int] = {}
        for level, kinds in schedule.summary.values():
            open_incidents[level] = open_incidents.get(level, 0) + 1
            for kind in kinds:
                open_obligations[kind] = open_obligations.get(kind, 0) + 1
        for kind in OBLIGATION_KINDS:
            metrics.OBLIGATIONS_OPEN.labels(kind=kind).set(open_obligations.get(kind, 0))
        for level in LEVELS:
            metrics.INCIDENTS_OPEN.labels(level=level).set(open_incidents.get(level, 0))
        metrics.DUE_CHECKS.labels(state="ticks_in_flight").set(len(schedule.ticking))
        metrics.DUE_CHECKS.labels(state="waiting").set(schedule.waiting(worker.clock.now()))
        lag: dict[str, int] = {}
        monitor = app.monitor
        for tp, end in (monitor.tp_end_offsets or {}).items():
            committed = (monitor.tp_committed_offsets or {}).get(tp, 0)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - committed)
        for topic in (INCIDENTS_REPORTED.name, INCIDENT_COMMANDS.name):
            metrics.CONSUMER_LAG.labels(topic=topic).set(lag.get(topic, 0))
    except Exception:  # noqa: BLE001 - a gauge refresh must never take the worker down
        log.exception("gauges_failed")

