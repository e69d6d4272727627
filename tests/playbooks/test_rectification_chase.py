"""The 限期整改 timer's decision (5.5.1 通报批评并责成其限期整改), playbooks/ledger/circular.py `chase`:
one row per rule, with its section. A 通报 names two units; the first (区城市管理委) is the one each row
looks at, the second (区应急局) has reported on time and is never chased. Pure: records and `now` in,
records and notices out; fed back in, nothing new."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from playbooks.ledger.circular import OVERDUE_RULE, REMIND_RULE, chase, draft_circular, rectifications
from playbooks.ledger.config import LedgerFile, load_ledger
from playbooks.ledger.rules import ledger
from tests.playbooks.test_ledger import DAY_FROM, DAY_TO, Story
from topics.ledger import (CircularIssued, RectificationOverdue, RectificationReminded, RectificationReported,
                           rectification_step_id)

ISSUED = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)  # 10:00 in Beijing
DUE = ISSUED + timedelta(days=15)
REMIND = DUE - timedelta(days=3)
UNIT, OTHER, ISSUER = "district_urban_management_commission", "district_emergency_bureau", "district_emergency_office"
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def config(plan) -> LedgerFile:
    return load_ledger(units=frozenset(plan.units))


def circular(cid: str = "circular-1") -> CircularIssued:
    owed = {"due_at": DUE, "remind_at": REMIND}
    return CircularIssued(id=cid, period_from=ISSUED - timedelta(days=7), period_to=ISSUED, issued_at=ISSUED,
                          issued_by="admin", issuer_unit_id=ISSUER, units=[
                              {"unit_id": UNIT, "unit": "区城市管理委", "breaches": 2, **owed},
                              {"unit_id": OTHER, "unit": "区应急局", "breaches": 1, **owed}])


def report(unit: str, at: datetime, rid: str = "r-1", cid: str = "circular-1") -> RectificationReported:
    return RectificationReported(id=rid, circular_id=cid, unit_id=unit, reported_at=at, reported_by="值班员")


def step(kind: str, recorded: datetime):
    cls, at = (RectificationReminded, REMIND) if kind == "remind" else (RectificationOverdue, DUE)
    return cls(id=rectification_step_id("circular-1", UNIT, kind), circular_id="circular-1", unit_id=UNIT, at=at,
               recorded_at=recorded, rule=REMIND_RULE if kind == "remind" else OVERDUE_RULE, reason="…")


OTHER_ON_TIME = report(OTHER, ISSUED + timedelta(days=2), rid="r-other")


@dataclass(frozen=True)
class Case:
    id: str
    now: datetime
    earlier: list = field(default_factory=list)  # records on the topic besides the circular and OTHER's report
    steps: list[tuple[str, datetime]] = field(default_factory=list)  # (record kind, its `at`) expected
    notices: list[tuple[str, str, str, datetime]] = field(default_factory=list)  # (unit, role, rule, requested_at)
    reason: str = ""  # said of UNIT when nothing is done


CASES = [
    Case("5.5.1 rectification_remind: before remind_at, nothing yet", now=REMIND - H, reason="not yet: reminder at"),
    Case("5.5.1 rectification_remind: at remind_at, unreported: the unit's 值班主任 reminded", now=REMIND,
         steps=[("rectification_reminded", REMIND)], notices=[(UNIT, "值班主任", REMIND_RULE, REMIND)]),
    Case("5.5.1 rectification_remind: a tick late, the reminder at the rule's own time", now=REMIND + 2 * H,
         steps=[("rectification_reminded", REMIND)], notices=[(UNIT, "值班主任", REMIND_RULE, REMIND)]),
    Case("5.5.1 rectification_remind: reminded already, once", now=REMIND + 5 * H,
         earlier=[step("remind", REMIND)], reason="already reminded"),
    Case("5.5.1 rectification_remind: reported before remind_at, no reminder", now=REMIND,
         earlier=[report(UNIT, REMIND - H)], reason="reported"),
    Case("5.5.1 rectification_remind: a report dated later than now does not count yet", now=REMIND,
         earlier=[report(UNIT, REMIND + H)], steps=[("rectification_reminded", REMIND)],
         notices=[(UNIT, "值班主任", REMIND_RULE, REMIND)]),
    Case("5.5.1 rectification_remind: another unit's report does not stop it", now=REMIND,
         earlier=[report(OTHER, REMIND - H, rid="r-2")], steps=[("rectification_reminded", REMIND)],
         notices=[(UNIT, "值班主任", REMIND_RULE, REMIND)]),
    Case("5.5.1 rectification_overdue: at due_at, unreported: 督办 to its 带班领导 and the issuer's 值班主任", now=DUE,
         earlier=[step("remind", REMIND)], steps=[("rectification_overdue", DUE)],
         notices=[(UNIT, "带班领导", OVERDUE_RULE, DUE), (ISSUER, "值班主任", OVERDUE_RULE, DUE)]),
    Case("5.5.1 rectification_overdue: past due and never reminded (an outage): the 督办 alone", now=DUE + 3 * H,
         steps=[("rectification_overdue", DUE)],
         notices=[(UNIT, "带班领导", OVERDUE_RULE, DUE), (ISSUER, "值班主任", OVERDUE_RULE, DUE)]),
    Case("5.5.1 rectification_overdue: 督办 sent already, once", now=DUE + 5 * H,
         earlier=[step("remind", REMIND), step("overdue", DUE)], reason="督办 already sent"),
    Case("5.5.1 rectification_overdue: reported late, before the tick: late, not chased", now=DUE + 2 * H,
         earlier=[step("remind", REMIND), report(UNIT, DUE + H)], reason="reported"),
    Case("5.5.1 rectification_overdue: reported on time: met, not chased", now=DUE + H,
         earlier=[report(UNIT, DUE - H)], reason="reported"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_chase(plan, config, case: Case):
    records = [circular(), OTHER_ON_TIME, *case.earlier]
    out = chase(records, config, plan, now=case.now)
    assert [(r.record, r.at) for r in out.records] == case.steps
    assert [(n.unit_id, n.role, n.rule, n.requested_at) for n in out.notifications] == case.notices
    for rec in out.records:
        assert rec.section == "5.5.1" and rec.recorded_at == case.now and rec.circular_id == "circular-1"
        assert rec.unit_id == UNIT and rec.reason and "5.5.1" in rec.reason
        assert rec.notices == [n.dedup_key for n in out.notifications]
        kind = "remind" if isinstance(rec, RectificationReminded) else "overdue"
        assert rec.id == rectification_step_id("circular-1", UNIT, kind)
    for n in out.notifications:
        assert n.kind == "rectification" and n.section == "5.5.1" and n.incident_id == "circular-1" and not n.drill
        assert "5.5.1" in n.why and "区城市管理委" in n.why and n.level is None
    assert len({n.dedup_key for n in out.notifications}) == len(out.notifications)
    said = [r for r in out.reasons if r.startswith(f"circular-1 {UNIT}:")]
    if case.reason:
        assert any(case.reason in r for r in said), out.reasons
    assert not any(n.unit_id == OTHER for n in out.notifications)  # reported on time: never chased
    assert any(r.startswith(f"circular-1 {OTHER}: 整改 reported") for r in out.reasons)
    # the same call again: the same ids (two workers, a restart); fed back in: nothing new
    assert chase(records, config, plan, now=case.now) == out
    again = chase([*records, *out.records], config, plan, now=case.now)
    assert again.records == [] and again.notifications == []


def test_the_statuses_say_reminded_and_escalated(plan, config):
    """GET /ledger/rectifications' fold: the steps the timer took, with when; a late report after them."""
    records = [circular(), OTHER_ON_TIME]
    reminded = chase(records, config, plan, now=REMIND + H).records
    escalated = chase([*records, *reminded], config, plan, now=DUE + H).records
    assert [r.record for r in reminded + escalated] == ["rectification_reminded", "rectification_overdue"]
    everything = [*records, *reminded, *escalated, report(UNIT, DUE + 2 * H)]
    mine = {r.unit_id: r for r in rectifications(everything, now=DUE + 3 * H)}
    assert (mine[UNIT].status, mine[UNIT].reminded_at, mine[UNIT].escalated_at) == ("late", REMIND + H, DUE + H)
    assert mine[UNIT].minutes_late == 120.0
    assert (mine[OTHER].status, mine[OTHER].reminded_at, mine[OTHER].escalated_at) == ("met", None, None)
    before = {r.unit_id: r for r in rectifications(everything, now=REMIND)}  # not yet taken then
    assert before[UNIT].reminded_at is None and before[UNIT].status == "open"


def test_the_term_and_the_reminder_lead(plan, config):
    """ledger.yaml's term, reminded remind_before_days before; a 通报's own term (rectify_by) shorter than
    twice that lead reminded half-way (our choice); a term not after the issue, or past a year, refused."""
    book = ledger([Story(plan).due(61).records()], plan, config, period_from=DAY_FROM, period_to=DAY_TO, now=ISSUED)
    default = draft_circular(book, config, plan, issued_at=ISSUED)
    assert default.units
    for u in default.units:
        assert u.rectify_by == ISSUED + timedelta(days=config.rectification.due_after_days)
        assert u.remind_at == u.rectify_by - timedelta(days=config.rectification.remind_before_days)
    short = draft_circular(book, config, plan, issued_at=ISSUED, rectify_by=ISSUED + timedelta(seconds=40))
    assert [(u.rectify_by, u.remind_at) for u in short.units] == [
        (ISSUED + timedelta(seconds=40), ISSUED + timedelta(seconds=20))] * len(short.units)
    for bad in (ISSUED, ISSUED - H, ISSUED + timedelta(days=400)):
        with pytest.raises(ValueError, match="rectify_by"):
            draft_circular(book, config, plan, issued_at=ISSUED, rectify_by=bad)


def test_a_revision_that_removed_the_issuer_does_not_stop_the_chase(plan, config):
    """A circular issued before a revision (issue 24 item 3) dropped its issuing unit is chased all the same,
    the issuer named by its id: one missing name must not stop every circular's 督办."""
    revised = plan.model_copy(update={"units": {k: v for k, v in plan.units.items() if k != ISSUER}})
    with pytest.raises(KeyError):
        revised.unit_name(ISSUER)
    out = chase([circular(), OTHER_ON_TIME], config, revised, now=DUE)
    assert [r.record for r in out.records] == ["rectification_overdue"]
    assert ISSUER in {n.unit_id for n in out.notifications}
