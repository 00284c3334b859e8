"""Tables as CSV or XLSX files. A text that a spreadsheet would run as a formula (it starts with
=, +, -, @, a tab or a carriage return) is kept as text in both: in CSV with a leading apostrophe,
in XLSX as a text cell marked as quoted."""
from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import IO

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from workflow.exports import Table

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_DIALECT = {"de": (";", ","), "en": (",", ".")}  # delimiter and decimal mark per language
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv"  # Flask adds "; charset=utf-8"


def starts_like_a_formula(value) -> bool:
    return isinstance(value, str) and value.startswith(FORMULA_START)


def _csv_text(value, decimal_mark: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, Decimal, float)):
        return format(value, "f" if isinstance(value, Decimal) else "").replace(".", decimal_mark)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return "'" + value if starts_like_a_formula(value) else value


class _Line:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text = text


def csv_lines(table: Table, language: str) -> Iterator[str]:
    """The table as CSV text, line by line (to stream a big cycle): UTF-8 with a byte order mark
    so that spreadsheets read the umlauts; in German with semicolons and a decimal comma."""
    delimiter, decimal_mark = CSV_DIALECT.get(language, CSV_DIALECT["de"])
    line = _Line()
    writer = csv.writer(line, delimiter=delimiter)
    writer.writerow([_csv_text(v, decimal_mark) for v in table.header])
    yield "\ufeff" + line.text
    for row in table.rows:
        writer.writerow([_csv_text(v, decimal_mark) for v in row])
        yield line.text


def write_xlsx(tables: Iterable[Table], stream: IO[bytes]):
    """One sheet per table, written row by row (openpyxl's write-only mode keeps memory flat)."""
    workbook = Workbook(write_only=True)
    for table in tables:
        sheet = workbook.create_sheet(_sheet_name(table.title))
        bold = Font(bold=True)
        sheet.append([_cell(sheet, value, font=bold) for value in table.header])
        for row in table.rows:
            sheet.append([_cell(sheet, value) for value in row])
    workbook.save(stream)


def _cell(sheet, value, font=None):
    if isinstance(value, datetime):
        value = value.replace(tzinfo=None)
    cell = WriteOnlyCell(sheet, value=value)
    if font is not None:
        cell.font = font
    if isinstance(value, date):
        cell.number_format = "DD.MM.YYYY HH:MM" if isinstance(value, datetime) else "DD.MM.YYYY"
    if starts_like_a_formula(value):
        cell.data_type = "s"  # openpyxl would otherwise store "=…" as a formula
        cell.quotePrefix = True  # and the spreadsheet keeps it text when the cell is edited
    return cell


def _sheet_name(title: str) -> str:
    cleaned = "".join(" " if c in "[]:*?/\\" else c for c in title).strip("' ")
    return cleaned[:31] or "Tabelle"
