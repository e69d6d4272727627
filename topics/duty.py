"""Duty contracts (issue 18): the people who stand duty, their rotations, overrides, swaps and shifts.

A Roster is what a unit's 值班表 says; playbooks/duty/ expands it (roster.py), checks it against the
duty rules (rules.py) and reads a 值班表's rows into it (table.py). None of these travels on a topic
yet: when one does, a Person's contacts are sealed first (see Contacts).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from topics.models import RecordId, ShortText

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


class Post(StrEnum):
    """The posts of a duty shift, as a 值班表's columns name them."""

    officer = "officer"  # 值班员
    chief = "chief"  # 值班主任 (值班领导 where a unit calls it so)
    leader = "leader"  # 带班领导


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


class Override(DutyModel):
    """Someone else on a post for [start, end), whatever the rotation says, with who approved it."""

    id: RecordId
    unit_id: UnitId
    post: Post
    person_id: RecordId
    start: AwareDatetime
    end: AwareDatetime
    approved_by: RecordId
    reason: ShortText = ""

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

