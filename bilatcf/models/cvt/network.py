"""CVT, the cross-view transformer of van Tulder et al. (MICCAI 2021), for bilateral pairs; pure PyTorch.

Each view goes through its own encoder up to the penultimate stage (ResNet: layer3). There the two views exchange
information by cross-view attention, in both directions: the target's positions query the reference, and the
reference's positions query the target. Each view then finishes its encoder (layer4), is pooled, and the two pooled
vectors are concatenated into one linear classifier.

One direction, with X the attending view's map and Y the other view's, both [B, C, h, w] read as sequences of
positions (a 1×1 convolution is the same linear map at every position):

* queries Q = X W_Q and keys K = Y' W_K, bias-free, ``heads`` × ``head_dim`` dimensions;
* values V = Y', the other view's features themselves (no value projection);
* pixel variant: Y' = Y, every position of the other view is a key; token variant: Y' = the T tokens of Y, each a
  spatial-softmax weighted mean of Y's positions (a convex combination of its features);
* per head softmax(Q_h K_hᵀ / √head_dim) V, the heads concatenated ([heads · C]) and merged by a linear map to C;
* combined with X: LayerNorm(X + Dropout(A)) (``layernorm``), X + Dropout(A) (``add``) or a linear map of
  [X, Dropout(A)] back to C (``concat``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bilatcf.nn.backbones import Backbone
from bilatcf.nn.cam import class_activation_map

#: Which positions of the other view are keys: all of them, or T spatial-softmax tokens summarising them.
Variant = Literal["pixel", "token"]
#: How the attention output joins the attending view's features.
Combine = Literal["layernorm", "add", "concat"]
#: U(0, 1) draws of shape [B, *shape] (``SampleRandom.rand``): dropout masks keyed on the samples.
Uniform = Callable[..., Tensor]


def keyed_dropout(x: Tensor, p: float, uniform: Uniform | None, training: bool) -> Tensor:
    """Inverted dropout of x [B, ...] with masks from ``uniform`` (drawn per sample, so DDP and resumed runs drop the
    same elements as a single uninterrupted run); without ``uniform``, ``F.dropout`` on torch's global generator."""
    if not training or p == 0:
        return x
    if uniform is None:
        return F.dropout(x, p, training=True)
    keep = uniform(*x.shape[1:]).to(x.device) >= p
    return x * keep.to(x.dtype) / (1 - p)


class SpatialTokenizer(nn.Module):
    """T tokens summarising a feature map: a 1×1 conv gives T maps, each softmaxed over the positions, and token t is
    the features averaged with map t's weights, so every token is a convex combination of the map's features.

    The conv has no bias: a constant added to a map does not change its softmax over positions.
    """

    def __init__(self, channels: int, tokens: int) -> None:
        super().__init__()
        self.maps = nn.Linear(channels, tokens, bias=False)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """features [B, S, C] (positions as a sequence) → tokens [B, T, C] and weights [B, T, S] (rows sum to 1)."""
        weights = F.softmax(self.maps(features).transpose(1, 2).float(), dim=-1).to(features.dtype)
        return weights @ features, weights


class CrossViewAttention(nn.Module):
    """One direction of cross-view attention: the positions of one view attend to the other view.

    Args:
        channels: C, channels of both views' maps (the encoders' trunk channels).
        heads: attention heads.
        head_dim: query/key dimensions per head (the scale is 1/√head_dim).
        variant: ``pixel`` (every position of the other view is a key) or ``token`` (its T tokens are).
        tokens: T, tokens of the ``token`` variant.
        combine: ``layernorm``, ``add`` or ``concat`` (see the module docstring).
        dropout: dropout rate on the merged attention output before it is combined.
    """

    def __init__(
        self, channels: int, heads: int, head_dim: int, variant: Variant, tokens: int, combine: Combine, dropout: float
    ) -> None:
        super().__init__()
        self.heads, self.head_dim, self.combine, self.dropout = heads, head_dim, combine, dropout
        self.query = nn.Linear(channels, heads * head_dim, bias=False)
        self.key = nn.Linear(channels, heads * head_dim, bias=False)
        self.tokenizer = SpatialTokenizer(channels, tokens) if variant == "token" else None
        self.merge = nn.Linear(heads * channels, channels)  # the 1×1 conv merging the heads
        self.norm = nn.LayerNorm(channels) if combine == "layernorm" else None
        self.fuse = nn.Linear(2 * channels, channels) if combine == "concat" else None

    def keys_and_values(self, other: Tensor) -> Tensor:
        """The other view's map [B, C, h, w] → what the keys and values are made of: [B, S, C] (S = h·w or T)."""
        sequence = other.flatten(2).transpose(1, 2)
        return sequence if self.tokenizer is None else self.tokenizer(sequence)[0]

    def attend(self, view: Tensor, other: Tensor) -> Tensor:
        """The merged attention output A [B, h·w, C] of ``view``'s positions over ``other`` (maps [B, C, h, w])."""
        queries = view.flatten(2).transpose(1, 2)
        values = self.keys_and_values(other)
        batch, length, channels = queries.shape

        def split(x: Tensor) -> Tensor:  # [B, L, heads · d] → [B, heads, L, d]
            return x.view(batch, x.shape[1], self.heads, self.head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(self.query(queries)),
            split(self.key(values)),
            values.unsqueeze(1).expand(-1, self.heads, -1, -1),  # every head's values are the features themselves
            scale=self.head_dim**-0.5,
        )  # [B, heads, L, C]
        return self.merge(out.transpose(1, 2).reshape(batch, length, self.heads * channels))

    def forward(self, view: Tensor, other: Tensor, uniform: Uniform | None = None) -> Tensor:
        """``view``'s map [B, C, h, w] with the other view's information combined in, same shape."""
        x = view.flatten(2).transpose(1, 2)
        attention = keyed_dropout(self.attend(view, other), self.dropout, uniform, self.training)
        if self.combine == "layernorm":
            x = self.norm(x + attention)
        elif self.combine == "add":
            x = x + attention
        else:
            x = self.fuse(torch.cat([x, attention], dim=-1))
        return x.transpose(1, 2).reshape(view.shape)


class CVTNetwork(nn.Module):
    """Two encoders (one shared if ``reference_encoder`` is the target's) with bidirectional cross-view attention
    between their penultimate and last stages, GAP per view, one linear classifier on the concatenation.

    Args:
        target_encoder: the target view's backbone, run in two halves (``forward_trunk``, ``forward_last``).
        reference_encoder: the reference view's backbone (the same object for a shared encoder).
        heads, head_dim, variant, tokens, combine, dropout: of both attention directions (:class:`CrossViewAttention`).
    """

    def __init__(
        self,
        target_encoder: Backbone,
        reference_encoder: Backbone,
        heads: int,
        head_dim: int,
        variant: Variant,
        tokens: int,
        combine: Combine,
        dropout: float,
    ) -> None:
        super().__init__()
        self.target_encoder = target_encoder
        self.reference_encoder = reference_encoder
        self.shared_encoder = reference_encoder is target_encoder
        channels = target_encoder.trunk_channels
        # Each direction has its own projections: "target attends to the reference" and the reverse.
        self.target_attention = CrossViewAttention(channels, heads, head_dim, variant, tokens, combine, dropout)
        self.reference_attention = CrossViewAttention(channels, heads, head_dim, variant, tokens, combine, dropout)
        self.out_channels = target_encoder.out_channels
        self.classifier = nn.Linear(2 * self.out_channels, 1)

    def trunks(self, target: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
        """Both views' penultimate-stage maps (one batched call for a shared encoder)."""
        if self.shared_encoder:
            return self.target_encoder.forward_trunk(torch.cat([target, reference])).chunk(2)
        return self.target_encoder.forward_trunk(target), self.reference_encoder.forward_trunk(reference)

    def lasts(self, target: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
        """Both views' last-stage maps from their attended trunk maps."""
        if self.shared_encoder:
            return self.target_encoder.forward_last(torch.cat([target, reference])).chunk(2)
        return self.target_encoder.forward_last(target), self.reference_encoder.forward_last(reference)

    def forward(
        self, target: Tensor, reference: Tensor, uniform: Uniform | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return (logits [B], cam [B, 1, h, w], target map, reference map [B, C_out, h, w])."""
        target_trunk, reference_trunk = self.trunks(target, reference)
        target_mixed = self.target_attention(target_trunk, reference_trunk, uniform)
        reference_mixed = self.reference_attention(reference_trunk, target_trunk, uniform)
        target_map, reference_map = self.lasts(target_mixed, reference_mixed)
        pooled = torch.cat([target_map.mean(dim=(2, 3)), reference_map.mean(dim=(2, 3))], dim=1)
        logits = self.classifier(pooled).squeeze(1)
        return logits, self.target_cam(target_map, logits), target_map, reference_map

    def target_cam(self, target_map: Tensor, logits: Tensor) -> Tensor:
        """CAM of the predicted class on the target's last map, from the classifier's target half: z = w_T·GAP(f_T) +
        w_R·GAP(f_R) + b, so Σ_c w_T,c f_T,c is where the target's share of the logit comes from (signed + for a
        positive prediction, − for a negative one, as ``LinearCAMHead``)."""
        weight = self.classifier.weight[0, : self.out_channels]
        return class_activation_map(target_map, weight, class_index=(logits.detach() >= 0).long()).unsqueeze(1)
