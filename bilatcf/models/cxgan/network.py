"""CX-GAN's networks, pure PyTorch (Zia, Nisar and Murtaza; docs/models/cxgan.md).

The explanation is an additive map: x⁻ = x⁺ + M(x⁺) (Eq. 1). Images are in [0, 1] in bilatcf; the generators and
discriminators work in the [−1, 1] of their tanh outputs (:func:`~bilatcf.models.cyclegan.network.to_tanh_range`), as
CycleGAN's do, so every L1 loss is measured at the scale its weight was chosen for.

* :class:`SkipUNet` — the U-Net generator of the authors' CycleGAN notebooks: four stride-2 4×4 convolutions down to
  1/16 of the input, three up-sampling blocks that each concatenate the encoder map of their size, a last ×2
  up-sampling and a 4×4 convolution to one channel with tanh.
* :class:`MapGenerator` — G^{+→M}: a :class:`SkipUNet` whose output, scaled by :data:`MAP_SCALE`, is the map M; its
  ``forward`` is the translation x + M(x), so that it takes the place of CycleGAN's forward generator unchanged.
* :class:`PatchCritic` — the notebooks' PatchGAN: stride-2 4×4 convolutions (LeakyReLU 0.2, then instance norm), a
  stride-1 4×4 convolution to one logit per patch; the patch map is the input size / 2^layers (16×16 at 256 px).
* :class:`CXGANNetwork` — ``integrated``: G_A2N = G^{+→M}, G_N2A, D_N, D_A (Eq. 8–10); ``cascaded``: a plain CycleGAN
  (G_A2N, G_N2A, D_N, D_A: the counterfactual instances, Eq. 2–4) plus the residual GAN's G^{+→M} and D_R (Eq. 5–7).
  Both keep CycleGAN's classifier (:class:`~bilatcf.models.cyclegan.network.CycleClassifier`) on the counterfactual.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bilatcf.models.cyclegan.network import CycleClassifier, to_tanh_range
from bilatcf.nn.backbones import Backbone
from bilatcf.nn.blocks import GAN_INIT_GAIN, _check_divisible, init_weights, norm_layer

#: ``integrated``: one CycleGAN whose forward generator writes the map (§3.2); ``cascaded``: a CycleGAN, then a
#: residual pix2pix-style GAN trained on its counterfactual instances (§3.1).
Variant = Literal["integrated", "cascaded"]
#: M = MAP_SCALE · tanh(·) in [−1, 1] units: the largest change between two images of [−1, 1] is 2, so the map can
#: remove any lesion; the notebooks' generator ends in a plain tanh, which caps the change at half the range.
MAP_SCALE = 2.0
_LEAK = 0.2
_DEPTH = 4  # stride-2 steps of the U-Net: inputs must be divisible by 16


def _same_conv(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """4×4 convolution with TensorFlow's ``same`` padding on even sizes: (1, 1) at stride 2, (1, 2) at stride 1."""
    pad = (1, 1, 1, 1) if stride == 2 else (1, 2, 1, 2)
    return nn.Sequential(nn.ZeroPad2d(pad), nn.Conv2d(in_channels, out_channels, 4, stride))


class _Up(nn.Module):
    """Nearest ×2 up-sampling → 4×4 conv → ReLU → instance norm, then concatenation with the skip map."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _same_conv(in_channels, out_channels, 1), nn.ReLU(inplace=True), norm_layer("instance", out_channels)
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return torch.cat([self.body(F.interpolate(x, scale_factor=2, mode="nearest")), skip], dim=1)


class SkipUNet(nn.Module):
    """The U-Net of the CX-GAN notebooks (one channel in, one channel out, tanh), N(0, 0.02) initialised.

    Encoder: four 4×4 stride-2 convs of ``base``·1, 2, 4, 8 channels, each followed by LeakyReLU 0.2 and instance
    norm. Decoder: three :class:`_Up` blocks (``base``·4, 2, 1 channels) concatenating the encoder maps of 1/8, 1/4
    and 1/2 of the input size, a nearest ×2 up-sampling and a 4×4 conv to one channel with tanh. There is no skip at
    full resolution: the input itself only reaches the output through the encoder. H and W must be divisible by 16.

    Args:
        base: channels of the first encoder conv (the notebooks' ``gf`` = 32).
    """

    def __init__(self, base: int = 32) -> None:
        super().__init__()
        widths = [base * 2**level for level in range(_DEPTH)]
        self.down = nn.ModuleList(
            nn.Sequential(
                _same_conv(1 if level == 0 else widths[level - 1], widths[level], 2),
                nn.LeakyReLU(_LEAK, inplace=True),
                norm_layer("instance", widths[level]),
            )
            for level in range(_DEPTH)
        )
        # Up block i reads the previous output (the bottom map, or the last block's concatenation) and the skip of
        # level depth − 2 − i.
        ups, channels = [], widths[-1]
        for level in reversed(range(_DEPTH - 1)):
            ups.append(_Up(channels, widths[level]))
            channels = 2 * widths[level]
        self.up = nn.ModuleList(ups)
        self.out = nn.Sequential(_same_conv(channels, 1, 1), nn.Tanh())
        init_weights(self, "normal", GAN_INIT_GAIN)

    def forward(self, x: Tensor) -> Tensor:
        _check_divisible(x, 2**_DEPTH, "CX-GAN's U-Net (four stride-2 convs)")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottom map is x itself
        for block in self.up:
            x = block(x, skips.pop())
        return self.out(F.interpolate(x, scale_factor=2, mode="nearest"))


class MapGenerator(nn.Module):
    """G^{+→M}: the map M(x) = :data:`MAP_SCALE` · U-Net(x), and the translation x + M(x) as ``forward``.

    Both in [−1, 1] units. The sum is not clamped: a clamp has no gradient outside the range, so pixels pushed out of
    it would stop learning; the discriminators, which only ever see real images inside [−1, 1], penalise them instead.
    The U-Net's last convolution starts at zero, so M starts at 0 and the translation as the identity (with N(0, 0.02)
    weights the instance-normalised decoder would start with a map of up to ±1); the first step gives it weights.
    """

    def __init__(self, base: int = 32) -> None:
        super().__init__()
        self.unet = SkipUNet(base)
        last = self.unet.out[0][1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def map(self, x: Tensor) -> Tensor:
        """M(x), [B, 1, H, W] in [−MAP_SCALE, MAP_SCALE]."""
        return MAP_SCALE * self.unet(x)

    def forward(self, x: Tensor) -> Tensor:
        """x + M(x) (Eq. 1 and the translation of Eq. 8–9)."""
        return x + self.map(x)


class PatchCritic(nn.Sequential):
    """The notebooks' PatchGAN discriminator: one LSGAN logit per patch, [B, 1, H / 2^layers, W / 2^layers].

    ``layers`` 4×4 stride-2 convs of ``base``·1, 2, 4, 8 … channels (capped at 8·base), each followed by LeakyReLU 0.2
    and, after the first, instance norm (the Keras order: activation, then normalisation); a 4×4 stride-1 conv to one
    channel. N(0, 0.02) initialised.

    Args:
        base: channels of the first conv (the notebooks' ``df`` = 64).
        layers: stride-2 convs (the notebooks: 4, i.e. 16×16 patches at 256 px and 8×8 at 128 px).
    """

    def __init__(self, base: int = 64, layers: int = 4) -> None:
        modules: list[nn.Module] = []
        channels = 1
        for layer in range(layers):
            width = base * min(2**layer, 8)
            modules += [_same_conv(channels, width, 2), nn.LeakyReLU(_LEAK, inplace=True)]
            if layer > 0:
                modules.append(norm_layer("instance", width))
            channels = width
        super().__init__(*modules, _same_conv(channels, 1, 1))
        init_weights(self, "normal", GAN_INIT_GAIN)


class CXGANNetwork(CycleClassifier):
    """CX-GAN's generators and discriminators, and CycleGAN's classifier on the counterfactual.

    ``integrated``: ``g_a2n`` is G^{+→M} (a :class:`MapGenerator`: G_A2N(x) = x + M(x)), ``g_n2a`` a :class:`SkipUNet`,
    ``d_n``, ``d_a`` two :class:`PatchCritic`. ``cascaded``: ``g_a2n`` and ``g_n2a`` are plain :class:`SkipUNet`
    translators (phase 1), ``map_generator`` is G^{+→M} and ``d_r`` the residual GAN's discriminator (phase 2).

    Args:
        backbone: the classifier's feature extractor.
        variant: ``integrated`` or ``cascaded``.
        generator_channels: base width of every U-Net (the notebooks' 32).
        discriminator_channels: base width of every discriminator (the notebooks' 64).
        discriminator_layers: stride-2 convs of every discriminator (the notebooks' 4).
    """

    def __init__(
        self,
        backbone: Backbone,
        variant: Variant,
        generator_channels: int,
        discriminator_channels: int,
        discriminator_layers: int,
    ) -> None:
        super().__init__(backbone)
        self.variant = variant
        self.g_a2n = MapGenerator(generator_channels) if variant == "integrated" else SkipUNet(generator_channels)
        self.g_n2a = SkipUNet(generator_channels)
        self.d_n = PatchCritic(discriminator_channels, discriminator_layers)
        self.d_a = PatchCritic(discriminator_channels, discriminator_layers)
        if variant == "cascaded":
            self.map_generator = MapGenerator(generator_channels)
            self.d_r = PatchCritic(discriminator_channels, discriminator_layers)

    @property
    def explainer(self) -> MapGenerator:
        """The G^{+→M} that writes the explanation: G_A2N itself (integrated) or phase 2's map generator (cascaded)."""
        return self.g_a2n if self.variant == "integrated" else self.map_generator

    def forward(self, target: Tensor, reference: Tensor) -> dict[str, Tensor]:
        """M, the counterfactual and the classifier's outputs for targets in [0, 1].

        ``explanation`` is M in image units (M / 2: [0, 1] spans 2 in [−1, 1]), signed, so that X_T + explanation is
        the unclamped counterfactual; ``counterfactual`` = clip(X_T + explanation, 0, 1). The classifier reads the
        counterfactual detached, so the classification loss never trains the generators (as ``cyclegan``).
        """
        explanation = self.explainer.map(to_tanh_range(target)) / 2
        counterfactual = (target + explanation).clamp(0.0, 1.0)
        out = self.classify(target, counterfactual.detach())
        return {**out, "counterfactual": counterfactual, "explanation": explanation}
