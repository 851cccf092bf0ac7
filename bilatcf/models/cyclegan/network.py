"""CycleGAN's networks and per-sample losses, pure PyTorch.

Two generators translate between the abnormal domain A (targets with a lesion) and the normal domain N (lesion-free
images); two discriminators tell real from translated samples of each domain. The classifier reads
concat[H_T − H_C, H_T] with a CAM head, as CGN's classification module does. ``level`` says what is translated:

* ``image`` (CycleGAN): ResNet generators and 70×70 PatchGANs on images, H = backbone(X), H_C = backbone(G_A2N(X_T)).
  Images are in [0, 1] in bilatcf; the generators and discriminators work in CycleGAN's [−1, 1]
  (:func:`to_tanh_range` / :func:`from_tanh_range`), so the counterfactual is X_C = (G_A2N(2X − 1) + 1) / 2 and the L1
  cycle and identity losses are measured in [−1, 1] (twice their value in [0, 1]), the scale λ = 10 was chosen at.
* ``feature``: the same cycle on backbone features H = backbone(X), with the feature generators F_A2N, F_N2A of CGN and
  BR-GAN (:class:`~bilatcf.models.cgn.network.FeatureGenerator`) and their feature discriminators
  (:class:`~bilatcf.nn.blocks.FeatureDiscriminator`); H_C = F_A2N(H_T) and there is no image counterfactual.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from bilatcf.models.cgn.network import FeatureGenerator
from bilatcf.nn.backbones import Backbone
from bilatcf.nn.blocks import GAN_INIT_GAIN, FeatureDiscriminator, PatchDiscriminator, ResnetGenerator, init_weights
from bilatcf.nn.heads import LinearCAMHead

#: What the cycle translates: images (CycleGAN) or backbone features (as BR-GAN and CGN).
Level = Literal["image", "feature"]


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


class CycleClassifier(nn.Module):
    """The classifier of the translation baselines: backbone + CAM head on concat[H_T − H_C, H_T] (CGN's
    classification module). CycleGAN's and CX-GAN's networks add their generators and discriminators to it.

    Args:
        backbone: the classifier's feature extractor.
    """

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        channels = backbone.out_channels
        self.backbone = backbone
        self.head = LinearCAMHead(2 * channels, hidden=channels)

    def classify(self, target: Tensor, counterfactual: Tensor) -> dict[str, Tensor]:
        """Logits [B], CAM and features from one backbone call on [X_T; X_C] (shared batch-norm statistics)."""
        target_features, cf_features = self.backbone(torch.cat([target, counterfactual])).chunk(2)
        out = self.fuse(target_features, cf_features)
        return {**out, "target_features": target_features, "cf_features": cf_features}

    def fuse(self, target_features: Tensor, cf_features: Tensor) -> dict[str, Tensor]:
        """Logits [B] and CAM of the head on concat[H_T − H_C, H_T]."""
        logits, cam = self.head(torch.cat([target_features - cf_features, target_features], dim=1))
        return {"logits": logits, "cam": cam}


class CycleGANNetwork(CycleClassifier):
    """Generators G_A2N, G_N2A, discriminators D_N, D_A and the classifier (backbone + CAM head).

    Args:
        backbone: the classifier's feature extractor.
        generator_channels: base width of the ResNet generators (CycleGAN's ngf = 64); at feature level the width of
            the feature generators' residual blocks.
        generator_blocks: residual blocks of each generator (CycleGAN: 9 at 256 px, 6 at ≤ 128 px).
        discriminator_channels: base width of the PatchGANs (CycleGAN's ndf = 64); at feature level the hidden width
            of the feature discriminators.
        level: ``image`` (images in [−1, 1]) or ``feature`` (backbone features; see the module docstring).
    """

    def __init__(
        self,
        backbone: Backbone,
        generator_channels: int,
        generator_blocks: int,
        discriminator_channels: int,
        level: Level = "image",
    ) -> None:
        super().__init__(backbone)
        channels = backbone.out_channels
        self.level = level

        def generator() -> nn.Module:
            if level == "feature":  # starts as the identity (zero-initialised output projection), as in CGN and BR-GAN
                return FeatureGenerator(channels, generator_channels, num_blocks=generator_blocks)
            net = ResnetGenerator(1, 1, base=generator_channels, num_blocks=generator_blocks, out_activation="tanh")
            return init_weights(net, "normal", GAN_INIT_GAIN)

        def discriminator() -> nn.Module:
            if level == "feature":
                net = FeatureDiscriminator(channels, discriminator_channels)
            else:
                net = PatchDiscriminator(1, base=discriminator_channels, num_layers=3)
            return init_weights(net, "normal", GAN_INIT_GAIN)

        self.g_a2n, self.g_n2a = generator(), generator()
        self.d_n, self.d_a = discriminator(), discriminator()

    def counterfactual(self, images: Tensor) -> Tensor:
        """X_C = (G_A2N(2X − 1) + 1) / 2 in [0, 1] (image level)."""
        return from_tanh_range(self.g_a2n(to_tanh_range(images)))

    def forward(self, target: Tensor, reference: Tensor) -> dict[str, Tensor]:
        """The counterfactual, the explanation and the classifier's outputs, at the network's level.

        Image level: X_C = G_A2N(X_T) and the explanation |X_T − X_C|; the classifier reads X_C detached, so the
        classification loss never trains the generators.
        """
        if self.level == "feature":
            return self.forward_features(target, reference)
        counterfactual = self.counterfactual(target)
        out = self.classify(target, counterfactual.detach())
        out["counterfactual"] = counterfactual
        out["explanation"] = (target - counterfactual).abs()
        return out

    def forward_features(self, target: Tensor, reference: Tensor) -> dict[str, Tensor]:
        """Feature level: H_T, H_R from one backbone call on [X_T; X_R], H_C = F_A2N(H_T) and the classifier.

        F_A2N reads H_T detached (the CycleGAN losses train the generators, never the backbone) and the classifier
        reads H_C detached (the classification loss never trains the generators), so the backbone learns from the
        classification loss through H_T alone. The explanation is BR-GAN's and CGN's feature residual,
        max_c |H_T − H_C| [B, 1, h, w] (evaluation resizes it to the image).
        """
        target_features, reference_features = self.backbone(torch.cat([target, reference])).chunk(2)
        cf_features = self.g_a2n(target_features.detach())
        out = self.fuse(target_features, cf_features.detach())
        return {
            **out,
            "target_features": target_features,
            "reference_features": reference_features,
            "cf_features": cf_features,
            "explanation": (target_features - cf_features).abs().amax(dim=1, keepdim=True),
        }
