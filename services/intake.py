"""Intake: a submitted report becomes an IncidentReported record (shared by the API and the CLI)."""

from __future__ import annotations

import uuid
from datetime import datetime

from playbooks.engine import ReportRejected, check_report
from playbooks.plan import Plan
from services.privacy import Sealer
from topics.models import IncidentReported
from topics.requests import ReportSubmission


def new_report_id() -> str:
    return f"r-{uuid.uuid4().hex[:20]}"


def accept(
    submission: ReportSubmission, *, plan: Plan, sealer: Sealer, now: datetime, drill: bool = False,
    raised_by: str = "cli",
) -> IncidentReported:
    """Validate against the plan (type, street) and seal the reporter. Raises ReportRejected."""
    report_id = submission.report_id or new_report_id()
    facts = submission.facts_only(report_id=report_id, drill=drill)
    problems = check_report(facts, plan)
    if problems:
        raise ReportRejected(problems)
    return IncidentReported(
        id=report_id,
        incident_id=report_id,
        report=facts,
        private_sealed=sealer.seal(submission.private_details()),
        accepted_at=now,
        raised_by=raised_by,
    )
