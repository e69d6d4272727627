"""A notice addressed to a person: the one on duty for its role's post at the notice's own time.

Pure. The role a notice names (值班领导, 值班员, 分管区领导 …) maps to a unit's post through duty.yaml's
role_posts; who stands that post at `requested_at` (a drill's simulated time in a drill) comes from
roster.on_duty, down the fallback chain when nobody does, and the notice says which.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timedelta

from playbooks.duty.config import DutyFile
from playbooks.duty.roster import PRECEDENCE, on_duty, shifts
from topics.duty import POST_NAMES, Roster, Shift
from topics.models import NotificationRequested, OnDutyRef


class DutyIndex:
    """The shifts in force over [start, end), by start: who is on duty asked for every notice without
    expanding every rotation each time (a rotation a year old has 365 occurrences to walk)."""

    def __init__(self, roster: Roster, start: datetime, end: datetime) -> None:
        self.roster, self.start, self.end = roster, start, end
        self._shifts = sorted(shifts(roster, start, end), key=lambda s: s.start)
        self._starts = [s.start for s in self._shifts]
        self._longest = max((s.end - s.start for s in self._shifts), default=timedelta(0))
        # between two consecutive shift starts or ends the shifts in force do not change, nor the answer
        self._bounds = sorted({s.start for s in self._shifts} | {s.end for s in self._shifts})
        self._answers: dict[tuple[str, str | None, int], OnDutyRef] = {}

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def in_force(self, at: datetime) -> list[Shift]:
        """The shifts in force at `at`, in roster.shifts' order (precedence: override, swap, plan)."""
        hi = bisect_right(self._starts, at)
        lo = bisect_right(self._starts, at - self._longest) if self._longest else 0
        found = [s for s in self._shifts[max(lo - 1, 0):hi] if s.start <= at < s.end]
        return sorted(found, key=lambda s: (s.unit_id, s.post, s.start, PRECEDENCE[s.source], s.person_id))


def on_duty_ref(roster: Roster, config: DutyFile, unit_id: str, role: str | None, at: datetime,
                index: DutyIndex | None = None) -> OnDutyRef:
    """Who answers for `role` of `unit_id` at `at`, as a notice carries it: a person id, never a name.

    With an index covering `at`, an answer found once is reused until the next shift start or end
    (every notice of a batch asks the same few questions at nearly the same time)."""
    if index is not None and index.covers(at):
        key = (unit_id, role, bisect_right(index._bounds, at))
        known = index._answers.get(key)
        if known is None:
            known = index._answers[key] = _answer(roster, config, unit_id, role, at, index)
        return known if known.at == at else known.model_copy(update={"at": at})
    return _answer(roster, config, unit_id, role, at, None)


def _answer(roster: Roster, config: DutyFile, unit_id: str, role: str | None, at: datetime,
            index: DutyIndex | None) -> OnDutyRef:
    unit, post = config.post_for(role, unit_id)
    in_force = index.in_force(at) if index is not None and index.covers(at) else None
    found = on_duty(roster, config, unit, post, at, in_force=in_force)
    answering_unit = found.shift.unit_id if found.shift is not None else unit
    answering_post = found.shift.post if found.shift is not None else post
    reasons = list(found.reasons)
    if role is not None:
        reasons.insert(0, f"{role}: {unit} {POST_NAMES[post]} (duty.yaml role_posts)")
    return OnDutyRef(unit_id=answering_unit, post=answering_post, person_id=found.person.id if found.person else None,
                     source=found.source, at=at, reasons=reasons)


def address(notice: NotificationRequested, roster: Roster, config: DutyFile,
            index: DutyIndex | None = None) -> NotificationRequested:
    """The notice naming, besides unit and role, the person on duty for that post at its own time."""
    ref = on_duty_ref(roster, config, notice.unit_id, notice.role, notice.requested_at, index)
    return notice.model_copy(update={"on_duty": ref})
