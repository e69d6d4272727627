"""Drills (7.2): shipped scenarios pass their own expectations, evaluation is deterministic, bad
scenarios are refused naming the line and field, a wrong expectation fails, and the scorer reads
records gathered from topics as well as an in-process replay."""

from __future__ import annotations

import importlib.util
import random
from datetime import timedelta

import pytest

from playbooks.drill.evaluation import evaluate, score, to_json, to_markdown
from playbooks.drill.replay import Observed, replay
from playbooks.drill.scenario import (
    SCENARIOS_DIR,
    ScenarioError,
    format_offset,
    load_scenario,
    parse_offset,
    parse_scenario,
)
from services.cli import drill as drill_cli
from services.cli.main import main as yingji
from services.cli.messages import EXIT_INVALID

SHIPPED = sorted(SCENARIOS_DIR.glob("*.yaml"))
MINIMAL = """\
id: tiny
name: 最小演练
kind: 单项
organiser: 区应急办
objectives: [检验]
start: 2026-11-22T09:00:00+08:00
duration: "02:00"
injects:
  - at: "00:00"
    action: report
    incident: a
    type: 燃气事故
    location: {street: 梨园镇}
  - {at: "00:10", action: file, incident: a, kind: phone_report}
expect:
  a:
    grade: 一般
    obligations: {phone_report: met}
"""


def test_at_least_six_scenarios_are_shipped():
    assert len(SHIPPED) >= 6


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_validates_and_passes_every_expectation(path, plan):
    scenario = load_scenario(path, plan)
    assert scenario.id == path.stem
    ev = evaluate(scenario, plan)
    failed = [f"{r.incident} {r.what}: expected {r.expected!r}, got {r.actual!r}" for r in ev.expectations if not r.passed]
    assert not failed, failed
    assert ev.score == 100.0 and ev.totals.expectations > 0


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_same_scenario_same_report(path, plan):
    scenario = load_scenario(path, plan)
    first, second = evaluate(scenario, plan), evaluate(load_scenario(path, plan), plan)
    assert to_json(first) == to_json(second)
    assert to_markdown(first) == to_markdown(second)


def test_every_drill_record_is_marked_as_a_drill(plan):
    obs = replay(load_scenario(SCENARIOS_DIR / "earthquake-m52.yaml", plan), plan)
    records = [r for inc in obs.incidents.values() for r in (*inc.events, *inc.notifications)]
    assert records and all(r.drill for r in records)


def test_score_reads_records_gathered_from_topics_as_well(plan):
    """`drill run` gathers events, decisions and notifications off the topics: shuffled, some twice."""
    scenario = load_scenario(SCENARIOS_DIR / "chemical-leak.yaml", plan)
    obs = replay(scenario, plan, run="r1")
    records = [r for inc in obs.incidents.values() for r in (*inc.events, *inc.decisions, *inc.notifications)]
    rng = random.Random(7)
    noisy = records + rng.sample(records, 10)  # at-least-once: some arrive twice
    rng.shuffle(noisy)
    gathered = Observed.from_records(scenario, noisy, run="r1")
    assert to_json(score(scenario, gathered)) == to_json(score(scenario, obs))


def test_a_wrong_expectation_fails(tmp_path, plan):
    text = (SCENARIOS_DIR / "gas-explosion.yaml").read_text(encoding="utf-8")
    wrong = text.replace("phone_report: missed", "phone_report: met").replace("response_level: 二级", "response_level: 一级")
    path = tmp_path / "wrong.yaml"
    path.write_text(wrong, encoding="utf-8")
    ev = evaluate(load_scenario(path, plan), plan)
    failed = {(r.what, r.expected, r.actual) for r in ev.expectations if not r.passed}
    assert failed == {("obligations.phone_report", "met", "missed"), ("response_level", "一级", "二级")}
    assert ev.score is not None and ev.score < 100
    assert "✘ 不符" in to_markdown(ev)
    assert yingji(["drill", "eval", str(path), "--strict"]) == drill_cli.EXIT_FAILED


def test_an_expectation_about_an_incident_that_never_happens_cannot_pass(plan):
    scenario = parse_scenario(MINIMAL, plan=plan)
    ev = score(scenario, Observed())  # nothing came back from the pipeline
    assert ev.totals.passed == 0 and ev.totals.failed == 2


def test_filing_at_the_due_minute_is_on_time(plan):
    ev = evaluate(parse_scenario(MINIMAL, plan=plan), plan)
    phone = next(o for o in ev.obligations if o.kind.value == "phone_report")
    assert (phone.status, phone.minutes, phone.escalation_step) == ("met", 0.0, 0)  # no breach came first


def test_longest_ids_fit_every_record_id_the_lifecycle_derives(plan):
    """Longest scenario id and key, the longest owner unit id (a first lead unit), escalation to the last step."""
    text = (MINIMAL.replace("id: tiny", "id: " + "x" * 20).replace("incident: a", "incident: " + "k" * 12)
            .replace("  a:", "  " + "k" * 12 + ":").replace("type: 燃气事故", "type: 建设工程施工突发事件")
            .replace('duration: "02:00"', 'duration: "800:00"'))
    text = text.replace('  - {at: "00:10", action: file', '  - {at: "00:30", action: end, incident: kkkkkkkkkkkk, '
                        'authority: district_committee}\n  - {at: "00:10", action: file')
    ev = evaluate(parse_scenario(text, plan=plan), plan)  # a record id over 120 characters would raise here
    assert {o.kind.value: o.escalation_step for o in ev.obligations}["evaluation_report"] == 2


def _bad(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new)


INVALID = [
    pytest.param(_bad("kind: 单项", "kind: 桌面"), 3, "kind", id="kind-not-in-vocabulary"),
    pytest.param(_bad("start: 2026-11-22T09:00:00+08:00", "start: 2026-11-22T09:00:00"), 6, "start", id="naive-start"),
    pytest.param(_bad('duration: "02:00"', "duration: two hours"), 7, "duration", id="offset-format"),
    pytest.param(_bad("start: 2026-11-22T09:00:00+08:00", "start: 1990-01-01T09:00:00+08:00"), 6, "start",
                 id="start-before-2000"),
    pytest.param(_bad("start: 2026-11-22T09:00:00+08:00", "start: 2099-12-31T23:00:00+00:00"), 7, "duration",
                 id="ends-after-2100"),
    pytest.param(_bad("start: 2026-11-22T09:00:00+08:00\n", "start: 2000-01-01T00:00:00+00:00\n").replace(
        "    type: 燃气事故\n", '    type: 燃气事故\n    occurred: "-00:05"\n'), 13, "injects.0.occurred",
        id="occurred-before-2000"),
    pytest.param(_bad("    type: 燃气事故", "    type: 燃汽事故"), 12, "injects.0.type", id="unknown-type"),
    pytest.param(_bad("{street: 梨园镇}", "{street: 梨园乡}"), 13, "injects.0.location.street", id="unknown-street"),
    pytest.param(_bad("kind: phone_report}", "kind: phone}"), 14, "injects.1.kind", id="unknown-report-kind"),
    pytest.param(_bad("incident: a, kind", "incident: b, kind"), 14, "injects.1.incident", id="incident-never-reported"),
    pytest.param(_bad('{at: "00:10"', '{at: "03:10"'), 14, "injects.1.at", id="inject-after-the-end"),
    pytest.param(_bad("action: report", "action: reprot"), 10, "injects.0.action", id="unknown-action"),
    pytest.param(_bad("    grade: 一般", "    grade: 一般\n    colour: red"), 18, "expect.a.colour", id="unknown-field"),
    pytest.param(_bad("    grade: 一般", "    grade: 一般\n    grade: 较大"), 18, "expect.a.grade", id="key-twice"),
    pytest.param(_bad("expect:\n  a:", "expect:\n  z:"), 16, "expect.z", id="expect-unknown-incident"),
    pytest.param(_bad("objectives: [检验]", "objectives: [检验"), 6, "(yaml)", id="yaml-syntax"),
]


@pytest.mark.parametrize(("text", "line", "field"), INVALID)
def test_invalid_scenario_is_refused_naming_line_and_field(tmp_path, plan, capsys, text, line, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, plan)
    assert any(p.line == line and p.field == field for p in info.value.problems), info.value.problems
    assert yingji(["drill", "validate", str(path)]) == EXIT_INVALID
    assert f"line {line}: {field}" in capsys.readouterr().err


def test_cli_validate_and_eval(capsys):
    path = str(SCENARIOS_DIR / "flood-sub-center.yaml")
    assert yingji(["drill", "validate", path]) == 0
    assert "ok" in capsys.readouterr().out
    assert yingji(["drill", "eval", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# 演练评估：") and "## 报送义务" in out
    assert yingji(["drill", "eval", path, "--json"]) == 0
    assert '"score": 100.0' in capsys.readouterr().out


def test_busy_night_replays_every_incident_to_its_end(plan):
    """Six hours of 24 overlapping incidents run through to the scenario's end. How fast is the
    bench's question (`python -m tests.bench --only drills`), never a test's."""
    scenario = load_scenario(SCENARIOS_DIR / "busy-night.yaml", plan)
    ev = evaluate(scenario, plan)
    reported = {inj.incident for inj in scenario.injects if inj.action == "report"}
    assert ev.totals.incidents == len(reported) == 24


def test_offsets_round_trip_and_clock_faces_stay_strings():
    assert parse_offset("01:30") == timedelta(minutes=90)
    assert parse_offset("-00:05") == -timedelta(minutes=5)
    assert parse_offset("30:00:15") == timedelta(hours=30, seconds=15)
    assert format_offset(timedelta(hours=30, seconds=15)) == "30:00:15"
    scenario = parse_scenario(MINIMAL.replace('duration: "02:00"', "duration: 10:00"))  # YAML 1.1 would say 600
    assert scenario.duration == timedelta(hours=10)


def test_busy_night_yaml_is_what_its_generator_writes():
    spec = importlib.util.spec_from_file_location("busy_night", SCENARIOS_DIR / "busy_night.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (SCENARIOS_DIR / "busy-night.yaml").read_text(encoding="utf-8") == module.render(), \
        "stale: run `python playbooks/drill/scenarios/busy_night.py`"
