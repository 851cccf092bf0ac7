"""Reading the tables datasets ship: CSV (any delimiter, UTF-8 or Latin-1) and Excel ``.xlsx`` (CMMD's clinical
sheet is distributed as ``.xlsx`` only), the latter with openpyxl.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Sequence
from pathlib import Path

from bilatcf.errors import DataError

Rows = list[tuple[int, dict[str, str]]]


def read_table(path: Path, required: Sequence[str], delimiter: str = ",") -> Rows:
    """The rows of a CSV or ``.xlsx`` table as ``(spreadsheet row, {column: stripped cell})``, blank rows left out.

    Cells are stripped (CBIS paths end in newlines, INbreast's ACR is padded with spaces). CSV text is read as UTF-8
    (with or without a byte-order mark), else Latin-1, which reads any byte.

    Raises:
        DataError: the file is missing or unreadable, or lacks a required column (the wrong file was given).
    """
    if not path.is_file():
        raise DataError(f"{path} not found; it is part of the dataset as distributed — check --root.")
    table = _xlsx_rows(path) if path.suffix.lower() == ".xlsx" else _csv_rows(path, delimiter)
    if not table:
        raise DataError(f"{path} is empty; it should start with a header row.")
    (_, header), body = table[0], table[1:]
    header = [name.strip() for name in header]
    missing = [name for name in required if name not in header]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {header}. This is not the file the adapter expects — check "
            "that it is the one distributed with the dataset (docs/data.md lists the expected headers)."
        )
    rows = []
    for number, cells in body:
        row = {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(header) if name}
        if any(row.values()):
            rows.append((number, row))
    return rows


def find_file(root: Path, names: Sequence[str], what: str, how: str) -> Path:
    """The first of ``names`` found in ``root`` or below it (the top-level folder name varies between downloads)."""
    for name in names:
        if (root / name).is_file():
            return root / name
    for name in names:
        found = sorted(root.rglob(name))
        if found:
            return found[0]
    raise DataError(f"no {what} ({' or '.join(names)}) found in {root} or below it; {how}")


def _csv_rows(path: Path, delimiter: str) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    # csv reads a quoted cell with a newline as one cell; count rows as the spreadsheet does (one per record).
    return [
        (number, cells)
        for number, cells in enumerate(csv.reader(text.splitlines(keepends=True), delimiter=delimiter), 1)
    ]


def _xlsx_rows(path: Path) -> list[tuple[int, list[str]]]:
    """The first sheet's rows as text: whole numbers without a decimal point (Excel stores ids and ages as numbers)."""
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .xlsx workbook ({error}); save it again as .xlsx or .csv.") from error
    try:
        sheet = workbook.worksheets[0]
        return [(number, [_text(value) for value in values]) for number, values in enumerate(sheet.values, start=1)]
    finally:
        workbook.close()


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
