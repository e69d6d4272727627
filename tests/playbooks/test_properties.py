"""Properties of the engine and the incident's life over every valid report (issue 5, part 3).

Hypothesis draws reports the contract accepts: any of the 52 types by id or Chinese name, any
street of the plan or none, aware times in any offset with received_at >= occurred_at, facts from
zero to the extremes the contract lets through, every flag, any asserted grade, key areas of the
plan and free text. A draw the contract refuses (ValidationError) is discarded, so the strategy
follows the contract if it narrows; anything else a draw raises is a failure.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from playbooks.engine import decide
from playbooks.lifecycle import check_due, start
from playbooks.plan import FLAGS, load_plan
from topics.models import (
    EARLIEST,
    GRADE_RANK,
    LATEST,
    LEVEL_RANK,
    Decision,
    EventKind,
    Grade,
    IncidentReported,
    ReportFacts,
)

PLAN = load_plan()
# 300 examples a property; `make test` runs 100 (YINGJI_PROPERTY_EXAMPLES), `make properties` the full 300
SETTINGS = settings(max_examples=int(os.environ.get("YINGJI_PROPERTY_EXAMPLES", "300")), deadline=None)
RAN: Counter[str] = Counter()  # examples that reached each property's body, shown at the module's end

UTC = timezone.utc
MIN_UTC = datetime.min.replace(tzinfo=UTC)
MAX_UTC = datetime.max.replace(tzinfo=UTC)
COUNT_FACTS = ("deaths", "missing", "serious_injuries", "injuries", "poisoned", "evacuated")
GRADED_FACTS = ("deaths", "missing", "serious_injuries", "poisoned", "direct_loss_yuan", "evacuated",
                "magnitude", "interruption_hours")
KEY_AREAS = ("城市副中心", "北京城市副中心", "副中心", "行政办公区", "京津冀临界地区", "京津冀临界", "人员密集场所")


@pytest.fixture(scope="module", autouse=True)
def _examples_summary(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not RAN:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line("hypothesis examples run per property: " + ", ".join(f"{k}={v}" for k, v in RAN.items()))


# --- strategies -------------------------------------------------------------------------------


def _mostly(common: st.SearchStrategy, rare: st.SearchStrategy, one_in: int = 12) -> st.SearchStrategy:
    """`common` most of the time, `rare` (the contract's extremes) about once in `one_in` draws."""
    return st.integers(0, one_in - 1).flatmap(lambda k: rare if k == 0 else common)


def _type_names() -> list[str]:
    names: list[str] = []
    for t in PLAN.types.values():
        names += [t.id, t.name]
        if t.note:
            names += [f"{t.name}（{t.note}）", f"{t.name}({t.note})"]
    return names


TYPES = st.sampled_from(_type_names())
STREETS = st.one_of(st.none(), st.just(""), st.sampled_from(sorted(PLAN.streets)))
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
COUNTS = _mostly(st.integers(0, 200) | st.integers(0, 10**7), st.integers(min_value=0) | st.integers(10**300, 10**320))
HUGE_FLOATS = st.just(float("inf")) | st.floats(min_value=0, allow_nan=False, allow_infinity=True)
AMOUNTS = _mostly(st.floats(0, 1e6) | st.floats(0, 1e11), HUGE_FLOATS)
MAGNITUDES = st.none() | st.floats(0, 10)
HOURS = st.none() | _mostly(st.floats(0, 48), HUGE_FLOATS)
EDGE_TIMES = (  # the whole range the contract accepts, its two ends drawn on purpose
    st.datetimes()
    | st.datetimes(max_value=datetime(1, 1, 3))
    | st.datetimes(min_value=datetime(9999, 12, 29))
)
INSTANTS = _mostly(st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1)), EDGE_TIMES).map(
    lambda d: d.replace(tzinfo=UTC)
)
GAPS = _mostly(
    st.timedeltas(timedelta(0), timedelta(days=3)),
    st.timedeltas(timedelta(0), timedelta(days=3_000_000)),
)
KEY_AREA = st.sampled_from(KEY_AREAS) | st.text(min_size=1, max_size=20)


def _render(instant: datetime, tz: timezone) -> datetime:
    """The same instant written in another offset, when that offset's wall time is representable."""
    try:
        return instant.astimezone(tz)
    except OverflowError:
        return instant


@st.composite
def report_dicts(draw) -> dict[str, Any]:
    occurred = draw(INSTANTS)
    gap = draw(GAPS)
    received = occurred + gap if MAX_UTC - occurred >= gap else MAX_UTC
    return {
        "report_id": draw(st.from_regex(r"[A-Za-z0-9._:\-]{1,40}", fullmatch=True)),
        "type": draw(TYPES),
        "occurred_at": _render(occurred, draw(OFFSETS)),
        "received_at": _render(received, draw(OFFSETS)),
        "location": {
            "street": draw(STREETS),
            "address": draw(st.text(max_size=30)),
            "key_area": draw(st.lists(KEY_AREA, max_size=4)),
        },
        "facts": {
            **{name: draw(COUNTS) for name in COUNT_FACTS},
            "direct_loss_yuan": draw(AMOUNTS),
            "magnitude": draw(MAGNITUDES),
            "interruption_hours": draw(HOURS),
        },
        "flags": {flag: draw(st.booleans()) for flag in FLAGS},
        "asserted_grade": draw(st.none() | st.sampled_from(list(Grade))),
        "asserted_by": draw(st.none() | st.sampled_from(["属地街道", "区应急办", "处置主责部门"])),
        "source": draw(st.sampled_from(["", "110", "12345", "monitoring"])),
        "drill": draw(st.booleans()),
    }


def _valid(data: dict[str, Any]) -> ReportFacts:
    try:
        return ReportFacts.model_validate(data)
    except ValidationError:
        assume(False)
        raise  # unreachable: assume(False) stops the example


reports = report_dicts().map(_valid)
nows = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1)).map(lambda d: d.replace(tzinfo=UTC))  # the clock's now


def _report(**over: Any) -> ReportFacts:
    """A quiet report for the explicit examples below; keyword arguments replace top-level fields."""
    base: dict[str, Any] = {"report_id": "ex-1", "type": "flood", "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
                            "received_at": datetime(2026, 1, 1, tzinfo=UTC)}
    return ReportFacts.model_validate({**base, **over})


def _decide(report: ReportFacts, now: datetime | None = None) -> Decision:
    return decide(report, PLAN, now or datetime(2026, 11, 22, 1, 30, tzinfo=UTC))


def _with(report: ReportFacts, **parts: dict[str, Any]) -> ReportFacts:
    data = report.model_dump()
    for key, changes in parts.items():
        data[key] = {**data[key], **changes}
    return ReportFacts.model_validate(data)


# --- the contract: what decide may be given ---------------------------------------------------


@SETTINGS
@example(occurred=datetime(1, 1, 1), received=datetime(1, 1, 1), tz_o=UTC, tz_r=timezone(timedelta(minutes=1)))
@given(occurred=EDGE_TIMES, received=EDGE_TIMES, tz_o=OFFSETS, tz_r=OFFSETS)
def test_any_aware_times_validate_or_are_refused_naming_the_field(occurred, received, tz_o, tz_r):
    """A report's times are accepted, or refused with a ValidationError (a 422, never a crash) that
    names exactly the fields at fault: a time outside 2000-2100, or a receipt before the event."""
    RAN["contract_times"] += 1
    times = {"occurred_at": occurred.replace(tzinfo=tz_o), "received_at": received.replace(tzinfo=tz_r)}
    # aware datetimes compare as if in UTC without overflowing, so this reading is independent of
    # the contract's own conversion
    at_fault = {name for name, t in times.items() if not EARLIEST <= t < LATEST}
    if not at_fault and times["received_at"] < times["occurred_at"]:
        at_fault = {"received_at"}
    try:
        ReportFacts.model_validate({"report_id": "t-1", "type": "gas_accident", **times})
    except ValidationError as exc:
        assert {_field_named(e) for e in exc.errors()} == at_fault, exc
    else:
        assert not at_fault, f"accepted, yet {sorted(at_fault)} should be refused"


def _field_named(error: dict) -> str:
    """The field an error names: its location, or for a check across fields the "field: " its
    message starts with."""
    if error["loc"]:
        return str(error["loc"][0])
    return error["msg"].removeprefix("Value error, ").split(":", 1)[0]


@SETTINGS
@given(report=reports)
def test_a_valid_report_travels_unchanged(report):
    """What the API accepts reaches the worker as it was: the JSON on the topic round-trips."""
    RAN["contract_roundtrip"] += 1
    assert ReportFacts.model_validate_json(report.model_dump_json()).model_dump() == report.model_dump()


# --- (1) decide never raises and is complete ------------------------------------------------


@SETTINGS
@given(report=reports, now=nows)
def test_decide_never_raises_and_is_complete(report, now):
    RAN["decide_complete"] += 1
    d = decide(report, PLAN, now)
    assert d.reasons and all(r.rule and r.section and r.text for r in d.reasons)
    assert d.lead_unit_ids and len(d.lead_units) == len(d.lead_unit_ids)
    assert d.obligations
    for ob in d.obligations:
        assert ob.starts_at.tzinfo is not None and ob.due_at.tzinfo is not None and ob.remind_at.tzinfo is not None
        assert ob.due_at >= ob.starts_at, ob.kind
        assert ob.remind_at <= ob.due_at, ob.kind


# --- (2) more harm never lowers the grade ---------------------------------------------------


@SETTINGS
@given(
    report=reports,
    more=st.dictionaries(
        st.sampled_from(GRADED_FACTS),
        _mostly(st.floats(0, 1e4), st.floats(0, 1e12)),
        min_size=1,
    ),
)
def test_more_harm_never_lowers_the_grade(report, more):
    RAN["grade_monotonic"] += 1
    facts = report.facts
    changes: dict[str, Any] = {}
    for name, extra in more.items():
        old = getattr(facts, name)
        if name == "magnitude":
            changes[name] = min(10.0, (old or 0.0) + extra)
        elif name == "direct_loss_yuan":
            changes[name] = min(1e15, old + extra)  # the contract's bounds
        elif name == "interruption_hours":
            changes[name] = min(1e5, (old or 0.0) + extra)
        else:
            changes[name] = min(100_000_000, old + int(extra))
    worse = _with(report, facts=changes)
    before, after = _decide(report), _decide(worse)
    assert GRADE_RANK[after.grade] >= GRADE_RANK[before.grade], (changes, before.grade, after.grade)
    assert GRADE_RANK[after.computed_grade] >= GRADE_RANK[before.computed_grade], changes


# --- (3) flags and key areas never lower the level nor drop a unit --------------------------


@SETTINGS
@given(report=reports, raised=st.sets(st.sampled_from(FLAGS)), areas=st.lists(KEY_AREA, max_size=3))
def test_flags_and_key_areas_never_lower_the_level_nor_drop_a_unit(report, raised, areas):
    flags = {f: True for f in raised if not getattr(report.flags, f)}
    assume(flags or areas)
    RAN["level_monotonic"] += 1
    key_area = (list(report.location.key_area) + areas)[:10]
    more = _with(report, flags=flags, location={"key_area": key_area})
    before, after = _decide(report), _decide(more)
    assert LEVEL_RANK[after.response_level] >= LEVEL_RANK[before.response_level], (flags, areas)
    dropped = {n.unit_id for n in before.notify} - {n.unit_id for n in after.notify}
    assert not dropped, (flags, areas, dropped)


# --- (4) deterministic; now only sets decided_at --------------------------------------------


@SETTINGS
@given(report=reports, now=nows, later=nows)
def test_decision_is_deterministic_and_now_only_sets_decided_at(report, now, later):
    RAN["deterministic"] += 1
    first, again, other = decide(report, PLAN, now), decide(report, PLAN, now), decide(report, PLAN, later)
    assert first == again
    assert first.decided_at == now and other.decided_at == later
    assert first.model_dump(exclude={"decided_at"}) == other.model_dump(exclude={"decided_at"})


# --- the incident's life: sweeps at growing times act once ----------------------------------


@SETTINGS
@given(
    report=reports,
    accepted_after=st.timedeltas(timedelta(0), timedelta(hours=30)),
    steps=st.lists(
        st.one_of(
            st.timedeltas(timedelta(0), timedelta(minutes=20)),
            st.integers(0, 180).map(lambda m: timedelta(minutes=m)),
            st.timedeltas(timedelta(0), timedelta(days=2)),
        ),
        max_size=25,
    ),
)
def test_sweeps_breach_and_escalate_each_obligation_once(report, accepted_after, steps):
    assume(MAX_UTC - report.received_at > accepted_after + sum(steps, timedelta(0)))
    RAN["lifecycle_once"] += 1
    now = report.received_at + accepted_after
    rec = IncidentReported(id=report.report_id, incident_id=report.report_id, report=report, accepted_at=now)
    out = start(rec, PLAN, now)
    state, events, notes = out.state, list(out.events), list(out.notifications)
    for step in steps:
        now += step
        out = check_due(state, PLAN, now)
        state = out.state
        events += out.events
        notes += out.notifications
    breaches = Counter(e.obligation for e in events if e.kind is EventKind.BREACH)
    assert all(n == 1 for n in breaches.values()), breaches
    escalations = Counter((e.obligation, e.details["step"]) for e in events if e.kind is EventKind.ESCALATION)
    assert all(n == 1 for n in escalations.values()), escalations
    keys = Counter(n.dedup_key for n in notes)
    assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


# --- the extremes found by these properties are refused at the edge, naming the field --------


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"facts": {"evacuated": 2**1024}}, "evacuated"),
        ({"facts": {"direct_loss_yuan": float("inf")}}, "direct_loss_yuan"),
        ({"facts": {"interruption_hours": float("inf")}}, "interruption_hours"),
        ({"occurred_at": "9999-12-31T23:55:00Z", "received_at": "9999-12-31T23:55:00Z"}, "occurred_at"),
        ({"occurred_at": "0001-01-01T00:00:00Z", "received_at": "0001-01-01T00:00:00+00:01"}, "occurred_at"),
    ],
    ids=["huge-count", "infinite-loss", "infinite-hours", "year-9999", "year-1"],
)
def test_extremes_are_refused_by_the_contract(over, field):
    with pytest.raises(ValidationError) as info:
        _report(**over)
    assert field in str(info.value)


LOOK_ALIKE_MAX = {"magnitude": 10, "interruption_hours": 100_000, "direct_loss_yuan": 1e15}  # the contract's bounds
TWEAKS = st.one_of(
    st.tuples(st.just("flags"), st.sampled_from(FLAGS)),
    st.tuples(st.just("facts"), st.sampled_from(["deaths", "missing", "injuries", "serious_injuries", "poisoned",
                                                   "evacuated", "direct_loss_yuan", "magnitude", "interruption_hours"])),
    st.tuples(st.just("key_area"), st.sampled_from(KEY_AREAS)),
    st.tuples(st.just("street"), STREETS),
    st.tuples(st.just("type"), TYPES),
    st.tuples(st.just("asserted_grade"), st.none() | st.sampled_from(list(Grade))),
    st.tuples(st.just("asserted_by"), st.none() | st.sampled_from(["属地街道", "区应急办"])),
)


def _twin(report: ReportFacts, tweak: tuple[str, Any]) -> ReportFacts:
    """The report with one thing a rule may read changed."""
    part, what = tweak
    data = report.model_dump()
    if part == "flags":
        data["flags"][what] = not data["flags"][what]
    elif part == "facts":
        data["facts"][what] = 0 if data["facts"][what] else {"magnitude": 5.5, "interruption_hours": 7.0}.get(what, 1)
    elif part == "key_area":
        areas = data["location"]["key_area"]
        data["location"]["key_area"] = [a for a in areas if a != what] if what in areas else [*areas, what][:10]
    elif part == "street":
        data["location"]["street"] = what
    else:
        data[part] = what
    return ReportFacts.model_validate(data)


@SETTINGS
@example(report=_report(type="rail_transit_incident", facts={"interruption_hours": 3.0}), other=_report(),
         tweak=("facts", "interruption_hours"), now=datetime(2026, 1, 1, tzinfo=UTC), scale=3, shift=0)
@given(report=reports, other=reports, tweak=TWEAKS, now=nows, scale=st.integers(2, 5), shift=st.integers(-600, 600))
def test_memoised_rule_matching_changes_no_decision(report, other, tweak, now, scale, shift):
    """The engine memoises rule matching by what the rules read. A report decided after any other,
    or after a look-alike (other amounts, same signs; other times; other id), is decided as by a cold
    engine."""
    from playbooks import memo

    memo.clear_memos()
    cold = decide(report, PLAN, now).model_dump(mode="json")
    facts = {k: (v * scale if isinstance(v, (int, float)) and v * scale <= LOOK_ALIKE_MAX.get(k, 10**8) else v)
             for k, v in report.facts.model_dump().items()}
    moved = timedelta(seconds=shift)
    look_alike = report.model_copy(update={
        "report_id": report.report_id + "-x", "facts": report.facts.model_validate(facts),
        "occurred_at": report.occurred_at + moved, "received_at": report.received_at + moved})
    memo.clear_memos()
    decide(other, PLAN, now)
    decide(look_alike, PLAN, now)
    assert decide(report, PLAN, now).model_dump(mode="json") == cold
    twin = _twin(report, tweak)
    memo.clear_memos()
    twin_cold = decide(twin, PLAN, now).model_dump(mode="json")
    memo.clear_memos()
    decide(report, PLAN, now)  # the memo now holds the report's rules: the twin must not get them
    assert decide(twin, PLAN, now).model_dump(mode="json") == twin_cold
    RAN["memo"] += 1


@SETTINGS
@given(report=reports, first_now=nows, now=nows, tz=OFFSETS, shift=st.integers(-600, 600),
       iid=st.none() | st.from_regex(r"[A-Za-z0-9._:\-]{1,40}", fullmatch=True), basis=st.none() | nows)
def test_memoised_decision_takes_ids_and_times_from_its_own_report(report, first_now, now, tz, shift, iid, basis):
    """The engine memoises a whole decision by what the rules read of the report. A report that
    differs only in its id and times, decided after the first for another incident, at another
    `now` (in any offset) and basis, is decided as by a cold engine; and as if its decision had
    been validated from the caller's incident id and `now`. (The basis is a record's validated time,
    2000-2100, as the lifecycle passes it: a year-9999 basis overflowed a due time no record brings.)"""
    from playbooks import memo

    moved = timedelta(seconds=shift)
    same = _valid({**report.model_dump(), "report_id": report.report_id + "-y",
                   "occurred_at": report.occurred_at + moved, "received_at": report.received_at + moved})
    now = now.astimezone(tz)
    memo.clear_memos()
    cold = decide(same, PLAN, now, incident_id=iid, basis_at=basis)
    memo.clear_memos()
    decide(report, PLAN, first_now)
    warm = decide(same, PLAN, now, incident_id=iid, basis_at=basis)
    assert warm.model_dump(mode="json") == cold.model_dump(mode="json")
    validated = Decision(**{**warm.__dict__, "incident_id": iid or same.report_id, "decided_at": now})
    assert warm.model_dump_json() == validated.model_dump_json()
    RAN["memo_decision"] += 1
