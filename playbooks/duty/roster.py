"""Who stands which post when: a Roster expanded into shifts, and who is on duty at a given time.

Pure: the window and the time asked about are passed in, never read from a clock. The recurrence is
icalendar + recurring-ical-events (RFC 5545, as Grafana OnCall uses them); no date arithmetic of ours
beyond cutting an override's interval out of a shift.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from playbooks.duty.config import DutyFile
from topics.duty import POST_NAMES, Override, Person, Post, Roster, Rotation, Shift

SHANGHAI = ZoneInfo("Asia/Shanghai")

# When two shifts cover one post at one moment, the one asked about is the most deliberate: an
# override (approved for that interval) over a swap (approved for that shift) over the plan.
PRECEDENCE = {"override": 0, "swap": 1, "table": 2, "rotation": 2}


def week_start(at: datetime, config: DutyFile) -> datetime:
    """The shift change that opens the duty week holding `at`: Monday's (duty.yaml's shift_change).
    A duty day runs from one change to the next, so before 08:30 it is still the day before's."""
    change = config.shift_change.value
    day = (at.astimezone(SHANGHAI) - timedelta(hours=change.hour, minutes=change.minute)).date()
    return datetime.combine(day - timedelta(days=day.weekday()), change, SHANGHAI)


def rotation_shifts(rotation: Rotation, start: datetime, end: datetime) -> list[Shift]:
    """The rotation's occurrences overlapping [start, end), the k-th to people[k % len(people)]."""
    if end <= rotation.dtstart:
        return []
    event = icalendar.Event()
    event.add("uid", rotation.id)
    event.add("dtstart", rotation.dtstart.astimezone(SHANGHAI))
    event.add("duration", rotation.duration)
    event.add("rrule", icalendar.vRecur.from_ical(rotation.rrule))
    calendar = icalendar.Calendar()
    calendar.add_component(event)
    # counted from DTSTART, so whose turn it is does not depend on the window asked about
    starts = sorted(e["DTSTART"].dt for e in recurring_ical_events.of(calendar).between(rotation.dtstart, end))
    out: list[Shift] = []
    for k, s in enumerate(starts):
        if s + rotation.duration <= start or s >= end:
            continue
        out.append(Shift(unit_id=rotation.unit_id, post=rotation.post, person_id=rotation.people[k % len(rotation.people)],
                         start=s, end=s + rotation.duration, source="rotation", ref=f"rotation:{rotation.id}"))
    return out


def planned_shifts(roster: Roster, start: datetime, end: datetime) -> list[Shift]:
    """Rotations and a 值班表's shifts overlapping [start, end), each approved swap applied."""
    planned = [s for s in roster.shifts if s.start < end and s.end > start]
    for rotation in roster.rotations:
        planned.extend(rotation_shifts(rotation, start, end))
    out = []
    for shift in planned:
        swap = next((w for w in roster.swaps if w.unit_id == shift.unit_id and w.post == shift.post
                     and w.shift_start == shift.start and w.from_person == shift.person_id), None)
        if swap is not None:
            shift = shift.model_copy(update={"person_id": swap.to_person, "source": "swap", "ref": f"swap:{swap.id}"})
        out.append(shift)
    return out


def _cut(shift: Shift, overrides: list[Override]) -> list[Shift]:
    """What remains of a shift once the overrides of its post are cut out of it."""
    pieces = [shift]
    for o in overrides:
        if o.unit_id != shift.unit_id or o.post != shift.post:
            continue
        next_pieces = []
        for p in pieces:
            if o.end <= p.start or o.start >= p.end:
                next_pieces.append(p)
                continue
            if p.start < o.start:
                next_pieces.append(p.model_copy(update={"end": o.start}))
            if o.end < p.end:
                next_pieces.append(p.model_copy(update={"start": o.end}))
        pieces = next_pieces
    return pieces


def shifts(roster: Roster, start: datetime, end: datetime) -> list[Shift]:
    """Every shift in force overlapping [start, end): the plan with swaps, overrides cut in over it."""
    out = [piece for s in planned_shifts(roster, start, end) for piece in _cut(s, roster.overrides)
           if piece.start < end and piece.end > start]
    out.extend(Shift(unit_id=o.unit_id, post=o.post, person_id=o.person_id, start=o.start, end=o.end,
                     source="override", ref=f"override:{o.id}")
               for o in roster.overrides if o.start < end and o.end > start)
    return sorted(out, key=lambda s: (s.unit_id, s.post, s.start, PRECEDENCE[s.source], s.person_id))


class OnDuty(NamedTuple):
    person: Person | None
    source: Literal["rotation", "table", "override", "swap", "fallback", "nobody"]
    reasons: list[str]
    shift: Shift | None


def _chain(config: DutyFile, unit_id: str, post: Post) -> list[tuple[str, Post]]:
    """The posts asked in turn: the one asked for, then the chain's steps after it (duty.yaml)."""
    steps = [(unit_id if s.unit == "$unit" else s.unit, s.post) for s in config.fallback_chain.value]
    after = steps[steps.index((unit_id, post)) + 1:] if (unit_id, post) in steps else steps
    out = [(unit_id, post)]
    for step in after:
        if step not in out:
            out.append(step)
    return out


def on_duty(roster: Roster, config: DutyFile, unit_id: str, post: Post, at: datetime,
            in_force: list[Shift] | None = None) -> OnDuty:
    """Who answers for a unit's post at `at`, where the answer came from, and why.

    in_force: the shifts in force at `at` when the caller has them (address.DutyIndex), else expanded here."""
    if in_force is None:
        in_force = shifts(roster, at, at + timedelta(microseconds=1))
    reasons: list[str] = []
    for i, (unit, step_post) in enumerate(_chain(config, unit_id, post)):
        for shift in (s for s in in_force if s.unit_id == unit and s.post == step_post):
            person = roster.person(shift.person_id)
            if person is None:
                reasons.append(f"{unit} {POST_NAMES[step_post]}: {shift.person_id} ({shift.ref}) is not in the directory")
                continue
            reasons.append(f"{unit} {POST_NAMES[step_post]}: {person.id} by {shift.ref}")
            return OnDuty(person, shift.source if i == 0 else "fallback", reasons, shift)
        # no time in the text: the answer is asked at `at`, which the caller holds (a notice's on_duty.at)
        reasons.append(f"{unit} {POST_NAMES[step_post]}: nobody on duty")
    return OnDuty(None, "nobody", reasons, None)
