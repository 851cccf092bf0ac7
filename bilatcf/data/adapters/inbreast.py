"""INbreast (Release 1.0): ``INbreast.csv`` + ``AllDICOMs/`` + ``AllXML/`` → manifest records with masks and boxes.

Layout (``INbreast Release 1.0/``)::

    INbreast.csv                      ';'-separated: Patient ID;Patient age;Laterality;View;Acquisition date;
                                      File Name;ACR;Bi-Rads
    AllDICOMs/<File Name>_<patient>_MG_<L|R>_<view>_ANON.dcm
    AllXML/<File Name>.xml            OsiriX ROI export (plist), only for images with annotated findings

* The CSV's ``Patient ID`` is literally ``removed``: the patient is the second token of the DICOM file name.
* The study is the ``Acquisition date`` (YYYYMM) of that patient.
* Laterality and view are the CSV's, checked against the file name (a disagreement skips the image).
* Labels (the seeds' protocol, Zhu et al. via CGN and BR-GAN: "malignant if BI-RADS > 3"): BI-RADS 1 → normal;
  2 and 3 → a benign finding (abnormal 1, malignant 0: BI-RADS 3, "probably benign", counts as benign); 4a, 4b, 4c,
  5 and 6 → malignant (4a counts as malignant, as "> 3" says; ``malignant_from="4b"`` makes it benign). An image
  with annotated ROIs is abnormal whatever its BI-RADS.
* ACR density 1–4 → A–D (a blank, space-padded cell → empty).
* Each ROI of the XML is a finding: polygons (3 points or more) are filled, one- or two-point ROIs (single
  calcifications) are disks of :data:`POINT_RADIUS` pixels. Every ROI gives a box (the bounding box of its pixels);
  their union is the image's mask, written as a 0/255 PNG into ``masks_dir`` (never into the dataset).
"""

from __future__ import annotations

import math
import plistlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from xml.parsers.expat import ExpatError

import cv2
import numpy as np

from bilatcf.data.adapters.base import (
    DENSITY_FROM_ACR,
    IndexOptions,
    IndexResult,
    Problem,
    absolute,
    birads_labels,
    birads_text,
    finish,
    numeric_text,
    side_and_view,
)
from bilatcf.data.adapters.tables import find_file, read_table
from bilatcf.data.dicom_tags import read_header
from bilatcf.data.io import atomic_write
from bilatcf.data.types import Box, ImageRecord
from bilatcf.errors import DataError

DATASET = "inbreast"
CSV_NAME = "INbreast.csv"
#: Radius in pixels of the disk drawn for a one- or two-point ROI (a single calcification): a 7-pixel disk is about
#: the size of a microcalcification at full-field resolution.
POINT_RADIUS = 3
_COLUMNS = ("Laterality", "View", "File Name", "ACR", "Bi-Rads")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class _DicomName:
    path: Path
    patient: str
    laterality: str
    view: str


def index(options: IndexOptions, malignant_from: str = "4a") -> IndexResult:
    """Index an INbreast release folder (or a folder above it)."""
    csv_path = find_file(
        options.root,
        [CSV_NAME],
        "INbreast table",
        "the release folder 'INbreast Release 1.0' holds INbreast.csv next to AllDICOMs/ and AllXML/.",
    )
    base = csv_path.parent
    problems: list[Problem] = []
    dicoms = _dicom_names(base / "AllDICOMs", problems)
    rows = read_table(csv_path, _COLUMNS, delimiter=";")
    records, listed = [], set()
    for number, row in rows:
        where = f"{csv_path} row {number}"
        file_name = numeric_text(row["File Name"])
        listed.add(file_name)
        name = dicoms.get(file_name)
        if name is None:
            problems.append(Problem(where, f"File Name {file_name!r}: no AllDICOMs/{file_name}_*.dcm file"))
            continue
        record = _record(row, name, where, problems, malignant_from)
        if record is None:
            continue
        annotation = base / "AllXML" / f"{file_name}.xml"
        if annotation.is_file():
            record = _with_findings(record, annotation, options.masks_dir, problems)
        if record is not None:
            records.append(record)
    for file_name, name in sorted(dicoms.items()):
        if file_name not in listed:
            problems.append(Problem(str(name.path), f"not listed in {CSV_NAME} (no labels)"))
    for annotation in sorted((base / "AllXML").glob("*.xml")):
        if annotation.stem not in listed:
            problems.append(
                Problem(str(annotation), f"annotation of an image not listed in {CSV_NAME}; ignored", kept=True)
            )
    return finish(records, problems, str(csv_path))


def _dicom_names(folder: Path, problems: list[Problem]) -> dict[str, _DicomName]:
    if not folder.is_dir():
        raise DataError(f"{folder} not found; INbreast's images are in AllDICOMs/ next to INbreast.csv.")
    names = {}
    for path in sorted(folder.glob("*.dcm")):
        tokens = path.name.split("_")
        if len(tokens) < 6 or tokens[2].upper() != "MG" or not tokens[0].isdigit():
            problems.append(
                Problem(str(path), "file name is not <File Name>_<patient>_MG_<L|R>_<view>_ANON.dcm; no patient id")
            )
            continue
        if tokens[0] in names:
            problems.append(
                Problem(str(path), f"a second file for File Name {tokens[0]} ({names[tokens[0]].path.name})")
            )
            continue
        names[tokens[0]] = _DicomName(path, tokens[1], tokens[3].upper(), tokens[4].upper())
    return names


def _record(
    row: dict[str, str], name: _DicomName, where: str, problems: list[Problem], malignant_from: str
) -> ImageRecord | None:
    laterality, view = row["Laterality"].upper(), row["View"].upper()
    for field, value, from_name in (("Laterality", laterality, name.laterality), ("View", view, name.view)):
        if value != from_name:
            problems.append(
                Problem(
                    where,
                    f"contradictory {field.lower()}: the CSV says {value!r}, file {name.path.name} says {from_name!r}",
                )
            )
            return None
    location = side_and_view(laterality, view, where, problems, ("Laterality", "View"))
    if location is None:
        return None
    laterality, view = location
    birads = birads_text(row["Bi-Rads"])
    abnormal, malignant = birads_labels(birads, malignant_from)
    if abnormal == -1:
        problems.append(Problem(where, f"Bi-Rads {row['Bi-Rads']!r} is not a category 1-6; labels unknown", kept=True))
    acr = numeric_text(row["ACR"])
    if acr and acr not in DENSITY_FROM_ACR:
        problems.append(Problem(where, f"ACR {row['ACR']!r} is not a density 1-4; left empty", kept=True))
    return ImageRecord(
        dataset=DATASET,
        patient_id=name.patient,
        study_id=numeric_text(row.get("Acquisition date", "")),
        image_id=numeric_text(row["File Name"]),
        path=absolute(name.path),
        laterality=laterality,
        view=view,
        abnormal=abnormal,
        malignant=malignant,
        birads=birads,
        density=DENSITY_FROM_ACR.get(acr, ""),
    )


def _with_findings(
    record: ImageRecord, annotation: Path, masks_dir: Path | None, problems: list[Problem]
) -> ImageRecord | None:
    """The record with the XML's ROIs as boxes (and a mask file); unchanged when the XML is unusable, None when the
    image itself cannot be read."""
    try:
        rois, unreadable = read_rois(annotation)
    except DataError as error:
        problems.append(Problem(str(annotation), f"{error}; the image is kept without boxes or mask", kept=True))
        return record
    problems += [Problem(str(annotation), f"{reason}; ROI ignored", kept=True) for reason in unreadable]
    if not rois:
        return record
    record = replace(record, abnormal=1)  # annotated findings make the image abnormal whatever its BI-RADS
    try:
        header = read_header(record.path)
    except DataError as error:
        problems.append(Problem(record.path, str(error).removeprefix(f"{record.path}: ")))
        return None
    if header.rows <= 0 or header.columns <= 0:
        problems.append(Problem(record.path, "no Rows/Columns in the header, so no boxes or mask", kept=True))
        return record
    shape = (header.rows, header.columns)
    mask = np.zeros(shape, np.uint8) if masks_dir is not None else None
    boxes: list[Box] = []
    for name, points in rois:
        box = draw_roi(points, shape, mask)
        if box is None:
            reason = f"ROI {name!r} lies outside the {header.columns}×{header.rows} image; ignored"
            problems.append(Problem(str(annotation), reason, kept=True))
        else:
            boxes.append(box)
    mask_path = ""
    if mask is not None and boxes:
        ok, png = cv2.imencode(".png", mask * 255)
        if not ok:
            raise DataError(f"could not encode the mask of {record.path} as PNG")
        target = Path(masks_dir) / f"{DATASET}_{record.image_id}.png"
        atomic_write(target, png.tobytes())
        mask_path = absolute(target)
    return replace(record, boxes=tuple(boxes), mask_path=mask_path)


def read_rois(path: Path) -> tuple[list[tuple[str, list[tuple[float, float]]]], list[str]]:
    """``(Name, [(x, y), ...])`` of every ROI of every image entry of an OsiriX plist export (pixel coordinates), and
    why each ROI that could not be read was left out.

    Raises:
        DataError: the file is not a readable plist.
    """
    try:
        with open(path, "rb") as handle:
            plist = plistlib.load(handle, fmt=plistlib.FMT_XML)
    except (plistlib.InvalidFileException, ExpatError, ValueError, TypeError) as error:
        raise DataError(f"not a readable OsiriX plist ({type(error).__name__}: {error})") from error
    rois, unreadable = [], []
    images = plist.get("Images", []) if isinstance(plist, dict) else []
    for image in images:
        for roi in image.get("ROIs", []) if isinstance(image, dict) else []:
            name = str(roi.get("Name", "")) if isinstance(roi, dict) else ""
            raw = roi.get("Point_px", []) if isinstance(roi, dict) else []
            points = [_point(text) for text in raw]
            if not points or any(point is None for point in points):
                unreadable.append(f"ROI {name!r} has no readable Point_px list ({raw[:3]!r})")
            else:
                rois.append((name, points))
    return rois, unreadable


def _point(text: object) -> tuple[float, float] | None:
    numbers = _NUMBER.findall(str(text))
    if len(numbers) < 2:
        return None
    x, y = float(numbers[0]), float(numbers[1])
    return (x, y) if math.isfinite(x) and math.isfinite(y) else None


def draw_roi(points: list[tuple[float, float]], shape: tuple[int, int], mask: np.ndarray | None) -> Box | None:
    """Rasterise one ROI into ``mask`` (when given) and return the box of its pixels, None if none is in the image.

    The ROI is drawn in a window around its points, so an image with a hundred calcifications does not fill a full
    size canvas per ROI. Boxes are pixel-edge coordinates: a pixel ``(x, y)`` spans ``[x, x + 1) × [y, y + 1)``.
    """
    height, width = shape
    array = np.asarray(points, dtype=np.float64)
    radius = POINT_RADIUS if len(points) <= 2 else 0
    x0 = max(math.floor(array[:, 0].min()) - radius - 1, 0)
    y0 = max(math.floor(array[:, 1].min()) - radius - 1, 0)
    x1 = min(math.ceil(array[:, 0].max()) + radius + 2, width)
    y1 = min(math.ceil(array[:, 1].max()) + radius + 2, height)
    if x0 >= x1 or y0 >= y1:
        return None
    window = np.zeros((y1 - y0, x1 - x0), np.uint8)
    local = np.round(array - (x0, y0)).astype(np.int32)
    if radius:
        for x, y in local:
            cv2.circle(window, (int(x), int(y)), radius, 1, thickness=-1)
    else:
        cv2.fillPoly(window, [local.reshape(-1, 1, 2)], 1)
    rows, cols = np.nonzero(window)
    if not rows.size:
        return None
    if mask is not None:
        mask[y0:y1, x0:x1] |= window
    return (float(x0 + cols.min()), float(y0 + rows.min()), float(x0 + cols.max() + 1), float(y0 + rows.max() + 1))
