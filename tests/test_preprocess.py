"""Real-image path: reading files, breast crop and orientation, box/mask mapping, and the preprocessed cache."""

import json
import os
import shutil
import sys
import types

import cv2
import numpy as np
import pytest

from bilatcf.data import io as image_io
from bilatcf.data.cache import PreprocessedCache, cache_dir
from bilatcf.data.io import read_image, read_mask, register_reader
from bilatcf.data.preprocess import (
    PreprocessConfig,
    PreprocessInfo,
    breast_mask,
    map_boxes,
    map_mask,
    preprocess,
    unmap_map,
)
from bilatcf.data.types import ImageRecord
from bilatcf.errors import ConfigError, DataError


def _breast(chest_wall_right: bool = True) -> np.ndarray:
    """64 x 32 image: breast in x 4..28, y 8..56, brighter towards the chest wall; a marker label in a corner."""
    image = np.zeros((64, 32), np.float32)
    ramp = np.linspace(0.3, 0.9, 24, dtype=np.float32)
    image[8:56, 4:28] = ramp if chest_wall_right else ramp[::-1]
    image[1:3, 0:3] = 1.0  # a laterality marker, disconnected from the breast
    return image


# --- image IO ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_read_8_and_16_bit_images_scaled_by_dtype_max(tmp_path, suffix):
    for dtype in (np.uint8, np.uint16):
        values = np.array([[0, 1, 2], [3, np.iinfo(dtype).max, 7]], dtype=dtype)
        path = tmp_path / f"{dtype.__name__}{suffix}"
        cv2.imwrite(str(path), values)
        image = read_image(path)
        assert image.dtype == np.float32
        np.testing.assert_allclose(image, values / np.iinfo(dtype).max, rtol=1e-6)


def test_colour_images_become_grey(tmp_path):
    colour = np.full((4, 5, 3), 51, np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    np.testing.assert_allclose(read_image(tmp_path / "c.png"), np.full((4, 5), 0.2), rtol=1e-6)
    cv2.imwrite(str(tmp_path / "c.jpg"), colour)
    assert read_image(tmp_path / "c.jpg").shape == (4, 5)


def test_npy_images(tmp_path):
    np.save(tmp_path / "f.npy", np.array([[0.0, 0.25], [0.5, 1.0]]))
    np.testing.assert_array_equal(read_image(tmp_path / "f.npy"), [[0.0, 0.25], [0.5, 1.0]])
    np.save(tmp_path / "u.npy", np.array([[0, 65535]], np.uint16))
    np.testing.assert_array_equal(read_image(tmp_path / "u.npy"), [[0.0, 1.0]])
    np.save(tmp_path / "hu.npy", np.array([[-1000.0, 400.0]]))
    with pytest.raises(DataError, match=r"hu\.npy: float image has values in \[-1000, 400\]"):
        read_image(tmp_path / "hu.npy")
    np.save(tmp_path / "s.npy", np.array([[-3, 4]], np.int16))
    with pytest.raises(DataError, match="negative"):
        read_image(tmp_path / "s.npy")
    np.save(tmp_path / "rgb.npy", np.zeros((4, 4, 3)))
    with pytest.raises(DataError, match="single grey channel"):
        read_image(tmp_path / "rgb.npy")


def test_missing_unreadable_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="nope.png: image file not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png: OpenCV could not decode"):
        read_image(tmp_path / "bad.png")
    (tmp_path / "x.gif").write_bytes(b"")
    with pytest.raises(DataError, match=r"unsupported image type '\.gif'"):
        read_image(tmp_path / "x.gif")


def test_registered_readers_and_the_dicom_hook(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, "_READERS", dict(image_io._READERS))
    (tmp_path / "a.FOO").write_bytes(b"")
    register_reader("foo", lambda path: np.array([[0, 255]], np.uint8))
    np.testing.assert_array_equal(read_image(tmp_path / "a.FOO"), [[0.0, 1.0]])

    (tmp_path / "a.dcm").write_bytes(b"")
    register_reader((".dcm", ".dicom"), image_io._read_dicom)  # the placeholder, whether or not the reader was imported
    monkeypatch.setitem(sys.modules, "bilatcf.data.dicom", types.ModuleType("bilatcf.data.dicom"))
    with pytest.raises(DataError, match="no DICOM reader is registered"):
        read_image(tmp_path / "a.dcm")
    register_reader((".dcm", ".dicom"), lambda path: np.full((2, 2), 0.5))
    np.testing.assert_array_equal(read_image(tmp_path / "a.dcm"), np.full((2, 2), 0.5, np.float32))


def test_read_mask_is_binary(tmp_path):
    cv2.imwrite(str(tmp_path / "m.png"), np.array([[0, 255, 3]], np.uint8))
    mask = read_mask(tmp_path / "m.png")
    assert mask.dtype == np.uint8 and mask.tolist() == [[0, 1, 1]]


# --- preprocessing ----------------------------------------------------------------------------------------------------


def test_breast_mask_is_the_largest_component_including_its_dim_rim():
    image = np.zeros((64, 32), np.float32)
    image[10:54, 2:26] = 0.3  # dim tissue: 1056 px
    image[16:48, 2:20] = 0.9  # dense tissue inside it: 576 px; Otsu alone puts its threshold between 0.3 and 0.9
    image[1:4, 28:31] = 1.0  # marker
    expected = np.zeros((64, 32), np.uint8)
    expected[10:54, 2:26] = 1
    np.testing.assert_array_equal(breast_mask(image), expected)


def test_crop_box_of_a_large_image_is_found_at_reduced_resolution():
    image = np.zeros((2100, 1100), np.float32)
    image[300:1900, 100:900] = np.linspace(0.2, 0.8, 800, dtype=np.float32)
    image[20:60, 1000:1060] = 1.0  # marker
    _, info = preprocess(image, "R", PreprocessConfig())
    np.testing.assert_allclose(info.crop_box, (100, 300, 900, 1900), atol=3)
    assert info.flipped


def test_blank_image_keeps_the_full_frame():
    output, info = preprocess(np.zeros((40, 20), np.float32), "L", PreprocessConfig(image_size=(20, 10)))
    assert info.crop_box == (0, 0, 20, 40) and not info.flipped and not output.any()


def test_crop_flip_resize_pad_geometry():
    output, info = preprocess(_breast(chest_wall_right=True), "R", PreprocessConfig(image_size=(40, 40)))
    # crop 24 x 48 px -> scale min(40/48, 40/24) = 5/6 -> 20 x 40 px, padded with 20 zero columns on the right
    assert info == PreprocessInfo(
        original_size=(64, 32), crop_box=(4, 8, 28, 56), flipped=True, scale=(40 / 48, 20 / 24), pad=(0, 20)
    )
    assert output.shape == (40, 40) and output.dtype == np.float32 and output.max() <= 1.0
    assert not output[:, 20:].any()
    assert output[:, 0].mean() > 0.8 > 0.4 > output[:, 19].mean()  # the chest wall (bright) now on the left
    assert output[0, 0] > 0  # the marker was cropped away, the breast starts at the top-left


@pytest.mark.parametrize(
    "chest_wall_right, laterality, flipped",
    [
        (True, "R", True),
        (False, "L", False),
        (True, "L", True),
        (False, "RIGHT", False),  # the tag contradicts the intensity: intensity decides
        (True, "", True),
        (False, "unknown", False),
    ],
)
def test_orientation_follows_the_brighter_half(chest_wall_right, laterality, flipped):
    assert preprocess(_breast(chest_wall_right), laterality, PreprocessConfig())[1].flipped is flipped


def test_tag_decides_when_the_halves_are_equally_bright():
    image = np.zeros((64, 32), np.float32)
    image[8:56, 4:28] = 0.6
    assert preprocess(image, "R", PreprocessConfig())[1].flipped
    assert not preprocess(image, "L", PreprocessConfig())[1].flipped
    assert not preprocess(image, "", PreprocessConfig())[1].flipped


def test_steps_can_be_turned_off():
    output, info = preprocess(_breast(), "R", PreprocessConfig(image_size=(64, 32), crop=False, orient=False))
    assert info == PreprocessInfo((64, 32), (0, 0, 32, 64), False, (1.0, 1.0), (0, 0))
    np.testing.assert_array_equal(output, _breast())


def test_map_boxes_by_hand():
    _, info = preprocess(_breast(), "R", PreprocessConfig(image_size=(32, 16)))
    # crop (4, 8) -> [16, 8, 22, 20]; flip within width 24 -> [2, 8, 8, 20]; scale 2/3
    np.testing.assert_allclose(map_boxes([[20, 16, 26, 28]], info), [[4 / 3, 16 / 3, 16 / 3, 40 / 3]])
    assert map_boxes([[0, 0, 3, 3]], info) == []  # entirely outside the crop


def test_mask_boxes_and_image_stay_aligned():
    image, mask = np.zeros((64, 32), np.float32), np.zeros((64, 32), np.uint8)
    image[8:56, 4:28] = 0.5  # uniform breast: the "R" tag decides the flip
    image[20:32, 18:24] = 1.0  # lesion
    mask[20:32, 18:24] = 1
    output, info = preprocess(image, "R", PreprocessConfig(image_size=(96, 48)))  # crop 24 x 48, exactly x2
    assert info.flipped and info.scale == (2.0, 2.0)
    mapped = map_mask(mask, info)
    assert mapped.dtype == np.uint8 and mapped.shape == (96, 48)
    np.testing.assert_array_equal(mapped, output > 0.75)  # bilinear x2 weighs the nearest source pixel 3/4
    rows, cols = np.nonzero(mapped)
    # x: 18..24 -> crop 14..20 -> flip in width 24: 4..10 -> x2: 8..20;  y: 20..32 -> crop 12..24 -> x2: 24..48
    assert map_boxes([[18, 20, 24, 32]], info) == [[8.0, 24.0, 20.0, 48.0]]
    assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (8, 24, 20, 48)


def test_map_mask_rejects_a_mask_of_another_size():
    _, info = preprocess(_breast(), "R", PreprocessConfig())
    with pytest.raises(DataError, match=r"mask has shape \(32, 32\) but its image has \(64, 32\)"):
        map_mask(np.zeros((32, 32), np.uint8), info)


def test_info_round_trips_through_json_and_config_is_checked():
    _, info = preprocess(_breast(), "R", PreprocessConfig())
    assert PreprocessInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    assert PreprocessConfig(image_size=[64, 32]) == PreprocessConfig(image_size=(64, 32))
    for bad in ((64,), (0, 32), (64.0, 32)):
        with pytest.raises(ConfigError):
            PreprocessConfig(image_size=bad)


# --- cache ------------------------------------------------------------------------------------------------------------


def _cached_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("BILATCF_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "a.npy", _breast())
    record = ImageRecord(
        dataset="toy", patient_id="p", study_id="s", image_id="a", path=str(data / "a.npy"), laterality="R", view="CC"
    )
    calls = []

    def compute(r: ImageRecord):
        calls.append(r.image_id)
        return preprocess(read_image(r.path), r.laterality, PreprocessConfig())

    return data, record, calls, compute


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BILATCF_CACHE", str(tmp_path / "somewhere"))
    assert cache_dir() == tmp_path / "somewhere" and cache_dir().is_dir()


def test_cache_hits_return_the_stored_image(tmp_path, monkeypatch):
    data, record, calls, compute = _cached_setup(tmp_path, monkeypatch)
    cache, config = PreprocessedCache(), PreprocessConfig()
    first_image, first_info = cache.get_or_compute(record, config, compute)
    second_image, second_info = cache.get_or_compute(record, config, compute)
    assert calls == ["a"]
    assert second_info == first_info and second_image.dtype == np.float32
    np.testing.assert_array_equal(second_image, first_image)
    fresh, _ = preprocess(read_image(record.path), "R", config)
    assert np.abs(second_image - fresh).max() <= 0.5 / 65535 + 1e-7  # uint16 quantisation
    assert sorted(os.listdir(data)) == ["a.npy"]  # nothing written next to the data
    assert cache.root == tmp_path / "cache" / "preprocessed"
    assert sorted(p.suffix for p in cache.root.rglob("*") if p.is_file()) == [".json", ".npy"]


def test_cache_misses_when_config_contents_or_laterality_change(tmp_path, monkeypatch):
    data, record, calls, compute = _cached_setup(tmp_path, monkeypatch)
    cache = PreprocessedCache()
    cache.get_or_compute(record, PreprocessConfig(), compute)
    cache.get_or_compute(record, PreprocessConfig(image_size=(128, 64)), compute)
    cache.get_or_compute(ImageRecord(**{**record.__dict__, "laterality": "L"}), PreprocessConfig(), compute)
    assert len(calls) == 3
    np.save(data / "a.npy", _breast()[::-1].copy())  # new contents under the same name
    cache.get_or_compute(record, PreprocessConfig(), compute)
    assert len(calls) == 4


def test_cache_is_keyed_by_contents_not_by_where_the_file_is(tmp_path, monkeypatch):
    data, record, calls, compute = _cached_setup(tmp_path, monkeypatch)
    cache = PreprocessedCache()
    image, _ = cache.get_or_compute(record, PreprocessConfig(), compute)
    stat = os.stat(record.path)
    os.utime(record.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, unchanged
    moved = tmp_path / "elsewhere" / "renamed.npy"
    moved.parent.mkdir()
    shutil.copy(record.path, moved)
    for where in (record, ImageRecord(**{**record.__dict__, "path": str(moved)})):
        again, _ = cache.get_or_compute(where, PreprocessConfig(), compute)
        np.testing.assert_array_equal(again, image)
    assert calls == ["a"], "a touched file and a copy elsewhere are served from the cache"
    assert cache.contains(record, PreprocessConfig()) and not cache.contains(record, PreprocessConfig((128, 64)))


def test_damaged_entries_are_recomputed(tmp_path, monkeypatch):
    _, record, calls, compute = _cached_setup(tmp_path, monkeypatch)
    cache = PreprocessedCache()
    image, _ = cache.get_or_compute(record, PreprocessConfig(), compute)
    (stored,) = cache.root.rglob("*.npy")
    stored.write_bytes(b"garbage")
    again, _ = cache.get_or_compute(record, PreprocessConfig(), compute)
    assert calls == ["a", "a"]
    np.testing.assert_array_equal(again, image)


def test_cache_needs_the_source_file(tmp_path, monkeypatch):
    _, record, _, compute = _cached_setup(tmp_path, monkeypatch)
    os.remove(record.path)
    with pytest.raises(DataError, match="a.npy: image file not found"):
        PreprocessedCache().get_or_compute(record, PreprocessConfig(), compute)


@pytest.mark.parametrize("chest_wall_right", [True, False])
def test_unmap_map_brings_a_model_size_map_back_to_the_original_pixels(chest_wall_right):
    image = _breast(chest_wall_right)
    mask = np.zeros_like(image, dtype=np.uint8)
    mask[20:36, 10:20] = 1  # a lesion inside the breast
    config = PreprocessConfig(image_size=(40, 40))  # the breast is resized and padded on the right
    _, info = preprocess(image, "R" if chest_wall_right else "L", config)
    assert info.flipped == chest_wall_right and info.pad[1] > 0
    back = unmap_map(map_mask(mask, info).astype(np.float32), info)
    assert back.shape == image.shape
    lesion = back > 0.5
    iou = (lesion & (mask > 0)).sum() / (lesion | (mask > 0)).sum()
    assert iou > 0.8, iou
    x0, y0, x1, y1 = info.crop_box
    outside = np.ones_like(back, dtype=bool)
    outside[y0:y1, x0:x1] = False
    assert not back[outside].any(), "outside the crop (the marker's corner) the map is 0"
    with pytest.raises(DataError, match="resize the map to the model's input size"):
        unmap_map(np.zeros((10, 10), np.float32), info)
