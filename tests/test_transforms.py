"""Paired augmentation: one geometric draw for every image, mask and box; intensity jitter per side."""

import numpy as np
import pytest

from bilatcf.data.transforms import PairedAugment, transform_boxes
from bilatcf.errors import ConfigError, DataError

H, W = 64, 32
STRONG = PairedAugment(hflip=0.5, vflip=0.5, max_rotate=25.0, max_scale=0.2, max_translate=0.1)


def _texture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.1, 0.5, (H, W)).astype(np.float32)


def _sample(lesion=(slice(24, 38), slice(8, 20))) -> dict:
    """Healthy texture, a bright lesion blended into the target, its mask and box, and a different reference."""
    healthy = _texture(0)
    mask = np.zeros((H, W), np.float32)
    mask[lesion] = 1.0
    target = np.where(mask > 0, 0.95, healthy).astype(np.float32)
    box = [lesion[1].start, lesion[0].start, lesion[1].stop, lesion[0].stop]
    return {
        "target": target,
        "reference": _texture(1),
        "target_mask": mask,
        "healthy": healthy,
        "target_other": None,
        "reference_other": None,
        "boxes": [box],
        "label": 1,
    }


def test_all_strengths_zero_is_the_identity():
    sample = _sample()
    sample["target_other"], sample["reference_other"] = _texture(2), _texture(3)
    out = PairedAugment(vflip=0.0, max_rotate=0.0, max_scale=0.0, max_translate=0.0)(sample, np.random.default_rng(0))
    for key, value in sample.items():
        assert np.array_equal(out[key], value), key


def test_flips_are_exact_and_boxes_use_edge_coordinates():
    sample = _sample()
    vertical = PairedAugment(vflip=1.0, max_rotate=0.0, max_scale=0.0, max_translate=0.0)(
        sample, np.random.default_rng(0)
    )
    assert np.array_equal(vertical["target"], sample["target"][::-1])
    assert np.array_equal(vertical["target_mask"], sample["target_mask"][::-1])
    assert vertical["boxes"] == [[8.0, H - 38.0, 20.0, H - 24.0]]
    horizontal = PairedAugment(hflip=1.0, vflip=0.0, max_rotate=0.0, max_scale=0.0, max_translate=0.0)(
        sample, np.random.default_rng(0)
    )
    assert np.array_equal(horizontal["reference"], sample["reference"][:, ::-1])
    assert horizontal["boxes"] == [[W - 20.0, 24.0, W - 8.0, 38.0]]


@pytest.mark.parametrize("seed", range(6))
def test_mask_and_boxes_follow_the_lesion(seed):
    out = STRONG(_sample(), np.random.default_rng(seed))
    mask = out["target_mask"]
    assert set(np.unique(mask)) <= {0.0, 1.0} and mask.sum() > 0
    bright = out["target"] > (0.95 + 0.5) / 2  # brighter than any healthy pixel: lesion (bilinear blur at the rim)
    disagree = (bright != (mask > 0)).sum()
    assert disagree <= 0.15 * mask.sum(), f"mask and image disagree on {disagree} of {mask.sum()} pixels"
    ((x0, y0, x1, y1),) = out["boxes"]
    rows, cols = np.nonzero(mask)
    assert x0 <= cols.min() + 0.5 and cols.max() + 0.5 <= x1 and y0 <= rows.min() + 0.5 and rows.max() + 0.5 <= y1
    assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H


@pytest.mark.parametrize("seed", range(4))
def test_target_reference_and_others_share_the_geometry(seed):
    sample = _sample()
    sample["reference"] = sample["target"].copy()
    sample["target_other"], sample["reference_other"] = sample["target"].copy(), sample["target"].copy()
    out = STRONG(sample, np.random.default_rng(seed))
    assert not np.array_equal(out["target"], sample["target"])
    for key in ("reference", "target_other", "reference_other"):
        assert np.array_equal(out[key], out["target"]), key


def test_intensity_is_drawn_per_side_and_shared_by_healthy_and_target():
    augment = PairedAugment(vflip=0.5, max_rotate=15.0, max_scale=0.1, max_translate=0.05, intensity=0.3)
    sample = _sample()
    sample["reference"] = sample["target"].copy()
    sample["target_other"], sample["reference_other"] = sample["target"].copy(), sample["target"].copy()
    out = augment(sample, np.random.default_rng(7))
    assert not np.allclose(out["reference"], out["target"])  # the two breasts get different exposure jitter
    assert np.array_equal(out["target_other"], out["target"]) and np.array_equal(
        out["reference_other"], out["reference"]
    )
    lesion_reach = np.zeros((H, W), bool)  # bilinear samples reach one pixel beyond the warped mask
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            lesion_reach |= np.roll(out["target_mask"] > 0, (dy, dx), axis=(0, 1))
    assert np.array_equal(out["healthy"][~lesion_reach], out["target"][~lesion_reach])
    assert set(np.unique(out["target_mask"])) <= {0.0, 1.0}  # the mask is never jittered
    for key in ("target", "reference", "healthy"):
        assert out[key].dtype == np.float32 and out[key].min() >= 0.0 and out[key].max() <= 1.0


def test_intensity_keeps_values_in_range_and_background_at_zero():
    image = np.linspace(0.0, 1.0, H * W, dtype=np.float32).reshape(H, W)
    augment = PairedAugment(vflip=0.0, max_rotate=0.0, max_scale=0.0, max_translate=0.0, intensity=1.0)
    for seed in range(10):
        out = augment({"target": image, "reference": image}, np.random.default_rng(seed))
        for key in ("target", "reference"):
            assert out[key][0, 0] == 0.0 and 0.0 <= out[key].min() and out[key].max() <= 1.0


def test_the_draw_does_not_depend_on_which_keys_are_present():
    full = _sample()
    partial = {"target": full["target"], "reference": full["reference"]}
    augment = PairedAugment(vflip=0.5, max_rotate=20.0, intensity=0.2)
    a = augment(full, np.random.default_rng(11))
    b = augment(partial, np.random.default_rng(11))
    assert np.array_equal(a["target"], b["target"]) and np.array_equal(a["reference"], b["reference"])


def test_input_sample_is_not_modified():
    sample = _sample()
    before = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in sample.items()}
    STRONG(sample, np.random.default_rng(0))
    assert all(np.array_equal(sample[k], before[k]) for k in ("target", "reference", "target_mask", "healthy"))
    assert sample["boxes"] == before["boxes"]


def test_transform_boxes_clips_and_drops_boxes_that_leave_the_image():
    shift_left = np.array([[1.0, 0.0, -10.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    boxes = [[2.0, 2.0, 8.0, 6.0], [5.0, 1.0, 15.0, 3.0], [20.0, 4.0, 30.0, 9.0]]
    assert transform_boxes(boxes, shift_left, H, W) == [[0.0, 1.0, 5.0, 3.0], [10.0, 4.0, 20.0, 9.0]]


def test_images_of_different_sizes_are_rejected():
    sample = _sample()
    sample["reference"] = np.zeros((H, W + 1), np.float32)
    with pytest.raises(DataError, match="'reference' has shape"):
        STRONG(sample, np.random.default_rng(0))


@pytest.mark.parametrize(
    "kwargs", [{"vflip": 1.5}, {"hflip": -0.1}, {"max_rotate": -1.0}, {"max_scale": 1.0}, {"intensity": -0.5}]
)
def test_bad_strengths_raise_config_errors(kwargs):
    with pytest.raises(ConfigError):
        PairedAugment(**kwargs)
