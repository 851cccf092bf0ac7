"""DisAsymNet's asymmetric synthesis (§2.3), pure PyTorch (+ OpenCV for connected components).

* :func:`cut_tumours` cuts lesion patches out of a training image with its GT mask, each with its alpha map α: a 2-D
  Gaussian whose covariance is set by the lesion's size;
* :class:`TumourBank` holds the patches of the training split (the tumour set 𝒯), saved in checkpoints;
* :func:`blend` is x|fake = x·Π_k(1 − α_k) + Σ_k t_k·α_k;
* :func:`synthesize_pair` inserts 1–3 tumours into one or both sides of a normal pair at random breast positions, every
  choice read from a row of pre-drawn uniforms (the module draws them per sample with ``sample_random``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from bilatcf.data.types import TrainingImage

#: Pixels above this value are breast (bilatcf images are in [0, 1] with a zero background after preprocessing).
BREAST_THRESHOLD = 0.05
#: α's standard deviation per axis as a fraction of the lesion's extent: α = e^{−2} ≈ 0.14 at the lesion's edge.
SIGMA_PER_EXTENT = 0.25
#: The patch reaches this many standard deviations from the lesion centre (α ≈ 0.011 at its border).
PATCH_SIGMAS = 3.0
#: Lesion pixels closer than this fraction of the image height belong to one tumour (a calcification cluster).
MERGE_FRACTION = 0.03


@dataclass(frozen=True)
class Tumour:
    """One lesion patch t and its alpha map α ([h, w] each), and the lesion centre (row, column) in the patch."""

    patch: Tensor
    alpha: Tensor
    centre: tuple[int, int]


def gaussian_alpha(height: int, width: int, centre: tuple[float, float], sigma: tuple[float, float]) -> Tensor:
    """α(i, j) = exp(−½[(i − c_i)²/σ_i² + (j − c_j)²/σ_j²]) on a height×width grid (1 at the centre)."""
    rows = (torch.arange(height, dtype=torch.float32) - centre[0]) / sigma[0]
    cols = (torch.arange(width, dtype=torch.float32) - centre[1]) / sigma[1]
    return torch.exp(-0.5 * (rows[:, None] ** 2 + cols[None, :] ** 2))


def cut_tumours(image: Tensor, mask: Tensor, breast_threshold: float = BREAST_THRESHOLD) -> list[Tumour]:
    """The lesions of ``image`` [H, W] marked by ``mask`` [H, W] (0/1), one :class:`Tumour` per lesion.

    Mask pixels closer than ``MERGE_FRACTION`` of the height form one lesion. Its extent (h, w) is the bounding box of
    its mask pixels; α is a Gaussian centred on the box with σ = extent/4 per axis, times the source's breast
    (``image > breast_threshold``), so background pixels of the patch are never pasted. The patch reaches
    3σ from the centre, cropped at the image border.
    """
    binary = (mask.detach().cpu().numpy() > 0.5).astype(np.uint8)
    if not binary.any():
        return []
    size = max(3, 2 * round(MERGE_FRACTION * binary.shape[0] / 2) + 1)
    merged = cv2.dilate(binary, np.ones((size, size), np.uint8))
    count, labels = cv2.connectedComponents(merged, connectivity=8)
    image = image.detach().float().cpu()
    tumours = []
    for label in range(1, count):
        rows, cols = np.nonzero((labels == label) & (binary > 0))
        if rows.size == 0:
            continue
        centre = ((rows.min() + rows.max()) / 2.0, (cols.min() + cols.max()) / 2.0)
        sigma = (
            max(SIGMA_PER_EXTENT * (rows.max() - rows.min() + 1), 0.5),
            max(SIGMA_PER_EXTENT * (cols.max() - cols.min() + 1), 0.5),
        )
        top = max(math.floor(centre[0] - PATCH_SIGMAS * sigma[0]), 0)
        left = max(math.floor(centre[1] - PATCH_SIGMAS * sigma[1]), 0)
        bottom = min(math.ceil(centre[0] + PATCH_SIGMAS * sigma[0]) + 1, image.shape[0])
        right = min(math.ceil(centre[1] + PATCH_SIGMAS * sigma[1]) + 1, image.shape[1])
        patch = image[top:bottom, left:right].clone()
        local = (centre[0] - top, centre[1] - left)
        alpha = gaussian_alpha(bottom - top, right - left, local, sigma) * (patch > breast_threshold).float()
        tumours.append(Tumour(patch, alpha, (round(local[0]), round(local[1]))))
    return tumours


class TumourBank(nn.Module):
    """The tumour set 𝒯: lesion patches cut with the GT masks of the training split's abnormal images.

    Built before training (:meth:`fill`, from ``BilateralModule.build_training_state``) and saved in every checkpoint as
    this module's extra state (``bank._extra_state``), so a resumed run and a loaded model hold the same bank. It stays
    on the CPU (a few patches per step move to the batch's device) and is never broadcast by DDP.

    Args:
        capacity: at most this many tumours, evenly spaced over all that the training split offers (in its order).
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.tumours: list[Tumour] = []
        #: The image id of every tumour (provenance; not saved).
        self.sources: list[str] = []

    def __len__(self) -> int:
        return len(self.tumours)

    def fill(self, images: Iterable[TrainingImage], breast_threshold: float = BREAST_THRESHOLD) -> tuple[int, int]:
        """Replace the bank with the tumours of ``images``; returns (images with a mask, images without one)."""
        found: list[tuple[Tumour, str]] = []
        with_mask = without_mask = 0
        for item in images:
            if item.mask is None:
                without_mask += 1
                continue
            with_mask += 1
            found += [(tumour, item.image_id) for tumour in cut_tumours(item.image, item.mask, breast_threshold)]
        if len(found) > self.capacity:
            keep = torch.linspace(0, len(found) - 1, self.capacity).round().long().unique().tolist()
            found = [found[i] for i in keep]
        self.tumours = [tumour for tumour, _ in found]
        self.sources = [source for _, source in found]
        return with_mask, without_mask

    def get_extra_state(self) -> dict[str, Tensor]:
        """The bank packed into flat tensors (a checkpoint holds tensors, not lists of them)."""
        shapes = torch.tensor([list(t.patch.shape) for t in self.tumours], dtype=torch.long).view(-1, 2)
        centres = torch.tensor([list(t.centre) for t in self.tumours], dtype=torch.long).view(-1, 2)
        flat = [t.patch.flatten() for t in self.tumours]
        return {
            "shapes": shapes,
            "centres": centres,
            "patches": torch.cat(flat) if flat else torch.zeros(0),
            "alphas": torch.cat([t.alpha.flatten() for t in self.tumours]) if flat else torch.zeros(0),
        }

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        sizes = (state["shapes"][:, 0] * state["shapes"][:, 1]).tolist()
        patches = torch.split(state["patches"].float().cpu(), sizes)
        alphas = torch.split(state["alphas"].float().cpu(), sizes)
        self.tumours = [
            Tumour(patch.view(*shape), alpha.view(*shape), (int(centre[0]), int(centre[1])))
            for patch, alpha, shape, centre in zip(
                patches, alphas, state["shapes"].tolist(), state["centres"].tolist(), strict=True
            )
        ]
        self.sources = [""] * len(self.tumours)


def paste(
    tumour: Tumour, centre: tuple[int, int], size: tuple[int, int], device: torch.device
) -> tuple[Tensor, Tensor]:
    """The canvases t_k and α_k [H, W] of ``tumour`` with its lesion centre at ``centre`` (cropped at the borders)."""
    height, width = size
    patch_height, patch_width = tumour.patch.shape
    top, left = centre[0] - tumour.centre[0], centre[1] - tumour.centre[1]
    rows = slice(max(top, 0), min(top + patch_height, height))
    cols = slice(max(left, 0), min(left + patch_width, width))
    source = (slice(rows.start - top, rows.stop - top), slice(cols.start - left, cols.stop - left))
    pixels, alpha = torch.zeros(size, device=device), torch.zeros(size, device=device)
    if rows.stop > rows.start and cols.stop > cols.start:
        pixels[rows, cols] = tumour.patch[source].to(device)
        alpha[rows, cols] = tumour.alpha[source].to(device)
    return pixels, alpha


def blend(image: Tensor, tumours: Iterable[Tensor], alphas: Iterable[Tensor]) -> Tensor:
    """x|fake = x·Π_k(1 − α_k) + Σ_k t_k·α_k (§2.3), clipped to [0, 1] (overlapping tumours can exceed 1)."""
    kept, added = torch.ones_like(image), torch.zeros_like(image)
    for pixels, alpha in zip(tumours, alphas, strict=True):
        kept = kept * (1.0 - alpha)
        added = added + pixels * alpha
    return (image * kept + added).clamp(0.0, 1.0)


def draws_per_pair(max_tumours: int) -> int:
    """Uniforms one pair's synthesis reads: the sides, then per side a count and (tumour, position) per tumour."""
    return 1 + 2 * (1 + 2 * max_tumours)


def insert_tumours(
    image: Tensor, bank: TumourBank, draws: Tensor, max_tumours: int, breast_threshold: float = BREAST_THRESHOLD
) -> Tensor:
    """``image`` [H, W] with n = 1 + ⌊u·max_tumours⌋ tumours of the bank, each centred on a breast pixel drawn
    uniformly; α is restricted to the destination's breast, so no pixel outside it changes.

    ``draws`` [1 + 2·max_tumours] are U(0, 1): the count, then (tumour index, position) per tumour.
    """
    breast = image > breast_threshold
    positions = breast.flatten().nonzero().flatten()
    if not len(positions) or not len(bank):
        return image
    count = 1 + min(int(draws[0] * max_tumours), max_tumours - 1)
    pieces, alphas = [], []
    for k in range(count):
        tumour = bank.tumours[min(int(draws[1 + 2 * k] * len(bank)), len(bank) - 1)]
        position = int(positions[min(int(draws[2 + 2 * k] * len(positions)), len(positions) - 1)])
        pixels, alpha = paste(tumour, divmod(position, image.shape[1]), tuple(image.shape), image.device)
        pieces.append(pixels)
        alphas.append(alpha * breast)
    return blend(image, pieces, alphas)


def synthesize_pair(
    target: Tensor,
    reference: Tensor,
    bank: TumourBank,
    draws: Tensor,
    max_tumours: int,
    breast_threshold: float = BREAST_THRESHOLD,
) -> tuple[Tensor, Tensor]:
    """A synthetic asymmetric pair from a normal one ([1, H, W] each): tumours in the target only, the reference only,
    or both (⌊3u⌋ of the first uniform: 0, 1, 2), each side per :func:`insert_tumours`."""
    sides = min(int(draws[0] * 3), 2)
    per_side = 1 + 2 * max_tumours
    images = []
    for side, image in enumerate((target, reference)):
        if sides in (side, 2):
            row = draws[1 + side * per_side : 1 + (side + 1) * per_side]
            image = insert_tumours(image[0], bank, row, max_tumours, breast_threshold)[None]
        images.append(image)
    return images[0], images[1]
