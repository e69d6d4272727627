"""The 限期整改 timer (issue 23, 5.5.1): a unit named in a 通报 that has not reported its 整改 is reminded
at its remind_at and 督办 at its due time (to its 带班领导 and to the issuing unit).

The decision is playbooks/ledger/circular.py's `chase`, from the records of yingji.ledger.circulars as
the worker's CircularBook holds them. Each step is written back onto that topic (RectificationReminded,
RectificationOverdue) with an id of the circular, the unit and the step, and its notices carry keys made
from it: a timer that runs twice, on two workers or after a restart acts once (the book drops a repeated
id; the delivery stage a repeated dedup key). On the leader only, live time only.
"""

from __future__ import annotations

import structlog

from playbooks.ledger.circular import chase
from services import metrics
from services.worker.context import Worker
from topics.catalog import LEDGER_CIRCULARS, NOTIFICATIONS_REQUESTED
from topics.ledger import LedgerRecord, RectificationReminded

log = structlog.get_logger("yingji", stage="rectification")
RECTIFICATION_INTERVAL_S = 5.0  # a tick is a fold of a few hundred records at most: cheap, and a deadline is met within 5 s


async def check_rectifications(worker: Worker) -> None:
    """One tick; never raises (Faust crashes the worker on a timer's exception): a failed tick is
    logged, and the next one decides again from the log (nothing of a failed one is held)."""
    try:
        await _check_rectifications(worker)
    except Exception:  # noqa: BLE001
        log.exception("rectification_check_failed")


async def _check_rectifications(worker: Worker) -> None:
    book = worker.circulars
    if book is None or not book.caught_up.is_set() or not book.records:
        return
    plan = worker.plan  # the plan in force at this tick: its ledger.yaml says whom and when to chase
    out = chase(book.records, plan.ledger, plan, now=worker.clock.now())
    if not out.records:
        return
    if worker.duty is not None:
        await worker.duty_ready()  # the rosters read before a notice names the person on duty
    futures = []
    for note in out.notifications:  # the notices first: a step on the log has had its notices sent
        if worker.duty is not None:
            try:
                note = worker.duty.address(note)
            except Exception:  # noqa: BLE001 - a notice unaddressed is better than a deadline not chased
                log.exception("notice_not_addressed", circular_id=note.incident_id)
        futures.append(await worker.produce(NOTIFICATIONS_REQUESTED.name, note.dedup_key.encode(),
                                            note.model_dump_json().encode()))
    for f in futures:
        await f
    records = [LedgerRecord(id=r.id, body=r) for r in out.records]
    futures = [await worker.produce(LEDGER_CIRCULARS.name, r.body.circular_id.encode(), r.model_dump_json().encode())
               for r in records]
    for f in futures:
        await f
    for record in records:  # held at once: the next tick must not take the step again before the echo
        book.apply(record)
        step = "remind" if isinstance(record.body, RectificationReminded) else "overdue"
        metrics.RECTIFICATION_STEPS.labels(step=step).inc()
        log.info("rectification_chased", circular_id=record.body.circular_id, unit=record.body.unit_id, step=step,
                 notices=len(record.body.notices))
