"""playbooks/data/ledger.yaml as a model: the ledger's outcomes, its fairness rule (接报滞后), the 瞒报
flag's thresholds and the 通报's 限期整改 term. Pure; playbooks/ledger/rules.py reads it.

Every block says where its figure comes from: `basis: plan` (the plan's words) or `basis: our_choice`
(the plan names the duty and gives no figure; the district's to set). A test keeps each choice marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

LEDGER_FILE = Path(__file__).resolve().parent.parent / "data" / "ledger.yaml"

OutcomeId = Literal["on_time", "late", "missed", "incomplete", "source_delay", "pending"]
CountId = Literal["deaths", "missing", "serious_injuries", "injuries", "poisoned"]
Basis = Literal["plan", "our_choice"]


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OutcomeRule(_M):
    label: str = Field(description="as the ledger, the page and the 通报 write it")
    section: str
    rule: str = Field(description="the rule in a line, as each row's reason names it")
    breach: bool = Field(description="counted against the unit in the 通报 (迟报、漏报、内容不全)")
    basis: Basis


class SourceDelay(_M):
    """A deadline already passed when the service first learned of the event (接报): the source's delay,
    not the unit's 迟报. The unit is still expected to file within `unit_grace_minutes` of 接报."""

    label: str
    section: str
    unit_grace_minutes: int = Field(gt=0, le=1440)
    basis: Basis
    note: str


class CountThreshold(_M):
    factor: float = Field(gt=1, le=100, description="the follow-up's count at least this many times the first report's")
    min_increase: int = Field(ge=1, le=100000, description="and at least this many more")


class Concealment(_M):
    """A follow-up far above the first report: flagged for review beside it, never concluded (5.5.2 瞒报)."""

    label: str
    section: str
    grade_rise_steps: int = Field(ge=1, le=4, description="a follow-up raising the grade this many steps or more")
    from_undetermined: bool = Field(description="whether settling a 未判明 grade counts as a rise (研判定级 does not)")
    counts: dict[CountId, CountThreshold] = Field(min_length=1)
    basis: Basis
    note: str


class Rectification(_M):
    """5.5.1: 通报批评并责成其限期整改. The term is the district's: the plan gives none."""

    label: str
    section: str
    due_after_days: int = Field(gt=0, le=365)
    remind_before_days: int = Field(ge=0)
    basis: Basis
    note: str

    @model_validator(mode="after")
    def _remind_before_due(self) -> "Rectification":
        if self.remind_before_days >= self.due_after_days:
            raise ValueError("remind_before_days: must be less than due_after_days")
        return self


Role = Literal["值班员", "值班主任", "值班领导", "带班领导"]


class ChaseStep(_M):
    label: str
    section: str
    role: Role = Field(description="who in the owing unit is told (duty.yaml role_posts)")


class OverdueStep(ChaseStep):
    issuer_role: Role = Field(description="who in the issuing unit (circular.issuer) is told")


class Chase(_M):
    """The timer's chase of a 限期整改 not reported: a reminder at remind_at, 督办 at the due time."""

    remind: ChaseStep
    overdue: OverdueStep
    basis: Basis
    note: str


class CircularText(_M):
    title: str
    issuer: str = Field(description="a unit id of units.yaml: who issues the 通报")
    opening: str
    closing: str


class LedgerFile(_M):
    outcomes: dict[OutcomeId, OutcomeRule]
    source_delay: SourceDelay
    concealment: Concealment
    rectification: Rectification
    chase: Chase
    circular: CircularText
    hour_buckets_up_to_days: int = Field(ge=1, le=31, description="a period this long or shorter is charted by hour, "
                                                                  "a longer one by day (Asia/Shanghai)")

    @model_validator(mode="after")
    def _every_outcome(self) -> "LedgerFile":
        missing = sorted(set(OutcomeId.__args__) - set(self.outcomes))  # type: ignore[attr-defined]
        if missing:
            raise ValueError(f"outcomes: no entry for {missing}")
        return self


def load_ledger(path: Path = LEDGER_FILE, units: frozenset[str] | None = None) -> LedgerFile:
    """The file, validated; with `units` (the plan's ids), the circular's issuer checked against them."""
    config = LedgerFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    if units is not None and config.circular.issuer not in units:
        raise ValueError(f"{path.name}: circular.issuer: unknown unit {config.circular.issuer!r}")
    return config
