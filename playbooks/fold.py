"""An incident's events folded into what they say of it: each obligation's status, the grade and
response level, the approval, the end.

One fold for every reader of the timeline: the API's read model and the board (events from the
topics), drill scoring (events of a replay or of a live run). The lifecycle writes the same statuses
through the same table (`TRANSITIONS`), so what the worker holds and what the timeline says cannot
drift apart. Pure: events in, state out; no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple

from topics.models import EventKind, IncidentEvent

ObligationStatus = Literal["open", "met", "late", "missed", "closed"]


class Transition(NamedTuple):
    event: EventKind
    before: ObligationStatus | None  # None: the obligation was not owed before
    after: ObligationStatus
    section: str
    rule: str


_E = EventKind
# An obligation's life, one row per rule of the plan that moves it. Rows may share an event and a
# status before (two sections, one move); they agree on the status after (a test checks it).
TRANSITIONS: tuple[Transition, ...] = (
    Transition(_E.OBLIGATION_OPENED, None, "open", "4.1.3", "报告时限：接报即开始计时（电话、书面、向市应急办报告）"),
    Transition(_E.OBLIGATION_OPENED, None, "open", "4.1.5", "详细信息报告：事件发生后计时"),
    Transition(_E.OBLIGATION_OPENED, None, "open", "4.3.1", "等级调整后新增的报送义务，自续报起计时"),
    Transition(_E.OBLIGATION_OPENED, None, "open", "5.4.2", "一般事件应急结束后，牵头单位报送总结评估报告"),
    Transition(_E.OBLIGATION_OPENED, "closed", "open", "4.3.1", "降级后关闭的义务，再次升级后重新计时"),
    Transition(_E.OBLIGATION_OPENED, "missed", "open", "4.3.1", "降级停止督办的漏报，再次升级后重新计时（原漏报留在时间线上）"),
    Transition(_E.OBLIGATION_MET, "open", "met", "4.1.3", "到期前报送：按时"),
    Transition(_E.OBLIGATION_LATE, "open", "late", "5.5.2", "到期后报送，逾期尚未记录：迟报"),
    Transition(_E.OBLIGATION_LATE, "missed", "late", "5.5.2", "逾期记录后报送（含填报时间早于到期的补报）：迟报"),
    Transition(_E.BREACH, "open", "missed", "5.5.2", "到期未报：漏报，逐级督办"),
    Transition(_E.ESCALATION, "missed", "missed", "5.5.2", "逐级督办：升一级"),
    Transition(_E.OBLIGATION_CLOSED, "open", "closed", "4.3.1", "等级调整后不再需要"),
    Transition(_E.OBLIGATION_CLOSED, "open", "closed", "4.8.2", "应急结束：不再需要"),
    Transition(_E.OBLIGATION_CLOSED, "missed", "missed", "4.3.1", "降级后不再需要：漏报记录保留，停止督办"),
    Transition(_E.OBLIGATION_CLOSED, "missed", "missed", "4.8.2", "应急结束：漏报记录保留，停止督办"),
    Transition(_E.OBLIGATION_OPENED, "met", "open", "4.1.5", "及时续报：每次续报后，按响应级别的间隔再次计时"),
    Transition(_E.OBLIGATION_OPENED, "late", "open", "4.1.5", "及时续报：迟报的续报之后，同样再次计时"),
)
del _E

_NEXT: dict[tuple[EventKind, ObligationStatus | None], ObligationStatus] = {
    (t.event, t.before): t.after for t in TRANSITIONS
}


def next_status(before: ObligationStatus | None, event: EventKind) -> ObligationStatus | None:
    """The status an event moves an obligation to; None if no row of the table moves it."""
    return _NEXT.get((event, before))


@dataclass
class ObligationFold:
    """One obligation as its events tell it, from its latest opening."""

    kind: str
    label: str  # as its opening names it (the text before "：")
    status: ObligationStatus
    due_at: datetime | None
    owner: str | None
    section: str | None
    opened: int = 1
    filed_at: datetime | None = None  # when the filing counted: a backdated one, when it came in (5.5.2)
    minutes_late: float | None = None
    escalation_step: int | None = None  # highest step of the chase reached
    closed: bool = False  # no longer owed: a 漏报 closed stays missed, its chase stopped

    def as_json(self) -> dict:
        out = {"kind": self.kind, "status": self.status,
               "due_at": self.due_at.isoformat() if self.due_at else None, "owner": self.owner, "section": self.section}
        if self.minutes_late is not None:
            out["minutes_late"] = self.minutes_late
        if self.escalation_step is not None:
            out["escalation_step"] = self.escalation_step
        return out


@dataclass
class IncidentFold:
    """What an incident's timeline says of it so far."""

    grade: str | None = None
    level: str | None = None
    regraded_to: list[str] = field(default_factory=list)
    level_adjusted_to: list[str] = field(default_factory=list)
    obligations: dict[str, ObligationFold] = field(default_factory=dict)
    approval_requested_at: datetime | None = None
    approved_at: datetime | None = None
    approver: str | None = None
    ended_at: datetime | None = None
    end_authority: str | None = None

    @property
    def approved(self) -> bool:
        return self.approved_at is not None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def apply(self, e: IncidentEvent) -> None:
        """One more event, in the incident's order."""
        d = e.details
        match e.kind:
            case EventKind.DECIDED:
                self.grade, self.level = _text(d.get("grade")), _text(d.get("level"))
            case EventKind.REGRADED:
                self.grade = str(d["to_grade"])
                self.regraded_to.append(self.grade)
            case EventKind.LEVEL_ADJUSTED:
                self.level = str(d["to_level"])
                self.level_adjusted_to.append(self.level)
            case EventKind.APPROVAL_REQUESTED if self.approval_requested_at is None:
                self.approval_requested_at = e.at
            case EventKind.APPROVED if self.approved_at is None:
                self.approved_at, self.approver = e.at, _text(d.get("approver"))
            case EventKind.ENDED if self.ended_at is None:
                self.ended_at, self.end_authority = e.at, _text(d.get("authority"))
        if e.obligation is not None:
            self._obligation(e)

    def _obligation(self, e: IncidentEvent) -> None:
        # A move the table lacks cannot come from the lifecycle, which takes every status from it:
        # such an event leaves its obligation as it was.
        kind = e.obligation
        assert kind is not None
        ob = self.obligations.get(kind)
        after = next_status(ob.status if ob else None, e.kind)
        if after is None:
            return
        if e.kind is EventKind.OBLIGATION_OPENED:
            due = e.details.get("due_at")
            self.obligations[kind] = ObligationFold(
                kind=kind, label=e.reason.split("：")[0], status=after, due_at=datetime.fromisoformat(str(due)) if due else None,
                owner=_text(e.details.get("owner")), section=e.section, opened=ob.opened + 1 if ob else 1)
            return
        assert ob is not None  # only an opening moves from "not owed"
        ob.status = after
        if e.kind in (EventKind.OBLIGATION_MET, EventKind.OBLIGATION_LATE):
            ob.filed_at = e.at
        if e.kind is EventKind.OBLIGATION_LATE:
            ob.minutes_late = _number(e.details.get("minutes_late"))
        elif e.kind is EventKind.ESCALATION:
            ob.escalation_step = max(ob.escalation_step or 0, int(e.details.get("step") or 0))
        elif e.kind is EventKind.OBLIGATION_CLOSED:
            ob.closed = True


def fold(events: Iterable[IncidentEvent]) -> IncidentFold:
    """An incident's events, in its own order (seq), folded into its state."""
    state = IncidentFold()
    for e in sorted(events, key=lambda e: e.seq):
        state.apply(e)
    return state


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _number(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
