"""Unilateral toy presets with known disease maps, for explanation methods (CX-GAN, VA-GAN, AnoGAN, CAM / Grad-CAM).

* ``vagan`` — Baumgartner et al. 2018 (VA-GAN): 112×112 smooth noise; class 1 adds +100 to a central 20×20 box
  (rows/cols 46–65) and to a second 20×20 box 32 px towards the bottom-right (subtype A) or top-left (subtype B),
  jittered by an integer in [−5, 4] per axis. Stratified 64/16/20 train/val/test split.
* ``cxgan`` — the synthetic data of CX-GAN's Table 1: 128×128 smooth noise; class 1 adds a disc of radius 8 centred at
  (104, 104) (subtype A) or (24, 24) (subtype B), offset by up to ±5 px, effect 500. The paper's stratified 80/20
  train/test split; a fifth of the training images (stratified, seeded) is then set aside for validation, so model
  selection never sees a test image: 64/16/20 in all, with the paper's test images.

The background is N(0, 50) per pixel, Gaussian-blurred with σ = 2.5 and rescaled to standard deviation 50; every image
is min–max normalised to [−1, 1]. Half of the images are class 0 (noise only). Everything is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bilatcf.errors import ConfigError

PRESETS = ("vagan", "cxgan")


@dataclass
class ToyDataset:
    """Images [N, H, W] float32 in [−1, 1], labels [N], GT disease masks [N, H, W] uint8, subtypes [N] (0 none, 1 A, 2
    B),
    splits [N] ("train" / "val" / "test")."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    subtypes: np.ndarray
    splits: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def _background(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    noise = rng.normal(0.0, 50.0, size=(count, size, size)).astype(np.float32)
    blurred = np.stack([cv2.GaussianBlur(n, (0, 0), sigmaX=2.5, borderType=cv2.BORDER_REFLECT) for n in noise])
    return blurred * (50.0 / blurred.std(axis=(1, 2), keepdims=True))


def _vagan_effect(rng: np.random.Generator, subtype: int) -> np.ndarray:
    mask = np.zeros((112, 112), dtype=np.uint8)
    mask[46:66, 46:66] = 1
    direction = 1 if subtype == 1 else -1
    dy, dx = rng.integers(-5, 5, size=2)  # an integer in [-5, 4] per axis
    top, left = 46 + direction * 32 + int(dy), 46 + direction * 32 + int(dx)
    mask[max(top, 0) : top + 20, max(left, 0) : left + 20] = 1
    return mask


def _cxgan_effect(rng: np.random.Generator, subtype: int) -> np.ndarray:
    centre = 104 if subtype == 1 else 24
    dy, dx = rng.integers(-5, 6, size=2)
    y, x = np.mgrid[:128, :128]
    return (((y - centre - dy) ** 2 + (x - centre - dx) ** 2) <= 8**2).astype(np.uint8)


def _stratified_splits(rng: np.random.Generator, labels: np.ndarray, fractions: dict[str, float]) -> np.ndarray:
    splits = np.empty(len(labels), dtype=object)
    for label in np.unique(labels):
        indices = rng.permutation(np.flatnonzero(labels == label))
        start = 0
        for i, (name, fraction) in enumerate(fractions.items()):
            stop = len(indices) if i == len(fractions) - 1 else start + round(fraction * len(indices))
            splits[indices[start:stop]] = name
            start = stop
    return splits.astype(str)


def make_toy(preset: str, num_images: int | None = None, seed: int = 0) -> ToyDataset:
    """Generate a toy preset (``vagan`` or ``cxgan``); ``num_images`` defaults to the papers' 10 000."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown toy preset {preset!r}; valid presets: {', '.join(PRESETS)}.")
    count = 10_000 if num_images is None else int(num_images)
    if count < 2:
        raise ConfigError(f"num_images = {count}: a toy preset needs at least 2 images (one per class).")
    rng = np.random.default_rng([seed, PRESETS.index(preset)])
    size, effect, make_mask = (112, 100.0, _vagan_effect) if preset == "vagan" else (128, 500.0, _cxgan_effect)
    labels = np.zeros(count, dtype=np.int64)
    labels[rng.permutation(count)[: count // 2]] = 1
    subtypes = np.where(labels == 1, rng.integers(1, 3, size=count), 0).astype(np.int64)
    images = _background(rng, count, size)
    masks = np.zeros((count, size, size), dtype=np.uint8)
    for i in np.flatnonzero(labels):
        masks[i] = make_mask(rng, int(subtypes[i]))
    images += effect * masks
    low, high = images.min(axis=(1, 2), keepdims=True), images.max(axis=(1, 2), keepdims=True)
    images = (2.0 * (images - low) / (high - low) - 1.0).astype(np.float32)
    if preset == "vagan":
        splits = _stratified_splits(rng, labels, {"train": 0.64, "val": 0.16, "test": 0.20})
    else:
        splits = carve_validation(rng, labels, _stratified_splits(rng, labels, {"train": 0.8, "test": 0.2}))
    return ToyDataset(images, labels, masks, subtypes, splits)


def carve_validation(
    rng: np.random.Generator, labels: np.ndarray, splits: np.ndarray, fraction: float = 0.2
) -> np.ndarray:
    """``splits`` with ``fraction`` of each class's training images moved to ``val`` (seeded by ``rng``); the test
    images are untouched. For presets whose paper has a train/test split only."""
    carved = splits.astype(object)
    training = np.flatnonzero(splits == "train")
    carved[training] = _stratified_splits(rng, labels[training], {"train": 1 - fraction, "val": fraction})
    return carved.astype(str)
