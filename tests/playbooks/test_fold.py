"""The one fold of an incident's events: the obligation's moves as one table, each row driven
through the lifecycle (the worker's state) and read back by the fold (what the API, the board and
drill scoring read), which must agree."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from playbooks.fold import TRANSITIONS, Transition, fold, next_status
from playbooks.lifecycle import Outcome, check_due, handle, start
from tests.playbooks.conftest import make_report
from topics.models import ApprovalRecorded, EndRecorded, EventKind, FollowupFacts, IncidentCommand, IncidentReported, ReportFiled

RECEIVED = datetime(2026, 11, 22, 1, 20, tzinfo=timezone.utc)
M = timedelta(minutes=1)


class Story:
    """An incident driven step by step, every event kept: the fold reads them as the topics would."""

    def __init__(self, plan, **facts):
        self.plan, self.n = plan, 0
        report = make_report(**({"facts": facts} if facts else {}))
        self.last = start(IncidentReported(id=report.report_id, incident_id=report.report_id, report=report,
                                           accepted_at=RECEIVED), plan, RECEIVED)
        self.before, self.events = None, list(self.last.events)

    def _step(self, out: Outcome) -> Story:
        self.before, self.last = self.last.state, out
        self.events += out.events
        return self

    def _cmd(self, body) -> IncidentCommand:
        self.n += 1
        return IncidentCommand(id=f"c{self.n}", incident_id=self.last.state.incident_id, body=body)

    def due(self, minutes: int) -> Story:
        return self._step(check_due(self.last.state, self.plan, RECEIVED + minutes * M))

    def file(self, kind: str, minutes: int, **facts) -> Story:
        at = RECEIVED + minutes * M
        body = ReportFiled(id=f"f{self.n}", incident_id=self.last.state.incident_id, kind=kind, unit_id="x",
                           filed_at=at, filed_by="值班员甲", followup=FollowupFacts(facts=facts) if facts else None)
        return self._step(handle(self.last.state, self._cmd(body), self.plan, at))

    def approve(self, minutes: int) -> Story:
        at = RECEIVED + minutes * M
        body = ApprovalRecorded(id=f"a{self.n}", incident_id=self.last.state.incident_id, approver="李某",
                                approver_role="director", approved_at=at, recorded_by="指挥员乙")
        return self._step(handle(self.last.state, self._cmd(body), self.plan, at))

    def end(self, minutes: int, authority: str = "district_committee") -> Story:
        at = RECEIVED + minutes * M
        body = EndRecorded(id=f"end{self.n}", incident_id=self.last.state.incident_id, authority=authority,
                           decided_by="区应急委", ended_at=at, recorded_by="指挥员乙")
        return self._step(handle(self.last.state, self._cmd(body), self.plan, at))


# Each row of TRANSITIONS, by its place in the table: the story that makes it happen, and the
# obligation it moves. The story's last step is the one that moves it.
STORIES: dict[int, tuple[str, Callable]] = {
    0: ("phone_report", lambda p: Story(p)),
    1: ("detailed_report", lambda p: Story(p)),
    2: ("city_report", lambda p: Story(p).file("followup", 60, deaths=10)),
    3: ("evaluation_report", lambda p: Story(p).end(30)),
    4: ("city_report", lambda p: Story(p, deaths=3).file("followup", 20, deaths=1).file("followup", 40, deaths=12)),
    5: ("city_report", lambda p: Story(p, deaths=3).due(61).file("followup", 62, deaths=1).file("followup", 70, deaths=12)),
    6: ("phone_report", lambda p: Story(p).file("phone_report", 8)),
    7: ("phone_report", lambda p: Story(p).file("phone_report", 12)),  # no sweep ran since the due time
    8: ("phone_report", lambda p: Story(p).due(10).file("phone_report", 13)),
    9: ("phone_report", lambda p: Story(p).due(10)),
    10: ("phone_report", lambda p: Story(p).due(10).due(20)),
    11: ("public_release", lambda p: Story(p, deaths=10).file("followup", 30, deaths=1)),
    12: ("written_report", lambda p: Story(p).end(12)),
    13: ("city_report", lambda p: Story(p, deaths=10).due(61).file("followup", 62, deaths=1)),
    14: ("phone_report", lambda p: Story(p).due(10).end(12)),
    # 4.1.5 及时续报 at 一级: the follow-up meets the one owed and opens the next in the same step
    15: ("followup", lambda p: Story(p, deaths=3).file("followup", 50, deaths=3)),
    16: ("followup", lambda p: Story(p, deaths=3).due(61).file("followup", 70, deaths=3)),
}


def test_every_row_has_its_story():
    assert sorted(STORIES) == list(range(len(TRANSITIONS)))


def test_rows_that_share_an_event_and_a_status_agree_on_the_next():
    seen: dict[tuple, str] = {}
    for t in TRANSITIONS:
        assert seen.setdefault((t.event, t.before), t.after) == t.after, t


@pytest.mark.parametrize("index", range(len(TRANSITIONS)),
                         ids=[f"{t.section}-{t.event.value}-{t.before}-{t.after}" for t in TRANSITIONS])
def test_transition(plan, index):
    row: Transition = TRANSITIONS[index]
    kind, story = STORIES[index]
    s = story(plan)
    moved = [e for e in s.last.events if e.kind is row.event and e.obligation == kind]
    assert moved, f"no {row.event.value} of {kind}"
    # the status just before the event, as the timeline tells it (a step may move it twice: a follow-up
    # meets the one owed, then opens the next)
    events = list(s.events)
    before = fold(events[:events.index(moved[-1])]).obligations.get(kind)
    assert (before.status if before else None) == row.before
    assert s.last.state.obligations[kind].status == row.after  # the worker's state
    assert fold(s.events).obligations[kind].status == row.after  # what the timeline says
    # the step names the row's section: the event itself, or what caused it (a regrade, the end)
    sections = {part.strip() for e in s.last.events for part in (e.section or "").split(";")}
    assert row.section in sections
    assert next_status(row.before, row.event) == row.after


def test_a_move_the_table_lacks_leaves_the_obligation_as_it_was(plan):
    s = Story(plan).file("phone_report", 8)  # met
    events = list(s.events)
    breach = events[-1].model_copy(update={"kind": EventKind.BREACH, "seq": events[-1].seq + 1})
    assert next_status("met", EventKind.BREACH) is None
    assert fold([*events, breach]).obligations["phone_report"].status == "met"


def test_the_fold_reads_level_approval_and_end(plan):
    s = Story(plan, deaths=3).file("followup", 20, deaths=12)
    state = fold(s.events)
    assert (state.grade, state.level) == (s.last.state.decision.grade.value, s.last.state.decision.response_level.value)
    assert state.regraded_to == ["重大"] and state.approval_requested_at == RECEIVED  # asked for at the start
    assert not state.approved and not state.ended
    state = fold(s.approve(30).end(200, authority="city").events)  # 4.1.3, 4.8.2: 重大 is ended by the city
    assert state.approved_at == RECEIVED + 30 * M and state.approver == "李某"
    assert state.ended_at == RECEIVED + 200 * M and state.end_authority == "city" and state.ended
