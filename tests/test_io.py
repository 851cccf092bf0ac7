"""Image reading: why a file cannot be decoded is said precisely (DICOM files: tests/test_dicom.py)."""

import sys

import cv2
import numpy as np
import pytest

from bilatcf.data import io as image_io
from bilatcf.data.io import read_image
from bilatcf.errors import DataError


def _png(path, shape=(40, 20)):
    cv2.imwrite(str(path), np.linspace(0, 65535, shape[0] * shape[1]).reshape(shape).astype(np.uint16))
    return path


def test_a_text_file_named_png_is_told_apart_from_a_damaged_png(tmp_path):
    (tmp_path / "x.png").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(DataError, match=r"x\.png: OpenCV could not decode the file: it holds text, not a PNG image"):
        read_image(tmp_path / "x.png")
    data = _png(tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="the PNG image is truncated or corrupt"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"the file is empty \(0 bytes\)"):
        read_image(tmp_path / "empty.png")


def test_a_truncated_jpeg_is_refused_although_opencv_decodes_it(tmp_path):
    image = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "full.jpg"), image)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    assert read_image(tmp_path / "full.jpg").shape == (64, 64)
    with pytest.raises(DataError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")


def test_a_text_file_named_npy_says_so(tmp_path):
    (tmp_path / "a.npy").write_text("0.1, 0.2\n")
    with pytest.raises(DataError, match=r"a\.npy: not a readable \.npy array .*it holds text"):
        read_image(tmp_path / "a.npy")


def test_dicom_files_without_a_usable_pydicom_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, "_READERS", dict(image_io._READERS))
    image_io.register_reader((".dcm", ".dicom"), image_io._read_dicom)  # as before the DICOM module is imported
    monkeypatch.setitem(sys.modules, "bilatcf.data.dicom", None)  # importing it raises ImportError
    (tmp_path / "a.dcm").write_bytes(b"\0" * 132)
    with pytest.raises(
        DataError, match=r"a\.dcm: DICOM files are read by bilatcf\.data\.dicom, which could not"
    ) as error:
        read_image(tmp_path / "a.dcm")
    assert "pip install 'pydicom>=3'" in str(error.value)
