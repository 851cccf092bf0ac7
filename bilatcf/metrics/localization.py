"""Localization from a heatmap: top-1 localization error, pointing game, IoU/IoR/Dice, mean TIoU/TIoR, pixel AP.

Boxes are ``[x0, y0, x1, y1]`` in continuous pixel coordinates: pixel (row i, column j) covers [j, j+1) × [i, i+1), so a
box around columns 2..4 is x0=2, x1=5. Heatmaps are binarised by :func:`binarize_map` (min–max normalise per image, keep
values above a threshold); the rule is also written into ``metrics.json`` (:func:`threshold_rule`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_average_precision

BoxLike = Sequence[float]
TIOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # DisAsymNet §3.2, after HAM
TIOR_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
#: Pointing-game tolerance as a fraction of the image height: Zhang et al.'s 15 px on a 480-px-high COCO image, 4 px
#: at 128 px (docs/metrics.md, "Pointing game", gives the measured chance and resolution ceiling behind the choice).
POINTING_TOLERANCE = 1 / 32
_NAN = float("nan")


def heatmap_to_box(cam: Tensor | np.ndarray, threshold: float = 0.2) -> tuple[float, float, float, float] | None:
    """Bounding box of the largest connected region of a heatmap (ILSVRC-style CAM localization, CGN Table II).

    Keeps pixels above ``threshold × max`` and boxes the largest 8-connected component, so a weak secondary blob does
    not stretch the box. Returns None when the map has no positive value (nothing to localise).

    Args:
        cam: [H, W] heatmap (any non-negative scale).
        threshold: fraction of the map's maximum.
    """
    heat = cam.detach().float().cpu().numpy() if isinstance(cam, Tensor) else np.asarray(cam, dtype=np.float32)
    peak = float(heat.max()) if heat.size else 0.0
    if not peak > 0.0:
        return None
    foreground = (heat > threshold * peak).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (
        int(stats[largest, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT)
    )
    return float(x), float(y), float(x + w), float(y + h)


def box_iou(a: BoxLike, b: BoxLike) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes (0 when both are empty)."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def binarize_map(heatmap: Tensor, threshold: float = 0.5) -> Tensor:
    """Min–max normalise each map of ``heatmap`` [B, 1, H, W] to [0, 1] and keep values > ``threshold``.

    Per-image normalisation makes the rule independent of the map's scale (CAM logits, residuals, explanation maps).
    A constant map has no structure and gives an empty mask.
    """
    flat = heatmap.detach().flatten(1).double()
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    span = high - low
    normalised = torch.where(span > 0, (flat - low) / span.clamp_min(1e-300), torch.zeros_like(flat))
    return (normalised > threshold).view_as(heatmap)


def threshold_rule(threshold: float, absolute: bool = False) -> str:
    """The binarisation rule in words, as stored in metrics.json (``seg_threshold_rule``, ``expl_threshold_rule``)."""
    value = "|map|" if absolute else "map"
    return f"{value} min-max normalised per image to [0, 1], foreground = value > {threshold:g}"


def overlap_scores(heatmap: Tensor, mask: Tensor, threshold: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image IoU, IoR and Dice between the binarised heatmap P and the GT mask G (DisAsymNet Table 2).

    IoU = |P∩G| / |P∪G|, IoR = |P∩G| / |G| (intersection over the reference, i.e. the GT), Dice = 2|P∩G| / (|P| + |G|).
    Computed in float64 on pixel counts so a ratio such as 3/10 compares exactly against a threshold 0.3.

    Args:
        heatmap: [B, 1, H, W] maps.
        mask: [B, 1, H, W] GT masks (> 0.5 is lesion); each should be non-empty (IoR is undefined otherwise).
        threshold: see :func:`binarize_map`.

    Returns:
        Three [B] float64 tensors (a zero denominator gives 0).
    """
    predicted = binarize_map(heatmap, threshold).flatten(1)
    truth = (mask > 0.5).flatten(1)
    inter = (predicted & truth).sum(1).double()
    size_p, size_g = predicted.sum(1).double(), truth.sum(1).double()
    union = size_p + size_g - inter
    iou = inter / union.clamp_min(1.0)
    ior = inter / size_g.clamp_min(1.0)
    dice = 2.0 * inter / (size_p + size_g).clamp_min(1.0)
    return iou, ior, dice


def annotated(mask: Tensor, has_mask: Tensor) -> Tensor:
    """[B] bool: images whose lesion mask is known and non-empty (the images segmentation metrics average over)."""
    return has_mask.bool() & ((mask > 0.5).flatten(1).any(1))


class TopOneLocError(Metric):
    """Top-1 localization error (CGN/BR-GAN Table II, ILSVRC-style with an IoU threshold of 0.1).

    An image counts as correct when the predicted class is correct **and** the box of the largest component of its
    CAM (:func:`heatmap_to_box`) has IoU >= ``iou_threshold`` with at least one GT box. Error = 1 − mean(correct) over
    images that have at least one GT box and a known label; NaN when there is none.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, iou_threshold: float = 0.1, cam_threshold: float = 0.2) -> None:
        super().__init__()
        self.iou_threshold = iou_threshold
        self.cam_threshold = cam_threshold
        self.add_state("correct", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, cam: Tensor, pred: Tensor, label: Tensor, boxes: Sequence[Sequence[BoxLike]]) -> None:
        """Add images: ``cam`` [B, 1, H, W] of the predicted class at image size, ``pred``/``label`` [B], ``boxes``."""
        for i, image_boxes in enumerate(boxes):
            if len(image_boxes) == 0 or int(label[i]) < 0:
                continue
            self.total += 1
            if int(pred[i]) != int(label[i]):
                continue
            box = heatmap_to_box(cam[i, 0], self.cam_threshold)
            if box is not None and max(box_iou(box, gt) for gt in image_boxes) >= self.iou_threshold:
                self.correct += 1

    def compute(self) -> Tensor:
        return 1.0 - self.correct / self.total if self.total > 0 else torch.full_like(self.total, _NAN)


def box_pixels(boxes: Sequence[BoxLike], size: tuple[int, int], device: torch.device | None = None) -> Tensor:
    """[H, W] bool: the pixels whose centre lies inside any of ``boxes`` (the box as a lesion mask).

    A box too thin to contain a pixel centre keeps the pixel that contains its centre, so no GT box is lost.
    """
    height, width = size
    region = torch.zeros(size, dtype=torch.bool, device=device)
    for x0, y0, x1, y1 in (tuple(float(v) for v in box) for box in boxes):
        # Pixel j's centre j + 0.5 is inside [x0, x1) iff ceil(x0 − 0.5) <= j < ceil(x1 − 0.5).
        left, right = math.ceil(x0 - 0.5), math.ceil(x1 - 0.5)
        top, bottom = math.ceil(y0 - 0.5), math.ceil(y1 - 0.5)
        if right <= left:
            left = right = math.floor((x0 + x1) / 2)
            right += 1
        if bottom <= top:
            top = bottom = math.floor((y0 + y1) / 2)
            bottom += 1
        region[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)] = True
    return region


def pointing_hit(heatmap: Tensor, lesion: Tensor, tolerance_px: float) -> float:
    """Pointing-game credit of one map (Zhang et al. 2016), in [0, 1]: 1 when its maximum lies within
    ``tolerance_px`` of a lesion pixel, 0 when it does not.

    Distances are Euclidean between pixel centres, so a peak on a lesion pixel has distance 0 and one ``d`` pixels
    beside it distance ``d``; the tolerance is inclusive (squared integer offsets against ``tolerance_px²``, exact).
    When several pixels share the maximum, each counts for an equal share (the expected credit of breaking the tie
    at random), so the result does not depend on scan order. A constant (or NaN) map points nowhere: credit 0.

    Args:
        heatmap: [H, W] map at image size (any scale).
        lesion: [H, W] bool GT lesion pixels (a mask, or :func:`box_pixels`); at least one should be set.
        tolerance_px: tolerance in pixels.
    """
    heat = heatmap.detach().float()
    peak, low = heat.max(), heat.min()
    if not bool(peak > low) or not bool(lesion.any()):
        return 0.0
    peaks = torch.nonzero(heat == peak).float()
    lesion_pixels = torch.nonzero(lesion).float()
    limit = tolerance_px**2
    hits = 0
    chunk = max(1, 2**21 // len(lesion_pixels))  # bounds the peak × lesion offset table on large plateaus
    for start in range(0, len(peaks), chunk):
        offsets = peaks[start : start + chunk, None, :] - lesion_pixels[None, :, :]
        squared = offsets.square().sum(-1).amin(1)
        hits += int((squared <= limit).sum())
    return hits / len(peaks)


class PointingGame(Metric):
    """Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016).

    A positive target (label 1) with a GT lesion is a hit when the maximum of its map, at image size, lies within
    ``tolerance`` × image height of the lesion (:func:`pointing_hit`): its GT mask when the mask is known and
    non-empty, else its GT boxes (:func:`box_pixels`). Pointing = hits / counted targets; negatives, unknown labels
    and targets without any GT are not counted; NaN when none is.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, tolerance: float = POINTING_TOLERANCE) -> None:
        super().__init__()
        self.tolerance = tolerance
        self.add_state("hits", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        heatmap: Tensor,
        label: Tensor,
        mask: Tensor,
        has_mask: Tensor,
        boxes: Sequence[Sequence[BoxLike]],
    ) -> None:
        """Add images: ``heatmap`` [B, 1, h, w] (upsampled bilinearly to the mask's size if it differs), ``label`` [B],
        ``mask`` [B, 1, H, W] with ``has_mask`` [B], and each image's GT ``boxes`` (pixels of the H × W image)."""
        size = tuple(mask.shape[-2:])
        if tuple(heatmap.shape[-2:]) != size:
            heatmap = F.interpolate(heatmap.float(), size=size, mode="bilinear", align_corners=False)
        with_mask = annotated(mask, has_mask)
        tolerance_px = self.tolerance * size[0]
        for i, image_boxes in enumerate(boxes):
            if int(label[i]) != 1 or not (bool(with_mask[i]) or len(image_boxes) > 0):
                continue
            lesion = mask[i, 0] > 0.5 if with_mask[i] else box_pixels(image_boxes, size, mask.device)
            self.hits += pointing_hit(heatmap[i, 0], lesion, tolerance_px)
            self.count += 1

    def compute(self) -> Tensor:
        return self.hits / self.count if self.count > 0 else torch.full_like(self.count, _NAN)


def pointing_rule(tolerance: float) -> str:
    """The pointing-game rule in words, as stored in metrics.json (``pointing_rule``)."""
    return f"hit = map peak within {tolerance:g} x image height of a GT lesion pixel (mask, else box); label-1 targets"


class SegmentationScores(Metric):
    """Mean IoU, IoR and Dice of binarised heatmaps over images with a non-empty GT mask (:func:`overlap_scores`).

    ``compute`` returns ``{"iou", "ior", "dice"}`` (NaN without annotated images).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold
        for name in ("iou", "ior", "dice", "count"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, heatmap: Tensor, mask: Tensor, has_mask: Tensor) -> None:
        """Add images: ``heatmap`` and ``mask`` [B, 1, H, W], ``has_mask`` [B] bool (False rows are skipped)."""
        keep = annotated(mask, has_mask)
        iou, ior, dice = overlap_scores(heatmap[keep], mask[keep], self.threshold)
        self.iou += iou.sum()
        self.ior += ior.sum()
        self.dice += dice.sum()
        self.count += keep.sum()

    def compute(self) -> dict[str, Tensor]:
        count = self.count if self.count > 0 else torch.full_like(self.count, _NAN)
        return {"iou": self.iou / count, "ior": self.ior / count, "dice": self.dice / count}


class MapAveragePrecision(Metric):
    """Mean per-image average precision of a heatmap's pixels against the GT mask: the threshold-free companion of
    :class:`SegmentationScores`.

    Each annotated image (known, non-empty mask) ranks its pixels by the map and scores the ranking against its lesion
    pixels (torchmetrics' exact binary average precision, ties handled as one threshold); images count once, as IoU
    does. AP depends only on the order of the values, so no normalisation or threshold enters it. A constant map
    scores the lesion's share of the image, the chance level. ``compute`` returns the mean (NaN without annotated
    images).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, heatmap: Tensor, mask: Tensor, has_mask: Tensor) -> None:
        """Add images: ``heatmap`` and ``mask`` [B, 1, H, W], ``has_mask`` [B] bool (False rows are skipped)."""
        keep = annotated(mask, has_mask)
        maps, truth = heatmap.detach()[keep].flatten(1).double(), (mask[keep] > 0.5).flatten(1).long()
        for scores, lesion in zip(maps, truth):
            self.total += binary_average_precision(scores, lesion).double()
        self.count += keep.sum()

    def compute(self) -> Tensor:
        return self.total / self.count if self.count > 0 else torch.full_like(self.count, _NAN)


class ThresholdAccuracy(Metric):
    """Mean TIoU and mean TIoR (DisAsymNet, after HAM).

    For each threshold T the accuracy is the fraction of annotated images whose IoU (resp. IoR) is >= T; the metric is
    the mean of these accuracies over T ∈ ``iou_thresholds`` (resp. ``ior_thresholds``). ``compute`` returns
    ``{"mean_tiou", "mean_tior"}``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        threshold: float = 0.5,
        iou_thresholds: tuple[float, ...] = TIOU_THRESHOLDS,
        ior_thresholds: tuple[float, ...] = TIOR_THRESHOLDS,
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self.iou_thresholds = iou_thresholds
        self.ior_thresholds = ior_thresholds
        self.add_state("iou_hits", default=torch.zeros(len(iou_thresholds), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ior_hits", default=torch.zeros(len(ior_thresholds), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, heatmap: Tensor, mask: Tensor, has_mask: Tensor) -> None:
        """Add images: ``heatmap`` and ``mask`` [B, 1, H, W], ``has_mask`` [B] bool (False rows are skipped)."""
        keep = annotated(mask, has_mask)
        iou, ior, _ = overlap_scores(heatmap[keep], mask[keep], self.threshold)
        self.iou_hits += (iou[:, None] >= iou.new_tensor(self.iou_thresholds)).sum(0)
        self.ior_hits += (ior[:, None] >= ior.new_tensor(self.ior_thresholds)).sum(0)
        self.count += keep.sum()

    def compute(self) -> dict[str, Tensor]:
        count = self.count if self.count > 0 else torch.full_like(self.count, _NAN)
        return {"mean_tiou": (self.iou_hits / count).mean(), "mean_tior": (self.ior_hits / count).mean()}
