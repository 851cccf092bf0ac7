"""Class activation maps: CAM (Zhou et al. 2016) from a linear head after global average pooling, and Grad-CAM
(Selvaraju et al. 2017) for any differentiable score; plus the map post-processing every method shares."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_activation_map(features: Tensor, weight: Tensor, class_index: Tensor | None = None) -> Tensor:
    """CAM M_k(i, j) = Σ_c w_kc f_c(i, j) of a head ``logit = W·GAP(f) + b``, for features [B, C, h, w] → [B, h, w].

    Since GAP is linear, the mean of M_k over positions is the logit of class k minus its bias: M_k shows where that
    logit comes from. ``weight`` is [K, C] (one row per class) or [C] for a single-logit binary head; the latter has
    the implicit logits (−z, +z) up to a shared constant, so the map of class 1 is +w·f and that of class 0 is −w·f.

    Args:
        features: the map the head pools.
        weight: the head's linear weight.
        class_index: [B] class per sample (0/1 for a binary head). None: the class the head predicts *without its bias*
            (argmax of W·GAP(f); sign of w·GAP(f) for a binary head). Pass ``(logits > 0).long()`` or
            ``logits.argmax(1)`` from the model when its bias matters.
    """
    if weight.dim() == 1:
        maps = torch.einsum("bchw,c->bhw", features, weight)
        positive = maps.mean(dim=(1, 2)) >= 0 if class_index is None else class_index.bool()
        return torch.where(positive[:, None, None], maps, -maps)
    maps = torch.einsum("bchw,kc->bkhw", features, weight)
    if class_index is None:
        class_index = maps.mean(dim=(2, 3)).argmax(dim=1)
    return maps[torch.arange(maps.shape[0], device=maps.device), class_index]


def grad_cam(features: Tensor, score: Tensor) -> Tensor:
    """Grad-CAM: ReLU(Σ_c α_c f_c) with α_c the spatial mean of ∂score/∂f_c, per sample → [B, h, w] (detached).

    ``features`` [B, C, h, w] must require grad and ``score`` [B] (e.g. the logit of the class to explain) must be
    computed from it, one score per sample with no interaction across the batch (eval mode for batch norm). The graph is
    retained so that the caller can still back-propagate through ``score``.
    """
    if not features.requires_grad:
        raise ValueError(
            "grad_cam needs features that require grad and are part of score's graph: compute them "
            "under torch.enable_grad(), outside torch.inference_mode (Lightning: Trainer(inference_mode="
            "False)), and call .requires_grad_() on a detached map before computing the score."
        )
    (gradient,) = torch.autograd.grad(score.sum(), features, retain_graph=True)
    alpha = gradient.mean(dim=(2, 3), keepdim=True)
    return F.relu((alpha * features).sum(dim=1)).detach()


def normalize_map(cam: Tensor, size: tuple[int, int]) -> Tensor:
    """Upsample a map [B, h, w] or [B, 1, h, w] bilinearly to ``size``, min–max it to [0, 1] per image → [B, 1, H, W].

    A constant map carries no location, so it becomes all zeros (not NaN).
    """
    maps = cam.unsqueeze(1) if cam.dim() == 3 else cam
    maps = F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)
    low = maps.amin(dim=(2, 3), keepdim=True)
    spread = maps.amax(dim=(2, 3), keepdim=True) - low
    scaled = (maps - low) / spread.clamp_min(torch.finfo(maps.dtype).tiny)
    return torch.where(spread > 0, scaled, torch.zeros_like(maps))


def spatial_softmax(cam: Tensor) -> Tensor:
    """Softmax over the spatial positions of each map, [B, h, w] or [B, 1, h, w] → same shape, summing to 1 per map.

    This is CGN's prediction feedback Ω (the estimated lesion area), whose complement 1 − Ω weights Eq. 10.
    """
    return F.softmax(cam.flatten(-2).float(), dim=-1).view_as(cam).to(cam.dtype)
