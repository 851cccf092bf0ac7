"""Paired augmentation: one random draw applied to every image of a bilateral sample (MONAI-style dictionary transform).

Target, reference, the lesion mask, the ground-truth healthy image and the four-view extras all receive the *same*
geometric transform, so the pair stays registered (the bilateral prior compares the two breasts position by position)
and the mask and boxes stay on the lesion. Intensity jitter is drawn per breast: the two sides of a real pair differ in
exposure, while the healthy image, the target's counterfactual, must get exactly the target's jitter.

Coordinates are continuous pixel-edge coordinates: pixel ``i`` covers ``[i, i + 1)``, so a box ``[x0, y0, x1, y1]``
encloses the pixels ``x0 <= x < x1`` and a horizontal flip maps ``x`` to ``W - x``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from bilatcf.errors import ConfigError, DataError

SIDE_OF_IMAGE = {"target": 0, "healthy": 0, "target_other": 0, "reference": 1, "reference_other": 1}
MASK_KEYS = ("target_mask",)
_EDGE_TO_INDEX = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])  # pixel centres sit at integers in cv2
_INDEX_TO_EDGE = np.linalg.inv(_EDGE_TO_INDEX)


@dataclass
class PairedAugment:
    """Random flip + affine + per-side intensity jitter, shared across a sample's images.

    Attributes:
        hflip: probability of a horizontal flip. Off by default: breasts are oriented with the chest wall on the left,
            and flipping would move it to the right, a layout no test image has.
        vflip: probability of a vertical flip (anatomically harmless: a breast flipped top-bottom is still a breast).
        max_rotate: rotation drawn uniformly in ``[-max_rotate, max_rotate]`` degrees.
        max_scale: zoom factor drawn uniformly in ``[1 - max_scale, 1 + max_scale]``.
        max_translate: shift drawn uniformly in ``[-max_translate, max_translate]`` times the image width / height.
        intensity: per-side jitter strength ``s``: ``x -> clip(gain * x ** gamma, 0, 1)`` with ``gamma`` and ``gain``
            drawn as ``exp(U(-s, s))``; zero keeps the background at zero. 0 = off.
    """

    hflip: float = 0.0
    vflip: float = 0.5
    max_rotate: float = 10.0
    max_scale: float = 0.1
    max_translate: float = 0.05
    intensity: float = 0.0

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(
                    f"PairedAugment.{name}={getattr(self, name)!r} is a probability: use a value in [0, 1]."
                )
        for name in ("max_rotate", "max_translate", "intensity"):
            if getattr(self, name) < 0:
                raise ConfigError(f"PairedAugment.{name}={getattr(self, name)!r} must be >= 0 (0 turns it off).")
        if not 0.0 <= self.max_scale < 1.0:
            raise ConfigError(f"PairedAugment.max_scale={self.max_scale!r} must be in [0, 1) (0 turns zoom off).")

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Augment a sample dict; returns a new dict (keys other than images, masks and ``boxes`` pass through).

        The number of random numbers drawn does not depend on the strengths or on which keys are present, so a seed
        gives the same geometry whether or not, e.g., a healthy image is available.
        """
        height, width = sample["target"].shape
        matrix = self._draw_geometry(height, width, rng)
        jitters = [self._draw_intensity(rng) for _ in range(2)]
        out = dict(sample)
        for key, side in SIDE_OF_IMAGE.items():
            if sample.get(key) is not None:
                image = _warp(_same_shape(sample[key], key, (height, width)), matrix, cv2.INTER_LINEAR)
                out[key] = _jitter(image.astype(np.float32), *jitters[side])
        for key in MASK_KEYS:
            if sample.get(key) is not None:
                out[key] = _warp(_same_shape(sample[key], key, (height, width)), matrix, cv2.INTER_NEAREST)
        if sample.get("boxes") is not None:
            out["boxes"] = transform_boxes(sample["boxes"], matrix, height, width)
        return out

    def _draw_geometry(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        """A 3x3 matrix in pixel-edge coordinates: flips, then rotation and zoom about the centre, then a shift."""
        flip_x = rng.random() < self.hflip
        flip_y = rng.random() < self.vflip
        angle = math.radians(rng.uniform(-self.max_rotate, self.max_rotate))
        zoom = 1.0 + rng.uniform(-self.max_scale, self.max_scale)
        shift = rng.uniform(-self.max_translate, self.max_translate, size=2) * (width, height)
        flip = np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0, 1.0])
        flip[:2, 2] = (width if flip_x else 0.0, height if flip_y else 0.0)
        centre = np.array([width / 2, height / 2])
        linear = zoom * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        affine = np.eye(3)
        affine[:2, :2] = linear
        affine[:2, 2] = centre + shift - linear @ centre
        return affine @ flip

    def _draw_intensity(self, rng: np.random.Generator) -> tuple[float, float]:
        gamma_draw, gain_draw = rng.uniform(-1.0, 1.0, size=2)
        return math.exp(self.intensity * gamma_draw), math.exp(self.intensity * gain_draw)


def transform_boxes(boxes: list[list[float]], matrix: np.ndarray, height: int, width: int) -> list[list[float]]:
    """Map boxes through a 3x3 edge-coordinate matrix: bounding box of the 4 moved corners, clipped to the image.

    Boxes that fall entirely outside the image are dropped.
    """
    moved = []
    for x0, y0, x1, y1 in boxes:
        corners = matrix @ np.array([[x0, x1, x0, x1], [y0, y0, y1, y1], [1.0, 1.0, 1.0, 1.0]])
        left, right = np.clip([corners[0].min(), corners[0].max()], 0.0, width)
        top, bottom = np.clip([corners[1].min(), corners[1].max()], 0.0, height)
        if right > left and bottom > top:
            moved.append([float(left), float(top), float(right), float(bottom)])
    return moved


def _same_shape(array: np.ndarray, key: str, shape: tuple[int, int]) -> np.ndarray:
    if array.shape != shape:
        raise DataError(
            f"sample '{key}' has shape {array.shape} but 'target' has {shape}; every image of a pair "
            "must be preprocessed to the same size before augmentation."
        )
    return array


def _warp(array: np.ndarray, matrix: np.ndarray, interpolation: int) -> np.ndarray:
    if np.array_equal(matrix, np.eye(3)):
        return array.copy()
    index_matrix = _EDGE_TO_INDEX @ matrix @ _INDEX_TO_EDGE
    height, width = array.shape
    return cv2.warpAffine(
        array, index_matrix[:2], (width, height), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def _jitter(image: np.ndarray, gamma: float, gain: float) -> np.ndarray:
    if gamma != 1.0 or gain != 1.0:
        image = gain * np.power(image, gamma, dtype=np.float32)
    return np.clip(image, 0.0, 1.0, out=image)
