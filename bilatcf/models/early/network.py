"""Image-level early fusion, pure PyTorch: the two breasts and their difference as the channels of one image.

The data pipeline gives every image in the canonical orientation (chest wall on the left; right breasts are flipped
left-right when they are read), so the reference arrives already mirrored: its pixel (i, j) is the anatomical mirror
of the target's pixel (i, j), and nothing is flipped here.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The input channels, in order.
CHANNELS = ("target", "reference", "target - reference")


def bilateral_channels(target: Tensor, reference: Tensor) -> Tensor:
    """[B, 1, H, W] target and mirrored reference → [B, 3, H, W] channels [X_T, X_R, X_T − X_R].

    The difference is in [−1, 1]: it is where the two sides disagree pixel by pixel, which is also where any
    misalignment between them shows up.
    """
    return torch.cat([target, reference, target - reference], dim=1)
