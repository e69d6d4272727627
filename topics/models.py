"""Record contracts: every record that crosses a topic, plus the report a duty officer submits.

Records are frozen pydantic v2 models that refuse unknown fields. Times must carry a timezone;
they travel as ISO 8601 (UTC on the wire is the producer's habit, any offset is accepted).
Personal data of the reporter never travels in plain text: the API seals it before producing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    StringConstraints,
    model_validator,
)

SCHEMA_VERSION = 1

ShortText = Annotated[str, StringConstraints(max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=4000)]
RecordId = Annotated[str, StringConstraints(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9._:\-]+$")]


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class Contract(BaseModel):
    """Base of every contract: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Grade(StrEnum):
    """事件分级 (1.4.2) plus 未判明 (4.1.3: 暂时无法判明事件等级)."""

    EXTRAORDINARY = "特别重大"
    MAJOR = "重大"
    LARGE = "较大"
    GENERAL = "一般"
    UNDETERMINED = "未判明"


GRADE_RANK: dict[Grade, int] = {
    Grade.UNDETERMINED: 0,
    Grade.GENERAL: 1,
    Grade.LARGE: 2,
    Grade.MAJOR: 3,
    Grade.EXTRAORDINARY: 4,
}


class ResponseLevel(StrEnum):
    """分级响应 (4.3.1): 一级 is the highest."""

    LEVEL_1 = "一级"
    LEVEL_2 = "二级"
    LEVEL_3 = "三级"


LEVEL_RANK: dict[ResponseLevel, int] = {
    ResponseLevel.LEVEL_3: 1,
    ResponseLevel.LEVEL_2: 2,
    ResponseLevel.LEVEL_1: 3,
}


class ObligationKind(StrEnum):
    PHONE_REPORT = "phone_report"
    WRITTEN_REPORT = "written_report"
    DETAILED_REPORT = "detailed_report"
    PUBLIC_RELEASE = "public_release"


class Location(Contract):
    street: ShortText | None = Field(
        default=None, description="属地 street or township, one of the district's 22 (4.2.2)"
    )
    address: ShortText = ""
    key_area: list[ShortText] = Field(
        default_factory=list,
        max_length=10,
        description="重点地区 the incident touches, e.g. 城市副中心, 行政办公区, 人员密集场所 (4.1.4, 4.3.1)",
    )


class Facts(Contract):
    deaths: NonNegativeInt = 0
    missing: NonNegativeInt = 0
    serious_injuries: NonNegativeInt = 0
    injuries: NonNegativeInt = 0
    poisoned: NonNegativeInt = 0
    direct_loss_yuan: NonNegativeFloat = 0
    evacuated: NonNegativeInt = 0
    magnitude: Annotated[float, Field(ge=0, le=10)] | None = None
    interruption_hours: NonNegativeFloat | None = None


class Flags(Contract):
    sensitive: bool = False
    major_event: bool = False
    multi_agency: bool = False
    may_escalate: bool = False
    foreign_involved: bool = False


class Reporter(Contract):
    """Personal data of the citizen who reported: sealed before it reaches any topic."""

    name: ShortText = ""
    phone: ShortText = ""


class ReportFacts(Contract):
    """What the plan's rules read of a report; no personal data of the reporter."""

    report_id: RecordId
    type: ShortText = Field(description="ASCII id or Chinese name of a type of table 2.3.6")
    occurred_at: UtcDatetime
    received_at: UtcDatetime
    location: Location = Field(default_factory=Location)
    facts: Facts = Field(default_factory=Facts)
    flags: Flags = Field(default_factory=Flags)
    asserted_grade: Grade | None = None
    asserted_by: ShortText | None = None
    source: ShortText = ""
    drill: bool = False

    @model_validator(mode="after")
    def _received_after_occurred(self) -> "ReportFacts":
        if self.received_at < self.occurred_at:
            raise ValueError("received_at: must not be before occurred_at")
        return self


class ReportSubmission(Contract):
    """The report contract a duty officer submits (HTTP body, CLI file). report_id is optional."""

    report_id: RecordId | None = None
    type: ShortText
    occurred_at: AwareDatetime
    received_at: AwareDatetime
    location: Location = Field(default_factory=Location)
    facts: Facts = Field(default_factory=Facts)
    flags: Flags = Field(default_factory=Flags)
    asserted_grade: Grade | None = None
    asserted_by: ShortText | None = None
    source: ShortText = ""
    summary: LongText = ""
    reporter: Reporter = Field(default_factory=Reporter)

    @model_validator(mode="after")
    def _received_after_occurred(self) -> "ReportSubmission":
        if self.received_at < self.occurred_at:
            raise ValueError("received_at: must not be before occurred_at")
        return self

    def facts_only(self, *, report_id: str, drill: bool = False) -> ReportFacts:
        data = self.model_dump(exclude={"reporter", "report_id", "summary"})
        return ReportFacts(report_id=report_id, drill=drill, **data)

    def private_details(self) -> "PrivateDetails":
        return PrivateDetails(reporter=self.reporter, summary=self.summary)


class PrivateDetails(Contract):
    """What may identify a citizen: the reporter and the free-text summary. Travels only sealed."""

    reporter: Reporter = Field(default_factory=Reporter)
    summary: LongText = ""


# --- decision -------------------------------------------------------------------------------


class Reason(Contract):
    rule: ShortText = Field(description="id of the playbook rule that fired")
    section: ShortText = Field(description="section of the plan (or the named source) it encodes")
    text: LongText


class Commander(Contract):
    role: ShortText = Field(description="总指挥, 执行总指挥 …, as 4.3.2–4.3.4 write them")
    who: ShortText
    section: ShortText


class Notice(Contract):
    unit_id: ShortText
    unit: ShortText = Field(description="Chinese name exactly as the plan writes it")
    why: LongText
    rule: ShortText
    section: ShortText
    after_approval: bool = Field(
        default=False, description="sent only after 区应急委's director or a deputy approved (4.1.3)"
    )


class Obligation(Contract):
    kind: ObligationKind
    label: ShortText
    owner_id: ShortText
    owner: ShortText
    recipient_id: ShortText
    recipient: ShortText
    counts_from: Literal["received_at", "occurred_at"]
    starts_at: UtcDatetime
    due_at: UtcDatetime
    rule: ShortText
    section: ShortText


class Decision(Contract):
    incident_id: RecordId
    report_id: RecordId
    type_id: ShortText
    type_name: ShortText
    category: ShortText
    category_name: ShortText
    grade: Grade
    computed_grade: Grade
    grading_family: ShortText | None
    response_level: ResponseLevel
    lead_unit_ids: list[ShortText]
    lead_units: list[ShortText]
    commanders: list[Commander]
    field_hq: bool
    under_city_command: bool
    triage_by_district_office: bool
    needs_approval_for_city_report: bool
    notify: list[Notice]
    obligations: list[Obligation]
    reasons: list[Reason]
    decided_at: UtcDatetime
    plan_version: ShortText


# --- records on topics ----------------------------------------------------------------------


class IncidentReported(Contract):
    """A report accepted by the API or CLI (topic incidents.reported, key incident_id)."""

    id: RecordId
    incident_id: RecordId
    report: ReportFacts
    private_sealed: Annotated[str, StringConstraints(max_length=20000)] | None = Field(
        default=None, description="PrivateDetails (reporter's name and phone, summary), encrypted; never plain text"
    )
    accepted_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION


class IncidentDecided(Contract):
    """The engine's decision on a report (topic incidents.decided, key incident_id)."""

    id: RecordId
    incident_id: RecordId
    drill: bool = False
    decision: Decision
    accepted_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION


class NotificationRequested(Contract):
    """One unit to be told, one record (topic notifications.requested, key dedup_key)."""

    id: RecordId
    dedup_key: RecordId
    incident_id: RecordId
    drill: bool = False
    unit_id: ShortText
    unit: ShortText
    why: LongText
    rule: ShortText
    section: ShortText
    requested_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION


class DeadLetter(Contract):
    """A record a stage could not decode or validate, with the reason and the original bytes."""

    id: RecordId
    source_topic: ShortText
    partition: int
    offset: int
    stage: ShortText
    reason: LongText
    fields: list[ShortText] = Field(default_factory=list, description="paths of the failing fields")
    original_b64: str
    failed_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION
