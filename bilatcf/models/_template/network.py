"""The template's networks, pure PyTorch: a map generator, a patch discriminator and a classifier with a CAM.

The generator reads the pair and writes an additive map M; the counterfactual is X_C = clip(X_T + M, 0, 1) and M is
the explanation. A new method replaces these pieces with its paper's and keeps the module's step structure.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bilatcf.nn.backbones import Backbone
from bilatcf.nn.blocks import PatchDiscriminator, UNet, init_weights
from bilatcf.nn.heads import LinearCAMHead


class TemplateNetwork(nn.Module):
    """Classifier (backbone → CAM head on the target), map generator (U-Net on [X_T, X_R]) and discriminator.

    Args:
        backbone: the feature extractor of the classifier.
        generator_channels: base width of the U-Net map generator.
        discriminator_channels: base width of the PatchGAN.
    """

    def __init__(self, backbone: Backbone, generator_channels: int, discriminator_channels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = LinearCAMHead(backbone.out_channels)
        self.generator = init_weights(UNet(2, 1, base=generator_channels, depth=2, out_activation="tanh"))
        self.discriminator = init_weights(PatchDiscriminator(1, base=discriminator_channels, num_layers=2))

    def forward(self, target: Tensor, reference: Tensor) -> dict[str, Tensor]:
        """Logits [B], CAM [B,1,h,w], the additive map M and the counterfactual X_C, both [B,1,H,W]."""
        logits, cam = self.head(self.backbone(target))
        explanation = self.generator(torch.cat([target, reference], dim=1))
        counterfactual = (target + explanation).clamp(0.0, 1.0)
        return {"logits": logits, "cam": cam, "explanation": explanation, "counterfactual": counterfactual}
