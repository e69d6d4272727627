"""The drill programme's records as the API holds them (7.2): every drill planned, plan revised and
improvement item recorded or closed, followed from the drill programme topic (topics/programme.py). The
runs are the drill book's (services/drill_book.py); the register is computed from both on each request
(playbooks/drill/programme.py)."""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import TopicPartition
from pydantic import ValidationError

from services.following import ReadProgress, follow_from_start
from topics.catalog import DRILL_PROGRAMME
from topics.programme import DrillPlanned, ImprovementClosed, ImprovementRecorded, PlanRevised, ProgrammeRecord

log = structlog.get_logger("yingji", stage="programme")


class ProgrammeBook:
    """Every record of the programme on the log, in order (one partition)."""

    def __init__(self) -> None:
        self.records: list[DrillPlanned | PlanRevised | ImprovementRecorded | ImprovementClosed] = []
        self.ids: set[str] = set()
        self.caught_up = asyncio.Event()
        self.progress = ReadProgress()

    def planned(self, planned_id: str) -> DrillPlanned | None:
        return next((r for r in self.records if isinstance(r, DrillPlanned) and r.id == planned_id), None)

    def item(self, item_id: str) -> ImprovementRecorded | None:
        return next((r for r in self.records if isinstance(r, ImprovementRecorded) and r.id == item_id), None)

    def closed(self, item_id: str) -> ImprovementClosed | None:
        return next((r for r in self.records if isinstance(r, ImprovementClosed) and r.item_id == item_id), None)

    async def read_to_end(self) -> None:
        """Read the topic to its end first (a record written by another replica a moment ago), when following it."""
        if self.progress.consumer is not None:
            await self.progress.read_to_end()

    def apply(self, record: ProgrammeRecord) -> None:
        if record.id in self.ids:
            return  # the same record again (a retried send): once
        self.ids.add(record.id)
        self.records.append(record.body)

    def apply_raw(self, topic: str, value: bytes, offset: int) -> None:  # noqa: ARG002 - follow_from_start's apply
        try:
            self.apply(ProgrammeRecord.model_validate_json(value))
        except (ValidationError, ValueError) as exc:
            log.error("bad_programme_record", offset=offset, error=type(exc).__name__)

    async def follow(self, bootstrap: str) -> None:
        await follow_from_start(bootstrap, [TopicPartition(DRILL_PROGRAMME.name, 0)], self.apply_raw, self.caught_up,
                                "programme", self.progress)
