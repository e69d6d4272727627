"""The 人员 sheet (issue 18): the duty directory read all or nothing, each refusal naming row and column."""

from __future__ import annotations

import pytest

from playbooks.duty.people import COLUMNS, read_people
from playbooks.duty.table import TableRefused
from topics.duty import Employment, Post

from tests.playbooks.test_duty import OFFICE, OTHER, PEOPLE

HEADER = ["编号", "姓名", "单位", "岗位", "领导干部", "用工", "手机", "邮箱", "企业微信", "钉钉"]
GOOD = [
    ["zhang", "张伟", "区应急办", "值班员", "否", "正式", "13800000001", "zhang@example.cn", "zhangwei", ""],
    ["boss1", "刘局长", "区应急办", "带班领导", "是", "正式", "", "", "", "liuju"],
    ["chief1", "孙主任", OFFICE, "值班领导", "Y", "借调", 13800000003, None, None, None],
    ["temp", "周临时", "区文化和旅游局", "值班员", 0, "临时", 13800000004.0, "", "", ""],
]


@pytest.fixture(scope="module")
def units(plan):
    return {u.id: u.name for u in plan.units.values()}


def sheet(*changes: tuple[int, dict], header=HEADER) -> list[list[object]]:
    """The good 人员 sheet; changes: (row number, {column: cell}), a row past the end appended."""
    rows = [list(header), *(list(r) for r in GOOD)]
    for row, cells in changes:
        while len(rows) < row:
            rows.append(list(GOOD[0]))
        for column, cell in cells.items():
            rows[row - 1][header.index(column)] = cell
    return rows


def test_the_columns_are_the_documented_ones():
    assert list(COLUMNS) == HEADER


def test_a_good_sheet_is_read_with_every_column(units):
    zhang, boss1, chief1, temp = read_people(sheet(), units=units)
    assert (zhang.id, zhang.name, zhang.unit_id, zhang.post, zhang.is_leader, zhang.employment) == (
        "zhang", "张伟", OFFICE, Post.officer, False, Employment.regular)
    assert (zhang.contacts.mobile, zhang.contacts.email, zhang.contacts.chat_ids) == (
        "13800000001", "zhang@example.cn", {"wecom": "zhangwei"})
    assert (boss1.post, boss1.is_leader, boss1.contacts.chat_ids) == (Post.leader, True, {"dingtalk": "liuju"})
    # 值班领导 is the 值班主任's post; number cells as a spreadsheet gives them
    assert (chief1.post, chief1.is_leader, chief1.employment, chief1.contacts.mobile) == (
        Post.chief, True, Employment.seconded, "13800000003")
    assert (temp.unit_id, temp.is_leader, temp.employment, temp.contacts.mobile) == (
        OTHER, False, Employment.informal, "13800000004")


def test_columns_in_any_order_blank_rows_skipped(units):
    order = [5, 0, 1, 2, 3, 4]
    rows = [[r[i] for i in order] for r in sheet()[:3]]
    rows.insert(2, ["", None, "", "", "", ""])
    assert [p.id for p in read_people(rows, units=units)] == ["zhang", "boss1"]


def test_the_sheet_replaces_the_base_people_with_its_ids(units):
    base = [p for p in PEOPLE if p.id in ("li", "zhang", "wang")]
    got = read_people(sheet(), units=units, base=base)
    assert [p.id for p in got] == ["zhang", "li", "wang", "boss1", "chief1", "temp"]
    assert got[0].contacts.email == "zhang@example.cn"  # the sheet's, not the base's


REFUSED = [
    # (case, rows, [(row, column, words)])
    ("an unknown unit", sheet((3, {"单位": "区火星局"})), [(3, "单位", "unknown unit '区火星局'")]),
    ("a bad mobile number", sheet((2, {"手机": "1380000000"})), [(2, "手机", "not a mobile")]),
    ("a landline is no mobile", sheet((2, {"手机": "010-69551234"})), [(2, "手机", "not a mobile")]),
    ("a post not in the list", sheet((4, {"岗位": "值班长"})), [(4, "岗位", "'值班长' is not a 岗位")]),
    ("领导干部 neither yes nor no", sheet((2, {"领导干部": "也许"})), [(2, "领导干部", "not 是 or 否")]),
    ("领导干部 empty", sheet((2, {"领导干部": ""})), [(2, "领导干部", "no 领导干部")]),
    ("an employment not in the list", sheet((5, {"用工": "外包"})), [(5, "用工", "not a 用工")]),
    ("a non-ASCII id", sheet((2, {"编号": "张伟"})), [(2, "编号", "not an id")]),
    ("no name", sheet((3, {"姓名": ""})), [(3, "姓名", "no 姓名")]),
    ("an id twice names both rows", sheet((6, {"编号": "boss1"})), [(6, "编号", "also row 3's")]),
    ("a bad email", sheet((2, {"邮箱": "zhang at example"})), [(2, "邮箱", "pattern")]),
    ("several problems, every one listed", sheet((2, {"手机": "123"}), (4, {"单位": "", "用工": "临工"})),
     [(2, "手机", "not a mobile"), (4, "单位", "no 单位"), (4, "用工", "not a 用工")]),
    ("a misspelt column (手机 is optional, so only that)", sheet(header=[*HEADER[:6], "电话", *HEADER[7:]]),
     [(1, "电话", "unknown column '电话'")]),
    ("a column twice", [[*HEADER, "姓名"], *sheet()[1:]], [(1, "姓名", "column '姓名' twice")]),
    ("a required column missing", [HEADER[1:], *(r[1:] for r in sheet()[1:])], [(1, "编号", "missing column '编号'")]),
    ("an empty sheet", [], [(1, None, "empty")]),
]


@pytest.mark.parametrize(("case", "rows", "expected"), REFUSED, ids=[c[0] for c in REFUSED])
def test_a_bad_sheet_is_refused_whole_naming_row_and_column(units, case, rows, expected):
    with pytest.raises(TableRefused) as refused:
        read_people(rows, units=units)
    got = refused.value.problems
    assert len(got) == len(expected), [str(p) for p in got]
    for row, column, words in expected:
        assert any(p.rule == "input" and p.row == row and p.column == column and words in p.message for p in got), \
            [str(p) for p in got]
