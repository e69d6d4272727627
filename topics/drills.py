"""Drill run contracts (topic drill runs): a run as the API process running it records it, and a stop
asked of it. Every API replica shows and controls the runs from these records, not from the memory of
the process that started one (issue 22 item 2)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from topics.models import SCHEMA_VERSION, Contract, LongText, RecordId, ShortText, UtcDatetime

RunId = Annotated[str, Field(pattern=r"^[a-z0-9]{1,8}$", description="the run's id, 1 to 8 of a-z 0-9")]


class DrillRunStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"


class DrillRunRecorded(Contract):
    """The run as its runner last recorded it: started, its progress (at most about once a second), and
    how it ended, with the evaluation. The latest record of a run is its state."""

    kind: Literal["run"] = "run"
    id: RecordId = Field(description="run_id.n: the runner's n-th record of the run")
    run_id: RunId
    scenario: ShortText = Field(description="the scenario's id")
    name: ShortText = Field(description="the scenario's name")
    speed: float = Field(gt=0, le=100_000)
    started_by: ShortText
    started_at: UtcDatetime = Field(description="wall clock, when the runner started it")
    runner: ShortText = Field(description="the API process running it (host and port)")
    status: DrillRunStatus
    sent: int = Field(ge=0)
    total: int = Field(ge=0)
    start: UtcDatetime = Field(description="the scenario's simulated start")
    end: UtcDatetime = Field(description="the scenario's simulated end")
    simulated_now: UtcDatetime | None = None
    incidents: list[RecordId] = Field(default_factory=list, max_length=1000, description="the run's incident ids")
    error: LongText | None = None
    stopped_by: ShortText | None = None
    planned_id: RecordId | None = Field(default=None, description="the planned drill it carries out "
                                        "(topics/programme.py DrillPlanned), when the controller named one")
    evaluation: dict[str, Any] | None = Field(default=None, description="the score (playbooks/drill/evaluation.py), when done")
    markdown: Annotated[str, Field(max_length=400_000)] | None = Field(default=None, description="the evaluation as a report")
    at: UtcDatetime
    schema_version: int = SCHEMA_VERSION


class DrillStopRequested(Contract):
    """A stop asked of a running drill, on any API replica: the runner stops it and records it stopped."""

    kind: Literal["stop"] = "stop"
    id: RecordId
    run_id: RunId
    by: ShortText
    at: UtcDatetime
    schema_version: int = SCHEMA_VERSION


DrillRunBody = Annotated[DrillRunRecorded | DrillStopRequested, Field(discriminator="kind")]


class DrillRunEvent(Contract):
    """One record of the drill runs topic (key run_id)."""

    id: RecordId
    run_id: RunId
    body: DrillRunBody
    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _same_record(self) -> "DrillRunEvent":
        if self.id != self.body.id or self.run_id != self.body.run_id:
            raise ValueError("id, run_id: must be the body's")
        return self

    @classmethod
    def of(cls, body: DrillRunRecorded | DrillStopRequested) -> "DrillRunEvent":
        return cls(id=body.id, run_id=body.run_id, body=body)
