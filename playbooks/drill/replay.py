"""A drill replayed: the scenario's injects through the pure incident lifecycle on a simulated clock,
giving what happened (events, decisions, notifications per incident) and nothing more.

`drill run` (the live pipeline) feeds the same records to the topics and gathers what the service
emitted into the same Observed, so both are scored alike (playbooks.drill.evaluation).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field

from playbooks.drill.scenario import (
    ApproveInject,
    EndInject,
    FileInject,
    FollowupInject,
    ReportInject,
    Scenario,
    WarningInject,
    _Inject,
    incident_id,
)
from playbooks.lifecycle import IncidentState, check_due, handle, next_due_at, start
from playbooks.plan import Plan
from playbooks.warning.rules import WarningState
from playbooks.warning.rules import step as warning_step
from topics.warnings import WarningCommand, WarningContent, WarningEvent
from topics.models import (
    ApprovalRecorded,
    Decision,
    DueCheck,
    EndRecorded,
    FollowupFacts,
    IncidentCommand,
    IncidentEvent,
    IncidentReported,
    NotificationRequested,
    ReportFacts,
    ReleaseApproval,
    ReportFiled,
    ReportKind,
)


class IncidentObserved(BaseModel):
    """Everything one incident emitted, whether replayed in-process or gathered from the topics."""

    model_config = ConfigDict(extra="forbid")
    incident_id: str
    events: list[IncidentEvent] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
    notifications: list[NotificationRequested] = Field(default_factory=list)


class Observed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    incidents: dict[str, IncidentObserved] = Field(default_factory=dict, description="by scenario key")
    warnings: dict[str, list[WarningEvent]] = Field(default_factory=dict, description="by scenario key (issue 20)")

    @classmethod
    def from_records(
        cls, scenario: Scenario, records: Iterable[IncidentEvent | Decision | NotificationRequested], *, run: str
    ) -> "Observed":
        """For `drill run`: group what the pipeline emitted by incident; records of other incidents are ignored."""
        keys = {incident_id(scenario, inj.incident, run): inj.incident for inj in scenario.injects
                if not isinstance(inj, WarningInject)}
        obs = cls(incidents={k: IncidentObserved(incident_id=i) for i, k in keys.items()})
        for rec in records:
            key = keys.get(rec.incident_id)
            if key is None:
                continue
            inc = obs.incidents[key]
            if isinstance(rec, IncidentEvent):
                inc.events.append(rec)
            elif isinstance(rec, Decision):
                inc.decisions.append(rec)
            else:
                inc.notifications.append(rec)
        for inc in obs.incidents.values():  # topics may deliver twice: keep each record once, in order
            inc.events = sorted({e.id: e for e in inc.events}.values(), key=lambda e: e.seq)
            inc.notifications = list({n.dedup_key: n for n in inc.notifications}.values())
            inc.decisions = sorted({d.model_dump_json(): d for d in inc.decisions}.values(), key=lambda d: d.decided_at)
        return obs


def _command(state: IncidentState, inj: _Inject, index: int, now: datetime, plan: Plan) -> IncidentCommand:
    iid = state.incident_id
    cid = f"{iid}.i{index}"
    body: ReportFiled | ApprovalRecorded | EndRecorded
    if isinstance(inj, FollowupInject):
        followup = FollowupFacts(facts=inj.facts, flags=inj.flags, location=inj.location,
                                 asserted_grade=inj.asserted_grade, asserted_by=inj.asserted_by)
        body = ReportFiled(id=cid, incident_id=iid, kind=ReportKind.FOLLOWUP, filed_at=now, filed_by=inj.by,
                           unit_id=_unit_id(plan, inj.unit) or state.decision.lead_unit_ids[0], followup=followup)
    elif isinstance(inj, FileInject):
        owed = state.obligations.get(inj.kind)
        default = owed.obligation.owner_id if owed else state.decision.lead_unit_ids[0]
        release = None
        if inj.release is not None:  # its times are offsets from the start, as the filing's own `at` is
            start = now - inj.at
            release = ReleaseApproval(drafted_by=inj.release.drafted_by, drafted_at=start + inj.release.drafted,
                                      approved_by=inj.release.approved_by, approved_at=start + inj.release.approved)
        body = ReportFiled(id=cid, incident_id=iid, kind=ReportKind(inj.kind), filed_at=now, filed_by=inj.by,
                           unit_id=_unit_id(plan, inj.unit) or default, release=release)
    elif isinstance(inj, ApproveInject):
        body = ApprovalRecorded(id=cid, incident_id=iid, approver=inj.approver, approver_role=inj.role,
                                approved_at=now, recorded_by=inj.by)
    elif isinstance(inj, EndInject):
        body = EndRecorded(id=cid, incident_id=iid, authority=inj.authority, decided_by=inj.decided_by,
                           ended_at=now, recorded_by=inj.by, announce_public=inj.announce_public)
    else:  # pragma: no cover - the union is closed
        raise TypeError(type(inj))
    return IncidentCommand(id=cid, incident_id=iid, drill=True, body=body)


def _unit_id(plan: Plan, ref: str | None) -> str | None:
    if ref is None or ref in plan.units or ref in plan.parties:
        return ref
    return plan.unit_ids_by_name.get(ref, ref)


def _reported(scenario: Scenario, inj: ReportInject, now: datetime, run: str) -> IncidentReported:
    iid = incident_id(scenario, inj.incident, run)
    occurred = scenario.start + (inj.occurred if inj.occurred is not None else inj.at)
    report = ReportFacts(
        report_id=iid, type=inj.type, occurred_at=occurred, received_at=now, location=inj.location,
        facts=inj.facts, flags=inj.flags, asserted_grade=inj.asserted_grade, asserted_by=inj.asserted_by,
        source=inj.source, drill=True,  # every drill record says so (CAP's status=Exercise)
        drill_participants=list(scenario.participants),
    )
    return IncidentReported(id=iid, incident_id=iid, report=report, accepted_at=now)


FeedItem = tuple[datetime, Union[IncidentReported, IncidentCommand, WarningCommand]]


def _warning_command(scenario: Scenario, inj: WarningInject, index: int, now: datetime, plan: Plan,
                     run: str) -> WarningCommand:
    """A warning inject as the command the API would take (the drill's simulated time as its time)."""
    wid = incident_id(scenario, inj.incident, run)
    content = None
    if inj.step in ("draft", "adjust"):
        streets = [_unit_id(plan, a) or a for a in inj.area]
        content = WarningContent(
            category=inj.category, level=inj.level, start=now if inj.step == "draft" else None, area=streets,
            hazards=inj.hazards, measures=list(inj.measures),
            issuer=_unit_id(plan, inj.unit) if inj.step == "draft" else None)
    return WarningCommand(id=f"{wid}.i{index}", warning_id=wid, kind=inj.step, by=inj.by,
                          unit=_unit_id(plan, inj.unit) or inj.unit, at=now, content=content, approval=inj.approval,
                          approver=inj.approver, reason=inj.reason, drill=True)


class Replayer:
    """Incidents' records through the pure lifecycle on a simulated clock: between records the clock
    jumps from one due time to the next (reminder, breach, escalation step), so hours take milliseconds.

    The one replay loop: a drill's injects (`replay` below) and a history of live records
    (playbooks.whatif) both go through it. Due times wait in a heap, so a year of incidents costs
    each step a logarithm, not a scan of every incident.

    feed: if given, receives every record fed to the lifecycle with its simulated time, due checks
    included, in order.
    """

    def __init__(self, plan: Plan, *, feed: list[FeedItem] | None = None, drill: bool = True):
        self.plan, self.feed, self.drill = plan, feed, drill
        self.states: dict[str, IncidentState] = {}
        self.due_at: dict[str, datetime | None] = {}  # next_due_at of each state, kept as states change
        self._heap: list[tuple[datetime, str]] = []  # (due, key); an entry is stale once due_at[key] moved
        self.obs = Observed()

    def record(self, key: str, out: Any) -> None:
        inc = self.obs.incidents[key]
        inc.events += out.events
        inc.decisions += out.decisions
        inc.notifications += out.notifications
        if out.state is not self.states.get(key):  # an unchanged state keeps its due time
            self.states[key] = out.state
            due = self.due_at[key] = next_due_at(out.state, self.plan)
            if due is not None:
                heapq.heappush(self._heap, (due, key))

    def advance(self, until: datetime, *, inclusive: bool) -> None:
        """Every due check up to `until`. An inject at the very minute of a due time goes first (not
        inclusive): a report filed at 10:00 for a 10:00 deadline is on time (the lifecycle's own rule),
        so no breach may precede it."""
        heap, due_at = self._heap, self.due_at
        while heap:
            now = heap[0][0]
            if now > until or (now == until and not inclusive):
                return
            keys = set()
            while heap and heap[0][0] == now:
                _, key = heapq.heappop(heap)
                if due_at.get(key) == now:
                    keys.add(key)
            for key in sorted(keys):
                state = self.states[key]
                if self.feed is not None:
                    iid = state.incident_id
                    cid = f"{iid}.due.{int(now.timestamp())}"
                    self.feed.append((now, IncidentCommand(id=cid, incident_id=iid, drill=self.drill,
                                                           body=DueCheck(id=cid, incident_id=iid, at=now))))
                out = check_due(state, self.plan, now)
                if out.empty:  # next_due_at promised work: refusing to spin is better than hanging
                    raise RuntimeError(f"replay: {key} due at {now.isoformat()} but nothing happened")
                self.record(key, out)

    def start(self, key: str, rec: IncidentReported, now: datetime) -> None:
        self.obs.incidents[key] = IncidentObserved(incident_id=rec.incident_id)
        if self.feed is not None:
            self.feed.append((now, rec))
        self.record(key, start(rec, self.plan, now))

    def handle(self, key: str, cmd: IncidentCommand, now: datetime) -> None:
        if self.feed is not None:
            self.feed.append((now, cmd))
        self.record(key, handle(self.states[key], cmd, self.plan, now))


def replay(scenario: Scenario, plan: Plan, *, run: str = "drill", feed: list[FeedItem] | None = None) -> Observed:
    """A scenario's injects in time order through the Replayer.

    feed: if given, receives every record fed to the lifecycle with its simulated time, due checks
    included, in order; `drill run` sends exactly these to the live pipeline at N× real time.
    """
    rp = Replayer(plan, feed=feed)
    obs = rp.obs
    warning_states: dict[str, WarningState | None] = {}
    for index, inj in scenario.ordered():
        now = scenario.start + inj.at
        rp.advance(now, inclusive=False)
        if isinstance(inj, WarningInject):
            cmd = _warning_command(scenario, inj, index, now, plan, run)
            result = warning_step(warning_states.get(inj.incident), cmd, plan.warnings, plan)
            if result.refused:
                raise ValueError(f"injects.{index}: the warning's {inj.step} is refused: " + "; ".join(result.refused))
            warning_states[inj.incident] = result.state
            obs.warnings.setdefault(inj.incident, []).extend(result.events)
            if feed is not None:
                feed.append((now, cmd))
            continue
        if isinstance(inj, ReportInject):
            rp.start(inj.incident, _reported(scenario, inj, now, run), now)
        else:
            rp.handle(inj.incident, _command(rp.states[inj.incident], inj, index, now, plan), now)
    rp.advance(scenario.end, inclusive=True)
    return obs
