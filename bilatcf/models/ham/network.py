"""HAM (Ouyang et al., IEEE TMI 2020), pure PyTorch: foreground attention, LSE pooling, the two bias-free heads, the
refined CAMs and the losses that tie the abnormality map to the per-type maps.

Shapes: images [B, 1, H, W]; the backbone's last stage x [B, C, h, w]; the fused map f [B, hidden, h, w] that both
heads pool; maps at image size [B, K, H, W] in (0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bilatcf.nn.backbones import Backbone
from bilatcf.nn.cam import normalize_map

#: The lesion-type sub-classes of the per-type head, in head order.
LESION_TYPES = ("mass", "calcification", "distortion")
#: A finding kind belongs to the first type whose name it contains (the synthetic generator's kinds are
#: benign_/malignant_ mass and calcification, and architectural_distortion).
TYPE_KEYWORDS = {"mass": "mass", "calcification": "calc", "distortion": "distortion"}
#: The refinement sigmoid(SHARPNESS · (M − SHARPEN_AT)) of a min–max normalised CAM M.
SHARPNESS = 100.0
SHARPEN_AT = 0.4


def lse_pool(features: Tensor, r: float) -> Tensor:
    """Log-sum-exp pooling over positions, [B, C, h, w] → [B, C]: (1/r) · log((1/hw) Σ_ij exp(r · f_ij)).

    It lies between the mean (r → 0) and the max (r → ∞) of each channel. Computed with ``logsumexp`` (so large r · f
    never overflows), in float32 at least.
    """
    flat = features.flatten(2)
    flat = flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat
    return (torch.logsumexp(r * flat, dim=2) - math.log(flat.shape[2])) / r


def sharpen(maps: Tensor) -> Tensor:
    """HAM's refinement of a min–max normalised map: sigmoid(100 · (M − 0.4)), a soft threshold at 0.4."""
    return torch.sigmoid(SHARPNESS * (maps - SHARPEN_AT))


def refined_maps(features: Tensor, weight: Tensor, size: tuple[int, int]) -> Tensor:
    """CAMs M_k = Σ_c w_kc f_c of a bias-free head with weight [K, C], the weights detached, upsampled to ``size``,
    min–max normalised per map and sharpened → [B, K, H, W].

    The weights are detached so the map losses shape the features, never the heads.
    """
    maps = torch.einsum("bchw,kc->bkhw", features, weight.detach().to(features.dtype))
    batch, classes = maps.shape[:2]
    normalised = normalize_map(maps.reshape(batch * classes, 1, *maps.shape[2:]), size)
    return sharpen(normalised.reshape(batch, classes, *size))


def bound_loss(type_maps: Tensor, abnormal_map: Tensor, present: Tensor, eligible: Tensor) -> Tensor:
    """Each present type's map inside the abnormality map: mean over positions of ReLU(M_k − M_abn), averaged over the
    present types of a sample, summed over ``eligible`` samples and divided by the batch size.

    Args:
        type_maps: [B, K, H, W] refined per-type maps.
        abnormal_map: [B, 1, H, W] refined abnormality map.
        present: [B, K] bool, the types a sample has.
        eligible: [B] bool, samples the constraint applies to (positive, with a known type).
    """
    excess = F.relu(type_maps - abnormal_map).mean(dim=(2, 3))
    per_sample = (excess * present).sum(1) / present.sum(1).clamp_min(1)
    return (per_sample * eligible).sum() / len(eligible)


def union_loss(type_maps: Tensor, abnormal_map: Tensor, present: Tensor, eligible: Tensor) -> Tensor:
    """The abnormality map covered by the union (pixel max) of the present types' maps: mean over positions of
    ReLU(M_abn − max_k M_k), summed over ``eligible`` samples and divided by the batch size (arguments as
    :func:`bound_loss`)."""
    union = type_maps.masked_fill(~present[:, :, None, None], 0.0).amax(dim=1, keepdim=True)
    per_sample = F.relu(abnormal_map - union).mean(dim=(1, 2, 3))
    return (per_sample * eligible).sum() / len(eligible)


def box_loss(abnormal_map: Tensor, mask: Tensor, eligible: Tensor) -> Tensor:
    """MSE between the refined abnormality map and the lesion mask, summed over ``eligible`` samples and divided by
    the batch size."""
    per_sample = (abnormal_map - mask).pow(2).mean(dim=(1, 2, 3))
    return (per_sample * eligible).sum() / len(eligible)


def type_bce(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-type BCE over the known entries (labels 0/1; −1 unknown is skipped), divided by the number of entries."""
    known = labels >= 0
    losses = F.binary_cross_entropy_with_logits(logits.float(), labels.clamp_min(0).float(), reduction="none")
    return (losses * known).sum() / labels.numel()


def lesion_type_labels(
    lesion_types: Sequence[Sequence[str] | None], abnormal: Tensor, types: Sequence[str] = LESION_TYPES
) -> Tensor:
    """Multi-hot type labels [B, K] (long; −1 unknown) from each target's finding kinds.

    A known lesion-free image (``abnormal == 0``) is 0 for every type. Kinds are matched by keyword
    (:data:`TYPE_KEYWORDS`); kinds of no listed type (e.g. an asymmetry) are ignored. An image whose kinds are missing
    (``None``: manifest data carries none), or name no listed type although it may have a lesion, is unknown (−1).
    """
    rows = []
    for kinds, flag in zip(lesion_types, abnormal.tolist(), strict=True):
        if flag == 0:
            rows.append([0] * len(types))
            continue
        hot = [int(any(TYPE_KEYWORDS[name] in kind for kind in kinds or ())) for name in types]
        rows.append(hot if any(hot) else [-1] * len(types))
    return torch.tensor(rows, dtype=torch.long, device=abnormal.device).reshape(len(rows), len(types))


def meta_lesion_types(meta: Sequence[Mapping]) -> list[Sequence[str] | None]:
    """Each pair's ``lesion_types`` from its batch meta (None where the data does not carry them)."""
    return [m.get("lesion_types") for m in meta]


class ForegroundAttention(nn.Module):
    """HAM's foreground attention on the last stage: out = γ · (x ⊙ a ⊙ s) + x, with γ initialised to 0.

    * channel attention a [B, C, 1, 1]: the softmax-pooled context Σ_j softmax_j(k · x_j) x_j (k a 1×1 conv to one
      channel, softmax over positions) through a bottleneck 1×1 conv → ReLU → 1×1 conv → sigmoid;
    * spatial attention s [B, 1, h, w]: 1×1 conv (C → C / reduction) → 3×3 conv (→ 1) → BN → sigmoid.

    γ = 0 makes the module the identity at initialisation, so training starts from the plain backbone. Convolutions
    whose bias a softmax or a batch norm would cancel have none (their gradient would be zero).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        inner = max(1, channels // reduction)
        self.context_key = nn.Conv2d(channels, 1, 1, bias=False)
        self.channel = nn.Sequential(
            nn.Conv2d(channels, inner, 1), nn.ReLU(inplace=True), nn.Conv2d(inner, channels, 1), nn.Sigmoid()
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(channels, inner, 1, bias=False),
            nn.Conv2d(inner, 1, 3, padding=1, bias=False),
            nn.BatchNorm2d(1),
            nn.Sigmoid(),
        )
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.softmax(self.context_key(x).flatten(2), dim=2)  # [B, 1, hw]
        context = torch.einsum("bcn,bn->bc", x.flatten(2), weights[:, 0])[:, :, None, None]
        return self.gamma * (x * self.channel(context) * self.spatial(x)) + x


class HAMNetwork(nn.Module):
    """Backbone → foreground attention → concat[attended, stage output] → 3×3 conv → BN → ReLU → channel dropout →
    LSE pooling → two bias-free linear heads (abnormal: 1 logit; per type: K logits).

    Args:
        backbone: the feature extractor (its last stage is the one attended).
        hidden: channels of the fused map f (the authors': 512).
        num_types: outputs of the per-type head.
        dropout: channel dropout probability on f in training.
        lse_r: the LSE pooling sharpness r.
        reduction: bottleneck reduction of the attention's 1×1 convs.
    """

    def __init__(
        self, backbone: Backbone, hidden: int, num_types: int, dropout: float, lse_r: float, reduction: int
    ) -> None:
        super().__init__()
        channels = backbone.out_channels
        self.backbone = backbone
        self.attention = ForegroundAttention(channels, reduction)
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * channels, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)
        )
        self.abnormal_head = nn.Linear(hidden, 1, bias=False)
        self.type_head = nn.Linear(hidden, num_types, bias=False)
        self.dropout = dropout
        self.lse_r = lse_r

    def forward(self, images: Tensor, dropout_noise: Tensor | None = None) -> Tensor:
        """The fused map f [B, hidden, h, w] both heads pool.

        In training, a channel is dropped where ``dropout_noise`` [B, hidden, 1, 1] (U(0, 1) draws) is below the
        dropout probability; without noise it is drawn from the global generator (pure-PyTorch use).
        """
        stage = self.backbone(images)
        fused = self.fuse(torch.cat([self.attention(stage), stage], dim=1))
        if not self.training or self.dropout == 0:
            return fused
        if dropout_noise is None:
            dropout_noise = torch.rand(fused.shape[0], fused.shape[1], 1, 1, device=fused.device)
        keep = (dropout_noise >= self.dropout).to(fused.dtype) / (1 - self.dropout)
        return fused * keep

    def abnormal_logits(self, fused: Tensor) -> Tensor:
        """[B] the abnormal-vs-normal logit (the task score)."""
        return self.abnormal_head(lse_pool(fused, self.lse_r)).squeeze(1)

    def type_logits(self, fused: Tensor) -> Tensor:
        """[B, K] one logit per lesion type."""
        return self.type_head(lse_pool(fused, self.lse_r))

    def abnormal_map(self, fused: Tensor, size: tuple[int, int]) -> Tensor:
        """[B, 1, H, W] the refined abnormality CAM."""
        return refined_maps(fused, self.abnormal_head.weight, size)

    def type_maps(self, fused: Tensor, size: tuple[int, int]) -> Tensor:
        """[B, K, H, W] the refined per-type CAMs."""
        return refined_maps(fused, self.type_head.weight, size)
