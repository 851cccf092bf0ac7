"""The explanation maps of a plain single-image classifier, pure PyTorch: CAM and Grad-CAM of the positive class.

The classifier is ``vanilla``'s: backbone → global average pooling → linear (one logit z for the positive class, the
lesion). Both maps are computed on the backbone's output, the last convolutional feature map f [B, C, h, w]:

* CAM (Zhou et al. 2016): M = Σ_c w_c f_c, the map the linear head pools (its spatial mean is z − b);
* Grad-CAM (Selvaraju et al. 2017): M = ReLU(Σ_c α_c f_c) with α_c the spatial mean of ∂z/∂f_c, by autograd.

For this GAP-linear head ∂z/∂f_c(i, j) = w_c / (h·w), so Grad-CAM = ReLU(CAM) / (h·w): the two maps differ only by
the ReLU (and a scale that the min–max normalisation removes).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from bilatcf.nn.cam import class_activation_map, grad_cam, normalize_map
from bilatcf.nn.heads import LinearCAMHead

#: Which map is the explanation.
MapKind = Literal["cam", "gradcam"]


def positive_class_map(features: Tensor, head: LinearCAMHead, kind: MapKind) -> Tensor:
    """The raw map [B, h, w] of the positive class on ``features`` (the feature map the head pools).

    Grad-CAM differentiates the head's logit with respect to a copy of the features, so it works in every evaluation
    context: under ``torch.no_grad`` and under Lightning's ``torch.inference_mode`` (where no graph can be built, the
    copy is made outside it), and in training without touching the parameters' gradients. Only the head's small graph
    is built; the head must treat samples independently (no batch norm in training mode).
    """
    if kind == "cam":
        positive = torch.ones(features.shape[0], dtype=torch.long, device=features.device)
        return class_activation_map(features, head.linear.weight[0], class_index=positive)
    with torch.inference_mode(False), torch.enable_grad():
        leaf = features.detach().clone().requires_grad_(True)
        logits, _ = head(leaf)
        return grad_cam(leaf, logits)


def explanation_map(features: Tensor, head: LinearCAMHead, kind: MapKind, size: tuple[int, int]) -> Tensor:
    """The positive-class map upsampled (bilinear) to ``size`` and min–max normalised per image → [B, 1, H, W] in
    [0, 1] (CAM's own visualisation). A CAM is signed; normalising it keeps its most negative evidence at 0 instead of
    letting the metrics' |map| turn it into a hot spot."""
    return normalize_map(positive_class_map(features, head, kind), size)
