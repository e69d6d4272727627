"""The plan's command structure as data (issue 20 item 1): command.yaml parsed and checked, and pure
answers to "who commands this type" and "is this place a key area".

- the 19 special HQs / working groups of 2.3.1, each with its host unit (主办部门, 2.3.4) and the
  commander rule of 2.3.1 (总指挥 分管区领导, 副总指挥 主办部门的行政一把手);
- the 38 special plans of 8.3 with the unit that drafts each;
- for every type of table 2.3.6 the HQ (or the temporary HQ of 2.3.3) and the plans behind it;
- the key areas of 4.1.4 / 4.1.7 / 4.3.1 with the names people type, and the 涉外 types of 4.1.4.

Every link says whether the plan gives it or it is our reading (`our_choice`), and why (`source`).

This module does not import playbooks.plan (plan.py registers CommandFile, as it does DutyFile): the
functions take the few plan facts they need (a type's lead units, unit names) as arguments;
Plan.command_for / Plan.key_area call them with the loaded plan's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from topics.models import Commander, Reason

TEMPORARY = "temporary"  # the id a type's `hq` uses for the temporary HQ of 2.3.3
_ID = r"^[a-z][a-z0-9_]*$"


class CommandModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Link(CommandModel):
    """A mapping with its warrant: the plan's words (our_choice false) or our reading (true)."""

    id: str = Field(pattern=_ID)
    section: str
    our_choice: bool
    source: str = Field(min_length=1)


class HostUnit(CommandModel):
    unit: str = Field(pattern=_ID, description="a unit id of units.yaml")
    section: str = "2.3.4"
    our_choice: bool
    source: str = Field(min_length=1)


class SpecialHQ(CommandModel):
    id: str = Field(pattern=_ID, description="the HQ's unit id in units.yaml (kind command)")
    name: str = Field(description="as 2.3.1 writes it")
    section: str = "2.3.1"
    host: HostUnit


class HQCommandRule(CommandModel):
    """Who commands a special HQ (2.3.1) or a temporary one (2.3.3), as the plan writes the roles."""

    commander: str
    deputy: str
    section: str
    text: str


class TemporaryHQ(HQCommandRule):
    id: Literal["temporary"] = TEMPORARY
    name: str
    led_by: str = Field(description="who forms it, as the plan writes it")


class SpecialPlan(CommandModel):
    id: str = Field(pattern=_ID)
    seq: int = Field(ge=1, le=38, description="row of the 8.3 list")
    name: str = Field(description="as 8.3 writes it")
    group: Literal["natural_disaster", "accident_disaster", "public_health", "social_security"] = Field(
        description="the 8.3 heading it is listed under")
    drafted_by: str = Field(pattern=_ID, description="牵头编制部门: a unit id of units.yaml")
    section: str = "8.3"


class TypeCommand(CommandModel):
    type: str = Field(pattern=_ID, description="a type id of incident_types.yaml")
    hq: Link = Field(description="a special HQ's id, or `temporary` (2.3.3)")
    plans: list[Link] = Field(default_factory=list, description="special plans of 8.3; empty: the plan lists none")


class Implication(CommandModel):
    rule: Literal["report_at_once", "raise_level", "notify_party", "joint_field_hq"]
    section: str
    unit: str | None = Field(default=None, pattern=_ID, description="notify_party: the party's unit id")
    our_choice: bool = False
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _party(self) -> "Implication":
        if (self.rule == "notify_party") != (self.unit is not None):
            raise ValueError("unit: given for notify_party, and only for it")
        return self


class KeyArea(CommandModel):
    id: str = Field(pattern=_ID)
    name: str = Field(description="as the plan writes it")
    sections: list[str] = Field(min_length=1, description="the sections naming it")
    names_in_plan: list[str] = Field(min_length=1, description="every way the plan writes it")
    aliases: list[str] = Field(default_factory=list, description="names people type that the plan does not use")
    aliases_source: str = Field(min_length=1, description="why those aliases (they are our choice)")
    implies: list[Implication] = Field(min_length=1)

    @property
    def all_names(self) -> list[str]:
        return [*self.names_in_plan, *self.aliases]


class ForeignInvolvement(CommandModel):
    section: str
    text: str
    implied_by_types: list[Link] = Field(min_length=1, description="types whose report implies foreign_involved")
    units: list[str] = Field(min_length=1, description="who works with 区应急办 (4.1.4)")
    field_hq_units: list[str] = Field(default_factory=list, description="who joins the field HQ (4.4.3)")
    field_hq_section: str = "4.4.3"


class CommandFile(CommandModel):
    special_hq_command: HQCommandRule
    temporary_hq: TemporaryHQ
    hqs: list[SpecialHQ] = Field(min_length=1)
    special_plans: list[SpecialPlan] = Field(min_length=1)
    types: list[TypeCommand] = Field(min_length=1)
    key_areas: list[KeyArea] = Field(min_length=1)
    foreign_involvement: ForeignInvolvement

    @model_validator(mode="after")
    def _within_the_file(self) -> "CommandFile":
        """Ids once each, and every HQ or plan a type names is one of this file's."""
        problems: list[str] = []

        def once(where: str, ids: Iterable[str]) -> None:
            seen: set[str] = set()
            for i in ids:
                if i in seen:
                    problems.append(f"{where}: duplicate id {i!r}")
                seen.add(i)

        once("hqs", [h.id for h in self.hqs])
        once("special_plans", [p.id for p in self.special_plans])
        once("special_plans (seq)", [str(p.seq) for p in self.special_plans])
        once("types", [t.type for t in self.types])
        once("key_areas", [k.id for k in self.key_areas])
        # an alias naming two areas would make key_area() depend on the file's order
        once("key_areas (names and aliases)", [n for k in self.key_areas for n in k.all_names])
        hqs = {h.id for h in self.hqs} | {TEMPORARY}
        plans = {p.id for p in self.special_plans}
        for t in self.types:
            if t.hq.id not in hqs:
                problems.append(f"types[{t.type}].hq: unknown HQ {t.hq.id!r}")
            for p in t.plans:
                if p.id not in plans:
                    problems.append(f"types[{t.type}].plans: unknown special plan {p.id!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- lookups ------------------------------------------------------------------------------

    @cached_property
    def hq_by_id(self) -> dict[str, SpecialHQ]:
        return {h.id: h for h in self.hqs}

    @cached_property
    def plan_by_id(self) -> dict[str, SpecialPlan]:
        return {p.id: p for p in self.special_plans}

    @cached_property
    def type_by_id(self) -> dict[str, TypeCommand]:
        return {t.type: t for t in self.types}

    @cached_property
    def aliases_longest_first(self) -> list[tuple[str, KeyArea]]:
        # longest first, so 城市副中心核心区 is read whole and 副中心行政办公区 is the 行政办公区, not 副中心
        pairs = [(n, k) for k in self.key_areas for n in k.all_names]
        return sorted(pairs, key=lambda p: -len(p[0]))

    def problems(self, units: Mapping[str, tuple[str, str]], table_types: Iterable[str],
                 all_types: Iterable[str]) -> list[str]:
        """References into the other plan files: `units` maps unit id -> (name, kind); `table_types`
        are the ids of table 2.3.6's rows, `all_types` those plus 其他. Each problem names the entry."""
        where = "command.yaml"
        out: list[str] = []
        for h in self.hqs:
            unit = units.get(h.id)
            if unit is None or unit[1] != "command":
                out.append(f"{where}: hqs[{h.id}]: not a unit of kind command in units.yaml")
            elif unit[0] != h.name:
                out.append(f"{where}: hqs[{h.id}].name: {h.name!r} but units.yaml writes {unit[0]!r}")
            if h.host.unit not in units:
                out.append(f"{where}: hqs[{h.id}].host.unit: unknown unit {h.host.unit!r}")
        for p in self.special_plans:
            if p.drafted_by not in units:
                out.append(f"{where}: special_plans[{p.id}].drafted_by: unknown unit {p.drafted_by!r}")
        known_types = set(all_types)
        for t in self.types:
            if t.type not in known_types:
                out.append(f"{where}: types[{t.type}]: unknown type {t.type!r}")
        for missing in [t for t in table_types if t not in self.type_by_id]:
            out.append(f"{where}: types: no entry for type {missing!r} of table 2.3.6 "
                       f"(name its HQ, or `hq: {{id: temporary}}` for the temporary HQ of 2.3.3)")
        for k in self.key_areas:
            for imp in k.implies:
                if imp.unit is not None and imp.unit not in units:
                    out.append(f"{where}: key_areas[{k.id}].implies: unknown unit {imp.unit!r}")
        fi = self.foreign_involvement
        for u in [*fi.units, *fi.field_hq_units]:
            if u not in units:
                out.append(f"{where}: foreign_involvement: unknown unit {u!r}")
        for link in fi.implied_by_types:
            if link.id not in known_types:
                out.append(f"{where}: foreign_involvement.implied_by_types: unknown type {link.id!r}")
        return out


# --- answers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRef:
    id: str
    name: str
    drafted_by: str
    our_choice: bool


@dataclass(frozen=True)
class Command:
    """Who commands an incident of a type, and under which special plans."""

    type_id: str
    hq_id: str  # a special HQ's id, or "temporary"
    hq_name: str
    temporary: bool
    host_unit: str | None  # the special HQ's 主办部门; None for a temporary HQ (its lead units lead it)
    deputy_units: tuple[str, ...]  # whose principal is 副总指挥: the host, or the type's lead units
    commanders: tuple[Commander, ...]
    plans: tuple[PlanRef, ...]
    hq_our_choice: bool  # the type -> HQ link is our reading, not the plan's words
    host_our_choice: bool | None  # the HQ's host unit is our reading (None: a temporary HQ)
    our_choice: bool  # some link of this answer (HQ, host, a plan) is our reading
    reasons: tuple[Reason, ...]


def command_for(command: CommandFile, type_id: str, lead_units: Sequence[str] = (),
                unit_names: Mapping[str, str] | None = None) -> Command:
    """The HQ (or the temporary HQ of 2.3.3) and plans behind a type. `lead_units` are the type's
    (2.3.6): a temporary HQ's deputy is their principal. KeyError for a type the file does not know
    (the load has checked that every type of table 2.3.6 has an entry)."""
    names = unit_names or {}
    entry = command.type_by_id[type_id]
    reasons: list[Reason] = []
    hq_link = entry.hq
    mark = "（我方研判）" if hq_link.our_choice else ""
    if hq_link.id == TEMPORARY:
        t = command.temporary_hq
        deputy_units = tuple(lead_units)
        lead_names = "、".join(names.get(u, u) for u in deputy_units) or "主责部门"
        commanders = (
            Commander(role="总指挥", who=t.commander, section=t.section),
            Commander(role="副总指挥", who=f"{t.deputy}（{lead_names}）", section=t.section),
        )
        reasons.append(Reason(rule="command.temporary_hq", section=t.section, text=f"{t.text}{mark}：{hq_link.source}"))
        hq_id, hq_name, host = TEMPORARY, t.name, None
    else:
        hq = command.hq_by_id[hq_link.id]
        rule = command.special_hq_command
        host = hq.host.unit
        deputy_units = (host,)
        commanders = (
            Commander(role="总指挥", who=rule.commander, section=rule.section),
            Commander(role="副总指挥", who=f"{rule.deputy}（{names.get(host, host)}）", section=rule.section),
        )
        reasons.append(Reason(rule="command.special_hq", section=hq_link.section,
                              text=f"{hq.name}{mark}：{hq_link.source}"))
        host_mark = "（我方研判）" if hq.host.our_choice else ""
        reasons.append(Reason(rule="command.host_unit", section=hq.host.section,
                              text=f"{hq.name}办公室设在{names.get(host, host)}{host_mark}：{hq.host.source}"))
        reasons.append(Reason(rule="command.special_hq_commander", section=rule.section, text=rule.text))
        hq_id, hq_name = hq.id, hq.name
    plans: list[PlanRef] = []
    for link in entry.plans:
        p = command.plan_by_id[link.id]
        plans.append(PlanRef(id=p.id, name=p.name, drafted_by=p.drafted_by, our_choice=link.our_choice))
        pmark = "（我方研判）" if link.our_choice else ""
        reasons.append(Reason(rule="command.special_plan", section=link.section, text=f"{p.name}{pmark}：{link.source}"))
    if not entry.plans:
        reasons.append(Reason(rule="command.no_special_plan", section="8.3", text="8.3所列区级专项应急预案中没有与该类事件对应的预案"))
    host_our_choice = None if host is None else command.hq_by_id[hq_id].host.our_choice
    our_choice = hq_link.our_choice or bool(host_our_choice) or any(link.our_choice for link in entry.plans)
    return Command(type_id=type_id, hq_id=hq_id, hq_name=hq_name, temporary=host is None, host_unit=host,
                   deputy_units=deputy_units, commanders=commanders, plans=tuple(plans),
                   hq_our_choice=hq_link.our_choice, host_our_choice=host_our_choice, our_choice=our_choice,
                   reasons=tuple(reasons))


def key_area(command: CommandFile, text: str) -> KeyArea | None:
    """The key area a place text names, by the longest name or alias it contains; None if none."""
    wanted = "".join(text.split())  # people type 城市 副中心 with a space
    for alias, area in command.aliases_longest_first:
        if alias in wanted:
            return area
    return None


def key_areas_in(command: CommandFile, texts: Iterable[str]) -> list[KeyArea]:
    """The distinct key areas a report's place texts name, in the order first named."""
    found: dict[str, KeyArea] = {}
    for text in texts:
        area = key_area(command, text)
        if area is not None:
            found.setdefault(area.id, area)
    return list(found.values())


def implies_foreign(command: CommandFile, type_id: str) -> bool:
    """A type whose report implies foreigners or 港澳台 people, or effects abroad (4.1.4)."""
    return any(link.id == type_id for link in command.foreign_involvement.implied_by_types)
