"""A 值班表's rows made a roster, all or nothing: any bad row refuses the whole table, every problem listed.

The rows are what the shell read from the .xlsx or .csv (lists of cells: text, numbers, dates;
reading the file is not done here). The first row is the header; rows are numbered as the
spreadsheet numbers them (the header is row 1). The columns, in any order:

| column | required | what it holds |
|---|---|---|
| 日期 | yes | the day the shift starts: 2026-02-01, 2026/2/1 or a date cell |
| 班次 | no | HH:MM-HH:MM, or HH:MM-次日HH:MM (an end not after the start is the next day too); empty: duty.yaml's shift change to the next day's |
| 单位 | no | the unit (name as the plan writes it, or its id); empty or absent: the table's own unit |
| 带班领导 | yes | who leads the shift; a person's id or name in the directory; several split by 、 , ， / |
| 值班主任 | no | the 值班主任 (值班领导) |
| 值班员 | yes | the duty officer(s); at least one |
| 电话 | no | the 值班员's mobile numbers in the same order; each an 11-digit mobile, the directory's if it has one |

Any other column is refused (a misspelt column must not be silently dropped). The roster read is
then checked against the duty rules (rules.py) before it is returned.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime, time, timedelta

from playbooks.duty.config import DutyFile
from playbooks.duty.roster import SHANGHAI
from playbooks.duty.rules import Problem, check
from topics.duty import MOBILE_PATTERN, POST_NAMES, Person, Post, Roster, Shift

COLUMNS = ("日期", "班次", "单位", "带班领导", "值班主任", "值班员", "电话")
REQUIRED = ("日期", "带班领导", "值班员")
POST_COLUMNS = {POST_NAMES[p]: p for p in (Post.leader, Post.chief, Post.officer)}
_SPLIT = re.compile(r"\s*[、,，/;；]\s*")
_SHIFT = re.compile(r"^(\d{1,2}):(\d{2})\s*[-–~至]\s*(次日)?(\d{1,2}):(\d{2})$")


class TableRefused(ValueError):
    """The 值班表 is refused: every problem found, none of it kept."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(map(str, problems)))


def cell_text(cell: object) -> str:
    """A cell as text, as people see it in the spreadsheet."""
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))  # a spreadsheet's number cell: 13800000000.0
    return str(cell).strip()


def _date(cell: object) -> date:
    day = _parse_date(cell)
    if not 2000 <= day.year < 2100:  # as every time people enter (topics.models.InputDatetime)
        raise ValueError(f"{day.isoformat()} is not a date between 2000 and 2099")
    return day


def _parse_date(cell: object) -> date:
    if isinstance(cell, datetime):
        return cell.date()
    if isinstance(cell, date):
        return cell
    text = cell_text(cell).replace("/", "-").replace(".", "-")
    try:
        y, m, d = (int(x) for x in text.split("-"))
        return date(y, m, d)
    except ValueError:
        raise ValueError(f"{cell_text(cell)!r} is not a date (2026-02-01)") from None


def _span(cell: object, day: date, config: DutyFile) -> tuple[datetime, datetime]:
    text = cell_text(cell)
    if not text:
        start = datetime.combine(day, config.shift_change.value, SHANGHAI)
        return start, start + timedelta(days=1)
    m = _SHIFT.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a shift (08:30-次日08:30 or 08:30-17:30)")
    try:
        a, b = time(int(m[1]), int(m[2])), time(int(m[4]), int(m[5]))
    except ValueError:
        raise ValueError(f"{text!r} has an impossible time") from None
    start, end = datetime.combine(day, a, SHANGHAI), datetime.combine(day, b, SHANGHAI)
    return start, end if end > start and not m[3] else end + timedelta(days=1)


def refuser(problems: list[Problem], row: int):
    """refuse(column, message): one input problem of the row."""
    def refuse(column: str, message: str) -> None:
        problems.append(Problem("input", message, row=row, column=column))
    return refuse


def read_header(rows: Sequence[Sequence[object]], columns: Sequence[str], required: Sequence[str],
                what: str = "table") -> tuple[list[str], list[Problem]]:
    """The header row's column names (blank where a column has none) and its problems: an unknown
    column (a misspelt one must not be dropped silently), one twice, a required one missing."""
    if not rows:
        return [], [Problem("input", f"the {what} is empty: no header row", row=1)]
    problems: list[Problem] = []
    header = [cell_text(c) for c in rows[0]]
    for i, name in enumerate(header):
        if name and name not in columns:
            problems.append(Problem("input", f"unknown column {name!r} (columns: {'、'.join(columns)})", row=1, column=name))
        elif name and name in header[:i]:
            problems.append(Problem("input", f"column {name!r} twice", row=1, column=name))
    for name in required:
        if name not in header:
            problems.append(Problem("input", f"missing column {name!r}", row=1, column=name))
    return header, problems


def read_table(rows: Sequence[Sequence[object]], *, unit_id: str | None, base: Roster, config: DutyFile,
               units: Mapping[str, str], now: datetime, only_units: Collection[str] | None = None) -> Roster:
    """The base roster with the 值班表's shifts added, checked against every duty rule as of `now`.

    units: every unit of the plan, id -> name. only_units: the rules' problems kept (rules.check);
    None, every unit's. Raises TableRefused naming each row and column."""
    new = table_shifts(rows, unit_id=unit_id, base=base, config=config, units=units)
    roster = base.model_copy(update={"shifts": [*base.shifts, *new]})
    problems = check(roster, config, units, now, only_units=only_units)
    if problems:
        raise TableRefused(problems)
    return roster


def table_shifts(rows: Sequence[Sequence[object]], *, unit_id: str | None, base: Roster, config: DutyFile,
                 units: Mapping[str, str]) -> list[Shift]:
    """The 值班表's shifts, read whole, people found in base's directory; no duty rule checked yet
    (the caller checks the roster they make: change.refused). Raises TableRefused naming each cell."""
    header, problems = read_header(rows, COLUMNS, REQUIRED)
    if not header:
        raise TableRefused(problems)
    if "单位" not in header and unit_id not in units:
        problems.append(Problem("input", f"unknown unit {unit_id!r}", field="unit_id"))
    if problems:
        raise TableRefused(problems)

    by_name: dict[str, list[Person]] = {}
    for p in base.people:
        by_name.setdefault(p.name, []).append(p)
    ids = {u_name: uid for uid, u_name in units.items()}
    new: list[Shift] = []

    for n, raw in enumerate(rows[1:], start=2):
        cells = {name: raw[i] if i < len(raw) else None for i, name in enumerate(header) if name}
        if not any(cell_text(c) for c in cells.values()):
            continue
        bad = len(problems)
        refuse = refuser(problems, n)

        unit = cell_text(cells.get("单位")) or unit_id or ""
        unit = ids.get(unit, unit)
        if unit not in units:
            refuse("单位" if cell_text(cells.get("单位")) else "日期", f"unknown unit {unit!r}")
        span = None
        try:
            day = _date(cells["日期"])
        except ValueError as exc:
            refuse("日期", str(exc))
        else:
            try:
                span = _span(cells.get("班次"), day, config)
            except ValueError as exc:
                refuse("班次", str(exc))
        people: dict[str, list[Person]] = {}
        for column, post in POST_COLUMNS.items():
            people[column] = []
            for token in (t for t in _SPLIT.split(cell_text(cells.get(column))) if t):
                person = base.person(token)
                named = by_name.get(token, [])
                if person is None and len(named) > 1:
                    refuse(column, f"{token!r} names {len(named)} people: write the person's id")
                elif person is None and not named:
                    refuse(column, f"{token!r} is not in the directory")
                else:
                    people[column].append(person or named[0])
        if not cell_text(cells.get("值班员")):
            refuse("值班员", "no 值班员")
        phones = [t for t in _SPLIT.split(cell_text(cells.get("电话"))) if t]
        if phones and len(phones) != len(people["值班员"]):
            refuse("电话", f"{len(phones)} numbers for {len(people['值班员'])} 值班员")
        for phone, person in zip(phones, people["值班员"]):
            if not re.match(MOBILE_PATTERN, phone):
                refuse("电话", f"{phone!r} is not a mobile number (11 digits, 1 then 3-9)")
            elif person.contacts.mobile and person.contacts.mobile != phone:
                refuse("电话", f"the number for {person.name} ({person.id}) differs from the directory's")
        if len(problems) > bad or span is None:
            continue
        for column, post in POST_COLUMNS.items():
            new.extend(Shift(unit_id=unit, post=post, person_id=p.id, start=span[0], end=span[1], source="table",
                             ref=f"table:row {n}", row=n, column=column) for p in people[column])

    if problems:
        raise TableRefused(problems)
    return new
