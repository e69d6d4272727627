"""The API's read model of an incident, fed the lifecycle's own events."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from playbooks.lifecycle import check_due, handle, start
from playbooks.plan import load_plan
from services.view import IncidentReadModel
from tests.playbooks.conftest import make_report
from topics.models import EndRecorded, IncidentCommand, IncidentReported

RECEIVED = datetime(2026, 11, 22, 1, 20, tzinfo=timezone.utc)
M = timedelta(minutes=1)


@pytest.fixture(scope="module")
def plan():
    return load_plan()


def test_a_missed_report_stays_missed_on_the_board_after_the_end(plan):  # 5.5.2, 4.8.2
    report = make_report()
    rec = IncidentReported(id=report.report_id, incident_id=report.report_id, report=report, accepted_at=RECEIVED)
    began = start(rec, plan, RECEIVED)
    due = check_due(began.state, plan, RECEIVED + 10 * M)  # the phone report is missed
    t = RECEIVED + 12 * M
    body = EndRecorded(id="end-v", incident_id=rec.incident_id, authority="district_committee", decided_by="区应急委",
                       ended_at=t, recorded_by="指挥员乙")
    ended = handle(due.state, IncidentCommand(id="c-end-v", incident_id=rec.incident_id, body=body), plan, t)
    view = IncidentReadModel(rec.incident_id)
    for event in [*began.events, *due.events, *ended.events]:
        view.add_event(event)
    assert view.obligations["phone_report"]["status"] == "missed"
    assert view.obligations["written_report"]["status"] == "closed"
    assert view.ended
