"""Classification heads that expose their class activation map (CAM, Zhou et al. 2016)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LinearCAMHead(nn.Module):
    """Optional conv fusion block → global average pooling → linear → one logit, plus the CAM of the predicted class.

    With a single binary logit z = w·GAP(f) + b, the map of class 1 is w·f and that of class 0 is −w·f; the CAM returned
    is the map of the *predicted* class (what top-1 localisation evaluates).

    Args:
        in_channels: channels of the (fused) feature map.
        hidden: channels of the 3×3 conv block applied first (the seeds' "FusionLayer"); None: no conv block.
    """

    def __init__(self, in_channels: int, hidden: int | None = None) -> None:
        super().__init__()
        self.fuse = (
            nn.Identity()
            if hidden is None
            else nn.Sequential(
                nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)
            )
        )
        self.linear = nn.Linear(in_channels if hidden is None else hidden, 1)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Return (logits [B], cam [B, 1, h, w]) for features [B, C, h, w]."""
        fused = self.fuse(features)
        logits = self.linear(fused.mean(dim=(2, 3))).squeeze(1)
        class_map = torch.einsum("bchw,c->bhw", fused, self.linear.weight[0])
        sign = torch.where(logits.detach() >= 0, 1.0, -1.0).to(class_map.dtype)
        return logits, (class_map * sign[:, None, None]).unsqueeze(1)
