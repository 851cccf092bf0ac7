"""How each side departs from the shared anatomy: a mild elastic warp always, positioning and compression with
``misalignment``; the maps are composed, so a side's pixels are interpolated once."""

from __future__ import annotations

import cv2
import numpy as np


def _warp_maps(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Sampling maps of one side's mild warp: a smooth random elastic field plus a slight scale and shift.

    Why: real left and right breasts are similar but never mirror images; a bilateral model must compare structures,
    not subtract pixels.
    """
    grid = rng.normal(0.0, 0.012 * height, (2, 4, 3)).astype(np.float32)
    dx = cv2.resize(grid[0], (width, height), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(grid[1], (width, height), interpolation=cv2.INTER_CUBIC)
    scale = rng.uniform(0.96, 1.04)
    shift_x, shift_y = rng.uniform(-0.01, 0.02) * width, rng.uniform(-0.025, 0.025) * height
    cols = np.arange(width, dtype=np.float32)[None, :]
    rows = np.arange(height, dtype=np.float32)[:, None]
    map_x = (cols - shift_x) / scale + dx
    map_y = height / 2 + (rows - height / 2 - shift_y) / scale + dy
    return map_x.astype(np.float32), map_y.astype(np.float32)


def _misalign(
    rng: np.random.Generator, canonical: np.ndarray, misalignment: float, map_x: np.ndarray, map_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Compose ``(map_x, map_y)`` with a positioning and compression difference of size ``misalignment``.

    The side is ``canonical`` seen through tissue displacement (inside the breast, fading to 0 at the skin line, so
    the outline stays), then a rotation about the middle of the chest wall, a scale and a vertical shift. The maps are
    composed analytically rather than remapping twice, so the side's pixels are interpolated once, as at 0.
    """
    height, width = canonical.shape[:2]
    angle = np.deg2rad(20.0 * misalignment * rng.uniform(-1.0, 1.0))
    scale = 1.0 + 0.5 * misalignment * rng.uniform(-1.0, 1.0)
    shift_y = 0.5 * misalignment * height * rng.uniform(-1.0, 1.0)
    grid = rng.normal(0.0, 0.25 * misalignment * height, (2, 4, 3)).astype(np.float32)
    inside = np.ascontiguousarray((canonical[..., 1] > 0.5).astype(np.uint8))
    # A long ramp from the skin keeps the field's gradient small: tissue shifts as a whole, it is not sheared.
    fade = np.clip(cv2.distanceTransform(inside, cv2.DIST_L2, 3) / (0.5 * width), 0.0, 1.0)
    displacement = [cv2.resize(g, (width, height), interpolation=cv2.INTER_CUBIC) * fade for g in grid]
    # Inverse rigid motion: from this side's pixel back to the canonical frame (pivot: chest wall, mid-height).
    y = (map_y - height / 2 - shift_y) / scale
    x = map_x / scale
    cos, sin = np.cos(angle), np.sin(angle)
    rigid_x = (cos * x + sin * y).astype(np.float32)
    rigid_y = (height / 2 - sin * x + cos * y).astype(np.float32)
    dx, dy = (
        cv2.remap(d.astype(np.float32), rigid_x, rigid_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for d in displacement
    )
    return rigid_x + dx, rigid_y + dy


def _padded(canonical: np.ndarray, pad: int) -> np.ndarray:
    """``canonical`` with a ``pad``-pixel border: tissue reflected across the chest wall (left) and across the top
    edge when the breast reaches it (the MLO axilla), background (0) elsewhere, so a large motion never mirrors an
    outline back into the breast."""
    padded = cv2.copyMakeBorder(canonical, 0, 0, pad, 0, cv2.BORDER_REFLECT_101)
    top = cv2.BORDER_REFLECT_101 if canonical[0, :, 1].max() > 0.5 else cv2.BORDER_CONSTANT
    padded = cv2.copyMakeBorder(padded, pad, 0, 0, 0, top, value=0)
    return cv2.copyMakeBorder(padded, 0, pad, 0, pad, cv2.BORDER_CONSTANT, value=0)


def _warp(
    rng: np.random.Generator, canonical: np.ndarray, misalignment: float, position_rng: np.random.Generator
) -> np.ndarray:
    """One side's version of the shared anatomy: the mild warp, plus ``misalignment`` (drawn from ``position_rng``)."""
    height, width = canonical.shape[:2]
    map_x, map_y = _warp_maps(rng, height, width)
    if misalignment == 0.0:
        # Reflection continues the tissue across the chest wall and the top edge; a replicated border smears the edge
        # column into horizontal streaks wherever the warp samples left of the chest wall.
        return cv2.remap(canonical, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    map_x, map_y = _misalign(position_rng, canonical, misalignment, map_x, map_y)
    pad = int(np.ceil(0.4 * height))
    return cv2.remap(
        _padded(canonical, pad),
        map_x + pad,
        map_y + pad,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
