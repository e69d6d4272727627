"""The drill scenario format (应急演练, 7.2; 情景构建, 7.1.2): typed models, and a YAML loader whose
errors name the line and the field.

The format is documented in scenarios/README.md; its JSON Schema sits beside the scenarios
(`python -m playbooks.schemas` rewrites it). Pure: no clock, no Kafka, no services/.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
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

from playbooks.fold import ObligationStatus
from playbooks.plan import Plan
from playbooks.yaml_lines import line_of as _line_of
from topics.models import (
    EARLIEST,
    LATEST,
    Facts,
    Flags,
    Grade,
    Location,
    ObligationKind,
    RELEASE_KINDS,
    ReportKind,
    ResponseLevel,
)

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
SCHEMA_PATH = SCENARIOS_DIR / "scenario.schema.json"

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


class ReleaseInject(DrillModel):
    """Who drafted a release and when, who approved it and when (offsets from the start, like `at`)."""

    drafted: Offset
    drafted_by: Text
    approved: Offset
    approved_by: Text = Field(description="the commanding body that approved it (现场指挥部, 区应急委, ...)")


class FileInject(_Inject):
    """A report filed by a unit; after its due time it is 迟报. A report never filed is simply absent."""

    action: Literal["file"]
    kind: Literal[FILED_KINDS]  # type: ignore[valid-type]
    unit: UnitRef | None = Field(default=None, description="filing unit; default the obligation's owner")
    by: Text = "演练值班员"
    release: ReleaseInject | None = Field(
        default=None, description="a public release's draft and approval (4.7.1); required for a release")

    @model_validator(mode="after")
    def _release(self) -> "FileInject":
        if ReportKind(self.kind) in RELEASE_KINDS:
            if self.release is None:
                raise ValueError("release: a public release needs its draft and approval "
                                 "(4.7.1: 未经相关应急指挥机构批准不得擅自对外发布)")
            if not self.release.drafted <= self.release.approved <= self.at:
                raise ValueError("release.approved: drafted, then approved, then published (at)")
        elif self.release is not None:
            raise ValueError(f"release: only a public release carries an approval, not {self.kind}")
        return self


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
    announce_public: bool = False  # 4.8.2: the end announced to the public as well


class WarningInject(_Inject):
    """预警 (issue 20): a step of a warning, keyed like an incident (`incident` is the warning's key). A
    drill's warning is Exercise in its CAP and tells the drill addresses only."""

    action: Literal["warning"]
    step: Literal["draft", "approve", "issue", "adjust", "lift"]
    unit: UnitRef = Field(description="the acting unit: the issuer, 区应急办, or the approving authority")
    category: Text | None = Field(default=None, description="draft: a category id of warnings.yaml")
    level: Literal["blue", "yellow", "orange", "red"] | None = Field(default=None, description="draft, adjust")
    area: list[UnitRef] = Field(default_factory=list, description="draft: streets (ids or names)")
    hazards: LongText = ""
    measures: list[Text] = Field(default_factory=list, description="draft, adjust: measure ids of 3.2.5")
    approval: Text | None = Field(default=None, description="approve: district_leader | city_office; adjust: committee_leader")
    approver: Text | None = None
    reason: Text = ""
    by: Text = "演练值班员"


Inject = Annotated[
    Union[ReportInject, FollowupInject, FileInject, ApproveInject, EndInject, WarningInject], Field(discriminator="action")
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
    participants: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=200,
        description="people (directory ids) taking part: a notice to one of them reaches their own channels, marked "
                    "【演练】; everyone else's goes to the drill addresses only (issue 19 item 5)")

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
        drafted: set[str] = set()
        for i, inj in self.ordered():
            if not timedelta(0) <= inj.at <= self.duration:
                problems.append(f"injects.{i}.at: must lie between 00:00 and the duration {format_offset(self.duration)}")
            if isinstance(inj, WarningInject):  # a warning's key names a warning, not an incident
                if inj.step == "draft":
                    if inj.incident in drafted or inj.incident in reported:
                        problems.append(f"injects.{i}.incident: {inj.incident!r} is used already")
                    drafted.add(inj.incident)
                elif inj.incident not in drafted:
                    problems.append(f"injects.{i}.incident: no earlier inject drafts a warning {inj.incident!r}")
                continue
            if isinstance(inj, ReportInject):
                if inj.incident in reported or inj.incident in drafted:
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

