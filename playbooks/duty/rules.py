"""The duty rules (playbooks/data/duty.yaml) checked against a roster: one Problem per violation.

Pure: `now` is passed in; the horizon is duty.yaml's gap_horizon_days from it. Each problem names
where it came from: the 值班表's row and column for a shift read from one, else the roster's field
(rotations[r1].people, overrides[o1].person_id, ...), and the unit it is about, so that a change to
one unit's roster can be checked for that unit alone (`check(..., only_units=...)`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from playbooks.duty.config import DutyFile
from playbooks.duty.roster import SHANGHAI, planned_shifts, shifts
from topics.duty import EMPLOYMENT_NAMES, POST_NAMES, Employment, Post, Roster, Shift


@dataclass(frozen=True)
class Problem:
    """One violation: the rule (a duty.yaml rule id, or `input` / `reference` for what cannot be
    read or names nothing known), where (row and column of a 值班表, or a field) and what."""

    rule: str
    message: str
    row: int | None = None
    column: str | None = None
    field: str | None = None
    unit_id: str | None = None
    other_unit_id: str | None = None  # one_place_at_a_time: the unit of the other shift
    # when and on which post, for a problem of the shifts (a page marks the cells it concerns)
    post: Post | None = None
    start: datetime | None = None
    end: datetime | None = None

    def about(self, units: Collection[str]) -> bool:
        """Whether the problem concerns any of the units; one of no unit (bad input) concerns every unit."""
        if self.unit_id is None:
            return True
        return self.unit_id in units or self.other_unit_id in units

    def __str__(self) -> str:
        where = f"row {self.row}, column {self.column}" if self.row is not None else (self.field or "roster")
        return f"{where}: {self.message} [{self.rule}]"


Interval = tuple[datetime, datetime]


def _at(t: datetime) -> str:
    return t.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _span(shift: Shift) -> str:
    return f"{_at(shift.start)}–{_at(shift.end)}"


def _where(shift: Shift, column: str | None = None) -> dict:
    """A shift's origin: its 值班表 cell (the column asked for, or its own), else its roster field."""
    if shift.row is not None:
        return {"row": shift.row, "column": column or shift.column}
    kind, _, ref_id = shift.ref.partition(":")
    field = {"rotation": f"rotations[{ref_id}].people", "override": f"overrides[{ref_id}].person_id",
             "swap": f"swaps[{ref_id}].to_person"}.get(kind, shift.ref)
    return {"field": field}


def uncovered(span: Interval, covers: Iterable[Interval]) -> list[Interval]:
    """The parts of span that no cover overlaps."""
    left, out = span[0], []
    for start, end in sorted(covers):
        if end <= left:
            continue
        if start >= span[1]:
            break
        if start > left:
            out.append((left, start))
        left = max(left, end)
    if left < span[1]:
        out.append((left, span[1]))
    return out


@dataclass(frozen=True)
class _Context:
    roster: Roster
    config: DutyFile
    window: Interval
    in_force: list[Shift]


def _clip(shift: Shift, window: Interval) -> Interval:
    return max(shift.start, window[0]), min(shift.end, window[1])


def _when(shift: Shift, window: Interval) -> dict:
    """A problem of a shift: its post and its part in the window checked."""
    start, end = _clip(shift, window)
    return {"post": shift.post, "start": start, "end": end}


def leader_on_watch(c: _Context) -> list[Problem]:
    out = []
    for unit in c.config.twenty_four_hour_units.value:
        leaders = []
        for s in (s for s in c.in_force if s.unit_id == unit and s.post == Post.leader):
            person = c.roster.person(s.person_id)
            if person is not None and not person.is_leader:
                out.append(Problem("leader_on_watch", f"{person.name} ({person.id}) is 带班领导 {_span(s)} but not a leader (领导干部)",
                                   **_where(s), unit_id=unit, **_when(s, c.window)))
            else:
                leaders.append((s.start, s.end))
        for s in (s for s in c.in_force if s.unit_id == unit and s.post != Post.leader):
            for a, b in uncovered(_clip(s, c.window), leaders):
                out.append(Problem("leader_on_watch", f"{unit}: no 带班领导 {_at(a)}–{_at(b)} (the {POST_NAMES[s.post]} shift {_span(s)})",
                                   **_where(s, POST_NAMES[Post.leader]), unit_id=unit, post=Post.leader, start=a, end=b))
    return out


def no_informal(c: _Context) -> list[Problem]:
    out = []
    for s in c.in_force:
        person = c.roster.person(s.person_id)
        if person is not None and person.employment == Employment.informal:
            out.append(Problem("no_informal", f"{person.name} ({person.id}) is {EMPLOYMENT_NAMES[person.employment]}: may not stand duty ({_span(s)})",
                               **_where(s), unit_id=s.unit_id, **_when(s, c.window)))
    return out


def seconded_not_alone(c: _Context) -> list[Problem]:
    out = []
    for s in c.in_force:
        person = c.roster.person(s.person_id)
        if person is None or person.employment != Employment.seconded:
            continue
        regulars = [(o.start, o.end) for o in c.in_force if o.unit_id == s.unit_id and o.post == s.post
                    and o.person_id != s.person_id and (p := c.roster.person(o.person_id)) is not None
                    and p.employment == Employment.regular]
        for a, b in uncovered(_clip(s, c.window), regulars):
            out.append(Problem("seconded_not_alone", f"{person.name} ({person.id}) is 借调 and alone on {POST_NAMES[s.post]} {_at(a)}–{_at(b)}",
                               **_where(s), unit_id=s.unit_id, post=s.post, start=a, end=b))
    return out


def _required_posts(c: _Context) -> set[tuple[str, Post]]:
    """24-hour units need a 值班员 and a 带班领导 at every moment; any unit, every post it rosters."""
    required = {(u, p) for u in c.config.twenty_four_hour_units.value for p in (Post.officer, Post.leader)}
    required |= {(s.unit_id, s.post) for s in c.in_force}
    required |= {(r.unit_id, r.post) for r in c.roster.rotations}
    return required


def no_gap(c: _Context) -> list[Problem]:
    out = []
    for unit, post in sorted(_required_posts(c)):
        mine = [s for s in c.in_force if s.unit_id == unit and s.post == post]
        for a, b in uncovered(c.window, [(s.start, s.end) for s in mine]):
            before = [s for s in mine if s.end <= a]
            where = _where(before[-1], POST_NAMES[post]) if before else {"field": f"{unit}.{post.value}"}
            out.append(Problem("no_gap", f"{unit}: nobody on {POST_NAMES[post]} {_at(a)}–{_at(b)}", **where, unit_id=unit,
                               post=post, start=a, end=b))
    return out


def one_place_at_a_time(c: _Context) -> list[Problem]:
    out = []
    by_person: dict[str, list[Shift]] = {}
    for s in c.in_force:
        by_person.setdefault(s.person_id, []).append(s)
    for person_id, mine in sorted(by_person.items()):
        mine.sort(key=lambda s: s.start)
        for i, s in enumerate(mine):
            for earlier in mine[:i]:
                if earlier.end > s.start:
                    out.append(Problem("one_place_at_a_time",
                                       f"{person_id} is on {s.unit_id} {POST_NAMES[s.post]} {_span(s)} and on {earlier.unit_id} {POST_NAMES[earlier.post]} {_span(earlier)}",
                                       **_where(s), unit_id=s.unit_id, other_unit_id=earlier.unit_id,
                                       **_when(s, c.window)))
    return out


CHECKS: dict[str, Callable[[_Context], list[Problem]]] = {
    "leader_on_watch": leader_on_watch,
    "no_informal": no_informal,
    "seconded_not_alone": seconded_not_alone,
    "no_gap": no_gap,
    "one_place_at_a_time": one_place_at_a_time,
}


def references(roster: Roster, units: Collection[str], window: Interval) -> list[Problem]:
    """What names nothing known: a unit not in the plan, a person not in the directory, a swap of no shift."""
    out = []
    known = {p.id for p in roster.people}

    # each problem is about the unit whose entry names the unknown (a person's, a rotation's, ...)
    def person(pid: str, about: str, **where) -> None:
        if pid not in known:
            out.append(Problem("reference", f"unknown person {pid!r}", **where, unit_id=about))

    def unit(uid: str, **where) -> None:
        if uid not in units:
            out.append(Problem("reference", f"unknown unit {uid!r}", **where, unit_id=uid))

    for p in roster.people:
        unit(p.unit_id, field=f"people[{p.id}].unit_id")
    for r in roster.rotations:
        unit(r.unit_id, field=f"rotations[{r.id}].unit_id")
        for pid in r.people:
            person(pid, r.unit_id, field=f"rotations[{r.id}].people")
    for s in roster.shifts:
        unit(s.unit_id, **_where(s, "单位") if s.row is not None else {"field": f"{s.ref}.unit_id"})
        person(s.person_id, s.unit_id, **_where(s))
    for o in roster.overrides:
        unit(o.unit_id, field=f"overrides[{o.id}].unit_id")
        person(o.person_id, o.unit_id, field=f"overrides[{o.id}].person_id")
        person(o.approved_by, o.unit_id, field=f"overrides[{o.id}].approved_by")
    planned = planned_shifts(roster, *window)
    for w in roster.swaps:
        unit(w.unit_id, field=f"swaps[{w.id}].unit_id")
        person(w.to_person, w.unit_id, field=f"swaps[{w.id}].to_person")
        person(w.approved_by, w.unit_id, field=f"swaps[{w.id}].approved_by")
        if window[0] <= w.shift_start < window[1] and not any(s.ref == f"swap:{w.id}" for s in planned):
            out.append(Problem("reference", f"no {POST_NAMES[w.post]} shift of {w.from_person} starts at {_at(w.shift_start)}",
                               field=f"swaps[{w.id}].shift_start", unit_id=w.unit_id))
    return out


def _order(p: Problem) -> tuple:
    return (p.row is None, p.row or 0, p.column or "", p.field or "", p.rule, p.message)


def check(roster: Roster, config: DutyFile, units: Collection[str], now: datetime, *,
          only_units: Collection[str] | None = None, window: Interval | None = None) -> list[Problem]:
    """Every problem of the roster over [now, now + gap_horizon_days), in row order; [] when it keeps every rule.

    only_units: keep only the problems about these units (Problem.about). A change to one unit's
    roster is checked with the whole roster in force (a person can be busy elsewhere) but must not be
    refused for another unit's gap that was there before it.

    window: another period to check instead (a page showing a past week or a month)."""
    window = window or (now, now + timedelta(days=config.gap_horizon_days.value))
    context = _Context(roster, config, window, shifts(roster, *window))
    problems = references(roster, units, window)
    for rule in config.rules:
        problems.extend(CHECKS[rule.id](context))
    if only_units is not None:
        problems = [p for p in problems if p.about(only_units)]
    return sorted(problems, key=_order)
