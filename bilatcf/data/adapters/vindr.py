"""VinDr-Mammo (PhysioNet 1.0.0): ``breast-level_annotations.csv`` + ``finding_annotations.csv`` + ``images/``.

Layout (``vindr-mammo/1.0.0/``)::

    breast-level_annotations.csv   one row per image: study_id, series_id, image_id, laterality, view_position,
                                   height, width, breast_birads, breast_density, split
    finding_annotations.csv        one row per box (and one per image without finding): image_id, ...,
                                   finding_categories, finding_birads, xmin, ymin, xmax, ymax, split
    images/<study_id>/<image_id>.dicom

Policies:

* There is no patient id: the study is the patient (``patient_id`` = ``study_id``), as the dataset's own split does.
* Labels from the breast-level BI-RADS (there is no pathology): 1 → normal; 2, 3 → abnormal, benign; 4 and 5 →
  abnormal and malignant, the same "BI-RADS > 3" proxy as for INbreast (``malignant_from`` changes it).
  ``abnormal`` = BI-RADS ≠ 1 is DisAsymNet's definition; an image with a finding box is abnormal whatever its BI-RADS.
* ``finding_categories`` is a Python list written as text (``"['Mass', 'Suspicious Calcification']"``).
* Boxes: rows without coordinates (``No Finding``) give none; coordinates outside the image (e.g. ``xmin = -5.2``)
  are clipped to ``[0, width] × [0, height]`` (counted in one note); a box with only some coordinates, or empty
  after clipping, is dropped and reported.
* Density ``DENSITY A``–``D`` → A–D; the official split is kept (``training`` → train, ``test`` → test; bilatcf
  carves val from train).
"""

from __future__ import annotations

import ast
import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from bilatcf.data.adapters.base import (
    IndexOptions,
    IndexResult,
    Problem,
    absolute,
    birads_labels,
    birads_text,
    existing_file,
    finish,
    side_and_view,
)
from bilatcf.data.adapters.tables import find_file, read_table
from bilatcf.data.types import Box, ImageRecord

DATASET = "vindr"
BREAST_TABLE = "breast-level_annotations.csv"
FINDING_TABLE = "finding_annotations.csv"
_BREAST_COLUMNS = ("study_id", "image_id", "laterality", "view_position", "breast_birads", "breast_density", "split")
_FINDING_COLUMNS = ("image_id", "finding_categories", "xmin", "ymin", "xmax", "ymax")
_SPLITS = {"training": "train", "train": "train", "test": "test"}
_NO_FINDING = "No Finding"


def index(options: IndexOptions, malignant_from: str = "4") -> IndexResult:
    """Index a VinDr-Mammo release folder (or a folder above it)."""
    breast_table = find_file(
        options.root, [BREAST_TABLE], "VinDr-Mammo table", "the release folder holds it next to images/."
    )
    base = breast_table.parent
    problems: list[Problem] = []
    records: dict[str, ImageRecord] = {}
    sizes: dict[str, tuple[float, float]] = {}
    listed: set[str] = set()
    for number, row in read_table(breast_table, _BREAST_COLUMNS):
        where = f"{breast_table} row {number}"
        listed.add(row["image_id"])
        record = _record(row, base, where, problems, malignant_from, options.official_split)
        if record is None:
            continue
        if record.image_id in records:
            problems.append(Problem(where, f"image_id {record.image_id!r} listed twice; the first row is used"))
            continue
        records[record.image_id] = record
        sizes[record.image_id] = (_float(row.get("width", "")), _float(row.get("height", "")))
    finding_table = base / FINDING_TABLE
    if finding_table.is_file():
        records = _with_findings(records, sizes, listed, finding_table, problems)
    else:
        problems.append(Problem(str(finding_table), "not found; the images get no boxes", kept=True))
    return finish(list(records.values()), problems, str(breast_table))


def _record(
    row: dict[str, str], base: Path, where: str, problems: list[Problem], malignant_from: str, official_split: bool
) -> ImageRecord | None:
    study, image = row["study_id"], row["image_id"]
    location = side_and_view(row["laterality"], row["view_position"], where, problems, ("laterality", "view_position"))
    path = base / "images" / study / f"{image}.dicom"
    if location is None or not existing_file(path, where, problems):
        return None
    laterality, view = location
    birads = birads_text(row["breast_birads"])
    abnormal, malignant = birads_labels(birads, malignant_from)
    if abnormal == -1:
        problems.append(Problem(where, f"breast_birads {row['breast_birads']!r} is not BI-RADS 1-5", kept=True))
    density = row["breast_density"].upper().removeprefix("DENSITY").strip()
    split = _SPLITS.get(row["split"].lower(), "")
    if row["split"] and not split:
        problems.append(Problem(where, f"split {row['split']!r} is not training or test; left empty", kept=True))
    return ImageRecord(
        dataset=DATASET,
        patient_id=study,
        study_id=study,
        image_id=image,
        path=absolute(path),
        laterality=laterality,
        view=view,
        abnormal=abnormal,
        malignant=malignant,
        birads=birads,
        density=density if density in ("A", "B", "C", "D") else "",
        split=split if official_split else "",
    )


def _with_findings(
    records: dict[str, ImageRecord],
    sizes: dict[str, tuple[float, float]],
    listed: set[str],
    table: Path,
    problems: list[Problem],
) -> dict[str, ImageRecord]:
    boxes: dict[str, list[Box]] = defaultdict(list)
    clipped = 0
    for number, row in read_table(table, _FINDING_COLUMNS):
        where = f"{table} row {number}"
        image = row["image_id"]
        if image not in records:
            if image not in listed:  # (the findings of a skipped image need no second report)
                problems.append(
                    Problem(where, f"image_id {image!r} is not in {BREAST_TABLE}; finding ignored", kept=True)
                )
            continue
        categories = _categories(row["finding_categories"])
        if categories is None:
            problems.append(
                Problem(
                    where,
                    f"finding_categories {row['finding_categories']!r} is not a list; read as a finding",
                    kept=True,
                )
            )
            categories = ["?"]
        box, was_clipped, reason = _box(row, *sizes[image])
        if reason:
            problems.append(Problem(where, f"{reason}; box dropped", kept=True))
        if box is not None and any(category != _NO_FINDING for category in categories):
            boxes[image].append(box)
            clipped += was_clipped
    if clipped:
        problems.append(
            Problem(str(table), f"{clipped} boxes reached outside their image and were clipped to it", kept=True)
        )
    return {
        image: replace(record, boxes=tuple(boxes[image]), abnormal=1) if boxes.get(image) else record
        for image, record in records.items()
    }


def _categories(text: str) -> list[str] | None:
    try:
        value = ast.literal_eval(text) if text else []
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, str):
        value = [value]
    return [str(item) for item in value] if isinstance(value, (list, tuple)) else None


def _box(row: dict[str, str], width: float, height: float) -> tuple[Box | None, bool, str]:
    """(box, was it clipped, why it was dropped) of a finding row; a row without coordinates has no box."""
    values = [_float(row[column]) for column in ("xmin", "ymin", "xmax", "ymax")]
    given = [value for value in values if not math.isnan(value)]
    if not given:
        return None, False, ""
    if len(given) < 4:
        return None, False, f"box with only some coordinates {[row[c] for c in ('xmin', 'ymin', 'xmax', 'ymax')]}"
    x0, y0, x1, y1 = values
    limits_x = (0.0, width if width > 0 else math.inf)
    limits_y = (0.0, height if height > 0 else math.inf)
    clipped = (
        min(max(x0, limits_x[0]), limits_x[1]),
        min(max(y0, limits_y[0]), limits_y[1]),
        min(max(x1, limits_x[0]), limits_x[1]),
        min(max(y1, limits_y[0]), limits_y[1]),
    )
    if not (clipped[0] < clipped[2] and clipped[1] < clipped[3]):
        return None, False, f"box {values} is empty inside the {width:g}×{height:g} image"
    return clipped, clipped != (x0, y0, x1, y1), ""


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
