"""What a mammogram's DICOM header says about it: ids, modality, laterality and view, and where each came from.

Only the header is read (``stop_before_pixels``), and only for reading: the adapters index datasets of hundreds of
gigabytes, and the pixels are decoded later by the image reader.

Laterality and view decide the bilateral pairing, and a wrong one breaks it without any visible error, so every
place a header can carry them is consulted and compared:

* laterality: ``ImageLaterality (0020,0062)``, else ``Laterality (0020,0060)``, else the text of ``SeriesDescription``,
  ``PatientID``, the file name and any text the caller adds (e.g. the folder names);
* view: ``ViewPosition (0018,5101)``, else ``ViewCodeSequence (0054,0220)`` (code value of DICOM CID 4014 in SNOMED CT
  or its legacy SRT form, else its code meaning), else the same texts.

The first source that gives a value decides; when it is not the primary tag, the source is recorded as provenance
(``laterality=SeriesDescription``). Sources that disagree are a *conflict*, reported rather than resolved: a file
named ``..._R_CC_...`` whose ``ImageLaterality`` says ``L`` needs a person to look at it. Text is read as tokens
(``Mass-Test_P_00173_LEFT_CC`` → ``MASS TEST P 00173 LEFT CC``): ``L``/``R``/``LEFT``/``RIGHT``, the view
abbreviations and their fusions (``RCC``, ``LMLO``); a text naming both sides or two views is ignored as ambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bilatcf.errors import DataError

MAMMOGRAPHY_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1.2": "FOR PRESENTATION",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "FOR PROCESSING",
}

#: DICOM CID 4014 "View for Mammography": SNOMED CT code value and legacy SRT code value → ACR abbreviation.
VIEW_CODES = {
    "399260004": "ML",
    "R-10224": "ML",
    "399368009": "MLO",
    "R-10226": "MLO",
    "399352003": "LM",
    "R-10228": "LM",
    "399099002": "LMO",
    "R-10230": "LMO",
    "399162004": "CC",
    "R-10242": "CC",
    "399196006": "FB",
    "R-10244": "FB",
    "399188001": "SIO",
    "R-102D0": "SIO",
    "441555000": "ISO",
    "R-40AAA": "ISO",
    "399192008": "XCCL",
    "R-1024A": "XCCL",
    "399101009": "XCCM",
    "R-1024B": "XCCM",
}
#: Code meanings of CID 4014, lower case with everything but letters removed (some writers put no code value).
VIEW_MEANINGS = {
    "mediolateral": "ML",
    "mediallateral": "ML",
    "mediolateraloblique": "MLO",
    "lateromedial": "LM",
    "lateralmedial": "LM",
    "lateromedialoblique": "LMO",
    "craniocaudal": "CC",
    "caudocranialfrombelow": "FB",
    "caudocranial": "FB",
    "superolateraltoinferomedialoblique": "SIO",
    "inferomedialtosuperolateraloblique": "ISO",
    "craniocaudalexaggeratedlaterally": "XCCL",
    "craniocaudalexaggeratedmedially": "XCCM",
    "exaggeratedcraniocaudal": "XCC",
}
#: DICOM CID 4015 view modifiers that make an image a diagnostic work-up view, not a full-field screening view: it
#: must not be paired with the other breast's full-field image of the same view.
WORKUP_MODIFIERS = {
    "399163009": "magnification",
    "R-102D6": "magnification",
    "399055006": "spot compression",
    "R-102D7": "spot compression",
}
#: ``ViewPosition`` values accepted as they are (the ACR abbreviations, ``AT`` and ``CV`` included).
VIEW_POSITIONS = ("CC", "MLO", "ML", "LM", "LMO", "AT", "XCC", "XCCL", "XCCM", "FB", "SIO", "ISO", "CV")
#: Views recognised in free text: the abbreviations that are not also common words or codes (AT, CV, FB, ISO, SIO).
TEXT_VIEWS = ("CC", "MLO", "ML", "LM", "LMO", "XCC", "XCCL", "XCCM")
_SIDES = {"L": "L", "LEFT": "L", "R": "R", "RIGHT": "R"}
_TOKEN = re.compile(r"[A-Z0-9]+")
_LETTERS = re.compile(r"[^a-z]")


class NotDicomError(DataError):
    """The file is not a DICOM file (no ``DICM`` prefix): the folder adapter lists such files and skips them."""


@dataclass(frozen=True)
class DicomHeader:
    """The metadata of one DICOM image that the adapters need.

    Attributes:
        path: the file.
        patient_id, study_uid, series_uid, sop_uid, sop_class_uid, modality, presentation_intent,
            series_description: the tags of the same names (``""`` when absent); ``presentation_intent`` falls back
            to the intent implied by the mammography SOP class.
        rows, columns: image size in pixels (0 when absent).
        laterality: ``L``, ``R`` or ``""`` (unknown).
        view: one of :data:`VIEW_POSITIONS` or ``""`` (unknown); ``view_found`` is what the primary sources said
            when none of them was recognised (for the message).
        provenance: ``(field, source)`` for each field taken from a fallback source.
        conflicts: one message per field whose sources disagree.
        workup: the work-up view modifiers found (magnification, spot compression).
    """

    path: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    presentation_intent: str
    series_description: str
    rows: int
    columns: int
    laterality: str
    view: str
    view_found: str
    provenance: tuple[tuple[str, str], ...]
    conflicts: tuple[str, ...]
    workup: tuple[str, ...]

    @property
    def is_mammogram(self) -> bool:
        return self.modality == "MG" or (not self.modality and self.sop_class_uid in MAMMOGRAPHY_SOP_CLASSES)


def read_header(path: str | Path, extra_text: Sequence[tuple[str, str]] = ()) -> DicomHeader:
    """Read one file's header (never its pixels) and resolve laterality and view from every source it has.

    Args:
        path: the DICOM file.
        extra_text: ``(source name, text)`` consulted after the file name, e.g. ``("folder", "P_001/LEFT_CC")``.

    Raises:
        NotDicomError: the file is not DICOM.
        DataError: the file cannot be read or its header is damaged.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as error:
        raise NotDicomError(f"{path}: not a DICOM file ({_first_line(error)})") from error
    except OSError as error:
        if error.errno is None:  # pydicom reports a broken element structure as an OSError without errno
            raise DataError(f"{path}: damaged DICOM header ({_first_line(error)})") from error
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from error
    except Exception as error:  # a damaged header can fail anywhere in the parser
        raise DataError(f"{path}: damaged DICOM header ({type(error).__name__}: {_first_line(error)})") from error
    try:
        return _header(ds, path, extra_text)
    except Exception as error:  # values are parsed lazily: a damaged element fails here
        raise DataError(f"{path}: damaged DICOM header ({type(error).__name__}: {_first_line(error)})") from error


def _header(ds, path: Path, extra_text: Sequence[tuple[str, str]]) -> DicomHeader:
    texts = [
        ("SeriesDescription", _text(ds, "SeriesDescription")),
        ("PatientID", _text(ds, "PatientID")),
        ("filename", path.name),
        *extra_text,
    ]
    laterality_sources = [(keyword, _side(_text(ds, keyword))) for keyword in ("ImageLaterality", "Laterality")]
    laterality_sources += [(name, side_from_text(text)) for name, text in texts]
    view_position = _text(ds, "ViewPosition").upper()
    code_view, code_found, workup = _view_code(ds)
    view_sources = [("ViewPosition", _view_position(view_position)), ("ViewCodeSequence", code_view)]
    view_sources += [(name, view_from_text(text)) for name, text in texts]
    laterality, laterality_source, laterality_conflict = _resolve("laterality", laterality_sources)
    view, view_source, view_conflict = _resolve("view", view_sources)
    provenance = tuple(
        (field, source)
        for field, source, primary in (
            ("laterality", laterality_source, "ImageLaterality"),
            ("view", view_source, "ViewPosition"),
        )
        if source and source != primary
    )
    sop_class = _text(ds, "SOPClassUID") or _text(getattr(ds, "file_meta", {}), "MediaStorageSOPClassUID")
    return DicomHeader(
        path=str(path),
        patient_id=_text(ds, "PatientID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=sop_class,
        modality=_text(ds, "Modality").upper(),
        presentation_intent=(_text(ds, "PresentationIntentType").upper() or MAMMOGRAPHY_SOP_CLASSES.get(sop_class, "")),
        series_description=_text(ds, "SeriesDescription"),
        rows=_integer(ds, "Rows"),
        columns=_integer(ds, "Columns"),
        laterality=laterality,
        view=view,
        view_found=", ".join(
            found for found in (view_position and f"ViewPosition {view_position!r}", code_found) if found
        ),
        provenance=provenance,
        conflicts=tuple(conflict for conflict in (laterality_conflict, view_conflict) if conflict),
        workup=workup,
    )


def side_from_text(text: str) -> str:
    """``L`` or ``R`` when the text names exactly one side (``LEFT``, ``_R_``, ``RMLO``), else ``""``."""
    return _only(_tokens(text)[0])


def view_from_text(text: str) -> str:
    """The view when the text names exactly one (``_CC_``, ``RMLO``, ``L XCCL``), else ``""``."""
    return _only(_tokens(text)[1])


def unusable_reason(header: DicomHeader) -> str:
    """Why this image cannot go into a manifest of screening mammograms (``""`` when it can)."""
    if not header.is_mammogram:
        what = f"modality {header.modality}" if header.modality else "no Modality tag and no mammography SOP class"
        return f"{what}, not a mammogram (MG); only MG images are indexed"
    if header.presentation_intent == "FOR PROCESSING":
        return "a FOR PROCESSING (raw detector) image; the FOR PRESENTATION image of the same view is the one to use"
    if header.workup:
        return f"a work-up view ({', '.join(header.workup)}), not a full-field image that has a contralateral partner"
    if header.conflicts:
        return "; ".join(header.conflicts) + " — check the image and correct its tags or its file name"
    if not header.laterality:
        return (
            "no laterality: no ImageLaterality or Laterality tag, and neither SeriesDescription, PatientID nor the "
            "file name names the side (L/R, LEFT/RIGHT) — add ImageLaterality (0020,0062)"
        )
    if not header.view:
        found = f" (found {header.view_found})" if header.view_found else ""
        return (
            f"unknown view{found}: ViewPosition, ViewCodeSequence and the texts name no mammography view "
            f"({', '.join(VIEW_POSITIONS)}) — add ViewPosition (0018,5101)"
        )
    return ""


def format_provenance(items: Sequence[tuple[str, str]]) -> str:
    """``[("laterality", "SeriesDescription"), ("view", "filename")]`` → ``laterality=SeriesDescription;view=filename``
    (the manifest's ``provenance`` cell)."""
    return ";".join(f"{field}={source}" for field, source in items)


def _resolve(field: str, sources: list[tuple[str, str]]) -> tuple[str, str, str]:
    """(value, its source, conflict message) from ``(source, value)`` candidates in order of trust."""
    given = [(source, value) for source, value in sources if value]
    if not given:
        return "", "", ""
    source, value = given[0]
    if any(other != value for _, other in given[1:]):
        said = ", ".join(f"{name} says {other}" for name, other in given)
        return "", "", f"contradictory {field}: {said}"
    return value, source, ""


def _tokens(text: str) -> tuple[set[str], set[str]]:
    sides: set[str] = set()
    views: set[str] = set()
    for token in _TOKEN.findall(str(text).upper()):
        if token in _SIDES:
            sides.add(_SIDES[token])
        elif token in TEXT_VIEWS:
            views.add(token)
        elif token[:1] in ("L", "R") and token[1:] in TEXT_VIEWS:
            sides.add(token[0])
            views.add(token[1:])
    return sides, views


def _only(values: set[str]) -> str:
    return next(iter(values)) if len(values) == 1 else ""


def _side(value: str) -> str:
    """Tag values L/R (LEFT/RIGHT tolerated); B (both) and U (unpaired) say nothing about one side."""
    return _SIDES.get(value.strip().upper(), "")


def _view_position(value: str) -> str:
    if value in VIEW_POSITIONS:
        return value
    return view_from_text(value)  # e.g. "RCC", "L MLO"


def _view_code(ds) -> tuple[str, str, tuple[str, ...]]:
    """(view, what the sequence said when unrecognised, work-up modifiers) from ViewCodeSequence."""
    sequence = ds.get("ViewCodeSequence") or []
    if not sequence:
        return "", "", ()
    item = sequence[0]
    value = str(item.get("CodeValue", "") or "").strip()
    meaning = str(item.get("CodeMeaning", "") or "").strip()
    view = VIEW_CODES.get(value) or VIEW_MEANINGS.get(_LETTERS.sub("", meaning.lower()), "")
    modifiers = list(item.get("ViewModifierCodeSequence") or []) + list(ds.get("ViewModifierCodeSequence") or [])
    workup = sorted(
        {
            WORKUP_MODIFIERS[code]
            for code in (str(m.get("CodeValue", "") or "").strip() for m in modifiers)
            if code in WORKUP_MODIFIERS
        }
    )
    found = "" if view else f"ViewCodeSequence {value or '-'} {meaning!r}"
    return view, found, tuple(workup)


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if not isinstance(value, (str, bytes)) and hasattr(value, "__iter__"):  # multi-valued: the first value
        value = next(iter(value), "")
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value).strip()


def _integer(ds, keyword: str) -> int:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else 0
    except (TypeError, ValueError):
        return 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
