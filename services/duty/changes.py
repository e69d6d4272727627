"""Changes to the rosters, as the API and the CLI make them: read, checked whole, then records.

A change is read (a 值班表 .xlsx/.csv with its optional 人员 sheet, an .ics, an override, a swap),
applied to the roster in force (playbooks/duty/change.py), checked against every duty rule for the
units it touches, and only then turned into one RosterRecord per touched unit (names and contacts
sealed) and one roster_changed event per unit for the duty log. Anything wrong refuses it all:
TableRefused with one Problem per row and column (or field); nothing is written.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath

from playbooks.duty.change import apply_change, refused, touched
from playbooks.duty.ical import from_ics
from playbooks.duty.people import read_people
from playbooks.duty.rules import Problem
from playbooks.duty.table import TableRefused, table_shifts
from playbooks.plan import Plan
from services.duty.book import DutyBook, to_record
from services.duty.files import pick_sheets, read_sheets
from topics.duty import DutyEvent, DutyEventKind, Override, Roster, RosterRecord, RosterSource, Swap
from topics.requests import OverrideRequest, SwapRequest


@dataclass(frozen=True)
class Change:
    """What a kept change writes: the touched units' records and their duty log lines."""

    records: list[RosterRecord]
    events: list[DutyEvent]
    roster: Roster
    people: int
    shifts: int
    rotations: int


def _kept(book: DutyBook, plan: Plan, after: Roster, *, source: RosterSource, what: str, now: datetime, by: str,
          counts: tuple[int, int, int]) -> Change:
    before = book.roster()
    problems = refused(before, after, plan.duty, plan.unit_names, now)
    if problems:
        raise TableRefused(problems)
    units = sorted(touched(before, after))
    records = [to_record(after, u, book.sealer, source=source, now=now, by=by) for u in units]
    stamp = int(now.timestamp() * 1000)
    events = [DutyEvent(id=f"roster.{u}.{stamp}.changed", unit_id=u, kind=DutyEventKind.ROSTER_CHANGED, at=now,
                        recorded_at=now, reason=f"值班表变更：{plan.unit_name(u)}（{what}）", source="issue 18 item 2",
                        by=by, details={"shifts": sum(1 for s in after.shifts if s.unit_id == u),
                                        "people": sum(1 for p in after.people if p.unit_id == u),
                                        "rotations": sum(1 for r in after.rotations if r.unit_id == u),
                                        "source": source})
              for u in units]
    return Change(records, events, after, *counts)


def kind_of(data: bytes, filename: str) -> str:
    """.xlsx, .ics or .csv: by what the file holds (a zip is a workbook, BEGIN:VCALENDAR a calendar),
    else by its name; a file saved without its extension is still read."""
    if data.startswith(b"PK\x03\x04"):
        return ".xlsx"
    if data.lstrip(b"\xef\xbb\xbf \r\n\t").upper().startswith(b"BEGIN:VCALENDAR"):
        return ".ics"
    suffix = PurePath(filename).suffix.lower()
    return suffix if suffix in (".xlsx", ".csv", ".ics") else ".csv" if suffix in ("", ".txt") else suffix


def import_file(book: DutyBook, plan: Plan, data: bytes, filename: str, *, unit_id: str | None, now: datetime,
                by: str) -> Change:
    """A 值班表 (.xlsx or .csv; an .xlsx may carry a 人员 sheet too) or an .ics, for `unit_id` when the
    file names no unit. Raises TableRefused (every problem, row and column) or ValueError (unreadable)."""
    current = book.roster()
    suffix = kind_of(data, filename)
    if suffix == ".ics":
        if unit_id is None or unit_id not in plan.units:
            raise TableRefused([Problem("input", f"unknown unit {unit_id!r}: an .ics needs the unit it is for",
                                        field="unit_id")])
        rotations, shifts = from_ics(data, unit_id=unit_id, people=current.people)
        after = apply_change(current, shifts=shifts, rotations=rotations)
        return _kept(book, plan, after, source="ics", what="日历导入", now=now, by=by,
                     counts=(0, len(shifts), len(rotations)))
    sheets = read_sheets(data, f"{PurePath(filename).stem or 'upload'}{suffix}")
    people_rows, table_rows = pick_sheets(sheets)
    if not any(any(c not in (None, "") for c in row) for row in [*(people_rows or [])[1:], *table_rows[1:]]):
        raise TableRefused([Problem("input", f"{filename}: no rows under the header (值班表 or 人员)", field="file")])
    people = read_people(people_rows, units=plan.unit_names, base=current.people) if people_rows else []
    directory = apply_change(current, people=people)
    shifts = table_shifts(table_rows, unit_id=unit_id, base=directory, config=plan.duty, units=plan.unit_names) \
        if table_rows else []
    after = apply_change(directory, shifts=shifts)
    source: RosterSource = "xlsx" if suffix == ".xlsx" else "csv"
    # the file's name is not written down: people name files after people
    return _kept(book, plan, after, source=source, what=f"{source} 导入", now=now, by=by,
                 counts=(len(people), len(shifts), 0))


def add_override(book: DutyBook, plan: Plan, unit_id: str, req: OverrideRequest, *, now: datetime, by: str) -> Change:
    """代班: someone else on a post for an interval, approved; checked as any change is."""
    stamp = f"{int(now.timestamp() * 1000)}-{uuid.uuid4().hex[:6]}"  # ids are matched across units
    override = Override(id=f"o-{unit_id}-{stamp}", unit_id=unit_id, post=req.post, person_id=req.person_id, start=req.start,
                        end=req.end, approved_by=req.approved_by, reason=req.reason)
    after = apply_change(book.roster(), overrides=[override])
    return _kept(book, plan, after, source="json", what=f"代班 {override.id}", now=now, by=by, counts=(0, 0, 0))


def add_swap(book: DutyBook, plan: Plan, unit_id: str, req: SwapRequest, *, now: datetime, by: str) -> Change:
    """换班: a planned shift stood by another person, approved; checked as any change is."""
    stamp = f"{int(now.timestamp() * 1000)}-{uuid.uuid4().hex[:6]}"
    swap = Swap(id=f"w-{unit_id}-{stamp}", unit_id=unit_id, post=req.post, shift_start=req.shift_start,
                from_person=req.from_person, to_person=req.to_person, approved_by=req.approved_by)
    after = apply_change(book.roster(), swaps=[swap])
    return _kept(book, plan, after, source="json", what=f"换班 {swap.id}", now=now, by=by, counts=(0, 0, 0))
