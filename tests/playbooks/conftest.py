from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from playbooks.plan import Plan, load_plan
from topics.models import ReportFacts

NOW = datetime(2026, 11, 22, 1, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def plan() -> Plan:
    return load_plan()


def make_report(type_: str = "gas_accident", **over: Any) -> ReportFacts:
    """A report with quiet defaults; keyword arguments override top-level fields or nested parts."""
    base: dict[str, Any] = {
        "report_id": "t-1",
        "type": type_,
        "occurred_at": "2026-11-22T09:15:00+08:00",
        "received_at": "2026-11-22T09:20:00+08:00",
        "location": {"street": "梨园镇"},
        "facts": {},
        "flags": {},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return ReportFacts.model_validate(base)
