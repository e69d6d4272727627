"""The plan as typed data: YAML in playbooks/data parsed into pydantic models, checked at load.

An unknown fact, unit id, grade or condition key fails when the plan loads, naming the file and the
path inside it, not when a rule first fires.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, model_validator

from playbooks.command import Command, CommandFile, KeyArea, command_for, implies_foreign, key_area
from playbooks.delivery.channels import ChannelsFile
from playbooks.district_grid import DistrictGridFile
from playbooks.delivery.ladder import LadderFile
from playbooks.warning.config import WarningsFile
from playbooks.duty.config import DutyFile
from playbooks.ledger.config import LedgerFile
from playbooks.drills_config import DrillsFile
from playbooks.yaml_lines import line_of, parse_path
from topics.models import Grade, ObligationKind, ResponseLevel

DATA_DIR = Path(__file__).resolve().parent / "data"

# The facts a grading criterion or a condition may name. Derived facts follow the counting rules of
# the sources: production safety counts missing with the dead and acute poisoning with serious injury.
FACTS: dict[str, str] = {
    "deaths": "死亡人数",
    "missing": "失踪人数",
    "deaths_incl_missing": "死亡（含失踪）人数",
    "serious_injuries": "重伤人数",
    "injuries": "受伤人数",
    "poisoned": "中毒人数",
    "serious_injuries_incl_poisoned": "重伤（含急性中毒）人数",
    "poisoned_or_serious_injuries": "中毒或重伤人数",
    "direct_loss_yuan": "直接经济损失（元）",
    "evacuated": "疏散、转移人数",
    "magnitude": "震级",
    "interruption_hours": "连续中断行车（小时）",
}
FLAGS = ("sensitive", "major_event", "multi_agency", "may_escalate", "foreign_involved")
CATEGORIES = ("natural_disaster", "accident_disaster", "public_health", "social_security")

# The vocabulary as the exported JSON Schema shows it to an editor (playbooks/schemas/); the load
# checks it with the validators below, whose errors name the file and the path.
Fact = Annotated[str, WithJsonSchema({"type": "string", "enum": list(FACTS)})]
Flag = Annotated[str, WithJsonSchema({"type": "string", "enum": list(FLAGS)})]
Category = Annotated[str, WithJsonSchema({"type": "string", "enum": list(CATEGORIES)})]


class PlanModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class PlanProblem:
    """One thing wrong with the plan: its file, the line there (when the path is found) and the field."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}"


class PlanError(ValueError):
    """The plan's YAML is wrong: names the file and the path inside it (and, in `problems`, the line)."""

    def __init__(self, message: str, problems: list[PlanProblem] | None = None):
        super().__init__(message)
        self.problems = problems or []


# --- units and types ------------------------------------------------------------------------


class Unit(PlanModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    kind: Literal["committee", "office", "department", "command", "police_fire", "street", "city", "party", "other"]
    aliases: list[str] = Field(default_factory=list)
    section: str


class IncidentType(PlanModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    seq: int = Field(ge=0, le=52, description="row of table 2.3.6; 0 for the one type outside it (其他)")
    name: str
    note: str | None = None
    category: Literal["natural_disaster", "accident_disaster", "public_health", "social_security", "unlisted"]
    category_name: str
    subcategory: str
    lead_units: list[str] = Field(min_length=1)
    lead_units_open_ended: bool = False
    grading_family: str | None = None
    section: str = Field(default="2.3.6", description="where the plan names its lead units")

    @model_validator(mode="after")
    def _in_the_table_or_not(self) -> "IncidentType":
        if (self.seq == 0) != (self.category == "unlisted"):
            raise ValueError(f"types[{self.id}]: seq 0 and category unlisted go together (the type outside table 2.3.6)")
        return self


# --- conditions -----------------------------------------------------------------------------


class Condition(PlanModel):
    """A rule's `when`: every key given must hold; `any` needs one of its conditions to hold."""

    always: bool | None = None
    grade_in: list[Grade] | None = None
    level_in: list[ResponseLevel] | None = None
    category_in: list[Category] | None = None
    subcategory_in: list[str] | None = None
    type_in: list[str] | None = None
    fact_positive: list[Fact] | None = None
    flag: list[Flag] | None = None
    key_area_nonempty: bool | None = None
    key_area_contains: list[str] | None = None
    street_given: bool | None = None
    ended: bool | None = None
    announce_end: bool | None = None  # 4.8.2: the end announced to the public (the committee's decision)
    any: list["Condition"] | None = None
    all: list["Condition"] | None = None

    @model_validator(mode="after")
    def _vocabulary(self) -> "Condition":
        for fact in self.fact_positive or []:
            if fact not in FACTS:
                raise ValueError(f"fact_positive: unknown fact {fact!r}; known: {', '.join(FACTS)}")
        for flag in self.flag or []:
            if flag not in FLAGS:
                raise ValueError(f"flag: unknown flag {flag!r}; known: {', '.join(FLAGS)}")
        for cat in self.category_in or []:
            if cat not in CATEGORIES:
                raise ValueError(f"category_in: unknown category {cat!r}")
        if not self.model_fields_set:
            raise ValueError("empty condition: write `always: true` for a rule that always applies")
        return self


# --- grading --------------------------------------------------------------------------------


class Criterion(PlanModel):
    fact: Fact
    label: str
    thresholds: dict[Grade, float]

    @model_validator(mode="after")
    def _known_fact(self) -> "Criterion":
        if self.fact not in FACTS:
            raise ValueError(f"fact: unknown fact {self.fact!r}; known: {', '.join(FACTS)}")
        if Grade.UNDETERMINED in self.thresholds:
            raise ValueError("thresholds: 未判明 is not a threshold grade")
        return self


class GradingFamily(PlanModel):
    name: str
    source: str
    criteria: list[Criterion] = Field(min_length=1)


class GradingFile(PlanModel):
    families: dict[str, GradingFamily]


# --- response -------------------------------------------------------------------------------


class LevelRule(PlanModel):
    id: str
    order: int
    section: str
    text: str
    when: Condition
    level: ResponseLevel
    triage: bool = False


class RaiseRule(PlanModel):
    id: str
    section: str
    text: str
    when: Condition


class CommanderRole(PlanModel):
    role: str
    who: str


class LevelCommand(PlanModel):
    section: str
    field_hq: bool
    under_city_command: bool
    # the grades the city commands (2.1.1: the district commands 一般 events itself, even raised to 一级)
    city_command_grades: list[Grade] | None = None
    roles: list[CommanderRole]


class ResponseFile(PlanModel):
    base_levels: list[LevelRule]
    raise_one_level: list[RaiseRule]
    commanders: dict[ResponseLevel, LevelCommand]

    @model_validator(mode="after")
    def _complete(self) -> "ResponseFile":
        missing = set(ResponseLevel) - set(self.commanders)
        if missing:
            raise ValueError(f"commanders: no entry for {sorted(missing)}")
        return self


# --- notifications and obligations ----------------------------------------------------------


class NotifyRule(PlanModel):
    id: str
    order: int
    section: str
    text: str
    when: Condition
    units: list[str] = Field(min_length=1)
    after_approval: bool = False


class NotificationsFile(PlanModel):
    rules: list[NotifyRule]


class ObligationRule(PlanModel):
    kind: ObligationKind
    label: str
    section: str
    when: Condition
    # filing: a report of the kind meets it; grade_determined: the follow-up that settles a 未判明 grade
    met_by: Literal["filing", "grade_determined"] = "filing"
    # owed again after each filing that meets it, counted from that filing (续报 at a cadence)
    recurs: bool = False
    counts_from: Literal["received_at", "occurred_at", "basis_at"]
    due_after_minutes: int = Field(gt=0)
    # the response level's own term where it differs (a 续报 cadence); a level not named takes due_after_minutes
    due_after_minutes_by_level: dict[ResponseLevel, Annotated[int, Field(gt=0)]] = Field(default_factory=dict)
    remind_before_minutes: int = Field(ge=0)
    owner: str
    recipient: str
    escalation: str


class EscalationRecipient(PlanModel):
    unit: str
    role: str


class EscalationStep(PlanModel):
    step: int = Field(ge=1)
    after_minutes: int = Field(ge=0)
    notify: list[EscalationRecipient] = Field(min_length=1)


class ObligationsFile(PlanModel):
    parties: dict[str, str] = Field(default_factory=dict)
    obligations: list[ObligationRule]
    escalation_chains: dict[str, list[EscalationStep]]
    end_authority: dict[Grade, Literal["district_committee", "city"]]

    @model_validator(mode="after")
    def _chains(self) -> "ObligationsFile":
        for ob in self.obligations:
            if ob.escalation not in self.escalation_chains:
                raise ValueError(f"obligations[{ob.kind}].escalation: unknown chain {ob.escalation!r}")
            if ob.remind_before_minutes >= ob.due_after_minutes:
                raise ValueError(f"obligations[{ob.kind}].remind_before_minutes: must be less than due_after_minutes")
        for name, steps in self.escalation_chains.items():
            numbers = [s.step for s in steps]
            if numbers != list(range(1, len(steps) + 1)) or [s.after_minutes for s in steps] != sorted(
                s.after_minutes for s in steps
            ):
                raise ValueError(f"escalation_chains.{name}: steps must be 1, 2, … with growing after_minutes")
        missing = set(Grade) - set(self.end_authority)
        if missing:
            raise ValueError(f"end_authority: no entry for {sorted(missing)}")
        return self


class UnitsFile(PlanModel):
    units: list[Unit]


class TypesFile(PlanModel):
    types: list[IncidentType]  # table 2.3.6, rows 1-52
    unlisted: IncidentType  # 其他 (2.3.3): what matches no row

    @model_validator(mode="after")
    def _one_outside(self) -> "TypesFile":
        if any(t.seq == 0 for t in self.types) or self.unlisted.seq != 0:
            raise ValueError("types: rows 1-52 of table 2.3.6; unlisted: the one type outside it, seq 0")
        return self


# The files of playbooks/data and the model each one is: the loader reads them by it, and
# `python -m playbooks.schemas` exports each model as the file's JSON Schema.
PLAN_FILES: dict[str, type[PlanModel]] = {
    "units.yaml": UnitsFile,
    "incident_types.yaml": TypesFile,
    "grading.yaml": GradingFile,
    "response.yaml": ResponseFile,
    "notifications.yaml": NotificationsFile,
    "obligations.yaml": ObligationsFile,
    "duty.yaml": DutyFile,
    "ladder.yaml": LadderFile,  # the re-notification ladder (issue 19): Plan.ladder
    "channels.yaml": ChannelsFile,  # the delivery channels and routes (issue 19): Plan.channels
    "warnings.yaml": WarningsFile,  # 3.2's warnings (issue 20): Plan.warnings
    "command.yaml": CommandFile,  # special HQs, special plans, key areas (issue 20); Plan.command
    "ledger.yaml": LedgerFile,  # the 迟报/漏报/瞒报 ledger (issue 23): Plan.ledger
    "drills.yaml": DrillsFile,  # the drill programme (7.2, issue 24): Plan.drills
    "district_grid.yaml": DistrictGridFile,  # the board's map: each street's cell (our choice): Plan.district_grid
}
# Every file is a part of the Plan: a revision adopted live (issue 24 item 3) switches all of them at once in
# each process that reads the plan in force, so none keeps a copy of its own loaded at start.

# --- the plan -------------------------------------------------------------------------------

_NOTE = re.compile(r"[（(].*[）)]\s*$")


def normalise_type_name(text: str) -> str:
    """Chinese type names may come with or without their （…） note, in full- or half-width brackets."""
    return _NOTE.sub("", text.strip()).strip()


class Plan(PlanModel):
    units: dict[str, Unit]
    types: dict[str, IncidentType]
    grading: dict[str, GradingFamily]
    response: ResponseFile
    notifications: list[NotifyRule]
    obligations: list[ObligationRule]
    parties: dict[str, str]
    escalation_chains: dict[str, list[EscalationStep]]
    end_authority: dict[Grade, Literal["district_committee", "city"]]
    duty: DutyFile
    command: CommandFile
    warnings: WarningsFile
    ledger: LedgerFile
    drills: DrillsFile
    channels: ChannelsFile
    ladder: LadderFile
    district_grid: DistrictGridFile
    version: str

    @cached_property
    def type_index(self) -> dict[str, IncidentType]:
        index: dict[str, IncidentType] = {}
        for t in self.types.values():
            index[t.id] = t
            index[t.name] = t
        return index

    @cached_property
    def table_types(self) -> list[IncidentType]:
        """The 52 rows of table 2.3.6, without 其他 (2.3.3) outside it."""
        return [t for t in self.types.values() if t.seq]

    @cached_property
    def unit_ids_by_name(self) -> dict[str, str]:
        """Each unit name to the first unit of that name, as a scan of `units` would find it."""
        index: dict[str, str] = {}
        for u in self.units.values():
            index.setdefault(u.name, u.id)
        return index

    @cached_property
    def unit_names(self) -> dict[str, str]:
        """Unit id -> its name as the plan writes it (what a 值班表's 单位 cell may say)."""
        return {u.id: u.name for u in self.units.values()}

    @cached_property
    def streets(self) -> dict[str, Unit]:
        return {u.name: u for u in self.units.values() if u.kind == "street"}

    def find_type(self, text: str) -> IncidentType | None:
        return self.type_index.get(text.strip()) or self.type_index.get(normalise_type_name(text))

    def nearest_type_names(self, text: str, n: int = 3) -> list[str]:
        """The type names (or ids) closest to a text that matches none, for the error that refuses it."""
        wanted = normalise_type_name(text)
        names = difflib.get_close_matches(wanted, [t.name for t in self.types.values()], n=n, cutoff=0.4)
        ids = difflib.get_close_matches(wanted.lower(), list(self.types), n=n, cutoff=0.6)
        return (names + [self.types[i].name for i in ids if self.types[i].name not in names])[:n]

    def command_for(self, type_id: str) -> Command:
        """The special HQ (2.3.1) or temporary HQ (2.3.3) and the special plans (8.3) behind a type."""
        return command_for(self.command, type_id, self.types[type_id].lead_units, self.unit_names)

    def implies_foreign(self, type_id: str) -> bool:
        """A type whose report implies foreigners or 港澳台 people, or effects abroad (4.1.4)."""
        return implies_foreign(self.command, type_id)

    def key_area(self, text: str) -> KeyArea | None:
        """The key area (4.1.4, 4.1.7, 4.3.1) a place text names, longest alias first."""
        return key_area(self.command, text)

    def unit_name(self, unit_id: str) -> str:
        if unit_id in self.units:
            return self.units[unit_id].name
        return self.parties[unit_id]


def _load_yaml(path: Path, model: type[PlanModel], roots: dict[str, yaml.Node | None] | None = None) -> Any:
    """One file parsed and validated; its composed YAML kept in `roots` so a later problem can name its line."""
    try:
        loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
        try:
            root = loader.get_single_node()
            raw = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except (OSError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PlanError(f"{path.name}: cannot read: {exc}", [PlanProblem(
            path.name, mark.line + 1 if mark is not None else None, "(yaml)", str(getattr(exc, "problem", exc)))]) from exc
    if roots is not None:
        roots[path.name] = root
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise PlanError(f"{path.name}: {problems}", [_problem(path.name, root, err) for err in exc.errors()]) from exc


_PATH_FIRST = re.compile(r"^Value error, ([\w.\[\]-]+): (.*)$", re.S)


def _problem(file: str, root: yaml.Node | None, err: Any) -> PlanProblem:
    """A validation error with its line; a file-wide check's error (`path: message`) at the path it names."""
    loc = list(err["loc"])
    field, message = ".".join(str(p) for p in loc), err["msg"]
    m = _PATH_FIRST.match(message) if err["type"] == "value_error" else None
    if m:
        inner, message = m.groups()
        field = f"{field}.{inner}" if field else inner
        loc += parse_path(inner)
    return PlanProblem(file, line_of(root, loc), field or "(file)", message)


def _refused(problems: list[str], roots: dict[str, yaml.Node | None]) -> PlanError:
    """Cross-file problems, each written `file: path: message`, with the line the path leads to."""
    out = []
    for text in problems:
        file, _, rest = text.partition(": ")
        field, sep, message = rest.partition(": ")
        if not sep:
            field, message = "(file)", rest
        out.append(PlanProblem(file, line_of(roots.get(file), parse_path(field)) if file in roots else None,
                               field, message))
    return PlanError("; ".join(problems), out)


def _check_refs(plan: Plan, roots: dict[str, yaml.Node | None]) -> None:
    """Cross-file references, checked once at load."""
    known = set(plan.units) | set(plan.parties)
    problems: list[str] = []
    for t in plan.types.values():
        for u in t.lead_units:
            if u not in plan.units:
                problems.append(f"incident_types.yaml: types[{t.id}].lead_units: unknown unit {u!r}")
        if t.grading_family is not None and t.grading_family not in plan.grading:
            problems.append(f"incident_types.yaml: types[{t.id}].grading_family: unknown family {t.grading_family!r}")
    for rule in plan.notifications:
        for u in rule.units:
            if u not in ("$lead", "$street") and u not in known:
                problems.append(f"notifications.yaml: rules[{rule.id}].units: unknown unit {u!r}")
    for ob in plan.obligations:
        for field, ref in (("owner", ob.owner), ("recipient", ob.recipient)):
            if ref != "$lead" and ref not in known:
                problems.append(f"obligations.yaml: obligations[{ob.kind}].{field}: unknown unit {ref!r}")
    for name, steps in plan.escalation_chains.items():
        for step in steps:
            for r in step.notify:
                if r.unit != "$owner" and r.unit not in known:
                    problems.append(f"obligations.yaml: escalation_chains.{name}[{step.step}]: unknown unit {r.unit!r}")
    for u in plan.duty.twenty_four_hour_units.value:
        if u not in plan.units:
            problems.append(f"duty.yaml: twenty_four_hour_units: unknown unit {u!r}")
    for i, step in enumerate(plan.duty.fallback_chain.value):
        if step.unit != "$unit" and step.unit not in plan.units:
            problems.append(f"duty.yaml: fallback_chain.{i}.unit: unknown unit {step.unit!r}")
    for i, rp in enumerate(plan.duty.role_posts.value):
        if rp.unit is not None and rp.unit not in plan.units:
            problems.append(f"duty.yaml: role_posts.{i}.unit: unknown unit {rp.unit!r}")
    if missing := plan.warnings.unknown_units(plan.units):
        problems.append(f"warnings.yaml: (file): units not in units.yaml: {missing}")
    if plan.ledger.circular.issuer not in plan.units:
        problems.append(f"ledger.yaml: circular.issuer: unknown unit {plan.ledger.circular.issuer!r}")
    problems += [f"ladder.yaml: {p}" for p in plan.ladder.problems(plan.duty)]
    problems += [f"district_grid.yaml: {p}" for p in plan.district_grid.problems(plan.streets.values())]
    problems += plan.command.problems(
        units={u.id: (u.name, u.kind) for u in plan.units.values()},
        table_types=[t.id for t in plan.table_types], all_types=list(plan.types))
    names = [t.name for t in plan.types.values()]
    if len(set(names)) != len(names):
        problems.append("incident_types.yaml: duplicate type names")
    if problems:
        raise _refused(problems, roots)


def _check_unique(units, types, response, notifications, obligations, roots) -> None:
    """Ids are how decisions name their rules and how the plan's maps are keyed: a repeated one would
    silently replace the first (a unit, a type) or make a decision's reasons ambiguous (a rule)."""
    problems: list[str] = []

    def once(where: str, ids: list[str]) -> None:
        seen: set[str] = set()
        for i in ids:
            if i in seen:
                problems.append(f"{where}: duplicate id {i!r}")
            seen.add(i)

    once("units.yaml: units", [u.id for u in units])
    once("incident_types.yaml: types", [t.id for t in types])
    once("response.yaml + notifications.yaml: rules",
         [r.id for r in (*response.base_levels, *response.raise_one_level, *notifications)])
    # an incident holds one obligation per kind (IncidentState.obligations is keyed by it)
    once("obligations.yaml: obligations", [ob.kind.value for ob in obligations.obligations])
    if problems:
        raise _refused(problems, roots)


# Files a plan's directory may lack, read from the shipped plan's and not part of its version: an adoption
# written before the file was a plan file carries none, and must load as the version it was, as it did then
# (district_grid.yaml was the web service's until issue 24 made it a plan file; the service's was the shipped
# one, and a street it had no cell for was the map's trouble, not the plan's: the grid is fitted, load_plan).
SHIPPED_IF_MISSING = ("district_grid.yaml",)


def _path(data_dir: Path, name: str) -> Path:
    path = data_dir / name
    return DATA_DIR / name if name in SHIPPED_IF_MISSING and not path.exists() else path


def load_plan(data_dir: Path = DATA_DIR, *, fit_grid: bool = False) -> Plan:
    """The plan in `data_dir`, checked whole. fit_grid: the texts of an adoption on the log (services.plan_book
    plan_of): one written before district_grid.yaml was a plan file has none, and takes the shipped grid fitted
    to its streets (DistrictGridFile.fitted), loading as it did then. A revision being validated (a what-if, an
    adoption about to be written) is checked against the shipped grid as it is, when it brings none."""
    roots: dict[str, yaml.Node | None] = {}
    files = {name: _load_yaml(_path(data_dir, name), model, roots) for name, model in PLAN_FILES.items()}
    units = files["units.yaml"].units
    if fit_grid and not (data_dir / "district_grid.yaml").exists():
        files["district_grid.yaml"] = files["district_grid.yaml"].fitted(u for u in units if u.kind == "street")
    types_file = files["incident_types.yaml"]
    types = [*types_file.types, types_file.unlisted]
    grading = files["grading.yaml"].families
    response = files["response.yaml"]
    notifications = files["notifications.yaml"].rules
    obligations = files["obligations.yaml"]
    digest = hashlib.sha256()
    for name in sorted(p.name for p in data_dir.glob("*.yaml")):
        digest.update((data_dir / name).read_bytes())
    _check_unique(units, types, response, notifications, obligations, roots)
    plan = Plan(
        units={u.id: u for u in units},
        types={t.id: t for t in types},
        grading=grading,
        response=response,
        notifications=sorted(notifications, key=lambda r: r.order),
        obligations=obligations.obligations,
        parties=obligations.parties,
        escalation_chains=obligations.escalation_chains,
        end_authority=obligations.end_authority,
        duty=files["duty.yaml"],
        command=files["command.yaml"],
        warnings=files["warnings.yaml"],
        ledger=files["ledger.yaml"],
        drills=files["drills.yaml"],
        channels=files["channels.yaml"],
        ladder=files["ladder.yaml"],
        district_grid=files["district_grid.yaml"],
        version=digest.hexdigest()[:12],
    )
    _check_refs(plan, roots)
    unit_kinds = set(get_args(Unit.model_fields["kind"].annotation))
    if drills := files["drills.yaml"].problems(set(plan.units), unit_kinds):
        raise _refused([f"drills.yaml: {p}" for p in drills], roots)
    return plan
