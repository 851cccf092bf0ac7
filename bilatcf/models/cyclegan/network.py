"""CycleGAN's networks and per-sample losses, pure PyTorch.

Two ResNet generators translate between the abnormal domain A (targets with a lesion) and the normal domain N
(lesion-free images); two 70×70 PatchGANs tell real from translated images of each domain. The classifier reads
concat[backbone(X) − backbone(G_A2N(X)), backbone(X)] with a CAM head, as CGN's classification module does.

Images are in [0, 1] in bilatcf; the generators and discriminators work in CycleGAN's [−1, 1]
(:func:`to_tanh_range` / :func:`from_tanh_range`), so the counterfactual is X_C = (G_A2N(2X − 1) + 1) / 2 and the L1
cycle and identity losses are measured in [−1, 1] (twice their value in [0, 1]), the scale λ = 10 was chosen at.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bilatcf.nn.backbones import Backbone
from bilatcf.nn.blocks import GAN_INIT_GAIN, PatchDiscriminator, ResnetGenerator, init_weights
from bilatcf.nn.heads import LinearCAMHead


def to_tanh_range(images: Tensor) -> Tensor:
    """[0, 1] → [−1, 1]: 2x − 1."""
    return 2 * images - 1


def from_tanh_range(images: Tensor) -> Tensor:
    """[−1, 1] → [0, 1]: (y + 1) / 2, the inverse of :func:`to_tanh_range`."""
    return (images + 1) / 2


def per_sample_l1(a: Tensor, b: Tensor) -> Tensor:
    """Mean |a − b| per sample [B] (in float32): CycleGAN's L1 cycle and identity losses before batch averaging."""
    return (a.float() - b.float()).abs().flatten(1).mean(dim=1)


def masked_mean(per_sample: Tensor, mask: Tensor) -> Tensor:
    """Σ_i mask_i · loss_i / B: the mean over the *whole* batch, so the denominator does not depend on how many samples
    the mask keeps (a 2-process DDP run then averages to what one process computes on the global batch)."""
    return (per_sample * mask.to(per_sample.dtype)).mean()


class CycleGANNetwork(nn.Module):
    """Generators G_A2N, G_N2A, discriminators D_N, D_A (all in [−1, 1]) and the classifier (backbone + CAM head).

    Args:
        backbone: the classifier's feature extractor.
        generator_channels: base width of the ResNet generators (CycleGAN's ngf = 64).
        generator_blocks: residual blocks of each generator (CycleGAN: 9 at 256 px, 6 at ≤ 128 px).
        discriminator_channels: base width of the PatchGANs (CycleGAN's ndf = 64).
    """

    def __init__(
        self, backbone: Backbone, generator_channels: int, generator_blocks: int, discriminator_channels: int
    ) -> None:
        super().__init__()
        channels = backbone.out_channels
        self.backbone = backbone
        self.head = LinearCAMHead(2 * channels, hidden=channels)

        def generator() -> nn.Module:
            net = ResnetGenerator(1, 1, base=generator_channels, num_blocks=generator_blocks, out_activation="tanh")
            return init_weights(net, "normal", GAN_INIT_GAIN)

        def discriminator() -> nn.Module:
            return init_weights(
                PatchDiscriminator(1, base=discriminator_channels, num_layers=3), "normal", GAN_INIT_GAIN
            )

        self.g_a2n, self.g_n2a = generator(), generator()
        self.d_n, self.d_a = discriminator(), discriminator()

    def counterfactual(self, images: Tensor) -> Tensor:
        """X_C = (G_A2N(2X − 1) + 1) / 2 in [0, 1]."""
        return from_tanh_range(self.g_a2n(to_tanh_range(images)))

    def classify(self, target: Tensor, counterfactual: Tensor) -> dict[str, Tensor]:
        """Logits [B], CAM and features from one backbone call on [X_T; X_C] (shared batch-norm statistics)."""
        target_features, cf_features = self.backbone(torch.cat([target, counterfactual])).chunk(2)
        logits, cam = self.head(torch.cat([target_features - cf_features, target_features], dim=1))
        return {"logits": logits, "cam": cam, "target_features": target_features, "cf_features": cf_features}

    def forward(self, target: Tensor, reference: Tensor) -> dict[str, Tensor]:
        """The counterfactual G_A2N(X_T), the explanation |X_T − X_C| and the classifier's outputs.

        The classifier reads X_C detached: the classification loss never trains the generators.
        """
        counterfactual = self.counterfactual(target)
        out = self.classify(target, counterfactual.detach())
        out["counterfactual"] = counterfactual
        out["explanation"] = (target - counterfactual).abs()
        return out
