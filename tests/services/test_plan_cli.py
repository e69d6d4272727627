"""`yingji plan adopt` refuses before it reads or writes the log (no broker here: reaching for one would exit
1, not 2): an invalid revision names file, line and field; an adoption record that cannot be written (no
reason, a file name the topic does not take) names the field. After writing it reads the log back: an adoption
that lost to one written before it says so and exits 3 (the log stood in for)."""

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


def test_a_rollback_that_lost_to_another_adoption_says_so_and_exits_3(tmp_path, capsys, monkeypatch):
    """Read back after writing, the log has another adoption written against the same version just before this
    one: the fold refuses this one as a conflict; the command names it and exits 3 (the log stood in for)."""
    from datetime import datetime, timezone

    import services.plan_book as plan_book
    from playbooks.adoptions import texts_version
    from playbooks.plan import load_plan
    from services.plan_book import plan_texts
    from topics.plan import PlanAdopted

    shipped = load_plan()
    at = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)
    revised = {**plan_texts(DATA_DIR), "grading.yaml": (DATA_DIR / "grading.yaml").read_text(encoding="utf-8") + "\n# r\n"}
    first = PlanAdopted(id="adopt-1", version=texts_version(revised), files=revised, adopted_by="王某", adopted_at=at,
                        reason="试行", previous_version=shipped.version)
    other = PlanAdopted(id="back-other", version=shipped.version, files=plan_texts(DATA_DIR), adopted_by="李某",
                        adopted_at=at, reason="另一人先回退", previous_version=first.version, rollback_of="shipped")
    log = [first]
    monkeypatch.setattr(plan_book, "read_adoptions", lambda bootstrap, **_: list(log))
    monkeypatch.setattr(plan_book, "publish_adoption", lambda bootstrap, record: log.extend([other, record]))
    assert main(["plan", "rollback", "--to", shipped.version, "--by", "王某", "--reason", "恢复"]) == 3
    err = capsys.readouterr().err
    assert "refused, nothing rolled back" in err
    assert f"written against version {first.version} while {shipped.version} was in force" in err
    assert main(["plan", "history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].endswith("*refused (conflict): " + f"written against version {first.version} while "
                              f"{shipped.version} was in force*") and "*in force*" in lines[-2]
