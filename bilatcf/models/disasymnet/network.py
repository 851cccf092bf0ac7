"""DisAsymNet's networks (Wang et al., MICCAI 2023 §2), pure PyTorch.

* :class:`AsyC` — the asymmetric transformer-based classifier: a shared encoder ψ_e, the asymmetric transformer ψ_asyt
  (:class:`AsymmetricTransformer`, N blocks of self- and cross-attention in parallel), a per-side abnormal classifier on
  f_out with its class activation map, and an asymmetry classifier on |f_out^r − f_out^l|.
* :class:`AsyD` — the weight-shared U-Net-like decoder ψ_g: f_out (and the encoder's intermediate stages as skips) →
  a normal image x_n and an abnormal image x_ab per side.
* :class:`DisAsymNetNetwork` — both, plus the frozen discriminator ψ_d of the self-adversarial scheme: a second AsyC
  whose weights are copied in place from AsyC before every training step (``DisAsymNetNetwork.sync_discriminator``).

Sides are stacked on the batch dimension everywhere: the N targets first, then their N references (bilatcf's pair is
(target, reference), the paper's (x^r, x^l) in either order). See ``docs/models/disasymnet.md``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bilatcf.errors import ConfigError
from bilatcf.nn.backbones import Backbone
from bilatcf.nn.blocks import ConvNormAct
from bilatcf.nn.cam import class_activation_map

#: Base of the sinusoidal position encoding's frequencies (Vaswani et al. 2017).
POSITION_BASE = 10000.0


def position_encoding(height: int, width: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """2-D sinusoidal position encoding [height·width, dim]: a quarter of the channels each for sin/cos of the row and
    of the column (row-major token order, as ``flatten(2)`` of a feature map)."""
    quarter = math.ceil(dim / 4)
    frequencies = POSITION_BASE ** (-torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    rows = torch.arange(height, device=device, dtype=torch.float32)[:, None] * frequencies
    cols = torch.arange(width, device=device, dtype=torch.float32)[:, None] * frequencies
    grid = torch.cat(
        [
            rows.sin()[:, None].expand(height, width, quarter),
            rows.cos()[:, None].expand(height, width, quarter),
            cols.sin()[None].expand(height, width, quarter),
            cols.cos()[None].expand(height, width, quarter),
        ],
        dim=-1,
    )
    return grid[..., :dim].reshape(height * width, dim).to(dtype)


def side_rows(index: Tensor, pairs: int) -> Tensor:
    """Rows of both sides of the pairs ``index`` in a side-stacked tensor of ``pairs`` pairs (targets, references)."""
    return torch.cat([index, index + pairs])


def contralateral(sides: Tensor) -> Tensor:
    """The other side of every row of a side-stacked tensor ([targets; references] → [references; targets])."""
    return sides.roll(sides.shape[0] // 2, dims=0)


class AsymmetricBlock(nn.Module):
    """One block of ψ_asyt (§2.1): self-attention (SA) and cross-attention (CA) in parallel, fused with the input.

    f_Q, f_K, f_V are linear projections of the (layer-normed) tokens of each side; SA attends with the side's own keys
    and values, CA with the contralateral side's: f_CA^r = MHA(f_Q^r, f_K^l, f_V^l). Both are multi-head attentions
    (``scaled_dot_product_attention``; the paper: 8 heads) with their own output projections. concat[f, f_SA, f_CA]
    goes through an FFN back to f's width, added to f (pre-norm residual). The position encoding enters queries and
    keys only, so it does not accumulate in f_out (which the CAM and the decoder read). The FFN's last layer starts at
    zero: every block starts as the identity (f_out = f before training).

    Args:
        dim: token width (the encoder's channels, so that f_out has f's size).
        heads: attention heads; must divide ``dim``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(
                f"disasymnet: transformer_heads={heads} does not divide the encoder's {dim} channels; choose a divisor "
                f"of {dim} (the paper uses 8 heads on ResNet-18's 512 channels)."
            )
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.self_out, self.cross_out = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.fuse = nn.Sequential(nn.LayerNorm(3 * dim), nn.Linear(3 * dim, dim), nn.GELU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.fuse[-1].weight)
        nn.init.zeros_(self.fuse[-1].bias)

    def forward(self, tokens: Tensor, position: Tensor) -> Tensor:
        """``tokens`` [2N, L, dim] (side-stacked), ``position`` [L, dim] → the same shape."""
        normed = self.norm(tokens)
        query = self._split(self.query(normed + position))
        key = self._split(self.key(normed + position))
        value = self._split(self.value(normed))
        f_sa = F.scaled_dot_product_attention(query, key, value)
        f_ca = F.scaled_dot_product_attention(query, contralateral(key), contralateral(value))
        fused = torch.cat([tokens, self.self_out(self._merge(f_sa)), self.cross_out(self._merge(f_ca))], dim=-1)
        return tokens + self.fuse(fused)

    def _split(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def _merge(self, x: Tensor) -> Tensor:
        batch, heads, length, width = x.shape
        return x.transpose(1, 2).reshape(batch, length, heads * width)


class AsymmetricTransformer(nn.Module):
    """ψ_asyt: ``depth`` asymmetric blocks on the flattened feature-map tokens of both sides (f_out has f's shape)."""

    def __init__(self, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([AsymmetricBlock(dim, heads) for _ in range(depth)])

    def forward(self, features: Tensor) -> Tensor:
        """Side-stacked feature maps [2N, C, h, w] → f_out of the same shape."""
        batch, channels, height, width = features.shape
        tokens = features.flatten(2).transpose(1, 2)
        position = position_encoding(height, width, channels, features.device, tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens, position)
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


@dataclass
class AsyCPass:
    """What one AsyC pass computes for N pairs (sides stacked: the N targets, then the N references).

    Attributes:
        side_logits: [2N] abnormal logit of every side.
        asym_logits: [N] asymmetry logit of every pair.
        class_maps: [2N, 1, h, w] CAM of the abnormal class, Σ_c w_c f_out,c(i, j).
        features: [2N, C, h, w] f_out.
        stages: the encoder's intermediate stage outputs (shallow to deep, [2N, c_i, h_i, w_i]) when recorded.
    """

    side_logits: Tensor
    asym_logits: Tensor
    class_maps: Tensor
    features: Tensor
    stages: list[Tensor] = field(default_factory=list)


class AsyC(nn.Module):
    """The asymmetric transformer-based classification module (§2.1).

    Args:
        backbone: the shared encoder ψ_e (last feature map f).
        transformer_depth: blocks of ψ_asyt; None drops ψ_asyt (the paper's "AsyC ablated": f_out = f, and the
            asymmetry classifier reads the concatenated pooled features of the two sides instead of their difference).
        transformer_heads: attention heads of every block.
    """

    def __init__(self, backbone: Backbone, transformer_depth: int | None, transformer_heads: int) -> None:
        super().__init__()
        channels = backbone.out_channels
        self.encoder = backbone
        self.transformer = (
            None if transformer_depth is None else AsymmetricTransformer(channels, transformer_depth, transformer_heads)
        )
        self.abnormal_head = nn.Linear(channels, 1)
        self.asymmetry_head = nn.Linear(channels if self.transformer is not None else 2 * channels, 1)

    def forward(self, target: Tensor, reference: Tensor) -> AsyCPass:
        pairs = len(target)
        features = self.encoder(torch.cat([target, reference]))
        if self.transformer is not None:
            features = self.transformer(features)
        pooled = features.mean(dim=(2, 3))
        side_logits = self.abnormal_head(pooled).squeeze(1)
        if self.transformer is not None:
            # f_out^asy = |f_out^r − f_out^l|, pooled after the difference (position by position).
            asymmetry = (features[:pairs] - features[pairs:]).abs().mean(dim=(2, 3))
        else:
            asymmetry = torch.cat([pooled[:pairs], pooled[pairs:]], dim=1)
        abnormal = torch.ones(len(features), dtype=torch.long, device=features.device)
        class_maps = class_activation_map(features, self.abnormal_head.weight[0], abnormal).unsqueeze(1)
        return AsyCPass(side_logits, self.asymmetry_head(asymmetry).squeeze(1), class_maps, features)


def stage_modules(backbone: Backbone) -> list[tuple[nn.Module, int]]:
    """The encoder's intermediate stages (shallow to deep, the last one excluded) with their channel counts.

    The timm feature extractors list every stage in ``feature_info`` even when only the last is returned; a
    ``FeatureListNet`` renames ``stages.0`` to ``stages_0``. A backbone without that information (AlexNet) or whose
    stage modules cannot be found gives none (the decoder then upsamples without skips).
    """
    info = getattr(getattr(backbone.model, "feature_info", None), "info", None)
    if not info:
        return []
    found = []
    for stage in list(info)[:-1]:
        name = stage["module"]
        module = None
        for candidate in (name, name.replace(".", "_", 1)):
            try:
                module = backbone.model.get_submodule(candidate)
                break
            except AttributeError:
                continue
        if module is None:
            return []
        found.append((module, int(stage["num_chs"])))
    return found


class StageTaps:
    """Forward hooks that keep the outputs of the encoder's intermediate stages, only inside :meth:`recording`.

    A plain object, not a module: it holds no weights. Its hooks are bound methods, so a deep copy of the network
    rebinds them to the copy's taps.
    """

    def __init__(self, backbone: Backbone) -> None:
        stages = stage_modules(backbone)
        self.channels = [channels for _, channels in stages]
        self._outputs: list[Tensor] | None = None
        for module, _ in stages:
            module.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if self._outputs is not None:
            self._outputs.append(output)

    @contextmanager
    def recording(self) -> Iterator[list[Tensor]]:
        self._outputs = []
        try:
            yield self._outputs
        finally:
            self._outputs = None


def _decoder_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        ConvNormAct(in_channels, out_channels, 3, norm="batch"),
        ConvNormAct(out_channels, out_channels, 3, norm="batch"),
    )


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    size = tuple(size)
    return x if tuple(x.shape[-2:]) == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class AsyD(nn.Module):
    """ψ_g (§2.2): f_out → (x_n, x_ab), one decoder shared by both sides.

    U-Net-like: from f_out, each encoder stage (deep to shallow) is a skip connection: upsample to its size,
    concatenate, two 3×3 conv-BN-ReLU at the stage's width. Without skips (AlexNet) it upsamples ×2 log2(stride) times,
    halving the width. Then the image size, a conv block at ``width`` and a 1×1 conv to two sigmoid channels: x_n and
    x_ab in [0, 1].

    Args:
        in_channels: channels of f_out.
        skip_channels: channels of the encoder's intermediate stages, shallow to deep (empty: no skips).
        stride: the encoder's output stride (the number of ×2 steps without skips).
        width: channels of the last, full-resolution block.
    """

    def __init__(self, in_channels: int, skip_channels: Sequence[int], stride: int, width: int) -> None:
        super().__init__()
        self.skip_channels = list(skip_channels)
        blocks, current = [], in_channels
        if self.skip_channels:
            for channels in reversed(self.skip_channels):
                blocks.append(_decoder_block(current + channels, channels))
                current = channels
        else:
            for _ in range(max(round(math.log2(max(stride, 2))), 1)):
                blocks.append(_decoder_block(current, max(current // 2, width)))
                current = max(current // 2, width)
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Sequential(ConvNormAct(current, width, 3, norm="batch"), nn.Conv2d(width, 2, 1))

    def forward(self, features: Tensor, stages: Sequence[Tensor], size: Sequence[int]) -> tuple[Tensor, Tensor]:
        """f_out [M, C, h, w] and its stages → (x_n, x_ab), each [M, 1, *size]."""
        x = features
        if self.skip_channels:
            if len(stages) != len(self.skip_channels):
                raise RuntimeError(f"AsyD expects {len(self.skip_channels)} encoder stages, got {len(stages)}.")
            for block, skip in zip(self.blocks, reversed(stages), strict=True):
                x = block(torch.cat([_resize(x, skip.shape[-2:]), skip], dim=1))
        else:
            for block in self.blocks:
                x = block(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        images = torch.sigmoid(self.out(_resize(x, size)))
        return images[:, :1], images[:, 1:]


class DisAsymNetNetwork(nn.Module):
    """AsyC, and with ``decoder`` AsyD and the frozen discriminator ψ_d.

    ψ_d has AsyC's architecture (a deep copy made before the stage hooks exist, so it records nothing). It is kept out
    of the module tree: it has no parameters of its own to train or to save (its weights are AsyC's, copied in place
    before each training step), and so it is neither in ``state_dict`` nor in ``parameters()``. It stays in eval mode
    (batch norm with the running statistics copied from AsyC: it judges x_n as AsyC judges an image at evaluation, one
    image at a time) with ``requires_grad`` off, so gradients reach its input (the decoder's output) only.

    Args:
        backbone: the shared encoder ψ_e.
        transformer_depth: blocks of ψ_asyt (None: no transformer).
        transformer_heads: attention heads per block.
        decoder: build AsyD and ψ_d.
        decoder_width: channels of AsyD's full-resolution block.
    """

    def __init__(
        self,
        backbone: Backbone,
        transformer_depth: int | None,
        transformer_heads: int,
        decoder: bool,
        decoder_width: int,
    ) -> None:
        super().__init__()
        self.asyc = AsyC(backbone, transformer_depth, transformer_heads)
        self.decoder: AsyD | None = None
        self.taps: StageTaps | None = None
        discriminator = None
        if decoder:
            discriminator = copy.deepcopy(self.asyc).eval().requires_grad_(False)
            self.taps = StageTaps(backbone)
            self.decoder = AsyD(backbone.out_channels, self.taps.channels, backbone.stride, decoder_width)
        object.__setattr__(self, "_discriminator", discriminator)  # outside the module tree (see the class doc)

    @property
    def discriminator(self) -> AsyC | None:
        """ψ_d (None without the decoder)."""
        return self._discriminator

    @torch.no_grad()
    def sync_discriminator(self) -> AsyC:
        """Copy AsyC's parameters and buffers into ψ_d, in place (ψ_d is allocated once, moved once per device)."""
        discriminator = self._discriminator
        if discriminator is None:
            raise RuntimeError("this DisAsymNet network has no decoder, hence no discriminator.")
        device = self.asyc.abnormal_head.weight.device
        if discriminator.abnormal_head.weight.device != device:
            discriminator.to(device)
        for copied, source in zip(discriminator.parameters(), self.asyc.parameters(), strict=True):
            copied.copy_(source)
        for copied, source in zip(discriminator.buffers(), self.asyc.buffers(), strict=True):
            copied.copy_(source)
        return discriminator

    def classify(self, target: Tensor, reference: Tensor, stages: bool = False) -> AsyCPass:
        """AsyC on N pairs; ``stages``: also keep the encoder's intermediate stages (for the decoder's skips)."""
        if not stages or self.taps is None:
            return self.asyc(target, reference)
        with self.taps.recording() as recorded:
            result = self.asyc(target, reference)
        return replace(result, stages=list(recorded))

    def decode(self, features: Tensor, stages: Sequence[Tensor], size: Sequence[int]) -> tuple[Tensor, Tensor]:
        """(x_n, x_ab) of sides with f_out ``features`` and encoder ``stages``, both read *detached*: the decoder learns
        from its own losses (L_rec, L_disc, L_syn) and AsyC from L_diag and L_refine (see the docs page)."""
        return self.decoder(features.detach(), [stage.detach() for stage in stages], size)

    def forward(self, target: Tensor, reference: Tensor) -> dict[str, Tensor | dict[str, Tensor]]:
        """The fields of the target's ``BilateralOutput``: ``logits`` (abnormal head), ``cam`` (its CAM),
        ``heads["asymmetry"]``, and with the decoder ``counterfactual`` = x_n and ``explanation`` = x_ab."""
        pairs = len(target)
        result = self.classify(target, reference, stages=self.decoder is not None)
        out: dict[str, Tensor | dict[str, Tensor]] = {
            "logits": result.side_logits[:pairs],
            "cam": result.class_maps[:pairs],
            "heads": {"asymmetry": result.asym_logits},
        }
        if self.decoder is not None:
            stages = [stage[:pairs] for stage in result.stages]
            out["counterfactual"], out["explanation"] = self.decode(result.features[:pairs], stages, target.shape[-2:])
        return out


def reconstruction_loss(images: Tensor, normal: Tensor, abnormal: Tensor, cam: Tensor) -> Tensor:
    """L_rec = L1((1 − M)x, (1 − M)x_n) + L1(Mx, x_ab) (§2.2), each a mean over pixels; M in [0, 1] at image size."""
    keep = 1.0 - cam
    return (keep * images - keep * normal).abs().mean() + (cam * images - abnormal).abs().mean()


def synthesis_loss(real: Tensor, normal: Tensor, pairs: int) -> Tensor:
    """L_syn = L1(x|real, x_n|fake) (§2.3) on the synthesised sides [2F, 1, H, W], summed over the F synthesised pairs
    and divided by the batch's ``pairs`` (not by F): a batch with more normal pairs weighs more, and a DDP run averages
    what one process computes on the same global batch."""
    per_side = (real - normal).abs().flatten(1).mean(dim=1)
    return per_side.sum() / (2 * pairs)
