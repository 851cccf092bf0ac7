"""Fixed-Point GAN's networks and per-sample losses, pure PyTorch.

One conditional generator translates an image to the domain named by a code c, either domain, the image's own
included (StarGAN's single generator; Fixed-Point GAN's same-domain translation). It writes a residual, and the
translation is x_fake = tanh(x + G(x, c)) with images in [−1, 1]. One critic (StarGAN's discriminator: stride-2 convs
with LeakyReLU and no normalisation, as WGAN-GP needs) has two heads: D_src, a patch map of real/fake scores, and D_cls,
logits over the two domains. The classifier reads concat[backbone(X) − backbone(X_C), backbone(X)] with a CAM head, as
``cyclegan`` and CGN's classification module do.

Domains are indices: :data:`ABNORMAL` (a lesion) and :data:`NORMAL` (truly lesion-free). The counterfactual is the
translation to normal, X_C = (tanh(2X − 1 + G(2X − 1, c_normal)) + 1) / 2, and the explanation |X_T − X_C|.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bilatcf.errors import ConfigError
from bilatcf.models.cyclegan.network import CycleClassifier, from_tanh_range, to_tanh_range
from bilatcf.nn.backbones import Backbone
from bilatcf.nn.blocks import ResnetGenerator
from bilatcf.nn.losses import gradient_penalty

#: Domain indices of the code c (and of the critic's domain logits).
ABNORMAL, NORMAL = 0, 1
NUM_DOMAINS = 2
#: LeakyReLU slope of StarGAN's (and Fixed-Point GAN's) discriminator.
CRITIC_LEAK = 0.01


def domain_code(domains: Tensor, images: Tensor) -> Tensor:
    """The one-hot code of ``domains`` [N] broadcast to the size of ``images``: [N, 2, H, W] (StarGAN's input)."""
    one_hot = F.one_hot(domains.long(), NUM_DOMAINS).to(images.dtype)
    return one_hot[:, :, None, None].expand(-1, -1, *images.shape[-2:])


def other_domain(domains: Tensor) -> Tensor:
    """The cross-domain target c_trg of each sample: the other of the two domains."""
    return (NORMAL + ABNORMAL) - domains


class ResidualTranslator(nn.Module):
    """x_fake = tanh(x + G(concat[x, c])) for images x in [−1, 1] and domain indices c (Fixed-Point GAN's generator).

    G is the ResNet generator (``ResnetGenerator``: 7×7 conv, two stride-2 convs, residual blocks, two up-convs, 7×7
    conv) with a linear output: the residual. H and W must be divisible by 4.

    Args:
        channels: width after the first conv (StarGAN's g_conv_dim = 64).
        blocks: residual blocks at the bottleneck (StarGAN's g_repeat_num = 6).
    """

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        self.residual = ResnetGenerator(1 + NUM_DOMAINS, 1, base=channels, num_blocks=blocks, out_activation=None)

    def forward(self, images: Tensor, domains: Tensor) -> Tensor:
        code = domain_code(domains, images)
        return torch.tanh(images + self.residual(torch.cat([images, code], dim=1)))


class StarGANCritic(nn.Module):
    """StarGAN's discriminator as a WGAN-GP critic: ``num_layers`` 4×4 stride-2 convs (widths base·2^n), LeakyReLU 0.01,
    no normalisation (the per-sample gradient penalty is wrong when samples interact through batch statistics).

    Two heads on the last map: D_src, a 3×3 conv to one channel (a patch map of real/fake scores), and D_cls, a linear
    map from the spatially averaged last map to the two domain logits. Each axis of the input needs ≥ 2^num_layers px.

    Args:
        base: channels of the first conv (StarGAN's d_conv_dim = 64).
        num_layers: stride-2 convs (StarGAN's d_repeat_num = 6 at 128 px).
    """

    def __init__(self, base: int, num_layers: int) -> None:
        super().__init__()
        widths = [1] + [base * 2**n for n in range(num_layers)]
        layers: list[nn.Module] = []
        for n in range(num_layers):
            layers += [nn.Conv2d(widths[n], widths[n + 1], 4, stride=2, padding=1), nn.LeakyReLU(CRITIC_LEAK)]
        self.num_layers = num_layers
        self.body = nn.Sequential(*layers)
        self.source = nn.Conv2d(widths[-1], 1, 3, padding=1, bias=False)
        self.domain = nn.Linear(widths[-1], NUM_DOMAINS, bias=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(D_src patch map [N, 1, h, w], D_cls domain logits [N, 2])."""
        self._check_size(images)
        features = self.body(images)
        return self.source(features), self.domain(features.mean(dim=(2, 3)))

    def source_scores(self, images: Tensor) -> Tensor:
        """D_src alone (the gradient penalty's critic)."""
        return self(images)[0]

    def _check_size(self, images: Tensor) -> None:
        height, width = images.shape[-2:]
        if min(height, width) < 2**self.num_layers:
            raise ConfigError(
                f"fixedpoint: critic_layers={self.num_layers} halves each axis {self.num_layers} times and needs "
                f"images of at least {2**self.num_layers} px per axis; got {height}×{width}. Lower "
                "--model.critic_layers (StarGAN: 6 at 128 px, one less per halving of the image size)."
            )


def patch_mean(scores: Tensor) -> Tensor:
    """Mean of a patch map per sample [N] (in float32): the WGAN score of each image (StarGAN's torch.mean(out_src))."""
    return scores.float().flatten(1).mean(dim=1)


def domain_cross_entropy(logits: Tensor, domains: Tensor) -> Tensor:
    """Softmax cross-entropy per sample [N] (in float32) of the domain logits against the domain indices."""
    return F.cross_entropy(logits.float(), domains.long(), reduction="none")


def masked_gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, epsilon: Tensor, mask: Tensor) -> Tensor:
    """Σ_i mask_i · (‖∇D_src(x̂_i)‖₂ − 1)² / N over the N samples, x̂_i = ε_i·real_i + (1 − ε_i)·fake_i.

    The penalty is computed on the kept samples only (:func:`~bilatcf.nn.losses.gradient_penalty`, gradient of the sum
    of the patch scores, flattened per sample) and divided by all N, as
    :func:`~bilatcf.models.cyclegan.network.masked_mean` does; the critic has no batch statistics, so dropping the
    other samples changes no kept sample's penalty.
    """
    keep = mask.bool()
    kept = int(keep.sum())
    if kept == 0:
        return real.new_zeros((), dtype=torch.float32)
    penalty = gradient_penalty(critic.source_scores, real[keep], fake[keep], epsilon=epsilon[keep])
    return penalty.float() * kept / len(mask)


class FixedPointGANNetwork(CycleClassifier):
    """The conditional generator, the two-headed critic (both in [−1, 1]) and ``cyclegan``'s classifier (backbone +
    CAM head on concat[H_T − H_C, H_T], :class:`~bilatcf.models.cyclegan.network.CycleClassifier`).

    Args:
        backbone: the classifier's feature extractor.
        generator_channels: base width of the generator.
        generator_blocks: residual blocks of the generator.
        critic_channels: base width of the critic.
        critic_layers: stride-2 convs of the critic.
    """

    def __init__(
        self,
        backbone: Backbone,
        generator_channels: int,
        generator_blocks: int,
        critic_channels: int,
        critic_layers: int,
    ) -> None:
        super().__init__(backbone)
        self.generator = ResidualTranslator(generator_channels, generator_blocks)
        self.critic = StarGANCritic(critic_channels, critic_layers)

    def counterfactual(self, images: Tensor) -> Tensor:
        """X_C = (tanh(2X − 1 + G(2X − 1, c_normal)) + 1) / 2 in [0, 1]: the translation to the normal domain."""
        normal = torch.full((len(images),), NORMAL, dtype=torch.long, device=images.device)
        return from_tanh_range(self.generator(to_tanh_range(images), normal))

    def forward(self, target: Tensor, reference: Tensor) -> dict[str, Tensor]:
        """The counterfactual X_C, the explanation |X_T − X_C| and the classifier's outputs.

        X_C is computed without a graph: the classification loss never trains the generator, which learns from the
        Fixed-Point GAN losses alone (computed in the module's generator step).
        """
        with torch.no_grad():
            counterfactual = self.counterfactual(target)
        out = self.classify(target, counterfactual)
        out["counterfactual"] = counterfactual
        out["explanation"] = (target - counterfactual).abs()
        return out
