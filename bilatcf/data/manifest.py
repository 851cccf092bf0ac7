"""The canonical manifest: one CSV row per image, the same columns for every dataset (DESIGN §2).

Adapters turn each dataset's own layout into this file once; everything downstream (pairing, splits, the DataModule)
reads only the manifest. Reading is strict because a silently wrong laterality or view breaks the bilateral pairing
without any visible error: every problem is reported with its row, column and a fix, all at once, so a user can repair
a manifest in one pass.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bilatcf.data.io import atomic_write
from bilatcf.data.types import VIEWS, ImageRecord
from bilatcf.errors import DataError

MANIFEST_COLUMNS: tuple[str, ...] = (
    "dataset",
    "patient_id",
    "study_id",
    "image_id",
    "path",
    "laterality",
    "view",
    "abnormal",
    "malignant",
    "birads",
    "density",
    "split",
    "boxes",
    "mask_path",
    "provenance",
)
#: Columns a manifest may lack: manifests written before the column existed stay readable (the cells read as empty).
OPTIONAL_COLUMNS: tuple[str, ...] = ("provenance",)
SPLITS = ("train", "val", "test")
DENSITIES = ("A", "B", "C", "D")
_REQUIRED = ("dataset", "patient_id", "image_id", "path")
_LATERALITY = {"L": "L", "LEFT": "L", "R": "R", "RIGHT": "R"}
_LABELS = {"1": 1, "0": 0, "-1": -1, "": -1}
_MAX_LISTED = 10


def write_manifest(records: Sequence[ImageRecord], path: str | Path) -> None:
    """Write records as a manifest CSV, atomically (a crash never leaves a half-written manifest behind).

    Paths are written as they are in the records; boxes as a JSON list of ``[x0, y0, x1, y1]``.
    """
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=MANIFEST_COLUMNS)
    writer.writeheader()
    writer.writerows(_record_to_row(record) for record in records)
    atomic_write(path, text.getvalue().encode("utf-8"))


def read_manifest(path: str | Path, root: str | Path | None = None, check_files: bool = True) -> list[ImageRecord]:
    """Read and validate a manifest CSV.

    Args:
        path: the manifest CSV.
        root: folder that relative ``path`` / ``mask_path`` cells are relative to; default: the CSV's folder.
            Records carry absolute paths, so they do not depend on the working directory.
        check_files: also check that every image and mask file exists (off for fast dry runs).

    Returns:
        One record per row, in row order (record ``i`` is spreadsheet row ``i + 2``).

    Raises:
        DataError: listing up to ten problems, each with its row (the spreadsheet row: the header is row 1) and column.
    """
    report = check_manifest(path, root=root, check_files=check_files)
    if report.problems:
        _raise(Path(path), report.problems)
    return report.records


@dataclass
class ManifestReport:
    """What :func:`check_manifest` found: the records of the valid rows, their spreadsheet rows, every problem."""

    records: list[ImageRecord]
    rows: list[int]
    problems: list[str]


def check_manifest(path: str | Path, root: str | Path | None = None, check_files: bool = True) -> ManifestReport:
    """Every problem of a manifest CSV, not only the first ten, and the records of the rows that are valid.

    The same rules as :func:`read_manifest` (which raises when there is any problem), for reports that list them all.

    Raises:
        DataError: the file does not exist or has a header but no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"manifest {path} not found; point to an existing CSV in the canonical format (its columns are described "
            "in docs/data.md, 'Manifest columns'). `bilatcf data index --dataset NAME --root DIR --out manifest.csv` "
            "writes one for a public dataset as downloaded; `bilatcf data synth --out DIR` writes an example."
        )
    root = Path(root) if root is not None else path.parent
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    problems = _header_problems(header, path.name)
    if problems:
        return ManifestReport([], [], problems)
    if not rows:
        raise DataError(f"manifest {path} has a header but no rows; it must list at least one image.")
    records, numbers, places = [], [], []
    for number, row in enumerate(rows, start=2):
        place = f"{path.name} row {number}"
        record, row_problems = _parse_row(row, place)
        problems += row_problems
        if record is not None:
            records.append(_resolve_paths(record, root))
            numbers.append(number)
            places.append(place)
    return ManifestReport(records, numbers, problems + _dataset_problems(records, places, check_files))


def validate_records(records: Sequence[ImageRecord], check_files: bool = True) -> list[str]:
    """Every problem of a list of records, as messages with a fix (empty list: the records are valid).

    The same rules as :func:`read_manifest`, for records built in Python (adapters) rather than read from a CSV.
    Records are located as ``record <index> (image_id '<id>')``.
    """
    places = [f"record {index} (image_id '{record.image_id}')" for index, record in enumerate(records)]
    problems = [
        problem for record, place in zip(records, places) for problem in _parse_row(_record_to_row(record), place)[1]
    ]
    return problems + _dataset_problems(records, places, check_files)


def _record_to_row(record: ImageRecord) -> dict[str, str]:
    row = {key: str(value) for key, value in asdict(record).items()}
    row["boxes"] = json.dumps([[float(value) for value in box] for box in record.boxes])
    return row


def _header_problems(header: list[str], name: str) -> list[str]:
    missing = [column for column in MANIFEST_COLUMNS if column not in header and column not in OPTIONAL_COLUMNS]
    extra = [column for column in header if column not in MANIFEST_COLUMNS]
    problems = []
    if missing:
        problems.append(
            f"{name}: missing column(s) {missing} — fix: the header must be {','.join(MANIFEST_COLUMNS)} "
            f"({', '.join(OPTIONAL_COLUMNS)} may be left out)"
        )
    if extra:
        problems.append(
            f"{name}: unknown column(s) {extra} — fix: remove them or rename them to manifest columns "
            f"({','.join(MANIFEST_COLUMNS)})"
        )
    return problems


def _parse_row(row: dict[str | None, str], where: str) -> tuple[ImageRecord | None, list[str]]:
    """Normalise one row (strip cells, L/LEFT → L, view upper case, empty label → -1) and collect its problems."""
    cells = {column: (row.get(column) or "").strip() for column in MANIFEST_COLUMNS}
    problems = [
        f"{where}, column '{column}': empty — fix: every image needs a {column}"
        for column in _REQUIRED
        if not cells[column]
    ]
    if row.get(None):  # csv.DictReader files cells beyond the header under the key None
        problems.append(
            f"{where}: {len(row[None])} cell(s) more than the header — fix: quote cells that contain "
            "commas (e.g. the boxes JSON) or remove the extra cells"
        )
    laterality = _LATERALITY.get(cells["laterality"].upper())
    if laterality is None:
        problems.append(
            f"{where}, column 'laterality': {cells['laterality']!r} is not L or R — fix: write L or R "
            "(LEFT/RIGHT are accepted)"
        )
    view = cells["view"].upper()
    if view not in VIEWS:
        problems.append(
            f"{where}, column 'view': {cells['view']!r} is not a known view — fix: use one of {', '.join(VIEWS)}"
        )
    labels = {}
    for column in ("abnormal", "malignant"):
        labels[column] = _LABELS.get(cells[column])
        if labels[column] is None:
            problems.append(
                f"{where}, column '{column}': {cells[column]!r} is not 1, 0 or -1 — fix: write 1 or 0, "
                "and -1 or nothing when unknown"
            )
    density = cells["density"].upper()
    if density not in DENSITIES + ("",):
        problems.append(
            f"{where}, column 'density': {cells['density']!r} is not A, B, C or D — fix: map the "
            "dataset's density to ACR A-D (e.g. 1-4 -> A-D) or leave it empty"
        )
    split = cells["split"].lower()
    if split not in SPLITS + ("",):
        problems.append(
            f"{where}, column 'split': {cells['split']!r} is not train, val or test — fix: use one of "
            "them, or leave it empty to let bilatcf assign patient-wise splits"
        )
    boxes, box_problem = parse_boxes(cells["boxes"])
    if box_problem:
        problems.append(f"{where}, column 'boxes': {box_problem}")
    provenance_problem = _provenance_problem(cells["provenance"])
    if provenance_problem:
        problems.append(f"{where}, column 'provenance': {provenance_problem}")
    if problems:
        return None, problems
    record = ImageRecord(
        dataset=cells["dataset"],
        patient_id=cells["patient_id"],
        study_id=cells["study_id"],
        image_id=cells["image_id"],
        path=cells["path"],
        laterality=laterality,
        view=view,
        abnormal=labels["abnormal"],
        malignant=labels["malignant"],
        birads=cells["birads"],
        density=density,
        split=split,
        boxes=boxes,
        mask_path=cells["mask_path"],
        provenance=cells["provenance"],
    )
    return record, []


def parse_boxes(text: str) -> tuple[tuple[tuple[float, float, float, float], ...], str]:
    """Parse the JSON box list; return (boxes, problem) with an empty problem when valid."""
    if not text:
        return (), ""
    fix = (
        "fix: write a JSON list of [x0, y0, x1, y1] in original pixels with x0 < x1 and y0 < y1, "
        "e.g. [[10, 20, 50, 80]]"
    )
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return (), f"{text!r} is not valid JSON — {fix}"
    if not isinstance(value, list):
        return (), f"{text!r} is not a list of boxes — {fix}"
    boxes = []
    for box in value:
        numbers = (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        )
        if not numbers or not (box[0] < box[2] and box[1] < box[3]):
            return (), f"box {box!r} is not 4 numbers with x0 < x1 and y0 < y1 — {fix}"
        boxes.append(tuple(float(v) for v in box))
    return tuple(boxes), ""


def _provenance_problem(text: str) -> str:
    """Provenance is ``column=source`` items joined by ``;`` (empty: every field came from its primary source)."""
    for item in filter(None, (part.strip() for part in text.split(";"))):
        column, _, source = item.partition("=")
        if column.strip() not in MANIFEST_COLUMNS or not source.strip():
            return (
                f"{item!r} is not column=source — fix: write items like 'laterality=SeriesDescription' joined by ';' "
                "(the column is a manifest column), or leave the cell empty"
            )
    return ""


def _resolve_paths(record: ImageRecord, root: Path) -> ImageRecord:
    def absolute(value: str) -> str:
        return os.path.abspath(root / value) if value else ""

    return replace(record, path=absolute(record.path), mask_path=absolute(record.mask_path))


def _dataset_problems(records: Sequence[ImageRecord], places: list[str], check_files: bool) -> list[str]:
    """Problems that need more than one row (duplicate ids) or the file system (missing files)."""
    seen: dict[tuple[str, str], list[str]] = {}
    for record, place in zip(records, places):
        seen.setdefault((record.dataset, record.image_id), []).append(place)
    problems = [
        f"{rows[0]}, column 'image_id': {image_id!r} of dataset {dataset!r} also appears in "
        f"{', '.join(rows[1:])} — fix: image ids must be unique within a dataset (add the view or a counter)"
        for (dataset, image_id), rows in seen.items()
        if len(rows) > 1
    ]
    if check_files:
        for record, place in zip(records, places):
            if not Path(record.path).is_file():
                problems.append(
                    f"{place}, column 'path': file {record.path} not found — fix: correct the path or the "
                    "manifest root folder"
                )
            if record.mask_path and not Path(record.mask_path).is_file():
                problems.append(
                    f"{place}, column 'mask_path': file {record.mask_path} not found — fix: correct the "
                    "path or leave the cell empty"
                )
    return problems


def _raise(path: Path, problems: list[str]) -> None:
    listed = "\n".join(f"  - {problem}" for problem in problems[:_MAX_LISTED])
    more = len(problems) - _MAX_LISTED
    tail = f"\n  ... and {more} more (`bilatcf data check` lists them all)" if more > 0 else ""
    raise DataError(f"manifest {path} has {len(problems)} problem(s):\n{listed}{tail}")
