"""The drill programme's records as the API holds them (7.2): every drill planned, plan revised and
improvement item recorded or closed, followed from the drill programme topic (topics/programme.py). The
runs are the drill book's (services/drill_book.py); the register is computed from both on each request
(playbooks/drill/programme.py)."""

from __future__ import annotations

from services.following import RecordBook
from topics.catalog import DRILL_PROGRAMME
from topics.programme import DrillPlanned, ImprovementClosed, ImprovementRecorded, PlanRevised, ProgrammeRecord


class ProgrammeBook(RecordBook):
    """Every record of the programme on the log, in order (one partition)."""

    envelope, topic, stage = ProgrammeRecord, DRILL_PROGRAMME.name, "programme"
    records: list[DrillPlanned | PlanRevised | ImprovementRecorded | ImprovementClosed]

    def planned(self, planned_id: str) -> DrillPlanned | None:
        return next((r for r in self.records if isinstance(r, DrillPlanned) and r.id == planned_id), None)

    def item(self, item_id: str) -> ImprovementRecorded | None:
        return next((r for r in self.records if isinstance(r, ImprovementRecorded) and r.id == item_id), None)

    def closed(self, item_id: str) -> ImprovementClosed | None:
        return next((r for r in self.records if isinstance(r, ImprovementClosed) and r.item_id == item_id), None)
