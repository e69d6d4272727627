"""The worker's table values: a head the schedule is rebuilt from, then the state; older values still read."""

from __future__ import annotations

from datetime import datetime, timezone

from cryptography.fernet import Fernet

from playbooks.lifecycle import next_due_at, start
from playbooks.plan import load_plan
from services.intake import accept
from services.privacy import Sealer
from services.worker.table_codec import Head, decode_head, decode_state, encode_state, head_of
from topics.requests import ReportSubmission

PLAN = load_plan()
NOW = datetime(2026, 11, 22, 1, 30, tzinfo=timezone.utc)


def _state(**over):
    data = {"type": "燃气事故", "occurred_at": "2026-11-22T09:25:00+08:00", "received_at": "2026-11-22T09:30:00+08:00",
            "location": {"street": "梨园镇"}, "facts": {"deaths": 3}, "summary": "燃气管道爆炸"}
    data.update(over)
    rec = accept(ReportSubmission.model_validate(data), plan=PLAN, sealer=Sealer(Fernet.generate_key()), now=NOW)
    return start(rec, PLAN, NOW).state


def test_a_value_reads_back_as_the_same_state_and_its_head():
    state = _state()
    raw = encode_state(state, head_of(state, PLAN))
    assert decode_state(raw) == state
    head = decode_head(raw, PLAN)
    assert head == head_of(state, PLAN)
    assert head.due == next_due_at(state, PLAN) and head.due is not None
    assert head.level == state.decision.response_level.value
    assert set(head.open_kinds) == {k for k, ob in state.obligations.items() if ob.status == "open"}


def test_an_ended_or_drill_incident_is_not_on_the_gauges():
    state = _state()
    assert head_of(state.model_copy(update={"drill": True}), PLAN).level is None
    assert head_of(state.model_copy(update={"simulated_clock": True}), PLAN).due is None


def test_a_value_without_head_written_by_an_older_worker_still_reads():
    state = _state()
    old = state.model_dump_json().encode()
    assert decode_state(old) == state
    assert decode_head(old, PLAN) == head_of(state, PLAN)


def test_the_head_line_ends_at_the_first_newline_whatever_the_state_holds():
    state = _state(summary="第一行\n第二行")
    raw = encode_state(state, head_of(state, PLAN))
    assert raw.count(b"\n") == 1
    assert decode_state(raw) == state
    assert isinstance(decode_head(raw, PLAN), Head)
