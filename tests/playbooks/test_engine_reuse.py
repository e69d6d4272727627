"""What the engine reuses between decisions: cheap copies of validated templates, and a bounded memo."""

from __future__ import annotations

from datetime import datetime, timezone

from playbooks.engine import copy_with, decide
from playbooks.lifecycle import start
from tests.playbooks.conftest import NOW as T
from tests.playbooks.conftest import make_report
from topics.models import IncidentReported, Location


def _reported(plan):
    report = make_report()
    return IncidentReported(id=report.report_id, incident_id=report.report_id, report=report, accepted_at=T)


def test_a_frozen_copy_reads_as_model_copy_does(plan):
    ob = decide(make_report(), plan, T).obligations[0]
    later = datetime(2026, 12, 2, tzinfo=timezone.utc)
    mine, theirs = copy_with(ob, {"due_at": later}), ob.model_copy(update={"due_at": later})
    assert mine == theirs and mine.model_fields_set == theirs.model_fields_set
    assert mine.model_dump_json() == theirs.model_dump_json()
    assert ob.due_at != later  # the template is untouched


def test_a_frozen_copy_given_a_field_its_template_left_unset_counts_it_set():
    loc = Location(street="梨园镇")
    assert loc.model_fields_set == {"street"}
    copy = copy_with(loc, {"address": "九棵树"})
    theirs = loc.model_copy(update={"address": "九棵树"})
    assert copy.model_fields_set == theirs.model_fields_set == {"street", "address"}
    assert loc.model_fields_set == {"street"}


def test_a_mutable_state_copy_has_its_own_fields_set(plan):
    state = start(_reported(plan), plan, T).state
    copy = copy_with(state, {"seq": state.seq})
    assert copy.model_fields_set is not state.model_fields_set
    copy.approval_requested_at = T  # a state is changed in place step by step: the original must not see it
    assert "approval_requested_at" in copy.model_fields_set
    assert state.approval_requested_at is None


def test_a_full_memo_drops_its_older_half_and_keeps_deciding(plan, monkeypatch):
    from playbooks import memo

    monkeypatch.setattr(memo.DECISIONS, "limit", 40)
    monkeypatch.setattr(memo.RULES, "limit", 40)
    memo.clear_memos()
    reports = [make_report(report_id=f"m-{i}", facts={"injuries": i}) for i in range(60)]
    cold = [decide(r, plan, T).model_dump_json() for r in reports]
    assert len(memo.DECISIONS) <= 40 and len(memo.RULES) <= 40
    assert memo.report_key(reports[-1], plan) in memo.DECISIONS  # the recent stay warm
    assert memo.report_key(reports[0], plan) not in memo.DECISIONS
    assert [decide(r, plan, T).model_dump_json() for r in reports] == cold
    memo.clear_memos()


def test_every_list_of_a_decision_is_its_own(plan):
    """decide() copies its memoised template's lists by name: a list field added to Decision must be
    copied too, or one caller's append would show in every later decision of a like report."""
    from topics.models import Decision

    first, second = decide(make_report(report_id="own-1"), plan, T), decide(make_report(report_id="own-2"), plan, T)
    lists = [name for name, value in first.__dict__.items() if isinstance(value, list)]
    assert set(lists) == {name for name in Decision.model_fields if isinstance(getattr(second, name), list)}
    assert len(lists) >= 6
    for name in lists:
        assert getattr(first, name) is not getattr(second, name), name
        assert getattr(first, name) == getattr(second, name) or name == "obligations", name


def test_every_condition_key_says_what_it_reads():
    """The memo keys rule matching by what the plan's conditions read: a condition key added to the
    plan's vocabulary without a reading would let two incidents that differ in it share rules."""
    from playbooks.conditions import COMBINATORS, CONTEXT_READS, REPORT_READS
    from playbooks.plan import Condition

    assert set(Condition.model_fields) == {*COMBINATORS, *CONTEXT_READS, *REPORT_READS}
    assert not set(CONTEXT_READS) & set(REPORT_READS)


def test_the_memo_key_follows_the_keys_and_names_the_plan_uses(plan):
    from playbooks.conditions import plan_reads

    used = plan_reads(plan)
    assert {"grade_in", "level_in", "ended", "fact_positive", "flag"} <= set(used)
    assert "deaths" in used["fact_positive"] and "deaths_incl_missing" not in used["fact_positive"]  # raw parts
    edited = plan.model_copy(update={"notifications": [*plan.notifications, plan.notifications[0].model_copy(
        update={"when": plan.notifications[0].when.model_copy(update={"type_in": ["flood"]})})]})
    assert "type_in" in plan_reads(edited) and "type_in" not in used
