"""交接班 (issue 18 item 5), pure: the shift changes of a unit's 值班员, what the incoming one takes
over, and the timer's decision (open a handover, escalate one left unconfirmed).

At each change of the person on a unit's 值班员 post a handover is opened; the incoming 值班员 confirms
it (page button, API: `confirm`); one still unconfirmed duty.yaml's `handover_confirm_minutes` after
the change goes to the unit's 带班领导 (a DutyEvent HANDOVER_ESCALATED and a NotificationRequested of
kind "handover"). Each handover's id is its unit and change time, so every event of it happens once:
the timer may run twice, or after a restart, and acts once (its own output, fed back in, says so).

Pure: the roster, the duty log's events, the open incidents and `now` are passed in. People are named
by id in everything that goes on a topic (their names are sealed there); `log.log_rows` names them.
A drill never has handovers: rosters are live, so nothing here is marked drill.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Literal

from playbooks.duty.config import DutyFile
from playbooks.duty.roster import SHANGHAI, on_duty, shifts
from topics.duty import POST_NAMES, DutyEvent, DutyEventKind, Post, Roster, Shift
from topics.models import NotificationRequested, OnDutyRef

ITEM_SOURCE = "issue 18 item 5"
ESCALATION_RULE = "handover_unconfirmed"
ESCALATION_ROLE = "带班领导"
TIMER = "duty-timer"
_TICK = timedelta(microseconds=1)
# How far past a window the end of its last shift is looked for, doubling up to a year: an officer
# shift is a day long as a rule, an override may be weeks.
_LOOKAHEAD = timedelta(days=2)
_LOOKAHEAD_MAX = timedelta(days=366)


def hhmm(t: datetime) -> str:
    """A time as people read it: Asia/Shanghai, YYYY-MM-DD HH:MM."""
    return t.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def handover_id(unit_id: str, at: datetime) -> str:
    """The handover of a unit's shift change at `at`: the same id however often it is computed."""
    return f"handover.{unit_id}.{at.astimezone(timezone.utc).strftime('%Y%m%dT%H%MZ')}"


# --- shift changes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """The person on a unit's 值班员 post changes at `at`: `outgoing_id` (None: nobody before) hands
    over to `incoming_id` until `end`, the next change or the moment nobody stands the post (None:
    no end found within a year). `shift` is the incoming shift as the roster has it (source, ref)."""

    unit_id: str
    at: datetime
    end: datetime | None
    outgoing_id: str | None
    incoming_id: str
    handover_id: str
    shift: Shift


def _officers(roster: Roster, unit_id: str, start: datetime, end: datetime) -> list[Shift]:
    # only the unit's 值班员 rotations, shifts, overrides and swaps are expanded (a tick asks of every
    # unit; expanding the whole roster for each walked every unit's rotations once per unit)
    def mine(items):
        return [x for x in items if x.unit_id == unit_id and x.post == Post.officer]
    part = Roster(rotations=mine(roster.rotations), shifts=mine(roster.shifts), overrides=mine(roster.overrides),
                  swaps=mine(roster.swaps))
    return shifts(part, start, end)


def _officer_at(mine: Sequence[Shift], t: datetime) -> Shift | None:
    """The 值班员 shift in force at t: the first in `shifts`' order, as `on_duty` answers (earliest
    start, then override over swap over plan). Several 值班员 on one shift: the first stands for them."""
    return next((s for s in mine if s.start <= t < s.end), None)


def _run_end(roster: Roster, unit_id: str, at: datetime, person_id: str, mine: Sequence[Shift],
             known_until: datetime) -> datetime | None:
    """When `person_id` stops standing the unit's 值班员 post after `at`: the first boundary where the
    post passes to another person or to nobody, looked for further out until found (or a year)."""
    horizon = known_until
    while True:
        for b in sorted({x for s in mine for x in (s.start, s.end) if at < x < horizon}):
            s = _officer_at(mine, b)
            if s is None or s.person_id != person_id:
                return b
        if horizon - at >= _LOOKAHEAD_MAX:
            return None
        horizon = at + min(2 * max(horizon - at, _LOOKAHEAD), _LOOKAHEAD_MAX)
        mine = _officers(roster, unit_id, at, horizon)


def changes(roster: Roster, unit_id: str, start: datetime, end: datetime) -> list[Change]:
    """The changes of the person on the unit's 值班员 post in [start, end), in time order.

    A change is an officer shift in force starting at t whose person differs from the one in force
    just before t, or with nobody before (an override's end hands the post back: a change too)."""
    known_until = end + _LOOKAHEAD
    mine = _officers(roster, unit_id, start - _TICK, known_until)
    out: list[Change] = []
    for t in sorted({s.start for s in mine if start <= s.start < end}):
        incoming = _officer_at(mine, t)
        before = _officer_at(mine, t - _TICK)
        if incoming is None or (before is not None and before.person_id == incoming.person_id):
            continue
        out.append(Change(unit_id=unit_id, at=t, end=_run_end(roster, unit_id, t, incoming.person_id, mine, known_until),
                          outgoing_id=before.person_id if before else None, incoming_id=incoming.person_id,
                          handover_id=handover_id(unit_id, t), shift=incoming))
    return out


# --- the handovers as the duty log tells them -------------------------------------------------


@dataclass(frozen=True)
class HandoverState:
    """One handover folded from its DutyEvents: opened, confirmed, escalated, each once (the first)."""

    handover_id: str
    unit_id: str
    at: datetime | None = None  # the shift change
    outgoing_id: str | None = None
    incoming_id: str | None = None
    opened_at: datetime | None = None  # recorded_at of the opening
    confirmed_at: datetime | None = None
    confirmed_by: str | None = None  # the signed-in user
    confirmed_person_id: str | None = None
    items: tuple[str, ...] = ()  # as confirmed
    escalated_at: datetime | None = None  # the escalation's own time: change + handover_confirm_minutes
    events: tuple[str, ...] = ()  # ids of the events folded in

    @property
    def opened(self) -> bool:
        return self.opened_at is not None

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None

    @property
    def escalated(self) -> bool:
        return self.escalated_at is not None


_HANDOVER_KINDS = (DutyEventKind.HANDOVER_OPENED, DutyEventKind.HANDOVER_CONFIRMED, DutyEventKind.HANDOVER_ESCALATED)


def _apply(state: HandoverState, e: DutyEvent) -> HandoverState:
    if e.id in state.events:
        return state
    state = replace(state, events=(*state.events, e.id))
    if e.kind == DutyEventKind.HANDOVER_OPENED and not state.opened:
        return replace(state, at=e.at, outgoing_id=e.outgoing_id, incoming_id=e.incoming_id, opened_at=e.recorded_at)
    if e.kind == DutyEventKind.HANDOVER_CONFIRMED and not state.confirmed:
        person = e.details.get("person_id")
        return replace(state, confirmed_at=e.at, confirmed_by=e.by, items=tuple(e.items),
                       confirmed_person_id=person if isinstance(person, str) else None)
    if e.kind == DutyEventKind.HANDOVER_ESCALATED and not state.escalated:
        return replace(state, escalated_at=e.at)
    return state


def handovers(events: Iterable[DutyEvent]) -> dict[str, HandoverState]:
    """Every handover the events tell of, by handover_id; a duplicate event changes nothing."""
    out: dict[str, HandoverState] = {}
    for e in events:
        if e.kind not in _HANDOVER_KINDS or e.handover_id is None:
            continue
        state = out.get(e.handover_id) or HandoverState(handover_id=e.handover_id, unit_id=e.unit_id)
        out[e.handover_id] = _apply(state, e)
    return out


# --- the timer's decision ---------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """What the timer emits: DutyEvents for the duty log, notices for the 带班领导; `reasons` says what
    was looked at and left alone (a change older than the lookback, one already opened)."""

    events: list[DutyEvent] = field(default_factory=list)
    notifications: list[NotificationRequested] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def _person(pid: str | None) -> str:
    return pid or "（无人）"


def opening(change: Change, unit_name: str, now: datetime) -> DutyEvent:
    """The DutyEvent that opens a change's handover (at: the change; recorded_at: now)."""
    return DutyEvent(
        id=f"{change.handover_id}.opened", unit_id=change.unit_id, kind=DutyEventKind.HANDOVER_OPENED,
        at=change.at, recorded_at=now, by=TIMER, handover_id=change.handover_id,
        outgoing_id=change.outgoing_id, incoming_id=change.incoming_id, source=ITEM_SOURCE,
        reason=(f"交接班：{unit_name} {POST_NAMES[Post.officer]} {_person(change.outgoing_id)} → {change.incoming_id}"
                f"（{hhmm(change.at)} 交班，接班依据 {change.shift.ref}）"),
        details={"shift_end": change.end.astimezone(timezone.utc).isoformat() if change.end else None,
                 "shift_ref": change.shift.ref},
    )


def _escalation(state: HandoverState, roster: Roster, config: DutyFile, unit_name: str,
                now: datetime) -> tuple[DutyEvent, NotificationRequested]:
    assert state.at is not None
    minutes = config.handover_confirm_minutes.value
    due_at = state.at + timedelta(minutes=minutes)
    key = f"{state.handover_id}.escalated"
    source = f"duty.yaml handover_confirm_minutes ({ITEM_SOURCE})"
    why = (f"交接班未确认：{unit_name} {hhmm(state.at)} 交接班（{POST_NAMES[Post.officer]} {_person(state.outgoing_id)} → "
           f"{_person(state.incoming_id)}），交班后 {minutes} 分钟（{hhmm(due_at)}）仍未确认，报{ESCALATION_ROLE}")
    unit_id, post = config.post_for(ESCALATION_ROLE, state.unit_id)
    answer = on_duty(roster, config, unit_id, post, due_at)
    ref = OnDutyRef(unit_id=answer.shift.unit_id if answer.shift else unit_id, post=answer.shift.post if answer.shift else post,
                    person_id=answer.person.id if answer.person else None, source=answer.source, at=due_at,
                    reasons=answer.reasons)
    event = DutyEvent(
        id=key, unit_id=state.unit_id, kind=DutyEventKind.HANDOVER_ESCALATED, at=due_at, recorded_at=now, by=TIMER,
        handover_id=state.handover_id, outgoing_id=state.outgoing_id, incoming_id=state.incoming_id,
        source=source, reason=why, details={"minutes": minutes, "leader_id": ref.person_id, "leader_source": ref.source},
    )
    notice = NotificationRequested(
        id=key, dedup_key=key, incident_id=state.handover_id, drill=False, unit_id=state.unit_id, unit=unit_name,
        role=ESCALATION_ROLE, kind="handover", why=why, rule=ESCALATION_RULE, section=source,
        requested_at=due_at, on_duty=ref,
    )
    return event, notice


def due(roster: Roster, config: DutyFile, events: Iterable[DutyEvent], now: datetime, *,
        units: Mapping[str, str], lookback: timedelta) -> Due:
    """What the timer does at `now`.

    For each unit of `units` (id -> Chinese name): its latest shift change at or before `now`, and
    no older than `now - lookback` (a fresh start opens no year of handovers), opened if not yet
    opened. Then each opened handover neither confirmed nor escalated whose change is
    handover_confirm_minutes or more before `now` is escalated to the unit's 带班领导 on duty at that
    moment (change + minutes: the rule's own time, which is also the notice's requested_at).
    Feeding the output back in as events makes the next call emit nothing new."""
    events = list(events)
    state = handovers(events)
    out = Due()
    for unit_id, name in sorted(units.items()):
        recent = changes(roster, unit_id, now - lookback, now + _TICK)
        if not recent:
            out.reasons.append(f"{name}: no 值班员 change in {hhmm(now - lookback)}–{hhmm(now)}")
            continue
        change = recent[-1]
        if change.handover_id in state and state[change.handover_id].opened:
            out.reasons.append(f"{name}: {change.handover_id} already opened")
            continue
        opened = opening(change, name, now)
        out.events.append(opened)
        state[change.handover_id] = _apply(HandoverState(handover_id=change.handover_id, unit_id=unit_id), opened)
    minutes = timedelta(minutes=config.handover_confirm_minutes.value)
    for hid, st in sorted(state.items()):
        if not st.opened or st.confirmed or st.escalated or st.at is None:
            continue
        if now < st.at + minutes:
            continue
        if st.at < now - lookback:
            # older than the lookback (after an outage): the 带班领导 on watch now is not told of a
            # shift long gone; it stays unconfirmed on the log and in the metrics
            out.reasons.append(f"{hid}: unconfirmed, older than the lookback: not escalated")
            continue
        event, notice = _escalation(st, roster, config, units.get(st.unit_id, st.unit_id), now)
        out.events.append(event)
        out.notifications.append(notice)
    return out


# --- confirming ---------------------------------------------------------------------------------


RefusalCode = Literal["unknown", "not_opened", "already_confirmed", "not_incoming"]


class HandoverRefused(ValueError):
    """A confirmation refused; `code` lets the shell answer (404 unknown/not_opened, 409 already
    confirmed, 403 not the incoming 值班员)."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def confirm(state: HandoverState | None, *, by: str, person_id: str, now: datetime,
            items: Sequence[str] = ()) -> DutyEvent:
    """The incoming 值班员 confirms the handover (`by`: the signed-in user; `person_id`: who they are
    in the directory; `items`: the incident ids and obligation/notice ids taken over).

    Refuses (HandoverRefused, a ValueError) a handover not known or not opened, one already
    confirmed (effect once: the event id is `{handover_id}.confirmed` either way), and a confirmation
    by anyone but the incoming 值班员. A confirmation after the escalation is recorded, marked late."""
    if state is None:
        raise HandoverRefused("unknown", "no such handover")
    if not state.opened or state.at is None:
        raise HandoverRefused("not_opened", f"{state.handover_id}: not opened yet")
    if state.confirmed:
        assert state.confirmed_at is not None
        raise HandoverRefused("already_confirmed", f"{state.handover_id}: already confirmed by {state.confirmed_by} "
                                                   f"at {hhmm(state.confirmed_at)}")
    if state.incoming_id is not None and person_id != state.incoming_id:
        raise HandoverRefused("not_incoming", f"{state.handover_id}: {person_id} is not the incoming "
                                              f"{POST_NAMES[Post.officer]} ({state.incoming_id})")
    late = f"，已于 {hhmm(state.escalated_at)} 报{ESCALATION_ROLE}" if state.escalated_at else ""
    return DutyEvent(
        id=f"{state.handover_id}.confirmed", unit_id=state.unit_id, kind=DutyEventKind.HANDOVER_CONFIRMED,
        at=now, recorded_at=now, by=by, handover_id=state.handover_id, outgoing_id=state.outgoing_id,
        incoming_id=state.incoming_id, items=list(items), source=ITEM_SOURCE,
        reason=(f"交接班确认：{POST_NAMES[Post.officer]} {person_id} 于 {hhmm(now)} 接班确认"
                f"（{hhmm(state.at)} 交班，交接事项 {len(items)} 项{late}）"),
        details={"person_id": person_id, "late": state.escalated_at is not None},
    )


# --- what is handed over ------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemObligation:
    """An obligation of an open incident as the read model has it (status as playbooks.fold names it)."""

    key: str
    label: str
    owner_id: str
    due_at: datetime
    status: str  # open | met | late | missed | closed


@dataclass(frozen=True)
class ItemNotice:
    dedup_key: str
    unit_id: str
    kind: str
    requested_at: datetime
    acknowledged: bool


@dataclass(frozen=True)
class OpenIncident:
    """An incident not yet ended, in plain facts the shell adapts its read model into."""

    incident_id: str
    type_name: str
    level: str  # 响应级别 一级/二级/三级
    lead_unit_ids: tuple[str, ...] = ()
    obligations: tuple[ItemObligation, ...] = ()
    notices: tuple[ItemNotice, ...] = ()
    drill: bool = False


ItemKind = Literal["incident", "obligation", "notice"]
_ITEM_ORDER = {"incident": 0, "obligation": 1, "notice": 2}
# An obligation still to be filed: open, or missed (漏报: overdue, still owed and escalating).
OWED = ("open", "missed")


@dataclass(frozen=True)
class Item:
    """One thing the incoming 值班员 takes over; `id` is what a confirmation lists (incident id,
    `{incident_id}:{obligation key}`, a notice's dedup_key)."""

    kind: ItemKind
    id: str
    incident_id: str
    text: str
    due_at: datetime | None = None


def open_items(unit_id: str, change: Change, incidents: Sequence[OpenIncident]) -> list[Item]:
    """What the unit's outgoing 值班员 hands over at `change` (issue 18 item 5):
    - every open incident of the unit: it leads it, or owns one of its obligations;
    - each obligation the unit owns still owed and due before the incoming shift ends (those due in
      [change.at, change.end), and those already overdue); one due after the shift is not listed;
    - each notice to the unit not yet acknowledged.
    Drill incidents are not handed over. Incidents, then obligations by due time, then notices."""
    out: list[Item] = []
    for inc in incidents:
        if inc.drill:
            continue
        mine = [o for o in inc.obligations if o.owner_id == unit_id]
        if unit_id in inc.lead_unit_ids or mine:
            role = "牵头" if unit_id in inc.lead_unit_ids else "承担报送"
            out.append(Item("incident", inc.incident_id, inc.incident_id,
                            f"未结事件 {inc.incident_id}：{inc.type_name}，{inc.level}响应（本单位{role}）"))
        for o in mine:
            if o.status not in OWED or (change.end is not None and o.due_at >= change.end):
                continue
            overdue = o.status == "missed" or o.due_at < change.at
            text = (f"{o.label}（{inc.incident_id}）{'已逾期，' if overdue else ''}{hhmm(o.due_at)} 到期")
            out.append(Item("obligation", f"{inc.incident_id}:{o.key}", inc.incident_id, text, o.due_at))
        for n in inc.notices:
            if n.unit_id != unit_id or n.acknowledged or (change.end is not None and n.requested_at >= change.end):
                continue
            out.append(Item("notice", n.dedup_key, inc.incident_id,
                            f"未确认通知 {n.dedup_key}（{inc.incident_id}，{n.kind}，{hhmm(n.requested_at)} 发出）",
                            n.requested_at))
    return sorted(out, key=lambda i: (_ITEM_ORDER[i.kind], i.due_at or change.at, i.id))
