"""Record contracts: every record that crosses a topic, and the types they are made of.

Records are frozen pydantic v2 models that refuse unknown fields. Times must carry a timezone;
they travel as ISO 8601 (UTC on the wire is the producer's habit, any offset is accepted).
Personal data of the reporter never travels in plain text: the API seals it before producing.
What people send (HTTP bodies, the CLI's report file) is in topics.requests.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

SCHEMA_VERSION = 1

ShortText = Annotated[str, StringConstraints(max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=4000)]
# An id travels in keys, paths and file names: ASCII letters, digits and . _ : - only.
ID_PATTERN = r"^[A-Za-z0-9._:\-]+$"
RECORD_ID_MAX = 120
RecordId = Annotated[str, StringConstraints(min_length=1, max_length=RECORD_ID_MAX, pattern=ID_PATTERN)]
USER_NAME_MAX = 64
USER_NAME_PATTERN = r"^[A-Za-z0-9._\-]+$"
UserName = Annotated[str, StringConstraints(min_length=1, max_length=USER_NAME_MAX, pattern=USER_NAME_PATTERN)]


EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(timezone.utc)
    except OverflowError as exc:
        raise ValueError("out of range") from exc


def _plausible(value: datetime) -> datetime:
    """Times people enter: 2000–2100, so deadline arithmetic on them can never overflow."""
    if not EARLIEST <= value < LATEST:
        raise ValueError("must be between 2000-01-01 and 2100-01-01")
    return value


def _written_time(value: object) -> object:
    """A time as people and JSON write it: text (ISO 8601) or a datetime, not a bare number that
    pydantic would read as seconds since 1970."""
    if isinstance(value, (int, float)):
        raise ValueError("must be a date and time with its timezone (ISO 8601 text)")
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
InputDatetime = Annotated[AwareDatetime, BeforeValidator(_written_time), AfterValidator(_to_utc), AfterValidator(_plausible)]


def _json_number(value: object) -> object:
    """A count or amount is a JSON number, as the exported schemas say: not "3", not true (pydantic
    would read both as numbers); 3.0 is the integer 3, as in JSON Schema."""
    if isinstance(value, (str, bool)):
        raise ValueError("must be a number")
    return value


# Counts of people and money have physical bounds; finite, so they survive JSON and float maths.
People = Annotated[int, Field(ge=0, le=100_000_000), BeforeValidator(_json_number)]
Yuan = Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False), BeforeValidator(_json_number)]
Hours = Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False), BeforeValidator(_json_number)]


class Contract(BaseModel):
    """Base of every contract: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Envelope(Contract):
    """A topic's record around one body of several kinds (its `body`, declared by the subclass): the record's
    id is its body's, so a retried send of the body is the same record."""

    @model_validator(mode="after")
    def _same_id(self):
        if self.id != self.body.id:  # type: ignore[attr-defined] - the subclass declares both
            raise ValueError("id: must be the body's id")
        return self


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
    CITY_REPORT = "city_report"
    EVALUATION_REPORT = "evaluation_report"
    # 4.7.1 (issue 23): information release and the publicity department
    PUBLICITY_BRIEFING = "publicity_briefing"
    FIRST_RELEASE = "first_release"
    RELEASE_CALIBER = "release_caliber"
    CITY_PUBLICITY_REPORT = "city_publicity_report"
    END_ANNOUNCEMENT = "end_announcement"
    # 区应急办's 研判定级 of an incident reported at 未判明: met by the follow-up that determines the grade
    GRADE_DETERMINATION = "grade_determination"
    # 4.1.5 及时续报: a follow-up owed at the level's cadence, again after each one while the incident is live
    FOLLOWUP = "followup"


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
    deaths: People = 0
    missing: People = 0
    serious_injuries: People = 0
    injuries: People = 0
    poisoned: People = 0
    direct_loss_yuan: Yuan = 0
    evacuated: People = 0
    magnitude: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False), BeforeValidator(_json_number)] | None = None
    interruption_hours: Hours | None = None


class Flags(Contract):
    sensitive: StrictBool = False
    major_event: StrictBool = False
    multi_agency: StrictBool = False
    may_escalate: StrictBool = False
    foreign_involved: StrictBool = False


class Reporter(Contract):
    """Personal data of the citizen who reported: sealed before it reaches any topic."""

    name: ShortText = ""
    phone: ShortText = ""


class ReportFacts(Contract):
    """What the plan's rules read of a report; no personal data of the reporter."""

    report_id: RecordId
    type: ShortText = Field(description="ASCII id or Chinese name of a type of table 2.3.6")
    occurred_at: InputDatetime
    received_at: InputDatetime
    location: Location = Field(default_factory=Location)
    facts: Facts = Field(default_factory=Facts)
    flags: Flags = Field(default_factory=Flags)
    asserted_grade: Grade | None = None
    asserted_by: ShortText | None = None
    source: ShortText = ""
    drill: bool = False
    drill_participants: list[RecordId] = Field(
        default_factory=list, max_length=200,
        description="drills only: the people (directory ids) the scenario names as taking part; a drill's notice to "
                    "one of them reaches their own channels, marked 【演练】 (issue 19 item 5)")
    warning_id: RecordId | None = Field(default=None, description="the warning (预警) this incident followed (issue 20): "
                                                                  "named only; a warning opens no incident")

    @model_validator(mode="after")
    def _received_after_occurred(self) -> "ReportFacts":
        if self.received_at < self.occurred_at:
            raise ValueError("received_at: must not be before occurred_at")
        if self.drill_participants and not self.drill:
            raise ValueError("drill_participants: only a drill names participants")
        return self


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
    counts_from: Literal["received_at", "occurred_at", "basis_at"]
    starts_at: UtcDatetime
    due_at: UtcDatetime
    remind_at: UtcDatetime
    escalation: ShortText
    met_by: Literal["filing", "grade_determined"] = Field(
        default="filing", description="a filing of the kind meets it, or the follow-up that settles a 未判明 grade")
    recurs: bool = Field(default=False, description="owed again, from each filing that meets it, while the incident is live")
    rule: ShortText
    section: ShortText


class SpecialCommand(Contract):
    """Who commands an incident of the type beyond the response level (issue 20 item 1): the special HQ
    (专项应急指挥部/应急工作小组, 2.3.1) behind the type, or the temporary HQ of 2.3.3, and the special
    plans (8.3)."""

    hq_id: ShortText = Field(description="a special HQ's id (units.yaml), or `temporary`")
    hq_name: ShortText
    temporary: bool
    host_unit: ShortText | None = Field(description="the HQ's 主办部门 (2.3.4); None for a temporary HQ")
    special_plans: list[ShortText] = Field(default_factory=list, description="8.3's special plans, as the plan names them")
    our_choice: bool = Field(description="some link of this answer is our reading, not the plan's words")


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
    special_command: SpecialCommand | None = Field(
        default=None, description="the special or temporary HQ and special plans behind the type (2.3.1, 2.3.3, 8.3)")


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
    raised_by: ShortText = Field(default="", description="the signed-in user who raised it")
    sim_now: UtcDatetime | None = Field(
        default=None, description="drills only: the simulated clock's time at which this happens"
    )
    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _simulated_only_in_drills(self) -> "IncidentReported":
        if self.sim_now is not None and not self.report.drill:
            raise ValueError("sim_now: only a drill runs on a simulated clock")
        return self


class IncidentDecided(Contract):
    """The engine's decision on a report (topic incidents.decided, key incident_id)."""

    id: RecordId
    incident_id: RecordId
    drill: bool = False
    decision: Decision
    accepted_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION


class Post(StrEnum):
    """The posts of a duty shift, as a 值班表's columns name them."""

    officer = "officer"  # 值班员
    chief = "chief"  # 值班主任 (值班领导 where a unit calls it so)
    leader = "leader"  # 带班领导


OnDutySource = Literal["rotation", "table", "override", "swap", "fallback", "nobody", "direct"]  # direct: named by hand (a test message)


class OnDutyRef(Contract):
    """Who a notice is for: the person on duty for the post at the notice's own time (an id: the
    directory holds the name), where the answer came from, and the fallback steps taken."""

    unit_id: ShortText = Field(description="the unit whose person answers (another one after a fallback)")
    post: Post
    person_id: RecordId | None = Field(description="None: nobody on the whole fallback chain")
    source: OnDutySource
    at: UtcDatetime = Field(description="the time asked about: the notice's own time")
    reasons: list[LongText] = Field(default_factory=list)


class NotificationRequested(Contract):
    """One unit to be told, one record (topic notifications.requested, key dedup_key)."""

    id: RecordId
    dedup_key: RecordId
    incident_id: RecordId = Field(description="the incident told of; for kind handover, the handover's id (交接班); "
                                              "for kind rectification, the 通报's id (5.5.1 限期整改)")
    drill: bool = False
    unit_id: ShortText
    unit: ShortText
    role: ShortText | None = Field(default=None, description="who in the unit: 值班领导, 值班主任, 分管区领导 …")
    kind: Literal["routing", "reminder", "escalation", "approved_report", "end", "handover", "test", "warning",
                  "rectification"] = Field(
        default="routing", description="test: a test message to one person (yingji notify test, issue 19 item 6); "
                                       "its incident_id is `test`, its ack verifies the person's contacts. warning: a "
                                       "warning (预警) issued, adjusted or lifted (issue 20); its incident_id is the "
                                       "warning's id. rectification: a 通报's 限期整改 not reported, reminded or "
                                       "督办 (5.5.1); its incident_id is the 通报's id")
    level: ResponseLevel | None = Field(
        default=None, description="the incident's response level when the notice was decided (issue 19: it picks "
                                  "the channels and the re-notification ladder's pace); None: no level (交接班)")
    why: LongText
    rule: ShortText
    section: ShortText
    requested_at: UtcDatetime
    on_duty: OnDutyRef | None = Field(
        default=None, description="the person on duty for the role at requested_at (issue 18); None when no roster is kept")
    drill_participants: list[RecordId] = Field(
        default_factory=list, max_length=200,
        description="a drill's notice: the people its scenario names as taking part (reached on their own channels, "
                    "marked 【演练】); anyone else's message goes to the drill addresses only")
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


# --- the incident's life: commands in, timeline events out ---------------------------------


class ReportKind(StrEnum):
    """What a duty officer files (信息报送): each but `followup` satisfies the obligation of its kind."""

    PHONE_REPORT = "phone_report"
    WRITTEN_REPORT = "written_report"
    DETAILED_REPORT = "detailed_report"
    FOLLOWUP = "followup"
    PUBLIC_RELEASE = "public_release"
    CITY_REPORT = "city_report"
    EVALUATION_REPORT = "evaluation_report"
    PUBLICITY_BRIEFING = "publicity_briefing"
    FIRST_RELEASE = "first_release"
    RELEASE_CALIBER = "release_caliber"
    CITY_PUBLICITY_REPORT = "city_publicity_report"
    END_ANNOUNCEMENT = "end_announcement"


# What goes out to the public: published only with the commanding body's approval (4.7.1: 未经相关应急指挥
# 机构批准……不得擅自对外发布)
RELEASE_KINDS = frozenset({ReportKind.FIRST_RELEASE, ReportKind.PUBLIC_RELEASE, ReportKind.END_ANNOUNCEMENT})


def release_problem(kind: "ReportKind", release: Any, filed_at: datetime) -> str | None:
    """What is wrong with a filing's release (its draft and approval), field first; None if nothing. One
    rule for the topic's contract and the API's request (4.7.1: 未经相关应急指挥机构批准不得擅自对外发布)."""
    if kind in RELEASE_KINDS:
        if release is None:
            return ("release: a public release needs its draft and the commanding body's approval "
                    "(4.7.1: 未经相关应急指挥机构批准不得擅自对外发布)")
        if not release.drafted_at <= release.approved_at <= filed_at:
            return ("release.approved_at: must fall between release.drafted_at and filed_at "
                    "(drafted, then approved, then published)")
    elif release is not None:
        return f"release: only a public release carries an approval, not {kind.value}"
    return None


class ReleaseApproval(Contract):
    """A public release's draft and approval (4.7.1); the filing itself is the publication."""

    drafted_by: ShortText = Field(description="the unit or person who drafted it (一般: the lead unit's 口径)")
    drafted_at: UtcDatetime
    approved_by: ShortText = Field(description="the commanding body that approved it, and who for it")
    approved_at: UtcDatetime


class FollowupFacts(Contract):
    """New facts a follow-up report (续报) carries; what is absent stays as it was."""

    facts: Facts | None = None
    flags: Flags | None = None
    location: Location | None = None
    asserted_grade: Grade | None = None
    asserted_by: ShortText | None = None


class ReportFiled(Contract):
    command: Literal["report_filed"] = "report_filed"
    id: RecordId
    incident_id: RecordId
    kind: ReportKind
    unit_id: ShortText
    filed_at: UtcDatetime
    filed_by: ShortText
    content_sealed: Annotated[str, StringConstraints(max_length=40000)] | None = None
    followup: FollowupFacts | None = None
    release: ReleaseApproval | None = Field(
        default=None, description="a public release's draft and approval: required for first_release and public_release")
    items_missing: list[Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,20}$")]] | None = Field(
        default=None, max_length=10,
        description="the 4.1.5 items (playbooks.documents.ITEMS ids) its text lacks, as the API read it before "
                    "sealing; None: no text was given to read")
    recorded_by: ShortText = ""

    @model_validator(mode="after")
    def _release_approved(self) -> "ReportFiled":
        if problem := release_problem(self.kind, self.release, self.filed_at):
            raise ValueError(problem)
        return self


ApproverRole = Literal["director", "deputy_director"]  # 区应急委主任或副主任 (4.1.3)
EndAuthority = Literal["district_committee", "city"]  # who decides 应急结束 (4.8.2)


class ApprovalRecorded(Contract):
    """区应急委主任或副主任 approved reporting a 较大+ event to 市应急办 (4.1.3)."""

    command: Literal["approval_recorded"] = "approval_recorded"
    id: RecordId
    incident_id: RecordId
    approver: ShortText
    approver_role: ApproverRole
    approved_at: UtcDatetime
    recorded_by: ShortText


class EndRecorded(Contract):
    """应急结束 (4.8.2): 区应急委's approval for 一般; the city's decision, recorded, for 较大+."""

    command: Literal["end_recorded"] = "end_recorded"
    id: RecordId
    incident_id: RecordId
    authority: EndAuthority
    decided_by: ShortText
    ended_at: UtcDatetime
    recorded_by: ShortText
    # 4.8.2 "必要时向社会发布应急结束信息": 区应急委 decided the end is announced to the public as well
    announce_public: bool = False


class DueCheck(Contract):
    """Internal: the sweep found something of this incident due at `at`."""

    command: Literal["due_check"] = "due_check"
    id: RecordId
    incident_id: RecordId
    at: UtcDatetime


class DueTick(Contract):
    """Internal: a worker's sweep found incidents of this partition with something due by `at`.

    One record per partition, not one per incident: whoever owns the partition when it reads the tick
    checks that partition's due incidents, a bounded number at a time (topic incidents.due).
    """

    id: RecordId
    partition: int = Field(ge=0, le=10_000, description="the partition this tick is on, and whose incidents it checks")
    at: UtcDatetime
    schema_version: int = SCHEMA_VERSION


class IncidentCommand(Contract):
    """Everything that changes an open incident (topic incidents.commands, key incident_id)."""

    id: RecordId
    incident_id: RecordId
    drill: bool = False
    body: Annotated[ReportFiled | ApprovalRecorded | EndRecorded | DueCheck, Field(discriminator="command")]
    sim_now: UtcDatetime | None = Field(
        default=None, description="drills only: the simulated clock's time at which this happens"
    )
    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _simulated_only_in_drills(self) -> "IncidentCommand":
        if self.sim_now is not None and not self.drill:
            raise ValueError("sim_now: only a drill runs on a simulated clock")
        return self


class EventKind(StrEnum):
    REPORTED = "reported"
    DECIDED = "decided"
    REGRADED = "regraded"
    LEVEL_ADJUSTED = "level_adjusted"
    OBLIGATION_OPENED = "obligation_opened"
    REPORT_FILED = "report_filed"
    OBLIGATION_MET = "obligation_met"
    OBLIGATION_LATE = "obligation_late"
    OBLIGATION_CLOSED = "obligation_closed"
    REMINDER = "reminder"
    BREACH = "breach"
    ESCALATION = "escalation"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVED = "approved"
    RELEASE_DRAFTED = "release_drafted"
    RELEASE_APPROVED = "release_approved"
    REPORT_INCOMPLETE = "report_incomplete"
    ENDED = "ended"
    REJECTED = "rejected"
    # the incident's record handled under a plan version other than the one it was last handled under
    # (a revision adopted or rolled back meanwhile, issue 24 item 3): the obligations it had stay as they were
    PLAN_SWITCHED = "plan_switched"


EventDetail = str | int | float | bool | None


class IncidentEvent(Contract):
    """One line of an incident's timeline (topic incidents.events; breaches and escalations also on
    the escalations topic). `at` is the event's own time (a breach's is its due time); `recorded_at`
    is when the service noticed it."""

    id: RecordId
    incident_id: RecordId
    seq: int
    kind: EventKind
    at: UtcDatetime
    recorded_at: UtcDatetime
    reason: LongText
    section: ShortText | None = None
    obligation: ShortText | None = None
    by: ShortText | None = None
    drill: bool = False
    details: dict[str, EventDetail] = Field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


# --- users ----------------------------------------------------------------------------------


class Role(StrEnum):
    DUTY_OFFICER = "duty_officer"  # 值班员: raise incidents, file reports
    COMMANDER = "commander"  # 指挥员: approve, end
    DRILL_CONTROLLER = "drill_controller"  # 演练导调: run drills
    VIEWER = "viewer"  # 指挥中心大屏: read only
    ADMIN = "admin"  # users


class UserRecord(Contract):
    """A user and the SHA-256 of their bearer token (topic users, compacted, key name). The token
    itself is shown once when made and never stored."""

    id: RecordId
    name: UserName
    role: Role
    token_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    revoked: bool = False
    changed_at: UtcDatetime
    changed_by: ShortText
    schema_version: int = SCHEMA_VERSION
