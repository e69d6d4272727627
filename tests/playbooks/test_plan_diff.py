"""What a revision changes in the plan's rules (playbooks.plan_diff; issue 24 item 1, 7.1.5 修订): one row per
kind of edit, each giving exactly the fields it touched, the section (or source) of the rule they are in, and
the values before and after; a comment-only edit changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from playbooks.plan import DATA_DIR, PLAN_FILES, load_plan
from playbooks.plan_diff import FILE_VIEWS, plan_changes, recorded
from playbooks.whatif import History, to_markdown, what_if
from tests.playbooks.test_whatif import DEADLINE, LEAD_MOVED, RECORDS, T0, THRESHOLD, UNTIL
from topics.plan import PLAN_CHANGES_KEPT, PlanChange, PlanAdopted

SHIPPED = load_plan()
NEW_UNIT = "  - id: district_test_bureau\n    name: 区测试局\n    kind: department\n    aliases: []\n    section: \"1.3\"\n"


def revised(tmp_path: Path, *edits: tuple[str, str, str]):
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    for file, old, new in edits:
        text = (data / file).read_text(encoding="utf-8")
        assert text.count(old) >= 1, (file, old)
        (data / file).write_text(text.replace(old, new, 1) if old else text + new, encoding="utf-8")
    return load_plan(data)


def change(file, path, kind, basis, before, after, ours=False) -> PlanChange:
    return PlanChange(file=file, path=path, change=kind, basis=basis, our_choice=ours, before=before, after=after)


ROWS = [
    pytest.param([LEAD_MOVED], [change(
        "incident_types.yaml", "types[gas_accident].lead_units", "changed", "2.3.6",
        '["district_urban_management_commission"]', '["district_housing_construction_commission"]')],
        id="2.3.6 a type's lead unit moved"),
    pytest.param([THRESHOLD], [change(
        "grading.yaml", "families.production_safety.criteria[deaths_incl_missing].thresholds.较大", "changed",
        "《生产安全事故报告和调查处理条例》(国务院令第493号) 第三条", "3", "4")],
        id="493号令 a grading threshold raised"),
    pytest.param([DEADLINE], [
        change("obligations.yaml", "obligations[phone_report].due_after_minutes", "changed",
               "4.1.3; 值班值守（接报后10分钟）", "10", "5"),
        change("obligations.yaml", "obligations[phone_report].remind_before_minutes", "changed",
               "4.1.3; 值班值守（接报后10分钟）", "5", "2")],
        id="4.1.3 a deadline shortened"),
    pytest.param([("units.yaml", "", NEW_UNIT)], [change(
        "units.yaml", "units[district_test_bureau]", "added", "1.3", None,
        '{"id": "district_test_bureau", "name": "区测试局", "kind": "department", "aliases": [], "section": "1.3"}')],
        id="1.3 a unit added"),
    pytest.param([("duty.yaml", "{role: 值班领导, post: chief}", "{role: 值班领导, post: leader}")], [change(
        "duty.yaml", "role_posts.value.3.post", "changed", SHIPPED.duty.role_posts.source, "chief", "leader", ours=True)],
        id="our choice: a role's post (a list without ids: item by item)"),
    pytest.param([("grading.yaml", "", "# a comment only\n")], [], id="a comment: no change"),
]


@pytest.mark.parametrize(("edits", "expected"), ROWS)
def test_each_edit_gives_exactly_its_changes(tmp_path, edits, expected):
    revision = revised(tmp_path, *edits)
    assert plan_changes(SHIPPED, revision) == expected
    # and the other way round: what one adds the other removes, before and after swapped
    back = plan_changes(revision, SHIPPED)
    flip = {"added": "removed", "removed": "added", "changed": "changed"}
    assert back == [c.model_copy(update={"change": flip[c.change], "before": c.after, "after": c.before}) for c in expected]


def test_a_removed_rule_is_one_removal_with_its_section(tmp_path):
    rule = SHIPPED.notifications[-1]
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    text = (data / "notifications.yaml").read_text(encoding="utf-8")
    start = text.index(f"  - id: {rule.id}\n")
    end = text.find("\n  - id: ", start + 1)
    (data / "notifications.yaml").write_text(text[:start] + (text[end + 1:] if end != -1 else ""), encoding="utf-8")
    changes = plan_changes(SHIPPED, load_plan(data))
    assert [(c.file, c.path, c.change, c.basis, c.after) for c in changes] == [
        ("notifications.yaml", f"rules[{rule.id}]", "removed", rule.section, None)]
    assert changes[0].before.startswith(f'{{"id": "{rule.id}"')


def test_the_what_if_report_says_what_the_revision_changes_even_when_no_incident_feels_it(tmp_path):
    """A threshold of 特别重大 no recorded incident comes near: no incident differs, the change is still shown."""
    rare = ("grading.yaml", "thresholds: {特别重大: 30, 重大: 10, 较大: 3}", "thresholds: {特别重大: 29, 重大: 10, 较大: 3}")
    report = what_if(History(start=T0, until=UNTIL, records=sorted(RECORDS, key=lambda r: r[0])), SHIPPED,
                     revised(tmp_path, rare))
    assert report.totals.differing == 0
    assert [(c.path, c.before, c.after) for c in report.changes] == [
        ("families.production_safety.criteria[deaths_incl_missing].thresholds.特别重大", "30", "29")]
    md = to_markdown(report)
    assert "## 修订内容" in md and "`families.production_safety.criteria[deaths_incl_missing].thresholds.特别重大`" in md
    assert "| 修改 |" in md and "| 30 | 29 |" in md


def test_every_plan_file_is_compared():
    """A plan file added later is compared too, or this fails: FILE_VIEWS names each file of PLAN_FILES."""
    assert list(FILE_VIEWS) == list(PLAN_FILES)


def test_an_adoption_keeps_its_first_changes_and_counts_the_rest(tmp_path):
    many = "".join(f"  - id: district_test_{i:03d}\n    name: 区测试{i}局\n    kind: department\n    aliases: []\n"
                   f"    section: \"1.3\"\n" for i in range(PLAN_CHANGES_KEPT + 7))
    kept = recorded(SHIPPED, revised(tmp_path, ("units.yaml", "", many)))
    assert len(kept["changes"]) == PLAN_CHANGES_KEPT and kept["changes_more"] == 7
    assert kept["changes"][0].path == "units[district_test_000]" and kept["changes"][0].change == "added"
    PlanAdopted(id="a-1", version="0123456789ab", files={"units.yaml": "units: []\n"}, adopted_by="预案管理科",
                adopted_at=T0, reason="r", **kept)  # the record takes them


def swapped(tmp_path, file: str, first_id: str, second_id: str):
    """The shipped plan with two neighbouring items of a list (`  - id: …` entries) swapped."""
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    path = data / file
    text = path.read_text(encoding="utf-8")
    first = text.index(f"  - id: {first_id}\n")
    second = text.index(f"  - id: {second_id}\n")
    third = text.index("\n  - id: ", second + 1) + 1
    path.write_text(text[:first] + text[second:third] + text[first:second] + text[third:], encoding="utf-8")
    return load_plan(data)


def test_a_change_of_order_is_a_change_where_the_first_that_matches_wins(tmp_path):
    """channels.yaml's routes: the first route that matches a notice's kind and level is taken, so moving one
    before another changes who is reached how, with no field changed."""
    revised_plan = swapped(tmp_path, "channels.yaml", "level_1_2_every_channel", "level_3_chat_and_email")
    assert [r.id for r in revised_plan.channels.routes][:2] == ["level_3_chat_and_email", "level_1_2_every_channel"]
    changes = plan_changes(SHIPPED, revised_plan)
    assert [(c.file, c.path, c.change) for c in changes] == [("channels.yaml", "routes", "changed")]
    assert (changes[0].before, changes[0].after) == ('["level_1_2_every_channel", "level_3_chat_and_email"]',
                                                     '["level_3_chat_and_email", "level_1_2_every_channel"]')  # only those moved


def test_the_order_of_a_list_whose_order_is_no_rule_is_no_change(tmp_path):
    """Units are matched by id: two of them swapped is the same plan's rules (and no slot of the 50 an adoption keeps)."""
    revised_plan = swapped(tmp_path, "units.yaml", "street_zhongcang", "street_xinhua")
    assert revised_plan.version != SHIPPED.version and list(revised_plan.units) != list(SHIPPED.units)
    assert plan_changes(SHIPPED, revised_plan) == []
