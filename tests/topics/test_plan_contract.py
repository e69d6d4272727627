"""PlanAdopted (yingji.plan.adoptions): the texts travel byte for byte (the version is their digest), a plan too
large for the topic is refused at the contract, and the topic takes the shipped plan with room to spare."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from playbooks.plan import DATA_DIR
from topics.catalog import PLAN_ADOPTIONS
from topics.plan import PLAN_TEXTS_MAX, PlanAdopted, adoption_id

AT = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)


def record(files: dict[str, str]) -> PlanAdopted:
    return PlanAdopted(id=adoption_id("abc", AT), version="abc", files=files, adopted_by="王某", adopted_at=AT,
                       reason="修订")


def test_texts_round_trip_unchanged_with_their_whitespace():
    files = {"units.yaml": "units: []\n\n", "grading.yaml": "  families: {}\n"}
    back = PlanAdopted.model_validate_json(record(files).model_dump_json())
    assert back.files == files


def test_the_shipped_plan_fits_the_topic_and_too_large_a_plan_is_refused():
    files = {p.name: p.read_text(encoding="utf-8") for p in DATA_DIR.glob("*.yaml")}
    size = len(record(files).model_dump_json().encode())
    assert size < PLAN_TEXTS_MAX < PLAN_ADOPTIONS.max_message_bytes - 64 * 1024
    assert PLAN_ADOPTIONS.configs()["max.message.bytes"] == str(PLAN_ADOPTIONS.max_message_bytes)
    with pytest.raises(ValidationError, match="files"):
        record({"units.yaml": "x" * (PLAN_TEXTS_MAX + 1)})
    with pytest.raises(ValidationError):
        record({"../units.yaml": "units: []\n"})
