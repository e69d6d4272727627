"""schemathesis hooks for tests/e2e/test_fuzz.py: the two rules of the request bodies that JSON Schema
cannot state, kept by the cases schemathesis means to be valid. The document states both in words
(topics.requests), and the API refuses a body that breaks them with a 422 naming the field:

- a time people enter is between 2000-01-01 and 2100-01-01 UTC (topics.models.InputDatetime);
- a report is not received before it occurred (ReportSubmission.received_at);
- an override (代班) ends after it starts (OverrideRequest);
- a period asked about in the query (`at`, `from`, `to` of the duty routes) is within 2000-2100, and
  `to` comes after `from`, at most 62 days (services/web/routes/duty.py's span).

What an uploaded 值班表 holds is beyond JSON Schema altogether: tests/e2e/schemathesis.toml lets
POST /rosters answer 422 to a file the schema cannot tell from a good one.

Cases meant to be invalid are left as generated: the API must still refuse them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import schemathesis
from schemathesis.core.parameters import ParameterLocation

from topics.models import EARLIEST, LATEST

INPUT_TIMES = ("occurred_at", "received_at", "filed_at", "approved_at", "ended_at", "start", "end", "shift_start")
IN_RANGE = "2026-11-22T09:15:00+08:00"


def _in_range(text: object) -> bool:
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        return False
    try:
        return value.tzinfo is not None and EARLIEST <= value.astimezone(timezone.utc) < LATEST
    except OverflowError:
        return False


def _keep_query(case) -> None:
    """The duty routes' period: in range, `to` after `from` and within 62 days (what the 422 names)."""
    query = case.query
    if not isinstance(query, dict):
        return
    for name in ("at", "from", "to"):
        if name in query and not _in_range(query[name]):
            query[name] = IN_RANGE
    start, end = query.get("from"), query.get("to")
    if isinstance(start, str) and isinstance(end, str):
        a, b = datetime.fromisoformat(start), datetime.fromisoformat(end)
        if not timedelta(0) < b - a <= timedelta(days=62):
            if a + timedelta(days=7) >= LATEST:  # a `from` at the end of 2099: the week after is out of range
                a = datetime.fromisoformat(IN_RANGE)
                query["from"] = IN_RANGE
            query["to"] = (a + timedelta(days=7)).isoformat()
    elif isinstance(end, str) and "from" not in query:
        # `from` defaults to this week's Monday: a `to` near now is after it and within 62 days
        query["to"] = (datetime.now(timezone.utc) + timedelta(days=7)).isoformat()
    case.query = query


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is not None and not meta.is_negative_at(ParameterLocation.QUERY):
        _keep_query(case)
    body = case.body
    if meta is None or meta.is_negative_at(ParameterLocation.BODY) or not isinstance(body, dict):
        return case
    for name in INPUT_TIMES:
        if isinstance(body.get(name), str) and not _in_range(body[name]):
            body[name] = IN_RANGE
    occurred, received = body.get("occurred_at"), body.get("received_at")
    if isinstance(occurred, str) and isinstance(received, str) and \
            datetime.fromisoformat(received) < datetime.fromisoformat(occurred):
        body["occurred_at"], body["received_at"] = received, occurred
    start, end = body.get("start"), body.get("end")
    if isinstance(start, str) and isinstance(end, str) and datetime.fromisoformat(end) <= datetime.fromisoformat(start):
        # an override ends after it starts
        body["start"], body["end"] = (end, start) if end != start else (IN_RANGE, "2026-11-22T10:15:00+08:00")
    case.body = body
    return case
