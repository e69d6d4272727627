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
    plan = load_plan(data)
    assert sorted(t.seq for t in plan.types.values()) == list(range(0, 53))  # rows 1-52 of 2.3.6, and 其他


def test_other_goes_to_the_district_office_for_triage_never_refused(plan):  # 2.3.3, DOMAIN §1
    from playbooks.engine import check_report, decide
    from tests.playbooks.conftest import NOW, make_report

    for text in ("其他", "other"):
        report = make_report(text, facts={"deaths": 5})
        assert check_report(report, plan) == []
        d = decide(report, plan, NOW)
        assert d.type_id == "other" and d.lead_units == ["区应急办"] and d.grade.value == "未判明"
        assert d.triage_by_district_office and d.response_level.value == "二级"  # casualties: 4.3.3
        assert next(r for r in d.reasons if r.rule == "type.lead_units").section == "2.3.3"
        assert "区应急办" in {n.unit for n in d.notify}


@pytest.mark.parametrize(("text", "nearest"), [("燃汽事故", "燃气事故"), ("gas_acident", "燃气事故"), ("群体事件", "群体性事件")])
def test_an_unknown_type_is_refused_naming_the_nearest_ones(plan, text, nearest):
    from playbooks.engine import check_report
    from tests.playbooks.conftest import make_report

    [problem] = check_report(make_report(text), plan)
    assert problem.field == "type"
    assert nearest in problem.message and "其他" in problem.message


def test_the_type_outside_the_table_is_the_only_one_with_seq_0(data):
    path = data / "incident_types.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("    seq: 52\n", "    seq: 0\n"), encoding="utf-8")
    with pytest.raises(PlanError, match="seq 0"):
        load_plan(data)


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
