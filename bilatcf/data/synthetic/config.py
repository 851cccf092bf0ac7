"""The generator's knobs (:class:`SyntheticConfig`), its constants and its seeding.

The cache key lives here too: it digests the source of every module that decides a pixel or a record (this one
included), so an edited generator never serves pixels cached by an earlier one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from bilatcf.errors import ConfigError

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
# The modules whose source decides the generated pixels and records. Saving, caching, the package glue and the
# preview figure are left out on purpose: editing them must not invalidate the datasets users have cached.
PIXEL_MODULES = ("config", "patient", "anatomy", "lesions", "warp", "render")


@dataclass(frozen=True)
class SyntheticConfig:
    """The knobs of the generator; equal configs give bit-identical datasets.

    Args:
        num_patients: patients; each gives ``2 * len(views)`` images (left and right of every view).
        image_size: ``(H, W)`` in pixels; portrait, the breast fills most of the width.
        views: any of ``"CC"`` and ``"MLO"`` (MLO adds the pectoral muscle).
        lesion_contrast: intensity a mass adds at full opacity (calcifications add 2.2x as much), before saturation at
            1.
        distractor_rate: fraction of patients with symmetric lesion-like structures on both sides.
        seed: master seed.
        lesion_rate: fraction of patients with at least one lesion.
        malignant_rate: fraction of affected breasts whose finding is malignant.
        both_sides_rate: fraction of affected patients whose other breast also has a (independently drawn) finding.
        misalignment: how differently the two breasts are positioned and compressed, as a fraction of the image
            height (0 to 0.25). Each side's breast is shifted vertically by up to ±m·H/2, rotated by up to ±20·m
            degrees about the middle of the chest wall and scaled by up to ±m/2, and its tissue moves inside the
            outline by a smooth field of standard deviation m·H/4 that fades out towards the skin. At 0 (the default)
            the sides differ only by the generator's mild elastic warp, and the pixels are those of a generator
            without this knob.
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
        """A short stable hash of every knob, the generator version and the pixel modules' source: the cache file name.

        The source digest means an edited generator never serves pixels cached by an earlier one, even when nobody
        remembered to bump :data:`GENERATOR_VERSION`; only :data:`PIXEL_MODULES` count, so editing how datasets are
        saved, cached or previewed keeps every cache valid.
        """
        text = json.dumps({**asdict(self), "version": GENERATOR_VERSION, "source": _source_digest()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_digest(folder: str | Path) -> str:
    """A short digest of the :data:`PIXEL_MODULES` sources found in ``folder`` (the package folder, or a copy of it)."""
    digest = hashlib.sha256()
    for name in PIXEL_MODULES:
        digest.update(name.encode())
        digest.update((Path(folder) / f"{name}.py").read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def _source_digest() -> str:
    """The digest of the installed package, computed once per process."""
    return source_digest(Path(__file__).parent)


def _rng(config: SyntheticConfig, patient: int, *stream: int) -> np.random.Generator:
    """An independent generator per (seed, patient, stream): results never depend on the generation order."""
    return np.random.default_rng([config.seed, patient, *stream])
