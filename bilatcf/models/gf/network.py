"""GF (gated fusion): a learned per-position, per-channel gate decides how much of the bilateral difference to add."""

import torch
from torch import Tensor, nn


class GatedFusion(nn.Module):
    """fused = concat[H_T, g ⊙ (H_T − H_R)], g = σ(conv1×1(concat[H_T, H_R])).

    The gate learns where the asymmetry H_T − H_R is informative (a lesion) and where it is only misregistration of two
    roughly symmetric breasts, which plain concatenation (SBF) must learn implicitly.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Conv2d(2 * channels, channels, 1), nn.Sigmoid())
        self.out_channels = 2 * channels
        self.hidden = channels

    def forward(self, target: Tensor, reference: Tensor, *others: Tensor) -> Tensor:
        gate = self.gate(torch.cat([target, reference], dim=1))
        return torch.cat([target, gate * (target - reference)], dim=1)
