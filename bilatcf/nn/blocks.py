"""Generator and discriminator building blocks shared by every method.

Conventions, so that a method's ``network.py`` reads like its paper:

- ``norm`` is ``"instance"`` (CycleGAN's: no affine parameters, no running statistics), ``"batch"`` or ``"none"``.
  Instance norm needs more than one spatial position per map in training: keep feature maps ≥ 2 px where it is used.
- A convolution followed by a normalisation has no bias: the normalisation subtracts the per-channel mean, which cancels
  any bias, so the parameter would never learn (and would fail the "every parameter gets a gradient" check).
- Images are expected with height and width divisible by the network's total down-sampling; the generators check it
  and say so, instead of returning an output of another size.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bilatcf.errors import ConfigError

Norm = Literal["instance", "batch", "none"]
Padding = Literal["zeros", "reflect"]
Activation = Literal["relu", "leaky_relu", "none"]
OutActivation = Literal["tanh", "sigmoid"] | None

_AFFINE_NORMS = nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm  # _NormBase: batch and instance
_LEAK = 0.2  # LeakyReLU slope of every discriminator here (pix2pix, DCGAN, WGAN-GP)


def _choice(kind: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"Unknown {kind} {value!r}; choose one of {', '.join(repr(a) for a in allowed)}.")


def norm_layer(norm: Norm, channels: int) -> nn.Module:
    """The normalisation layer named by ``norm`` for ``channels`` channels."""
    _choice("norm", norm, ("instance", "batch", "none"))
    if norm == "instance":
        return nn.InstanceNorm2d(channels)
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


def _activation(act: Activation) -> nn.Module:
    _choice("activation", act, ("relu", "leaky_relu", "none"))
    if act == "relu":
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(_LEAK, inplace=True) if act == "leaky_relu" else nn.Identity()


def _out_activation(act: OutActivation) -> nn.Module:
    _choice("out_activation", act, ("tanh", "sigmoid", None))
    if act is None:
        return nn.Identity()
    return nn.Tanh() if act == "tanh" else nn.Sigmoid()


def _check_divisible(x: Tensor, factor: int, network: str) -> None:
    height, width = x.shape[-2:]
    if height % factor or width % factor:
        raise ConfigError(
            f"{network} needs an input height and width divisible by {factor}; got {height}×{width}. "
            f"Choose an image size that is a multiple of {factor} (e.g. data.image_size) or make the "
            "network shallower."
        )


class ConvNormAct(nn.Sequential):
    """Convolution → normalisation → activation, padded to keep the size at stride 1 (``(k − 1) // 2`` per side)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        norm: Norm = "instance",
        act: Activation = "relu",
        padding: Padding = "zeros",
    ) -> None:
        _choice("padding", padding, ("zeros", "reflect"))
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding=(kernel_size - 1) // 2,
                padding_mode=padding,
                bias=norm == "none",
            ),
            norm_layer(norm, out_channels),
            _activation(act),
        )


class ResBlock(nn.Module):
    """Residual block x + (conv3 → norm → ReLU → conv3 → norm)(x), channels unchanged (CycleGAN, CGN's generator).

    Reflection padding (CycleGAN's) needs maps of ≥ 2 px per axis: use ``padding="zeros"`` on tiny feature maps.
    """

    def __init__(self, channels: int, norm: Norm = "instance", padding: Padding = "reflect") -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3, norm=norm, act="relu", padding=padding),
            ConvNormAct(channels, channels, 3, norm=norm, act="none", padding=padding),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def adain(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Adaptive instance normalisation (CGN Eq. 6–7): σ(y)·(x − μ(x))/σ(x) + μ(y).

    Statistics are per sample and channel over the spatial positions, σ = sqrt(biased variance + eps); they are computed
    in float32 so that bf16 feature maps do not lose the small variances. ``style`` may have another spatial size.
    """
    content_mean, content_std = _channel_stats(content, eps)
    style_mean, style_std = _channel_stats(style, eps)
    return (style_std * (content.float() - content_mean) / content_std + style_mean).to(content.dtype)


def _channel_stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, correction=0)
    return mean, (var + eps).sqrt()


def _double_conv(in_channels: int, out_channels: int, norm: Norm) -> nn.Sequential:
    return nn.Sequential(
        ConvNormAct(in_channels, out_channels, 3, norm=norm), ConvNormAct(out_channels, out_channels, 3, norm=norm)
    )


class UNet(nn.Module):
    """U-Net (Ronneberger et al.): double 3×3 convs, max-pool down, 2×2 transposed-conv up, skip concatenation.

    Used as the map generator of VA-GAN and CX-GAN and as DisAsymNet's decoder. Width doubles at each of the ``depth``
    levels (``base · 2^depth`` at the bottom); H and W must be divisible by ``2^depth``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        base: channels of the first level.
        depth: number of down-sampling steps.
        norm: normalisation of every conv block.
        out_activation: None for a linear output (e.g. VA-GAN's additive map), "tanh" or "sigmoid".
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base: int = 32,
        depth: int = 4,
        norm: Norm = "instance",
        out_activation: OutActivation = None,
    ) -> None:
        super().__init__()
        widths = [base * 2**level for level in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList(
            [_double_conv(in_channels, widths[0], norm)]
            + [_double_conv(widths[i], widths[i + 1], norm) for i in range(depth)]
        )
        self.up = nn.ModuleList(
            [
                nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2, bias=norm == "none")
                for i in reversed(range(depth))
            ]
        )
        self.merge = nn.ModuleList([_double_conv(2 * widths[i], widths[i], norm) for i in reversed(range(depth))])
        self.head = nn.Sequential(nn.Conv2d(widths[0], out_channels, 1), _out_activation(out_activation))

    def forward(self, x: Tensor) -> Tensor:
        _check_divisible(x, 2**self.depth, f"UNet(depth={self.depth})")
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()  # the bottom level is x itself
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator: 7×7 conv, ``num_down`` stride-2 convs, residual blocks, as many up-convs, 7×7 conv.

    CycleGAN uses 9 blocks at 256 px and 6 at ≤ 128 px; Fixed-Point GAN (StarGAN) feeds the domain code as extra input
    channels. H and W must be divisible by ``2^num_down``.

    Args:
        in_channels: input channels (image channels + any conditioning channels).
        out_channels: output channels.
        base: channels after the first conv; doubled at each down-sampling.
        num_blocks: residual blocks at the bottleneck.
        num_down: stride-2 down-sampling steps (and transposed-conv up-sampling steps).
        norm: normalisation of every conv block.
        out_activation: "tanh" for images in [−1, 1], None for a linear output (e.g. a residual or a feature map).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base: int = 64,
        num_blocks: int = 9,
        num_down: int = 2,
        norm: Norm = "instance",
        out_activation: OutActivation = "tanh",
    ) -> None:
        super().__init__()
        self.num_down = num_down
        width = base * 2**num_down
        self.net = nn.Sequential(
            ConvNormAct(in_channels, base, 7, norm=norm, padding="reflect"),
            *[ConvNormAct(base * 2**i, base * 2 ** (i + 1), 3, stride=2, norm=norm) for i in range(num_down)],
            *[ResBlock(width, norm=norm) for _ in range(num_blocks)],
            *[_up_conv(base * 2 ** (i + 1), base * 2**i, norm) for i in reversed(range(num_down))],
            nn.Conv2d(base, out_channels, 7, padding=3, padding_mode="reflect"),
            _out_activation(out_activation),
        )

    def forward(self, x: Tensor) -> Tensor:
        _check_divisible(x, 2**self.num_down, f"ResnetGenerator(num_down={self.num_down})")
        return self.net(x)


def _up_conv(in_channels: int, out_channels: int, norm: Norm) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=norm == "none"),
        norm_layer(norm, out_channels),
        nn.ReLU(inplace=True),
    )


class _AdaptiveStrideConv(nn.Conv2d):
    """4×4 convolution with stride 2 (padding 1) that keeps stride 1 on any axis where halving would leave fewer than
    ``min_size`` pixels; it then pads (1, 2) so that axis keeps its size. Large inputs get the plain stride-2 layer."""

    def __init__(self, in_channels: int, out_channels: int, min_size: int, bias: bool) -> None:
        super().__init__(in_channels, out_channels, 4, stride=2, padding=0, bias=bias)
        self.min_size = min_size

    def forward(self, x: Tensor) -> Tensor:
        halve = [size // 2 >= self.min_size for size in x.shape[-2:]]
        (pad_top, pad_bottom), (pad_left, pad_right) = [(1, 1) if h else (1, 2) for h in halve]
        x = F.pad(x, (pad_left, pad_right, pad_top, pad_bottom))
        return F.conv2d(x, self.weight, self.bias, stride=tuple(2 if h else 1 for h in halve))


class PatchDiscriminator(nn.Sequential):
    """PatchGAN discriminator (pix2pix/CycleGAN): one logit per overlapping patch, 70×70 patches at ``num_layers=3``.

    Layers: ``num_layers`` stride-2 4×4 convs (widths base·1, 2, 4, 8…, capped at 8·base), one stride-1 4×4 conv, a
    stride-1 4×4 conv to one channel; LeakyReLU 0.2, no norm after the first conv. Small inputs: a stride-2 layer
    halves an axis only while the halved map stays ≥ 3 px (the two final stride-1 4×4 convs each remove one pixel, so
    this keeps the patch map ≥ 1 px); otherwise it keeps the size. Inputs of at least ``3 · 2^num_layers`` px per axis
    get exactly the paper's network; smaller ones a coarser-stride variant with the same weights. Inputs need ≥ 3 px.

    Args:
        in_channels: input channels (image channels, plus the condition for conditional GANs).
        base: channels of the first conv.
        num_layers: stride-2 layers (3 gives the 70×70 PatchGAN).
        norm: normalisation after every conv but the first and the last.
    """

    def __init__(self, in_channels: int, base: int = 64, num_layers: int = 3, norm: Norm = "instance") -> None:
        widths = [base * min(2**n, 8) for n in range(num_layers + 1)]
        layers: list[nn.Module] = [
            _AdaptiveStrideConv(in_channels, base, min_size=3, bias=True),
            _activation("leaky_relu"),
        ]
        for n in range(1, num_layers):
            layers += [
                _AdaptiveStrideConv(widths[n - 1], widths[n], min_size=3, bias=norm == "none"),
                norm_layer(norm, widths[n]),
                _activation("leaky_relu"),
            ]
        layers += [
            nn.Conv2d(widths[num_layers - 1], widths[num_layers], 4, padding=1, bias=norm == "none"),
            norm_layer(norm, widths[num_layers]),
            _activation("leaky_relu"),
            nn.Conv2d(widths[num_layers], 1, 4, padding=1),
        ]
        super().__init__(*layers)


class FeatureDiscriminator(nn.Sequential):
    """Small discriminator on backbone feature maps (CGN, BR-GAN): 3×3 convs + LeakyReLU, then a 1×1 conv to one logit
    per position ([B, 1, h, w], the feature-level analogue of a PatchGAN).

    It has no normalisation: feature maps can be 1×1 (instance norm is undefined there) and batch norm would mix the
    statistics of the real and fake batches the discriminator must tell apart. The papers do not specify this network.

    Args:
        in_channels: channels of the feature map.
        hidden: channels of the hidden convs.
        num_layers: number of hidden 3×3 convs.
    """

    def __init__(self, in_channels: int, hidden: int = 256, num_layers: int = 2) -> None:
        layers: list[nn.Module] = []
        for n in range(num_layers):
            layers += [nn.Conv2d(in_channels if n == 0 else hidden, hidden, 3, padding=1), _activation("leaky_relu")]
        super().__init__(*layers, nn.Conv2d(hidden, 1, 1))


class WGANCritic(nn.Module):
    """WGAN-GP critic (VA-GAN, f-AnoGAN, Fixed-Point GAN): convs with LeakyReLU and no batch norm (the per-sample
    gradient penalty is wrong when samples interact through batch statistics), then a 1-channel conv averaged over
    space, so any input size gives one score per image. ``features`` exposes the last hidden map (AnoGAN's f(x)).

    Args:
        in_channels: input channels.
        base: channels of the first conv; doubled at each down-sampling, capped at 8·base.
        num_down: stride-2 4×4 convs (an axis already at 1 px keeps its size).
    """

    def __init__(self, in_channels: int, base: int = 64, num_down: int = 4) -> None:
        super().__init__()
        widths = [base * min(2**n, 8) for n in range(num_down + 1)]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base, 3, padding=1), _activation("leaky_relu")]
        for n in range(num_down):
            layers += [_AdaptiveStrideConv(widths[n], widths[n + 1], min_size=1, bias=True), _activation("leaky_relu")]
        self.body = nn.Sequential(*layers)
        # No bias: a Wasserstein loss weighs real and generated scores equally, so a constant offset cancels and its
        # gradient is exactly 0 (a bias would never learn, or drift on rounding noise under Adam).
        self.head = nn.Conv2d(widths[-1], 1, 3, padding=1, bias=False)

    def features(self, x: Tensor) -> Tensor:
        """The last hidden feature map [B, C, h, w]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """One critic score per image [B]."""
        return self.head(self.body(x)).mean(dim=(1, 2, 3))


#: Standard deviation of the N(0, σ) initialisation of GAN generators and discriminators (pix2pix/CycleGAN/DCGAN).
GAN_INIT_GAIN = 0.02


def init_weights(
    module: nn.Module, init: Literal["normal", "xavier", "kaiming"] = "normal", gain: float = GAN_INIT_GAIN
) -> nn.Module:
    """Initialise convolutions/linears (bias 0) and affine norms (weight N(1, gain), bias 0), as pix2pix/CycleGAN/DCGAN.

    ``normal`` draws conv weights from N(0, gain) (the GAN papers' N(0, 0.02)); ``xavier`` uses gain as its gain;
    ``kaiming`` ignores it. Returns ``module`` so that construction can be chained.
    """
    _choice("init", init, ("normal", "xavier", "kaiming"))
    for layer in module.modules():
        if isinstance(layer, nn.modules.conv._ConvNd | nn.Linear):
            _init_weight(layer.weight, init, gain)
        elif isinstance(layer, _AFFINE_NORMS) and layer.weight is not None:
            nn.init.normal_(layer.weight, 1.0, gain)
        else:
            continue
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return module


def _init_weight(weight: Tensor, init: str, gain: float) -> None:
    if init == "normal":
        nn.init.normal_(weight, 0.0, gain)
    elif init == "xavier":
        nn.init.xavier_normal_(weight, gain)
    else:
        nn.init.kaiming_normal_(weight, a=0.0, mode="fan_in")


def set_requires_grad(nets: nn.Module | Iterable[nn.Module], flag: bool) -> None:
    """Freeze (False) or unfreeze (True) networks, e.g. the discriminator during the generator step."""
    for net in [nets] if isinstance(nets, nn.Module) else nets:
        for parameter in net.parameters():
            parameter.requires_grad_(flag)
