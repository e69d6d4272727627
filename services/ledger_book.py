"""The ledger's inputs as the API holds them: the incidents of the read model (services/view.py) as the
pure ledger reads them, and every 通报 issued, 整改 reported and chase step taken, followed from
yingji.ledger.circulars (the API's book, and the worker's for its 限期整改 timer: services/worker/rectification.py).
Nothing else is kept: the ledger itself is computed on each request from the log's records."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime


from playbooks.ledger.rules import IncidentRecords
from services.following import RecordBook
from services.view import IncidentView
from topics.catalog import LEDGER_CIRCULARS
from topics.ledger import CircularBody, CircularIssued, LedgerRecord


def incident_records(view: IncidentView, ids: Iterable[str] | None = None) -> list[IncidentRecords]:
    """The view's incidents (those of `ids` only, if given) that are reported and decided, as the ledger reads them."""
    chosen = view.incidents.values() if ids is None else (view.incidents[i] for i in ids if i in view.incidents)
    out = []
    for inc in list(chosen):
        if inc.reported is None or not inc.events:
            continue
        type_name = inc.decisions[0].type_name if inc.decisions else (inc.decided.decision.type_name if inc.decided else "")
        out.append(IncidentRecords(incident_id=inc.incident_id, report=inc.reported.report, type_name=type_name,
                                   events=tuple(inc.events.values())))
    return out


class CircularBook(RecordBook):
    """Every 通报, 整改 report and chase step on the log, in order (one partition)."""

    envelope, topic, stage = LedgerRecord, LEDGER_CIRCULARS.name, "ledger"
    records: list[CircularBody]

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Lock()  # one 通报 issued at a time by this process: the period checked, then written

    @property
    def circulars(self) -> dict[str, CircularIssued]:
        return {r.id: r for r in self.records if isinstance(r, CircularIssued)}

    def issued_for(self, period_from: datetime, period_to: datetime) -> CircularIssued | None:
        """The 通报 already issued for exactly this period [from, to), the first if several were."""
        return next((r for r in self.records if isinstance(r, CircularIssued)
                     and r.period_from == period_from and r.period_to == period_to), None)
