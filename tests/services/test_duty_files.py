"""值班表 files (issue 18): .xlsx and .csv read into rows and written back, and a workbook read end to
end (read_sheets -> read_people -> read_table), refused whole with every problem's row and column."""

from __future__ import annotations

import io
from datetime import date, datetime, timezone

import openpyxl
import pytest

from playbooks.duty.people import read_people
from playbooks.duty.table import TableRefused, read_table
from playbooks.plan import load_plan
from services.duty.files import pick_sheets, read_sheets, write_csv, write_xlsx
from topics.duty import EMPLOYMENT_NAMES, POST_NAMES, Roster

from tests.playbooks.test_duty import HEADER, OFFICE, PEOPLE, SH, START, month

PEOPLE_HEADER = ["编号", "姓名", "单位", "岗位", "领导干部", "用工", "手机"]


@pytest.fixture(scope="module")
def plan():
    return load_plan()


@pytest.fixture(scope="module")
def units(plan):
    return {u.id: u.name for u in plan.units.values()}


def directory(units) -> list[list[object]]:
    """test_duty's PEOPLE as a 人员 sheet, mobiles as number cells (as Excel keeps them)."""
    return [PEOPLE_HEADER, *([p.id, p.name, units[p.unit_id], POST_NAMES[p.post], "是" if p.is_leader else "否",
                              EMPLOYMENT_NAMES[p.employment], int(p.contacts.mobile) if p.contacts.mobile else None]
                             for p in PEOPLE)]


def with_dates(rows: list[list[object]]) -> list[list[object]]:
    """The 值班表 with date cells in 日期, as a workbook has them."""
    return [rows[0], *([date.fromisoformat(r[0]) if isinstance(r[0], str) and r[0][:2] == "20" else r[0], *r[1:]]
                       for r in rows[1:])]


def workbook(sheets: dict[str, list[list[object]]]) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
        sheet.append([None] * 3)  # a formatted, empty row past the data: dropped
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def load(data: bytes, filename: str, plan, units) -> Roster:
    """What the shell does with an uploaded file: read, pick, the directory, then the 值班表."""
    people_rows, table_rows = pick_sheets(read_sheets(data, filename))
    people = read_people(people_rows, units=units) if people_rows is not None else PEOPLE
    return read_table(table_rows, unit_id=OFFICE, base=Roster(people=people), config=plan.duty, units=units, now=START)


def test_a_workbook_with_a_directory_and_a_month_is_read(plan, units):
    data = workbook({"人员": directory(units), "值班表": with_dates(month())})
    roster = load(data, "二月值班表.xlsx", plan, units)
    assert sorted(p.id for p in roster.people) == sorted(p.id for p in PEOPLE)
    assert roster.person("zhang").contacts.mobile == "13800000001"
    assert len(roster.shifts) == 90 and roster.shifts[0].start == START


# The bad-input table of the issue: one workbook each, refused whole, each problem at its cell.
BAD = [
    # (case, sheet changed, (row, {column: cell}), [(row, column, words)])
    ("a missing 带班领导", "值班表", (5, {"带班领导": None}), [(5, "带班领导", "no 带班领导")]),
    ("an unknown unit", "人员", (4, {"单位": "区火星局"}), [(4, "单位", "unknown unit '区火星局'")]),
    ("overlapping shifts: the same person twice at once", "值班表", (3, {"班次": "08:30-次日12:00"}),
     [(4, "带班领导", "is on"), (4, "值班主任", "is on")]),
    ("a 非正式 person", "值班表", (7, {"值班员": "周临时", "电话": None}), [(7, "值班员", "非正式")]),
    ("a non-leader 带班", "值班表", (6, {"带班领导": "郑科员"}), [(6, "带班领导", "not a leader")]),
    ("a bad mobile number in the directory", "人员", (2, {"手机": "1380000000"}), [(2, "手机", "not a mobile")]),
    ("a bad mobile number in the 值班表", "值班表", (9, {"电话": 1380000000}), [(9, "电话", "not a mobile")]),
]


@pytest.mark.parametrize(("case", "sheet", "change", "expected"), BAD, ids=[c[0] for c in BAD])
def test_a_bad_workbook_is_refused_whole_naming_row_and_column(plan, units, case, sheet, change, expected):
    sheets = {"人员": directory(units), "值班表": with_dates(month())}
    row, cells = change
    header = sheets[sheet][0]
    for column, cell in cells.items():
        sheets[sheet][row - 1][header.index(column)] = cell
    roster = None
    with pytest.raises(TableRefused) as refused:
        roster = load(workbook(sheets), "值班表.xlsx", plan, units)
    assert roster is None
    got = refused.value.problems
    # every problem at a cell (a missing 带班领导 is also each shift's gap: rows 4 and 5)
    assert got and all(p.row and p.column for p in got), [str(p) for p in got]
    for row, column, words in expected:
        assert any(p.row == row and p.column == column and words in p.message for p in got), [str(p) for p in got]
        assert f"row {row}, column {column}" in str(refused.value)


def test_a_gbk_csv_from_excel_is_read(plan, units):
    text = "\r\n".join(",".join("" if c is None else str(c) for c in r) for r in month())
    sheets = read_sheets(text.encode("gb18030"), "值班表.csv")
    assert list(sheets) == ["值班表"] and sheets["值班表"][0] == HEADER
    assert len(load(text.encode("gb18030"), "值班表.csv", plan, units).shifts) == 90


def test_a_utf8_csv_we_wrote_reads_back():
    rows = [["姓名", "手机", "备注"], ["张伟", "13800000001", "=HYPERLINK(\"x\")"], ["李娜", "", "-"]]
    data = write_csv(rows)
    assert data.startswith("\ufeff".encode()) and b"\r\n" in data
    assert read_sheets(data, "people.CSV")["people"] == [
        ["姓名", "手机", "备注"], ["张伟", "13800000001", "'=HYPERLINK(\"x\")"], ["李娜", "", "'-"]]


def test_an_xlsx_we_wrote_reads_back_bold_wide_and_formula_free():
    when = datetime(2026, 2, 1, 8, 30, tzinfo=SH)
    data = write_xlsx({"人员": [PEOPLE_HEADER, ["zhang", "张伟", "区应急办", "=1+1", "否", "正式", 13800000001]],
                       "值班表": [["日期", "值班员"], [when.astimezone(timezone.utc), "张伟"]]})
    sheets = read_sheets(data, "out.xlsx")
    assert sheets["人员"][1] == ["zhang", "张伟", "区应急办", "=1+1", "否", "正式", 13800000001]
    assert sheets["值班表"][1][0] == datetime(2026, 2, 1, 8, 30)  # Asia/Shanghai's wall clock, no zone
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheet = book["人员"]
    assert sheet["A1"].font.b and not sheet["A2"].font.b and sheet["D2"].data_type == "s"
    assert sheet.column_dimensions["C"].width >= 10 and sheet.freeze_panes == "A2"  # 区应急办: 8 columns wide


PICK = [
    # (case, sheet titles, (人员 picked, 值班表 picked))
    ("one sheet is the 值班表 whatever its title", ["Sheet1"], (None, "Sheet1")),
    ("both, in any order", ["值班表", "人员"], ("人员", "值班表")),
    ("a directory alone", ["人员"], ("人员", None)),
    ("a 值班表 beside a notes sheet", ["说明", "值班表"], (None, "值班表")),
]


@pytest.mark.parametrize(("case", "titles", "expected"), PICK, ids=[c[0] for c in PICK])
def test_pick_sheets(case, titles, expected):
    sheets = {t: [[t]] for t in titles}
    people, table = pick_sheets(sheets)
    assert (people[0][0] if people else None, table[0][0] if table else None) == expected


def test_several_sheets_none_named_are_refused():
    with pytest.raises(ValueError, match="2 sheets \\(Sheet1、Sheet2\\) and none titled 值班表 or 人员"):
        pick_sheets({"Sheet1": [], "Sheet2": []})


UNREADABLE = [
    # (file name, bytes, words)
    ("值班表.xlsx", b"PK\x03\x04 not really a zip", "值班表.xlsx: not a readable .xlsx file"),
    ("值班表.xlsx", "日期,值班员\r\n".encode(), "值班表.xlsx: not a readable .xlsx file"),
    ("值班表.xls", b"\xd0\xcf\x11\xe0", "值班表.xls: not an .xlsx or .csv file (save it as .xlsx)"),
    ("值班表", b"", "值班表: not an .xlsx or .csv file"),
    ("值班表.csv", b"\x00\x01\x02PK", "值班表.csv: not a CSV file"),
    ("值班表.csv", b"\xff\xfe\xff\xfe\x80\x80", "值班表.csv: not text in UTF-8 or GBK"),
]


@pytest.mark.parametrize(("filename", "data", "words"), UNREADABLE, ids=[f"{c[0]} {c[2].split(': ')[1]}" for c in UNREADABLE])
def test_an_unreadable_file_is_refused_naming_it(filename, data, words):
    with pytest.raises(ValueError) as refused:
        read_sheets(data, filename)
    assert str(refused.value).startswith(words)


def test_trailing_empty_rows_and_cells_are_dropped():
    data = workbook({"值班表": [["日期", "值班员", None], ["2026-02-01", "张伟"], [None, None], ["", None]]})
    assert read_sheets(data, "x.xlsx")["值班表"] == [["日期", "值班员"], ["2026-02-01", "张伟"]]
