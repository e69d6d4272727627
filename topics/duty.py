"""Duty contracts (issue 18): the people who stand duty, their rotations, overrides, swaps and shifts.

A Roster is what a unit's 值班表 says; playbooks/duty/ expands it (roster.py), checks it against the
duty rules (rules.py) and reads a 值班表's rows into it (table.py).

On topics (see the catalog): a unit's roster travels as a RosterRecord (compacted, key unit_id) with
each person's name and contacts sealed (SealedPerson); the duty log's events as DutyEvent; a notice
names the person on duty as an OnDutyRef (an id, never a name).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from topics.models import SCHEMA_VERSION, Contract, LongText, OnDutyRef, OnDutySource, Post, RecordId, ShortText, UtcDatetime

__all__ = ["OnDutyRef", "OnDutySource", "Post"]  # re-exported: the duty contracts' own

# A mainland mobile number: 11 digits, 1 then 3-9 (the numbering plan's mobile blocks).
MOBILE_PATTERN = r"^1[3-9][0-9]{9}$"
Mobile = Annotated[str, StringConstraints(pattern=MOBILE_PATTERN)]
Email = Annotated[str, StringConstraints(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
UnitId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]


class DutyModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Employment(StrEnum):
    """How a person is employed: the duty rules turn on it (no 非正式人员顶岗值班, no 借调人员独立值班)."""

    regular = "regular"  # 正式
    seconded = "seconded"  # 借调
    informal = "informal"  # 非正式 or 临时


EMPLOYMENT_NAMES: dict[Employment, str] = {
    Employment.regular: "正式",
    Employment.seconded: "借调",
    Employment.informal: "非正式",
}


POST_NAMES: dict[Post, str] = {Post.officer: "值班员", Post.chief: "值班主任", Post.leader: "带班领导"}


class Contacts(DutyModel):
    """How to reach a person. Personal data (法治政府建设规划 三十一): the model may hold it, but it is
    sealed (as the reporter's name and phone are, services/privacy.py) before it goes on any topic,
    and it never appears in a log line or a metric label."""

    mobile: Mobile | None = None
    email: Email | None = None
    chat_ids: dict[ShortText, ShortText] = Field(default_factory=dict, description="chat system -> id on it")


class Person(DutyModel):
    id: RecordId
    name: ShortText = Field(min_length=1)
    unit_id: UnitId
    post: Post = Field(description="the post the person usually stands")
    is_leader: bool = Field(description="领导干部: may stand as 带班领导")
    employment: Employment
    contacts: Contacts = Field(default_factory=Contacts)


ShiftSource = Literal["rotation", "table", "override", "swap"]


class Shift(DutyModel):
    """One person on one post of one unit for [start, end). `ref` names what it came from (a rotation,
    an override, a swap, a 值班表 row); `row` and `column` the 值班表 cell when it came from one."""

    unit_id: UnitId
    post: Post
    person_id: RecordId
    start: AwareDatetime
    end: AwareDatetime
    source: ShiftSource
    ref: ShortText
    row: int | None = None
    column: ShortText | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "Shift":
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Rotation(DutyModel):
    """People taking a post in turn: the k-th occurrence of the RRULE (RFC 5545) from DTSTART goes to
    people[k % len(people)]. DTSTART carries its zone (Asia/Shanghai), so 08:30 stays 08:30."""

    id: RecordId
    unit_id: UnitId
    post: Post
    rrule: ShortText = Field(description="RFC 5545 RRULE value, e.g. FREQ=DAILY")
    dtstart: AwareDatetime
    duration: timedelta = Field(default=timedelta(hours=24), gt=timedelta(0))
    people: list[RecordId] = Field(min_length=1)

    @model_validator(mode="after")
    def _walkable(self) -> "Rotation":
        # every question of who is on duty walks the rotation from DTSTART: no shifts by the minute
        # or second, and a start within the years people enter (2000-2100)
        freq = next((part.split("=", 1)[1].upper() for part in self.rrule.split(";") if part.upper().startswith("FREQ=")), "")
        if freq in ("SECONDLY", "MINUTELY"):
            raise ValueError(f"rrule: FREQ={freq} is finer than any duty shift (HOURLY at the finest)")
        if not 2000 <= self.dtstart.year < 2100:
            raise ValueError("dtstart: must be between 2000 and 2100")
        return self


class Override(DutyModel):
    """Someone else on a post for [start, end), whatever the rotation says, with who approved it."""

    id: RecordId
    unit_id: UnitId
    post: Post
    person_id: RecordId
    start: AwareDatetime
    end: AwareDatetime
    approved_by: RecordId
    reason: LongText = Field(default="", description="free text, which may name people: sealed on the topic")

    @model_validator(mode="after")
    def _ordered(self) -> "Override":
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Swap(DutyModel):
    """The shift of `from_person` starting at `shift_start` on a post is stood by `to_person`."""

    id: RecordId
    unit_id: UnitId
    post: Post
    shift_start: AwareDatetime
    from_person: RecordId
    to_person: RecordId
    approved_by: RecordId


class Roster(DutyModel):
    """Everything that says who stands duty: the directory, rotations, a 值班表's shifts, overrides, swaps."""

    people: list[Person] = Field(default_factory=list)
    rotations: list[Rotation] = Field(default_factory=list)
    shifts: list[Shift] = Field(default_factory=list, description="planned shifts read from a 值班表")
    overrides: list[Override] = Field(default_factory=list)
    swaps: list[Swap] = Field(default_factory=list)

    def person(self, person_id: str) -> Person | None:
        return next((p for p in self.people if p.id == person_id), None)



# --- on topics ------------------------------------------------------------------------------


class PersonPrivate(DutyModel):
    """What of a Person is personal data: sealed together before any topic."""

    name: ShortText = Field(min_length=1)
    contacts: Contacts = Field(default_factory=Contacts)


class SealedPerson(Contract):
    """A Person as it travels: everything the rules need in the clear, name and contacts sealed."""

    id: RecordId
    unit_id: UnitId
    post: Post
    is_leader: bool
    employment: Employment
    sealed: Annotated[str, StringConstraints(min_length=1, max_length=8000)] = Field(
        description="PersonPrivate (name, contacts), encrypted; never plain text")


RosterSource = Literal["xlsx", "csv", "ics", "json"]


class RosterRecord(Contract):
    """A unit's whole roster as last changed (topic duty.rosters, compacted, key unit_id): its people,
    rotations, a 值班表's shifts, overrides and swaps. The roster in force is the union of every unit's
    latest record; a change replaces its unit's record, checked against the duty rules first."""

    id: RecordId
    unit_id: UnitId
    people: list[SealedPerson] = Field(default_factory=list)
    rotations: list[Rotation] = Field(default_factory=list)
    shifts: list[Shift] = Field(default_factory=list)
    overrides: list[Override] = Field(default_factory=list)
    swaps: list[Swap] = Field(default_factory=list)
    source: RosterSource
    changed_at: UtcDatetime
    changed_by: ShortText
    schema_version: int = SCHEMA_VERSION


class DutyEventKind(StrEnum):
    ROSTER_CHANGED = "roster_changed"
    HANDOVER_OPENED = "handover_opened"
    HANDOVER_CONFIRMED = "handover_confirmed"
    HANDOVER_ESCALATED = "handover_escalated"


class DutyEvent(Contract):
    """One line of a unit's duty log (topic duty.log, key unit_id), besides the incidents' own events.
    `at` is the event's own time (a handover's is its shift change); `recorded_at` when it was noticed.
    A handover's events share `handover_id` (unit and shift change), so each happens once."""

    id: RecordId
    unit_id: UnitId
    kind: DutyEventKind
    at: UtcDatetime
    recorded_at: UtcDatetime
    reason: LongText
    source: ShortText = Field(description="the rule or item it follows: a duty.yaml rule, an issue item")
    by: ShortText | None = Field(default=None, description="the signed-in user, or the stage that did it")
    handover_id: RecordId | None = None
    outgoing_id: RecordId | None = Field(default=None, description="the 值班员 going off duty (person id)")
    incoming_id: RecordId | None = Field(default=None, description="the 值班员 coming on duty (person id)")
    items: list[RecordId] = Field(default_factory=list,
                                  description="what was handed over: incident ids and obligation keys, as confirmed")
    details: dict[ShortText, str | int | float | bool | None] = Field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

