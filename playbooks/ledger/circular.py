"""The draft 通报 of a ledger (5.5.1: 通报批评并责成其限期整改) and the 限期整改 it makes each unit owe.

Pure: a ledger, the config and the time of issue in, the draft out; the records of issued circulars and
of units' rectification reports in, each unit's 整改 status out — with the statuses and moves of
playbooks.fold's table, as any obligation's (open → met, or missed → late); and the timer's decision
(`chase`): the same records and `now` in, the steps to record and the notices to send out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from pydantic import Field

from playbooks.fold import ObligationStatus, next_status
from playbooks.ledger.config import LedgerFile
from playbooks.ledger.rules import Ledger, LedgerModel
from topics.delivery import fit_id
from topics.ledger import (CircularBody, CircularIssued, RectificationOverdue, RectificationOwed, RectificationReminded,
                           RectificationReported, rectification_step_id)
from topics.models import EventKind, NotificationRequested

SHANGHAI = ZoneInfo("Asia/Shanghai")
MAX_TERM = timedelta(days=366)


class UnitNames(Protocol):
    def unit_name(self, unit_id: str) -> str: ...


class CircularBreach(LedgerModel):
    incident_id: str
    type_name: str
    obligation: str
    label: str
    outcome_label: str = Field(description="迟报, 漏报 or 内容不全")
    due_at: datetime
    filed_at: datetime | None
    minutes_late: float | None
    items_missing: list[str]


class CircularUnit(LedgerModel):
    unit_id: str | None
    unit: str
    counts: dict[str, int] = Field(description="by the outcome's label: 迟报, 漏报, 内容不全")
    breaches: list[CircularBreach]
    rectify_by: datetime = Field(description="限期整改: the 整改 is owed by then (ledger.yaml, our choice)")
    remind_at: datetime


class CircularDraft(LedgerModel):
    title: str
    issuer_id: str
    issuer: str
    issued_at: datetime
    period_from: datetime
    period_to: datetime
    opening: str
    closing: str
    units: list[CircularUnit] = Field(description="the units with breaches, most first")
    flags_for_review: int = Field(description="疑似瞒报 flags in the period: for review, not in the 通报's findings")
    rectification_section: str
    rectification_note: str


def draft_circular(book: Ledger, config: LedgerFile, names: UnitNames, *, issued_at: datetime,
                   rectify_by: datetime | None = None) -> CircularDraft:
    """The units of the ledger with a breach, each with its breaches and its 限期整改 deadline: ledger.yaml's
    term, or `rectify_by` when the 通报 sets its own. The reminder comes remind_before_days before the
    deadline, or half-way through a term shorter than twice that (our choice, ledger.yaml's note)."""
    if rectify_by is not None and not issued_at < rectify_by <= issued_at + MAX_TERM:
        raise ValueError(f"rectify_by: must be after the time of issue and within {MAX_TERM.days} days of it")
    term = rectify_by - issued_at if rectify_by is not None else timedelta(days=config.rectification.due_after_days)
    warn = min(timedelta(days=config.rectification.remind_before_days), term / 2)
    units = []
    for line in book.units:
        mine = [r for r in book.rows if r.unit == line.unit and r.breach]
        if not mine:
            continue
        counts: dict[str, int] = {}
        for r in mine:
            counts[r.outcome_label] = counts.get(r.outcome_label, 0) + 1
        units.append(CircularUnit(
            unit_id=line.unit_id, unit=line.unit, counts=counts, rectify_by=issued_at + term,
            remind_at=issued_at + term - warn,
            breaches=[CircularBreach(incident_id=r.incident_id, type_name=r.type_name, obligation=r.obligation,
                                     label=r.label, outcome_label=r.outcome_label, due_at=r.due_at, filed_at=r.filed_at,
                                     minutes_late=r.minutes_late, items_missing=r.items_missing) for r in mine]))
    units.sort(key=lambda u: (-len(u.breaches), u.unit))
    c = config.circular
    return CircularDraft(title=c.title, issuer_id=c.issuer, issuer=names.unit_name(c.issuer), issued_at=issued_at,
                         period_from=book.period_from, period_to=book.period_to, opening=c.opening, closing=c.closing,
                         units=units, flags_for_review=len(book.flags),
                         rectification_section=config.rectification.section,
                         rectification_note=config.rectification.note)


def circular_record(draft: CircularDraft, *, circular_id: str, issued_by: str) -> CircularIssued:
    """The draft issued: the record that makes each unit's 限期整改 an obligation of its own (5.5.1)."""
    if not draft.units:
        raise ValueError("units: no unit has a breach in the period: there is nothing to 通报")
    missing = [u.unit for u in draft.units if u.unit_id is None]
    if missing:
        raise ValueError(f"units: not units of the plan: {missing}")
    return CircularIssued(
        id=circular_id, period_from=draft.period_from, period_to=draft.period_to, issued_at=draft.issued_at,
        issued_by=issued_by, issuer_unit_id=draft.issuer_id,
        units=[RectificationOwed(unit_id=u.unit_id, unit=u.unit, breaches=len(u.breaches), due_at=u.rectify_by,
                                 remind_at=u.remind_at) for u in draft.units if u.unit_id is not None])


class RectificationStatus(LedgerModel):
    circular_id: str
    unit_id: str
    unit: str
    breaches: int
    issued_at: datetime
    due_at: datetime
    remind_at: datetime
    status: str = Field(description="open, met, late or missed: an obligation's statuses (playbooks.fold)")
    reported_at: datetime | None
    minutes_late: float | None
    reminded_at: datetime | None = Field(default=None, description="when the worker reminded the unit (整改提醒), if it did")
    escalated_at: datetime | None = Field(default=None, description="when the worker sent the 督办 of the missed deadline, "
                                                                    "if it did")
    section: str


@dataclass
class _Folded:
    circulars: dict[str, CircularIssued] = field(default_factory=dict)
    reports: dict[tuple[str, str], datetime] = field(default_factory=dict)  # (circular, unit) -> first report
    steps: dict[str, RectificationReminded | RectificationOverdue] = field(default_factory=dict)  # by id


def _name(names: UnitNames, unit_id: str) -> str:
    """The unit's name as the plan in force writes it; its id when a revision adopted since removed it (a
    circular issued before still names it: its 限期整改 is chased all the same)."""
    try:
        return names.unit_name(unit_id)
    except KeyError:
        return unit_id


def _fold(records: Iterable[CircularBody], now: datetime) -> _Folded:
    """The records as of `now`: a report or a step recorded for a later time is not yet in."""
    out = _Folded()
    for rec in records:
        if isinstance(rec, CircularIssued):
            out.circulars.setdefault(rec.id, rec)
        elif isinstance(rec, RectificationReported):
            if rec.reported_at <= now:
                key = (rec.circular_id, rec.unit_id)
                out.reports[key] = min(out.reports.get(key, rec.reported_at), rec.reported_at)  # the first report counts
        elif rec.recorded_at <= now:
            out.steps.setdefault(rec.id, rec)
    return out


def rectifications(records: Iterable[CircularBody], *, now: datetime) -> list[RectificationStatus]:
    """Each unit's 限期整改 of each circular at `now`: opened by the circular, met by the unit's first
    report on time, missed at its due time without one, late when it comes after — the moves of
    playbooks.fold.TRANSITIONS — with the timer's reminder and 督办, when taken. A report for a circular
    or unit not (yet) known is left aside."""
    folded = _fold(records, now)
    circulars, reports = folded.circulars, folded.reports
    out = []
    for c in sorted(circulars.values(), key=lambda c: c.issued_at):
        for owed in c.units:
            status: ObligationStatus | None = next_status(None, EventKind.OBLIGATION_OPENED)
            reported = reports.get((c.id, owed.unit_id))
            reported = reported if reported is not None and reported <= now else None
            late = None
            if reported is not None and reported <= owed.due_at:
                status = next_status(status, EventKind.OBLIGATION_MET)
            elif reported is not None or owed.due_at <= now:
                status = next_status(status, EventKind.BREACH)  # due, nothing reported: missed
                if reported is not None:  # then reported after all: late, by how much
                    status = next_status(status, EventKind.OBLIGATION_LATE)
                    late = round((reported - owed.due_at).total_seconds() / 60, 1)
            assert status is not None
            reminded = folded.steps.get(rectification_step_id(c.id, owed.unit_id, "remind"))
            escalated = folded.steps.get(rectification_step_id(c.id, owed.unit_id, "overdue"))
            out.append(RectificationStatus(
                circular_id=c.id, unit_id=owed.unit_id, unit=owed.unit, breaches=owed.breaches, issued_at=c.issued_at,
                due_at=owed.due_at, remind_at=owed.remind_at, status=status,
                reported_at=reported if reported is not None and reported <= now else None, minutes_late=late,
                reminded_at=reminded.recorded_at if reminded else None,
                escalated_at=escalated.recorded_at if escalated else None, section=c.section))
    return out


# --- the timer's chase of a 限期整改 not reported (5.5.1) -------------------------------------------------

TIMER = "ledger-timer"
REMIND_RULE = "rectification_remind"
OVERDUE_RULE = "rectification_overdue"
NOTICE_KIND = "rectification"


@dataclass(frozen=True)
class Chased:
    """What the timer records (yingji.ledger.circulars) and sends (notifications.requested) at `now`;
    `reasons` says, per unit owing, why nothing was done where nothing was."""

    records: list[RectificationReminded | RectificationOverdue] = field(default_factory=list)
    notifications: list[NotificationRequested] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def _local(t: datetime) -> str:
    return t.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _notice(key: str, c: CircularIssued, *, unit_id: str, unit: str, role: str, why: str, rule: str, section: str,
            at: datetime) -> NotificationRequested:
    return NotificationRequested(id=key, dedup_key=key, incident_id=c.id, drill=False, unit_id=unit_id, unit=unit,
                                 role=role, kind=NOTICE_KIND, why=why, rule=rule, section=section, requested_at=at)


def chase(records: Iterable[CircularBody], config: LedgerFile, names: UnitNames, *, now: datetime) -> Chased:
    """Each unit named in a 通报 that has reported no 整改 by `now` (5.5.1 限期整改):

    - rectification_remind: at or after its remind_at and before its due_at, not yet reminded: a
      reminder to the unit (ledger.yaml chase.remind.role);
    - rectification_overdue: at or after its due_at, no 督办 yet: 督办 to the unit (chase.overdue.role)
      and to the issuing unit of the 通报 (chase.overdue.issuer_role). A reminder not sent by then is
      not sent at all (the 督办 says more).

    Each step is a record whose id is the circular, the unit and the step, with its notices' keys; the
    notices' requested_at is the rule's own time (remind_at, due_at). Fed back in, the records make
    the next call emit nothing new. A unit that has reported (on time or not) is not chased."""
    folded = _fold(records, now)
    out = Chased()
    remind, overdue = config.chase.remind, config.chase.overdue
    for c in sorted(folded.circulars.values(), key=lambda c: (c.issued_at, c.id)):
        issuer = _name(names, c.issuer_unit_id)
        for owed in c.units:
            who = f"{c.id} {owed.unit_id}"
            reported = folded.reports.get((c.id, owed.unit_id))
            if reported is not None:
                out.reasons.append(f"{who}: 整改 reported at {_local(reported)}: nothing to chase")
                continue
            overdue_id = rectification_step_id(c.id, owed.unit_id, "overdue")
            remind_id = rectification_step_id(c.id, owed.unit_id, "remind")
            if overdue_id in folded.steps:
                out.reasons.append(f"{who}: {OVERDUE_RULE}: 督办 already sent")
                continue
            if now >= owed.due_at:
                if remind_id not in folded.steps:
                    out.reasons.append(f"{who}: {REMIND_RULE}: not reminded before the due time: the 督办 goes instead")
                why = (f"{overdue.label}：{owed.unit}被通报（{c.id}，{_local(c.issued_at)}印发）须于{_local(owed.due_at)}前"
                       f"报送整改情况，期限已过仍未报送（{overdue.section} 限期整改）")
                notes = [
                    _notice(fit_id(f"{overdue_id}.unit"), c, unit_id=owed.unit_id, unit=owed.unit, role=overdue.role,
                            why=f"{why}，请{overdue.role}督促报送", rule=OVERDUE_RULE, section=overdue.section,
                            at=owed.due_at),
                    _notice(fit_id(f"{overdue_id}.issuer"), c, unit_id=c.issuer_unit_id, unit=issuer,
                            role=overdue.issuer_role, why=f"{why}，请{issuer}跟踪督办", rule=OVERDUE_RULE,
                            section=overdue.section, at=owed.due_at)]
                out.records.append(RectificationOverdue(
                    id=overdue_id, circular_id=c.id, unit_id=owed.unit_id, at=owed.due_at, recorded_at=now, by=TIMER,
                    rule=OVERDUE_RULE, section=overdue.section, reason=why, notices=[n.dedup_key for n in notes]))
                out.notifications.extend(notes)
                continue
            if remind_id in folded.steps:
                out.reasons.append(f"{who}: {REMIND_RULE}: already reminded; 督办 at {_local(owed.due_at)}")
                continue
            if now < owed.remind_at:
                out.reasons.append(f"{who}: {REMIND_RULE}: not yet: reminder at {_local(owed.remind_at)}")
                continue
            why = (f"{remind.label}：{owed.unit}被通报（{c.id}，{_local(c.issued_at)}印发）须于{_local(owed.due_at)}前"
                   f"报送整改情况，尚未报送（{remind.section} 限期整改）")
            note = _notice(fit_id(f"{remind_id}.unit"), c, unit_id=owed.unit_id, unit=owed.unit, role=remind.role,
                           why=why, rule=REMIND_RULE, section=remind.section, at=owed.remind_at)
            out.records.append(RectificationReminded(
                id=remind_id, circular_id=c.id, unit_id=owed.unit_id, at=owed.remind_at, recorded_at=now, by=TIMER,
                rule=REMIND_RULE, section=remind.section, reason=why, notices=[note.dedup_key]))
            out.notifications.append(note)
    return out
