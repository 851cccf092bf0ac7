"""The data contract shared by every dataset and every model (DESIGN §2).

* :class:`ImageRecord` is one manifest row (one image).
* :class:`Pair` is a target image with its contralateral reference (and, in four-view mode, the two other views).
* :class:`BilateralBatch` is what every model receives: named tensors, checked on the first batch by
:func:`check_batch`.
* :class:`TrainingImage` is one image of the training split, for methods that build state from it before training.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

from bilatcf.errors import DataError

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
LATERALITIES = ("L", "R")
# The ACR abbreviations of the mammography views (DICOM CID 4014, plus the axillary-tail and cleavage views of CID 4015
# that ViewPosition also carries); OTHER for anything else. Pairing matches views by name, so a view is never merged
# into another one.
VIEWS = ("CC", "MLO", "ML", "LM", "LMO", "AT", "XCC", "XCCL", "XCCM", "FB", "SIO", "ISO", "CV", "OTHER")


@dataclass(frozen=True)
class ImageRecord:
    """One row of the canonical manifest (one image). Boxes are in the image's original pixel coordinates."""

    dataset: str
    patient_id: str
    study_id: str
    image_id: str
    path: str
    laterality: str
    view: str
    abnormal: int = -1  # 1 | 0 | -1 unknown
    malignant: int = -1  # 1 | 0 | -1 unknown
    birads: str = ""
    density: str = ""
    split: str = ""  # train | val | test | "" (assigned by bilatcf.data.splits)
    boxes: tuple[Box, ...] = ()
    mask_path: str = ""
    provenance: str = ""  # fallbacks used to fill fields, e.g. "laterality=SeriesDescription;view=filename"

    @property
    def pair_key(self) -> tuple[str, str, str, str]:
        """Images with the same key (and opposite laterality) form a bilateral pair."""
        return (self.dataset, self.patient_id, self.study_id, self.view)


@dataclass(frozen=True)
class Pair:
    """A target image (the side being classified) and its contralateral reference.

    ``reference is target`` when the partner was missing and the ``mirror-self`` policy was chosen
    (``reference_is_self`` is then True). ``target_other`` / ``reference_other`` are the ipsilateral other view of
    the target and of the reference (four-view mode, SFF baseline); ``None`` otherwise.
    """

    target: ImageRecord
    reference: ImageRecord
    label: int
    ref_label: int
    asym_label: int
    reference_is_self: bool = False
    target_other: ImageRecord | None = None
    reference_other: ImageRecord | None = None


_TENSOR_FIELDS_IMAGE = ("target", "reference", "target_mask", "healthy")
_LABEL_FIELDS = ("label", "ref_label", "asym_label", "target_abnormal", "ref_abnormal")
_PER_PAIR_FIELDS = _LABEL_FIELDS + ("has_mask", "has_healthy")


@dataclass
class BilateralBatch:
    """A batch of bilateral pairs.

    Images are ``[B, 1, H, W]`` float32 in [0, 1] and face the same way (reference mirrored when needed). Labels are
    ``[B]`` long with -1 for unknown. ``target_mask`` is the target's lesion mask (valid where ``has_mask``);
    ``healthy`` is the ground-truth counterfactual of the target (synthetic data only, valid where ``has_healthy``).
    ``meta`` holds one dict per pair: ids, laterality, view, flipped, original size, crop box, ``boxes`` (the
    target's lesion boxes in batch pixel coordinates) and, on synthetic data, ``lesion_types`` (the finding kinds in
    the target breast).

    ``target_abnormal`` / ``ref_abnormal`` are the two images' own ``abnormal`` (1 lesion, 0 lesion-free, -1 unknown),
    whatever the task's labels are: a benign lesion has ``ref_label = 0`` in the malignancy task but
    ``ref_abnormal = 1``, so image-translation methods take their normal domain from ``ref_abnormal == 0``. They come
    last with defaults so code that builds a batch by keyword keeps working; :meth:`collate` always fills them.
    """

    target: Tensor
    reference: Tensor
    label: Tensor
    ref_label: Tensor
    asym_label: Tensor
    target_mask: Tensor
    has_mask: Tensor
    healthy: Tensor
    has_healthy: Tensor
    meta: list[dict[str, Any]] = field(default_factory=list)
    target_other: Tensor | None = None
    reference_other: Tensor | None = None
    target_abnormal: Tensor | None = None
    ref_abnormal: Tensor | None = None

    def __len__(self) -> int:
        return self.target.shape[0]

    def to(self, device: torch.device | str) -> BilateralBatch:
        moved = {
            f.name: (
                getattr(self, f.name).to(device) if isinstance(getattr(self, f.name), Tensor) else getattr(self, f.name)
            )
            for f in fields(self)
        }
        return BilateralBatch(**moved)

    @staticmethod
    def collate(samples: list[dict[str, Any]]) -> BilateralBatch:
        """Stack per-pair sample dicts (as produced by the pair datasets) into a batch.

        ``target_abnormal`` / ``ref_abnormal`` missing from a sample are unknown (-1).
        """
        if not samples:
            raise DataError("cannot collate an empty list of samples")

        def stack(key: str) -> Tensor | None:
            if samples[0].get(key) is None:
                return None
            return torch.stack([torch.as_tensor(s[key]) for s in samples])

        def labels(key: str, default: int | None = None) -> Tensor:
            values = [int(s[key] if default is None else s.get(key, default)) for s in samples]
            return torch.tensor(values, dtype=torch.long)

        def flags(key: str) -> Tensor:
            return torch.tensor([bool(s[key]) for s in samples], dtype=torch.bool)

        return BilateralBatch(
            target=stack("target"),
            reference=stack("reference"),
            label=labels("label"),
            ref_label=labels("ref_label"),
            asym_label=labels("asym_label"),
            target_mask=stack("target_mask"),
            has_mask=flags("has_mask"),
            healthy=stack("healthy"),
            has_healthy=flags("has_healthy"),
            meta=[s["meta"] for s in samples],
            target_other=stack("target_other"),
            reference_other=stack("reference_other"),
            target_abnormal=labels("target_abnormal", default=-1),
            ref_abnormal=labels("ref_abnormal", default=-1),
        )


def check_batch(batch: BilateralBatch, where: str = "the first batch") -> None:
    """Check a batch against the data contract; raise :class:`DataError` naming the field and the fix."""
    if not isinstance(batch, BilateralBatch):
        raise DataError(f"{where} is a {type(batch).__name__}, expected a BilateralBatch (use BilateralBatch.collate).")
    size = len(batch)
    ref_shape = tuple(batch.target.shape)
    if batch.target.ndim != 4 or ref_shape[1] != 1:
        raise DataError(f"{where}: 'target' has shape {ref_shape}, expected [B, 1, H, W] (one grey channel).")
    for name in _TENSOR_FIELDS_IMAGE + ("target_other", "reference_other"):
        value = getattr(batch, name)
        if value is None and name in ("target_other", "reference_other"):
            continue
        if tuple(value.shape) != ref_shape:
            raise DataError(
                f"{where}: '{name}' has shape {tuple(value.shape)} but 'target' has {ref_shape}; "
                "every image field of a pair must share the target's shape (resize them together)."
            )
        if value.dtype != torch.float32:
            raise DataError(f"{where}: '{name}' has dtype {value.dtype}, expected float32 in [0, 1].")
        if not torch.isfinite(value).all():
            raise DataError(f"{where}: '{name}' contains NaN or Inf; check the image files and preprocessing.")
        lo, hi = float(value.min()), float(value.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{where}: '{name}' has values in [{lo:.3g}, {hi:.3g}], expected [0, 1]; "
                "normalise images (e.g. divide 8-bit data by 255, or window DICOMs) before batching."
            )
    for name in _PER_PAIR_FIELDS:
        value = getattr(batch, name)
        if value is None:
            raise DataError(f"{where}: '{name}' is missing; build batches with BilateralBatch.collate, which fills it.")
        if tuple(value.shape) != (size,):
            raise DataError(f"{where}: '{name}' has shape {tuple(value.shape)}, expected [{size}].")
    for name in _LABEL_FIELDS:
        bad = getattr(batch, name)[(getattr(batch, name) < -1) | (getattr(batch, name) > 1)]
        if bad.numel():
            raise DataError(f"{where}: '{name}' has value {int(bad[0])}; labels are 1, 0 or -1 (unknown).")
    if batch.has_mask.any():
        masks = batch.target_mask[batch.has_mask]
        if ((masks != 0) & (masks != 1)).any():
            raise DataError(f"{where}: 'target_mask' must be binary (0/1); resize masks with nearest-neighbour.")
        images = batch.target[batch.has_mask]
        empty_image = (images.flatten(1).amax(1) <= 0) & (masks.flatten(1).amax(1) > 0)
        if empty_image.any():
            raise DataError(
                f"{where}: a lesion mask lies on an empty image: masks and images are misaligned "
                "(apply the same crop/flip/resize to both)."
            )
    if len(batch.meta) != size:
        raise DataError(f"{where}: 'meta' has {len(batch.meta)} entries for {size} pairs.")


@dataclass(frozen=True, eq=False)
class TrainingImage:
    """One distinct image of the training split, as the model sees it but unaugmented.

    Methods that build state from the training split before training (a bank of lesion patches cut with the masks,
    a set of lesion-free images) read these from ``datamodule.training_images()``.

    Attributes:
        image: ``[H, W]`` float32 in [0, 1], canonical orientation (chest wall on the left), the model's input size.
        mask: ``[H, W]`` float32 in {0, 1}, the lesion mask; all-zero for a known lesion-free image; None when the
            image may have a lesion but has no mask.
        abnormal: 1 lesion, 0 lesion-free, -1 unknown.
        malignant: 1, 0, or -1 unknown (or not applicable).
        image_id: the image's id (the manifest's ``image_id``).
    """

    image: Tensor
    mask: Tensor | None
    abnormal: int
    malignant: int
    image_id: str
