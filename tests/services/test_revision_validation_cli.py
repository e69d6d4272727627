"""A revision tried on the drill scenarios before it is adopted (7.2.1: a plan being revised is validated by a
drill, 验证性应急演练): `yingji drill eval|validate SCENARIO --plan DIR` evaluates the scenario's expectations under
the revision, offline; `yingji whatif --plan DIR --scenario FILE` compares the scenario's incidents under the plan
in force and the revision, as if they had been live. No broker: the plan in force read off a log with no
adoptions (stood in for)."""

from __future__ import annotations

import json
import shutil

import pytest

import services.plan_book
from playbooks.drill.scenario import SCENARIOS_DIR
from playbooks.plan import DATA_DIR, load_plan
from services.cli import drill as drill_cli
from services.cli.main import main as yingji
from services.cli.messages import EXIT_INVALID
from tests.playbooks.test_whatif import DEADLINE

BUSY_NIGHT = SCENARIOS_DIR / "busy-night.yaml"


def _revision(tmp_path, file, old, new):
    data = tmp_path / "revision"
    shutil.copytree(DATA_DIR, data)
    text = (data / file).read_text(encoding="utf-8")
    assert old in text
    (data / file).write_text(text.replace(old, new, 1), encoding="utf-8")
    return data


@pytest.fixture
def no_adoptions(monkeypatch):
    monkeypatch.setattr(services.plan_book, "read_adoptions", lambda bootstrap, **_: [])


def test_a_revision_that_shortens_the_phone_report_fails_the_busy_nights_expectations(tmp_path, capsys):
    """Under the shipped plan the busy night meets every expectation; under a 5-minute phone report the incidents
    whose phone reports came at 6 to 9 minutes are 迟报, and their expectations say so."""
    assert yingji(["drill", "eval", str(BUSY_NIGHT), "--strict", "--json"]) == 0
    shipped = json.loads(capsys.readouterr().out)
    assert shipped["totals"]["failed"] == 0 and shipped["plan_version"] == load_plan().version
    data = _revision(tmp_path, *DEADLINE)
    assert yingji(["drill", "eval", str(BUSY_NIGHT), "--strict", "--json", "--plan", str(data)]) == drill_cli.EXIT_FAILED
    revised = json.loads(capsys.readouterr().out)
    assert revised["plan_version"] == load_plan(data).version != shipped["plan_version"]
    failed = [r for r in revised["expectations"] if not r["passed"]]
    # each failure is the phone report's: 按时 expected, 迟报 now, and the breach and 督办 step that come with it
    assert {r["what"] for r in failed} <= {"obligations.phone_report", "breaches", "escalation_steps.phone_report"}
    late = [r for r in failed if r["what"] == "obligations.phone_report"]
    assert late and all((r["expected"], r["actual"]) == ("met", "late") for r in late), late
    assert yingji(["drill", "validate", str(BUSY_NIGHT), "--plan", str(data)]) == 0


def test_a_revision_that_does_not_load_is_refused_naming_file_line_and_field(tmp_path, capsys):
    data = _revision(tmp_path, "obligations.yaml", "due_after_minutes: 10\n", "due_after_minutes: 0\n")
    assert yingji(["drill", "eval", str(BUSY_NIGHT), "--plan", str(data)]) == EXIT_INVALID
    assert "obligations.yaml, line 17: obligations.0.due_after_minutes:" in capsys.readouterr().err


def test_whatif_over_a_scenario_compares_its_incidents_under_both_plans(tmp_path, capsys, no_adoptions):
    data = _revision(tmp_path, *DEADLINE)
    assert yingji(["whatif", "--plan", str(data), "--scenario", str(BUSY_NIGHT), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["incidents"] == 24 and report["totals"]["differing"] > 0
    assert report["plan_in_force"] == load_plan().version and report["revised_plan"] == load_plan(data).version
    assert "busy-night.yaml" in report["revised_source"]
    assert {c["path"] for c in report["changes"]} == {"obligations[phone_report].due_after_minutes",
                                                     "obligations[phone_report].remind_before_minutes"}
    assert any(d["aspect"] == "obligation" and d["subject"].startswith("电话报告")
               for c in report["incidents"] for d in c["differences"]), report["incidents"][:2]
    # and the scenario's own expectations under both plans: the drill's 按时 电话报告 no longer met
    check = report["scenario"]
    assert (check["scenario"], check["failed_before"]) == ("busy-night", 0) and check["failed_after"] > 0
    late = [c for c in check["changed"] if c["what"] == "obligations.phone_report"]
    assert late and all((c["label"], c["expected"], c["before"], c["after"], c["passed_before"], c["passed_after"])
                        == ("报送义务：电话报告", "按时", "按时", "迟报", True, False) for c in late), late
    assert check["failed_after"] == sum(not c["passed_after"] for c in check["changed"])
    assert yingji(["whatif", "--plan", str(data), "--scenario", str(BUSY_NIGHT)]) == 0
    md = capsys.readouterr().out
    assert "## 演练预期（7.2.1 验证性演练）" in md and "| 报送义务：电话报告 | 按时 | 按时 | 迟报 ✘ |" in md


@pytest.mark.parametrize(("args", "says"), [
    (["--scenario", str(BUSY_NIGHT), "--from", "2026-12-01T00:00+08:00"], "not both"),
    ([], "give --from and --to"),
    (["--from", "2026-12-01T00:00+08:00"], "give --from and --to"),
    (["--scenario", str(DATA_DIR / "units.yaml")], "invalid scenario"),
], ids=["both", "neither", "half a period", "not a scenario"])
def test_a_bad_question_is_refused(capsys, no_adoptions, args, says):
    assert yingji(["whatif", "--plan", str(DATA_DIR), *args]) == EXIT_INVALID
    assert says in capsys.readouterr().err


# A revision the loader takes that cannot decide a plain 一般 incident: its 三级 rule narrowed to the sensitive ones
UNDECIDABLE = ("response.yaml", "    when: {grade_in: [一般]}\n    level: 三级\n",
               "    when: {grade_in: [一般], flag: [sensitive]}\n    level: 三级\n")


def test_a_revision_that_loads_but_cannot_decide_a_scenarios_reports_is_refused_not_a_crash(tmp_path, capsys,
                                                                                         no_adoptions):
    data = _revision(tmp_path, *UNDECIDABLE)
    load_plan(data)  # the loader takes it
    assert yingji(["drill", "eval", str(BUSY_NIGHT), "--plan", str(data)]) == EXIT_INVALID
    assert "cannot run" in capsys.readouterr().err
    assert yingji(["whatif", "--plan", str(data), "--scenario", str(BUSY_NIGHT), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["refused_after"] > 0  # the incidents it cannot decide: refused under the revision
    assert report["scenario"]["refused_after"] and report["scenario"]["changed"] == []
    assert report["scenario"]["failed_after"] == report["scenario"]["expectations"]
