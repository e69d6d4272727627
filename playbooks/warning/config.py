"""playbooks/data/warnings.yaml as a model (issue 20): the plan's 3.2 as data. Pure; the rules that read
it are playbooks/warning/rules.py."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from topics.warnings import WarningLevel

class PlanUnits(Protocol):
    """What the warning rules read of the plan (playbooks.plan.Plan is one): its units by id, and names.
    A protocol, not an import: the plan registers warnings.yaml, so the two packages would import each other."""

    units: Mapping[str, Any]

    def unit_name(self, unit_id: str) -> str: ...


WARNINGS_FILE = Path(__file__).resolve().parent.parent / "data" / "warnings.yaml"


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LevelConfig(_M):
    id: WarningLevel
    name: str
    grade: str
    rank: int
    cap_severity: str


class Approval(_M):
    id: str
    name: str
    section: str


class Named(_M):
    id: str
    name: str


class Channel(_M):
    id: str
    name: str
    unit: str = Field(description="a unit id, or `street`: each street of the area")


class Category(_M):
    id: str
    name: str
    cap_category: str
    hq: str
    department: str
    criteria: str


class WarningsFile(_M):
    levels: list[LevelConfig]
    levels_source: str
    authority: dict[str, Any]
    adjustment: dict[str, Any]
    lifting: dict[str, Any]
    content_fields: list[Named]
    content_source: str
    measures: dict[str, Any]
    publication: dict[str, Any]
    categories: list[Category]
    categories_source: str
    categories_our_choice: str
    incoming_issuers: dict[str, Any]

    def unknown_units(self, units: Mapping[str, Any]) -> list[str]:
        """The unit ids it names that the plan's units.yaml has not (the plan's load refuses them)."""
        named = [self.authority["orange_red"]["issuer"], self.adjustment["by"],
                 *self.authority["blue_yellow"]["filed_with"], *self.authority["orange_red"]["filed_with"],
                 *(c.hq for c in self.categories), *(c.department for c in self.categories),
                 *(c.unit for c in self.channels if c.unit != "street")]
        return sorted({u for u in named if u not in units})

    def level(self, level: WarningLevel) -> LevelConfig:
        return next(lv for lv in self.levels if lv.id == level)

    def category(self, category_id: str) -> Category | None:
        return next((c for c in self.categories if c.id == category_id), None)

    @property
    def high(self) -> set[WarningLevel]:
        return {WarningLevel(x) for x in self.authority["orange_red"]["levels"]}

    @property
    def approvals(self) -> list[Approval]:
        return [Approval(**a) for a in self.authority["orange_red"]["approvals"]]

    @property
    def base_measures(self) -> list[Named]:
        return [Named(**m) for m in self.measures["base"]]

    @property
    def extra_measures(self) -> list[Named]:
        return [Named(**m) for m in self.measures["extra"]]

    @property
    def channels(self) -> list[Channel]:
        return [Channel(**c) for c in self.publication["channels"]]


