"""Deep multi-instance networks (Zhu et al., MICCAI 2017), pure PyTorch: the instance classifier and the three losses.

The backbone's last feature map f [B, C, h, w] is a bag of h·w instances, one per position (each sees a patch of the
image through its receptive field). The same small classifier runs at every position ("logistic regression with weight
sharing": three 1×1 convolutions) and gives each instance a logit z_ij, the log-odds that its patch is malignant. The
image is malignant iff its most malignant instance is, so the image probability is p = max_ij σ(z_ij), and since σ is
increasing its logit is max_ij z_ij: the image logit never goes through a probability (no log(p) to overflow).

The three schemes differ only in the instance classifier's last layer and the loss (``docs/models/mil.md``):

* ``max``: 2-class softmax per position (scores s⁰, s¹): r_ij = softmax(s_ij)₁ = σ(s¹_ij − s⁰_ij), so z = s¹ − s⁰;
  L = CE(max r, y);
* ``label_assign``: sigmoid per position, r = σ(z); the instances sorted by r, the top k get the image label y and the
  others 0; L = mean BCE over every instance; the image score is max r;
* ``sparse``: sigmoid per position; L = CE(max r, y) + μ‖r‖₁ (few instances of a bag are malignant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bilatcf.errors import ConfigError
from bilatcf.models.outputs import BilateralOutput

#: The three schemes of Zhu et al. §2.
Variant = Literal["max", "label_assign", "sparse"]


@dataclass
class MILOutput(BilateralOutput):
    """The model's record plus what the losses read beyond it.

    Attributes:
        instance_logits: [B, 1, h, w] z_ij, the malignancy log-odds of every instance (``cam`` and ``explanation``
            are σ(z), the patch-probability map).
    """

    instance_logits: Tensor | None = None


class InstanceClassifier(nn.Module):
    """1×1 conv → ReLU → 1×1 conv → ReLU → 1×1 conv: one classifier shared by every position of the feature map.

    Args:
        in_channels: channels of the backbone's feature map.
        channels: width of the two hidden 1×1 convolutions (Zhu et al.: 128).
        classes: 2 (a softmax over benign/malignant per position, ``max``) or 1 (a sigmoid, the other schemes).
    """

    def __init__(self, in_channels: int, channels: int = 128, classes: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, classes, 1),
        )

    def forward(self, features: Tensor) -> Tensor:
        """Instance logits z [B, 1, h, w]: log-odds of the malignant class at each position."""
        scores = self.layers(features)
        if scores.shape[1] == 2:
            # log(softmax₁ / softmax₀) = s¹ − s⁰: the softmax's malignant log-odds, computed without the softmax.
            return scores[:, 1:] - scores[:, :1]
        return scores


def image_logit(instance_logits: Tensor) -> Tensor:
    """logit(max_ij σ(z_ij)) = max_ij z_ij [B]: the image's malignancy logit is its top instance's."""
    return instance_logits.amax(dim=(1, 2, 3))


def image_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """CE(p, y) = −[y log p + (1 − y) log(1 − p)] with p = σ(logits), mean over images with a known label (≥ 0)."""
    known = labels >= 0
    if not known.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known].float(), labels[known].float())


def assigned_labels(instance_logits: Tensor, labels: Tensor, top_k: int) -> Tensor:
    """Label assignment: the ``top_k`` highest-scoring instances of each image get its label, the others 0 →
    [B, 1, h, w] (a negative image's instances are all 0; ties are broken by ``torch.topk``).

    Raises:
        ConfigError: ``top_k`` is larger than the bag (the feature map's h·w positions).
    """
    scores = instance_logits.detach().flatten(1)
    if top_k > scores.shape[1]:
        h, w = instance_logits.shape[-2:]
        raise ConfigError(
            f"mil: model.top_k={top_k} is larger than the bag: the feature map has {h}×{w} = {h * w} positions. "
            "Lower --model.top_k, or use larger images or a smaller --model.output_stride."
        )
    top = scores.topk(top_k, dim=1).indices
    targets = torch.zeros_like(scores, dtype=torch.float32)
    targets.scatter_(1, top, labels.float()[:, None].expand(-1, top_k))
    return targets.view_as(instance_logits)


def label_assignment_loss(logits: Tensor, instance_logits: Tensor, labels: Tensor, top_k: int) -> Tensor:
    """Mean BCE over every instance of the images with a known label, against :func:`assigned_labels`.

    The top instance's logit is the image logit (:func:`image_logit`), so it is read from ``logits``: the same value,
    and the image score takes part in this loss as in the other two schemes.
    """
    known = labels >= 0
    targets = assigned_labels(instance_logits, labels.clamp_min(0), top_k).flatten(1)
    scores = instance_logits.flatten(1).float()
    top = scores.detach().argmax(dim=1, keepdim=True)
    scores = scores.scatter(1, top, logits.float()[:, None])
    if not known.any():
        return scores.sum() * 0.0
    return F.binary_cross_entropy_with_logits(scores[known], targets[known])


def sparsity_penalty(probabilities: Tensor) -> Tensor:
    """‖r‖₁ = Σ_ij |r_ij| of each image's patch-probability map [B, 1, h, w], mean over the batch (unweighted)."""
    return probabilities.float().abs().flatten(1).sum(dim=1).mean()
