"""Any folder of mammography DICOMs: every field from the headers, labels from an optional CSV.

Every file below the root is tried as DICOM (DICOM files often have no suffix). A file that is not DICOM, not MG, a
FOR PROCESSING image, a work-up view (magnification, spot compression), or whose laterality or view is missing,
contradictory or unknown is listed with its reason and skipped (:func:`bilatcf.data.dicom_tags.unusable_reason`).

Fields: ``patient_id`` = ``PatientID`` (else the first folder below the root); ``study_id`` = ``StudyInstanceUID``
(empty when absent: one exam per patient); ``image_id`` = ``SOPInstanceUID`` (else the file's path below the root);
laterality and view as :mod:`bilatcf.data.dicom_tags` resolves them. Each fallback is recorded as provenance. A second
file with the same ``SOPInstanceUID`` (a copy) is skipped as a duplicate.

Labels CSV (``--labels``; comma-separated, header row, any column order). Each row names its images by one key:

* ``path``: a file, relative to the root (or absolute);
* ``image_id``: the image's ``SOPInstanceUID``;
* ``patient_id`` and ``laterality`` (and ``study_id`` when the column is given and the cell is not empty): every image
  of that breast (breast-level labels).

and sets any of ``abnormal``, ``malignant`` (1, 0, -1 or empty: unknown), ``birads`` (text), ``density`` (A–D or
1–4), ``split`` (train, val, test) and ``boxes`` (JSON list of ``[x0, y0, x1, y1]`` in original pixels). Image rows
override breast rows; an empty cell leaves the field as it is. Images without a row have unknown labels. A row that
matches no image, or has a bad value, is reported and not used.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from bilatcf.data.adapters.base import (
    DENSITY_FROM_ACR,
    IndexOptions,
    IndexResult,
    Problem,
    absolute,
    birads_text,
    dicom_headers,
    finish,
)
from bilatcf.data.adapters.tables import read_table
from bilatcf.data.dicom_tags import format_provenance
from bilatcf.data.manifest import SPLITS, parse_boxes
from bilatcf.data.types import ImageRecord

DATASET = "folder"
LABEL_KEYS = ("path", "image_id", "patient_id", "laterality", "study_id")
LABEL_VALUES = ("abnormal", "malignant", "birads", "density", "split", "boxes")
_FLAGS = {"1": 1, "0": 0, "-1": -1}


def index(options: IndexOptions) -> IndexResult:
    """Index every DICOM mammogram below ``options.root``; apply ``options.labels`` when given."""
    problems: list[Problem] = []
    skip = [options.labels] if options.labels else []
    records = []
    for path, header in dicom_headers(options.root, problems, skip=skip):
        relative = path.relative_to(options.root)
        provenance = list(header.provenance)
        patient = header.patient_id
        if not patient and len(relative.parts) > 1:
            patient = relative.parts[0]
            provenance.insert(0, ("patient_id", "folder"))
        if not patient:
            problems.append(Problem(str(path), "no PatientID tag and not in a patient folder below the root"))
            continue
        image_id = header.sop_uid
        if not image_id:
            image_id = relative.as_posix()
            provenance.append(("image_id", "path"))
        records.append(
            ImageRecord(
                dataset=DATASET,
                patient_id=patient,
                study_id=header.study_uid,
                image_id=image_id,
                path=absolute(path),
                laterality=header.laterality,
                view=header.view,
                provenance=format_provenance(provenance),
            )
        )
    if options.labels:
        records = apply_labels(records, options.labels, options.root, problems)
    return finish(records, problems, str(options.root))


def apply_labels(records: list[ImageRecord], labels: Path, root: Path, problems: list[Problem]) -> list[ImageRecord]:
    """The records with the labels CSV applied (see the module docstring for its columns)."""
    rows = read_table(Path(labels), ())
    by_path = {record.path: i for i, record in enumerate(records)}
    by_id = {record.image_id: i for i, record in enumerate(records)}
    breast_updates: dict[int, dict[str, object]] = {}
    image_updates: dict[int, dict[str, object]] = {}
    for number, row in rows:
        where = f"{labels} row {number}"
        values, problem = _values(row)
        if problem:
            problems.append(Problem(where, problem))
            continue
        if row.get("path"):
            value = row["path"]
            match = by_path.get(absolute(Path(value) if os.path.isabs(value) else root / value))
            targets, updates, key = ([] if match is None else [match]), image_updates, f"path {value!r}"
        elif row.get("image_id"):
            match = by_id.get(row["image_id"])
            targets, updates, key = ([] if match is None else [match]), image_updates, f"image_id {row['image_id']!r}"
        elif row.get("patient_id") and row.get("laterality"):
            side, study = row["laterality"].upper()[:1], row.get("study_id", "")
            targets = [
                i
                for i, r in enumerate(records)
                if r.patient_id == row["patient_id"] and r.laterality == side and (not study or r.study_id == study)
            ]
            updates, key = breast_updates, f"breast {row['patient_id']} {row['laterality']}"
        else:
            problems.append(Problem(where, "no key: give path, image_id, or patient_id and laterality"))
            continue
        if not targets:
            problems.append(Problem(where, f"{key} matches no indexed image"))
            continue
        for target in targets:
            updates.setdefault(target, {}).update(values)
    return [
        replace(record, **{**breast_updates.get(i, {}), **image_updates.get(i, {})}) for i, record in enumerate(records)
    ]


def _values(row: dict[str, str]) -> tuple[dict[str, object], str]:
    """The label fields a row sets (its non-empty value cells), or a problem naming the bad cell."""
    values: dict[str, object] = {}
    for column in ("abnormal", "malignant"):
        cell = row.get(column, "")
        if cell and cell not in _FLAGS:
            return {}, f"{column} {cell!r} is not 1, 0 or -1"
        if cell:
            values[column] = _FLAGS[cell]
    if row.get("birads"):
        values["birads"] = birads_text(row["birads"])
    density = row.get("density", "").upper()
    if density:
        density = DENSITY_FROM_ACR.get(density, density)
        if density not in ("A", "B", "C", "D"):
            return {}, f"density {row['density']!r} is not A-D or 1-4"
        values["density"] = density
    split = row.get("split", "").lower()
    if split:
        if split not in SPLITS:
            return {}, f"split {row['split']!r} is not one of {', '.join(SPLITS)}"
        values["split"] = split
    if row.get("boxes"):
        boxes, problem = parse_boxes(row["boxes"])
        if problem:
            return {}, f"boxes: {problem}"
        values["boxes"] = boxes
    return values, ""
