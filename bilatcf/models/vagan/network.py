"""VA-GAN's networks, pure PyTorch: a U-Net map generator and a WGAN-GP critic.

The generator reads an abnormal image x and writes a map M(x) of the same size (one channel, linear output); the
generated normal-looking image is y = tanh(x + M(x)) (Baumgartner et al. 2018: y = x + M(x), squashed by a tanh
into the images' range), and the critic tells y from real normal images. Images are in [−1, 1] here: bilatcf's
[0, 1] images are mapped by :func:`~bilatcf.models.cyclegan.network.to_tanh_range` (2x − 1), and y back by
``from_tanh_range`` ((y + 1) / 2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bilatcf.nn.blocks import GAN_INIT_GAIN, Norm, UNet, WGANCritic, init_weights


class VAGANNetwork(nn.Module):
    """Map generator M (U-Net, 1-channel linear output) and critic D (convs without batch norm, GAP output).

    Args:
        generator_channels: channels of the U-Net's first level (doubled at each level).
        generator_depth: down-sampling steps of the U-Net (H and W must be divisible by 2^depth).
        generator_norm: normalisation of the U-Net's conv blocks.
        critic_channels: channels of the critic's first conv (doubled at each stride-2 conv, capped at 8×).
        critic_depth: stride-2 convs of the critic.
        tanh_output: y = tanh(x + M) (the default) or y = x + M.
    """

    def __init__(
        self,
        generator_channels: int,
        generator_depth: int,
        generator_norm: Norm,
        critic_channels: int,
        critic_depth: int,
        tanh_output: bool = True,
    ) -> None:
        super().__init__()
        self.tanh_output = tanh_output
        self.generator = init_weights(
            UNet(1, 1, base=generator_channels, depth=generator_depth, norm=generator_norm, out_activation=None),
            "normal",
            GAN_INIT_GAIN,
        )
        self.critic = init_weights(WGANCritic(1, base=critic_channels, num_down=critic_depth), "normal", GAN_INIT_GAIN)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(M(x), y) for images x [B, 1, H, W] in [−1, 1]: the map and the generated normal-looking image."""
        attribution = self.generator(images)
        shifted = images + attribution
        return attribution, torch.tanh(shifted) if self.tanh_output else shifted


def map_l1(attribution: Tensor) -> Tensor:
    """L_reg = ‖M(x)‖₁ per image [B], as the mean |M| over its pixels (the mean keeps λ = 100 independent of the image
    size), in float32. It is also VA-GAN's anomaly score here."""
    return attribution.float().abs().flatten(1).mean(dim=1)
