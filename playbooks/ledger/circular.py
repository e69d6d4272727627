"""The draft 通报 of a ledger (5.5.1: 通报批评并责成其限期整改) and the 限期整改 it makes each unit owe.

Pure: a ledger, the config and the time of issue in, the draft out; the records of issued circulars and
of units' rectification reports in, each unit's 整改 status out — with the statuses and moves of
playbooks.fold's table, as any obligation's (open → met, or missed → late).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import Field

from playbooks.fold import ObligationStatus, next_status
from playbooks.ledger.config import LedgerFile
from playbooks.ledger.rules import Ledger, LedgerModel
from topics.ledger import CircularIssued, RectificationOwed, RectificationReported
from topics.models import EventKind


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


def draft_circular(book: Ledger, config: LedgerFile, names: UnitNames, *, issued_at: datetime) -> CircularDraft:
    """The units of the ledger with a breach, each with its breaches and its 限期整改 deadline."""
    term = timedelta(days=config.rectification.due_after_days)
    warn = timedelta(days=config.rectification.remind_before_days)
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
    section: str


def rectifications(records: Iterable[CircularIssued | RectificationReported], *, now: datetime) -> list[RectificationStatus]:
    """Each unit's 限期整改 of each circular at `now`: opened by the circular, met by the unit's first
    report on time, missed at its due time without one, late when it comes after — the moves of
    playbooks.fold.TRANSITIONS. A report for a circular or unit not (yet) known is left aside."""
    circulars: dict[str, CircularIssued] = {}
    reports: dict[tuple[str, str], datetime] = {}
    for rec in records:
        if isinstance(rec, CircularIssued):
            circulars.setdefault(rec.id, rec)
        else:
            key = (rec.circular_id, rec.unit_id)
            reports[key] = min(reports.get(key, rec.reported_at), rec.reported_at)  # the first report counts
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
            out.append(RectificationStatus(
                circular_id=c.id, unit_id=owed.unit_id, unit=owed.unit, breaches=owed.breaches, issued_at=c.issued_at,
                due_at=owed.due_at, remind_at=owed.remind_at, status=status,
                reported_at=reported if reported is not None and reported <= now else None, minutes_late=late,
                section=c.section))
    return out
