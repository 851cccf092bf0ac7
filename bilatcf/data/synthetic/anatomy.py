"""One view of a breast before any side-specific warp: outline, parenchymal texture, ducts and pectoral muscle."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from bilatcf.data.synthetic.patient import _Patient


@lru_cache(maxsize=8)
def _spectral_filter(size: tuple[int, int], beta: float) -> np.ndarray:
    """Amplitude filter |f|^(-beta/2) (power ~ 1/f^beta), with a low-frequency knee: no blob fills the image."""
    fy = np.fft.fftfreq(size[0])[:, None]
    fx = np.fft.rfftfreq(size[1])[None, :]
    knee = 2.0 / size[0]
    return ((fy**2 + fx**2 + knee**2) ** (-beta / 4.0)).astype(np.float32)


def _power_law_noise(rng: np.random.Generator, size: tuple[int, int], beta: float = 3.0) -> np.ndarray:
    """Parenchymal texture: 1/f^beta noise (mammographic tissue has beta close to 3), zero mean and unit std."""
    spectrum = np.fft.rfft2(rng.standard_normal(size, dtype=np.float32)) * _spectral_filter(size, beta)
    noise = np.fft.irfft2(spectrum, s=size).astype(np.float32)
    return (noise - noise.mean()) / (noise.std() + 1e-8)


def _outline(rng: np.random.Generator, patient: _Patient, view: str, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Skin line as the breast's extent from the chest wall per row, ``[H, 1]``, and the nipple row.

    CC: a half super-ellipse with a slightly different curvature above and below the nipple. MLO: taller, lower, and
    joined to a ramp that reaches the top edge (the axillary tail, where the pectoral muscle lies).
    """
    height, width = size
    rows = np.arange(height, dtype=np.float32)[:, None]
    depth = patient.depth * width * rng.uniform(0.95, 1.05)
    half = patient.half_height * height * (1.2 if view == "MLO" else 1.0)
    centre = height * rng.uniform(0.56, 0.62) if view == "MLO" else height * rng.uniform(0.46, 0.54)
    upper, lower = half * rng.uniform(0.9, 1.1), half * rng.uniform(0.9, 1.1)
    exponent = rng.uniform(2.0, 2.6)
    t = np.abs(rows - centre) / np.where(rows < centre, upper, lower)
    edge = depth * np.clip(1.0 - t**exponent, 0.0, 1.0) ** (1.0 / exponent)
    if view == "MLO":
        ramp = width * rng.uniform(0.4, 0.55) * np.clip(1.0 - rows / centre, 0.0, 1.0) ** 0.8
        softness = 0.05 * width
        edge = 0.5 * (edge + ramp + np.sqrt((edge - ramp) ** 2 + softness**2)) - 0.5 * softness
    return edge.astype(np.float32), float(centre)


def _ducts(rng: np.random.Generator, size: tuple[int, int], nipple: tuple[float, float], half: float) -> np.ndarray:
    """Ducts and trabecular strands: curved lines fanning out from the nipple towards the chest wall, softly blurred."""
    height, _ = size
    canvas = np.zeros(size, np.uint8)
    nipple_x, nipple_y = nipple
    t = np.linspace(0.0, 1.0, 10, dtype=np.float32)[:, None]
    lines = []
    for _ in range(int(rng.integers(8, 16))):
        end = np.array([nipple_x * rng.uniform(0.05, 0.6), nipple_y + rng.uniform(-0.9, 0.9) * half])
        start = np.array([nipple_x - 1.0, nipple_y])
        bend = (start + end) / 2 + rng.normal(0.0, 0.08 * half, 2)
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end  # quadratic Bezier
        lines.append(np.round(curve * 16).astype(np.int32))
    cv2.polylines(canvas, lines, False, 255, max(1, round(height / 256)), cv2.LINE_AA, 4)
    return cv2.GaussianBlur(canvas.astype(np.float32) / 255.0, (0, 0), 0.6 * max(1.0, height / 256))


def _anatomy(rng: np.random.Generator, patient: _Patient, view: str, size: tuple[int, int]) -> np.ndarray:
    """One view of a patient in canonical orientation, before any side-specific warp: ``[H, W, 3]`` float32.

    Channels: intensity in [0, 1] (0 outside the breast), breast mask (soft edge) and pectoral muscle mask.
    """
    height, width = size
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    edge, centre = _outline(rng, patient, view, size)
    inside = edge - cols
    breast = np.clip(inside / 1.5 + 0.5, 0.0, 1.0)
    nipple_x = float(edge.max())
    thickness = np.clip(inside / (0.2 * nipple_x), 0.0, 1.0) ** 0.5  # compressed thickness rolls off at the skin
    half = patient.half_height * height
    u = cols / nipple_x  # 0 at the chest wall, 1 at the nipple
    gland = np.exp(-(((rows - centre) / (half * (0.35 + 0.55 * (1.0 - u)))) ** 2)) * np.clip((1.05 - u) / 0.25, 0, 1)
    texture = _power_law_noise(rng, size)
    threshold = (2.6, 1.9, 1.2, 0.5)[patient.density]
    dense = 1.0 / (1.0 + np.exp(-(texture + 2.0 * gland - threshold) / 0.35))
    # Glandular tissue stays well below 1, leaving headroom for lesions: a mass is denser than the tissue around it.
    fat, fibroglandular = rng.uniform(0.26, 0.34), rng.uniform(0.50, 0.58)
    tissue = fat + (fibroglandular - fat) * dense + 0.025 * texture
    tissue = tissue + 0.09 * _ducts(rng, size, (nipple_x, centre), half) * np.clip(u * 1.5, 0.0, 1.0)
    skin = 0.12
    intensity = breast * (skin + (tissue - skin) * thickness)
    pectoral = np.zeros(size, np.float32)
    if view == "MLO":
        pectoral = _pectoral(rng, size, edge, centre)
        level = rng.uniform(0.74, 0.84) + 0.03 * texture - 0.05 * cols / width
        intensity = intensity + pectoral * breast * (level - intensity)
    return np.dstack([np.clip(intensity, 0.0, 1.0), breast, pectoral]).astype(np.float32)


def _pectoral(rng: np.random.Generator, size: tuple[int, int], edge: np.ndarray, centre: float) -> np.ndarray:
    """The pectoral muscle of an MLO view: a triangle in the upper chest-wall corner with a slightly convex border."""
    height, width = size
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    top_width = min(width * rng.uniform(0.22, 0.38), 0.85 * float(edge[0, 0]))
    length = centre * rng.uniform(0.5, 0.8)
    exponent = rng.uniform(1.1, 1.5)
    q = (cols / top_width) ** exponent + (rows / length) ** exponent
    return np.clip((1.0 - q) * min(top_width, length) / (2.0 * exponent) + 0.5, 0.0, 1.0).astype(np.float32)
