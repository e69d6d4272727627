"""The re-notification ladder (issue 19 item 4), pure: which steps of a notice's ladder are due now.

A notice nobody has acknowledged (已阅) `minutes` after its requested_at (ladder.yaml, per response
level) goes to step 1, `minutes` later to step 2, and so on: step n's own time is
requested_at + minutes × n, whenever the timer runs. An ack of the notice, at any step, stops every
step not yet taken; each step is taken once (`steps_done`, folded from the LadderStepTaken records on
the deliveries topic), so a timer that runs twice, or after a restart, takes it once. Step ids are
`{dedup_key}.ladder{n}`.

Pure: the notice, its acks, the steps taken and `now` are passed in. Who is on duty for a step's post
is the shell's question (playbooks.duty.roster.on_duty at the step's own time), as for any notice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from playbooks.duty.config import DutyFile, Sourced
from topics.delivery import AckHow, AckRecord, LadderStepTaken, ladder_step_id
from topics.models import NotificationRequested, Post, ResponseLevel

LADDER_FILE = Path(__file__).resolve().parent.parent / "data" / "ladder.yaml"
ITEM_SOURCE = "issue 19 item 4"
UNIT_SELF = "$unit"


class LadderModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StepConfig(LadderModel):
    unit: str = Field(pattern=r"^(\$unit|[a-z][a-z0-9_]*)$", description="$unit: the notified unit")
    role: str = Field(min_length=1, description="a role duty.yaml's role_posts knows")
    post: Post
    label: str = Field(min_length=1, description="who, as people say it: 区应急办值班主任")


class LadderFile(LadderModel):
    minutes: dict[ResponseLevel, Sourced[PositiveFloat]]
    default_minutes: Sourced[PositiveFloat]
    steps: Sourced[list[StepConfig]] = Field(description="in order; at least one")

    def minutes_for(self, level: ResponseLevel | None) -> Sourced[PositiveFloat]:
        """The level's minutes; a notice with no level, or a level not in the file, takes the default."""
        if level is not None and level in self.minutes:
            return self.minutes[level]
        return self.default_minutes

    def problems(self, duty: DutyFile) -> list[str]:
        """What is wrong against duty.yaml, as `path: message`: no step, or a step whose role is not its
        post in duty.yaml's role_posts (the plan's load refuses it; load_ladder too)."""
        out = [] if self.steps.value else ["steps: at least one step"]
        for n, s in enumerate(self.steps.value):
            unit = "any_unit" if s.unit == UNIT_SELF else s.unit
            if duty.post_for(s.role, unit) != (unit, s.post):
                out.append(f"steps.value.{n}: role {s.role} is not post {s.post.value} of {s.unit} in duty.yaml's "
                           "role_posts")
        return out

    def check(self, duty: DutyFile) -> None:
        """Each step's role names its post as duty.yaml's role_posts does, or the file is refused."""
        for problem in self.problems(duty):
            if problem.startswith("steps.value."):
                n, _, message = problem.removeprefix("steps.value.").partition(": ")
                raise ValueError(f"ladder.yaml steps[{n}]: {message}")


def load_ladder(path: Path = LADDER_FILE, duty: DutyFile | None = None) -> LadderFile:
    """Read and check ladder.yaml (and its steps against duty.yaml's role_posts when given)."""
    ladder = LadderFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    if not ladder.steps.value:
        raise ValueError(f"{path.name} steps: at least one step")
    if duty is not None:
        ladder.check(duty)
    return ladder


@dataclass(frozen=True)
class LadderStep:
    """Step `n` of a notice's ladder, due at `at`: tell the `role` (`post`) of `unit_id`."""

    id: str
    dedup_key: str
    n: int
    at: datetime
    incident_id: str
    unit_id: str
    unit: str | None  # the notified unit's name for a $unit step; None: the shell names the unit
    role: str
    post: Post
    label: str
    drill: bool
    reasons: list[str] = field(default_factory=list)


def _stopping_ack(notice: NotificationRequested, acks: Iterable[AckRecord]) -> AckRecord | None:
    """The first ack of the notice (any step's); a test message's ack verifies a contact, not a notice."""
    mine = [a for a in acks if a.dedup_key == notice.dedup_key and a.how != AckHow.TEST]
    return min(mine, key=lambda a: (a.at, a.id)) if mine else None


def step_time(notice: NotificationRequested, n: int, minutes: int) -> datetime:
    return notice.requested_at + timedelta(minutes=minutes * n)


def _pace(level: ResponseLevel | None, config: LadderFile) -> tuple[Sourced[PositiveFloat], str]:
    minutes = config.minutes_for(level)
    level_text = level.value if level is not None else "无响应级别"
    pace = f"ladder.yaml minutes[{level_text}] = {minutes.value}" if level in config.minutes else \
        f"ladder.yaml default_minutes = {minutes.value} ({level_text} not in ladder.yaml)"
    return minutes, pace


def _step(notice: NotificationRequested, n: int, at: datetime, why: str, pace: str, config: LadderFile) -> LadderStep:
    s = config.steps.value[n - 1]
    own = s.unit == UNIT_SELF
    return LadderStep(
        id=ladder_step_id(notice.dedup_key, n), dedup_key=notice.dedup_key, n=n, at=at,
        incident_id=notice.incident_id, unit_id=notice.unit_id if own else s.unit,
        unit=notice.unit if own else None, role=s.role, post=s.post, label=s.label, drill=notice.drill,
        reasons=[f"{'【演练】' if notice.drill else ''}{notice.unit} 未阅：{notice.dedup_key} 于 "
                 f"{notice.requested_at.isoformat()} 发出，{why}，第 {n} 步报{s.label}", f"{pace}; {ITEM_SOURCE}"],
    )


def ladder_due(notice: NotificationRequested, *, level: ResponseLevel | None, acks: Iterable[AckRecord],
               steps_done: set[int], now: datetime, config: LadderFile) -> list[LadderStep]:
    """The steps of `notice`'s ladder due at `now` and not yet taken, in order; none once acknowledged.

    Several may be due at once (a timer that did not run for a while): each keeps its own time."""
    if now.tzinfo is None:
        raise ValueError("now: must carry its timezone")
    if _stopping_ack(notice, acks) is not None:
        return []
    minutes, pace = _pace(level, config)
    if minutes.our_choice:
        pace += f"（our_choice: {minutes.source}）"
    out: list[LadderStep] = []
    for n in range(1, len(config.steps.value) + 1):
        at = step_time(notice, n, minutes.value)
        if at > now:
            break
        if n in steps_done:
            continue
        out.append(_step(notice, n, at, f"{minutes.value * n:g} 分钟内无人确认", pace, config))
    return out


def step_at_once(notice: NotificationRequested, *, level: ResponseLevel | None, acks: Iterable[AckRecord],
                 steps_done: set[int], failed_step: int, now: datetime, config: LadderFile) -> LadderStep | None:
    """The step after `failed_step`, taken now, not at its own time: step `failed_step` could reach
    nobody (every channel failed, or nobody on duty), so waiting for an ack that cannot come would only
    lose minutes (issue 19 item 2: after the last try the notice goes up the ladder). None: acknowledged,
    taken already, or no step left."""
    n = failed_step + 1
    if _stopping_ack(notice, acks) is not None or n in steps_done or n > len(config.steps.value):
        return None
    _, pace = _pace(level, config)
    return _step(notice, n, now, f"第 {failed_step} 步无法送达", pace, config)


def next_due_at(notice: NotificationRequested, *, level: ResponseLevel | None, acks: Iterable[AckRecord],
                steps_done: set[int], config: LadderFile) -> datetime | None:
    """When the ladder next has a step to take (for the durable timer); None: acknowledged or done."""
    if _stopping_ack(notice, acks) is not None:
        return None
    minutes = config.minutes_for(level).value
    for n in range(1, len(config.steps.value) + 1):
        if n not in steps_done:
            return step_time(notice, n, minutes)
    return None


def steps_taken(records: Iterable[LadderStepTaken], dedup_key: str) -> set[int]:
    """The steps of a notice already taken, as the deliveries topic tells them."""
    return {r.step for r in records if r.dedup_key == dedup_key}


def taken(step: LadderStep, *, person_id: str | None, on_duty_reasons: Iterable[str],
          recorded_at: datetime) -> LadderStepTaken:
    """The record of a step taken, with the person the shell found on duty for it at the step's time."""
    return LadderStepTaken(
        id=step.id, dedup_key=step.dedup_key, step=step.n, incident_id=step.incident_id, unit_id=step.unit_id,
        role=step.role, post=step.post, person_id=person_id, at=step.at, recorded_at=recorded_at,
        reasons=[*step.reasons, *on_duty_reasons], drill=step.drill,
    )
