"""Reading image and mask files into the library's one image format: float32 ``[H, W]`` in [0, 1].

Readers are looked up by file suffix in a small registry (MONAI-style pluggable readers) so that DICOM support, which
needs windowing and tag handling, lives in :mod:`bilatcf.data.dicom` and plugs in with :func:`register_reader` instead
of being special-cased here. Every reader's output goes through the same check, so a reader cannot hand the models an
image outside [0, 1].
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from bilatcf.errors import DataError

Reader = Callable[[Path], np.ndarray]

_READERS: dict[str, Reader] = {}
_DICOM_MODULE = "bilatcf.data.dicom"
# The first bytes of each format, to tell a damaged image from a file of another kind saved under an image name.
_SIGNATURES = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".tif": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    ".tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    ".npy": (b"\x93NUMPY",),
}


def register_reader(suffixes: str | Iterable[str], fn: Reader) -> None:
    """Make ``read_image`` use ``fn`` for files with these suffixes (case-insensitive, e.g. ``(".dcm", ".dicom")``).

    A later registration replaces an earlier one, which is how the DICOM module replaces the placeholder below.
    ``fn`` receives the path and returns a 2-D array in [0, 1]; integer arrays are scaled by their dtype's maximum.
    """
    for suffix in [suffixes] if isinstance(suffixes, str) else suffixes:
        _READERS[_normalise_suffix(suffix)] = fn


def read_image(path: str | Path) -> np.ndarray:
    """Read one image file as float32 ``[H, W]`` in [0, 1].

    Raises:
        DataError: the file is missing, unreadable, of an unsupported type, or holds values outside the expected range.
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        supported = ", ".join(sorted(_READERS))
        raise DataError(
            f"{path}: unsupported image type '{path.suffix}'. Supported: {supported}; "
            "convert the file or register a reader with bilatcf.data.io.register_reader."
        )
    if not path.is_file():
        raise DataError(f"{path}: image file not found; check the manifest's 'path' column and its root folder.")
    return _to_unit_float(reader(path), path)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a lesion mask as uint8 ``[H, W]`` with values {0, 1}: any positive pixel is lesion (0/255 PNGs work)."""
    return (read_image(path) > 0).astype(np.uint8)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` through a temporary file in the same folder, then rename: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # plain open: permissions follow the umask
    try:
        with open(temporary, "xb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _normalise_suffix(suffix: str) -> str:
    suffix = suffix.lower()
    return suffix if suffix.startswith(".") else f".{suffix}"


def _to_unit_float(array: np.ndarray, path: Path) -> np.ndarray:
    """Scale integers by their dtype maximum and check floats, so every format ends in the same [0, 1] contract."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != 2:
        raise DataError(f"{path}: image has shape {array.shape}, expected a single grey channel [H, W].")
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and array.min() < 0:
            raise DataError(
                f"{path}: signed integer image with negative values; store unsigned integers or floats in [0, 1]."
            )
        return (array.astype(np.float64) / np.iinfo(array.dtype).max).astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: image dtype {array.dtype} is not supported; store integers or floats in [0, 1].")
    if not np.isfinite(array).all():
        raise DataError(f"{path}: image contains NaN or Inf values; fix or re-export the file.")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise DataError(
            f"{path}: float image has values in [{array.min():.4g}, {array.max():.4g}], expected [0, 1]; "
            "rescale it (e.g. divide by its maximum) or save it as an unsigned integer array."
        )
    return array.astype(np.float32)


def _read_with_opencv(path: Path) -> np.ndarray:
    """PNG/JPEG/TIFF in 8 or 16 bits: IMREAD_UNCHANGED keeps 16-bit depth, which the default 8-bit read would lose."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: OpenCV could not decode the file: {_why_undecodable(path)}")
    if path.suffix.lower() in (".jpg", ".jpeg") and not _has_jpeg_end(path):
        # libjpeg fills the missing rows of a truncated JPEG with grey and only warns, so check the end marker.
        raise DataError(f"{path}: truncated JPEG (no end-of-image marker); re-export or copy the file again.")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    return image


def _why_undecodable(path: Path) -> str:
    """Tell an empty file, a file of another kind (often text saved under an image name) and a damaged image apart."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    kind = path.suffix.lower().lstrip(".").upper()
    if not head:
        return "the file is empty (0 bytes); copy or export it again."
    if head.startswith(_SIGNATURES.get(path.suffix.lower(), (b"",))):
        return f"the {kind} image is truncated or corrupt; re-export or copy the file again."
    if all(32 <= byte < 127 or byte in b"\t\n\r" for byte in head):
        text = head.decode("ascii")
        return f"it holds text, not a {kind} image (it starts with {text[:30]!r}); replace it with the real image."
    return f"it is not a {kind} image (its first bytes are {head[:8]!r}); check what wrote it and convert it."


def _has_jpeg_end(path: Path) -> bool:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 4096))
        return b"\xff\xd9" in handle.read()


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path}: not a readable .npy array ({error}): {_why_undecodable(path)} Save arrays with numpy.save."
        ) from error


def _read_dicom(path: Path) -> np.ndarray:
    """Placeholder until :mod:`bilatcf.data.dicom` registers the real reader; importing that module registers it.

    The DICOM reader is imported on the first DICOM file, so reading PNGs never pays for importing pydicom.
    """
    try:
        importlib.import_module(_DICOM_MODULE)
    except ImportError as error:
        raise DataError(
            f"{path}: DICOM files are read by {_DICOM_MODULE}, which could not be imported ({error}); it needs "
            "pydicom 3: pip install 'pydicom>=3' (and, for JPEG 2000 files, pip install 'bilatcf[dicom]')."
        ) from error
    reader = _READERS[path.suffix.lower()]
    if reader is _read_dicom:
        raise DataError(
            f"{path}: no DICOM reader is registered; {_DICOM_MODULE} must call "
            "bilatcf.data.io.register_reader(('.dcm', '.dicom'), fn)."
        )
    return reader(path)


register_reader((".png", ".jpg", ".jpeg", ".tif", ".tiff"), _read_with_opencv)
register_reader(".npy", _read_npy)
register_reader((".dcm", ".dicom"), _read_dicom)
