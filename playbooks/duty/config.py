"""playbooks/data/duty.yaml as a model: the duty rules and their figures, each with its source."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Generic, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field

from topics.duty import Post

DUTY_FILE = Path(__file__).resolve().parent.parent / "data" / "duty.yaml"

T = TypeVar("T")

RuleId = Literal["leader_on_watch", "no_informal", "seconded_not_alone", "no_gap", "one_place_at_a_time"]


class DutyConfigModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Sourced(DutyConfigModel, Generic[T]):
    """A figure with where it comes from; our_choice when no source gives it."""

    value: T
    source: str = Field(min_length=1)
    our_choice: bool


class ChainStep(DutyConfigModel):
    unit: str = Field(pattern=r"^(\$unit|[a-z][a-z0-9_]*)$", description="$unit: the unit asked about")
    post: Post


class RolePost(DutyConfigModel):
    role: str | None = Field(description="a notice's role as the plan writes it; null: a notice with no role")
    post: Post
    unit: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$", description="another unit's post answers")


class DutyRule(DutyConfigModel):
    id: RuleId
    name: str
    source: str = Field(min_length=1)
    our_choice: bool


class DutyFile(DutyConfigModel):
    timezone: Literal["Asia/Shanghai"]
    shift_change: Sourced[time]
    gap_horizon_days: Sourced[int]
    twenty_four_hour_units: Sourced[list[str]]
    fallback_chain: Sourced[list[ChainStep]]
    role_posts: Sourced[list[RolePost]]
    handover_confirm_minutes: Sourced[int]
    rules: list[DutyRule] = Field(min_length=1)

    def post_for(self, role: str | None, unit_id: str) -> tuple[str, Post]:
        """The unit and post that answer for a notice's role: the unit's 值班员 for a role not listed."""
        for r in self.role_posts.value:
            if r.role == role:
                return (r.unit or unit_id, r.post)
        return (unit_id, Post.officer)

    def rule(self, rule_id: str) -> DutyRule:
        return next(r for r in self.rules if r.id == rule_id)


def load_duty(path: Path = DUTY_FILE) -> DutyFile:
    return DutyFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
