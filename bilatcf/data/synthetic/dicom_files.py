"""The synthetic dataset as real MG DICOM files (``bilatcf data synth --format dicom``).

Each image becomes a Digital Mammography X-Ray Image, For Presentation: 14 bits stored in 16 allocated, with the tags
real mammograms carry (ImageLaterality, ViewPosition and ViewCodeSequence, PatientID, Study/Series/SOP Instance
UIDs). Like the vendors of a real dataset, patients differ in how their pixels are encoded (:func:`file_style`):
MONOCHROME1 or MONOCHROME2, and a LINEAR or a SIGMOID VOI window. The stored values are the window's inverse of the
synthetic image, so :func:`bilatcf.data.dicom.read_dicom` gives the image back up to the quantisation of the
window's input: at most :data:`LINEAR_ERROR` for LINEAR files and :data:`SIGMOID_ERROR` for SIGMOID ones.

UIDs are derived from the dataset, patient, study, view and image ids: the same synthetic config writes the same
files.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom.uid as uids
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from bilatcf.data.io import atomic_write
from bilatcf.data.types import ImageRecord

BITS_STORED = 14
#: LINEAR files store the image in [LINEAR_LOW, LINEAR_HIGH], and their window maps exactly that range to [0, 1].
LINEAR_LOW, LINEAR_HIGH = 1024, 15359
LINEAR_CENTER, LINEAR_WIDTH = 8192, LINEAR_HIGH - LINEAR_LOW + 1  # PS3.3 C.11.2.1.2.1: c - 0.5 ± (w - 1) / 2
#: SIGMOID files: 1 / (1 + exp(-4 (x - c) / w)) is within 1.2e-7 of 0 and 1 at the ends of the 14-bit range.
SIGMOID_CENTER, SIGMOID_WIDTH = 8192, 2048
LINEAR_ERROR = 0.5 / (LINEAR_HIGH - LINEAR_LOW)  # half a stored step
SIGMOID_ERROR = 0.5 / SIGMOID_WIDTH + 2e-7  # half a step at the steepest point (the slope there is 1 / w)
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "bilatcf/synthetic")
_VIEW_CODES = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}
# Row (left to right) and column (top to bottom) directions of the images as written: left breasts with the chest
# wall on the left, right breasts as acquired (chest wall on the right).
_PATIENT_ORIENTATION = {
    ("L", "CC"): ("A", "R"),
    ("R", "CC"): ("P", "L"),
    ("L", "MLO"): ("A", "FR"),
    ("R", "MLO"): ("P", "FL"),
}


@dataclass(frozen=True)
class FileStyle:
    """How one patient's images are encoded: photometric interpretation and VOI LUT function."""

    photometric: str  # MONOCHROME1 | MONOCHROME2
    voi_function: str  # LINEAR | SIGMOID


def file_style(patient_index: int) -> FileStyle:
    """The style of a patient's images: the four combinations in turn, so every exam comes from one 'machine'."""
    return FileStyle(
        photometric="MONOCHROME1" if patient_index % 2 else "MONOCHROME2",
        voi_function="SIGMOID" if (patient_index // 2) % 2 else "LINEAR",
    )


def stored_values(image: np.ndarray, style: FileStyle) -> np.ndarray:
    """The 14-bit stored values whose window (then MONOCHROME1 inversion) gives ``image`` back."""
    shown = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    target = 1.0 - shown if style.photometric == "MONOCHROME1" else shown  # the window's output before inversion
    if style.voi_function == "LINEAR":
        stored = LINEAR_LOW + target * (LINEAR_HIGH - LINEAR_LOW)
    else:
        tiny = 1e-12
        logit = np.log(np.clip(target, tiny, 1 - tiny) / np.clip(1 - target, tiny, 1 - tiny))
        stored = SIGMOID_CENTER + SIGMOID_WIDTH / 4 * logit
    return np.clip(np.rint(stored), 0, 2**BITS_STORED - 1).astype(np.uint16)


def mammogram_dataset(image: np.ndarray, record: ImageRecord, style: FileStyle, instance_number: int = 1) -> Dataset:
    """One synthetic image (as it is to be stored) as a For Presentation MG dataset with its file meta header."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
    study_uid = _uid(record.dataset, record.patient_id, record.study_id)
    ds.SOPClassUID = uids.DigitalMammographyXRayImageStorageForPresentation
    ds.SOPInstanceUID = _uid(record.dataset, record.patient_id, record.study_id, record.image_id)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = _uid(record.dataset, record.patient_id, record.study_id, record.view, record.laterality)
    ds.PatientName = f"Synthetic^{record.patient_id}"
    ds.PatientID = record.patient_id
    ds.PatientSex = "F"
    ds.StudyID = record.study_id
    ds.AccessionNumber = ""
    ds.Modality = "MG"
    ds.Manufacturer = "bilatcf synthetic"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "BREAST"
    ds.ImageLaterality = record.laterality
    ds.ViewPosition = record.view
    if record.view in _VIEW_CODES:
        code = Dataset()
        code.CodeValue, code.CodeMeaning = _VIEW_CODES[record.view]
        code.CodingSchemeDesignator = "SCT"
        ds.ViewCodeSequence = Sequence([code])
    if (record.laterality, record.view) in _PATIENT_ORIENTATION:
        ds.PatientOrientation = list(_PATIENT_ORIENTATION[record.laterality, record.view])
    ds.BurnedInAnnotation = "NO"
    inverse = style.photometric == "MONOCHROME1"
    ds.set_pixel_data(
        stored_values(image, style),
        photometric_interpretation=style.photometric,
        bits_stored=BITS_STORED,
        generate_instance_uid=False,  # keep the UID derived from the ids
    )
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1 if inverse else -1  # dense tissue attenuates: low (MONO1) or high values
    ds.PresentationLUTShape = "INVERSE" if inverse else "IDENTITY"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.VOILUTFunction = style.voi_function
    if style.voi_function == "LINEAR":
        ds.WindowCenter, ds.WindowWidth = LINEAR_CENTER, LINEAR_WIDTH
    else:
        ds.WindowCenter, ds.WindowWidth = SIGMOID_CENTER, SIGMOID_WIDTH
    ds.WindowCenterWidthExplanation = "STANDARD"
    return ds


def write_mammogram(
    path: str | Path, image: np.ndarray, record: ImageRecord, style: FileStyle, instance_number: int = 1
) -> None:
    """Write one image as an MG DICOM file, atomically (a reader never sees a partial file)."""
    buffer = io.BytesIO()
    mammogram_dataset(image, record, style, instance_number).save_as(buffer, enforce_file_format=True)
    atomic_write(path, buffer.getvalue())


def _uid(*parts: str) -> str:
    """A UUID-derived UID (PS3.5 B.2, root 2.25) from the ids: the same ids always give the same UID."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, '/'.join(parts)).int}"
