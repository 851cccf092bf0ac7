"""Tiny MG DICOM files built with pydicom at test time (no downloads): import these in any test that needs one.

pydicom ships no mammogram, so every fixture is made here: :func:`mammogram` builds a For Presentation MG dataset
from stored values, :func:`save` writes it (optionally compressed: RLE Lossless natively, JPEG 2000 through
pylibjpeg-openjpeg, which needs at least 32 rows and columns), :func:`write_mammogram` does both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom.uid as uids
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate

SHAPE = (32, 24)  # rows, columns: tiny, and not square so a transposition shows


def ramp(shape: tuple[int, int] = SHAPE, low: int = 0, high: int = 4095) -> np.ndarray:
    """Distinct-ish uint16 stored values from ``low`` to ``high`` (both reached), row-major."""
    values = np.linspace(low, high, shape[0] * shape[1])
    return np.rint(values).astype(np.uint16).reshape(shape)


def mammogram(
    stored: np.ndarray, *, photometric: str = "MONOCHROME2", bits_stored: int = 14, **tags: object
) -> Dataset:
    """A For Presentation MG dataset with these stored values; ``tags`` are set last (keyword=value, None deletes)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
    ds.SOPClassUID = uids.DigitalMammographyXRayImageStorageForPresentation
    ds.SOPInstanceUID = uids.generate_uid()
    ds.StudyInstanceUID = uids.generate_uid()
    ds.SeriesInstanceUID = uids.generate_uid()
    ds.PatientID = "P1"
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = "L"
    ds.ViewPosition = "CC"
    ds.set_pixel_data(
        np.asarray(stored), photometric_interpretation=photometric, bits_stored=bits_stored, generate_instance_uid=False
    )
    for keyword, value in tags.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def save(ds: Dataset, path: str | Path, syntax: str | None = None) -> Path:
    """Write ``ds`` as a Part 10 file, compressed to ``syntax`` first when given (lossless syntaxes only)."""
    if syntax is not None:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def write_mammogram(path: str | Path, stored: np.ndarray, *, syntax: str | None = None, **kwargs: object) -> Path:
    """:func:`mammogram` + :func:`save`."""
    return save(mammogram(stored, **kwargs), path, syntax)


def write_encapsulated(path: str | Path, syntax: str, frame: bytes = b"\xff\xd8\xff\xf7not-a-codestream") -> Path:
    """An MG file that declares a compressed ``syntax`` for one dummy frame (for decoder-availability tests)."""
    ds = mammogram(ramp())
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=True)  # also for private syntaxes
    return Path(path)
