"""The 通报 (5.5.1) and its 限期整改 as records (topic yingji.ledger.circulars, key the circular's id).

Issuing a draft 通报 of the 迟报/漏报/瞒报 ledger (5.5.2) makes each unit it names owe a 限期整改 by a due
time: one CircularIssued. A unit's report that it has rectified is a RectificationReported. The worker's
timer chases a unit that has not reported: at its remind_at a RectificationReminded (a reminder to the
unit), at its due_at a RectificationOverdue (督办 to its 带班领导 and to the issuing unit); each id is the
circular, the unit and the step, so a step is taken once however often the timer runs. What each unit
owes and whether it was met, late or missed is folded from them (playbooks.ledger.circular).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from topics.delivery import fit_id
from topics.models import SCHEMA_VERSION, Contract, Envelope, InputDatetime, LongText, RecordId, ShortText, UtcDatetime


class RectificationOwed(Contract):
    """One unit named in a 通报, and by when it owes its 整改 (5.5.1 限期整改)."""

    unit_id: ShortText
    unit: ShortText = Field(description="the unit's name exactly as the plan writes it")
    breaches: int = Field(ge=1, le=100_000, description="its 迟报, 漏报 and 内容不全 in the period")
    due_at: UtcDatetime
    remind_at: UtcDatetime

    @model_validator(mode="after")
    def _remind_before_due(self) -> "RectificationOwed":
        if self.remind_at > self.due_at:
            raise ValueError("remind_at: must not be after due_at")
        return self


class CircularIssued(Contract):
    record: Literal["circular_issued"] = "circular_issued"
    id: RecordId
    period_from: UtcDatetime
    period_to: UtcDatetime
    issued_at: UtcDatetime
    issued_by: ShortText = Field(description="the signed-in user who issued it")
    issuer_unit_id: ShortText = Field(description="the unit issuing the 通报 (ledger.yaml's circular.issuer)")
    section: ShortText = "5.5.1"
    units: list[RectificationOwed] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _period(self) -> "CircularIssued":
        if self.period_from > self.period_to:
            raise ValueError("period_from: must not be after period_to")
        if len({u.unit_id for u in self.units}) != len(self.units):
            raise ValueError("units: a unit is named once")
        return self


class RectificationReported(Contract):
    record: Literal["rectification_reported"] = "rectification_reported"
    id: RecordId
    circular_id: RecordId
    unit_id: ShortText
    reported_at: UtcDatetime
    reported_by: ShortText


RectificationStepName = Literal["remind", "overdue"]


def rectification_step_id(circular_id: str, unit_id: str, step: RectificationStepName) -> str:
    """The id of a chase step of a unit's 限期整改: the same however often, or wherever, it is computed."""
    return fit_id(f"{circular_id}.{unit_id}.{step}")


class _RectificationStep(Contract):
    id: RecordId = Field(description="rectification_step_id(circular_id, unit_id, step)")
    circular_id: RecordId
    unit_id: ShortText
    at: UtcDatetime = Field(description="the rule's own time: the unit's remind_at, or its due_at")
    recorded_at: UtcDatetime = Field(description="when the timer took the step (at or after `at`)")
    by: ShortText = "ledger-timer"
    rule: ShortText = Field(description="the rule of playbooks/ledger/circular.py that took the step")
    section: ShortText = "5.5.1"
    reason: LongText
    notices: list[RecordId] = Field(default_factory=list, max_length=10,
                                    description="the dedup keys of the notices (notifications.requested) sent with it")


class RectificationReminded(_RectificationStep):
    """At remind_at, no 整改 reported: the unit reminded of its deadline (once)."""

    record: Literal["rectification_reminded"] = "rectification_reminded"


class RectificationOverdue(_RectificationStep):
    """At due_at, no 整改 reported: 督办 to the unit's 带班领导 and to the issuing unit (once)."""

    record: Literal["rectification_overdue"] = "rectification_overdue"


CircularBody = CircularIssued | RectificationReported | RectificationReminded | RectificationOverdue


class LedgerRecord(Envelope):
    """One record of the topic: a 通报 issued, a unit's 整改 reported, or a step of the timer's chase."""

    id: RecordId
    body: Annotated[CircularBody, Field(discriminator="record")]
    schema_version: int = SCHEMA_VERSION


# --- what people send (the API's bodies) -------------------------------------------------------------


class CircularRequest(Contract):
    """Issue the 通报 of the live ledger of the period [start, end) (POST /ledger/circulars)."""

    start: InputDatetime = Field(description="the period's start, as GET /ledger's `from`")
    end: InputDatetime = Field(description="the period's end (excluded), as GET /ledger's `to`")
    rectify_by: InputDatetime | None = Field(
        default=None, description="the 整改期限 this 通报 sets, after now and within a year; absent: ledger.yaml's term "
                                  "(rectification.due_after_days, our choice)")

    @model_validator(mode="after")
    def _period(self) -> "CircularRequest":
        if self.start > self.end:
            raise ValueError("start: must not be after end")
        return self


class RectificationRequest(Contract):
    """A unit named in a 通报 files its 整改 report (POST /ledger/circulars/{id}/rectifications)."""

    unit_id: ShortText
    filed_at: InputDatetime
    filed_by: ShortText = Field(min_length=1)
