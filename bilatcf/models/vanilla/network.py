"""Vanilla: single view. The "fusion" keeps the target's features and ignores the reference."""

from torch import Tensor, nn


class TargetOnly(nn.Module):
    hidden = None

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_channels = channels

    def forward(self, target: Tensor, *others: Tensor) -> Tensor:
        return target
