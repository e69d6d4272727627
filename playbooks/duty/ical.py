"""Shifts as an iCalendar file (RFC 5545) and back: a unit's duty in anyone's calendar, and a
calendar's events read into rotations and shifts, all or nothing.

Out: one VEVENT per shift in Asia/Shanghai, its UID made of unit, post, start and person, so a
re-export updates a subscribed calendar instead of adding a copy; X-YINGJI-UNIT, -POST and -PERSON
carry the ids, so what we wrote reads back exactly.

In: an event with an RRULE is a Rotation of one person, any other a Shift (source "table", ref
"ics:<UID>"). The person is X-YINGJI-PERSON, else the SUMMARY's last word or an ATTENDEE's CN
matched in the directory by name (or id); the post X-YINGJI-POST, else 值班员, 值班主任 (值班领导) or
带班领导 in the SUMMARY. A time with no zone (floating) is Asia/Shanghai's. Each problem names the
event as VEVENT[n].<PROPERTY> (n counted from 1 in file order) and its UID; nothing is returned
when there is one. Cancelled events (STATUS:CANCELLED) are not duty and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone

import icalendar
from pydantic import ValidationError

from playbooks.duty.roster import SHANGHAI, rotation_shifts
from playbooks.duty.rules import Problem
from playbooks.duty.table import TableRefused
from topics.duty import POST_NAMES, Person, Post, Rotation, Shift

PRODID = "-//yingji//duty//ZH"
CATEGORY = "值班"
SUMMARY_POSTS = {"值班员": Post.officer, "值班主任": Post.chief, "值班领导": Post.chief, "带班领导": Post.leader}
# a model field -> the event property it was read from, for an error the model finds
_FIELD_PROPERTIES = {"id": "UID", "ref": "UID", "person_id": "X-YINGJI-PERSON", "people": "X-YINGJI-PERSON",
                     "rrule": "RRULE", "start": "DTSTART", "dtstart": "DTSTART", "end": "DTEND", "duration": "DTEND"}


def _vtimezone() -> icalendar.Timezone:
    """Asia/Shanghai as a VTIMEZONE: +08:00 all year, no daylight saving since 1991."""
    standard = icalendar.TimezoneStandard()
    standard.add("dtstart", datetime(1970, 1, 1))
    standard.add("tzoffsetfrom", timedelta(hours=8))
    standard.add("tzoffsetto", timedelta(hours=8))
    standard.add("tzname", "CST")
    zone = icalendar.Timezone()
    zone.add("tzid", "Asia/Shanghai")
    zone.add_component(standard)
    return zone


def shift_uid(shift: Shift) -> str:
    """Stable across exports: the same shift is the same event in a subscribed calendar."""
    start = shift.start.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"duty-{shift.unit_id}-{shift.post.value}-{start}-{shift.person_id}@yingji"


def to_ics(shifts: Sequence[Shift], *, names: Mapping[str, str], units: Mapping[str, str], title: str,
           stamp: datetime | None = None) -> bytes:
    """A VCALENDAR of the shifts. names: person id -> name; units: unit id -> name (an id missing
    from either is written as itself). stamp: DTSTAMP, when the shell made the file (RFC 5545
    wants it; the core reads no clock, so without one it is left out)."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", title)
    calendar.add("x-wr-timezone", "Asia/Shanghai")
    calendar.add_component(_vtimezone())
    for shift in shifts:
        event = icalendar.Event()
        event.add("uid", shift_uid(shift))
        if stamp is not None:
            event.add("dtstamp", stamp.astimezone(timezone.utc))
        event.add("dtstart", shift.start.astimezone(SHANGHAI))
        event.add("dtend", shift.end.astimezone(SHANGHAI))
        event.add("summary", f"{units.get(shift.unit_id, shift.unit_id)} {POST_NAMES[shift.post]} "
                             f"{names.get(shift.person_id, shift.person_id)}")
        event.add("categories", [CATEGORY])
        event.add("x-yingji-unit", shift.unit_id)
        event.add("x-yingji-post", shift.post.value)
        event.add("x-yingji-person", shift.person_id)
        calendar.add_component(event)
    return calendar.to_ical()


def _time(value: object) -> datetime:
    """A DTSTART/DTEND as an aware datetime in Asia/Shanghai; floating is Asia/Shanghai's."""
    dt = getattr(value, "dt", None)
    if not isinstance(dt, datetime):
        if isinstance(dt, date):
            raise ValueError(f"{dt.isoformat()} is a whole day: give the shift's start and end times")
        raise ValueError("is not a date and time")
    return dt.replace(tzinfo=SHANGHAI) if dt.tzinfo is None else dt.astimezone(SHANGHAI)


def _as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class _Event:
    """One VEVENT being read: its problems, each naming VEVENT[n].<PROPERTY> and the UID."""

    def __init__(self, event: icalendar.Event, n: int, problems: list[Problem], unit_id: str):
        self.event, self.n, self.problems, self.unit_id = event, n, problems, unit_id
        self.uid = str(event.get("UID", "")).strip()
        self.summary = str(event.get("SUMMARY", "")).strip()

    def refuse(self, prop: str, message: str) -> None:
        of = f" (UID {self.uid!r})" if self.uid else ""
        self.problems.append(Problem("input", f"{message}{of}", field=f"VEVENT[{self.n}].{prop}", unit_id=self.unit_id))

    def text(self, prop: str) -> str:
        return str(self.event.get(prop, "")).strip()


def _person(e: _Event, by_id: Mapping[str, Person], by_name: Mapping[str, list[Person]]) -> Person | None:
    if pid := e.text("X-YINGJI-PERSON"):
        if pid not in by_id:
            e.refuse("X-YINGJI-PERSON", f"{pid!r} is not in the directory")
        return by_id.get(pid)
    words = e.summary.split()
    last = words[-1] if words else ""
    named = [by_id[last]] if last in by_id else by_name.get(last, [])
    prop = "SUMMARY"
    if not named:
        cns = {str(a.params.get("CN", "")).strip() for a in _as_list(e.event.get("ATTENDEE"))}
        named = list({p.id: p for cn in cns for p in by_name.get(cn, [])}.values())
        prop = "ATTENDEE" if cns else prop
    if len(named) == 1:
        return named[0]
    if named:
        e.refuse(prop, f"names {len(named)} people ({'、'.join(p.id for p in named)}): add X-YINGJI-PERSON with the id")
    else:
        e.refuse(prop, f"{e.summary!r} names nobody in the directory (its last word, an ATTENDEE's CN or X-YINGJI-PERSON)")
    return None


def _post(e: _Event) -> Post | None:
    if value := e.text("X-YINGJI-POST"):
        if value not in {p.value for p in Post}:
            e.refuse("X-YINGJI-POST", f"{value!r} is not a post ({'/'.join(p.value for p in Post)})")
            return None
        return Post(value)
    found = {post for name, post in SUMMARY_POSTS.items() if name in e.summary}
    if len(found) == 1:
        return found.pop()
    e.refuse("SUMMARY", f"{e.summary!r} names {'several posts' if found else 'no post'} "
                        f"(one of {'、'.join(SUMMARY_POSTS)}, or X-YINGJI-POST)")
    return None


def _span(e: _Event) -> tuple[datetime, datetime] | None:
    try:
        start = _time(e.event.get("DTSTART")) if "DTSTART" in e.event else None
    except ValueError as exc:
        e.refuse("DTSTART", str(exc))
        return None
    if start is None:
        e.refuse("DTSTART", "no DTSTART")
        return None
    if "DTEND" in e.event:
        try:
            end = _time(e.event["DTEND"])
        except ValueError as exc:
            e.refuse("DTEND", str(exc))
            return None
    elif "DURATION" in e.event and isinstance(e.event["DURATION"].dt, timedelta):
        end = start + e.event["DURATION"].dt
    else:
        e.refuse("DTEND", "no DTEND or DURATION")
        return None
    if end <= start:
        e.refuse("DTEND", "ends before it starts")
        return None
    return start, end


def from_ics(data: bytes, *, unit_id: str, people: Sequence[Person]) -> tuple[list[Rotation], list[Shift]]:
    """The calendar's events as the unit's rotations and shifts; people: the directory names are
    matched in. Raises TableRefused (Problem field VEVENT[n].<PROPERTY>) when any event cannot be read."""
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise TableRefused([Problem("input", f"not an iCalendar file: {exc}", field="VCALENDAR", unit_id=unit_id)]) from None
    if getattr(calendar, "name", None) != "VCALENDAR":
        raise TableRefused([Problem("input", "not an iCalendar file: no VCALENDAR", field="VCALENDAR", unit_id=unit_id)])
    by_id = {p.id: p for p in people}
    by_name: dict[str, list[Person]] = {}
    for p in people:
        by_name.setdefault(p.name, []).append(p)
    problems: list[Problem] = []
    rotations: list[Rotation] = []
    shifts: list[Shift] = []
    seen: dict[str, int] = {}

    for n, event in enumerate(calendar.walk("VEVENT"), start=1):
        e = _Event(event, n, problems, unit_id)
        if e.text("STATUS").upper() == "CANCELLED":
            continue
        bad = len(problems)
        # a Rotation's id travels in keys: the UID with what an id may not hold made _
        rid = re.sub(r"[^A-Za-z0-9._:\-]", "_", e.uid)
        if not e.uid:
            e.refuse("UID", "no UID")
        elif rid in seen:
            e.refuse("UID", f"the same UID as VEVENT[{seen[rid]}]")
        else:
            seen[rid] = n
        for prop in ("RECURRENCE-ID", "EXDATE", "RDATE"):
            if prop in event:
                e.refuse(prop, f"{prop} is not read: write a changed or skipped turn as an override or a swap")
        if (unit := e.text("X-YINGJI-UNIT")) and unit != unit_id:
            e.refuse("X-YINGJI-UNIT", f"the event is for unit {unit!r}, not {unit_id!r}")
        span, person, post = _span(e), _person(e, by_id, by_name), _post(e)
        rrules = _as_list(event.get("RRULE"))
        if len(rrules) > 1:
            e.refuse("RRULE", "several RRULEs: one rotation per event")
        if len(problems) > bad or span is None or person is None or post is None:
            continue
        try:
            if rrules:
                rotation = Rotation(id=rid, unit_id=unit_id, post=post, rrule=rrules[0].to_ical().decode(),
                                    dtstart=span[0], duration=span[1] - span[0], people=[person.id])
                try:  # an RRULE icalendar parsed may still not expand (UNTIL of the wrong kind, ...)
                    rotation_shifts(rotation, span[0], span[0] + timedelta(days=1))
                except (ValueError, TypeError) as exc:
                    e.refuse("RRULE", f"does not expand: {exc}")
                    continue
                rotations.append(rotation)
            else:
                shifts.append(Shift(unit_id=unit_id, post=post, person_id=person.id, start=span[0], end=span[1],
                                    source="table", ref=f"ics:{e.uid}"))
        except ValidationError as exc:
            for error in exc.errors():
                e.refuse(_FIELD_PROPERTIES.get(str(error["loc"][0]), "UID") if error["loc"] else "UID", error["msg"])

    if problems:
        raise TableRefused(problems)
    return rotations, shifts
