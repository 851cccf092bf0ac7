"""SBF (simple bilateral fusion): concatenate target and reference features; a conv block fuses them."""

import torch
from torch import Tensor, nn


class ConcatFusion(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_channels = 2 * channels
        self.hidden = channels  # the head's 3×3 conv block (the seeds' FusionLayer) mixes the two sides

    def forward(self, target: Tensor, reference: Tensor, *others: Tensor) -> Tensor:
        return torch.cat([target, reference], dim=1)
