"""The 通报 (5.5.1) and its 限期整改 as records (topic yingji.ledger.circulars, key the circular's id).

Issuing a draft 通报 of the 迟报/漏报/瞒报 ledger (5.5.2) makes each unit it names owe a 限期整改 by a due
time: one CircularIssued. A unit's report that it has rectified is a RectificationReported. What each
unit owes and whether it was met, late or missed is folded from them (playbooks.ledger.circular).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from topics.models import SCHEMA_VERSION, Contract, InputDatetime, RecordId, ShortText, UtcDatetime


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


class LedgerRecord(Contract):
    """One record of the topic: a 通报 issued, or a unit's 整改 reported."""

    id: RecordId
    body: Annotated[CircularIssued | RectificationReported, Field(discriminator="record")]
    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _same_id(self) -> "LedgerRecord":
        if self.id != self.body.id:
            raise ValueError("id: must be the body's id")
        return self


# --- what people send (the API's bodies) -------------------------------------------------------------


class CircularRequest(Contract):
    """Issue the 通报 of the live ledger of the period [start, end) (POST /ledger/circulars)."""

    start: InputDatetime = Field(description="the period's start, as GET /ledger's `from`")
    end: InputDatetime = Field(description="the period's end (excluded), as GET /ledger's `to`")

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
