"""Reading the tables datasets ship: CSV (any delimiter, UTF-8 or Latin-1) and Excel ``.xlsx`` without extra packages.

CMMD's clinical sheet is distributed as ``.xlsx`` only. An ``.xlsx`` file is a zip of XML parts (ECMA-376): the
workbook lists its sheets, each sheet lists rows of cells, and text cells usually point into a shared-string table.
Reading the first sheet's cell values needs nothing beyond the standard library, so the adapters do not depend on an
Excel package.
"""

from __future__ import annotations

import csv
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree

from bilatcf.errors import DataError

_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_RELATIONSHIP = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_PACKAGE_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_COLUMN = re.compile(r"^([A-Z]+)")

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
    try:
        with zipfile.ZipFile(path) as archive:
            shared = _shared_strings(archive)
            sheet = ElementTree.fromstring(archive.read(_first_sheet(archive)))
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as error:
        raise DataError(f"{path}: not a readable .xlsx workbook ({error}); save it again as .xlsx or .csv.") from error
    rows = []
    for position, row in enumerate(sheet.iter(f"{_MAIN}row"), start=1):
        values: dict[int, str] = {}
        for cell in row.iter(f"{_MAIN}c"):
            match = _COLUMN.match(cell.get("r", ""))
            column = _column_index(match.group(1)) if match else len(values)
            values[column] = _cell_value(cell, shared)
        width = max(values) + 1 if values else 0
        rows.append((int(row.get("r", position)), [values.get(i, "") for i in range(width)]))
    return rows


def _shared_strings(archive: zipfile.ZipFile) -> list[str]:
    if "xl/sharedStrings.xml" not in archive.namelist():
        return []
    root = ElementTree.fromstring(archive.read("xl/sharedStrings.xml"))
    # A string is its <t> text, or the <t> of its rich-text runs <r>; phonetic hints (<rPh>) are not part of it.
    return [
        "".join(t.text or "" for t in item.findall(f"{_MAIN}t") + item.findall(f"{_MAIN}r/{_MAIN}t"))
        for item in root.findall(f"{_MAIN}si")
    ]


def _first_sheet(archive: zipfile.ZipFile) -> str:
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    sheet = workbook.find(f"{_MAIN}sheets/{_MAIN}sheet")
    if sheet is not None and "xl/_rels/workbook.xml.rels" in archive.namelist():
        relations = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
        for relation in relations.iter(f"{_PACKAGE_RELS}Relationship"):
            if relation.get("Id") == sheet.get(_RELATIONSHIP):
                target = relation.get("Target", "").lstrip("/")
                return target if target.startswith("xl/") else f"xl/{target}"
    return "xl/worksheets/sheet1.xml"


def _cell_value(cell: ElementTree.Element, shared: list[str]) -> str:
    kind = cell.get("t", "n")
    if kind == "inlineStr":
        return "".join(t.text or "" for t in cell.iter(f"{_MAIN}t"))
    value = cell.findtext(f"{_MAIN}v") or ""
    if kind == "s":
        return shared[int(value)] if value.isdigit() and int(value) < len(shared) else ""
    if kind == "b":
        return "TRUE" if value == "1" else "FALSE"
    return value


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1
