"""A broken plan edit is refused at load, naming the file and the id."""

from __future__ import annotations

import re
import shutil

import pytest

from playbooks.plan import DATA_DIR, PlanError, load_plan


@pytest.fixture
def data(tmp_path):
    shutil.copytree(DATA_DIR, tmp_path / "data")
    return tmp_path / "data"


def _repeat_first(path, block_start: str) -> str:
    """Repeat the first list item starting with `block_start` (the same id) right after itself."""
    text = path.read_text(encoding="utf-8")
    m = re.search(rf"^(\s*- {re.escape(block_start)}.*?)(?=^\s*- {re.escape(block_start.split(':')[0])}:|\Z)", text,
                  re.S | re.M)
    assert m, block_start
    path.write_text(text[:m.end()] + m.group(1) + text[m.end():], encoding="utf-8")
    return m.group(1)


def test_the_shipped_plan_loads(data):
    assert len(load_plan(data).types) == 52


@pytest.mark.parametrize(("file", "item", "says"), [  # one row per id space the plan keys by
    ("units.yaml", "id:", "units.yaml: units: duplicate id"),
    ("incident_types.yaml", "id:", "incident_types.yaml: types: duplicate id"),
    ("notifications.yaml", "id:", "rules: duplicate id"),
    ("obligations.yaml", "kind:", "obligations.yaml: obligations: duplicate id"),
])
def test_a_repeated_id_is_refused(data, file, item, says):
    _repeat_first(data / file, item)
    with pytest.raises(PlanError, match=says):
        load_plan(data)
