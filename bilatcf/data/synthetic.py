"""The embedded synthetic bilateral mammogram dataset (DESIGN §3): procedural, seeded, with the true healthy image.

Why it exists: real bilateral datasets are small, licensed, and never contain the one thing a counterfactual method
should be judged on, the image as it would look without the lesion. Here every patient has one latent anatomy (outline,
density, parenchymal texture) shared by the left and right breast; each side is warped independently, so the two are
roughly but not pixel-wise symmetric. Lesions go into one side only (rarely both, never at mirrored positions), and in a
fraction of patients *symmetric distractors*, drawn from the very same appearance model as the lesions, sit at mirrored
positions on both sides. A single-view model cannot tell a distractor from a lesion; a model that compares the two sides
can. That is the bilateral prior the methods of this library claim to exploit, made measurable.

Conventions:

* Every image is in the canonical orientation "breast on the left" (chest wall at the left edge, nipple to the right).
  Right breasts are stored already mirrored, so a target and its reference face the same way without any flip.
* Image ``i`` is ``(patient * len(views) + view) * 2 + side`` with side 0 = L, 1 = R.
* Lesions are alpha-blended, ``image = healthy + alpha * min(contrast, 1 - healthy)``, and blend weights below
  :data:`ALPHA_CUTOFF` are set to 0. Hence the lesion mask is exactly the support of alpha and ``image == healthy``
  outside it.
* Boxes are ``(x0, y0, x1, y1)`` pixel-edge coordinates: columns ``x0 .. x1 - 1`` and rows ``y0 .. y1 - 1``.
* Each patient draws from its own generators, seeded by ``(seed, patient index, stream)``, so a patient's images do not
  depend on how many patients are generated or in which order (generation can be chunked or parallel and stays
  bit-identical).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from bilatcf.data.cache import cache_dir as default_cache_dir
from bilatcf.data.types import ImageRecord
from bilatcf.errors import ConfigError, DataError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 5  # part of the cache key: bump whenever the generated pixels change
ALPHA_CUTOFF = 0.02  # blend weights below this are zeroed, so the lesion mask is the exact support of the blend
BENIGN_KINDS = {"benign_mass": 0.6, "benign_calcification": 0.4}
MALIGNANT_KINDS = {"malignant_mass": 0.5, "malignant_calcification": 0.35, "architectural_distortion": 0.15}
LESION_TYPES = tuple(BENIGN_KINDS) + tuple(MALIGNANT_KINDS)
DENSITIES = ("A", "B", "C", "D")
DENSITY_PRIOR = (0.1, 0.4, 0.4, 0.1)  # roughly the screening population (ACR BI-RADS 5th ed.)
SUPPORTED_VIEWS = ("CC", "MLO")
SECOND_LESION_RATE = 0.15  # an affected breast holds a second lesion of the same class
SECOND_DISTRACTOR_RATE = 0.3  # a patient with distractors has a second one
CALCIFICATION_CONTRAST_FACTOR = 2.2  # calcium attenuates far more than soft tissue
SUSPICION_BETA = (5.0, 1.5)  # Beta(a, b) of a malignant finding's suspicion; benign findings draw Beta(b, a)
_VIEW_CODE = {"CC": 1, "MLO": 2}
_STREAM_PATIENT, _STREAM_ANATOMY, _STREAM_DISTRACTOR, _STREAM_SIDE, _STREAM_LESION, _STREAM_POSITION = 0, 1, 2, 3, 4, 5
MAX_MISALIGNMENT = 0.25


@dataclass(frozen=True)
class SyntheticConfig:
    """The knobs of the generator; equal configs give bit-identical datasets.

    Args:
        num_patients: patients; each gives ``2 * len(views)`` images (left and right of every view).
        image_size: ``(H, W)`` in pixels; portrait, the breast fills most of the width.
        views: any of ``"CC"`` and ``"MLO"`` (MLO adds the pectoral muscle).
        lesion_contrast: intensity a mass adds at full opacity (calcifications add 2.2x as much), before saturation at
        1. distractor_rate: fraction of patients with symmetric lesion-like structures on both sides.
        seed: master seed.
        lesion_rate: fraction of patients with at least one lesion.
        malignant_rate: fraction of affected breasts whose finding is malignant.
        both_sides_rate: fraction of affected patients whose other breast also has a (independently drawn) finding.
        misalignment: how differently the two breasts are positioned and compressed, as a fraction of the image height
        (0 to 0.25). Each side's breast is shifted vertically by up to ±m·H/2, rotated by up to ±20·m degrees about
        the middle of the chest wall and scaled by up to ±m/2, and its tissue moves inside the outline by a smooth
        field of standard deviation m·H/4 that fades out towards the skin. At 0 (the default) the sides differ only
        by the generator's mild elastic warp, and the pixels are those of a generator without this knob.
    """

    num_patients: int = 1000
    image_size: tuple[int, int] = (256, 128)
    views: tuple[str, ...] = ("CC", "MLO")
    lesion_contrast: float = 0.3
    distractor_rate: float = 0.5
    seed: int = 0
    lesion_rate: float = 0.5
    malignant_rate: float = 0.5
    both_sides_rate: float = 0.1
    misalignment: float = 0.0

    def __post_init__(self) -> None:
        # YAML and the CLI hand over lists; the config must stay hashable and JSON-stable.
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "views", tuple(str(v) for v in self.views))
        if self.num_patients < 1:
            raise ConfigError(f"SyntheticConfig.num_patients = {self.num_patients}: need at least 1 patient.")
        if len(self.image_size) != 2 or self.image_size[0] < 32 or self.image_size[1] < 16:
            raise ConfigError(
                f"SyntheticConfig.image_size = {self.image_size}: give (H, W) with H >= 32 and W >= 16, "
                "e.g. (256, 128)."
            )
        if not self.views or len(set(self.views)) != len(self.views) or not set(self.views) <= set(SUPPORTED_VIEWS):
            raise ConfigError(f"SyntheticConfig.views = {self.views}: give distinct views among {SUPPORTED_VIEWS}.")
        if not 0.0 < self.lesion_contrast <= 1.0:
            raise ConfigError(f"SyntheticConfig.lesion_contrast = {self.lesion_contrast}: must be in (0, 1].")
        for name in ("distractor_rate", "lesion_rate", "malignant_rate", "both_sides_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"SyntheticConfig.{name} = {getattr(self, name)}: a rate must be in [0, 1].")
        if not 0.0 <= self.misalignment <= MAX_MISALIGNMENT:
            raise ConfigError(
                f"SyntheticConfig.misalignment = {self.misalignment}: give a fraction of the image height in "
                f"[0, {MAX_MISALIGNMENT}] (0: the sides differ by the mild elastic warp only; 0.1: positioning "
                "differences of about a tenth of the height)."
            )

    def key(self) -> str:
        """A short stable hash of every knob, the generator version and this module's source: the cache file name.

        The source digest means an edited generator never serves pixels cached by an earlier one, even when nobody
        remembered to bump :data:`GENERATOR_VERSION`.
        """
        text = json.dumps({**asdict(self), "version": GENERATOR_VERSION, "source": _source_digest()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class SyntheticDataset:
    """Generated images with their manifest records and pixel ground truth (arrays indexed like ``records``)."""

    config: SyntheticConfig
    records: list[ImageRecord]
    images: np.ndarray
    healthy: np.ndarray
    masks: np.ndarray
    distractor_masks: np.ndarray
    lesion_types: list[tuple[str, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def save(self, path: str | Path) -> None:
        """Write one uncompressed ``.npz`` (arrays + JSON ``meta``) atomically: readers never see half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "config": asdict(self.config),
            "version": GENERATOR_VERSION,
            "records": [asdict(record) for record in self.records],
            "lesion_types": self.lesion_types,
        }
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(
                    stream,
                    images=self.images,
                    healthy=self.healthy,
                    masks=self.masks,
                    distractor_masks=self.distractor_masks,
                    meta=np.array(json.dumps(meta)),
                )
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(cls, path: str | Path) -> SyntheticDataset:
        """Read a file written by :meth:`save`; a missing or damaged file raises :class:`DataError`."""
        path = Path(path)
        if not path.is_file():
            raise DataError(
                f"{path}: synthetic dataset file not found; create it with SyntheticDataset.save or "
                "`bilatcf data synth`."
            )
        try:
            with np.load(path, allow_pickle=False) as arrays:
                meta = json.loads(str(arrays["meta"]))
                loaded = {name: arrays[name] for name in ("images", "healthy", "masks", "distractor_masks")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise DataError(
                f"{path}: not a readable synthetic dataset ({error}); delete it and generate again."
            ) from error
        records = [
            ImageRecord(**{**row, "boxes": tuple(tuple(box) for box in row["boxes"])}) for row in meta["records"]
        ]
        return cls(
            config=SyntheticConfig(**meta["config"]),
            records=records,
            lesion_types=[tuple(types) for types in meta["lesion_types"]],
            **loaded,
        )


@dataclass(frozen=True)
class _Finding:
    """One lesion (or distractor) appearance, shared by both views of a breast; positions are drawn per view."""

    kind: str  # a LESION_TYPES entry (for a distractor: the lesion type it imitates)
    suspicion: float  # 0 typical benign .. 1 typical malignant look; the class distributions overlap on purpose
    radius: float  # fraction of the image height (mass radius, calcification cluster size)
    contrast: float

    @property
    def malignant(self) -> bool:
        return self.kind in MALIGNANT_KINDS


@dataclass(frozen=True)
class _Patient:
    """The latent variables of one patient; everything drawn per view or per side comes later."""

    density: int  # index into DENSITIES
    depth: float  # breast depth (chest wall to nipple) as a fraction of W
    half_height: float  # breast half extent along the chest wall as a fraction of H
    findings: tuple[tuple[_Finding, ...], tuple[_Finding, ...]]  # left, right
    distractors: tuple[_Finding, ...]


@dataclass
class _Rendered:
    """One generated image and its ground truth."""

    image: np.ndarray
    healthy: np.ndarray
    mask: np.ndarray
    distractor_mask: np.ndarray
    boxes: tuple[tuple[float, float, float, float], ...]


@lru_cache(maxsize=1)
def _source_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _rng(config: SyntheticConfig, patient: int, *stream: int) -> np.random.Generator:
    """An independent generator per (seed, patient, stream): results never depend on the generation order."""
    return np.random.default_rng([config.seed, patient, *stream])


# ----------------------------------------------------------------------------------------------------- patient latents
def _draw_finding(rng: np.random.Generator, malignant: bool, lesion_contrast: float) -> _Finding:
    """Draw a lesion appearance; suspicion: SUSPICION_BETA if malignant, its mirror if benign (they overlap)."""
    kinds = MALIGNANT_KINDS if malignant else BENIGN_KINDS
    kind = str(rng.choice(list(kinds), p=list(kinds.values())))
    a, b = SUSPICION_BETA
    suspicion = float(rng.beta(a, b) if malignant else rng.beta(b, a))
    # Suspicious-looking findings are denser and larger on average (as in radiology: high-density, larger masses are
    # more suspicious); the spread keeps the classes overlapping, and it gives a signal visible at CPU-friendly sizes.
    contrast = lesion_contrast * (0.3 + 1.4 * suspicion) * float(rng.uniform(0.85, 1.15))
    if kind.endswith("calcification"):
        contrast *= CALCIFICATION_CONTRAST_FACTOR
    return _Finding(kind, suspicion, float(rng.uniform(0.03, 0.05) * (0.6 + 1.0 * suspicion)), contrast)


def _draw_patient(config: SyntheticConfig, index: int) -> _Patient:
    """Draw anatomy, findings and distractors from separate streams: changing one rate keeps the others' draws."""
    rng = _rng(config, index, _STREAM_PATIENT)
    density = int(rng.choice(len(DENSITIES), p=DENSITY_PRIOR))
    depth, half_height = float(rng.uniform(0.6, 0.85)), float(rng.uniform(0.3, 0.4))
    rng = _rng(config, index, _STREAM_LESION)
    findings: list[tuple[_Finding, ...]] = [(), ()]
    if rng.random() < config.lesion_rate:
        first = int(rng.integers(2))
        sides = [first, 1 - first] if rng.random() < config.both_sides_rate else [first]
        for side in sides:
            malignant = bool(rng.random() < config.malignant_rate)
            count = 2 if rng.random() < SECOND_LESION_RATE else 1
            findings[side] = tuple(_draw_finding(rng, malignant, config.lesion_contrast) for _ in range(count))
    rng = _rng(config, index, _STREAM_DISTRACTOR)
    distractors: tuple[_Finding, ...] = ()
    if rng.random() < config.distractor_rate:
        count = 2 if rng.random() < SECOND_DISTRACTOR_RATE else 1
        distractors = tuple(_draw_finding(rng, bool(rng.random() < 0.5), config.lesion_contrast) for _ in range(count))
    return _Patient(density, depth, half_height, (findings[0], findings[1]), distractors)


def _birads(findings: tuple[_Finding, ...]) -> str:
    """A BI-RADS category consistent with the findings: > 3 exactly when malignant (INbreast-style binarisation)."""
    if not findings:
        return "1"
    suspicion = max(finding.suspicion for finding in findings)
    if not any(finding.malignant for finding in findings):
        return "2" if suspicion < 0.3 else "3"
    return "4a" if suspicion < 0.5 else "4b" if suspicion < 0.7 else "4c" if suspicion < 0.85 else "5"


# ----------------------------------------------------------------------------------------------------- anatomy
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


# ----------------------------------------------------------------------------------------------------- lesion shapes
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


# ----------------------------------------------------------------------------------------------------- placement
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


# ----------------------------------------------------------------------------------------------------- one patient
def _render_side(
    rng: np.random.Generator, warped: np.ndarray, findings: tuple[_Finding, ...], blocked: np.ndarray
) -> _Rendered:
    """Add this side's own fine noise (healthy image), then its lesions away from distractors and ``blocked`` pixels."""
    height = warped.shape[0]
    intensity, breast, pectoral, distractor_weights = (np.ascontiguousarray(warped[..., c]) for c in range(4))
    noise = rng.normal(0.0, 0.012, intensity.shape).astype(np.float32)
    healthy = np.clip(intensity + noise * breast, 0.0, 1.0)
    distractor_mask = (distractor_weights > ALPHA_CUTOFF).astype(np.uint8)
    image = healthy.copy()
    mask = np.zeros(healthy.shape, np.uint8)
    boxes = []
    gap = max(2, height // 64)
    for finding in findings:
        alpha = _shape(rng, finding, height)
        allowed = (breast > 0.99) & (pectoral < 0.01) & ~_dilate((distractor_mask > 0) | (mask > 0) | blocked, gap)
        patch, region = _blend(image, breast, alpha, _place(rng, allowed, _support_radius(alpha)), finding.contrast)
        rows, cols = np.nonzero(patch)
        boxes.append(
            (
                float(region[1].start + cols.min()),
                float(region[0].start + rows.min()),
                float(region[1].start + cols.max() + 1),
                float(region[0].start + rows.max() + 1),
            )
        )
        mask[region] |= (patch > 0).astype(np.uint8)
    return _Rendered(image, healthy, mask, distractor_mask, tuple(boxes))


def _render_patient(config: SyntheticConfig, index: int, patient: _Patient) -> list[_Rendered]:
    """All images of one patient, in the order views x (L, R)."""
    rendered = []
    for view in config.views:
        code = _VIEW_CODE[view]
        canonical = _anatomy(_rng(config, index, _STREAM_ANATOMY, code), patient, view, config.image_size)
        canonical = _add_distractors(_rng(config, index, _STREAM_DISTRACTOR, code), canonical, patient.distractors)
        blocked = np.zeros(config.image_size, bool)
        for side in (0, 1):
            rng = _rng(config, index, _STREAM_SIDE, code, side)
            position = _rng(config, index, _STREAM_POSITION, code, side)
            warped = _warp(rng, canonical, config.misalignment, position)
            result = _render_side(rng, warped, patient.findings[side], blocked)
            blocked = result.mask > 0  # never a lesion at the mirrored position of the other side's lesion
            rendered.append(result)
    return rendered


def _record(
    config: SyntheticConfig,
    index: int,
    patient: _Patient,
    view: str,
    side: int,
    image_index: int,
    boxes: tuple[tuple[float, float, float, float], ...],
) -> ImageRecord:
    findings = patient.findings[side]
    patient_id, laterality = f"P{index + 1:05d}", "LR"[side]
    return ImageRecord(
        dataset="synthetic",
        patient_id=patient_id,
        study_id="S1",
        image_id=f"{patient_id}_{laterality}_{view}",
        path=f"synthetic:{image_index}",
        laterality=laterality,
        view=view,
        abnormal=int(bool(findings)),
        malignant=int(any(finding.malignant for finding in findings)),
        birads=_birads(findings),
        density=DENSITIES[patient.density],
        boxes=boxes,
    )


# ----------------------------------------------------------------------------------------------------- public API
def generate(config: SyntheticConfig, progress: bool = False) -> SyntheticDataset:
    """Generate the dataset described by ``config`` (bit-identical for equal configs)."""
    from tqdm.auto import tqdm

    per_patient = 2 * len(config.views)
    count = config.num_patients * per_patient
    images = np.empty((count, *config.image_size), np.float32)
    healthy = np.empty_like(images)
    masks = np.empty(images.shape, np.uint8)
    distractor_masks = np.empty_like(masks)
    records, lesion_types = [], []
    for index in tqdm(range(config.num_patients), desc="synthetic patients", disable=not progress):
        patient = _draw_patient(config, index)
        for offset, result in enumerate(_render_patient(config, index, patient)):
            i = index * per_patient + offset
            view, side = config.views[offset // 2], offset % 2
            images[i], healthy[i], masks[i], distractor_masks[i] = (
                result.image,
                result.healthy,
                result.mask,
                result.distractor_mask,
            )
            records.append(_record(config, index, patient, view, side, i, result.boxes))
            lesion_types.append(tuple(finding.kind for finding in patient.findings[side]))
    return SyntheticDataset(config, records, images, healthy, masks, distractor_masks, lesion_types)


def load_or_generate(
    config: SyntheticConfig, cache_dir: str | Path | None = None, progress: bool = False
) -> SyntheticDataset:
    """Load the dataset from the cache (``<cache>/synthetic/<config.key()>.npz``), generating and caching it on a miss.

    A damaged cache file is regenerated; a read-only cache only costs the regeneration next time.
    """
    path = Path(cache_dir or default_cache_dir()) / "synthetic" / f"{config.key()}.npz"
    if path.is_file():
        try:
            dataset = SyntheticDataset.load(path)
            if dataset.config == config:
                return dataset
            log.warning("%s holds a different synthetic config; regenerating", path)
        except DataError as error:
            log.warning("%s; regenerating", error)
    dataset = generate(config, progress=progress)
    try:
        dataset.save(path)
    except OSError as error:
        log.warning("could not write the synthetic cache %s (%s); set BILATCF_CACHE to a writable folder", path, error)
    return dataset


def _preview_patients(dataset: SyntheticDataset, view: str, count: int) -> list[int]:
    """Pick patients that show the variety: malignant, benign, distractor-only, both sides, normal; then by index."""
    views = dataset.config.views
    categories: dict[str, list[int]] = {}
    for patient in range(dataset.config.num_patients):
        left = (patient * len(views) + views.index(view)) * 2
        records = dataset.records[left : left + 2]
        if any(record.malignant == 1 for record in records):
            name = "malignant"
        elif any(record.abnormal == 1 for record in records):
            name = "benign"
        else:
            name = "distractor" if dataset.distractor_masks[left].any() else "normal"
        if all(record.abnormal == 1 for record in records):
            name = "both"
        categories.setdefault(name, []).append(patient)
    queues = [categories.get(name, []) for name in ("malignant", "benign", "distractor", "both", "normal")]
    chosen: list[int] = []
    while len(chosen) < min(count, dataset.config.num_patients):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return sorted(chosen)


def _panel_title(record: ImageRecord, types: tuple[str, ...]) -> str:
    findings = ", ".join(kind.replace("_", " ").replace("calcification", "calc.") for kind in types) or "normal"
    header = f"{record.patient_id} {record.laterality} {record.view}"
    return f"{header}\n{findings}\nBI-RADS {record.birads}, density {record.density}"


def preview(dataset: SyntheticDataset, path: str | Path, num_patients: int = 6, view: str = "CC") -> Path:
    """Save a PNG grid of left/right pairs: lesions outlined in red, distractors in yellow, labels in the titles."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if view not in dataset.config.views:
        raise ConfigError(f"preview view '{view}' is not in the dataset's views {dataset.config.views}.")
    patients = _preview_patients(dataset, view, num_patients)
    columns = 2 * min(3, len(patients))
    rows = -(-2 * len(patients) // columns)
    height, width = dataset.config.image_size
    figure = Figure(figsize=(columns * 1.9, rows * 1.9 * height / width + rows * 0.55))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    view_offset = dataset.config.views.index(view)
    for slot, patient in enumerate(patients):
        for side in (0, 1):
            i = (patient * len(dataset.config.views) + view_offset) * 2 + side
            ax = axes.flat[2 * slot + side]
            ax.imshow(dataset.images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            for mask, colour in ((dataset.masks[i], "red"), (dataset.distractor_masks[i], "yellow")):
                contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                for contour in contours:
                    points = np.vstack([contour[:, 0], contour[:1, 0]])
                    ax.plot(points[:, 0], points[:, 1], color=colour, linewidth=0.8)
            ax.set_title(_panel_title(dataset.records[i], dataset.lesion_types[i]), fontsize=6)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150)
    return path
