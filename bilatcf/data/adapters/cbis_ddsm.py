"""CBIS-DDSM (TCIA): the four case-description CSVs + the DICOM folders → one record per full mammogram.

Tables: ``{mass,calc}_case_description_{train,test}_set.csv``, one row per abnormality (an image with several
abnormalities has several rows). Their columns are the same except the density, spelled ``breast_density`` in the mass
tables and ``breast density`` in the calc tables. Path cells are relative to the image folder and may end in a
newline.

Images (both layouts NBIA writes are read):

* classic: ``<Subject>/<StudyInstanceUID>/<SeriesInstanceUID>/000000.dcm``, the paths of the CSVs; when the file is
  named otherwise (``1-1.dcm``), the only DICOM of that series folder is used;
* descriptive: ``<Subject>/<date>-<description>/<n>.000000-<series description>-<n>/1-1.dcm``, where no UID of the
  CSV appears: the DICOMs are found under the subject folder (``Mass-Training_P_00001_LEFT_CC``; lesions under
  ``..._CC_1``, ``..._CC_2``), and the full mammogram is the one in a ``full mammogram`` series when there are several.

The subject folders are found wherever they sit below the root (``CBIS-DDSM/``, ``manifest-*/CBIS-DDSM/``).

Policies:

* One record per (patient, side, view): the rows of its abnormalities are merged, across the mass and calc tables too
  (the same mammogram is stored under both subject folders; the first table's file is used). ``image_id`` is
  ``P_00001_LEFT_CC``; ``study_id`` is empty (one DDSM exam per case).
* ``abnormal`` = 1 for every image (CBIS-DDSM holds only breasts with a lesion); ``malignant`` = 1 if any of its
  abnormalities is MALIGNANT, else 0 (BENIGN and BENIGN_WITHOUT_CALLBACK are benign); ``birads`` = the highest
  ``assessment``; density 1–4 → A–D.
* The official split is kept (Training → train, Test → test; bilatcf carves val from train). A patient whose images
  sit in both (a mass in one, a calcification in the other) goes to test entirely, so no breast of a test patient is
  trained on.
* ``mask_path`` is the abnormality's ROI mask DICOM for images with one abnormality. The crop and mask columns are
  swapped in many rows, so the mask is recognised by its size: the candidate (mask or crop file, or the DICOMs of
  the lesion's folder) whose Rows×Columns equal the full image's (read from the headers). Images with several
  abnormalities get no mask (their masks are separate files; merging them needs their pixels), nor do images whose
  mask has another size than the image. There are no boxes (they would need the mask pixels).
* The subject folder name must agree with the patient, side and view columns; a row where it does not is skipped.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bilatcf.data.adapters.base import (
    DENSITY_FROM_ACR,
    IndexOptions,
    IndexResult,
    Problem,
    absolute,
    birads_rank,
    finish,
    numeric_text,
)
from bilatcf.data.adapters.tables import read_table
from bilatcf.data.dicom_tags import format_provenance, read_header
from bilatcf.data.types import ImageRecord
from bilatcf.errors import DataError

DATASET = "cbis_ddsm"
TABLES = (
    "mass_case_description_train_set.csv",
    "mass_case_description_test_set.csv",
    "calc_case_description_train_set.csv",
    "calc_case_description_test_set.csv",
)
PATHOLOGY_MALIGNANT = {"MALIGNANT": 1, "BENIGN": 0, "BENIGN_WITHOUT_CALLBACK": 0}
DENSITY_COLUMNS = ("breast_density", "breast density")
_COLUMNS = (
    "patient_id",
    "left or right breast",
    "image view",
    "abnormality id",
    "assessment",
    "pathology",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
)
_SUBJECT = re.compile(r"^(Mass|Calc)-(Training|Test)_(P_\d+)_(LEFT|RIGHT)_(CC|MLO)(?:_(\d+))?$")
_SPLITS = {"Training": "train", "Test": "test"}
_SEARCH_DEPTH = 3  # subject folders are at most this deep below the root
_LISTED = 5


@dataclass
class _Image:
    """What the rows of one (patient, side, view) say."""

    patient: str
    laterality: str
    view: str
    path: Path
    path_source: str
    tables: set[str] = field(default_factory=set)
    splits: set[str] = field(default_factory=set)
    malignant: list[int] = field(default_factory=list)
    assessments: list[int] = field(default_factory=list)
    density: str = ""
    lesions: list[tuple[str, str, str]] = field(default_factory=list)  # (where, mask cell, crop cell)


def index(options: IndexOptions) -> IndexResult:
    """Index a CBIS-DDSM download: the CSVs anywhere below the root, the DICOMs in either NBIA layout."""
    problems: list[Problem] = []
    tables = _find_tables(options.root, problems)
    subjects = _subject_folders(options.root)
    if not subjects:
        raise DataError(
            f"no CBIS-DDSM subject folder (Mass-Training_P_00001_LEFT_CC, ...) found in {options.root} or "
            f"{_SEARCH_DEPTH} levels below it; point --root to the folder the NBIA Data Retriever downloaded into."
        )
    images: dict[tuple[str, str, str], _Image] = {}
    for table in tables:
        for number, row in read_table(table, _COLUMNS):
            _add_row(images, row, f"{table} row {number}", table.name, subjects, problems)
    mixed = _mixed_patients(list(images.values()), problems, str(options.root))
    records = [_record(image, subjects, problems, options.official_split, mixed) for image in images.values()]
    both = sum(len({name.split("_")[0] for name in image.tables}) > 1 for image in images.values())
    if both:
        problems.append(
            Problem(
                str(options.root),
                f"{both} images are listed in both the mass and the calc tables (the same mammogram under two subject "
                "folders): their abnormalities are merged into one record",
                kept=True,
            )
        )
    several = [i for i in images.values() if len(i.lesions) > 1]
    if several:
        problems.append(
            Problem(
                str(options.root),
                f"{len(several)} images have several abnormalities and get no mask_path (their ROI masks are "
                "separate files; merging them needs their pixels)",
                kept=True,
            )
        )
    return finish(records, problems, str(options.root))


def _find_tables(root: Path, problems: list[Problem]) -> list[Path]:
    found = []
    for name in TABLES:
        paths = [root / name] if (root / name).is_file() else sorted(root.rglob(name))
        if paths:
            found.append(paths[0])
        else:
            problems.append(Problem(str(root), f"{name} not found; its images are not indexed", kept=True))
    if not found:
        raise DataError(
            f"none of the CBIS-DDSM tables ({', '.join(TABLES)}) is in {root} or below it; download them from the "
            "TCIA CBIS-DDSM page (they are separate from the images) and put them in the dataset folder."
        )
    return found


def _subject_folders(root: Path) -> dict[str, Path]:
    """Subject folder name → folder, searched breadth-first a few levels below the root."""
    found: dict[str, Path] = {}
    level = [root]
    for _ in range(_SEARCH_DEPTH + 1):
        deeper = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
            except OSError:
                continue
            for entry in entries:
                if not entry.is_dir():
                    continue
                if _SUBJECT.match(entry.name):
                    found.setdefault(entry.name, Path(entry.path))
                else:
                    deeper.append(Path(entry.path))
        if found:
            return found
        level = deeper
    return found


def _add_row(
    images: dict[tuple[str, str, str], _Image],
    row: dict[str, str],
    where: str,
    table: str,
    subjects: dict[str, Path],
    problems: list[Problem],
) -> None:
    patient, side, view = row["patient_id"], row["left or right breast"].upper(), row["image view"].upper()
    if side not in ("LEFT", "RIGHT") or view not in ("CC", "MLO"):
        problems.append(
            Problem(where, f"left or right breast {side!r} / image view {view!r} is not LEFT|RIGHT / CC|MLO")
        )
        return
    cell = row["image file path"]
    subject = cell.replace("\\", "/").split("/")[0]
    match = _SUBJECT.match(subject)
    if match is None or match.group(6) is not None:
        problems.append(Problem(where, f"image file path {cell!r} does not start with a subject folder"))
        return
    if (match.group(3), match.group(4), match.group(5)) != (patient, side, view):
        problems.append(
            Problem(
                where,
                f"contradictory row: patient_id/side/view say {patient} {side} {view}, the image file path "
                f"says {subject}",
            )
        )
        return
    key = (patient, side, view)
    if key not in images:
        path, source = _resolve_full(cell, subjects)
        if path is None:
            problems.append(Problem(where, source))
            return
        images[key] = _Image(patient, side[0], view, path, source)
    image = images[key]
    image.tables.add(table)
    image.splits.add(_SPLITS[match.group(2)])
    pathology = row["pathology"].upper()
    if pathology not in PATHOLOGY_MALIGNANT:
        problems.append(
            Problem(
                where,
                f"pathology {row['pathology']!r} is not one of {', '.join(PATHOLOGY_MALIGNANT)}; malignancy "
                "of this abnormality unknown",
                kept=True,
            )
        )
    image.malignant.append(PATHOLOGY_MALIGNANT.get(pathology, -1))
    rank = birads_rank(row["assessment"])
    if rank is not None:
        image.assessments.append(rank)
    density = next((numeric_text(row[c]) for c in DENSITY_COLUMNS if row.get(c)), "")
    if density and not image.density:
        image.density = DENSITY_FROM_ACR.get(density, "")
        if not image.density:
            problems.append(Problem(where, f"breast density {density!r} is not 1-4; left empty", kept=True))
    image.lesions.append((where, row["ROI mask file path"], row["cropped image file path"]))


def _resolve_full(cell: str, subjects: dict[str, Path]) -> tuple[Path | None, str]:
    """(file, provenance source or "") of a full-mammogram path cell, or (None, reason)."""
    parts = [part for part in cell.replace("\\", "/").split("/") if part]
    folder = subjects.get(parts[0])
    if folder is None:
        return None, f"subject folder {parts[0]} not found below the root (image not downloaded?)"
    exact = folder.joinpath(*parts[1:])
    if exact.is_file():
        return exact, ""
    if exact.parent.is_dir() and exact.parent != folder:
        in_series = _dicoms(exact.parent, recursive=False)
        if len(in_series) == 1:
            return in_series[0], "series folder"
    dicoms = _dicoms(folder, recursive=True)
    full = [path for path in dicoms if "full mammogram" in str(path.parent.name).lower()] or dicoms
    if len(full) == 1:
        return full[0], "subject folder"
    if not full:
        return None, f"no DICOM file in {folder} (download incomplete?)"
    return None, f"{len(full)} DICOM files in {folder} and none in a 'full mammogram' series; which is the image?"


def _dicoms(folder: Path, recursive: bool) -> list[Path]:
    pattern = "**/*.dcm" if recursive else "*.dcm"
    return sorted(path for path in folder.glob(pattern) if path.is_file())


def _record(
    image: _Image, subjects: dict[str, Path], problems: list[Problem], official_split: bool, mixed: set[str]
) -> ImageRecord:
    provenance = [("path", image.path_source)] if image.path_source else []
    split = ""
    if official_split and image.patient in mixed:
        split = "test"
        if image.splits != {"test"}:
            provenance.append(("split", "the patient's test rows"))
    elif official_split:
        split = next(iter(image.splits))
    mask_path = ""
    if len(image.lesions) == 1:
        mask, source = _find_mask(image, *image.lesions[0], subjects, problems)
        if mask is not None:
            mask_path = absolute(mask)
            provenance += [("mask_path", source)] if source else []
    malignant = 1 if 1 in image.malignant else (-1 if -1 in image.malignant else 0)
    return ImageRecord(
        dataset=DATASET,
        patient_id=image.patient,
        study_id="",
        image_id=f"{image.patient}_{'LEFT' if image.laterality == 'L' else 'RIGHT'}_{image.view}",
        path=absolute(image.path),
        laterality=image.laterality,
        view=image.view,
        abnormal=1,
        malignant=malignant,
        birads=str(max(image.assessments)) if image.assessments else "",
        density=image.density,
        split=split,
        mask_path=mask_path,
        provenance=format_provenance(provenance),
    )


def _find_mask(
    image: _Image, where: str, mask_cell: str, crop_cell: str, subjects: dict[str, Path], problems: list[Problem]
) -> tuple[Path | None, str]:
    """The ROI mask of the image's only abnormality: the candidate file with the full image's size."""
    candidates: dict[Path, str] = {}
    for column, cell in (("ROI mask file path", mask_cell), ("cropped image file path", crop_cell)):
        parts = [part for part in cell.replace("\\", "/").split("/") if part]
        folder = subjects.get(parts[0]) if parts else None
        if folder is None:
            continue
        exact = folder.joinpath(*parts[1:])
        if exact.is_file():
            candidates.setdefault(exact, "" if column == "ROI mask file path" else column)
        elif exact.parent.is_dir() and exact.parent != folder:
            for path in _dicoms(exact.parent, recursive=False):
                candidates.setdefault(path, "series folder")
        else:
            for path in _dicoms(folder, recursive=True):
                candidates.setdefault(path, "subject folder")
    if not candidates:
        problems.append(Problem(where, "no ROI mask or crop file found; the image is kept without mask", kept=True))
        return None, ""
    try:
        full = read_header(image.path)
    except DataError as error:
        problems.append(Problem(where, f"{error}; the image is kept without mask", kept=True))
        return None, ""
    sizes = []
    for path, source in candidates.items():
        try:
            header = read_header(path)
        except DataError:
            continue
        sizes.append(f"{header.columns}×{header.rows}")
        if (header.rows, header.columns) == (full.rows, full.columns) and full.rows > 0:
            return path, source
    problems.append(
        Problem(
            where,
            f"no ROI mask of the full image's size {full.columns}×{full.rows} (found "
            f"{', '.join(sizes) or 'no readable file'}); the image is kept without mask",
            kept=True,
        )
    )
    return None, ""


def _mixed_patients(images: list[_Image], problems: list[Problem], where: str) -> set[str]:
    """Patients with images (or rows) in both official sets, reported once; they go to test entirely."""
    splits = defaultdict(set)
    for image in images:
        splits[image.patient] |= image.splits
    mixed = sorted(patient for patient, values in splits.items() if len(values) > 1)
    if mixed:
        listed = ", ".join(mixed[:_LISTED]) + (", ..." if len(mixed) > _LISTED else "")
        problems.append(
            Problem(
                where,
                f"{len(mixed)} patients have rows in both the official train and test tables ({listed}): all their "
                "images go to test, so no breast of a test patient is trained on",
                kept=True,
            )
        )
    return set(mixed)
