"""交接班 and 值班记录 (issue 18 items 5 and 6), pure: shift changes, the timer's decision (open once,
escalate once at exactly handover_confirm_minutes), confirmations, open items, the duty log.

Table-driven; the rosters are test_duty's (区应急办: 值班员 zhang, li, wang in turn from 20 Jan 08:30,
带班领导 boss1 then boss2 a week each, 值班主任 chief1)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from playbooks.duty.handover import (
    Change,
    HandoverRefused,
    ItemNotice,
    ItemObligation,
    OpenIncident,
    changes,
    confirm,
    due,
    handovers,
    open_items,
)
from playbooks.duty.config import load_duty
from playbooks.duty.log import HEADER, IncidentEntry, duty_log, log_rows
from topics.duty import DutyEvent, DutyEventKind, Override, Roster, Shift, Swap
from tests.playbooks.test_duty import NAMES, OFFICE, OTHER, PEOPLE, START, at, good_roster, rotation

UNITS = {OFFICE: "区应急办"}
HOUR = timedelta(hours=1)
HID_21 = "handover.district_emergency_office.20260121T0030Z"  # 21 Jan 08:30 Shanghai


@pytest.fixture(scope="module")
def duty(plan):
    return plan.duty


def day_and_night() -> Roster:
    """A 值班表 of 区应急办's 值班员 with a day shift (08:30–20:30) and a night shift (20:30–08:30)."""
    people = ["zhang", "li", "wang", "zhao"]
    rows = []
    for k in range(4):
        day = at(20 + k, 8, 30)
        for half, (start, hours) in enumerate(((day, 12), (day + 12 * HOUR, 12))):
            rows.append(Shift(unit_id=OFFICE, post="officer", person_id=people[(2 * k + half) % 4], start=start,
                              end=start + hours * HOUR, source="table", ref=f"table:{2 * k + half + 2}",
                              row=2 * k + half + 2, column="值班员"))
    return Roster(people=PEOPLE, shifts=rows, rotations=[rotation("leaders", "leader", ["boss1", "boss2"], rrule="FREQ=WEEKLY",
                                                                  duration=timedelta(days=7))])


# --- shift changes --------------------------------------------------------------------------------

CHANGES = [
    # (case, roster, window, [(at, end, outgoing, incoming)])
    ("the 08:30 change of a daily rotation", good_roster(), (at(21, 0), at(22, 0)),
     [(at(21, 8, 30), at(22, 8, 30), "zhang", "li")]),
    ("the first shift of a rotation: nobody before", good_roster(), (at(20, 0), at(20, 23)),
     [(START, at(21, 8, 30), None, "zhang")]),
    ("a 值班表 with day and night shifts: two changes a day", day_and_night(), (at(21, 0), at(22, 0)),
     [(at(21, 8, 30), at(21, 20, 30), "li", "wang"), (at(21, 20, 30), at(22, 8, 30), "wang", "zhao")]),
    ("a swap moves the change's person",
     good_roster(swaps=[Swap(id="sw1", unit_id=OFFICE, post="officer", shift_start=at(22, 8, 30), from_person="wang",
                             to_person="zhao", approved_by="chief1")]), (at(22, 0), at(23, 12)),
     [(at(22, 8, 30), at(23, 8, 30), "li", "zhao"), (at(23, 8, 30), at(24, 8, 30), "zhao", "zhang")]),
    ("an override is handed over to, and back from",
     good_roster(overrides=[Override(id="ov1", unit_id=OFFICE, post="officer", person_id="zhao", start=at(21, 12),
                                     end=at(21, 18), approved_by="boss1")]), (at(21, 9), at(22, 0)),
     [(at(21, 12), at(21, 18), "li", "zhao"), (at(21, 18), at(22, 8, 30), "zhao", "li")]),
    ("the same person on two shifts in a row: no change",
     Roster(people=PEOPLE, rotations=[rotation("o", "officer", ["zhang"])]), (at(21, 0), at(23, 0)), []),
    ("another unit's shifts are not this unit's changes",
     Roster(people=PEOPLE, rotations=[rotation("o", "officer", ["ou", "zhao"], unit=OTHER)]), (at(21, 0), at(22, 0)), []),
]


@pytest.mark.parametrize(("case", "roster", "window", "expected"), CHANGES, ids=[c[0] for c in CHANGES])
def test_changes(case, roster, window, expected):
    got = changes(roster, OFFICE, *window)
    assert [(c.at, c.end, c.outgoing_id, c.incoming_id) for c in got] == expected
    for c in got:
        assert c.handover_id == f"handover.{OFFICE}.{c.at.astimezone(timezone.utc):%Y%m%dT%H%MZ}"


def test_the_handover_id_is_the_change_in_utc():
    assert changes(good_roster(), OFFICE, at(21, 0), at(22, 0))[0].handover_id == HID_21


def test_a_window_ends_before_its_last_shift_does():
    [c] = changes(Roster(people=PEOPLE, rotations=[rotation("o", "officer", ["zhang", "li"], rrule="FREQ=DAILY;INTERVAL=5",
                                                             duration=timedelta(days=5))]), OFFICE, at(25, 0), at(25, 12))
    assert (c.at, c.end, c.incoming_id) == (at(25, 8, 30), at(30, 8, 30), "li")


# --- the timer: open once, escalate once at exactly +15 minutes --------------------------------------

def run(duty, events, now, roster=None, lookback=HOUR):
    return due(roster or good_roster(), duty, events, now, units=UNITS, lookback=lookback)


def test_a_change_is_opened_once_even_if_the_timer_runs_twice(duty):
    first = run(duty, [], at(21, 8, 31))
    [opened] = first.events
    assert (opened.id, opened.kind, opened.handover_id) == (f"{HID_21}.opened", DutyEventKind.HANDOVER_OPENED, HID_21)
    assert (opened.at, opened.recorded_at, opened.by) == (at(21, 8, 30), at(21, 8, 31), "duty-timer")
    assert (opened.outgoing_id, opened.incoming_id, opened.source) == ("zhang", "li", "issue 18 item 5")
    assert opened.reason.startswith("交接班：区应急办 值班员 zhang → li")
    assert first.notifications == []
    again = run(duty, first.events, at(21, 8, 32))
    assert (again.events, again.notifications) == ([], [])
    assert any("already opened" in r for r in again.reasons)


ESCALATION = [
    # (case, now, escalated?)
    ("not before 15 minutes", at(21, 8, 45) - timedelta(microseconds=1), False),
    ("at exactly 15 minutes", at(21, 8, 45), True),
    ("later, noticed late", at(21, 9, 20), True),
]


@pytest.mark.parametrize(("case", "now", "escalated"), ESCALATION, ids=[c[0] for c in ESCALATION])
def test_an_unconfirmed_handover_goes_to_the_带班领导_at_15_minutes_once(duty, case, now, escalated):
    opened = run(duty, [], at(21, 8, 31)).events
    got = run(duty, opened, now)
    assert [e.kind for e in got.events] == ([DutyEventKind.HANDOVER_ESCALATED] if escalated else [])
    if not escalated:
        return
    [event], [notice] = got.events, got.notifications
    assert (event.id, event.at, event.recorded_at) == (f"{HID_21}.escalated", at(21, 8, 45), now)
    assert (notice.id, notice.dedup_key, notice.kind, notice.role) == (f"{HID_21}.escalated",) * 2 + ("handover", "带班领导")
    assert (notice.unit_id, notice.unit, notice.rule, notice.drill) == (OFFICE, "区应急办", "handover_unconfirmed", False)
    assert notice.requested_at == at(21, 8, 45)  # the rule's own time, not now
    assert "15 分钟" in notice.why and "handover_confirm_minutes" in notice.section and "issue 18 item 5" in notice.section
    assert (notice.on_duty.person_id, notice.on_duty.post, notice.on_duty.source, notice.on_duty.at) == (
        "boss1", "leader", "rotation", at(21, 8, 45))
    assert notice.on_duty.reasons
    once_more = run(duty, [*opened, *got.events], now + HOUR)
    assert (once_more.events, once_more.notifications) == ([], [])


def test_opened_late_is_opened_and_escalated_in_one_run_and_never_again(duty):
    first = run(duty, [], at(21, 9))
    assert [e.kind for e in first.events] == [DutyEventKind.HANDOVER_OPENED, DutyEventKind.HANDOVER_ESCALATED]
    assert len(first.notifications) == 1
    assert run(duty, first.events, at(21, 9, 1)).events == []


def test_confirmed_before_15_minutes_no_escalation(duty):
    opened = run(duty, [], at(21, 8, 31)).events
    confirmed = confirm(handovers(opened)[HID_21], by="li.user", person_id="li", now=at(21, 8, 40),
                        items=["inc-1", "inc-1:phone_report"])
    assert (confirmed.id, confirmed.kind, confirmed.at, confirmed.items) == (
        f"{HID_21}.confirmed", DutyEventKind.HANDOVER_CONFIRMED, at(21, 8, 40), ["inc-1", "inc-1:phone_report"])
    got = run(duty, [*opened, confirmed], at(21, 8, 45))
    assert (got.events, got.notifications) == ([], [])
    state = handovers([*opened, confirmed])[HID_21]
    assert (state.confirmed_by, state.confirmed_person_id, state.items) == ("li.user", "li", ("inc-1", "inc-1:phone_report"))


def test_a_confirmation_after_the_escalation_is_recorded_late(duty):
    out = run(duty, [], at(21, 9))
    confirmed = confirm(handovers(out.events)[HID_21], by="li.user", person_id="li", now=at(21, 9, 5))
    assert confirmed.details["late"] is True and "报带班领导" in confirmed.reason


def test_a_handover_is_confirmed_once(duty):
    opened = run(duty, [], at(21, 8, 31)).events
    first = confirm(handovers(opened)[HID_21], by="li.user", person_id="li", now=at(21, 8, 40))
    state = handovers([*opened, first, first])[HID_21]  # the event read twice: one confirmation
    with pytest.raises(HandoverRefused, match="already confirmed by li.user") as refused:
        confirm(state, by="li.user", person_id="li", now=at(21, 8, 41))
    assert refused.value.code == "already_confirmed" and isinstance(refused.value, ValueError)


REFUSALS = [
    # (case, state from events, person, code)
    ("no such handover", None, "li", "unknown"),
    ("a handover only escalated, never opened", "escalated-only", "li", "not_opened"),
    ("not the incoming 值班员", "opened", "wang", "not_incoming"),
]


@pytest.mark.parametrize(("case", "which", "person_id", "code"), REFUSALS, ids=[c[0] for c in REFUSALS])
def test_a_confirmation_is_refused(duty, case, which, person_id, code):
    out = run(duty, [], at(21, 9))
    events = {"opened": out.events[:1], "escalated-only": out.events[1:]}.get(which, [])
    state = handovers(events).get(HID_21)
    with pytest.raises(HandoverRefused) as refused:
        confirm(state, by="someone", person_id=person_id, now=at(21, 9, 5))
    assert refused.value.code == code


LOOKBACK = [
    # (case, now, lookback, opened change times)
    ("a fresh start opens no old handover", at(21, 9), timedelta(minutes=10), []),
    ("within the lookback: opened", at(21, 9), HOUR, [at(21, 8, 30)]),
    ("two changes within it: only the latest", at(22, 9), timedelta(days=3), [at(22, 8, 30)]),
    ("at the change itself", at(21, 8, 30), timedelta(0), [at(21, 8, 30)]),
]


@pytest.mark.parametrize(("case", "now", "lookback", "opened"), LOOKBACK, ids=[c[0] for c in LOOKBACK])
def test_lookback_bounds_what_is_opened(duty, case, now, lookback, opened):
    got = run(duty, [], now, lookback=lookback)
    assert [e.at for e in got.events if e.kind == DutyEventKind.HANDOVER_OPENED] == opened
    if not opened:
        assert got.reasons and "no 值班员 change" in got.reasons[0]


def test_each_unit_of_the_timer_on_its_own(duty):
    roster = good_roster(rotations=[rotation("x", "officer", ["ou", "zhao"], unit=OTHER)])
    got = due(roster, duty, [], at(21, 8, 31), units={OFFICE: "区应急办", OTHER: "区文化和旅游局"}, lookback=HOUR)
    assert sorted((e.unit_id, e.incoming_id) for e in got.events) == [(OTHER, "zhao"), (OFFICE, "li")]


def test_a_unit_with_no_带班领导_escalates_down_the_fallback_chain(duty):
    roster = Roster(people=PEOPLE, rotations=[rotation("o", "officer", ["zhang", "li"]), rotation("c", "chief", ["chief1"])])
    [notice] = run(duty, [], at(21, 9), roster=roster).notifications
    assert (notice.on_duty.person_id, notice.on_duty.source) == ("chief1", "fallback")


# --- open items ---------------------------------------------------------------------------------------

CHANGE = changes(good_roster(), OFFICE, at(21, 0), at(22, 0))[0]  # 21 Jan 08:30 – 22 Jan 08:30


def ob(key: str, due_at: datetime, owner: str = OFFICE, status: str = "open") -> ItemObligation:
    return ItemObligation(key=key, label={"phone_report": "电话报告", "written_report": "书面报告"}.get(key, key),
                          owner_id=owner, due_at=due_at, status=status)


def notice(key: str, acknowledged: bool, unit: str = OFFICE) -> ItemNotice:
    return ItemNotice(dedup_key=key, unit_id=unit, kind="routing", requested_at=at(21, 7), acknowledged=acknowledged)


OPEN_ITEMS = [
    # (case, incidents, [(kind, id)])
    ("an incident the unit leads", [OpenIncident("inc-1", "燃气事故", "三级", (OFFICE,))], [("incident", "inc-1")]),
    ("an incident another unit leads, no obligation of ours", [OpenIncident("inc-1", "燃气事故", "三级", (OTHER,))], []),
    ("an incident where the unit owns an obligation",
     [OpenIncident("inc-1", "燃气事故", "三级", (OTHER,), (ob("phone_report", at(21, 9)),))],
     [("incident", "inc-1"), ("obligation", "inc-1:phone_report")]),
    ("an obligation due inside the next shift, one due after it",
     [OpenIncident("inc-1", "燃气事故", "三级", (OFFICE,), (ob("phone_report", at(22, 8, 29)), ob("written_report", at(22, 8, 30))))],
     [("incident", "inc-1"), ("obligation", "inc-1:phone_report")]),
    ("an obligation met or another unit's: not handed over",
     [OpenIncident("inc-1", "燃气事故", "三级", (OFFICE,), (ob("phone_report", at(21, 9), status="met"),
                                                         ob("written_report", at(21, 9), owner=OTHER)))],
     [("incident", "inc-1")]),
    ("an overdue one (漏报) still owed: handed over",
     [OpenIncident("inc-1", "燃气事故", "三级", (OFFICE,), (ob("phone_report", at(21, 8), status="missed"),))],
     [("incident", "inc-1"), ("obligation", "inc-1:phone_report")]),
    ("notices: acknowledged no, unacknowledged yes, another unit's no",
     [OpenIncident("inc-1", "燃气事故", "三级", (OTHER,), notices=(notice("n-ack", True), notice("n-open", False),
                                                               notice("n-other", False, unit=OTHER)))],
     [("notice", "n-open")]),
    ("a drill is never handed over", [OpenIncident("drill-1", "燃气事故", "三级", (OFFICE,), drill=True)], []),
]


@pytest.mark.parametrize(("case", "incidents", "expected"), OPEN_ITEMS, ids=[c[0] for c in OPEN_ITEMS])
def test_open_items(case, incidents, expected):
    got = open_items(OFFICE, CHANGE, incidents)
    assert [(i.kind, i.id) for i in got] == expected
    assert all(i.text for i in got)


def test_an_overdue_item_says_so_in_chinese():
    [_, item] = open_items(OFFICE, CHANGE, [OpenIncident("inc-1", "燃气事故", "三级", (OFFICE,),
                                                          (ob("phone_report", at(21, 8), status="missed"),))])
    assert item.text == "电话报告（inc-1）已逾期，2026-01-21 08:00 到期"


# --- the duty log -----------------------------------------------------------------------------------------

def test_duty_log_orders_each_shift_across_a_boundary(duty):
    roster = good_roster()
    shifts = changes(roster, OFFICE, at(21, 0), at(23, 0))  # 21 08:30 (li), 22 08:30 (wang)
    opened = run(duty, [], at(21, 8, 31)).events
    confirmed = confirm(handovers(opened)[HID_21], by="li.user", person_id="li", now=at(21, 8, 40), items=["inc-1"])
    roster_changed = DutyEvent(id="roster.1", unit_id=OFFICE, kind=DutyEventKind.ROSTER_CHANGED, at=at(22, 8, 30),
                               recorded_at=at(22, 8, 30), reason="值班表变更", source="issue 18 item 2")
    other_unit = roster_changed.model_copy(update={"id": "roster.2", "unit_id": OTHER})
    entries = [
        IncidentEntry(at(21, 8, 35), "inc-1", "received", "接报：燃气事故"),
        IncidentEntry(at(21, 8, 45), "inc-1", "report_filed", "电话报告"),
        IncidentEntry(at(22, 8, 29), "inc-1", "breach", "书面报告超时"),
        IncidentEntry(at(22, 9), "inc-1", "escalation", "督办"),
        IncidentEntry(at(21, 8, 0), "inc-0", "received", "接报：上一班"),  # before the first change passed in
        IncidentEntry(at(21, 10), "inc-9", "received", "another unit's", unit_id=OTHER),
    ]
    logs = duty_log(OFFICE, shifts, [roster_changed, confirmed, *opened, other_unit, confirmed], entries)
    assert [(log.start, log.officer_id) for log in logs] == [(at(21, 8, 30), "li"), (at(22, 8, 30), "wang"), (None, None)]
    assert [(e.at, e.kind) for e in logs[0].entries] == [
        (at(21, 8, 30), "handover_opened"), (at(21, 8, 35), "received"), (at(21, 8, 40), "handover_confirmed"),
        (at(21, 8, 45), "report_filed"), (at(22, 8, 29), "breach")]
    assert [(e.at, e.kind) for e in logs[1].entries] == [(at(22, 8, 30), "roster_changed"), (at(22, 9), "escalation")]
    assert [e.ref for e in logs[2].entries] == ["inc-0"]

    rows = log_rows(logs, UNITS, NAMES)
    assert rows[0] == HEADER == ["班次开始", "班次结束", "值班员", "时间", "事项", "事件编号", "说明"]
    assert rows[1] == ["2026-01-21 08:30", "2026-01-22 08:30", "李娜", "2026-01-21 08:30", "交接班", HID_21,
                       "区应急办 值班员 张伟 → 李娜"]
    assert rows[3][4:] == ["交接班确认", HID_21, "区应急办 值班员 张伟 → 李娜：李娜 确认接班，交接事项 1 项"]
    assert rows[-1][:3] == ["班次外", "", ""]
    assert len(rows) == 1 + 5 + 2 + 1


def test_a_shift_with_nothing_in_it_has_one_row():
    change = changes(good_roster(), OFFICE, at(21, 0), at(22, 0))
    assert log_rows(duty_log(OFFICE, change, [], []), UNITS, NAMES)[1][3:5] == ["", "无记录"]


def test_changes_are_plain_values():
    c = changes(good_roster(), OFFICE, at(21, 0), at(22, 0))[0]
    assert isinstance(c, Change) and c.shift.ref == "rotation:officers"


def test_a_handover_older_than_the_lookback_is_not_escalated():
    """After an outage the 带班领导 on watch now is not told of a shift long gone."""
    config = load_duty()
    roster = good_roster()
    opened = due(roster, config, [], START + timedelta(days=1, minutes=5), units={OFFICE: "区应急办"},
                 lookback=timedelta(days=1)).events
    later = due(roster, config, opened, START + timedelta(days=3), units={}, lookback=timedelta(days=1))
    assert later.events == [] and later.notifications == []
    assert any("older than the lookback" in r for r in later.reasons)
