"""RSNA Screening Mammography Breast Cancer Detection (Kaggle): ``train.csv`` + ``train_images/``.

Layout::

    train.csv      site_id, patient_id, image_id, laterality, view, age, cancer, biopsy, invasive, BIRADS, implant,
                   density, machine_id, difficult_negative_case
    train_images/<patient_id>/<image_id>.dcm

``test.csv`` has no labels and is not indexed.

Policies:

* Labels are per breast (repeated on each image of the breast). ``malignant`` = ``cancer``. ``abnormal`` = 1 for a
  cancer or a biopsied breast (a lesion was worked up: ``biopsy`` = 1 and ``cancer`` = 0 is a benign lesion), 0 for a
  breast without biopsy (a screening negative), and unknown for a breast without biopsy but with ``BIRADS`` 0 (recalled
  for a finding that was never characterised). So the ``malignancy`` task is biopsy-proven cancer against biopsied
  benign lesions; without a ``biopsy`` column, ``abnormal`` = ``cancer``.
* There is one exam per patient: ``study_id`` is empty. There is no official split (``test.csv`` has no labels), so
  bilatcf deals out a patient-wise 8:1:1 split.
* Views other than CC and MLO (AT, ML, LM, LMO) are kept under their own name: they pair only with the same view of
  the other breast. An unknown view is skipped and reported.
* Several images of one breast and view (repeated acquisitions) are all kept and counted in one note; pairing uses
  the first by ``image_id`` and reports the others as ``duplicate view``. An ``image_id`` listed twice is skipped.
"""

from __future__ import annotations

from collections import Counter

from bilatcf.data.adapters.base import (
    IndexOptions,
    IndexResult,
    Problem,
    absolute,
    birads_text,
    existing_file,
    finish,
    numeric_text,
    side_and_view,
)
from bilatcf.data.adapters.tables import find_file, read_table
from bilatcf.data.types import ImageRecord

DATASET = "rsna"
_COLUMNS = ("patient_id", "image_id", "laterality", "view", "cancer")
_FLAGS = {"1": 1, "0": 0}


def index(options: IndexOptions) -> IndexResult:
    """Index the competition folder (``rsna-breast-cancer-detection/``, or a folder above it)."""
    table = find_file(
        options.root,
        ["train.csv"],
        "RSNA table",
        "the competition folder holds train.csv next to train_images/ (kaggle competitions download -c "
        "rsna-breast-cancer-detection).",
    )
    base = table.parent
    problems: list[Problem] = []
    records = []
    seen: set[str] = set()
    for number, row in read_table(table, _COLUMNS):
        where = f"{table} row {number}"
        image = numeric_text(row["image_id"])
        if image in seen:
            problems.append(Problem(where, f"image_id {image!r} listed twice; the first row is used"))
            continue
        seen.add(image)
        record = _record(row, base, where, problems)
        if record is not None:
            records.append(record)
    slots = Counter((r.patient_id, r.laterality, r.view) for r in records)
    repeated = sum(count - 1 for count in slots.values() if count > 1)
    if repeated:
        problems.append(
            Problem(
                str(table),
                f"{repeated} images repeat a breast and view of their patient (repeated acquisitions): all are kept, "
                "pairing uses the first by image_id",
                kept=True,
            )
        )
    return finish(records, problems, str(table))


def _record(row: dict[str, str], base, where: str, problems: list[Problem]) -> ImageRecord | None:
    patient, image = numeric_text(row["patient_id"]), numeric_text(row["image_id"])
    location = side_and_view(row["laterality"], row["view"], where, problems)
    path = base / "train_images" / patient / f"{image}.dcm"
    if location is None or not existing_file(path, where, problems):
        return None
    laterality, view = location
    birads = birads_text(row.get("BIRADS", ""))
    abnormal, malignant = _labels(row, birads)
    if malignant == -1:
        problems.append(Problem(where, f"cancer {row['cancer']!r} is not 0 or 1; labels unknown", kept=True))
    density = row.get("density", "").upper()
    return ImageRecord(
        dataset=DATASET,
        patient_id=patient,
        study_id="",
        image_id=image,
        path=absolute(path),
        laterality=laterality,
        view=view,
        abnormal=abnormal,
        malignant=malignant,
        birads=birads,
        density=density if density in ("A", "B", "C", "D") else "",
    )


def _labels(row: dict[str, str], birads: str) -> tuple[int, int]:
    cancer = _FLAGS.get(numeric_text(row["cancer"]), -1)
    if cancer == -1:
        return -1, -1
    if "biopsy" not in row:
        return cancer, cancer
    if cancer == 1 or _FLAGS.get(numeric_text(row["biopsy"])) == 1:
        return 1, cancer
    return (-1 if birads == "0" else 0), 0
