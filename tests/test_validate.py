"""The decode check: each kind of unusable file is found with its reason, results are cached, `data check` reports."""

from dataclasses import replace

import cv2
import numpy as np
import pytest

from bilatcf.cli import main
from bilatcf.data import validate
from bilatcf.data.manifest import write_manifest
from bilatcf.data.types import ImageRecord
from bilatcf.data.validate import check_images

SIZE = (64, 32)


def _image(shape=(80, 40)) -> np.ndarray:
    return np.linspace(0, 65535, shape[0] * shape[1]).reshape(shape).astype(np.uint16)


def _record(tmp_path, name: str, mask: str = "", **changes) -> ImageRecord:
    fields = dict(
        dataset="toy",
        patient_id=name,
        study_id="s",
        image_id=name,
        path=str(tmp_path / name),
        laterality="L",
        view="CC",
        abnormal=1,
        malignant=0,
        mask_path=str(tmp_path / mask) if mask else "",
    )
    return ImageRecord(**{**fields, **changes})


def _good_png(path, shape=(80, 40)):
    cv2.imwrite(str(path), _image(shape))


def _truncated_png(path):
    _good_png(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_FILES = {
    "missing": (lambda path: None, "image file not found"),
    "truncated": (_truncated_png, "truncated or corrupt"),
    "text": (lambda path: path.write_text("<html>404 Not Found</html>"), "holds text, not a PNG"),
    "nan": (lambda path: np.save(path, np.full((80, 40), np.nan, np.float32)), "NaN or Inf"),
    "inf": (lambda path: np.save(path, np.where(np.eye(80, 40) > 0, np.inf, 0.5)), "NaN or Inf"),
    "zeros": (lambda path: cv2.imwrite(str(path), np.zeros((80, 40), np.uint16)), "blank image: every pixel is 0"),
    "small": (lambda path: _good_png(path, (40, 20)), "40×20 pixels, smaller than the model input 64×32"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_each_kind_of_bad_image_is_reported_with_file_and_reason(tmp_path, kind):
    write, reason = BAD_FILES[kind]
    name = f"x.{'npy' if kind in ('nan', 'inf') else 'png'}"
    write(tmp_path / name)
    _good_png(tmp_path / "good.png")
    records = [_record(tmp_path, "good.png"), _record(tmp_path, name)]
    problems = check_images(records, SIZE, progress=False)
    assert [(p.index, p.file) for p in problems] == [(1, str(tmp_path / name))]
    assert reason in problems[0].reason


MASKS = {
    "missing": (lambda path: None, "mask file not found"),
    "text": (lambda path: path.write_text("not a mask"), "unreadable mask: OpenCV could not decode"),
    "size": (lambda path: cv2.imwrite(str(path), np.zeros((40, 20), np.uint8)), "the mask is 40×20 pixels but its"),
}


@pytest.mark.parametrize("kind", list(MASKS))
def test_unreadable_or_mismatched_masks_are_reported(tmp_path, kind):
    write, reason = MASKS[kind]
    _good_png(tmp_path / "x.png")
    write(tmp_path / "m.png")
    problems = check_images([_record(tmp_path, "x.png", mask="m.png")], SIZE, progress=False)
    assert len(problems) == 1 and problems[0].file == str(tmp_path / "m.png") and reason in problems[0].reason


def test_a_lesion_free_image_with_lesion_pixels_in_its_mask_is_reported(tmp_path):
    _good_png(tmp_path / "x.png")
    mask = np.zeros((80, 40), np.uint8)
    mask[10:20, 10:20] = 255
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    records = [_record(tmp_path, "x.png", mask="m.png", abnormal=0), _record(tmp_path, "x.png", mask="m.png")]
    problems = check_images(records, SIZE, progress=False)
    assert [p.index for p in problems] == [0] and "abnormal = 0" in problems[0].reason


def test_results_are_cached_per_file_and_a_changed_file_is_decoded_again(tmp_path, monkeypatch):
    for i in range(6):
        _good_png(tmp_path / f"{i}.png")
    records = [_record(tmp_path, f"{i}.png") for i in range(6)]
    decoded = []
    real = validate.read_image
    monkeypatch.setattr(validate, "read_image", lambda path: decoded.append(path) or real(path))
    name = str(tmp_path / "manifest.csv")
    assert check_images(records, SIZE, cache_name=name, workers=2, progress=False) == []
    assert len(decoded) == 6
    decoded.clear()
    assert check_images(records, SIZE, cache_name=name, progress=False) == []
    assert decoded == [], "the second check decodes nothing"
    small = check_images(records, (128, 64), cache_name=name, progress=False)
    assert decoded == [] and len(small) == 6, "the input size is checked against the cached image size"
    (tmp_path / "3.png").write_text("now text")
    problems = check_images(records, SIZE, cache_name=name, progress=False)
    assert decoded == [str(tmp_path / "3.png")] and [p.index for p in problems] == [3]
    check_images(records, SIZE, cache_name=name, progress=False, recheck=True)
    assert len(decoded) == 7


def test_data_check_decodes_every_image_and_exits_1_on_problems(tmp_path, capsys):
    good = [_record(tmp_path, f"g{i}.png", laterality=side) for i, side in enumerate("LR")]
    good = [replace(r, patient_id="p", image_id=r.image_id) for r in good]
    for record in good:
        _good_png(tmp_path / record.image_id)
    write_manifest(good, tmp_path / "ok.csv")
    assert main(["data", "check", str(tmp_path / "ok.csv"), "--image_size", "64", "32"]) == 0
    out = capsys.readouterr().out
    assert "2 images checked, 0 manifest problem(s), 0 file problem(s)" in out

    _truncated_png(tmp_path / "bad.png")
    (tmp_path / "text.png").write_text("hello")
    records = good + [_record(tmp_path, "bad.png"), _record(tmp_path, "text.png"), _record(tmp_path, "gone.png")]
    write_manifest(records, tmp_path / "bad.csv")
    assert main(["data", "check", str(tmp_path / "bad.csv"), "--image_size", "64", "32", "--workers", "2"]) == 1
    out = capsys.readouterr().out
    assert f"bad.csv row 4: {tmp_path / 'bad.png'}: OpenCV could not decode the file" in out
    assert f"bad.csv row 5: {tmp_path / 'text.png'}" in out and f"bad.csv row 6: {tmp_path / 'gone.png'}" in out
    assert "3 file problem(s) in 3 image(s)" in out
    assert main(["data", "check", str(tmp_path / "ok.csv")]) == 1, "80×40 images are below the default 128×64"
    assert "smaller than the model input 128×64" in capsys.readouterr().out
