"""The DICOM reader: the grey-scale pipeline against the standard's formulas, every bad file named with its reason,
compressed files, read-only access, and the synthetic dataset written as MG DICOM and read back."""

from __future__ import annotations

import csv
import os
import shutil
import warnings

import numpy as np
import pydicom
import pydicom.uid as uids
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence

from bilatcf.cli import main
from bilatcf.data import dicom
from bilatcf.data.dicom import DicomWarning, read_dicom
from bilatcf.data.io import read_image
from bilatcf.errors import DataError
from tests.dicom_helpers import SHAPE, mammogram, ramp, save, write_encapsulated, write_mammogram


def _minmax(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return (values - values.min()) / (values.max() - values.min())


def _standard_window(x, center, width, function):
    """PS3.3 C.11.2.1.2 written out piecewise, in float64, with y_min = 0 and y_max = 1."""
    x = np.asarray(x, dtype=np.float64)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        ramp_ = (x - center) / width + 0.5
        return np.select([x <= center - width / 2, x > center + width / 2], [0.0, 1.0], ramp_)
    with np.errstate(divide="ignore", invalid="ignore"):  # width 1: a threshold, the ramp is never selected
        ramp_ = (x - (center - 0.5)) / (width - 1) + 0.5
    return np.select([x <= center - 0.5 - (width - 1) / 2, x > center - 0.5 + (width - 1) / 2], [0.0, 1.0], ramp_)


# ------------------------------------------------------------------------------------------------ the grey pipeline
def test_the_reader_is_registered_for_dcm_and_dicom(tmp_path):
    stored = ramp()
    for name in ("a.dcm", "b.DICOM"):
        image = read_image(write_mammogram(tmp_path / name, stored))
        assert image.dtype == np.float32 and image.shape == SHAPE
        np.testing.assert_allclose(image, _minmax(stored), atol=1e-6)


@pytest.mark.parametrize("windowed", [False, True], ids=["min-max", "window"])
def test_monochrome1_reads_like_monochrome2_dense_bright(tmp_path, windowed):
    stored = ramp(high=16383)
    tags = {"WindowCenter": 8000, "WindowWidth": 12000} if windowed else {}
    two = read_dicom(write_mammogram(tmp_path / "two.dcm", stored, **tags))
    # The same exam in MONOCHROME1: low stored values are bright, and the window is on the stored values.
    inverted = (16383 - stored.astype(np.int64)).astype(np.uint16)
    tags_one = {"WindowCenter": 16383 - 8000, "WindowWidth": 12000} if windowed else {}
    one = read_dicom(write_mammogram(tmp_path / "one.dcm", inverted, photometric="MONOCHROME1", **tags_one))
    np.testing.assert_allclose(one, two, atol=2e-4)  # LINEAR's 0.5 offset is mirrored: (c - 0.5) → (16383 - c + 0.5)
    assert two[-1, -1] == 1.0 and one[-1, -1] == 1.0, "the largest MONOCHROME2 / smallest MONOCHROME1 value is bright"


@pytest.mark.parametrize(
    ("function", "center", "width"),
    [("LINEAR", 2000, 1500), ("LINEAR", 2000.5, 1), ("LINEAR_EXACT", 2000, 1500), ("SIGMOID", 2000, 1500)],
)
def test_windows_follow_the_standard_formulas(tmp_path, function, center, width):
    stored = ramp(high=4095)
    tags = {"WindowCenter": center, "WindowWidth": width, "VOILUTFunction": function}
    image = read_dicom(write_mammogram(tmp_path / "w.dcm", stored, bits_stored=12, **tags))
    np.testing.assert_allclose(image, _standard_window(stored, center, width, function), atol=1e-6)


def test_no_voi_function_means_linear_and_the_first_of_several_windows_is_used(tmp_path):
    stored = ramp(high=4095)
    plain = read_dicom(write_mammogram(tmp_path / "a.dcm", stored, WindowCenter=1800, WindowWidth=900))
    np.testing.assert_allclose(plain, _standard_window(stored, 1800, 900, "LINEAR"), atol=1e-6)
    several = write_mammogram(tmp_path / "b.dcm", stored, WindowCenter=[1800, 3000], WindowWidth=[900, 400])
    np.testing.assert_array_equal(read_dicom(several), plain)


def test_rescale_slope_and_intercept_come_before_the_window(tmp_path):
    stored = ramp(high=4095)
    tags = {"RescaleSlope": 2, "RescaleIntercept": -1000, "WindowCenter": 3000, "WindowWidth": 4000}
    image = read_dicom(write_mammogram(tmp_path / "r.dcm", stored, **tags))
    np.testing.assert_allclose(image, _standard_window(2.0 * stored - 1000, 3000, 4000, "LINEAR"), atol=1e-6)
    no_window = read_dicom(write_mammogram(tmp_path / "n.dcm", stored, RescaleSlope=-1, RescaleIntercept=5000))
    np.testing.assert_allclose(no_window, 1 - _minmax(stored), atol=1e-6), "min-max of the modality values"


def test_a_voi_lut_sequence_is_used_first_and_scaled_by_its_own_range(tmp_path):
    stored = ramp(high=1023)
    item = Dataset()
    item.LUTDescriptor = [1024, 0, 16]  # declares 16 bits, holds 12-bit entries: its own range is used
    lut = np.rint(4095 * np.sqrt(np.arange(1024) / 1023)).astype(np.uint16)
    item.LUTData = lut.tolist()
    item["LUTData"].VR = "US"
    ds = mammogram(stored, bits_stored=10, WindowCenter=100, WindowWidth=10)  # the window is ignored
    ds.VOILUTSequence = Sequence([item])
    image = read_dicom(save(ds, tmp_path / "lut.dcm"))
    np.testing.assert_allclose(image, lut[stored] / 4095, atol=1e-6)


def test_pixel_padding_is_background_and_left_out_of_the_scaling(tmp_path):
    stored = ramp(low=100, high=3000)
    stored[:4] = 0  # padding at the top: value 0 ...
    stored[4:6] = 7  # ... and the range 0..7 with PixelPaddingRangeLimit
    kept = stored[6:]
    single = read_dicom(write_mammogram(tmp_path / "a.dcm", stored, PixelPaddingValue=0))
    assert (single[:4] == 0).all() and single[4:6].max() < 0.01
    ranged = read_dicom(write_mammogram(tmp_path / "b.dcm", stored, PixelPaddingValue=0, PixelPaddingRangeLimit=7))
    assert (ranged[:6] == 0).all()
    np.testing.assert_allclose(ranged[6:], _minmax(kept), atol=1e-6)
    # MONOCHROME1 pads with its brightest stored value; after inversion the background is still 0.
    inverted = (4095 - stored.astype(np.int64)).astype(np.uint16)
    one = read_dicom(
        write_mammogram(
            tmp_path / "c.dcm", inverted, photometric="MONOCHROME1", PixelPaddingValue=4095, PixelPaddingRangeLimit=4088
        )
    )
    np.testing.assert_allclose(one, ranged, atol=1e-6)


@pytest.mark.parametrize("bits", [12, 14, 16])
def test_12_14_and_16_bit_files_read_alike(tmp_path, bits):
    top = 2**bits - 1
    stored = ramp(high=top)
    image = read_dicom(write_mammogram(tmp_path / "b.dcm", stored, bits_stored=bits))
    np.testing.assert_allclose(image, _minmax(ramp(high=4095)), atol=2.5e-4)  # the same picture at every depth
    windowed = read_dicom(
        write_mammogram(tmp_path / "w.dcm", stored, bits_stored=bits, WindowCenter=(top + 1) / 2, WindowWidth=top + 1)
    )
    np.testing.assert_allclose(windowed, stored / top, atol=1e-6)


def test_signed_and_float_pixels_read_too(tmp_path):
    stored = (ramp(high=4095).astype(np.int32) - 2048).astype(np.int16)  # 12-bit signed, -2048 … 2047
    tags = {"WindowCenter": 100, "WindowWidth": 3000, "RescaleSlope": 1, "RescaleIntercept": 50}
    path = write_mammogram(tmp_path / "signed.dcm", stored, bits_stored=12, **tags)
    assert pydicom.dcmread(path).PixelRepresentation == 1
    image = read_dicom(path)
    np.testing.assert_allclose(image, _standard_window(stored + 50.0, 100, 3000, "LINEAR"), atol=1e-6)
    floats = mammogram(ramp())
    del floats.PixelData, floats.PixelRepresentation
    floats.BitsAllocated, floats.BitsStored, floats.HighBit = 32, 32, 31
    floats.FloatPixelData = (ramp().astype(np.float32) / 7).tobytes()
    np.testing.assert_allclose(read_dicom(save(floats, tmp_path / "float.dcm")), _minmax(ramp()), atol=1e-6)


@pytest.mark.parametrize(
    ("tags", "warning", "expected"),
    [
        (
            {"VOILUTFunction": "LOG"},
            "VOILUTFunction 'LOG' is not LINEAR",
            lambda x: _standard_window(x, 2000, 1500, "LINEAR"),
        ),
        ({"WindowWidth": 0}, "WindowWidth 0 cannot be used with LINEAR", _minmax),
        ({"WindowWidth": 0.5, "VOILUTFunction": "LINEAR"}, "it must be at least 1", _minmax),
    ],
    ids=["unknown-function", "zero-width", "narrow-linear"],
)
def test_an_unusable_window_warns_and_falls_back(tmp_path, tags, warning, expected):
    stored = ramp(high=4095)
    path = write_mammogram(
        tmp_path / "w.dcm", stored, bits_stored=12, **{"WindowCenter": 2000, "WindowWidth": 1500, **tags}
    )
    with pytest.warns(DicomWarning, match=warning):
        image = read_dicom(path)
    np.testing.assert_allclose(image, expected(stored), atol=1e-6)


def _violating(tmp_path, name="over.dcm"):
    """BitsStored says 12 but the values use 16 bits, as in some real mammograms."""
    stored = ramp(high=40000)
    ds = mammogram(stored, bits_stored=16)
    ds.BitsStored, ds.HighBit = 12, 11
    return save(ds, tmp_path / name), stored


def test_values_above_bits_stored_are_kept_and_warn_once_per_file(tmp_path):
    path, stored = _violating(tmp_path)
    other, _ = _violating(tmp_path, "other.dcm")
    assert pydicom.dcmread(path).pixel_array.max() <= 4095, "pydicom alone clears the high bits"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        image = read_dicom(path)
        read_dicom(path)
        read_dicom(other)
    messages = [str(w.message) for w in caught if issubclass(w.category, DicomWarning)]
    assert len(messages) == 2 and str(path) in messages[0] and str(other) in messages[1], messages
    assert "reach 40000, above the 4095 that BitsStored 12 allows" in messages[0] and "kept as stored" in messages[0]
    np.testing.assert_allclose(image, _minmax(stored), atol=1e-6)


def test_an_overlay_in_the_unused_bits_is_cleared(tmp_path):
    stored = ramp(high=4095)
    with_overlay = stored | np.where(np.eye(*SHAPE, dtype=bool), np.uint16(1 << 12), np.uint16(0))
    ds = mammogram(with_overlay, bits_stored=16)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.add_new((0x6000, 0x0100), "US", 16)  # Overlay Bits Allocated = Bits Allocated: the overlay is in the pixels
    ds.add_new((0x6000, 0x0102), "US", 12)  # Overlay Bit Position
    with warnings.catch_warnings():
        warnings.simplefilter("error", DicomWarning)
        image = read_dicom(save(ds, tmp_path / "overlay.dcm"))
    np.testing.assert_allclose(image, _minmax(stored), atol=1e-6)


@pytest.mark.parametrize("syntax", [uids.RLELossless, uids.JPEG2000Lossless], ids=["rle", "jpeg2000"])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_compressed_files_read_like_uncompressed_ones(tmp_path, syntax, photometric):
    stored = ramp((40, 32), high=16383)  # openjpeg needs at least 32 rows and columns
    tags = {"photometric": photometric, "WindowCenter": 8000, "WindowWidth": 9000, "VOILUTFunction": "SIGMOID"}
    plain = read_dicom(write_mammogram(tmp_path / "plain.dcm", stored, **tags))
    path = write_mammogram(tmp_path / "packed.dcm", stored, syntax=syntax, **tags)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(read_dicom(path), plain)


@pytest.mark.parametrize(
    ("stored", "kwargs"),
    [
        (ramp(high=65535), {"bits_stored": 16, "BitsStored": 12}),  # values above BitsStored, kept as stored
        ((ramp(high=4095).astype(np.int32) - 2048).astype(np.int16), {"bits_stored": 12}),  # signed
        (ramp(high=255).astype(np.uint8), {"bits_stored": 8}),
    ],
    ids=["above-bits-stored", "signed", "8-bit"],
)
def test_rle_reads_the_same_with_and_without_dicomsdl(tmp_path, monkeypatch, stored, kwargs):
    pytest.importorskip("dicomsdl")
    path = write_mammogram(tmp_path / "rle.dcm", stored, syntax=uids.RLELossless, **kwargs)
    assert dicom._fast_rle(pydicom.dcmread(path), path) is not None  # dicomsdl decodes this file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)
        fast = read_dicom(path)
        monkeypatch.setattr(dicom, "find_spec", lambda name: None)  # as on a machine without dicomsdl
        assert dicom._fast_rle(pydicom.dcmread(path), path) is None
        np.testing.assert_array_equal(fast, read_dicom(path))


def test_a_damaged_rle_frame_is_reported_in_pydicoms_words(tmp_path):
    path = write_encapsulated(tmp_path / "bad.dcm", uids.RLELossless, frame=b"\x01\x00\x00\x00" + b"\x00" * 60)
    assert dicom._fast_rle(pydicom.dcmread(path), path) is None
    with pytest.raises(DataError, match="could not be decoded"):
        read_dicom(path)


@pytest.mark.parametrize(
    ("syntax", "install"),
    [
        (uids.JPEG2000Lossless, "pip install pylibjpeg pylibjpeg-openjpeg"),
        (uids.JPEGLosslessSV1, "pip install python-gdcm (BSD), or pip install pylibjpeg pylibjpeg-libjpeg (GPLv3)"),
        (uids.JPEGLSLossless, "pip install pyjpegls (BSD), or pip install python-gdcm"),
    ],
    ids=["jpeg2000", "jpeg-lossless", "jpeg-ls"],
)
def test_a_missing_decoder_says_what_to_install(tmp_path, monkeypatch, syntax, install):
    monkeypatch.setattr(get_decoder(syntax), "_available", {})  # as on a machine without the plugin
    path = write_encapsulated(tmp_path / "c.dcm", syntax)
    with pytest.raises(DataError, match="no decoder for it is installed") as error:
        read_image(path)
    assert str(error.value).startswith(f"{path}: ") and install in str(error.value) and syntax in str(error.value)


# ------------------------------------------------------------------------------------------------ files refused
def _cut(path):
    write_mammogram(path, ramp())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 300])


def _header_only(path):
    write_mammogram(path, ramp())
    data = path.read_bytes()
    path.write_bytes(data[:400])


def _no_pixels(path):
    ds = mammogram(ramp())
    del ds.PixelData
    save(ds, path)


def _nan(path):
    ds = mammogram(ramp())
    del ds.PixelData
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    del ds.PixelRepresentation
    values = ramp().astype(np.float32)
    values[3, 3] = np.nan
    ds.FloatPixelData = values.tobytes()
    save(ds, path)


def _rgb(path):
    ds = mammogram(ramp())
    ds.set_pixel_data(np.zeros((*SHAPE, 3), np.uint8) + 9, photometric_interpretation="RGB", bits_stored=8)
    save(ds, path)


def _frames(path):
    ds = mammogram(np.stack([ramp(), ramp()]))
    save(ds, path)


BAD_FILES = {
    "text": (lambda p: p.write_text("<html>404 Not Found</html>"), "holds text, not a DICOM image"),
    "empty": (lambda p: p.write_bytes(b""), r"the file is empty \(0 bytes\)"),
    "png-named-dcm": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200)), "no 'DICM' marker at byte 128"),
    "truncated": (_cut, "the file is truncated: element \\(7FE0,0010\\) declares 1536 bytes"),
    "header-only": (_header_only, "the file is truncated|no Pixel Data element"),
    "no-pixel-data": (_no_pixels, r"no Pixel Data element \(7FE0,0010\)"),
    "ct": (lambda p: write_mammogram(p, ramp(), Modality="CT"), "Modality is 'CT', not 'MG'"),
    "no-modality": (lambda p: write_mammogram(p, ramp(), Modality=None), "Modality is missing, not 'MG'"),
    "all-zero": (lambda p: write_mammogram(p, np.zeros(SHAPE, np.uint16)), "every stored pixel value is 0"),
    "nan": (_nan, "NaN or Inf"),
    "all-padding": (
        lambda p: write_mammogram(p, np.full(SHAPE, 5, np.uint16), PixelPaddingValue=5),
        "every pixel is padding",
    ),
    "colour": (_rgb, "PhotometricInterpretation is 'RGB' with 3 sample"),
    "frames": (_frames, "holds 2 frames"),
    "for-processing": (
        lambda p: write_mammogram(p, ramp(), PresentationIntentType="FOR PROCESSING"),
        "a FOR PROCESSING image .*--data.dicom_for_processing warn",
    ),
    "unknown-syntax": (lambda p: write_encapsulated(p, "1.2.3.4.5"), "pydicom cannot decode the transfer syntax"),
    "bad-codestream": (
        lambda p: write_encapsulated(p, uids.JPEG2000Lossless),
        "the pixel data could not be decoded .*damaged",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_each_unusable_file_is_refused_with_its_name_and_reason(tmp_path, kind):
    make, reason = BAD_FILES[kind]
    path = tmp_path / f"{kind}.dcm"
    make(path)
    with pytest.raises(DataError, match=reason) as error:
        read_image(path)
    assert str(error.value).startswith(f"{path}: ")


def test_for_processing_images_are_read_with_a_warning_under_the_warn_policy(tmp_path, monkeypatch):
    path = write_mammogram(tmp_path / "raw.dcm", ramp(), PresentationIntentType="FOR PROCESSING")
    with pytest.warns(DicomWarning, match="FOR PROCESSING image .*policy 'warn'"):
        image = read_dicom(path, for_processing="warn")
    np.testing.assert_allclose(image, _minmax(ramp()), atol=1e-6)
    for_processing_class = write_mammogram(
        tmp_path / "class.dcm", ramp(), SOPClassUID=uids.DigitalMammographyXRayImageStorageForProcessing
    )
    with pytest.raises(DataError, match="FOR PROCESSING"):
        read_image(for_processing_class)
    monkeypatch.setattr(dicom, "_for_processing_policy", "refuse")  # restored after the test
    dicom.set_for_processing_policy("warn")
    with pytest.warns(DicomWarning):
        read_image(for_processing_class)
    with pytest.raises(DataError, match="policy 'sometimes' is not one of refuse, warn"):
        dicom.set_for_processing_policy("sometimes")


def test_source_files_are_opened_read_only_and_left_unchanged(tmp_path):
    path = write_mammogram(tmp_path / "ro.dcm", ramp(), WindowCenter=2000, WindowWidth=3000)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    path.chmod(0o444)
    try:
        read_dicom(path)
        read_dicom(path)
    finally:
        path.chmod(0o644)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


# ------------------------------------------------------------------------------------- synthetic MG DICOM files
@pytest.fixture(scope="module")
def dicom_folder(tmp_path_factory):
    """4 synthetic patients (one of each file style) written as DICOM, with the dataset they were made from."""
    from bilatcf.data.synthetic import SyntheticConfig, load_or_generate

    out = tmp_path_factory.mktemp("dicom") / "synth"
    args = ["data", "synth", "--out", str(out), "--num_patients", "4", "--image_size", "64", "32", "--format", "dicom"]
    assert main(args) == 0
    return out, load_or_generate(SyntheticConfig(num_patients=4, image_size=(64, 32)))


def test_synthetic_dicom_files_read_back_as_the_synthetic_images(dicom_folder):
    from bilatcf.data.synthetic.dicom_files import LINEAR_ERROR, SIGMOID_ERROR

    folder, dataset = dicom_folder
    rows = {row["image_id"]: row for row in csv.DictReader((folder / "manifest.csv").open())}
    styles, studies, instances = set(), {}, set()
    for index, record in enumerate(dataset.records):
        row = rows[record.image_id]
        assert row["path"] == f"images/{record.image_id}.dcm" and row["mask_path"] in (
            "",
            f"masks/{record.image_id}.png",
        )
        ds = pydicom.dcmread(folder / row["path"])
        assert ds.Modality == "MG" and ds.SOPClassUID == uids.DigitalMammographyXRayImageStorageForPresentation
        assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 14, 0)
        assert (ds.ImageLaterality, ds.ViewPosition, ds.PatientID) == (
            record.laterality,
            record.view,
            row["patient_id"],
        )
        assert (
            ds.PresentationIntentType == "FOR PRESENTATION"
            and ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        )
        styles.add((ds.PhotometricInterpretation, ds.VOILUTFunction))
        assert studies.setdefault(ds.PatientID, ds.StudyInstanceUID) == ds.StudyInstanceUID, "one study per patient"
        instances.add(ds.SOPInstanceUID)
        expected = dataset.images[index][:, ::-1] if record.laterality == "R" else dataset.images[index]
        error = np.abs(read_image(folder / row["path"]) - expected).max()
        assert error <= (SIGMOID_ERROR if ds.VOILUTFunction == "SIGMOID" else LINEAR_ERROR) + 1e-6, (
            ds.VOILUTFunction,
            error,
        )
    assert styles == {(p, f) for p in ("MONOCHROME1", "MONOCHROME2") for f in ("LINEAR", "SIGMOID")}
    assert len(instances) == len(dataset.records) and len(set(studies.values())) == 4


def test_data_check_and_the_datamodule_read_the_synthetic_dicom_folder(dicom_folder, capsys):
    from bilatcf.data.datamodule import BilateralDataModule
    from bilatcf.data.types import check_batch

    folder, _ = dicom_folder
    assert main(["data", "check", str(folder / "manifest.csv"), "--image_size", "64", "32"]) == 0
    assert "16 images checked, 0 manifest problem(s), 0 file problem(s)" in capsys.readouterr().out
    datamodule = BilateralDataModule(
        source="manifest", manifest=str(folder / "manifest.csv"), image_size=(64, 32), batch_size=2, augment=False
    )
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    check_batch(batch)
    assert all(meta["flipped"] == (meta["laterality"] == "R") for meta in batch.meta), "right breasts are mirrored"


def test_data_check_reports_for_processing_files_unless_told_to_read_them(dicom_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dicom, "_for_processing_policy", "refuse")  # `data check` sets the process's policy
    folder = shutil.copytree(dicom_folder[0], tmp_path / "synth")
    raw = sorted((folder / "images").glob("*.dcm"))[0]
    ds = pydicom.dcmread(raw)
    ds.PresentationIntentType = "FOR PROCESSING"
    ds.save_as(raw)
    manifest = str(folder / "manifest.csv")
    assert main(["data", "check", manifest, "--image_size", "64", "32"]) == 1
    out = capsys.readouterr().out
    assert f"{raw}: a FOR PROCESSING image" in out and "1 file problem(s) in 1 image(s)" in out
    with pytest.warns(DicomWarning, match="FOR PROCESSING"):
        assert main(["data", "check", manifest, "--image_size", "64", "32", "--dicom_for_processing", "warn"]) == 0
    assert main(["data", "check", manifest, "--image_size", "64", "32"]) == 1, "each policy has its own cached check"


def test_the_datamodule_checks_its_dicom_option():
    from bilatcf.data.datamodule import BilateralDataModule
    from bilatcf.errors import ConfigError

    with pytest.raises(ConfigError, match="--data.dicom_for_processing = 'maybe' is not a valid choice"):
        BilateralDataModule(dicom_for_processing="maybe")
