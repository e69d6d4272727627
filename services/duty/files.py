"""值班表 files in and out: the bytes of an .xlsx or .csv as rows of cells, and rows as a file.

The shell's part only: what the rows mean is playbooks/duty (people.py reads a 人员 sheet, table.py
a 值班表, both all or nothing). openpyxl lives here and never in the core. A file that cannot be read
raises ValueError naming the file; nothing of it is kept.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import PurePath
from zoneinfo import ZoneInfo

import openpyxl
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

Rows = list[list[object]]

SHANGHAI = ZoneInfo("Asia/Shanghai")
PEOPLE_SHEET, TABLE_SHEET = "人员", "值班表"
# Excel in China saves a CSV in the system's code page (GBK); gb18030 is its superset
CSV_ENCODINGS = ("utf-8-sig", "gb18030")
# a cell Excel would run as a formula when the CSV is opened (CSV injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _blank(cell: object) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _trim(rows: Iterable[Sequence[object]]) -> Rows:
    """Rows with their trailing empty cells and the trailing empty rows dropped (a sheet's used range
    often runs past the data: formatting, a deleted row)."""
    out: Rows = []
    for row in rows:
        cells = list(row)
        while cells and cells[-1] is None:
            cells.pop()
        out.append(cells)
    while out and all(_blank(c) for c in out[-1]):
        out.pop()
    return out


def _read_xlsx(data: bytes, filename: str) -> dict[str, Rows]:
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises a dozen kinds on a damaged file (zip, XML, KeyError)
        raise ValueError(f"{filename}: not a readable .xlsx file ({type(exc).__name__}: {exc})") from None
    try:
        return {sheet.title: _trim(sheet.iter_rows(values_only=True)) for sheet in workbook.worksheets}
    except Exception as exc:  # a sheet's XML may be damaged though the workbook opened
        raise ValueError(f"{filename}: a sheet cannot be read ({type(exc).__name__}: {exc})") from None
    finally:
        workbook.close()


def _read_csv(data: bytes, filename: str) -> dict[str, Rows]:
    for encoding in CSV_ENCODINGS:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ValueError(f"{filename}: not text in UTF-8 or GBK (save it as CSV UTF-8)")
    if "\x00" in text:
        raise ValueError(f"{filename}: not a CSV file (binary data)")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ValueError(f"{filename}: not a readable CSV file ({exc})") from None
    return {PurePath(filename).stem: _trim(rows)}


def read_sheets(data: bytes, filename: str) -> dict[str, Rows]:
    """Every sheet of an .xlsx by its title, or a .csv as one sheet named by the file's stem."""
    suffix = PurePath(filename).suffix.lower()
    if suffix == ".xlsx":
        return _read_xlsx(data, filename)
    if suffix == ".csv":
        return _read_csv(data, filename)
    hint = " (save it as .xlsx)" if suffix in (".xls", ".et", ".ods", ".numbers") else ""
    raise ValueError(f"{filename}: not an .xlsx or .csv file{hint}")


def pick_sheets(sheets: Mapping[str, Rows]) -> tuple[Rows | None, Rows]:
    """(人员 rows or None, 值班表 rows) of a workbook. A workbook with one sheet is the 值班表 whatever
    its title, unless that title is 人员 (a directory alone: the 值班表 is then [])."""
    titled = {title.strip(): rows for title, rows in sheets.items()}
    if len(titled) == 1:
        (title, rows), = titled.items()
        return (rows, []) if title == PEOPLE_SHEET else (None, rows)
    if TABLE_SHEET not in titled and PEOPLE_SHEET not in titled:
        raise ValueError(f"{len(titled)} sheets ({'、'.join(titled) or 'none'}) and none titled "
                         f"{TABLE_SHEET} or {PEOPLE_SHEET}")
    return titled.get(PEOPLE_SHEET), titled.get(TABLE_SHEET, [])


def _plain(cell: object) -> object:
    """A cell as a spreadsheet holds it: an aware time at Asia/Shanghai's wall clock (Excel has no zones)."""
    if isinstance(cell, datetime) and cell.tzinfo is not None:
        return cell.astimezone(SHANGHAI).replace(tzinfo=None)
    return cell


def _width(cell: object) -> int:
    text = "" if cell is None else str(cell)
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)  # a CJK character is two columns wide


def write_xlsx(sheets: Mapping[str, Sequence[Sequence[object]]]) -> bytes:
    """A workbook with a sheet per title, the first row bold and frozen, each column as wide as its text."""
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    bold = Font(bold=True)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        widths: dict[int, int] = {}
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                cell = sheet.cell(row=r, column=c, value=_plain(value))
                if isinstance(value, str) and value.startswith("="):
                    cell.data_type = "s"  # text, never a formula: names and notes come from people
                if r == 1:
                    cell.font = bold
                widths[c] = max(widths.get(c, 0), _width(value))
        for c, width in widths.items():
            sheet.column_dimensions[get_column_letter(c)].width = min(width + 2, 60)
        if rows:
            sheet.freeze_panes = "A2"
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _csv_cell(cell: object) -> str:
    cell = _plain(cell)
    if cell is None:
        return ""
    if isinstance(cell, datetime):
        return cell.strftime("%Y-%m-%d %H:%M")
    text = str(cell)
    # a leading ' keeps Excel from running it; the cell shows as written
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(rows: Iterable[Sequence[object]]) -> bytes:
    """Rows as CSV in UTF-8 with a BOM, so Excel opens the Chinese as Chinese; CRLF as Excel writes."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([_csv_cell(c) for c in row])
    return out.getvalue().encode("utf-8-sig")
