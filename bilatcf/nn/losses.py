"""Loss functions as small pure functions, each named after the equation it implements.

Reductions: the GAN, gradient-penalty and cycle losses return a scalar (mean over the batch and any patch map). The CGN
distances and the hinge return one value per sample ([B]) because the paper's losses are per sample (Eq. 14) and the
triplet hinge must be applied before averaging over the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from bilatcf.errors import ConfigError

GanMode = Literal["bce", "lsgan", "wgan"]


def gan_loss(
    logits: Tensor, real: bool, mode: GanMode = "bce", weight: Tensor | None = None, per_sample: bool = False
) -> Tensor:
    """Adversarial loss of discriminator outputs against the label ``real``, averaged over all elements (in float32).

    ``bce``: binary cross-entropy on logits (original GAN). ``lsgan``: mean squared error to 1 (real) or 0 (fake).
    ``wgan``: −mean(logits) for real, +mean(logits) for fake, so that the critic loss is
    ``gan_loss(D(x), True) + gan_loss(D(G(z)), False)`` = E[D(G(z))] − E[D(x)] and the generator loss is
    ``gan_loss(D(G(z)), True)`` = −E[D(G(z))], the same call pattern as the other two modes.

    ``weight`` [B, 1, h, w] (e.g. an estimated lesion area, CGN Eq. 17–18) weights the patches of a patch output
    [B, 1, h', w']: it is resized to the patch map and renormalised to sum 1 per sample, and the loss is the weighted
    sum per sample, averaged over the batch. ``per_sample``: return the [B] per-sample losses instead of their mean
    (to weight or select samples with a denominator that does not depend on the selection, as DDP parity needs).
    """
    logits = logits.float()
    if mode == "bce":
        per_patch = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)), reduction="none")
    elif mode == "lsgan":
        per_patch = (logits - float(real)).pow(2)
    elif mode == "wgan":
        per_patch = -logits if real else logits
    else:
        raise ConfigError(f"Unknown GAN loss mode {mode!r}; choose 'bce', 'lsgan' or 'wgan'.")
    if weight is None:
        per_sample_loss = per_patch.flatten(1).mean(dim=1) if per_patch.dim() > 1 else per_patch
    else:
        weight = weight.float()
        if weight.shape[-2:] != logits.shape[-2:]:
            weight = F.interpolate(weight, size=logits.shape[-2:], mode="bilinear", align_corners=False)
        weight = weight / weight.flatten(1).sum(dim=1).clamp_min(1e-12)[:, None, None, None]
        per_sample_loss = (per_patch * weight).flatten(1).sum(dim=1)
    return per_sample_loss if per_sample else per_sample_loss.mean()


def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, epsilon: Tensor | None = None
) -> Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): E[(‖∇D(x̂)‖₂ − 1)²] at x̂ = ε·real + (1 − ε)·fake, ε ~ U(0, 1) per sample.

    The gradient is flattened per sample (not per channel or per pixel), and built with ``create_graph=True`` so that
    the penalty trains the critic. ``real`` and ``fake`` are detached: the penalty never reaches the generator. A critic
    with a patch output is penalised on the gradient of the sum of its patch scores. ``epsilon`` [B]: the mixing
    weights (e.g. from :meth:`BilateralModule.sample_random`, so DDP and resumed runs draw the same); None draws them.
    """
    if epsilon is None:
        epsilon = torch.rand(real.shape[0], device=real.device)
    epsilon = epsilon.to(real.dtype).reshape(real.shape[0], *[1] * (real.dim() - 1))
    mixed = (epsilon * real.detach() + (1 - epsilon) * fake.detach()).requires_grad_(True)
    (gradient,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    norm = (gradient.flatten(1).pow(2).sum(dim=1) + 1e-12).sqrt()  # the epsilon keeps the gradient finite at norm 0
    return (norm - 1).pow(2).mean()


def chamfer_distance(a: Tensor, b: Tensor, reduction: Literal["mean", "sum"] = "mean") -> Tensor:
    """Symmetric chamfer distance between point sets a [B, N, C] and b [B, M, C], one value per sample [B].

    With d(p, S) = min_{s∈S} ‖p − s‖²₂ (squared Euclidean distance to the nearest point of the other set):
    ``sum`` = Σ_{p∈a} d(p, b) + Σ_{q∈b} d(q, a); ``mean`` = that sum / (N + M), the mean over all points of both sets.
    With a, b the h·w positions of two feature maps (N = M = hw), ``mean`` is exactly CGN Eq. 11 (denominator 2hw).

    Distances are computed in float32 via ‖p‖² + ‖q‖² − 2p·q (memory B·N·M, not B·N·M·C), outside autocast.
    """
    if reduction not in ("mean", "sum"):
        raise ConfigError(f"Unknown chamfer reduction {reduction!r}; choose 'mean' or 'sum'.")
    with torch.autocast(device_type=a.device.type, enabled=False):
        a32, b32 = a.float(), b.float()
        squared = (
            a32.pow(2).sum(-1, keepdim=True) + b32.pow(2).sum(-1).unsqueeze(1) - 2 * a32 @ b32.transpose(1, 2)
        ).clamp_min(0)  # [B, N, M]
        total = squared.min(dim=2).values.sum(dim=1) + squared.min(dim=1).values.sum(dim=1)
    return total / (a.shape[1] + b.shape[1]) if reduction == "mean" else total


def feature_map_points(features: Tensor) -> Tensor:
    """A feature map [B, C, h, w] as the point set [B, h·w, C] of its spatial positions (input of chamfer_distance)."""
    return features.flatten(2).transpose(1, 2)


def weighted_feature_distance(target: Tensor, counterfactual: Tensor, weight: Tensor | None = None) -> Tensor:
    """CGN Eq. 10: d_tc = Σ_ij w_ij ‖H_T^ij − H_C^ij‖²₂ / (h·w − 1), one value per sample [B].

    ``weight`` [B, 1, h, w] is 1 − Ω for the feedback triplet (None: all ones). A 1×1 map would make the paper's
    denominator 0; it is clamped to 1 there. Summed in float32 (a bf16 sum over C·h·w terms loses ~1% of the value).
    """
    squared = (target.float() - counterfactual.float()).pow(2).sum(dim=1, keepdim=True)  # [B, 1, h, w]
    if weight is not None:
        squared = squared * weight.float()
    height, width = target.shape[-2:]
    return squared.flatten(1).sum(dim=1) / max(height * width - 1, 1)


def triplet_hinge(d_pos: Tensor, d_neg: Tensor, margin: float) -> Tensor:
    """CGN Eq. 12: max(0, d_pos + margin − d_neg), element-wise (d_pos = d_tc, d_neg = d_rc, margin = β)."""
    return (d_pos + margin - d_neg).clamp_min(0)


def negative_embedding_loss(logits: Tensor) -> Tensor:
    """CGN Eq. 13: −log(1 − sigmoid(z)) = softplus(z), element-wise; finite for any logit, unlike the literal form."""
    return F.softplus(logits)


def cycle_loss(a: Tensor, b: Tensor, kind: Literal["l1", "mse"] = "l1") -> Tensor:
    """Cycle-consistency (or identity/reconstruction) loss: mean |a − b| (CycleGAN) or mean (a − b)² (BR-GAN)."""
    if kind == "l1":
        return F.l1_loss(a, b)
    if kind == "mse":
        return F.mse_loss(a, b)
    raise ConfigError(f"Unknown cycle loss kind {kind!r}; choose 'l1' or 'mse'.")
