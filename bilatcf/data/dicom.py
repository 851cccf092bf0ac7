"""DICOM mammograms → the library's one image format, float32 ``[H, W]`` in [0, 1] with dense tissue bright.

Importing this module registers :func:`read_dicom` for ``.dcm`` and ``.dicom`` with :func:`bilatcf.data.io.read_image`
(the placeholder there imports it on the first DICOM file). The steps, in the order the DICOM grey-scale pipeline
defines them (PS3.4 N.2.1):

1. Read the file read-only and check it: a DICOM Part 10 file, Modality ``MG``, one frame of grey pixels, not a
   ``FOR PROCESSING`` image (see :func:`set_for_processing_policy`), a decoder installed for its transfer syntax.
2. Decode the stored values (RLE with ``dicomsdl`` when it is installed, else pydicom natively; JPEG 2000 with
   ``pylibjpeg-openjpeg``, JPEG Lossless and JPEG-LS with an optional decoder). Unsigned values are taken as
   stored, also above ``2**BitsStored - 1``; see :func:`_stored_values` for why they are neither masked nor clipped.
3. Mark padding: stored values equal to ``PixelPaddingValue`` (or between it and ``PixelPaddingRangeLimit``).
4. Modality LUT: Rescale Slope/Intercept or the Modality LUT Sequence (``pydicom.pixels.apply_modality_lut``).
5. VOI: the first item of a VOI LUT Sequence, scaled by the LUT's own range; else the first Window Center/Width with
   ``VOILUTFunction`` LINEAR (default), LINEAR_EXACT or SIGMOID (PS3.3 C.11.2.1.2), with the output range [0, 1];
   else min-max of the modality values of the non-padding pixels.
6. MONOCHROME1 is inverted after the VOI step, so a bright pixel is dense tissue for every file.
7. Padding pixels are set to 0, the background.

Files that cannot give an image (not DICOM, truncated, no pixel data, another modality, several frames, colour,
NaN or blank pixels, a missing decoder) raise :class:`~bilatcf.errors.DataError` naming the file, the reason and
the fix. Odd but usable files (values above BitsStored, an unusable window, an unknown VOI LUT function, a
FOR PROCESSING image under the ``warn`` policy) give one :class:`DicomWarning` per file and are read.
"""

from __future__ import annotations

import threading
import warnings
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
import pydicom.uid as uids
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi, get_decoder, pixel_array

from bilatcf.data.io import register_reader
from bilatcf.errors import DataError

ForProcessingPolicy = Literal["refuse", "warn"]
FOR_PROCESSING_POLICIES: tuple[str, ...] = ("refuse", "warn")
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
_FOR_PROCESSING_CLASSES = {
    uids.DigitalMammographyXRayImageStorageForProcessing,
    uids.DigitalXRayImageStorageForProcessing,
    uids.DigitalIntraOralXRayImageStorageForProcessing,
}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UNDEFINED_LENGTH = 0xFFFFFFFF
_MAX_TABLE = 1 << 20  # stored ranges up to this many values are rendered through a table (16-bit data always are)
_CONVERT = (
    "convert it to an uncompressed transfer syntax with a DICOM tool (e.g. `gdcmconv --raw IN.dcm OUT.dcm`, or "
    "dcmtk's `dcmdjpeg` / `dcmdjp2k`) and point the manifest's path column to the converted file"
)
_for_processing_policy: ForProcessingPolicy = "refuse"
_warned: set[str] = set()  # the warnings given, so a file read again (another epoch, a re-check) does not repeat them
_warned_lock = threading.Lock()


class DicomWarning(UserWarning):
    """A DICOM file that is odd but usable; the message names the file, what was found and what was done.

    Each warning is given once per process (a file read again does not repeat it). Silence them with
    ``warnings.filterwarnings("ignore", category=DicomWarning)``.
    """


def _warn_once(message: str) -> None:
    """Warn with ``message`` (which starts with the file's path) the first time this process sees it."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    warnings.warn(message, DicomWarning, stacklevel=2)


def set_for_processing_policy(policy: ForProcessingPolicy) -> None:
    """How the registered reader treats ``FOR PROCESSING`` images, for this process: ``refuse`` (default) or ``warn``.

    A FOR PROCESSING image is the detector's raw signal, before the vendor's processing for display; it looks
    nothing like the FOR PRESENTATION image of the same view, so mixing the two in a training set is refused by
    default (the files are then reported by the decode check, and ``--data.skip_bad_images`` drops them). ``warn``
    reads them like any other file and warns once per file. ``BilateralDataModule(dicom_for_processing=...)`` and
    ``bilatcf data check --dicom_for_processing`` set it.
    """
    global _for_processing_policy
    _for_processing_policy = _checked_policy(policy)


def for_processing_policy() -> ForProcessingPolicy:
    """The process-wide policy :func:`read_dicom` uses when it is not given one."""
    return _for_processing_policy


def read_dicom(path: str | Path, *, for_processing: ForProcessingPolicy | None = None) -> np.ndarray:
    """Read a single-frame DICOM mammogram as float32 ``[H, W]`` in [0, 1], dense tissue bright, background 0.

    The file is opened read-only and never modified. The steps are listed in this module's docstring.

    Args:
        path: the ``.dcm`` / ``.dicom`` file.
        for_processing: ``refuse`` or ``warn`` for FOR PROCESSING images (None: :func:`for_processing_policy`).

    Raises:
        DataError: the file is not a usable mammogram; the message says why and what to do.
    """
    path = Path(path)
    policy = _checked_policy(for_processing) if for_processing is not None else _for_processing_policy
    ds = _open(path)
    _check_header(ds, path, policy)
    stored = _stored_values(ds, path)
    return _render(stored, ds, path)


# --------------------------------------------------------------------------------------------------- file and header
def _checked_policy(policy: str) -> ForProcessingPolicy:
    if policy not in FOR_PROCESSING_POLICIES:
        raise DataError(
            f"DICOM FOR PROCESSING policy '{policy}' is not one of {', '.join(FOR_PROCESSING_POLICIES)}; use 'refuse' "
            "to report such images as unusable or 'warn' to read them."
        )
    return policy  # type: ignore[return-value]


def _open(path: Path) -> Dataset:
    """The whole dataset, read through a read-only handle; files that are not DICOM or are cut short are refused."""
    try:
        with open(path, "rb") as handle:
            ds = pydicom.dcmread(handle)
    except InvalidDicomError as error:
        raise DataError(f"{path}: {_not_dicom(path)}") from error
    except OSError as error:
        raise DataError(f"{path}: the file cannot be read ({error}); check that it exists and is readable.") from error
    except Exception as error:  # pydicom raises many kinds of errors on a damaged header
        raise DataError(
            f"{path}: the DICOM header is damaged ({type(error).__name__}: {_one_line(error)}); copy or export the "
            "file again."
        ) from error
    short = _cut_element(ds)
    if short is not None:
        tag, declared, found = short
        raise DataError(
            f"{path}: the file is truncated: element {tag} declares {declared} bytes but the file ends after {found} "
            f"of them ({path.stat().st_size} bytes in all); copy or export it again."
        )
    return ds


def _one_line(error: BaseException) -> str:
    """A plugin's error message on one line (pydicom lists each plugin's failure on its own line)."""
    return " ".join(str(error).split())


def _not_dicom(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(132)
    if not head:
        return "the file is empty (0 bytes); copy or export it again."
    if all(32 <= byte < 127 or byte in b"\t\n\r" for byte in head[:64]):
        text = head[:30].decode("ascii")
        return f"it holds text, not a DICOM image (it starts with {text!r}); replace it with the real file."
    return (
        f"not a DICOM file: there is no 'DICM' marker at byte 128 (the file starts with {head[:8]!r}). If it is a "
        "DICOM dataset without the Part 10 file header, re-save it with a DICOM tool (e.g. pydicom's "
        "`dcmread(path, force=True).save_as(out, enforce_file_format=True)` after setting its transfer syntax)."
    )


def _cut_element(ds: Dataset) -> tuple[str, int, int] | None:
    """The last element, when the file ends inside its value: pydicom keeps the bytes it found and says nothing."""
    if not len(ds):
        return None
    tag = max(ds.keys())
    raw = ds.get_item(tag)
    if isinstance(raw, RawDataElement) and raw.length != _UNDEFINED_LENGTH and raw.value is not None:
        if len(raw.value) < raw.length:
            return str(tag), raw.length, len(raw.value)
    return None


def _check_header(ds: Dataset, path: Path, policy: ForProcessingPolicy) -> None:
    """Everything that can be told before decoding: a single-frame grey mammogram, decodable here."""
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise DataError(
            f"{path}: the file has no Pixel Data element (7FE0,0010): it is cut short ({path.stat().st_size} bytes) "
            "or holds no image (e.g. a report or presentation state); copy it again, or remove its row."
        )
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality != "MG":
        found = f"'{modality}'" if modality else "missing"
        raise DataError(
            f"{path}: Modality is {found}, not 'MG' (mammography); the library reads mammograms only. Remove the row; "
            "if the file is a mammogram with a wrong tag, correct its (0008,0060) Modality or convert it to PNG."
        )
    marked = _for_processing_mark(ds)
    if marked:
        message = f"{path}: a FOR PROCESSING image ({marked}): the detector's raw signal, not processed for display"
        if policy == "refuse":
            raise DataError(
                f"{message}. Use the FOR PRESENTATION image of this view instead, or read such images anyway with "
                "--data.dicom_for_processing warn (`bilatcf data check --dicom_for_processing warn`)."
            )
        _warn_once(f"{message}; read as it is (policy 'warn').")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise DataError(
            f"{path}: the file holds {frames} frames (e.g. a tomosynthesis volume); the library reads single 2-D "
            "mammograms. Use the 2-D (or synthesised 2-D) image of this view."
        )
    samples = int(ds.get("SamplesPerPixel", 1))
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(
            f"{path}: PhotometricInterpretation is '{photometric}' with {samples} sample(s) per pixel; mammograms are "
            "grey (MONOCHROME1 or MONOCHROME2). Remove the row, or convert the file to a grey image."
        )
    _check_decoder(ds, path)


def _for_processing_mark(ds: Dataset) -> str:
    """What marks ``ds`` as FOR PROCESSING (its Presentation Intent Type or its SOP class), or ``""``."""
    if str(ds.get("PresentationIntentType", "")).strip().upper() == "FOR PROCESSING":
        return "PresentationIntentType FOR PROCESSING"
    if ds.get("SOPClassUID") in _FOR_PROCESSING_CLASSES:
        return f"SOP class {uids.UID(ds.SOPClassUID).name}"
    return ""


def _check_decoder(ds: Dataset, path: Path) -> None:
    syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    if not syntax:
        raise DataError(
            f"{path}: the file meta header has no Transfer Syntax UID (0002,0010), so its pixels cannot be decoded; "
            "re-save the file with a DICOM tool that writes a complete Part 10 header."
        )
    syntax = uids.UID(syntax)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as error:
        raise DataError(f"{path}: pydicom cannot decode the transfer syntax {_syntax(syntax)}; {_CONVERT}.") from error
    if not decoder.is_available:
        raise DataError(
            f"{path}: the pixels are compressed with {_syntax(syntax)} and no decoder for it is installed. "
            f"Install one: {decoder_hint(syntax)}; or {_CONVERT}."
        )


def _syntax(syntax: uids.UID) -> str:
    return f"{syntax.name} ({syntax})" if syntax.name != str(syntax) else str(syntax)


def decoder_hint(syntax: str) -> str:
    """What to ``pip install`` to decode pixel data of this transfer syntax (the plugins pydicom 3 can use)."""
    syntax = uids.UID(syntax)
    if syntax in uids.JPEG2000TransferSyntaxes or syntax in (uids.HTJ2K, uids.HTJ2KLossless, uids.HTJ2KLosslessRPCL):
        return "pip install pylibjpeg pylibjpeg-openjpeg (both MIT; also: pip install 'bilatcf[dicom]')"
    if syntax in uids.JPEGLSTransferSyntaxes:
        return (
            "pip install pyjpegls (BSD), or pip install python-gdcm (BSD), or pip install pylibjpeg "
            "pylibjpeg-libjpeg (GPLv3)"
        )
    if syntax in uids.JPEGTransferSyntaxes:
        return "pip install python-gdcm (BSD), or pip install pylibjpeg pylibjpeg-libjpeg (GPLv3)"
    return "pip install python-gdcm (BSD)"


# -------------------------------------------------------------------------------------------------------- the pixels
def _stored_values(ds: Dataset, path: Path) -> np.ndarray:
    """The decoded stored values, unsigned ones taken as stored even above ``2**BitsStored - 1``.

    pydicom clears the bits above BitsStored of uncompressed data, which the standard allows. Mammograms whose
    values exceed BitsStored do exist (files whose header understates the depth, e.g. ``BitsStored`` 12 on 16-bit
    data): clearing the high bits there wraps the brightest tissue round to black, and clipping would flatten it, while
    the window of such a file (or min-max without one) is set for the values as stored. So the values are kept and the
    file warns once. The one exception is an overlay stored in the unused bits (a retired practice the header
    declares with Overlay Bits Allocated > 1): those bits are cleared. Signed data are sign-extended by pydicom.
    """
    unsigned = int(ds.get("PixelRepresentation", 0)) == 0 and "PixelData" in ds
    try:
        stored = _fast_rle(ds, path)
        if stored is None:
            stored = pixel_array(ds, **({"correct_unused_bits": False} if unsigned else {}))
    except ValueError as error:
        raise DataError(
            f"{path}: the pixel data is truncated or corrupt ({_one_line(error)}); copy or export the file again."
        ) from error
    except Exception as error:  # a decoder plugin may raise anything on a damaged codestream
        raise DataError(
            f"{path}: the pixel data could not be decoded ({type(error).__name__}: {_one_line(error)}); the file is "
            f"damaged or its transfer syntax is wrong. Copy or export it again, or {_CONVERT}."
        ) from error
    if stored.ndim != 2:
        raise DataError(f"{path}: decoded pixels have shape {stored.shape}, expected one grey frame [rows, columns].")
    bits = int(ds.get("BitsStored", 0) or 0)
    if unsigned and bits and np.issubdtype(stored.dtype, np.integer):
        limit = (1 << bits) - 1
        if _overlay_in_unused_bits(ds, bits):
            stored = stored & np.asarray(limit, dtype=stored.dtype)
        elif stored.size and int(stored.max()) > limit:
            _warn_once(
                f"{path}: pixel values reach {int(stored.max())}, above the {limit} that BitsStored {bits} allows; "
                "the values are kept as stored (not masked or clipped) and windowed as they are. If the image looks "
                "wrong, correct (0028,0101) BitsStored or re-export the file."
            )
    return stored


def _fast_rle(ds: Dataset, path: Path) -> np.ndarray | None:
    """RLE Lossless stored values decoded by ``dicomsdl`` (5× faster than pydicom on full-size mammograms, the same
    values: docs/data.md), or None where pydicom decodes instead: another transfer syntax, dicomsdl not installed, or
    a frame dicomsdl cannot decode (pydicom then decodes it or reports the damage in its own words)."""
    syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    if syntax != uids.RLELossless or find_spec("dicomsdl") is None:
        return None
    import dicomsdl

    try:
        stored = dicomsdl.open(str(path)).pixelData(storedvalue=True)
    except Exception:  # any failure leaves the file to pydicom
        return None
    expected = (int(ds.Rows), int(ds.Columns))
    return stored if stored.shape == expected else None


def _overlay_in_unused_bits(ds: Dataset, bits_stored: int) -> bool:
    """True when an overlay plane lives in the pixel data's unused high bits (Overlay Bits Allocated > 1)."""
    for group in range(0x6000, 0x6020, 2):
        allocated = ds.get((group, 0x0100))
        position = ds.get((group, 0x0102))
        if allocated is not None and position is not None and int(allocated.value) > 1:
            if int(position.value) >= bits_stored:
                return True
    return False


def _render(stored: np.ndarray, ds: Dataset, path: Path) -> np.ndarray:
    """Stored values → [0, 1]: padding, modality LUT, VOI, MONOCHROME1 inversion, padding to 0.

    Every step is a function of the stored value alone, so for integer pixels the steps run once per value of the
    stored range (at most 2**16 for mammograms) and the image is one lookup in that table, whatever the VOI function:
    0.07 s for a 4096 × 3328 image, where a SIGMOID computed per pixel took 0.13 s (2 shared cores).
    """
    plan = _voi_plan(ds, path)
    if np.issubdtype(stored.dtype, np.integer):
        low, high = int(stored.min()), int(stored.max())
        if high - low < _MAX_TABLE:
            if np.issubdtype(stored.dtype, np.unsignedinteger):
                index = stored - np.asarray(low, dtype=stored.dtype)
            else:
                index = stored.astype(np.int64) - low
            present = None  # which stored values occur: needed to leave padding out, and for min-max
            if plan[0] == "min-max" or "PixelPaddingValue" in ds:
                present = np.zeros(high - low + 1, dtype=bool)
                present[index.ravel()] = True
            return _grey(np.arange(low, high + 1, dtype=np.int64), present, ds, path, plan)[index]
    return _grey(stored, None, ds, path, plan)


def _grey(values: np.ndarray, present: np.ndarray | None, ds: Dataset, path: Path, plan: tuple) -> np.ndarray:
    """The grey-scale steps on ``values`` (a table of stored values, or the pixels); ``present``: the values that occur
    in the image (None: all of them)."""
    padding = _padding_mask(values, ds)
    kept = present
    if padding is not None:
        kept = ~padding if kept is None else kept & ~padding
        if not kept.any():
            raise DataError(f"{path}: every pixel is padding (PixelPaddingValue); the file holds no image.")
    observed = values if kept is None else values[kept]
    if np.issubdtype(observed.dtype, np.floating) and not np.isfinite(observed).all():
        raise DataError(f"{path}: the pixel data contains NaN or Inf values; re-export the file.")
    if observed.min() == observed.max():
        raise DataError(
            f"{path}: every stored pixel value is {observed.flat[0]}: the image is blank; re-export the file or remove "
            "its row."
        )
    modality = np.asarray(apply_modality_lut(values, ds))
    if not np.isfinite(modality).all():
        raise DataError(
            f"{path}: the modality LUT gives NaN or Inf values (RescaleSlope {ds.get('RescaleSlope')}, "
            f"RescaleIntercept {ds.get('RescaleIntercept')}); correct those tags or re-export the file."
        )
    image = _voi(modality.astype(np.float32, copy=False), ds, path, kept, plan)
    if str(ds.PhotometricInterpretation).strip() == "MONOCHROME1":
        image = 1.0 - image
    if padding is not None:
        image[padding] = 0.0
    return np.clip(image, 0.0, 1.0, out=image).astype(np.float32, copy=False)


def _padding_mask(stored: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """Pixels whose stored value is PixelPaddingValue, or lies between it and PixelPaddingRangeLimit (inclusive)."""
    value = ds.get("PixelPaddingValue")
    if value is None or not np.issubdtype(stored.dtype, np.integer):
        return None
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None:
        return stored == int(value)
    low, high = sorted((int(value), int(limit)))
    return (stored >= low) & (stored <= high)


def _voi_plan(ds: Dataset, path: Path) -> tuple:
    """Which VOI step the header asks for: ``("lut",)``, ``("window", center, width, function)`` or ``("min-max",)``.

    The VOI LUT Sequence comes first, then the first Window Center/Width; a window that cannot be used (an unknown
    function is applied as LINEAR, a width below the function's minimum falls back to min-max) warns once.
    """
    if ds.get("VOILUTSequence"):
        return ("lut",)
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is None or width is None:
        return ("min-max",)
    function = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    if function not in VOI_FUNCTIONS:
        _warn_once(
            f"{path}: VOILUTFunction '{function}' is not LINEAR, LINEAR_EXACT or SIGMOID; the window is applied as "
            "LINEAR."
        )
        function = "LINEAR"
    if width >= 1 or (width > 0 and function != "LINEAR"):
        return ("window", center, width, function)
    _warn_once(
        f"{path}: WindowWidth {width:g} cannot be used with {function} (it must be "
        f"{'at least 1' if function == 'LINEAR' else 'positive'}); the image is scaled by the min-max of its pixel "
        "values instead."
    )
    return ("min-max",)


def _voi(values: np.ndarray, ds: Dataset, path: Path, kept: np.ndarray | None, plan: tuple) -> np.ndarray:
    """The VOI step with output range [0, 1]; min-max uses the ``kept`` values (non-padding, present)."""
    if plan[0] == "lut":
        return _voi_lut(values, ds)
    if plan[0] == "window":
        return window(values, *plan[1:])
    selected = values if kept is None else values[kept]
    low, high = float(selected.min()), float(selected.max())
    if high == low:
        raise DataError(f"{path}: every pixel has the value {low:g} after the modality LUT: the image is blank.")
    return (values - np.float32(low)) / np.float32(high - low)


def _first(value) -> float | None:
    """The first of a multi-valued Window Center / Width (alternative windows for the same image)."""
    if isinstance(value, MultiValue):
        return float(value[0]) if len(value) else None
    return None if value is None or value == "" else float(value)


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """The VOI window of PS3.3 C.11.2.1.2 with output range [0, 1] (y_min = 0, y_max = 1).

    LINEAR (C.11.2.1.2.1): 0 for x <= c - 0.5 - (w - 1) / 2, 1 for x > c - 0.5 + (w - 1) / 2, else
    ((x - (c - 0.5)) / (w - 1) + 0.5). LINEAR_EXACT (C.11.2.1.3.2): 0 for x <= c - w / 2, 1 for x > c + w / 2,
    else (x - c) / w + 0.5. SIGMOID (C.11.2.1.3.1): 1 / (1 + exp(-4 (x - c) / w)).
    """
    x = np.asarray(values, dtype=np.float32)
    c, w = np.float32(center), np.float32(width)
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))).astype(np.float32)
    if function == "LINEAR_EXACT":
        y = (x - c) / w + np.float32(0.5)
    elif function == "LINEAR" and width == 1:
        return (x > c - np.float32(0.5)).astype(np.float32)  # the ramp has no width: a threshold
    elif function == "LINEAR":
        y = (x - (c - np.float32(0.5))) / (w - 1) + np.float32(0.5)
    else:
        raise ValueError(f"unknown VOI LUT function {function!r}; expected one of {VOI_FUNCTIONS}")
    # Both ramps reach exactly 0 and 1 at the bounds of their piecewise definition, so clipping is that definition.
    return np.clip(y, 0.0, 1.0).astype(np.float32, copy=False)


def _voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """The first VOI LUT, scaled to [0, 1] by its own minimum and maximum.

    The LUT is read by pydicom (``apply_voi`` on every input value it maps); its own range is used rather than the
    2**bits of its descriptor, because descriptors that declare 16 bits for 12-bit entries are common.
    """
    first, entries = int(ds.VOILUTSequence[0].LUTDescriptor[1]), int(ds.VOILUTSequence[0].LUTDescriptor[0]) or 2**16
    table = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds, index=0).astype(np.float32)
    low, high = float(table.min()), float(table.max())
    table = (table - low) / (high - low) if high > low else np.zeros_like(table)
    index = np.clip(np.rint(values) - first, 0, entries - 1).astype(np.intp)
    return table[index]


register_reader((".dcm", ".dicom"), read_dicom)
