"""The latent variables of a patient: anatomy parameters, findings and distractors, drawn before any pixel.

They are the generator's ground truth behind the labels (``benchmarks/synthetic_ceiling.py`` reads them to bound the
AUC a model can reach).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bilatcf.data.synthetic.config import (
    _STREAM_DISTRACTOR,
    _STREAM_LESION,
    _STREAM_PATIENT,
    BENIGN_KINDS,
    CALCIFICATION_CONTRAST_FACTOR,
    DENSITIES,
    DENSITY_PRIOR,
    MALIGNANT_KINDS,
    SECOND_DISTRACTOR_RATE,
    SECOND_LESION_RATE,
    SUSPICION_BETA,
    SyntheticConfig,
    _rng,
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
