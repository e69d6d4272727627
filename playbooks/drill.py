"""Drills (应急演练, 7.2; 情景构建, 7.1.2): a scripted scenario, replayed on a simulated clock, scored.

Three concerns, kept apart so that `drill run` (the live pipeline, events gathered from Kafka) reuses
the last two unchanged:
  1. the scenario: typed models and a YAML loader whose errors name the line and the field;
  2. replay: the injects through the pure incident lifecycle on a simulated clock -> Observed,
     i.e. what happened (events, decisions, notifications per incident) and nothing more;
  3. score: Observed against the scenario's expectations -> Evaluation, rendered as Markdown or JSON.
Pure like the rest of playbooks/: no clock (time is the scenario's own), no Kafka, no services/.
The format is documented in playbooks/drills/README.md; the JSON Schema sits beside the scenarios.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from playbooks.lifecycle import IncidentState, check_due, handle, next_due_at, start
from playbooks.plan import Plan
from topics.models import (
    EARLIEST,
    LATEST,
    ApprovalRecorded,
    Decision,
    EndRecorded,
    EventKind,
    Facts,
    Flags,
    FollowupFacts,
    Grade,
    DueCheck,
    IncidentCommand,
    IncidentEvent,
    IncidentReported,
    Location,
    NotificationRequested,
    ObligationKind,
    ReportFacts,
    ReportFiled,
    ReportKind,
    ResponseLevel,
)

DRILLS_DIR = Path(__file__).resolve().parent / "drills"
SCHEMA_PATH = DRILLS_DIR / "scenario.schema.json"
DISPLAY_TZ = timezone(timedelta(hours=8), "+08:00")  # Asia/Shanghai has had no DST since 1991

# ============================================================================================
# 1. The scenario
# ============================================================================================

_OFFSET = re.compile(r"^(-)?(\d{1,3}):([0-5]\d)(?::([0-5]\d))?$")
OFFSET_PATTERN = _OFFSET.pattern


def parse_offset(value: Any) -> timedelta:
    """"HH:MM" or "HH:MM:SS" after the scenario's start; hours may pass 24; "-" only for `occurred`."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and (m := _OFFSET.match(value.strip())):
        sign = -1 if m.group(1) else 1
        return sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3)), seconds=int(m.group(4) or 0))
    # An int here is YAML 1.1 reading 10:00 as 600 (base 60) in some other loader: say how to write it.
    raise ValueError(f'expected an offset "HH:MM" (quoted), e.g. "01:30", not {value!r}')


def format_offset(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


Offset = Annotated[
    timedelta,
    BeforeValidator(parse_offset),
    PlainSerializer(format_offset, return_type=str),
    WithJsonSchema({"type": "string", "pattern": OFFSET_PATTERN, "examples": ["00:15", "01:30", "-00:05"]}),
]
# Short ids on purpose: the lifecycle derives notification dedup keys from the incident id, plus up
# to 75 characters of obligation, step and unit id, and a record id may not pass 120 characters.
Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,11}$")]
Text = Annotated[str, StringConstraints(max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=4000)]
UnitRef = Annotated[str, StringConstraints(min_length=1, max_length=100)]  # unit id or Chinese name
ObligationStatus = Literal["open", "met", "late", "missed", "closed"]
FILED_KINDS = tuple(k.value for k in ReportKind if k is not ReportKind.FOLLOWUP)


class DrillModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class _Inject(DrillModel):
    at: Offset = Field(description="when the inject happens, after the scenario's start")
    incident: Key = Field(description="the incident's key, local to the scenario")
    note: Text = Field(default="", description="what the controller means to test; shown nowhere else")


class ReportInject(_Inject):
    """接报: a new incident. Its received time is the inject's `at`."""

    action: Literal["report"]
    type: Text = Field(description="type id or Chinese name of table 2.3.6")
    occurred: Offset | None = Field(default=None, description="when it happened (may be negative); default `at`")
    location: Location = Field(default_factory=Location)
    facts: Facts = Field(default_factory=Facts)
    flags: Flags = Field(default_factory=Flags)
    asserted_grade: Grade | None = None
    asserted_by: Text | None = None
    source: Text = "演练"


class FollowupInject(_Inject):
    """续报: new facts. Each of facts / flags / location given replaces the old one whole."""

    action: Literal["followup"]
    unit: UnitRef | None = Field(default=None, description="filing unit; default the first lead unit")
    by: Text = "演练值班员"
    facts: Facts | None = None
    flags: Flags | None = None
    location: Location | None = None
    asserted_grade: Grade | None = None
    asserted_by: Text | None = None


class FileInject(_Inject):
    """A report filed by a unit; after its due time it is 迟报. A report never filed is simply absent."""

    action: Literal["file"]
    kind: Literal[FILED_KINDS]  # type: ignore[valid-type]
    unit: UnitRef | None = Field(default=None, description="filing unit; default the obligation's owner")
    by: Text = "演练值班员"


class ApproveInject(_Inject):
    """区应急委主任或副主任 approves the report to 市应急办 (4.1.3)."""

    action: Literal["approve"]
    approver: Text = "演练审批人"
    role: Literal["director", "deputy_director"] = "deputy_director"
    by: Text = "演练指挥员"


class EndInject(_Inject):
    """应急结束 (4.8.2)."""

    action: Literal["end"]
    authority: Literal["district_committee", "city"]
    decided_by: Text = "演练决策人"
    by: Text = "演练指挥员"


Inject = Annotated[
    Union[ReportInject, FollowupInject, FileInject, ApproveInject, EndInject], Field(discriminator="action")
]


class Expect(DrillModel):
    """What the plan says should happen to one incident by the scenario's end. Absent = not checked."""

    grade: Grade | None = None
    response_level: ResponseLevel | None = None
    lead_units: list[UnitRef] | None = Field(default=None, description="exactly these (ids or names)")
    notified: list[UnitRef] = Field(default_factory=list, description="at least these were routed to")
    not_notified: list[UnitRef] = Field(default_factory=list, description="none of these was routed to")
    regraded_to: list[Grade] | None = Field(default=None, description="every regrade, in order; [] = none")
    level_adjusted_to: list[ResponseLevel] | None = Field(default=None, description="every adjustment; [] = none")
    obligations: dict[ObligationKind, ObligationStatus] = Field(default_factory=dict)
    escalated_to: list[UnitRef] = Field(default_factory=list, description="at least these were chased (督办)")
    breaches: NonNegativeInt | None = None
    escalation_steps: dict[ObligationKind, NonNegativeInt] = Field(
        default_factory=dict, description="highest escalation step reached per obligation (0 = none)"
    )
    approved: bool | None = None
    ended: bool | None = None


class Scenario(DrillModel):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,19}$")]
    name: Text
    kind: Literal["单项", "综合"]
    organiser: Text
    objectives: list[Text] = Field(min_length=1)
    start: AwareDatetime = Field(description="the simulated clock's origin: offsets count from here")
    duration: Offset
    injects: list[Inject] = Field(min_length=1)
    expect: dict[Key, Expect] = Field(default_factory=dict)

    def ordered(self) -> list[tuple[int, _Inject]]:
        """Injects by time; at the same time, in the order written."""
        return sorted(enumerate(self.injects), key=lambda pair: (pair[1].at, pair[0]))

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    @model_validator(mode="after")
    def _consistent(self) -> "Scenario":
        # One "path: message" per line, so the loader can point each at its YAML line.
        problems: list[str] = []
        if self.duration <= timedelta(0):
            problems.append("duration: must be positive")
        # every record a drill makes carries its simulated times, and those take 2000-2100 only
        if not EARLIEST <= self.start < LATEST:
            problems.append("start: must be between 2000-01-01 and 2100-01-01")
        elif self.duration > timedelta(0) and not self.start + self.duration < LATEST:
            problems.append("duration: the drill must end before 2100-01-01")
        reported: set[str] = set()
        for i, inj in self.ordered():
            if not timedelta(0) <= inj.at <= self.duration:
                problems.append(f"injects.{i}.at: must lie between 00:00 and the duration {format_offset(self.duration)}")
            if isinstance(inj, ReportInject):
                if inj.incident in reported:
                    problems.append(f"injects.{i}.incident: {inj.incident!r} is already reported; use a followup")
                if inj.occurred is not None and inj.occurred > inj.at:
                    problems.append(f"injects.{i}.occurred: must not be after the report is received (`at`)")
                elif inj.occurred is not None and EARLIEST <= self.start < LATEST and self.start + inj.occurred < EARLIEST:
                    problems.append(f"injects.{i}.occurred: must not fall before 2000-01-01")
                reported.add(inj.incident)
            elif inj.incident not in reported:
                problems.append(f"injects.{i}.incident: {inj.incident!r} is not reported by an earlier inject")
        for key in self.expect:
            if key not in reported:
                problems.append(f"expect.{key}: no inject reports an incident {key!r}")
        if problems:
            raise ValueError("\n".join(problems))
        return self


def incident_id(scenario: Scenario, key: str, run: str = "drill") -> str:
    """Record id of a scenario's incident; `run` (≤ 8 of a-z 0-9) keeps repeated runs on a broker apart."""
    if not re.fullmatch(r"[a-z0-9]{1,8}", run):
        raise ValueError(f"run: 1 to 8 of a-z 0-9, not {run!r}")
    return f"{run}.{scenario.id}.{key}"


# --- loading, with errors that name the line --------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.2 scalars: `10:00` stays a string (YAML 1.1 would read it as 600, base 60)."""


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$"), list("-+0123456789.")
)


@dataclass(frozen=True)
class ScenarioProblem:
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}" if self.line else f"{self.field}: {self.message}"


class ScenarioError(ValueError):
    """The scenario is refused: every problem names its YAML line and field path."""

    def __init__(self, source: str, problems: list[ScenarioProblem]):
        self.source, self.problems = source, problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def _line_of(root: yaml.Node | None, loc: Iterable[str | int]) -> int | None:
    """Follow a pydantic error location down the composed YAML. A segment that is no key (a missing
    field, a dict key's `[key]` marker) is skipped, so the line is the deepest node that exists."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for seg in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if str(k.value) == str(seg):
                    node, line = v, k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(seg, int) and 0 <= seg < len(node.value):
            node = node.value[seg]
            line = node.start_mark.line + 1
    return line


def _duplicate_keys(node: yaml.Node | None, path: tuple = ()) -> list[tuple[tuple, int]]:
    """PyYAML keeps the last of two equal keys silently; a scenario with one is a typo worth naming."""
    out: list[tuple[tuple, int]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            if str(k.value) in seen:
                out.append(((*path, k.value), k.start_mark.line + 1))
            seen.add(str(k.value))
            out += _duplicate_keys(v, (*path, k.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += _duplicate_keys(item, (*path, i))
    return out


def _dotted(loc: Iterable[str | int]) -> str:
    return ".".join(str(p) for p in loc) or "(scenario)"


_ACTIONS = ("report", "followup", "file", "approve", "end")


def _yaml_loc(loc: tuple) -> tuple:
    """pydantic puts the union's tag in the location (injects.3.file.kind); the YAML has no such key."""
    if len(loc) >= 3 and loc[0] == "injects" and isinstance(loc[1], int) and loc[2] in _ACTIONS:
        return (*loc[:2], *loc[3:])
    return loc


def parse_scenario(text: str, *, source: str = "<scenario>", plan: Plan | None = None) -> Scenario:
    """Parse and validate; with a plan, also check types, streets and units against it."""
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ScenarioError(source, [ScenarioProblem(line, "(yaml)", str(getattr(exc, "problem", exc)))]) from exc
    dupes = _duplicate_keys(root)
    if dupes:
        raise ScenarioError(source, [ScenarioProblem(line, _dotted(p), "key given twice") for p, line in dupes])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "value_error" and re.match(r"^[\w.\-]+: ", msg):  # the cross-checks above
                for one in msg.splitlines():
                    path, text_ = one.split(": ", 1)
                    loc = [int(p) if p.isdigit() else p for p in path.split(".")]
                    problems.append(ScenarioProblem(_line_of(root, [*err["loc"], *loc]), path, text_))
            else:
                loc = _yaml_loc(tuple(err["loc"]))
                if err["type"].startswith("union_tag_"):  # the action itself is missing or unknown
                    loc = (*loc, "action")
                problems.append(ScenarioProblem(_line_of(root, loc), _dotted(loc), msg))
        raise ScenarioError(source, problems) from exc
    if plan is not None:
        problems = [ScenarioProblem(_line_of(root, loc), _dotted(loc), msg) for loc, msg in plan_problems(scenario, plan)]
        if problems:
            raise ScenarioError(source, problems)
    return scenario


def load_scenario(path: Path | str, plan: Plan | None = None) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), [ScenarioProblem(None, "(file)", f"cannot read: {exc.strerror}")]) from exc
    return parse_scenario(text, source=str(path), plan=plan)


def _unit_known(plan: Plan, ref: str) -> bool:
    return ref in plan.units or ref in plan.parties or ref in plan.unit_ids_by_name


def plan_problems(scenario: Scenario, plan: Plan) -> list[tuple[tuple, str]]:
    """What the schema cannot know: every type, street and unit must be the plan's own."""
    out: list[tuple[tuple, str]] = []
    type_names = sorted(plan.type_index)
    for i, inj in enumerate(scenario.injects):
        if isinstance(inj, ReportInject) and plan.find_type(inj.type) is None:
            near = difflib.get_close_matches(inj.type, type_names, n=3, cutoff=0.3)
            out.append((("injects", i, "type"), f"unknown incident type {inj.type!r}; nearest: {', '.join(near) or '—'}"))
        location = getattr(inj, "location", None)
        if location is not None and location.street and location.street not in plan.streets:
            out.append((("injects", i, "location", "street"), f"{location.street!r} is not one of the 22 streets and townships"))
        unit = getattr(inj, "unit", None)
        if unit is not None and not _unit_known(plan, unit):
            out.append((("injects", i, "unit"), f"unknown unit {unit!r}"))
    for key, exp in scenario.expect.items():
        for field in ("lead_units", "notified", "not_notified", "escalated_to"):
            for j, ref in enumerate(getattr(exp, field) or []):
                if not _unit_known(plan, ref):
                    out.append((("expect", key, field, j), f"unknown unit {ref!r}"))
    return out


def schema_text() -> str:
    return json.dumps(Scenario.model_json_schema(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"


# ============================================================================================
# 2. Replay: what happened, on a simulated clock
# ============================================================================================


class IncidentObserved(BaseModel):
    """Everything one incident emitted, whether replayed in-process or gathered from the topics."""

    model_config = ConfigDict(extra="forbid")
    incident_id: str
    events: list[IncidentEvent] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
    notifications: list[NotificationRequested] = Field(default_factory=list)


class Observed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    incidents: dict[str, IncidentObserved] = Field(default_factory=dict, description="by scenario key")

    @classmethod
    def from_records(
        cls, scenario: Scenario, records: Iterable[IncidentEvent | Decision | NotificationRequested], *, run: str
    ) -> "Observed":
        """For `drill run`: group what the pipeline emitted by incident; records of other incidents are ignored."""
        keys = {incident_id(scenario, inj.incident, run): inj.incident for inj in scenario.injects}
        obs = cls(incidents={k: IncidentObserved(incident_id=i) for i, k in keys.items()})
        for rec in records:
            key = keys.get(rec.incident_id)
            if key is None:
                continue
            inc = obs.incidents[key]
            if isinstance(rec, IncidentEvent):
                inc.events.append(rec)
            elif isinstance(rec, Decision):
                inc.decisions.append(rec)
            else:
                inc.notifications.append(rec)
        for inc in obs.incidents.values():  # topics may deliver twice: keep each record once, in order
            inc.events = sorted({e.id: e for e in inc.events}.values(), key=lambda e: e.seq)
            inc.notifications = list({n.dedup_key: n for n in inc.notifications}.values())
            inc.decisions = sorted({d.model_dump_json(): d for d in inc.decisions}.values(), key=lambda d: d.decided_at)
        return obs


def _command(state: IncidentState, inj: _Inject, index: int, now: datetime, plan: Plan) -> IncidentCommand:
    iid = state.incident_id
    cid = f"{iid}.i{index}"
    body: ReportFiled | ApprovalRecorded | EndRecorded
    if isinstance(inj, FollowupInject):
        followup = FollowupFacts(facts=inj.facts, flags=inj.flags, location=inj.location,
                                 asserted_grade=inj.asserted_grade, asserted_by=inj.asserted_by)
        body = ReportFiled(id=cid, incident_id=iid, kind=ReportKind.FOLLOWUP, filed_at=now, filed_by=inj.by,
                           unit_id=_unit_id(plan, inj.unit) or state.decision.lead_unit_ids[0], followup=followup)
    elif isinstance(inj, FileInject):
        owed = state.obligations.get(inj.kind)
        default = owed.obligation.owner_id if owed else state.decision.lead_unit_ids[0]
        body = ReportFiled(id=cid, incident_id=iid, kind=ReportKind(inj.kind), filed_at=now, filed_by=inj.by,
                           unit_id=_unit_id(plan, inj.unit) or default)
    elif isinstance(inj, ApproveInject):
        body = ApprovalRecorded(id=cid, incident_id=iid, approver=inj.approver, approver_role=inj.role,
                                approved_at=now, recorded_by=inj.by)
    elif isinstance(inj, EndInject):
        body = EndRecorded(id=cid, incident_id=iid, authority=inj.authority, decided_by=inj.decided_by,
                           ended_at=now, recorded_by=inj.by)
    else:  # pragma: no cover - the union is closed
        raise TypeError(type(inj))
    return IncidentCommand(id=cid, incident_id=iid, drill=True, body=body)


def _unit_id(plan: Plan, ref: str | None) -> str | None:
    if ref is None or ref in plan.units or ref in plan.parties:
        return ref
    return plan.unit_ids_by_name.get(ref, ref)


def _reported(scenario: Scenario, inj: ReportInject, now: datetime, run: str) -> IncidentReported:
    iid = incident_id(scenario, inj.incident, run)
    occurred = scenario.start + (inj.occurred if inj.occurred is not None else inj.at)
    report = ReportFacts(
        report_id=iid, type=inj.type, occurred_at=occurred, received_at=now, location=inj.location,
        facts=inj.facts, flags=inj.flags, asserted_grade=inj.asserted_grade, asserted_by=inj.asserted_by,
        source=inj.source, drill=True,  # every drill record says so (CAP's status=Exercise)
    )
    return IncidentReported(id=iid, incident_id=iid, report=report, accepted_at=now)


FeedItem = tuple[datetime, Union[IncidentReported, IncidentCommand]]


def replay(scenario: Scenario, plan: Plan, *, run: str = "drill", feed: list[FeedItem] | None = None) -> Observed:
    """Injects in time order through the lifecycle; between them the clock jumps from one due time to
    the next (reminder, breach, escalation step), so six simulated hours take milliseconds.

    feed: if given, receives every record fed to the lifecycle with its simulated time, due checks
    included, in order; `drill run` sends exactly these to the live pipeline at N× real time.
    """
    states: dict[str, IncidentState] = {}
    due_at: dict[str, datetime | None] = {}  # next_due_at of each state, kept as states change
    obs = Observed()

    def record(key: str, out: Any) -> None:
        inc = obs.incidents[key]
        inc.events += out.events
        inc.decisions += out.decisions
        inc.notifications += out.notifications
        if out.state is not states.get(key):  # an unchanged state keeps its due time
            states[key] = out.state
            due_at[key] = next_due_at(out.state, plan)

    def advance(until: datetime, *, inclusive: bool) -> None:
        # An inject at the very minute of a due time goes first: a report filed at 10:00 for a
        # 10:00 deadline is on time (the lifecycle's own rule), so no breach may precede it.
        while True:
            due = {k: t for k, t in due_at.items() if t is not None}
            if not due:
                return
            now = min(due.values())
            if now > until or (now == until and not inclusive):
                return
            for key in sorted(k for k, t in due.items() if t == now):
                if feed is not None:
                    iid = states[key].incident_id
                    cid = f"{iid}.due.{int(now.timestamp())}"
                    feed.append((now, IncidentCommand(id=cid, incident_id=iid, drill=True,
                                                      body=DueCheck(id=cid, incident_id=iid, at=now))))
                out = check_due(states[key], plan, now)
                if out.empty:  # next_due_at promised work: refusing to spin is better than hanging
                    raise RuntimeError(f"drill replay: {key} due at {now.isoformat()} but nothing happened")
                record(key, out)

    for index, inj in scenario.ordered():
        now = scenario.start + inj.at
        advance(now, inclusive=False)
        if isinstance(inj, ReportInject):
            rec = _reported(scenario, inj, now, run)
            obs.incidents[inj.incident] = IncidentObserved(incident_id=rec.incident_id)
            if feed is not None:
                feed.append((now, rec))
            record(inj.incident, start(rec, plan, now))
        else:
            state = states[inj.incident]
            cmd = _command(state, inj, index, now, plan)
            if feed is not None:
                feed.append((now, cmd))
            record(inj.incident, handle(state, cmd, plan, now))
    advance(scenario.end, inclusive=True)
    return obs


# ============================================================================================
# 3. Score: observed against expected
# ============================================================================================

Value = Union[bool, int, float, str, list[str], None]


class ExpectationResult(DrillModel):
    incident: str
    what: str
    expected: Value
    actual: Value
    passed: bool


class ObligationResult(DrillModel):
    incident: str
    kind: ObligationKind
    label: str
    due_at: datetime
    filed_at: datetime | None
    minutes: float | None = Field(description="filed minus due, in minutes: negative = early, positive = late")
    status: ObligationStatus = Field(description="missed stays missed when the incident's end closes it")
    escalation_step: int


class IncidentSummary(DrillModel):
    incident: str
    incident_id: str
    type_name: str
    grade: Grade | None
    response_level: ResponseLevel | None
    lead_units: list[str]
    breaches: int
    escalations: int
    notifications: int


class Totals(DrillModel):
    incidents: int
    expectations: int
    passed: int
    failed: int
    obligations: int
    met: int
    late: int
    missed: int
    breaches: int
    escalations: int
    reminders: int
    notifications: int


class Evaluation(DrillModel):
    scenario: str
    name: str
    kind: str
    organiser: str
    objectives: list[str]
    start: datetime
    end: datetime
    plan_version: str | None
    score: float | None = Field(description="passed / total expectations, percent; None without expectations")
    totals: Totals
    incidents: list[IncidentSummary]
    expectations: list[ExpectationResult]
    obligations: list[ObligationResult]


def _obligations(key: str, inc: IncidentObserved) -> list[ObligationResult]:
    """The obligation table rebuilt from the timeline alone, so topics serve as well as a replay."""
    labels = {ob.kind.value: ob.label for d in inc.decisions for ob in d.obligations}
    rows: dict[str, dict[str, Any]] = {}
    for e in sorted(inc.events, key=lambda e: e.seq):
        kind = e.obligation
        if kind is None:
            continue
        if e.kind is EventKind.OBLIGATION_OPENED:
            rows[kind] = {"due_at": datetime.fromisoformat(str(e.details["due_at"])), "filed_at": None,
                          "status": "open", "step": 0, "label": labels.get(kind) or e.reason.split("：")[0]}
            continue
        row = rows.get(kind)
        if row is None:
            continue
        if e.kind in (EventKind.OBLIGATION_MET, EventKind.OBLIGATION_LATE):
            row["filed_at"], row["status"] = e.at, ("met" if e.kind is EventKind.OBLIGATION_MET else "late")
        elif e.kind is EventKind.BREACH:
            row["status"] = "missed"
        elif e.kind is EventKind.OBLIGATION_CLOSED and row["status"] == "open":
            row["status"] = "closed"
        elif e.kind is EventKind.ESCALATION:
            row["step"] = max(row["step"], int(e.details.get("step") or 0))
    return [
        ObligationResult(
            incident=key, kind=ObligationKind(kind), label=r["label"], due_at=r["due_at"], filed_at=r["filed_at"],
            minutes=None if r["filed_at"] is None else round((r["filed_at"] - r["due_at"]).total_seconds() / 60, 1),
            status=r["status"], escalation_step=r["step"],
        )
        for kind, r in rows.items()
    ]


def _matches(ref: str, unit_id: str, name: str) -> bool:
    return ref in (unit_id, name)


def _check(key: str, exp: Expect, inc: IncidentObserved | None, obligations: list[ObligationResult]) -> list[ExpectationResult]:
    rows: list[ExpectationResult] = []

    def add(what: str, expected: Value, actual: Value, passed: bool | None = None) -> None:
        rows.append(ExpectationResult(incident=key, what=what, expected=expected, actual=actual,
                                      passed=(expected == actual) if passed is None else passed))

    inc = inc or IncidentObserved(incident_id="")
    last = inc.decisions[-1] if inc.decisions else None
    events = inc.events
    if exp.grade is not None:
        add("grade", exp.grade.value, last.grade.value if last else None)
    if exp.response_level is not None:
        add("response_level", exp.response_level.value, last.response_level.value if last else None)
    if exp.lead_units is not None:
        actual = list(zip(last.lead_unit_ids, last.lead_units)) if last else []
        same = len(actual) == len(exp.lead_units) and all(any(_matches(r, i, n) for i, n in actual) for r in exp.lead_units)
        add("lead_units", list(exp.lead_units), [n for _, n in actual], same)
    routed = [(n.unit_id, n.unit) for n in inc.notifications if n.kind in ("routing", "approved_report")]
    for ref in exp.notified:
        add(f"notified.{ref}", True, any(_matches(ref, i, n) for i, n in routed))
    for ref in exp.not_notified:
        add(f"not_notified.{ref}", False, any(_matches(ref, i, n) for i, n in routed))
    chased = [(n.unit_id, n.unit) for n in inc.notifications if n.kind == "escalation"]
    for ref in exp.escalated_to:
        add(f"escalated_to.{ref}", True, any(_matches(ref, i, n) for i, n in chased))
    if exp.regraded_to is not None:
        add("regraded_to", [g.value for g in exp.regraded_to],
            [str(e.details["to_grade"]) for e in events if e.kind is EventKind.REGRADED])
    if exp.level_adjusted_to is not None:
        add("level_adjusted_to", [lv.value for lv in exp.level_adjusted_to],
            [str(e.details["to_level"]) for e in events if e.kind is EventKind.LEVEL_ADJUSTED])
    by_kind = {o.kind: o for o in obligations}
    for kind, status in exp.obligations.items():
        add(f"obligations.{kind.value}", status, by_kind[kind].status if kind in by_kind else "not opened")
    if exp.breaches is not None:
        add("breaches", exp.breaches, sum(e.kind is EventKind.BREACH for e in events))
    for kind, step in exp.escalation_steps.items():
        add(f"escalation_steps.{kind.value}", step, by_kind[kind].escalation_step if kind in by_kind else 0)
    if exp.approved is not None:
        add("approved", exp.approved, any(e.kind is EventKind.APPROVED for e in events))
    if exp.ended is not None:
        add("ended", exp.ended, any(e.kind is EventKind.ENDED for e in events))
    return rows


def score(scenario: Scenario, observed: Observed) -> Evaluation:
    """Observed against the scenario's expectations; deterministic for the same input."""
    obligations: list[ObligationResult] = []
    summaries: list[IncidentSummary] = []
    for key, inc in observed.incidents.items():
        obligations += _obligations(key, inc)
        last = inc.decisions[-1] if inc.decisions else None
        summaries.append(IncidentSummary(
            incident=key, incident_id=inc.incident_id, type_name=last.type_name if last else "",
            grade=last.grade if last else None, response_level=last.response_level if last else None,
            lead_units=list(last.lead_units) if last else [],
            breaches=sum(e.kind is EventKind.BREACH for e in inc.events),
            escalations=sum(e.kind is EventKind.ESCALATION for e in inc.events),
            notifications=len(inc.notifications),
        ))
    results: list[ExpectationResult] = []
    for key, exp in scenario.expect.items():
        results += _check(key, exp, observed.incidents.get(key), [o for o in obligations if o.incident == key])
    passed = sum(r.passed for r in results)
    every_event = [e for inc in observed.incidents.values() for e in inc.events]
    versions = sorted({d.plan_version for inc in observed.incidents.values() for d in inc.decisions})
    totals = Totals(
        incidents=len(observed.incidents), expectations=len(results), passed=passed, failed=len(results) - passed,
        obligations=len(obligations), met=sum(o.status == "met" for o in obligations),
        late=sum(o.status == "late" for o in obligations), missed=sum(o.status == "missed" for o in obligations),
        breaches=sum(e.kind is EventKind.BREACH for e in every_event),
        escalations=sum(e.kind is EventKind.ESCALATION for e in every_event),
        reminders=sum(e.kind is EventKind.REMINDER for e in every_event),
        notifications=sum(len(inc.notifications) for inc in observed.incidents.values()),
    )
    return Evaluation(
        scenario=scenario.id, name=scenario.name, kind=scenario.kind, organiser=scenario.organiser,
        objectives=list(scenario.objectives), start=scenario.start, end=scenario.end,
        plan_version=", ".join(versions) or None,
        score=round(100 * passed / len(results), 1) if results else None,
        totals=totals, incidents=summaries, expectations=results, obligations=obligations,
    )


def evaluate(scenario: Scenario, plan: Plan, *, run: str = "drill") -> Evaluation:
    """`drill eval`: replay in-process, then score."""
    problems = plan_problems(scenario, plan)
    if problems:
        raise ScenarioError(scenario.id, [ScenarioProblem(None, _dotted(loc), msg) for loc, msg in problems])
    return score(scenario, replay(scenario, plan, run=run))


# --- rendering --------------------------------------------------------------------------------

_WHAT = {
    "grade": "事件等级", "response_level": "响应级别", "lead_units": "牵头单位", "notified": "应通知",
    "not_notified": "不应通知", "escalated_to": "督办到",
    "regraded_to": "等级调整", "level_adjusted_to": "响应级别调整",
    "obligations": "报送义务", "breaches": "逾期（漏报）次数", "escalation_steps": "督办级数",
    "approved": "区应急委批准", "ended": "应急结束",
}
_STATUS = {"open": "未到期", "met": "按时", "late": "迟报", "missed": "漏报", "closed": "已关闭", "not opened": "未产生"}


def _cell(value: Value) -> str:
    if isinstance(value, bool):
        text = "是" if value else "否"
    elif isinstance(value, list):
        text = "、".join(value) or "（无）"
    elif value is None:
        text = "—"
    else:
        text = _STATUS.get(str(value), str(value))
    return text.replace("|", "\\|").replace("\n", " ")


def _when(ev: Evaluation, at: datetime | None) -> str:
    if at is None:
        return "—"
    local, origin = at.astimezone(DISPLAY_TZ), ev.start.astimezone(DISPLAY_TZ)
    shown = f"{local:%H:%M}" if local.date() == origin.date() else f"{local:%m-%d %H:%M}"
    return f"T+{format_offset(at - ev.start)}（{shown}）"


def to_markdown(ev: Evaluation) -> str:
    """The evaluation as Markdown; the same evaluation gives the same text."""
    t = ev.totals
    score = f"{ev.score:g}%（{t.passed}/{t.expectations} 项符合预期）" if ev.score is not None else "（未设预期）"
    lines = [
        f"# 演练评估：{ev.name}", "",
        f"- 演练：`{ev.scenario}`，{ev.kind}演练，组织单位 {ev.organiser}",
        f"- 模拟时间：{ev.start.astimezone(DISPLAY_TZ):%Y-%m-%d %H:%M} 至 {ev.end.astimezone(DISPLAY_TZ):%Y-%m-%d %H:%M}"
        f"（+08:00，时长 {format_offset(ev.end - ev.start)}）",
        f"- 预案版本：{ev.plan_version or '—'}",
        f"- **得分：{score}**", "", "演练目标：", *[f"- {o}" for o in ev.objectives], "",
        "## 事件概况", "", "| 事件 | 类型 | 等级 | 响应 | 牵头单位 | 逾期 | 督办 | 通知 |", "|---|---|---|---|---|---|---|---|",
    ]
    for s in ev.incidents:
        lines.append(f"| {s.incident} | {s.type_name} | {_cell(s.grade.value if s.grade else None)} | "
                     f"{_cell(s.response_level.value if s.response_level else None)} | {_cell(s.lead_units)} | "
                     f"{s.breaches} | {s.escalations} | {s.notifications} |")
    lines += ["", "## 预期核对", ""]
    if ev.expectations:
        lines += ["| 事件 | 项目 | 预期 | 实际 | 结果 |", "|---|---|---|---|---|"]
        labels = {(o.incident, o.kind.value): o.label for o in ev.obligations}
        for r in ev.expectations:
            head, _, rest = r.what.partition(".")
            what = _WHAT.get(head, head) + (f"：{labels.get((r.incident, rest), rest)}" if rest else "")
            lines.append(f"| {r.incident} | {_cell(what)} | {_cell(r.expected)} | {_cell(r.actual)} | "
                         f"{'✔ 符合' if r.passed else '✘ 不符'} |")
    else:
        lines.append("（本演练未设预期）")
    lines += ["", "## 报送义务", "", "| 事件 | 义务 | 应报时间 | 实际报送 | 早(−)/迟(+)分钟 | 状态 | 督办级数 |",
              "|---|---|---|---|---|---|---|"]
    for o in ev.obligations:
        minutes = "—" if o.minutes is None else f"{o.minutes:+g}"
        lines.append(f"| {o.incident} | {_cell(o.label)} | {_when(ev, o.due_at)} | {_when(ev, o.filed_at)} | {minutes} | "
                     f"{_cell(o.status)} | {o.escalation_step or '—'} |")
    lines += ["", "## 合计", "",
              f"- 事件 {t.incidents} 起；报送义务 {t.obligations} 项：按时 {t.met}，迟报 {t.late}，漏报 {t.missed}",
              f"- 逾期 {t.breaches} 次，逐级督办 {t.escalations} 次，到期提醒 {t.reminders} 次，通知 {t.notifications} 条",
              f"- 预期 {t.expectations} 项：符合 {t.passed}，不符 {t.failed}", ""]
    return "\n".join(lines)


def to_json(ev: Evaluation) -> str:
    return json.dumps(ev.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n"


if __name__ == "__main__":  # `python -m playbooks.drill` rewrites the scenario JSON Schema
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(SCHEMA_PATH)
