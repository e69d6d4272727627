"""`yingji plan adopt` refuses before it reads or writes the log (no broker here: reaching for one would exit
1, not 2): an invalid revision names file, line and field; an adoption record that cannot be written (no
reason, a file name the topic does not take) names the field."""

from __future__ import annotations

import shutil

import pytest

from playbooks.plan import DATA_DIR
from services.cli.main import main


def test_an_invalid_revision_is_refused_naming_file_line_and_field(tmp_path, capsys):
    data = tmp_path / "bad"
    shutil.copytree(DATA_DIR, data)
    grading = data / "grading.yaml"
    grading.write_text(grading.read_text(encoding="utf-8").replace("fact: deaths_incl_missing", "fact: deths", 1),
                       encoding="utf-8")
    assert main(["plan", "adopt", "--plan", str(data), "--by", "王某", "--reason", "试行"]) == 2
    assert "grading.yaml, line 12: families.production_safety.criteria.0.fact" in capsys.readouterr().err


@pytest.mark.parametrize("reason, extra, says", [
    ("", None, "invalid adoption: reason:"),
    ("试行", "Extra.yaml", "invalid adoption: files.Extra.yaml.[key]:"),
])
def test_an_adoption_that_cannot_be_recorded_is_refused_naming_the_field(tmp_path, capsys, reason, extra, says):
    data = tmp_path / "revised"
    shutil.copytree(DATA_DIR, data)
    if extra:
        (data / extra).write_text("note: 1\n", encoding="utf-8")
    assert main(["plan", "adopt", "--plan", str(data), "--by", "王某", "--reason", reason]) == 2
    assert says in capsys.readouterr().err
