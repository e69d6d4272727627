"""The drill programme as records (topic drill programme, plan 7.2): a drill planned for a unit and year
(7.2.2, 规划与计划), a plan's revision (7.2.1: a special plan revised needs a validation drill), and the
improvement items of a run's evaluation (7.2.3, 评估总结和改进): recorded with who and by when, and closed.

The drills run are not here: a run is on the drill runs topic (topics/drills.py) with its evaluation, and
names the planned drill it carries out (`planned_id`). The register is folded from both
(playbooks/drill/programme.py)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from topics.models import SCHEMA_VERSION, Contract, Envelope, InputDatetime, LongText, RecordId, ShortText, UtcDatetime

UnitId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64, description="a unit id of units.yaml")]
PlanId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64,
                              description="a special plan's id (command.yaml special_plans, 8.3), or `general`")]
Year = Annotated[int, Field(ge=2000, le=2099)]
ScenarioId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,19}$", description="a drill scenario's id")]
ExpectationKey = Annotated[str, Field(min_length=3, max_length=300,
                                      description="incident/what of the run's evaluation, e.g. blast/obligations.phone_report")]
GENERAL_PLAN = "general"  # the general plan itself (8.2.1: its revision is 区应急办's)


class DrillKind(StrEnum):
    """7.2.2's two kinds of drill; a scenario writes them in Chinese (its `kind`: 综合 / 单项)."""

    COMPREHENSIVE = "comprehensive"
    SINGLE = "single"

    @property
    def label(self) -> str:
        return {"comprehensive": "综合", "single": "单项"}[self.value]


# --- the records ----------------------------------------------------------------------------------


class DrillPlanned(Contract):
    """A drill in a unit's programme for a year (7.2.2); `validates` a special plan under revision (7.2.1)."""

    record: Literal["drill_planned"] = "drill_planned"
    id: RecordId
    year: Year
    unit_id: UnitId
    kind: DrillKind
    title: ShortText = Field(min_length=1)
    scenario: ScenarioId | None = Field(default=None, description="the scenario it will run, when known")
    planned_for: date | None = Field(default=None, description="the day it is planned for, when set")
    validates: PlanId | None = Field(default=None, description="a validation drill (验证性演练) of this plan's revision")
    planned_by: ShortText
    planned_at: UtcDatetime

    @model_validator(mode="after")
    def _in_its_year(self) -> "DrillPlanned":
        if self.planned_for is not None and self.planned_for.year != self.year:
            raise ValueError("planned_for: must be in the drill's year")
        return self


class PlanRevised(Contract):
    """A plan revised (7.1.5), as the office that maintains it records it: its unit owes a validation drill."""

    record: Literal["plan_revised"] = "plan_revised"
    id: RecordId
    plan_id: PlanId
    unit_id: UnitId = Field(description="who revises it: the special plan's 牵头编制部门 (8.3), 区应急办 for the general plan")
    revised_at: UtcDatetime
    version: ShortText | None = Field(default=None, description="the revision's version, when it has one")
    note: LongText = ""
    recorded_by: ShortText
    recorded_at: UtcDatetime


class ImprovementRecorded(Contract):
    """An improvement item of a run's 评估总结 (7.2.3): who (a unit, a person) does what by when."""

    record: Literal["improvement_recorded"] = "improvement_recorded"
    id: RecordId
    run_id: Annotated[str, Field(pattern=r"^[a-z0-9]{1,16}$")]
    expectation: ExpectationKey | None = Field(default=None, description="the failed expectation it answers")
    unit_id: UnitId
    owner: ShortText = Field(default="", description="the person responsible, when named")
    action: LongText = Field(min_length=1)
    due_at: UtcDatetime
    recorded_by: ShortText
    recorded_at: UtcDatetime


class ImprovementClosed(Contract):
    """An improvement item done: closed on time if by its due time, late after it."""

    record: Literal["improvement_closed"] = "improvement_closed"
    id: RecordId
    item_id: RecordId
    closed_at: UtcDatetime
    closed_by: ShortText
    note: LongText = ""


ProgrammeBody = Annotated[DrillPlanned | PlanRevised | ImprovementRecorded | ImprovementClosed,
                          Field(discriminator="record")]


class ProgrammeRecord(Envelope):
    """One record of the drill programme topic (key: the planned drill's, revision's or item's id)."""

    id: RecordId
    body: ProgrammeBody
    schema_version: int = SCHEMA_VERSION


# --- what people send (the API's bodies) -------------------------------------------------------------


class DrillPlanRequest(Contract):
    """Plan a drill (POST /drills/programme/planned)."""

    year: Year
    unit_id: UnitId
    kind: DrillKind
    title: ShortText = Field(min_length=1)
    scenario: ScenarioId | None = None
    planned_for: date | None = None
    validates: PlanId | None = None

    @model_validator(mode="after")
    def _in_its_year(self) -> "DrillPlanRequest":
        if self.planned_for is not None and self.planned_for.year != self.year:
            raise ValueError("planned_for: must be in the drill's year")
        return self


class RevisionRequest(Contract):
    """Record a plan's revision (POST /drills/programme/revisions)."""

    plan_id: PlanId
    revised_at: InputDatetime
    version: ShortText | None = None
    note: LongText = ""


class ImprovementRequest(Contract):
    """Record an improvement item of a run (POST /drills/programme/improvements)."""

    run_id: Annotated[str, Field(pattern=r"^[a-z0-9]{1,16}$")]
    expectation: ExpectationKey | None = None
    unit_id: UnitId
    owner: ShortText = ""
    action: LongText = Field(min_length=1)
    due_at: InputDatetime


class ImprovementCloseRequest(Contract):
    """Close an improvement item (POST /drills/programme/improvements/{item_id}/close)."""

    closed_at: InputDatetime
    note: LongText = ""
