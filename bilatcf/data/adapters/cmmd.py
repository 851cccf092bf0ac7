"""CMMD (The Chinese Mammography Database, TCIA): the clinical sheet joined to the DICOM headers.

Layout (NBIA descriptive names)::

    CMMD_clinicaldata_revision.xlsx   ID1, LeftRight, Age, number, abnormality, classification, subtype
    CMMD/<ID1>/<date>-<n>/1.000000-<n>/1-1.dcm ...

The sheet has one row per breast with a lesion; laterality and view exist only in the DICOM headers
(``ImageLaterality`` and ``ViewCodeSequence``, read by :mod:`bilatcf.data.dicom_tags`), so each image's header is
read (never its pixels) and joined on ``(ID1, LeftRight) == (PatientID, laterality)``. The sheet may also be given as
a CSV with the same columns (``--labels``).

Policies:

* A breast with a row is abnormal; ``malignant`` = ``classification`` (Malignant 1, Benign 0). A breast without a row
  of a patient who has one is normal (abnormal 0, malignant 0), as the dataset describes; the images of a patient
  without any row have unknown labels and are reported.
* The patient is the ``PatientID`` tag (else the ``D1-0001`` folder the file is in, recorded as provenance); the
  study is the ``StudyInstanceUID``; the image is the ``SOPInstanceUID``.
* Many D1 patients have images of one breast only: they are kept and reported in the one-breast note.
* There is no official split: bilatcf deals out a patient-wise 8:1:1 split.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bilatcf.data.adapters.base import (
    IndexOptions,
    IndexResult,
    Problem,
    absolute,
    dicom_headers,
    finish,
    numeric_text,
)
from bilatcf.data.adapters.tables import find_file, read_table
from bilatcf.data.dicom_tags import DicomHeader, format_provenance
from bilatcf.data.types import ImageRecord

DATASET = "cmmd"
SHEETS = ("CMMD_clinicaldata_revision.xlsx", "CMMD_clinicaldata_revision.csv")
CLASSIFICATION = {"MALIGNANT": 1, "BENIGN": 0}
_COLUMNS = ("ID1", "LeftRight", "classification")
_PATIENT = re.compile(r"^D\d-\d{4}$")
_LISTED = 5


@dataclass(frozen=True)
class _Breast:
    malignant: int
    abnormality: str
    number: int | None
    where: str


def index(options: IndexOptions) -> IndexResult:
    """Index a CMMD download (the NBIA folder, with the clinical sheet in it or given as ``options.labels``)."""
    sheet = options.labels or find_file(
        options.root,
        SHEETS,
        "CMMD clinical sheet",
        "download CMMD_clinicaldata_revision.xlsx from the TCIA CMMD page into the dataset folder, or pass --labels.",
    )
    problems: list[Problem] = []
    breasts, patients = _breasts(sheet, problems)
    headers = dicom_headers(options.root, problems, suffixes=(".dcm",), skip=[sheet])
    records = []
    for path, header in headers:
        record = _record(path, header, options.root, breasts, patients, problems)
        if record is not None:
            records.append(record)
    _check_sheet_against_images(records, breasts, problems)
    unlabelled = sorted({r.patient_id for r in records if r.patient_id not in patients})
    if unlabelled:
        listed = ", ".join(unlabelled[:_LISTED]) + (", ..." if len(unlabelled) > _LISTED else "")
        problems.append(
            Problem(
                str(sheet), f"{len(unlabelled)} patients have images but no row ({listed}): labels unknown", kept=True
            )
        )
    return finish(records, problems, str(options.root))


def _breasts(sheet: Path, problems: list[Problem]) -> tuple[dict[tuple[str, str], _Breast], set[str]]:
    breasts: dict[tuple[str, str], _Breast] = {}
    for number, row in read_table(sheet, _COLUMNS):
        where = f"{sheet} row {number}"
        patient, side = row["ID1"], row["LeftRight"].upper()
        if side not in ("L", "R"):
            problems.append(Problem(where, f"LeftRight {row['LeftRight']!r} is not L or R"))
            continue
        malignant = CLASSIFICATION.get(row["classification"].upper(), -1)
        if malignant == -1:
            problems.append(
                Problem(
                    where,
                    f"classification {row['classification']!r} is not Benign or Malignant; malignancy unknown",
                    kept=True,
                )
            )
        count = numeric_text(row.get("number", ""))
        breast = _Breast(malignant, row.get("abnormality", ""), int(count) if count.isdigit() else None, where)
        key = (patient, side)
        if key in breasts:
            first = breasts[key]
            if first.malignant != malignant:
                problems.append(
                    Problem(
                        where,
                        f"{patient} {side} is also in {first.where} with another classification; malignancy unknown",
                        kept=True,
                    )
                )
                breasts[key] = _Breast(-1, first.abnormality, first.number, first.where)
            continue
        breasts[key] = breast
    return breasts, {patient for patient, _ in breasts}


def _record(
    path: Path,
    header: DicomHeader,
    root: Path,
    breasts: dict[tuple[str, str], _Breast],
    patients: set[str],
    problems: list[Problem],
) -> ImageRecord | None:
    provenance = list(header.provenance)
    folder = next((part for part in path.relative_to(root).parts[:-1] if _PATIENT.match(part)), "")
    patient = header.patient_id
    if not patient:
        patient = folder
        provenance.insert(0, ("patient_id", "folder"))
    elif folder and folder != patient:
        problems.append(Problem(str(path), f"contradictory patient: PatientID {patient!r}, folder {folder!r}"))
        return None
    if not patient:
        problems.append(Problem(str(path), "no PatientID tag and no D1-xxxx / D2-xxxx folder: no patient"))
        return None
    image_id = header.sop_uid
    if not image_id:
        image_id = path.relative_to(root).as_posix()
        provenance.append(("image_id", "path"))
    breast = breasts.get((patient, header.laterality))
    if breast is not None:
        abnormal, malignant = 1, breast.malignant
    elif patient in patients:
        abnormal, malignant = 0, 0
    else:
        abnormal, malignant = -1, -1
    return ImageRecord(
        dataset=DATASET,
        patient_id=patient,
        study_id=header.study_uid,
        image_id=image_id,
        path=absolute(path),
        laterality=header.laterality,
        view=header.view,
        abnormal=abnormal,
        malignant=malignant,
        provenance=format_provenance(provenance),
    )


def _check_sheet_against_images(
    records: list[ImageRecord], breasts: dict[tuple[str, str], _Breast], problems: list[Problem]
) -> None:
    """Rows whose breast has no image are reported; so are image counts that differ from the ``number`` column."""
    counts = Counter((r.patient_id, r.laterality) for r in records)
    for (patient, side), breast in breasts.items():
        found = counts.get((patient, side), 0)
        if not found:
            problems.append(Problem(breast.where, f"no image of {patient} {side} was found; row not used"))
        elif breast.number is not None and breast.number != found:
            problems.append(
                Problem(
                    breast.where, f"number says {breast.number} images of {patient} {side}, found {found}", kept=True
                )
            )
