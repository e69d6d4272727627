"""Warning (预警) contracts (issue 20, plan 3.2): what an issuer drafts, the commands that move a warning
(approve, issue, adjust, lift), and the events the warning's life leaves. A warning is not an incident:
it never opens one and never sets a 4.3 response level."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from topics.models import SCHEMA_VERSION, Contract, LongText, RecordId, ShortText, UtcDatetime


class WarningLevel(StrEnum):
    """3.2.2: 四级蓝 … 一级红 (一级 the highest). Ids as warnings.yaml names them."""

    BLUE = "blue"
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"


class WarningContent(Contract):
    """3.2.4: 类别、预警级别、起始时间、可能影响范围、警示事项、应采取的措施、发布单位、发布时间. Every field
    may be left out here so that a missing one is refused by the plan's rule (one line per field), not
    by the parser's."""

    category: ShortText | None = Field(default=None, description="类别: a category id of warnings.yaml")
    level: WarningLevel | None = Field(default=None, description="预警级别")
    start: UtcDatetime | None = Field(default=None, description="起始时间")
    area: list[ShortText] = Field(default_factory=list, max_length=40, description="可能影响范围: street ids")
    hazards: LongText = Field(default="", description="警示事项")
    measures: list[ShortText] = Field(default_factory=list, max_length=20, description="应采取的措施: measure ids (3.2.5)")
    issuer: ShortText | None = Field(default=None, description="发布单位: a unit id")
    issued_at: UtcDatetime | None = Field(default=None, description="发布时间 (set when issued)")


WarningCommandKind = Literal["draft", "approve", "issue", "adjust", "lift", "confirm"]


class WarningCommand(Contract):
    """One step asked of a warning (topic warnings.commands, key warning_id)."""

    id: RecordId
    warning_id: RecordId
    kind: WarningCommandKind
    by: ShortText = Field(description="the signed-in user")
    unit: ShortText = Field(description="the unit acting: the issuer, 区应急办, or the approving authority")
    at: UtcDatetime
    content: WarningContent | None = Field(default=None, description="draft; adjust (the new level and measures)")
    approval: ShortText | None = Field(default=None, description="approve/adjust: the approval step id of warnings.yaml")
    approver: ShortText | None = Field(default=None, description="approve/adjust: who approved, as recorded")
    task_id: RecordId | None = Field(default=None, description="confirm: the task its unit has done (3.2.5, 3.2.8)")
    reason: LongText = ""
    drill: bool = False
    schema_version: int = SCHEMA_VERSION


class WarningStatus(StrEnum):
    DRAFT = "draft"  # awaiting its approvals (橙/红) or its issue
    ISSUED = "issued"
    LIFTED = "lifted"


class WarningTask(Contract):
    """A measure (3.2.5) or a publication (3.2.8) owed by a unit; done when it confirms."""

    id: RecordId
    unit_id: ShortText
    kind: Literal["measure", "publication", "filing"]
    what: ShortText = Field(description="a measure, channel or filing id of warnings.yaml")
    name: LongText
    section: ShortText


class WarningEventKind(StrEnum):
    DRAFTED = "drafted"
    APPROVED = "approved"
    ISSUED = "issued"
    ADJUSTED = "adjusted"
    LIFTED = "lifted"
    TASK_DONE = "task_done"  # a unit confirmed a measure taken or a publication made


class WarningEvent(Contract):
    """One step of a warning's life, with the plan's reasons; what it tells whom (topic warnings.events)."""

    id: RecordId
    warning_id: RecordId
    seq: int = Field(ge=1)
    kind: WarningEventKind
    at: UtcDatetime
    by: ShortText
    level: WarningLevel
    status: WarningStatus
    content: WarningContent
    approvals: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list,
                                                                    description="approval ids recorded so far")
    approval: ShortText | None = Field(default=None, description="approved/adjusted: the approval step recorded")
    approver: ShortText | None = Field(default=None, description="approved/adjusted: who approved")
    proposer: ShortText = Field(default="", description="the unit that drafted the warning")
    task_id: RecordId | None = Field(default=None, description="task_done: the task confirmed")
    tasks: list[WarningTask] = Field(default_factory=list)
    told: list[ShortText] = Field(default_factory=list, description="units told of this step")
    reasons: list[LongText] = Field(default_factory=list)
    drill: bool = False
    schema_version: int = SCHEMA_VERSION
