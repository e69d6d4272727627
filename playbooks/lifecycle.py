"""An incident's life, pure: its state, a record and `now` in; the new state and what to emit out.

Reports filed, follow-ups that regrade, approvals, the end, reminders, breaches (迟报/漏报, 5.5.2)
and escalation steps. No I/O and no clock: the shell passes `now` and emits what comes back, so
the same code runs live, in drills on a simulated clock, and in unit tests.
Every step is idempotent: a command seen twice, or a due check run twice, changes nothing more.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from playbooks.documents import LABELS as ITEM_LABELS
from playbooks.engine import ReportRejected, copy_with, decide, obligations_at_end
from playbooks.fold import ObligationStatus, next_status
from playbooks.plan import EscalationStep, Plan
from topics.models import (
    GRADE_RANK,
    Grade,
    ApprovalRecorded,
    Decision,
    DueCheck,
    EndRecorded,
    EventDetail,
    EventKind,
    IncidentCommand,
    IncidentEvent,
    IncidentReported,
    NotificationRequested,
    RECORD_ID_MAX,
    Obligation,
    ReportFacts,
    ReportFiled,
    ReportKind,
)

SEEN_MAX = 256  # command ids remembered per incident for at-least-once redelivery
LATE_DETECTION_S = 1.0  # a breach noticed later than this after its due time says so
FOLLOWUP_COUNTS = ("deaths", "missing", "serious_injuries", "injuries", "poisoned")  # on a follow-up's REPORT_FILED


class State(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class ObligationState(State):
    obligation: Obligation
    status: ObligationStatus = "open"  # moved only by the events it emits, through playbooks.fold.TRANSITIONS
    filed_at: datetime | None = None
    filed_by: str | None = None
    minutes_late: float | None = None
    reminded: bool = False
    breach_detected_at: datetime | None = None
    steps_done: list[int] = []
    closed_reason: str | None = None
    # A city report filed before the approval was recorded, and when it came in: counted once an
    # approval dated no later than its filing is recorded (approved by phone, recorded afterwards).
    held: ReportFiled | None = None
    held_arrived_at: datetime | None = None
    # How many times it was opened: a grade that goes down and back up owes the report again (4.1.3),
    # and the new opening's reminders and escalations are new notices, not repeats of the first's.
    opened: int = 1
    # Its 督办 steps as the plan had them when it was opened: a revision adopted later (issue 24 item 3)
    # that changes, renames or removes the chain does not change what an obligation already owed is
    # chased with. None: a state written before chains were kept here (the plan's chain of that name).
    chain: list[EscalationStep] | None = None

    @property
    def pending(self) -> bool:
        return self.status in ("open", "missed") and self.closed_reason is None

    @property
    def escalating(self) -> bool:
        """Missed and still chased: an end or a regrade stops the chase, never the 漏报 on record."""
        return self.status == "missed" and self.closed_reason is None

    @property
    def notice_key(self) -> str:
        """The obligation's part of its notices' dedup keys: the kind, then the opening after the first."""
        kind = self.obligation.kind.value
        return kind if self.opened == 1 else f"{kind}.open{self.opened}"


class IncidentState(State):
    """The worker's state of one incident (its table's value): what the lifecycle needs to go on."""

    incident_id: str
    drill: bool = False
    accepted_at: datetime
    report: ReportFacts
    decision: Decision
    obligations: dict[str, ObligationState]
    notified: list[str] = []
    routed: list[str] = []  # units told of it so far, in order: the end is sent to each (4.8.2)
    approval: ApprovalRecorded | None = None
    approval_requested_at: datetime | None = None
    end: EndRecorded | None = None
    simulated_clock: bool = False  # a drill's: due checks come from its runner, not the live sweep
    # the plan version its last record was handled under (None: a state written before this was kept, read
    # as its decision's); a record handled under another one says so on the timeline (PLAN_SWITCHED)
    plan_version: str | None = None
    seq: int = 0
    seen: list[str] = []


@dataclass
class Outcome:
    state: IncidentState | None
    events: list[IncidentEvent] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    notifications: list[NotificationRequested] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.events or self.decisions or self.notifications)


class _Emitter:
    """Collects what one step emits, numbering events from the incident's own sequence."""

    def __init__(self, state: IncidentState, now: datetime, plan: Plan):
        self.state = state
        self.now = now
        self.plan = plan
        self.out = Outcome(state=state)

    def event(
        self,
        kind: EventKind,
        reason: str,
        *,
        at: datetime | None = None,
        section: str | None = None,
        obligation: str | None = None,
        by: str | None = None,
        **details: EventDetail,
    ) -> None:
        self.state.seq += 1
        event = IncidentEvent(
            id=f"{self.state.incident_id}.e{self.state.seq}",
            incident_id=self.state.incident_id,
            seq=self.state.seq,
            kind=kind,
            at=at or self.now,
            recorded_at=self.now,
            reason=reason,
            section=section,
            obligation=obligation,
            by=by,
            drill=self.state.drill,
            details=details,
        )
        self.out.events.append(event)
        # The event moves its obligation as the one table says; an opening makes a new state (_open).
        ob_state = self.state.obligations.get(obligation) if obligation else None
        if ob_state is not None and kind is not EventKind.OBLIGATION_OPENED:
            ob_state.status = next_status(ob_state.status, kind) or ob_state.status

    def notify(self, *, key: str, unit_id: str, unit: str, why: str, rule: str, section: str,
               kind: str = "routing", role: str | None = None) -> None:
        key = _fit_record_id(key)
        if key in self.state.notified:
            return
        self.state.notified.append(key)
        self.out.notifications.append(
            NotificationRequested(
                id=key,
                dedup_key=key,
                incident_id=self.state.incident_id,
                drill=self.state.drill,
                unit_id=unit_id,
                unit=unit,
                role=role,
                kind=kind,  # type: ignore[arg-type]
                level=self.state.decision.response_level,
                drill_participants=list(self.state.report.drill_participants),
                why=why,
                rule=rule,
                section=section,
                requested_at=self.now,
            )
        )


def _fit_record_id(key: str) -> str:
    """A notice key within a record id's length: a long incident id with a long unit and rule would
    pass it, and the notice would fail validation. Past it, the tail becomes its digest (still stable)."""
    if len(key) <= RECORD_ID_MAX:
        return key
    return f"{key[:RECORD_ID_MAX - 33]}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def _route(em: _Emitter, decision: Decision) -> None:
    """Routing notices of a decision; those waiting for approval (4.1.3) only once approved."""
    for notice in decision.notify:
        if notice.after_approval and em.state.approval is None:
            continue
        em.notify(
            key=f"{em.state.incident_id}.{notice.unit_id}.{notice.rule}",
            unit_id=notice.unit_id,
            unit=notice.unit,
            why=notice.why,
            rule=notice.rule,
            section=notice.section,
            kind="approved_report" if notice.after_approval else "routing",
        )
        if notice.unit_id not in em.state.routed:
            em.state.routed.append(notice.unit_id)


def _request_approval(em: _Emitter, decision: Decision) -> None:
    """The wait for 区应急委's approval starts now; the board counts it (4.1.3)."""
    em.state.approval_requested_at = em.now
    em.event(EventKind.APPROVAL_REQUESTED, f"{decision.grade.value}事件：报请区应急委主任或副主任批准后向市应急办报告",
             section="4.1.3")


def _open(em: _Emitter, ob: Obligation) -> None:
    before = em.state.obligations.get(ob.kind.value)
    status = next_status(before.status if before else None, EventKind.OBLIGATION_OPENED)
    assert status is not None, f"{ob.kind.value}: reopened from {before.status if before else None}"
    chain = em.plan.escalation_chains.get(ob.escalation)
    em.state.obligations[ob.kind.value] = ObligationState(obligation=ob, status=status,
                                                          opened=before.opened + 1 if before else 1,
                                                          chain=list(chain) if chain is not None else None)
    em.event(
        EventKind.OBLIGATION_OPENED,
        f"{ob.label}：{ob.owner}→{ob.recipient}，应于{ob.due_at.isoformat()}前",
        section=ob.section,
        obligation=ob.kind.value,
        due_at=ob.due_at.isoformat(),
        owner=ob.owner,
    )


def start(rec: IncidentReported, plan: Plan, now: datetime) -> Outcome:
    """A new incident: decide, route, open its obligations."""
    decision = decide(rec.report, plan, now, incident_id=rec.incident_id)
    state = IncidentState(
        incident_id=rec.incident_id,
        drill=rec.report.drill,
        accepted_at=rec.accepted_at,
        report=rec.report,
        decision=decision,
        obligations={},
        seen=[rec.id],
        simulated_clock=rec.sim_now is not None,
        plan_version=plan.version,
    )
    em = _Emitter(state, now, plan)
    em.event(EventKind.REPORTED, f"接报：{decision.type_name}（来源 {rec.report.source or '未注明'}）",
             at=rec.report.received_at, section="4.1.2", by=rec.raised_by or None)
    em.event(
        EventKind.DECIDED,
        f"{decision.grade.value}，{decision.response_level.value}响应，牵头 {'、'.join(decision.lead_units)}",
        section="4.3",
        grade=decision.grade.value,
        level=decision.response_level.value,
    )
    em.out.decisions.append(decision)
    _route(em, decision)
    if decision.needs_approval_for_city_report:
        _request_approval(em, decision)
    for ob in decision.obligations:
        _open(em, ob)
    _due(em, plan)  # a report received long ago may owe something already
    return em.out


def _merge_followup(report: ReportFacts, cmd: ReportFiled) -> ReportFacts:
    f = cmd.followup
    if f is None:
        return report
    update: dict = {k: v for k, v in f.model_dump(exclude_none=True).items()}
    for key in ("facts", "flags", "location"):
        if key in update:
            update[key] = getattr(f, key)
    return report.model_copy(update=update)


def _regrade(em: _Emitter, cmd: ReportFiled, plan: Plan) -> None:
    st = em.state
    old = st.decision
    report = _merge_followup(st.report, cmd)
    try:
        new = decide(report, plan, em.now, incident_id=st.incident_id, basis_at=cmd.filed_at)
    except ReportRejected as exc:
        # Only a revision adopted since can refuse what was decided before (the API checks a follow-up
        # against the plan in force): its type or street is gone. The filing counts; the decision stays.
        em.event(EventKind.REJECTED, f"现行预案（版本 {plan.version}）无法据此续报重新研判（{exc}）：续报已记录，"
                 "沿用原研判结果", section="7.1.5", by=cmd.filed_by)
        return
    st.report, st.decision = report, new
    em.out.decisions.append(new)
    grade_reasons = "；".join(r.text for r in new.reasons if r.rule.startswith("grade."))
    if new.grade != old.grade:
        direction = "升级" if GRADE_RANK[new.grade] > GRADE_RANK[old.grade] else "降级"
        em.event(EventKind.REGRADED, f"续报{direction}：{old.grade.value}→{new.grade.value}（{grade_reasons}）",
                 section="4.3.1", by=cmd.filed_by, from_grade=old.grade.value, to_grade=new.grade.value)
    if new.response_level != old.response_level:
        level_reasons = "；".join(r.text for r in new.reasons if r.rule.startswith(("level.", "raise.")))
        em.event(EventKind.LEVEL_ADJUSTED,
                 f"响应级别调整：{old.response_level.value}→{new.response_level.value}（{level_reasons}）",
                 section="4.3.1", by=cmd.filed_by, from_level=old.response_level.value,
                 to_level=new.response_level.value)
    if new.needs_approval_for_city_report and st.approval_requested_at is None:
        _request_approval(em, new)
    _route(em, new)
    if new.grade is not Grade.UNDETERMINED:
        for ob_state in st.obligations.values():
            if ob_state.obligation.met_by == "grade_determined" and ob_state.pending:
                _count_filing(em, ob_state, cmd, arrived_at=em.now)  # 研判定级: this follow-up settled it
    wanted = {ob.kind.value: ob for ob in new.obligations}
    for kind, ob in wanted.items():
        # owed again after a regrade had closed it (较大→一般→较大): opened anew, due from this filing
        if kind not in st.obligations or (st.obligations[kind].closed_reason is not None and st.end is None):
            _open(em, ob)
    # no longer owed: because the grade or level changed, or (the same grade and level) because the plan's
    # revision adopted since no longer asks it (7.1.5)
    revised = (new.grade, new.response_level) == (old.grade, old.response_level) and new.plan_version != old.plan_version
    why, section = (f"预案修订（版本 {new.plan_version}）后不再需要", "7.1.5") if revised else \
        (f"等级调整为{new.grade.value}后不再需要", "4.3.1")
    for kind, ob_state in st.obligations.items():
        if kind != ReportKind.EVALUATION_REPORT.value and kind not in wanted and ob_state.pending:
            _close(em, kind, ob_state, why, section)


def _close(em: _Emitter, kind: str, ob_state: ObligationState, why: str, section: str) -> None:
    """No longer owed. One missed stays missed (5.5.2: a 漏报 is on record for good), its chase stops."""
    ob_state.closed_reason = why
    missed = ob_state.status == "missed"
    em.event(EventKind.OBLIGATION_CLOSED,
             f"{ob_state.obligation.label}：{why}" + ("；漏报记录保留，停止督办" if missed else ""),
             section=section, obligation=kind, still_missed=missed)


def _file(em: _Emitter, cmd: ReportFiled, plan: Plan) -> None:
    st = em.state
    label = cmd.kind.value
    if cmd.release is not None:  # 4.7.1: drafted, approved, then published (this filing); each on the timeline
        r = cmd.release
        em.event(EventKind.RELEASE_DRAFTED, f"{r.drafted_by} 拟定发布稿（{label}）", at=r.drafted_at,
                 section="4.7.1", by=r.drafted_by, report_kind=label)
        em.event(EventKind.RELEASE_APPROVED, f"{r.approved_by} 批准对外发布（{label}）", at=r.approved_at,
                 section="4.7.1", by=r.approved_by, report_kind=label)
    # a follow-up's casualty counts travel on its timeline line: the ledger sets them beside the first
    # report's to flag a possible 瞒报 for review (5.5.2; playbooks/ledger)
    counts = {f"followup_{k}": getattr(cmd.followup.facts, k) for k in FOLLOWUP_COUNTS} \
        if cmd.followup is not None and cmd.followup.facts is not None else {}
    em.event(EventKind.REPORT_FILED, f"{cmd.filed_by} 报送 {label}", at=cmd.filed_at, by=cmd.recorded_by or cmd.filed_by,
             section="4.1.5", report_kind=cmd.kind.value, unit_id=cmd.unit_id, **counts)
    if cmd.items_missing:  # marked, not refused: an on-time incomplete report beats a late complete one
        names = "、".join(ITEM_LABELS.get(i, i) for i in cmd.items_missing)
        em.event(EventKind.REPORT_INCOMPLETE, f"{label}缺少4.1.5要素：{names}", at=cmd.filed_at, section="4.1.5",
                 by=cmd.recorded_by or cmd.filed_by, report_kind=cmd.kind.value, unit_id=cmd.unit_id,
                 items_missing=",".join(cmd.items_missing))
    if cmd.kind is ReportKind.FOLLOWUP:
        if st.end is not None:  # 4.8.2: the response is over; the follow-up stays on the timeline
            em.event(EventKind.REJECTED, "应急已结束：续报已记录，不再调整等级和响应", section="4.8.2",
                     by=cmd.recorded_by or cmd.filed_by)
            return
        prior = st.obligations.get(ReportKind.FOLLOWUP.value)
        _regrade(em, cmd, plan)
        if prior is not None and st.obligations.get(ReportKind.FOLLOWUP.value) is prior and prior.pending:
            _count_filing(em, prior, cmd, arrived_at=em.now)  # this follow-up is the one owed (4.1.5 及时续报)
            _recur(em, prior, cmd.filed_at)
        return
    ob_state = st.obligations.get(cmd.kind.value)
    if ob_state is None or not ob_state.pending:
        return  # a report nobody owed, or filed again: on the timeline, nothing else changes
    if cmd.kind is ReportKind.CITY_REPORT and st.decision.needs_approval_for_city_report and (
            st.approval is None or cmd.filed_at < st.approval.approved_at):
        # 4.1.3: reported to 市应急办 only once 区应急委主任或副主任 approved; until an approval dated no
        # later than this filing is recorded, it does not count
        if st.approval is None:
            ob_state.held, ob_state.held_arrived_at = cmd, em.now
        em.event(EventKind.REJECTED, "向市应急办报告须经区应急委主任或副主任批准后报送：未计为已报"
                 + ("（记录批准时如批准时间不晚于本次报送，则计入）" if st.approval is None else ""),
                 section="4.1.3", obligation=cmd.kind.value, by=cmd.recorded_by or cmd.filed_by)
        return
    _count_filing(em, ob_state, cmd, arrived_at=em.now)
    _recur(em, ob_state, cmd.filed_at)


def _recur(em: _Emitter, ob_state: ObligationState, filed_at: datetime) -> None:
    """A recurring obligation met: owed again, counted from this filing, at the cadence the current
    decision gives (a regrade may have changed the level, and with it the cadence)."""
    if not ob_state.obligation.recurs or em.state.end is not None:
        return
    now_owed = next((o for o in em.state.decision.obligations if o.kind is ob_state.obligation.kind), None)
    if now_owed is None:
        return  # not owed at this level
    every = now_owed.due_at - now_owed.starts_at
    warn = now_owed.due_at - now_owed.remind_at
    _open(em, copy_with(now_owed, {"starts_at": filed_at, "due_at": filed_at + every,
                                   "remind_at": filed_at + every - warn}))


def _count_filing(em: _Emitter, ob_state: ObligationState, cmd: ReportFiled, *, arrived_at: datetime) -> None:
    """An owed report filed: on time, or late by how much."""
    ob = ob_state.obligation
    ob_state.filed_at, ob_state.filed_by = cmd.filed_at, cmd.filed_by
    if cmd.filed_at <= ob.due_at and ob_state.status == "open":
        em.event(EventKind.OBLIGATION_MET, f"{ob.label}按时报送", at=cmd.filed_at, section=ob.section,
                 obligation=ob.kind.value, by=cmd.filed_by)
        return
    # The breach is on record: nothing had come in by the due time. A filing that says it was made
    # before then cannot undo that (5.5.2 迟报/瞒报); it is late as of when it reached the service.
    backdated = cmd.filed_at <= ob.due_at
    at = arrived_at if backdated else cmd.filed_at
    minutes = round((at - ob.due_at).total_seconds() / 60, 1)
    ob_state.minutes_late = minutes
    note = f"（填报时间{cmd.filed_at.isoformat()}早于到期时间，但到期时未收到，已记漏报；按收到时间计）" if backdated else ""
    em.event(EventKind.OBLIGATION_LATE, f"{ob.label}迟报 {minutes:g} 分钟{note}", at=at,
             section="5.5.2", obligation=ob.kind.value, by=cmd.filed_by, minutes_late=minutes, backdated=backdated)


def _approve(em: _Emitter, cmd: ApprovalRecorded) -> None:
    st = em.state
    if not st.decision.needs_approval_for_city_report:
        em.event(EventKind.REJECTED, f"无需审批：{st.decision.grade.value}事件不向市应急办报告", section="4.1.3",
                 by=cmd.recorded_by)
        return
    if st.approval is not None:
        return
    st.approval = cmd
    role = "主任" if cmd.approver_role == "director" else "副主任"
    waited = round((cmd.approved_at - (st.approval_requested_at or st.accepted_at)).total_seconds() / 60, 1)
    em.event(EventKind.APPROVED, f"区应急委{role}{cmd.approver}批准向市应急办报告（等待 {waited:g} 分钟）",
             at=cmd.approved_at, section="4.1.3", by=cmd.recorded_by, approver=cmd.approver,
             waited_minutes=waited)
    _route(em, st.decision)
    city = st.obligations.get(ReportKind.CITY_REPORT.value)
    if city is not None and city.held is not None:
        held, arrived = city.held, city.held_arrived_at or em.now
        city.held = city.held_arrived_at = None
        if city.pending and held.filed_at >= cmd.approved_at:  # filed after the approval it waited for
            _count_filing(em, city, held, arrived_at=arrived)


def _end(em: _Emitter, cmd: EndRecorded, plan: Plan) -> None:
    st = em.state
    if st.end is not None:
        return
    needed = plan.end_authority[st.decision.grade]
    if cmd.authority != needed:
        who = "区应急委批准" if needed == "district_committee" else "市级指挥部或市应急办宣布"
        em.event(EventKind.REJECTED, f"{st.decision.grade.value}事件的应急结束须由{who}", section="4.8.2",
                 by=cmd.recorded_by)
        return
    st.end = cmd
    em.event(EventKind.ENDED,
             f"应急结束：{'区应急委批准' if needed == 'district_committee' else '市级宣布（外部决定）'}，{cmd.decided_by}",
             at=cmd.ended_at, section="4.8.2", by=cmd.recorded_by, authority=cmd.authority)
    for kind, ob_state in st.obligations.items():
        if ob_state.pending:
            _close(em, kind, ob_state, "事件已结束", "4.8.2")
    # 4.8.2: "并将情况及时通知参与事件处置的各相关部门": every unit told of it, the lead units first
    for unit_id in dict.fromkeys([*st.decision.lead_unit_ids, *st.routed]):
        em.notify(key=f"{st.incident_id}.{unit_id}.end", unit_id=unit_id, unit=_unit(plan, unit_id),
                  why=f"应急结束：{cmd.decided_by}", rule="end.notify_participants", section="4.8.2", kind="end")
    if st.decision.type_id not in plan.types:
        # a revision adopted since removed or renamed the incident's type (7.1.5): what the end owes cannot be read
        # from the plan in force; the end stands, and the timeline says what to arrange by hand
        em.event(EventKind.REJECTED, f"现行预案（版本 {plan.version}）已无事件类型 {st.decision.type_id}（{st.decision.type_name}）："
                 "结束后的报送义务（5.4.2 评估报告、4.8.2 结束信息发布）无法据此确定，须人工安排", section="7.1.5",
                 by=cmd.recorded_by)
        return
    for ob in obligations_at_end(st.decision, st.report, plan, ended_at=cmd.ended_at, announce=cmd.announce_public):
        _open(em, ob)


def _unit(plan: Plan, unit_id: str) -> str:
    """The unit's name as the plan writes it; its id when a revision adopted since removed the unit."""
    if unit_id in plan.units or unit_id in plan.parties:
        return plan.unit_name(unit_id)
    return unit_id


def _chain(ob_state: ObligationState, plan: Plan) -> list[EscalationStep]:
    """The obligation's 督办 steps: as kept when it was opened, else (an older state) the plan's chain of
    that name, none if a revision removed it."""
    if ob_state.chain is not None:
        return ob_state.chain
    return plan.escalation_chains.get(ob_state.obligation.escalation, [])


def _switched(em: _Emitter, plan: Plan) -> None:
    """The incident's record handled under another plan version than its last one: said once, on the
    timeline (issue 24 item 3). What it already owed stays as it was; the revision's rules apply from
    this record on (a follow-up's regrade, the end's obligations, new openings)."""
    st = em.state
    before = st.plan_version or st.decision.plan_version
    if before == plan.version:
        return
    st.plan_version = plan.version
    em.event(EventKind.PLAN_SWITCHED,
             f"预案修订生效：本事件自此按预案版本 {plan.version} 处理（此前 {before}）；已有报送时限及其督办不变，"
             "新规则自本条记录起适用", section="7.1.5", from_version=before, to_version=plan.version)


def _due(em: _Emitter, plan: Plan) -> None:
    """Reminders before, a breach at the due time, then each escalation step: each exactly once."""
    st, now = em.state, em.now
    for kind, ob_state in st.obligations.items():
        ob = ob_state.obligation
        if ob_state.status == "open" and not ob_state.reminded and ob.remind_at <= now < ob.due_at:
            ob_state.reminded = True
            em.event(EventKind.REMINDER, f"{ob.label}将于{ob.due_at.isoformat()}到期，请{ob.owner}报送",
                     section=ob.section, obligation=kind)
            em.notify(key=f"{st.incident_id}.{ob_state.notice_key}.reminder", unit_id=ob.owner_id, unit=ob.owner,
                      why=f"提醒：{ob.label}即将到期", rule=ob.rule, section=ob.section, kind="reminder",
                      role="值班员")
        if ob_state.status == "open" and ob.due_at <= now:
            ob_state.reminded = True
            ob_state.breach_detected_at = now
            lag = (now - ob.due_at).total_seconds()
            late_note = f"（检测滞后 {lag:.1f} 秒）" if lag > LATE_DETECTION_S else ""
            em.event(EventKind.BREACH, f"{ob.label}逾期未报（漏报）{late_note}", at=ob.due_at, section="5.5.2",
                     obligation=kind, detection_lag_s=round(lag, 3), detected_late=lag > LATE_DETECTION_S)
        if ob_state.escalating:
            for step in _chain(ob_state, plan):
                step_at = ob.due_at + timedelta(minutes=step.after_minutes)
                if step.step in ob_state.steps_done or step_at > now:
                    continue
                ob_state.steps_done.append(step.step)
                names = []
                for i, r in enumerate(step.notify):
                    unit_id = ob.owner_id if r.unit == "$owner" else r.unit
                    names.append(f"{_unit(plan, unit_id)}{r.role}")
                    em.notify(key=f"{st.incident_id}.{ob_state.notice_key}.step{step.step}.{unit_id}.r{i}", unit_id=unit_id,
                              unit=_unit(plan, unit_id), role=r.role, kind="escalation",
                              why=f"{ob.label}逾期未报，逐级督办（第{step.step}级）", rule=ob.rule, section="5.5.2")
                em.event(EventKind.ESCALATION, f"第{step.step}级督办：{'、'.join(names)}", at=step_at,
                         section="5.5.2", obligation=kind, step=step.step)


def _copy(state: IncidentState) -> IncidentState:
    """A copy safe to change: only the mutable parts are copied (report, decision and obligations'
    records are frozen and shared), which keeps a step cheap — a deep copy cost 75% of a drill eval."""
    return copy_with(state, {
        "obligations": {k: copy_with(ob, {"steps_done": list(ob.steps_done)}) for k, ob in state.obligations.items()},
        "notified": list(state.notified),
        "routed": list(state.routed),
        "seen": list(state.seen),
    })


def handle(state: IncidentState, cmd: IncidentCommand, plan: Plan, now: datetime) -> Outcome:
    """Apply one command to an incident. A command id seen before changes nothing."""
    if cmd.id in state.seen:
        return Outcome(state=state)
    st = _copy(state)
    if not isinstance(cmd.body, DueCheck):  # due checks are idempotent by themselves
        st.seen = (st.seen + [cmd.id])[-SEEN_MAX:]
    em = _Emitter(st, now, plan)
    _switched(em, plan)
    body = cmd.body
    if isinstance(body, ReportFiled):
        _file(em, body, plan)
    elif isinstance(body, ApprovalRecorded):
        _approve(em, body)
    elif isinstance(body, EndRecorded):
        _end(em, body, plan)
    elif isinstance(body, DueCheck):
        pass
    _due(em, plan)  # whatever the command, anything due by now is acted on
    return em.out


def check_due(state: IncidentState, plan: Plan, now: datetime) -> Outcome:
    due = next_due_at(state, plan)
    if due is None or due > now:
        return Outcome(state=state)
    st = _copy(state)
    em = _Emitter(st, now, plan)
    _due(em, plan)
    return em.out if not em.out.empty else Outcome(state=state)


def next_due_at(state: IncidentState, plan: Plan) -> datetime | None:
    """The earliest moment something of this incident falls due: reminder, breach or escalation step."""
    times: list[datetime] = []
    for ob_state in state.obligations.values():
        ob = ob_state.obligation
        if ob_state.status == "open":
            times.append(ob.due_at)
            if not ob_state.reminded and ob.remind_at < ob.due_at:
                times.append(ob.remind_at)
        elif ob_state.escalating:
            for step in _chain(ob_state, plan):
                if step.step not in ob_state.steps_done:
                    times.append(ob.due_at + timedelta(minutes=step.after_minutes))
                    break
    return min(times) if times else None


def sweep_due_at(state: IncidentState, plan: Plan) -> datetime | None:
    """When the live service must next check this incident: None for a drill on its own simulated
    clock, whose runner sends its due checks."""
    return None if state.simulated_clock else next_due_at(state, plan)


def live_summary(state: IncidentState) -> tuple[str, tuple[str, ...]] | None:
    """What the command center counts of an incident while it is live (not a drill, not ended): its
    response level and the kinds of its open obligations; None once it is not live."""
    if state.drill or state.end is not None:
        return None
    return state.decision.response_level.value, tuple(k for k, ob in state.obligations.items() if ob.status == "open")
