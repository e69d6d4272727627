"""`yingji whatif`'s edges without a broker: the workbook's sheets, the refusals before the log is read."""

from __future__ import annotations

import io
import shutil

import openpyxl
import pytest

from playbooks.plan import DATA_DIR, load_plan
from playbooks.whatif import History, load_revision, what_if
from services.cli.main import main
from services.whatif import to_xlsx
from tests.playbooks.test_whatif import DEADLINE, RECORDS, T0, UNTIL


def test_the_workbook_has_the_summary_the_differences_the_units_and_the_rules(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    file, old, new = DEADLINE
    (data / file).write_text((data / file).read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
    report = what_if(History(start=T0, until=UNTIL, records=sorted(RECORDS, key=lambda r: r[0])), load_plan(),
                     load_revision(data))
    book = openpyxl.load_workbook(io.BytesIO(to_xlsx(report)))
    assert book.sheetnames == ["概况", "修订内容", "差异", "单位", "规则"]
    changes = list(book["修订内容"].iter_rows(values_only=True))
    assert changes[0][:4] == ("文件", "位置", "变化", "依据")
    assert {(r[0], r[1], r[2], r[5], r[6]) for r in changes[1:]} == {
        ("obligations.yaml", "obligations[phone_report].due_after_minutes", "修改", "10", "5"),
        ("obligations.yaml", "obligations[phone_report].remind_before_minutes", "修改", "5", "2")}
    diffs = list(book["差异"].iter_rows(values_only=True))
    assert diffs[0][:6] == ("事件", "类型", "属地", "接报时间", "方面", "项目")
    assert len(diffs) - 1 == sum(len(c.differences) for c in report.incidents)
    assert ("g3", "报送义务", "电话报告") in {(r[0], r[4], r[5]) for r in diffs[1:]}
    assert [r[0] for r in book["规则"].iter_rows(values_only=True)][1:] == [r.rule for r in report.rules]


@pytest.mark.parametrize(("args", "says"), [
    (["--from", "2026-12-01T00:00", "--to", "2026-12-02T00:00+08:00"], "give its timezone"),
    (["--from", "2026-12-02T00:00+08:00", "--to", "2026-12-01T00:00+08:00"], "--to must be after --from"),
    (["--from", "2026-12-01T00:00+08:00", "--to", "2026-12-02T00:00+08:00", "--format", "xlsx"], "needs --out"),
], ids=["naive-time", "backwards", "xlsx-without-file"])
def test_a_bad_question_is_refused_before_the_log_is_read(capsys, args, says):
    assert _exit_code(["whatif", "--plan", str(DATA_DIR), *args]) == 2
    assert says in capsys.readouterr().err


def _exit_code(argv: list[str]) -> int:
    """What the command exits with, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_an_invalid_revision_exits_2_naming_file_line_and_field(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    path = data / "obligations.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("due_after_minutes: 10\n", "due_after_minutes: 0\n", 1),
                    encoding="utf-8")
    code = main(["whatif", "--plan", str(data), "--from", "2026-12-01T00:00+08:00", "--to", "2026-12-02T00:00+08:00"])
    assert code == 2
    assert "obligations.yaml, line 17: obligations.0.due_after_minutes:" in capsys.readouterr().err


def test_two_processes_give_the_report_one_gives(tmp_path):
    from services.whatif import compare_parallel

    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    file, old, new = DEADLINE
    (data / file).write_text((data / file).read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
    history = History(start=T0, until=UNTIL, records=sorted(RECORDS, key=lambda r: r[0]))
    plan, revised = load_plan(), load_revision(data)
    assert compare_parallel(history, plan, revised, workers=2) == what_if(history, plan, revised)
