"""What people send: the HTTP request bodies and the CLI's report file. None of these travels on a
topic as it is; the API (or the CLI) turns each into the records of topics.models.

They are contracts as the records are (immutable, unknown fields refused), and their times are the
ones people type: aware, and between 2000 and 2100 (InputDatetime).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, GetJsonSchemaHandler, StringConstraints, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema as cs

from topics.duty import Contacts, Employment
from topics.warnings import (
    WarningContent,
    WarningEventKind,
    WarningLevel,
    WarningStatus,
    WarningTask,
)
from topics.models import (
    ID_PATTERN,
    ApproverRole,
    Contract,
    EndAuthority,
    Facts,
    Flags,
    FollowupFacts,
    Grade,
    InputDatetime,
    Location,
    LongText,
    Post,
    PrivateDetails,
    RecordId,
    ReportFacts,
    RELEASE_KINDS,
    ReportKind,
    Reporter,
    release_problem,
    Role,
    ShortText,
    UserName,
)

# An id the client chooses (a report's, a request's). Shorter than a record id: the ids the service
# makes from it (the incident's events, its decisions, a drill's due checks) add up to 14 characters.
CLIENT_ID_MAX = 100
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=CLIENT_ID_MAX, pattern=ID_PATTERN)]
# A client's id for one request: the command it becomes is named after it, so a retry (a lost 202,
# a double click) is the same command, and the incident applies it once.
REQUEST_ID = Field(default=None, description="the client's id for this request: sent again unchanged, it is applied once")
RECEIVED_AFTER_OCCURRED = "received_at: must not be before occurred_at"
# Who did something, by name: text with something in it besides spaces (contracts strip whitespace,
# so " " would be empty), as the schema says with its pattern.
Who = Annotated[ShortText, StringConstraints(min_length=1, pattern=r"\S")]


class ReportSubmission(Contract):
    """The report a duty officer submits (POST /incidents, the CLI's report file). report_id is optional.

    received_at is not before occurred_at; both between 2000-01-01 and 2100-01-01 (UTC)."""

    report_id: ClientId | None = None
    type: ShortText = Field(description="ASCII id or Chinese name of a type of table 2.3.6, or 其他 (2.3.3)")
    occurred_at: InputDatetime
    received_at: InputDatetime = Field(description="not before occurred_at")
    location: Location = Field(default_factory=Location)
    facts: Facts = Field(default_factory=Facts)
    flags: Flags = Field(default_factory=Flags)
    asserted_grade: Grade | None = None
    asserted_by: ShortText | None = None
    source: ShortText = ""
    summary: LongText = ""
    reporter: Reporter = Field(default_factory=Reporter)
    warning_id: ClientId | None = Field(default=None, description="the warning (预警) this incident followed, if any "
                                                                   "(issue 20); it must be one the service knows")

    @model_validator(mode="after")
    def _received_after_occurred(self) -> "ReportSubmission":
        if self.received_at < self.occurred_at:
            raise ValueError(RECEIVED_AFTER_OCCURRED)
        return self

    def facts_only(self, *, report_id: str, drill: bool = False) -> ReportFacts:
        data = self.model_dump(exclude={"reporter", "report_id", "summary"})
        return ReportFacts(report_id=report_id, drill=drill, **data)

    def private_details(self) -> PrivateDetails:
        return PrivateDetails(reporter=self.reporter, summary=self.summary)


class ReleaseRequest(Contract):
    """A public release's draft and approval (4.7.1: 未经相关应急指挥机构批准不得擅自对外发布)."""

    drafted_by: Who = Field(description="who drafted it (一般: the lead unit's 口径)")
    drafted_at: InputDatetime
    approved_by: Who = Field(description="the commanding body that approved it (现场指挥部, 区应急委, ...)")
    approved_at: InputDatetime = Field(description="not before drafted_at, not after filed_at")


class FileReportRequest(Contract):
    """POST /incidents/{id}/reports: a report filed by a unit (its content is sealed). A follow-up
    (续报) carries its new facts in `followup`; no other kind does. A public release (first_release,
    public_release) is the publication: it carries its draft and approval in `release`; no other kind does."""

    kind: ReportKind
    unit_id: ShortText = Field(description="filing unit's id (units.yaml)")
    filed_at: InputDatetime
    filed_by: Who
    content: LongText = ""
    followup: FollowupFacts | None = None
    release: ReleaseRequest | None = None
    request_id: ClientId | None = REQUEST_ID

    @model_validator(mode="after")
    def _followup_facts(self) -> "FileReportRequest":
        if self.kind is ReportKind.FOLLOWUP and self.followup is None:
            raise ValueError("followup: a follow-up report (续报) carries its new facts here")
        if self.kind is not ReportKind.FOLLOWUP and self.followup is not None:
            raise ValueError("followup: only a follow-up report carries new facts")
        if problem := release_problem(self.kind, self.release, self.filed_at):
            raise ValueError(problem)
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: cs.CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The rule of _followup_facts, in the schema too, so a client (and a fuzzer) reads it there:
        one of three shapes, told apart by `kind`."""
        ref = handler(schema)
        body = handler.resolve_ref_schema(ref)
        props = body["properties"]
        releases = sorted(k.value for k in RELEASE_KINDS)
        others = [k.value for k in ReportKind if k is not ReportKind.FOLLOWUP and k not in RELEASE_KINDS]
        body["oneOf"] = [
            {"properties": {"kind": {"const": ReportKind.FOLLOWUP.value}, "followup": _not_null(props["followup"]),
                            "release": {"type": "null"}},
             "required": ["followup"]},
            {"properties": {"kind": {"enum": releases}, "release": _not_null(props["release"]),
                            "followup": {"type": "null"}},
             "required": ["release"]},
            {"properties": {"kind": {"enum": others}, "followup": {"type": "null"}, "release": {"type": "null"}}},
        ]
        return ref


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    return options[0] if len(options) == 1 else {"anyOf": options}


class ApprovalRequest(Contract):
    """POST /incidents/{id}/approvals: 区应急委主任或副主任 approved the report to 市应急办 (4.1.3)."""

    approver: Who
    approver_role: ApproverRole
    approved_at: InputDatetime
    request_id: ClientId | None = REQUEST_ID


class EndRequest(Contract):
    """POST /incidents/{id}/end: 应急结束 (4.8.2)."""

    authority: EndAuthority
    decided_by: Who
    ended_at: InputDatetime
    announce_public: bool = Field(default=False, description="区应急委 decided to announce the end to the public too "
                                  "(4.8.2 必要时向社会发布应急结束信息): an 应急结束信息 release is then owed, approved like any release")
    request_id: ClientId | None = REQUEST_ID


class NewUserRequest(Contract):
    """POST /users: a new user; the answer carries their token, once."""

    name: UserName
    role: Role


# --- duty (issue 18): what people send to change a roster, and what the API answers ------------


class OverrideRequest(Contract):
    """Someone else on a post for [start, end), whatever the roster says (代班), with who approved it."""

    post: Post
    person_id: RecordId
    start: InputDatetime
    end: InputDatetime
    approved_by: RecordId = Field(description="the person (id in the directory) who approved it")
    reason: ShortText = ""

    @model_validator(mode="after")
    def _ordered(self) -> "OverrideRequest":
        if self.end <= self.start:
            raise ValueError("end: must be after start")
        return self


class SwapRequest(Contract):
    """The shift of `from_person` starting at `shift_start` stood by `to_person` (换班), approved."""

    post: Post
    shift_start: InputDatetime
    from_person: RecordId
    to_person: RecordId
    approved_by: RecordId


class HandoverConfirmRequest(Contract):
    """The incoming 值班员 confirms the handover: what they took over (the ids listed to them)."""

    person_id: RecordId | None = Field(default=None, description="the incoming person, when not the rostered one")
    # a body stays within the API's 64 KiB; a longer list is what leaving it out gives (every item listed)
    items: list[RecordId] = Field(default_factory=list, max_length=200, description="the ids taken over; "
                                  "empty: every item the handover lists now")


class PersonAnswer(Contract):
    id: RecordId
    name: ShortText
    unit_id: ShortText
    post: Post
    is_leader: bool
    employment: Employment
    contacts: Contacts | None = Field(description="only for the roles that may read contacts; else null")
    contacts_verified: bool = Field(description="the person acknowledged (已阅) a test message: their contacts reach them")
    verified_at: AwareDatetime | None = Field(description="when they first acknowledged a test message; null: not verified")


class ShiftAnswer(Contract):
    unit_id: ShortText
    unit: ShortText
    post: Post
    post_name: ShortText
    person_id: RecordId
    person: PersonAnswer | None = Field(description="null: the id is not in the directory")
    start: AwareDatetime
    end: AwareDatetime
    source: ShortText = Field(description="rotation, table (a 值班表 row), override or swap")
    ref: ShortText
    row: int | None = None
    column: ShortText | None = None


class DutyPost(Contract):
    post: Post
    post_name: ShortText
    person: PersonAnswer | None
    source: ShortText = Field(description="rotation, table, override, swap, fallback (another post answers) or nobody")
    reasons: list[LongText]
    shift: ShiftAnswer | None


class DutyAnswer(Contract):
    unit_id: ShortText
    unit: ShortText
    at: AwareDatetime
    posts: list[DutyPost]
    roster_kept: bool = Field(description="false: no roster of this unit is on record; every post falls back")


class ContactTestAnswer(Contract):
    """POST /people/{person_id}/test-message: the test notice written; its 已阅 verifies the person's contacts."""

    dedup_key: RecordId = Field(description="the test notice's key (test.{person_id}.…): its deliveries and ack carry it")
    person_id: RecordId


class RosterProblem(Contract):
    rule: ShortText
    message: LongText
    row: int | None = None
    column: ShortText | None = None
    field: ShortText | None = None


class RosterAnswer(Contract):
    unit_id: ShortText
    unit: ShortText
    start: AwareDatetime
    end: AwareDatetime
    shifts: list[ShiftAnswer]
    problems: list[RosterProblem] = Field(description="the duty rules the roster breaks for this unit, next 30 days")
    changed_at: AwareDatetime | None
    changed_by: ShortText | None


class RosterChanged(Contract):
    """A change kept: the units whose record it replaced, and what it holds."""

    units: list[ShortText]
    people: int
    shifts: int
    rotations: int
    changed_at: AwareDatetime


class PersonRef(Contract):
    id: RecordId
    name: ShortText | None = Field(description="null: not in the directory")


class HandoverItem(Contract):
    kind: ShortText = Field(description="incident, obligation or notice")
    id: RecordId
    incident_id: RecordId
    text: LongText
    due_at: AwareDatetime | None = None


class HandoverAnswer(Contract):
    """One handover (交接班) of a unit: its change, who hands over to whom, what is handed over, and
    whether it was confirmed or escalated to the 带班领导."""

    handover_id: RecordId
    unit_id: ShortText
    unit: ShortText
    at: AwareDatetime
    end: AwareDatetime | None
    outgoing: PersonRef | None
    incoming: PersonRef | None
    opened_at: AwareDatetime | None
    confirmed_at: AwareDatetime | None
    confirmed_by: ShortText | None
    escalated_at: AwareDatetime | None
    confirm_by: AwareDatetime = Field(description="the change plus duty.yaml's handover_confirm_minutes")
    items: list[HandoverItem] = Field(description="open items: listed now for an open handover, as confirmed for a confirmed one")


class DutyLogLine(Contract):
    shift_start: AwareDatetime | None
    shift_end: AwareDatetime | None
    officer: PersonRef | None
    at: AwareDatetime
    kind: ShortText
    kind_name: ShortText
    ref: ShortText
    text: LongText


class DutyLogAnswer(Contract):
    unit_id: ShortText
    unit: ShortText
    start: AwareDatetime
    end: AwareDatetime
    lines: list[DutyLogLine]


# --- acknowledgement (已阅, issue 19) and what became of each notice ---------------------------------


class AckRequest(Contract):
    """POST /notices/{dedup_key}/ack's optional body: where the signed-in user acknowledged from."""

    how: Literal["api", "page"] = Field(default="api", description="page: the incident page's 「已阅」 button")


class AckAnswer(Contract):
    """An ack on record: the first one of this user (or person) for the notice; sent again, the same."""

    ack_id: RecordId
    dedup_key: RecordId
    incident_id: RecordId
    person_id: RecordId | None = Field(description="null: a signed-in user with no person in the directory")
    by: ShortText
    how: ShortText = Field(description="link, page or api")
    at: AwareDatetime


class LadderStepAnswer(Contract):
    """A step of the re-notification ladder taken: to whom (post) and when."""

    step: int
    unit_id: ShortText
    role: ShortText
    post: Post
    post_name: ShortText
    person_id: RecordId | None = Field(description="null: nobody on duty was found for the step")
    at: AwareDatetime


class UndeliverableAnswer(Contract):
    step: int
    reason: LongText
    at: AwareDatetime


class NoticeDelivery(Contract):
    """What became of one notice (dedup_key): 已发送 (the first send a provider accepted, any person,
    channel or step), 已送达 (the first delivered), 已阅 (the first ack that was not a test), the
    ladder's steps and whether it was undeliverable. Null: not yet."""

    dedup_key: RecordId
    unit_id: ShortText | None
    unit: ShortText | None
    kind: ShortText | None
    taken_at: AwareDatetime | None = Field(description="the delivery stage took the notice")
    sent_at: AwareDatetime | None
    delivered_at: AwareDatetime | None
    acked_at: AwareDatetime | None
    acked_by: ShortText | None = Field(description="the signed-in user, or `link` for the ack link")
    acked_how: ShortText | None = Field(description="link, page or api")
    acked_person_id: RecordId | None
    failed_sends: int = Field(description="sends that failed (each attempt counted once)")
    undeliverable: list[UndeliverableAnswer]
    ladder: list[LadderStepAnswer]


class IncidentAnswer(Contract):
    """GET /incidents/{id}: the incident as the read model holds it."""

    incident_id: RecordId
    status: Literal["reported", "decided", "ended"]
    drill: bool
    accepted_at: str | None = Field(description="ISO 8601")
    report: dict[str, Any] | None = Field(description="the report (topics.models.IncidentReport), personal data sealed away")
    decision: dict[str, Any] | None = Field(description="the latest decision (topics.models.Decision)")
    notifications: list[dict[str, Any]] = Field(description="each NotificationRequested")
    obligations: list[dict[str, Any]]
    deliveries: list[NoticeDelivery] = Field(description="per notice: sent, delivered, acknowledged, ladder steps")


# --- warnings (预警, issue 20) ---------------------------------------------------------------------

UnitRef = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
# a warning's id: short enough that its steps', tasks' and notices' ids stay record ids
WarningId = Annotated[str, StringConstraints(min_length=1, max_length=60, pattern=ID_PATTERN)]


class WarningDraftRequest(Contract):
    """A warning drafted by its issuing unit (3.2.3): the eight items of 3.2.4 (发布时间 set when issued)."""

    warning_id: WarningId | None = Field(default=None, description="the client's id; one is made when absent")
    unit: UnitRef = Field(description="the unit drafting it: the issuer of 蓝/黄, 区应急办 for 橙/红")
    content: WarningContent
    drill: bool = False


class WarningApproveRequest(Contract):
    unit: UnitRef = Field(description="the approving authority's unit (区政府 for 区领导, 市应急办)")
    approval: Literal["district_leader", "city_office"]
    approver: ShortText = Field(description="who approved, as recorded (3.2.3(1))")


class WarningActRequest(Contract):
    """Issue or lift: the acting unit; a lift's reason (3.2.7)."""

    unit: UnitRef
    reason: LongText = ""


class WarningAdjustRequest(Contract):
    """3.2.6: 区应急办 changes the level with the 区应急委 leader's approval; measures for the new level."""

    unit: UnitRef
    level: WarningLevel
    measures: list[ShortText] = Field(default_factory=list, max_length=20)
    area: list[ShortText] = Field(default_factory=list, max_length=40)
    approval: Literal["committee_leader"] = "committee_leader"
    approver: ShortText
    reason: LongText = ""


class WarningApprovalAnswer(Contract):
    id: str
    approver: str
    by: str
    at: AwareDatetime


class WarningStepAnswer(Contract):
    seq: int
    kind: WarningEventKind
    at: AwareDatetime
    by: str
    level: WarningLevel
    status: WarningStatus
    reasons: list[str]
    tasks: list[WarningTask]
    told: list[str]


class WarningTaskAnswer(Contract):
    task: WarningTask
    done_at: AwareDatetime | None = None
    done_by: str | None = None


class WarningConfirmRequest(Contract):
    unit: UnitRef = Field(description="the unit the task falls to")


class WarningAnswer(Contract):
    warning_id: str
    status: WarningStatus
    level: WarningLevel
    level_name: str = Field(description="四级蓝色 … 一级红色")
    drill: bool
    proposer: str
    content: WarningContent
    approvals: list[WarningApprovalAnswer]
    told: list[str]
    history: list[WarningStepAnswer]
    tasks: list[WarningTaskAnswer] = Field(default_factory=list, description="every measure, publication and filing "
                                                                             "owed, and whether its unit confirmed it")
