"""The handover timer (交接班, issue 18 item 5): at each unit's shift change a handover is opened on
the duty log; one left unconfirmed past duty.yaml's minutes goes to the unit's 带班领导.

The decision is playbooks/duty/handover.py's `due`, from the rosters and the duty log as the worker's
duty book holds them; its ids are the unit and the change time, so a timer that runs twice (or on
two workers, or after a restart) acts once. The timer runs on the leader only, live time only.
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from playbooks.duty.handover import due, handovers
from playbooks.duty.health import roster_health
from services import metrics
from services.worker.context import Worker
from topics.catalog import DUTY_LOG, NOTIFICATIONS_REQUESTED

log = structlog.get_logger("yingji", stage="handover")
HANDOVER_INTERVAL_S = 20.0
# a fresh start opens the latest change of the last day, not every change since the roster began
LOOKBACK = timedelta(days=1)


async def check_handovers(worker: Worker) -> None:
    """One tick; never raises (Faust crashes the worker on a timer's exception): a failed tick is
    logged, and the next one decides again from the duty log (nothing of a failed one is held)."""
    try:
        await _check_handovers(worker)
    except Exception:  # noqa: BLE001
        log.exception("handover_check_failed")


async def _check_handovers(worker: Worker) -> None:
    book = worker.duty
    if book is None or not book.caught_up.is_set():
        return
    if not book.records:
        return
    now = worker.clock.now()
    units = {u: worker.plan.unit_name(u) for u in book.records if u in worker.plan.units}
    out = due(book.roster(), worker.plan.duty, book.events, now, units=units, lookback=LOOKBACK)
    if not out.events and not out.notifications:
        return
    futures = []
    for event in out.events:
        futures.append(await worker.produce(DUTY_LOG.name, event.unit_id.encode(), event.model_dump_json().encode()))
    for note in out.notifications:
        futures.append(await worker.produce(NOTIFICATIONS_REQUESTED.name, note.dedup_key.encode(),
                                            note.model_dump_json().encode()))
    for f in futures:
        await f
    for event in out.events:  # held at once: the next tick must not emit them again before the echo
        book.apply_event(event)
        metrics.HANDOVERS.labels(unit=event.unit_id, kind=event.kind.value).inc()
        log.info("handover", unit=event.unit_id, handover_id=event.handover_id, kind=event.kind.value)


DUTY_GAUGES_INTERVAL_S = 60.0  # the figures look 30 days ahead: a minute's staleness is nothing


async def refresh_duty_gauges(worker: Worker) -> None:
    """On every worker, not the leader only: one that stops being leader would keep its last figures."""
    try:
        duty_gauges(worker)
    except Exception:  # noqa: BLE001 - a gauge refresh must never take the worker down
        log.exception("duty_gauges_failed")


def duty_gauges(worker: Worker) -> None:
    """Gap seconds and rule violations of every unit with a roster (and every 24-hour unit), and the
    handovers left unconfirmed: what deploy/prometheus/alerts.yml (group yingji-duty) watches."""
    book = worker.duty
    if book is None or not book.caught_up.is_set():
        return
    now = worker.clock.now()
    units = sorted(set(book.records) | set(worker.plan.duty.twenty_four_hour_units.value))
    health = roster_health(book.roster(), worker.plan.duty, units, now, worker.plan.unit_names)
    rules = [r.id for r in worker.plan.duty.rules] + ["reference"]
    for unit, h in health.items():
        metrics.DUTY_GAP.labels(unit=unit).set(h.gap_seconds)
        for rule in rules:
            metrics.DUTY_VIOLATIONS.labels(unit=unit, rule=rule).set(h.violations.get(rule, 0))
    waiting: dict[str, int] = {u: 0 for u in units}
    for state in handovers(book.events).values():
        if state.opened and not state.confirmed:
            waiting[state.unit_id] = waiting.get(state.unit_id, 0) + 1
    for unit, n in waiting.items():
        metrics.HANDOVERS_UNCONFIRMED.labels(unit=unit).set(n)
