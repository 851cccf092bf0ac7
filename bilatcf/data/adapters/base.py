"""What every dataset adapter shares: options, problems, the result, and the checks run on every manifest it makes.

An adapter reads a dataset folder exactly as it is distributed and returns :class:`ImageRecord`\\ s. It never writes
into the dataset folder (files are opened for reading only; masks go to the folder it is given) and never drops a row
silently: each row or file it cannot use becomes a :class:`Problem` naming the file (and CSV row) and the reason, and
the CLI prints them all.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bilatcf.data.dicom_tags import DicomHeader, NotDicomError, read_header, unusable_reason
from bilatcf.data.manifest import validate_records
from bilatcf.data.types import VIEWS, ImageRecord
from bilatcf.errors import ConfigError, DataError

DENSITY_FROM_ACR = {"1": "A", "2": "B", "3": "C", "4": "D"}
_LISTED_IDS = 5


@dataclass(frozen=True)
class IndexOptions:
    """What ``bilatcf data index`` passes to an adapter.

    Attributes:
        root: the dataset folder as downloaded (read only).
        masks_dir: where rasterised lesion masks are written (INbreast); None: no mask files.
        labels: a labels file for the adapters that take one (CMMD's clinical sheet, the folder adapter's CSV).
        official_split: keep the dataset's own train/test split in the ``split`` column (False: leave it empty so
            bilatcf deals out a patient-wise 8:1:1 split).
    """

    root: Path
    masks_dir: Path | None = None
    labels: Path | None = None
    official_split: bool = True


@dataclass(frozen=True)
class Problem:
    """A row or file the adapter could not use (``kept=False``), or a fact about kept images worth knowing."""

    where: str  # the file, with its CSV row when the problem is a row ("INbreast.csv row 7")
    reason: str
    kept: bool = False

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" + (" (kept)" if self.kept else " (skipped)")


@dataclass
class IndexResult:
    """The records of a dataset and everything that went wrong while reading it."""

    records: list[ImageRecord]
    problems: list[Problem] = field(default_factory=list)

    @property
    def skipped(self) -> list[Problem]:
        return [problem for problem in self.problems if not problem.kept]

    def summary(self) -> str:
        """A few lines of counts: images, patients, sides and views, labels, masks, boxes, splits, provenance."""
        records = self.records
        patients = {record.patient_id for record in records}

        def counts(values: Iterable[str]) -> str:
            return ", ".join(f"{key or '(empty)'} {count}" for key, count in sorted(Counter(values).items()))

        def labels(name: str) -> str:
            values = Counter(getattr(record, name) for record in records)
            return f"{name} 1: {values[1]}, 0: {values[0]}, unknown: {values[-1]}"

        masks, boxed = sum(bool(r.mask_path) for r in records), sum(bool(r.boxes) for r in records)
        lines = [
            f"{len(records)} images of {len(patients)} patients",
            f"  laterality: {counts(r.laterality for r in records)}; view: {counts(r.view for r in records)}",
            f"  {labels('abnormal')}; {labels('malignant')}",
            f"  masks: {masks}; images with boxes: {boxed}; split: {counts(r.split for r in records)}",
        ]
        fallbacks = Counter(
            item.replace("=", " from ", 1) for r in records for item in filter(None, r.provenance.split(";"))
        )
        if fallbacks:
            lines.append("  fallbacks: " + ", ".join(f"{key} {count}" for key, count in sorted(fallbacks.items())))
        skipped = len(self.skipped)
        lines.append(f"  problems: {len(self.problems)} ({skipped} skipped, {len(self.problems) - skipped} notes)")
        return "\n".join(lines)


Index = Callable[[IndexOptions], IndexResult]


@dataclass(frozen=True)
class Adapter:
    """One registered dataset: its manifest ``dataset`` value, its indexing function and the options it takes."""

    name: str
    index: Index
    description: str
    takes: frozenset[str] = frozenset()  # of {"masks_dir", "labels"}


def birads_labels(category: str, malignant_from: str = "4a") -> tuple[int, int]:
    """(abnormal, malignant) from a BI-RADS category (``"4b"``, ``"BI-RADS 5"``, ``"3.0"``).

    1 → no finding (0, 0); 2, 3 → a finding judged benign (1, 0); categories from ``malignant_from`` up → (1, 1): by
    default 4a, 4b, 4c, 5 and 6, "BI-RADS > 3", the seeds' protocol (``"4b"`` makes 4a benign); 0 (incomplete,
    needs work-up) and anything else → unknown (-1, -1).
    """
    order, threshold = birads_order(category), birads_order(malignant_from)
    if threshold is None:
        raise ConfigError(f"malignant_from={malignant_from!r} is not a BI-RADS category (e.g. '4a', '4b', '5').")
    if order is None or order == 0:
        return -1, -1
    if order == 1:
        return 0, 0
    return 1, int(order >= threshold)


def birads_order(category: str) -> float | None:
    """A number that orders BI-RADS categories, subcategories included (4 and 4a → 4.0, 4b → 4.1, 4c → 4.2), or None
    when the text is not a category."""
    text = category.strip().upper().removeprefix("BI-RADS").removeprefix("BIRADS").strip()
    sub = 0.0
    if text[:1] == "4" and text[1:] in ("A", "B", "C"):
        text, sub = "4", {"A": 0.0, "B": 0.1, "C": 0.2}[text[1:]]
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or value != int(value) or not 0 <= value <= 6:
        return None
    return value + sub


def birads_rank(category: str) -> int | None:
    """The BI-RADS category number (4a/4b/4c → 4), or None when the text is not a category."""
    order = birads_order(category)
    return None if order is None else int(order)


def birads_text(category: str) -> str:
    """BI-RADS as the manifest writes it: ``"4B"`` → ``"4b"``, ``"3.0"`` → ``"3"``, ``"BI-RADS 2"`` → ``"2"``."""
    text = category.strip().upper().removeprefix("BI-RADS").removeprefix("BIRADS").strip()
    if text.endswith(".0"):
        text = text[:-2]
    return text.lower()


def side_and_view(
    laterality: str, view: str, where: str, problems: list[Problem], names: tuple[str, str] = ("laterality", "view")
) -> tuple[str, str] | None:
    """(L|R, view) from a table's cells, upper-cased; None with a problem when either is not one the manifest knows.
    ``names``: the table's column names, for the message."""
    laterality, view = laterality.strip().upper(), view.strip().upper()
    if laterality not in ("L", "R"):
        problems.append(Problem(where, f"{names[0]} {laterality!r} is not L or R"))
        return None
    if view not in VIEWS:
        problems.append(Problem(where, f"unknown {names[1]} {view!r} (known: {', '.join(VIEWS)})"))
        return None
    return laterality, view


def existing_file(path: Path, where: str, problems: list[Problem]) -> bool:
    """Whether the image file a table row names exists; a problem when it does not."""
    if path.is_file():
        return True
    problems.append(Problem(where, f"image file {path} not found"))
    return False


def numeric_text(value: str) -> str:
    """``"1.0"`` → ``"1"`` (CSV exports of integer columns with missing values write floats)."""
    return value[:-2] if value.endswith(".0") and value[:-2].lstrip("-").isdigit() else value


def absolute(path: Path) -> str:
    """Manifest paths are absolute (without resolving symlinks), so the manifest works from any working directory."""
    return os.path.abspath(path)


def check_output_folder(folder: Path | None, root: Path, what: str) -> None:
    """Refuse to write ``what`` inside the dataset folder, which adapters only read."""
    if folder is None:
        return
    folder, root = Path(os.path.abspath(folder)), Path(os.path.abspath(root))
    if folder == root or root in folder.parents:
        raise ConfigError(
            f"{what} {folder} is inside the dataset folder {root}; bilatcf never writes into a dataset — choose a "
            "folder outside it."
        )


def finish(records: list[ImageRecord], problems: list[Problem], source: str) -> IndexResult:
    """The checks every manifest gets, then a stable order (patient, study, view, side, image).

    * a second record with an image_id or a file already used is skipped (duplicate images);
    * records that break the manifest rules (they should not: the adapter is wrong) are skipped with the rule;
    * patients with images of one breast only are reported once, as a note (their images are kept; pairing drops
      them unless ``missing_partner='mirror-self'``).
    """
    kept: list[ImageRecord] = []
    by_id: dict[str, ImageRecord] = {}
    by_path: dict[str, ImageRecord] = {}
    for record in records:
        first = by_id.get(record.image_id) or by_path.get(record.path)
        if first is not None:
            same = "image_id" if first.image_id == record.image_id else "file"
            problems.append(
                Problem(record.path, f"duplicate image: same {same} as image {first.image_id!r} ({first.path})")
            )
            continue
        for problem in validate_records([record], check_files=False):
            problems.append(Problem(record.path, problem.replace("record 0 ", "record ")))
            break
        else:
            by_id[record.image_id] = by_path[record.path] = record
            kept.append(record)
    sides: dict[str, set[str]] = {}
    for record in kept:
        sides.setdefault(record.patient_id, set()).add(record.laterality)
    one_side = sorted(patient for patient, lateralities in sides.items() if len(lateralities) == 1)
    if one_side:
        listed = ", ".join(one_side[:_LISTED_IDS]) + (", ..." if len(one_side) > _LISTED_IDS else "")
        problems.append(
            Problem(
                source,
                f"{len(one_side)} of {len(sides)} patients have images of one breast only ({listed}): their images "
                "have no contralateral partner, so pairing drops them unless --data.missing_partner mirror-self",
                kept=True,
            )
        )
    kept.sort(key=lambda r: (r.patient_id, r.study_id, r.view, r.laterality, r.image_id))
    return IndexResult(kept, problems)


def dicom_headers(
    root: Path, problems: list[Problem], suffixes: tuple[str, ...] | None = None, skip: Iterable[Path] = ()
) -> list[tuple[Path, DicomHeader]]:
    """The DICOM headers of the files below ``root`` (sorted), each file that is not a usable mammogram a problem.

    Args:
        root: the folder to walk.
        problems: receives a problem per file that is not DICOM, cannot be read, or is not a usable mammogram
            (:func:`bilatcf.data.dicom_tags.unusable_reason`).
        suffixes: only files with these suffixes (lower case, e.g. ``(".dcm",)``); None: every file, since DICOM
            files often have no suffix.
        skip: files not to read (e.g. the labels CSV).

    Returns:
        ``(path, header)`` of the usable mammograms.
    """

    skipped = {os.path.abspath(path) for path in skip}
    found = []
    for folder, folders, files in os.walk(root):
        folders.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if os.path.abspath(path) in skipped or (suffixes is not None and path.suffix.lower() not in suffixes):
                continue
            relative = path.parent.relative_to(root).as_posix()
            try:
                header = read_header(path, extra_text=[("folder", relative)] if relative != "." else [])
            except NotDicomError:
                problems.append(Problem(str(path), "not a DICOM file (no DICM prefix)"))
                continue
            except DataError as error:
                problems.append(Problem(str(path), str(error).removeprefix(f"{path}: ")))
                continue
            reason = unusable_reason(header)
            if reason:
                problems.append(Problem(str(path), reason))
            else:
                found.append((path, header))
    return found
