"""Rendering: each side's image with its lesions and ground truth, each patient's records, and :func:`generate`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bilatcf.data.synthetic.anatomy import _anatomy
from bilatcf.data.synthetic.config import (
    _STREAM_ANATOMY,
    _STREAM_DISTRACTOR,
    _STREAM_POSITION,
    _STREAM_SIDE,
    _VIEW_CODE,
    ALPHA_CUTOFF,
    DENSITIES,
    SyntheticConfig,
    _rng,
)
from bilatcf.data.synthetic.dataset import SyntheticDataset
from bilatcf.data.synthetic.lesions import _add_distractors, _blend, _dilate, _place, _shape, _support_radius
from bilatcf.data.synthetic.patient import _birads, _draw_patient, _Finding, _Patient
from bilatcf.data.synthetic.warp import _warp
from bilatcf.data.types import ImageRecord


@dataclass
class _Rendered:
    """One generated image and its ground truth."""

    image: np.ndarray
    healthy: np.ndarray
    mask: np.ndarray
    distractor_mask: np.ndarray
    boxes: tuple[tuple[float, float, float, float], ...]


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
