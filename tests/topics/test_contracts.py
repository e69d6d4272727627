"""Contracts: schemas checked in and current, round-trips, refusals that name the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from topics.catalog import CATALOG
from topics.models import IncidentReported
from topics.requests import ReportSubmission
from topics.schemas import SCHEMA_DIR, rendered

GOOD = {
    "type": "燃气事故",
    "occurred_at": "2026-11-22T09:15:00+08:00",
    "received_at": "2026-11-22T09:20:00+08:00",
    "reporter": {"name": "张三", "phone": "13800000000"},
    "summary": "张三报告",
}


def test_schemas_are_current():
    for filename, text in rendered().items():
        path = SCHEMA_DIR / filename
        assert path.exists(), f"{filename} missing: run `python -m topics.schemas`"
        assert path.read_text(encoding="utf-8") == text, f"{filename} is stale: run `python -m topics.schemas`"
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == set(rendered())


def test_catalog_names_are_unique_and_models_are_contracts():
    names = [spec.name for spec in CATALOG]
    assert len(names) == len(set(names))
    for spec in CATALOG:
        assert spec.model.model_config.get("extra") == "forbid"
        assert "id" in spec.model.model_fields


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"received_at": "2026-11-22T09:20:00"}, "received_at"),
        ({"occurred_at": "2026-11-22T09:15:00"}, "occurred_at"),
        ({"received_at": "2026-11-22T09:00:00+08:00"}, "received_at"),
        ({"facts": {"deaths": -1}}, "facts.deaths"),
        ({"bogus": 1}, "bogus"),
        ({"flags": {"unknown_flag": True}}, "flags.unknown_flag"),
        ({"summary": "x" * 5000}, "summary"),
    ],
)
def test_bad_reports_name_the_field(change, field):
    with pytest.raises(ValidationError) as info:
        ReportSubmission.model_validate({**GOOD, **change})
    text = str(info.value)
    assert field.split(".")[-1] in text


def test_reported_record_round_trips_without_personal_data():
    sub = ReportSubmission.model_validate(GOOD)
    facts = sub.facts_only(report_id="r-1")
    rec = IncidentReported(id="r-1", incident_id="r-1", report=facts, accepted_at=facts.received_at)
    wire = rec.model_dump_json()
    assert IncidentReported.model_validate_json(wire) == rec
    assert "张三" not in wire and "13800000000" not in wire  # reporter and summary travel sealed only
    assert rec.report.occurred_at.utcoffset().total_seconds() == 0
