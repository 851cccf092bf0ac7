"""Findings as pixels: lesion shapes (masses, calcifications, architectural distortion), placement and blending.

Distractors come from the very same appearance model as the lesions, so only their symmetry gives them away.
"""

from __future__ import annotations

import cv2
import numpy as np

from bilatcf.data.synthetic.config import ALPHA_CUTOFF
from bilatcf.data.synthetic.patient import _Finding


def _grid(extent: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets from the centre of a ``(2 * extent + 1)``-square patch."""
    offsets = np.arange(-extent, extent + 1, dtype=np.float32)
    return offsets[None, :], offsets[:, None]


def _spicules(
    rng: np.random.Generator, extent: int, count: int, inner: float, length: float, width: float
) -> np.ndarray:
    """Thin tapered lines radiating from a centre (spiculated margins, architectural distortion), in [0, 1]."""
    canvas = np.zeros((2 * extent + 1, 2 * extent + 1), np.uint8)
    for angle in rng.uniform(0.0, 2.0 * np.pi, count):
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        base = extent + direction * inner
        tip = base + direction * length * rng.uniform(0.5, 1.0) + normal * rng.normal(0.0, 0.1 * length)
        triangle = np.array([base + normal * width, base - normal * width, tip])
        cv2.fillConvexPoly(canvas, np.round(triangle * 16).astype(np.int32), 255, cv2.LINE_AA, 4)
    return canvas.astype(np.float32) / 255.0


def _mass(rng: np.random.Generator, finding: _Finding, height: int) -> np.ndarray:
    """A mass: lobulated outline and blurred margin growing with suspicion; spicules appear at high suspicion."""
    radius = finding.radius * height
    irregularity = float(np.clip(finding.suspicion + rng.normal(0.0, 0.15), 0.0, 1.0))
    spiculation = float(np.clip(2.0 * finding.suspicion - 0.9 + rng.normal(0.0, 0.2), 0.0, 1.0))
    count = round(spiculation * rng.uniform(6, 18))
    elongation = np.sqrt(rng.uniform(1.0, 1.6))
    spicule_length = radius * rng.uniform(0.6, 1.5) if count else 0.0
    extent = int(np.ceil(radius * elongation * (1.0 + 0.6 * irregularity) + spicule_length + 2))
    x, y = _grid(extent)
    angle = rng.uniform(0.0, np.pi)
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    rho = np.sqrt((u / (radius * elongation)) ** 2 + (v * elongation / radius) ** 2)
    phi = np.arctan2(v, u)
    boundary = np.ones_like(rho)
    for k in range(2, 7):
        boundary += irregularity * 0.25 / np.sqrt(k - 1) * rng.normal() * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    margin = 0.02 + 0.12 * irregularity
    peak = rng.uniform(0.75, 1.0)
    alpha = peak / (1.0 + np.exp(-(np.maximum(boundary, 0.3) - rho) / margin))
    if count:
        spikes = _spicules(rng, extent, count, 0.7 * radius, spicule_length, max(0.7, 0.1 * radius))
        alpha = np.maximum(alpha, 0.6 * peak * spikes)
    return alpha.astype(np.float32)


def _calcifications(rng: np.random.Generator, finding: _Finding, height: int) -> np.ndarray:
    """Calcifications: few, coarse, scattered when benign-looking; many, fine, pleomorphic, clustered when not."""
    s = finding.suspicion
    spread = finding.radius * height * (1.8 - 1.2 * s) * rng.uniform(0.8, 1.2)
    count = int(np.clip(round(4 + 10 * s + rng.normal(0.0, 2.0)), 3, 25))
    sigma = np.maximum(0.5, height * (0.007 - 0.004 * s) * rng.uniform(0.7, 1.3, count))
    elongation = 1.0 + 2.0 * s * rng.uniform(0.0, 1.0, count)  # pleomorphic: elongated, varied specks
    offsets = np.clip(rng.normal(0.0, 0.5 * spread, (count, 2)), -spread, spread)
    offsets[0] = 0.0  # one speck at the centre, where the placement guarantees room
    extent = int(np.ceil(spread + 3.0 * float((sigma * elongation).max()) + 1))
    x, y = _grid(extent)
    angles = rng.uniform(0.0, np.pi, count)
    alpha = np.zeros_like(x * y)
    for (dx, dy), s_i, e_i, a_i, peak in zip(offsets, sigma, elongation, angles, rng.uniform(0.7, 1.0, count)):
        u = (x - dx) * np.cos(a_i) + (y - dy) * np.sin(a_i)
        v = -(x - dx) * np.sin(a_i) + (y - dy) * np.cos(a_i)
        alpha = np.maximum(alpha, peak * np.exp(-0.5 * ((u / (s_i * e_i)) ** 2 + (v / s_i) ** 2)))
    return alpha.astype(np.float32)


def _distortion(rng: np.random.Generator, finding: _Finding, height: int) -> np.ndarray:
    """Architectural distortion: straight lines radiating from a point, with little or no central density."""
    radius = 1.3 * finding.radius * height
    extent = int(np.ceil(radius * 1.2 + 2))
    lines = _spicules(rng, extent, int(rng.integers(8, 17)), 0.0, radius, max(0.7, 0.06 * radius))
    x, y = _grid(extent)
    centre = 0.4 * np.exp(-(x**2 + y**2) / (2.0 * (0.2 * radius) ** 2))
    return (np.maximum(0.55 * lines, centre)).astype(np.float32)


def _shape(rng: np.random.Generator, finding: _Finding, height: int) -> np.ndarray:
    """The alpha patch of a finding (odd square, centred), with blend weights below the cutoff already zeroed."""
    if finding.kind.endswith("mass"):
        alpha = _mass(rng, finding, height)
    elif finding.kind.endswith("calcification"):
        alpha = _calcifications(rng, finding, height)
    else:
        alpha = _distortion(rng, finding, height)
    alpha[alpha < ALPHA_CUTOFF] = 0.0
    return alpha


def _support_radius(alpha: np.ndarray) -> float:
    """Largest distance from the patch centre to a pixel of the support: the room a placement must leave."""
    extent = alpha.shape[0] // 2
    rows, cols = np.nonzero(alpha)
    return float(np.sqrt(((rows - extent) ** 2 + (cols - extent) ** 2).max()))


def _place(rng: np.random.Generator, allowed: np.ndarray, room: float) -> tuple[int, int]:
    """A random pixel at least ``room`` away from every disallowed pixel and from the image border.

    Falls back to the roomiest pixel when none is that far (tiny images).
    """
    allowed = allowed.astype(np.uint8)
    allowed[[0, -1], :] = 0
    allowed[:, [0, -1]] = 0
    distance = cv2.distanceTransform(allowed, cv2.DIST_L2, 3)
    candidates = np.flatnonzero(distance > room + 1.0)
    flat = int(rng.choice(candidates)) if candidates.size else int(distance.argmax())
    return divmod(flat, allowed.shape[1])


def _blend(
    image: np.ndarray,
    weight: np.ndarray,
    alpha: np.ndarray,
    centre: tuple[int, int],
    contrast: float,
) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Alpha-blend a patch into ``image`` in place; ``weight`` (the breast mask) keeps it inside the breast.

    Returns the blend weights actually used (cut below :data:`ALPHA_CUTOFF`) and the image region they cover.
    """
    extent = alpha.shape[0] // 2
    row, col = centre
    top, left = max(row - extent, 0), max(col - extent, 0)
    bottom, right = min(row + extent + 1, image.shape[0]), min(col + extent + 1, image.shape[1])
    region = (slice(top, bottom), slice(left, right))
    patch = (
        alpha[top - row + extent : bottom - row + extent, left - col + extent : right - col + extent] * weight[region]
    )
    patch[patch < ALPHA_CUTOFF] = 0.0
    image[region] += patch * np.minimum(contrast, 1.0 - image[region])
    return patch, region


def _dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a binary mask by a margin so placed structures keep a visible gap."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def _add_distractors(rng: np.random.Generator, canonical: np.ndarray, distractors: tuple[_Finding, ...]) -> np.ndarray:
    """Blend the distractors into the shared (pre-warp) anatomy, so both sides get them at the same canonical position.

    Returns the anatomy with a 4th channel: the distractor blend weights, warped with the image to give each side's
    mask.
    """
    height = canonical.shape[0]
    intensity, breast, pectoral = (np.ascontiguousarray(canonical[..., c]) for c in range(3))
    weights = np.zeros_like(intensity)
    for finding in distractors:
        alpha = _shape(rng, finding, height)
        allowed = (breast > 0.99) & (pectoral < 0.01) & ~_dilate(weights > 0, max(2, height // 64))
        patch, region = _blend(intensity, breast, alpha, _place(rng, allowed, _support_radius(alpha)), finding.contrast)
        weights[region] = np.maximum(weights[region], patch)
    return np.dstack([intensity, breast, pectoral, weights])
