"""Duty as an iCalendar file (issue 18): shifts out, a calendar's events back in, all or nothing."""

from __future__ import annotations

from datetime import datetime, timedelta

import icalendar
import pytest

from playbooks.duty.ical import PRODID, from_ics, shift_uid, to_ics
from playbooks.duty.roster import rotation_shifts, shifts
from playbooks.duty.table import TableRefused
from topics.duty import Person, Post

from tests.playbooks.test_duty import NAMES, OFFICE, OTHER, PEOPLE, SH, at, good_roster

UNITS = {OFFICE: "区应急办", OTHER: "区文化和旅游局"}


def month_of_shifts():
    """区应急办's 8 days from 20 Jan, every post, as the roster expands them (a weekly 带班领导 too)."""
    return sorted(shifts(good_roster(), at(20, 8, 30), at(28, 8, 30)), key=lambda s: (s.start, s.post, s.person_id))


def key(shift):
    return (shift.unit_id, shift.post, shift.person_id, shift.start, shift.end)


def test_to_ics_then_from_ics_gives_the_same_shifts():
    out = month_of_shifts()
    data = to_ics(out, names=NAMES, units=UNITS, title="区应急办 值班表")
    rotations, back = from_ics(data, unit_id=OFFICE, people=PEOPLE)
    assert rotations == [] and sorted(map(key, back)) == sorted(map(key, out))
    assert all(s.source == "table" and s.ref == f"ics:{shift_uid(s)}" for s in back)
    # and a re-export of what was read is the same file: the UIDs are stable
    assert to_ics(back, names=NAMES, units=UNITS, title="区应急办 值班表") == data


def test_the_calendar_says_who_what_and_where():
    first = next(s for s in month_of_shifts() if s.post == Post.officer)
    data = to_ics([first], names=NAMES, units=UNITS, title="区应急办 值班表",
                  stamp=datetime(2026, 1, 19, 8, tzinfo=SH))
    calendar = icalendar.Calendar.from_ical(data)
    (zone,) = calendar.walk("VTIMEZONE")
    (event,) = calendar.walk("VEVENT")
    assert (str(calendar["PRODID"]), str(calendar["X-WR-CALNAME"]), str(calendar["X-WR-TIMEZONE"])) == (
        PRODID, "区应急办 值班表", "Asia/Shanghai")
    assert str(zone["TZID"]) == "Asia/Shanghai"
    assert str(event["SUMMARY"]) == "区应急办 值班员 张伟"
    assert b"DTSTART;TZID=Asia/Shanghai:20260120T083000" in data and b"DTSTAMP:20260119T000000Z" in data
    assert (str(event["X-YINGJI-UNIT"]), str(event["X-YINGJI-POST"]), str(event["X-YINGJI-PERSON"])) == (
        OFFICE, "officer", "zhang")
    assert event["CATEGORIES"].to_ical() == "值班".encode()


def test_a_uid_is_one_person_on_one_post_at_one_start():
    shift = next(s for s in month_of_shifts() if s.post == Post.officer)
    uids = {shift_uid(shift), shift_uid(shift.model_copy(update={"person_id": "li"})),
            shift_uid(shift.model_copy(update={"post": Post.chief})),
            shift_uid(shift.model_copy(update={"start": shift.start + timedelta(hours=1)}))}
    assert len(uids) == 4
    assert shift_uid(shift) == shift_uid(shift.model_copy(update={"end": shift.end + timedelta(hours=1)}))


# --- calendars others wrote -----------------------------------------------------------------------


def calendar(*events: list[str]) -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//someone//else//EN"]
    for n, props in enumerate(events, start=1):
        has_uid = any(p.startswith("UID") for p in props)
        lines += ["BEGIN:VEVENT", *([] if has_uid else [f"UID:ev{n}@example.cn"]), *props, "END:VEVENT"]
    return ("\r\n".join([*lines, "END:VCALENDAR"]) + "\r\n").encode()


DAY = ["DTSTART;TZID=Asia/Shanghai:20260120T083000", "DTEND;TZID=Asia/Shanghai:20260121T083000"]

READ = [
    # (case, event properties, (post, person, start, end) of the shift read)
    ("a TZID time", [*DAY, "SUMMARY:区应急办 值班员 张伟"], (Post.officer, "zhang", at(20, 8, 30), at(21, 8, 30))),
    ("a floating time is Asia/Shanghai's", ["DTSTART:20260120T083000", "DTEND:20260121T083000", "SUMMARY:值班员 李娜"],
     (Post.officer, "li", at(20, 8, 30), at(21, 8, 30))),
    ("a UTC time", ["DTSTART:20260120T003000Z", "DTEND:20260121T003000Z", "SUMMARY:值班员 李娜"],
     (Post.officer, "li", at(20, 8, 30), at(21, 8, 30))),
    ("Outlook's zone name", ["DTSTART;TZID=China Standard Time:20260120T083000", "DURATION:PT9H", "SUMMARY:带班领导 刘局长"],
     (Post.leader, "boss1", at(20, 8, 30), at(20, 17, 30))),
    ("值班领导 is the 值班主任's post; the person an ATTENDEE",
     [*DAY, "SUMMARY:值班领导", "ATTENDEE;CN=孙主任:mailto:sun@example.cn"], (Post.chief, "chief1", at(20, 8, 30), at(21, 8, 30))),
    ("a person's id as the last word", [*DAY, "SUMMARY:值班员 wang"], (Post.officer, "wang", at(20, 8, 30), at(21, 8, 30))),
    ("our properties win over the summary", [*DAY, "SUMMARY:值班员 张伟", "X-YINGJI-POST:chief", "X-YINGJI-PERSON:chief1"],
     (Post.chief, "chief1", at(20, 8, 30), at(21, 8, 30))),
]


@pytest.mark.parametrize(("case", "props", "expected"), READ, ids=[c[0] for c in READ])
def test_a_single_event_is_a_shift(case, props, expected):
    rotations, (shift,) = from_ics(calendar(props), unit_id=OFFICE, people=PEOPLE)
    assert rotations == [] and (shift.post, shift.person_id, shift.start, shift.end) == expected
    assert (shift.unit_id, shift.source, shift.ref) == (OFFICE, "table", "ics:ev1@example.cn")
    assert shift.start.tzinfo is not None


def test_a_recurring_event_is_a_rotation_of_one_person():
    data = calendar([*DAY, "RRULE:FREQ=DAILY;INTERVAL=3", "SUMMARY:区应急办 值班员 张伟"],
                    ["DTSTART;TZID=Asia/Shanghai:20260121T083000", "DURATION:P1D", "RRULE:FREQ=DAILY;INTERVAL=3",
                     "SUMMARY:区应急办 值班员 李娜"],
                    ["STATUS:CANCELLED", *DAY, "SUMMARY:值班员 王强"])
    rotations, single = from_ics(data, unit_id=OFFICE, people=PEOPLE)
    assert single == [] and [(r.id, r.people, r.rrule, r.duration) for r in rotations] == [
        ("ev1_example.cn", ["zhang"], "FREQ=DAILY;INTERVAL=3", timedelta(days=1)),
        ("ev2_example.cn", ["li"], "FREQ=DAILY;INTERVAL=3", timedelta(days=1))]
    got = [(s.start, s.person_id) for r in rotations for s in rotation_shifts(r, at(20), at(25))]
    assert sorted(got) == [(at(20, 8, 30), "zhang"), (at(21, 8, 30), "li"), (at(23, 8, 30), "zhang"), (at(24, 8, 30), "li")]


TWINS = [*PEOPLE, Person(id="zhang2", name="张伟", unit_id=OFFICE, post="officer", is_leader=False, employment="regular")]

REFUSED = [
    # (case, events, people, [(field, words)])
    ("nobody in the directory", [[*DAY, "SUMMARY:值班员 钱多多"]], PEOPLE, [("VEVENT[1].SUMMARY", "names nobody")]),
    ("a name two people have", [[*DAY, "SUMMARY:值班员 张伟"]], TWINS,
     [("VEVENT[1].SUMMARY", "names 2 people (zhang、zhang2)")]),
    ("an attendee nobody knows", [[*DAY, "SUMMARY:值班员", "ATTENDEE;CN=钱多多:mailto:q@example.cn"]], PEOPLE,
     [("VEVENT[1].ATTENDEE", "names nobody")]),
    ("an unknown id", [[*DAY, "SUMMARY:值班员", "X-YINGJI-PERSON:ghost"]], PEOPLE,
     [("VEVENT[1].X-YINGJI-PERSON", "'ghost' is not in the directory")]),
    ("no post", [[*DAY, "SUMMARY:值班 张伟"]], PEOPLE, [("VEVENT[1].SUMMARY", "no post")]),
    ("two posts", [[*DAY, "SUMMARY:值班员 带班领导 张伟"]], PEOPLE, [("VEVENT[1].SUMMARY", "several posts")]),
    ("a post we do not have", [[*DAY, "SUMMARY:张伟", "X-YINGJI-POST:captain"]], PEOPLE,
     [("VEVENT[1].X-YINGJI-POST", "'captain' is not a post")]),
    ("a whole day", [["DTSTART;VALUE=DATE:20260120", "DTEND;VALUE=DATE:20260121", "SUMMARY:值班员 张伟"]], PEOPLE,
     [("VEVENT[1].DTSTART", "whole day")]),
    ("no start", [["DTEND:20260121T083000", "SUMMARY:值班员 张伟"]], PEOPLE, [("VEVENT[1].DTSTART", "no DTSTART")]),
    ("no end", [["DTSTART:20260120T083000", "SUMMARY:值班员 张伟"]], PEOPLE, [("VEVENT[1].DTEND", "no DTEND")]),
    ("an end before the start", [["DTSTART:20260120T083000", "DTEND:20260120T080000", "SUMMARY:值班员 张伟"]], PEOPLE,
     [("VEVENT[1].DTEND", "ends before it starts")]),
    ("another unit's event", [[*DAY, "SUMMARY:值班员 张伟", f"X-YINGJI-UNIT:{OTHER}"]], PEOPLE,
     [("VEVENT[1].X-YINGJI-UNIT", f"the event is for unit '{OTHER}', not '{OFFICE}'")]),
    ("a UID twice", [[*DAY, "UID:same", "SUMMARY:值班员 张伟"], [*DAY, "UID:same", "SUMMARY:值班员 李娜"]], PEOPLE,
     [("VEVENT[2].UID", "the same UID as VEVENT[1]")]),
    ("a skipped turn", [[*DAY, "RRULE:FREQ=DAILY", "EXDATE;TZID=Asia/Shanghai:20260122T083000", "SUMMARY:值班员 张伟"]], PEOPLE,
     [("VEVENT[1].EXDATE", "override or a swap")]),
    ("a changed turn", [[*DAY, "RECURRENCE-ID;TZID=Asia/Shanghai:20260122T083000", "SUMMARY:值班员 张伟"]], PEOPLE,
     [("VEVENT[1].RECURRENCE-ID", "override or a swap")]),
    ("every bad event listed, with its UID", [[*DAY, "SUMMARY:值班员 钱多多"], [*DAY, "SUMMARY:值班员 张伟"],
                                              ["DTSTART:20260120T083000", "SUMMARY:值班员 李娜"]], PEOPLE,
     [("VEVENT[1].SUMMARY", "(UID 'ev1@example.cn')"), ("VEVENT[3].DTEND", "(UID 'ev3@example.cn')")]),
]


@pytest.mark.parametrize(("case", "events", "people", "expected"), REFUSED, ids=[c[0] for c in REFUSED])
def test_a_bad_calendar_is_refused_whole_naming_event_and_property(case, events, people, expected):
    with pytest.raises(TableRefused) as refused:
        from_ics(calendar(*events), unit_id=OFFICE, people=people)
    got = refused.value.problems
    assert len(got) == len(expected), [str(p) for p in got]
    for field, words in expected:
        assert any(p.rule == "input" and p.field == field and words in p.message and p.unit_id == OFFICE for p in got), \
            [str(p) for p in got]


@pytest.mark.parametrize("data", [b"", b"not a calendar", calendar()[:-15]], ids=["empty", "text", "cut short"])
def test_what_is_no_calendar_is_refused(data):
    with pytest.raises(TableRefused) as refused:
        from_ics(data, unit_id=OFFICE, people=PEOPLE)
    assert [(p.field, p.message.split(":")[0]) for p in refused.value.problems] == [("VCALENDAR", "not an iCalendar file")]


def test_an_empty_calendar_is_nothing():
    assert from_ics(calendar(), unit_id=OFFICE, people=PEOPLE) == ([], [])
