"""A change to the rosters: what it replaces, which units it touches, whether it keeps the duty rules.

Pure. The roster in force is the union of every unit's latest record (topic duty.rosters); a change
(a 值班表 imported, a directory sheet, an .ics, an override or a swap) makes a new roster, and each
unit it touches gets a new record. It is refused, all of it, when it breaks a duty rule for a unit
it touches (another unit's own problems, and a unit's problems the change leaves as they were, are
not this change's).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime

from playbooks.duty.config import DutyFile
from playbooks.duty.rules import Problem, check
from topics.duty import Override, Person, Roster, Rotation, Shift, Swap


def unit_roster(roster: Roster, unit_id: str) -> Roster:
    """One unit's part of the roster: what its record on the rosters topic holds."""
    return Roster(
        people=[p for p in roster.people if p.unit_id == unit_id],
        rotations=[r for r in roster.rotations if r.unit_id == unit_id],
        shifts=[s for s in roster.shifts if s.unit_id == unit_id],
        overrides=[o for o in roster.overrides if o.unit_id == unit_id],
        swaps=[w for w in roster.swaps if w.unit_id == unit_id],
    )


def union(parts: Iterable[Roster]) -> Roster:
    people, rotations, shift_list, overrides, swaps = [], [], [], [], []
    for part in parts:
        people += part.people
        rotations += part.rotations
        shift_list += part.shifts
        overrides += part.overrides
        swaps += part.swaps
    return Roster(people=people, rotations=rotations, shifts=shift_list, overrides=overrides, swaps=swaps)


def units_of(roster: Roster) -> set[str]:
    return ({p.unit_id for p in roster.people} | {r.unit_id for r in roster.rotations} | {s.unit_id for s in roster.shifts}
            | {o.unit_id for o in roster.overrides} | {w.unit_id for w in roster.swaps})


def _upsert(items: Sequence, new: Sequence) -> list:
    ids = {x.id for x in new}
    return [x for x in items if x.id not in ids] + list(new)


def apply_change(current: Roster, *, people: Sequence[Person] = (), shifts: Sequence[Shift] = (),
                 rotations: Sequence[Rotation] = (), overrides: Sequence[Override] = (),
                 swaps: Sequence[Swap] = ()) -> Roster:
    """The roster after a change. People, rotations, overrides and swaps replace those of the same id.
    A 值班表's shifts replace that unit's table shifts starting within the period the new ones cover
    (a month's table imported again, corrected, replaces the month; other months stay)."""
    kept = list(current.shifts)
    by_unit: dict[str, list[Shift]] = {}
    for s in shifts:
        by_unit.setdefault(s.unit_id, []).append(s)
    for unit_id, mine in by_unit.items():
        start, end = min(s.start for s in mine), max(s.end for s in mine)
        kept = [s for s in kept if not (s.unit_id == unit_id and s.source == "table" and start <= s.start < end)]
    return Roster(people=_upsert(current.people, people), rotations=_upsert(current.rotations, rotations),
                  shifts=kept + list(shifts), overrides=_upsert(current.overrides, overrides),
                  swaps=_upsert(current.swaps, swaps))


def touched(before: Roster, after: Roster) -> set[str]:
    """The units whose record the change alters (a person moving unit touches both)."""
    units = units_of(before) | units_of(after)
    return {u for u in units if unit_roster(before, u) != unit_roster(after, u)}


def refused(before: Roster, after: Roster, config: DutyFile, units: Mapping[str, str] | Collection[str],
            now: datetime) -> list[Problem]:
    """The problems the change brings to the units it touches; [] when it may be kept.

    A problem the unit had already (next month's 值班表 not yet in, so a gap three weeks out) does not
    refuse an unrelated change (an urgent 代班 today); one the change makes, or leaves different (a gap
    it shortens but does not close), does."""
    changed = touched(before, after)
    if not changed:
        return []
    had = {_key(p) for p in check(before, config, units, now, only_units=changed)}
    return [p for p in check(after, config, units, now, only_units=changed) if _key(p) not in had]


def _key(p: Problem) -> tuple:
    return (p.rule, p.message, p.unit_id, p.other_unit_id)
