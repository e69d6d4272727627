"""值班记录 (issue 18 item 6), pure: per unit and shift, everything that happened, in order.

A shift is a unit's 值班员 shift from one change to the next (handover.changes). Its entries: the
incidents' own (received, report filed, breach, escalation: plain facts the shell takes from the
incident timelines) and the duty log's (handovers opened, confirmed, escalated; roster changes). An
entry in no shift passed in (before the first, in a gap with nobody on the post) is not dropped: it
goes to a last ShiftLog with no shift (start None), 班次外 in the export.

`log_rows` makes the page's and the export's rows, the people named (names are the shell's to
unseal: the log's events carry ids only), times in Asia/Shanghai.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from playbooks.duty.handover import Change, hhmm
from topics.duty import POST_NAMES, DutyEvent, DutyEventKind, Post
from topics.models import EventKind


@dataclass(frozen=True)
class IncidentEntry:
    """A line of an incident's timeline as the duty log shows it. `kind`: received, report_filed,
    breach, escalation (or another EventKind value); `unit_id`: the unit it concerns, None for all."""

    at: datetime
    incident_id: str
    kind: str
    text: str
    unit_id: str | None = None


@dataclass(frozen=True)
class LogEntry:
    at: datetime
    kind: str  # an IncidentEntry's kind or a DutyEventKind value
    ref: str  # incident id, or handover id / duty event id
    text: str
    event: DutyEvent | None = None  # the duty event, for a duty entry


@dataclass(frozen=True)
class ShiftLog:
    """One shift of a unit: [start, end) stood by officer_id, its entries in time order. start None:
    the entries that fell in no shift passed in."""

    unit_id: str
    start: datetime | None
    end: datetime | None
    officer_id: str | None
    handover_id: str | None
    entries: tuple[LogEntry, ...]


KIND_NAMES: dict[str, str] = {
    "received": "接报",
    "reported": "接报",
    "report_filed": "报送",
    "breach": "超时未报",
    "escalation": "督办",
    DutyEventKind.HANDOVER_OPENED.value: "交接班",
    DutyEventKind.HANDOVER_CONFIRMED.value: "交接班确认",
    DutyEventKind.HANDOVER_ESCALATED.value: "交接班未确认，报带班领导",
    DutyEventKind.ROSTER_CHANGED.value: "值班表变更",
}
# Entries at one moment: in the order things happen (a report received before it is filed; a
# handover opened before it is confirmed or escalated).
_ORDER = {"received": 0, "reported": 0, DutyEventKind.ROSTER_CHANGED.value: 1, DutyEventKind.HANDOVER_OPENED.value: 2,
          "report_filed": 3, DutyEventKind.HANDOVER_CONFIRMED.value: 4, "breach": 5, "escalation": 6,
          DutyEventKind.HANDOVER_ESCALATED.value: 7}
# The incident lines a duty log keeps (issue 18 item 6): received, report filed, breach, 督办.
INCIDENT_KINDS: dict[EventKind, str] = {EventKind.REPORTED: "received", EventKind.REPORT_FILED: "report_filed",
                                        EventKind.BREACH: "breach", EventKind.ESCALATION: "escalation"}


def involves(unit_id: str, *, lead_unit_ids: Iterable[str], owner_ids: Iterable[str],
             told_unit_ids: Iterable[str]) -> bool:
    """An incident is in a unit's duty log when the unit leads it, owes one of its reports, or was told of it."""
    return unit_id in lead_unit_ids or unit_id in owner_ids or unit_id in told_unit_ids


HEADER = ["班次开始", "班次结束", "值班员", "时间", "事项", "事件编号", "说明"]


def _entries(unit_id: str, duty_events: Iterable[DutyEvent], incident_entries: Iterable[IncidentEntry]) -> list[LogEntry]:
    seen: set[str] = set()
    out: list[LogEntry] = []
    for d in duty_events:  # a duty event read twice is one line
        if d.unit_id == unit_id and d.id not in seen:
            seen.add(d.id)
            out.append(LogEntry(d.at, d.kind.value, d.handover_id or d.id, d.reason, d))
    out.extend(LogEntry(e.at, e.kind, e.incident_id, e.text) for e in incident_entries
               if e.unit_id is None or e.unit_id == unit_id)
    return sorted(out, key=lambda e: (e.at, _ORDER.get(e.kind, 9), e.ref))


def duty_log(unit_id: str, shifts_of_unit: Sequence[Change], duty_events: Iterable[DutyEvent],
             incident_entries: Iterable[IncidentEntry]) -> list[ShiftLog]:
    """The unit's log, one ShiftLog per change passed in (from its change to its end), each with
    every entry of the unit falling in it, in time order; then those in no shift, if any."""
    changes = sorted((c for c in shifts_of_unit if c.unit_id == unit_id), key=lambda c: c.at)
    buckets: list[list[LogEntry]] = [[] for _ in changes]
    outside: list[LogEntry] = []
    for e in _entries(unit_id, duty_events, incident_entries):
        i = next((i for i, c in enumerate(changes) if c.at <= e.at and (c.end is None or e.at < c.end)), None)
        (outside if i is None else buckets[i]).append(e)
    logs = [ShiftLog(unit_id, c.at, c.end, c.incoming_id, c.handover_id, tuple(b)) for c, b in zip(changes, buckets)]
    if outside:
        logs.append(ShiftLog(unit_id, None, None, None, None, tuple(outside)))
    return logs


def _name(pid: str | None, names: Mapping[str, str]) -> str:
    return "（无人）" if pid is None else names.get(pid, pid)


def _text(entry: LogEntry, units: Mapping[str, str], names: Mapping[str, str]) -> str:
    """The 说明: a handover's people by name (its event carries ids), else the entry's own text."""
    e = entry.event
    if e is None or e.handover_id is None:
        return entry.text
    unit = units.get(e.unit_id, e.unit_id)
    who = f"{unit} {POST_NAMES[Post.officer]} {_name(e.outgoing_id, names)} → {_name(e.incoming_id, names)}"
    if e.kind == DutyEventKind.HANDOVER_CONFIRMED:
        person = e.details.get("person_id")
        late = "（逾期）" if e.details.get("late") else ""
        return f"{who}：{_name(person if isinstance(person, str) else None, names)} 确认接班{late}，交接事项 {len(e.items)} 项"
    if e.kind == DutyEventKind.HANDOVER_ESCALATED:
        leader = e.details.get("leader_id")
        return (f"{who}：交班后 {e.details.get('minutes')} 分钟未确认，报带班领导 "
                f"{_name(leader if isinstance(leader, str) else None, names)}")
    return who


def log_rows(logs: Sequence[ShiftLog], units: Mapping[str, str], names: Mapping[str, str]) -> list[list[str]]:
    """Rows for the page and the export (xlsx/csv): HEADER, then one row per entry (a shift with
    none: one row, 无记录). `units`: unit id -> name; `names`: person id -> name."""
    rows = [list(HEADER)]
    for log in logs:
        shift = ([hhmm(log.start), hhmm(log.end) if log.end else "", _name(log.officer_id, names)]
                 if log.start is not None else ["班次外", "", ""])
        if not log.entries:
            rows.append([*shift, "", "无记录", "", ""])
        for e in log.entries:
            rows.append([*shift, hhmm(e.at), KIND_NAMES.get(e.kind, e.kind), e.ref, _text(e, units, names)])
    return rows
