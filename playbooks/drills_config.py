"""playbooks/data/drills.yaml as a model: the drills 7.2.2 expects of each unit a year, the validation drill
of a revised special plan (7.2.1) and the term of 评估总结和改进 (7.2.3). Pure; playbooks/drill/programme.py
reads it. A module of its own beside plan.py (not in playbooks/drill/, which imports the plan): plan.py
registers the file with the others, so its schema is exported and the file checked when the plan loads.

Every block says where its figure comes from: `basis: plan` or `basis: our_choice` (the plan names the duty
and gives no figure); the units an expectation applies to have a `units_basis` of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from topics.programme import DrillKind

DRILLS_FILE = Path(__file__).resolve().parent / "data" / "drills.yaml"
Basis = Literal["plan", "our_choice"]
_ID = r"^[a-z][a-z0-9_]*$"


UnitSource = Literal["hq_hosts", "special_plan_drafters"]


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Expectation(_M):
    """Drills of `kinds`, at least `per_year` held a year, by each unit it applies to: `units`, the units of
    `unit_kinds` (units.yaml) and those `units_from` the command structure (command.yaml)."""

    id: str = Field(pattern=_ID)
    section: str
    text: str = Field(description="the plan's words")
    kinds: list[DrillKind] = Field(min_length=1)
    per_year: int = Field(ge=1, le=52)
    basis: Basis
    units: list[str] = Field(default_factory=list)
    unit_kinds: list[str] = Field(default_factory=list)
    units_from: list[UnitSource] = Field(default_factory=list)
    units_basis: Basis
    note: str

    @model_validator(mode="after")
    def _some_units(self) -> "Expectation":
        if not (self.units or self.unit_kinds or self.units_from):
            raise ValueError("units: name the units (units, unit_kinds or units_from)")
        return self


class Validation(_M):
    """7.2.1: a special plan revised needs a validation drill; held in the revision's year (our choice)."""

    section: str
    text: str
    basis: Basis
    window: Literal["same_year"]
    general_plan_unit: str = Field(pattern=_ID, description="who revises the general plan (8.2.1)")
    note: str


class Improvement(_M):
    """7.2.3 评估总结和改进: each failed expectation of a run gets an improvement item within the term."""

    section: str
    text: str
    record_within_days: int = Field(gt=0, le=365)
    basis: Basis
    note: str


class DrillsFile(_M):
    expectations: list[Expectation] = Field(min_length=1)
    validation: Validation
    improvement: Improvement

    @model_validator(mode="after")
    def _ids_once(self) -> "DrillsFile":
        ids = [e.id for e in self.expectations]
        if len(ids) != len(set(ids)):
            raise ValueError("expectations: an id is given once")
        return self

    def problems(self, units: set[str], unit_kinds: set[str]) -> list[str]:
        """The units and unit kinds it names that the plan does not have, as `path: message`."""
        out = []
        for i, e in enumerate(self.expectations):
            out += [f"expectations.{i}.units: unknown unit {u!r}" for u in e.units if u not in units]
            out += [f"expectations.{i}.unit_kinds: unknown unit kind {k!r}" for k in e.unit_kinds if k not in unit_kinds]
        if self.validation.general_plan_unit not in units:
            out.append(f"validation.general_plan_unit: unknown unit {self.validation.general_plan_unit!r}")
        return out


def load_drills(path: Path = DRILLS_FILE) -> DrillsFile:
    return DrillsFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
