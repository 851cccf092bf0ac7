"""SFF (four-view fusion): target and reference fused spatially, the two other views as global context."""

import torch
from torch import Tensor, nn


class FourViewFusion(nn.Module):
    """concat[H_T, H_R, GAP(H_T,other), GAP(H_R,other)] with the pooled other views broadcast over space.

    The ipsilateral other view (CC ↔ MLO) shows the breast from another angle, so its pixels do not align
    with the target's: it enters as a global descriptor, while the mirrored contralateral view aligns roughly
    and is fused spatially.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_channels = 4 * channels
        self.hidden = channels

    def forward(self, target: Tensor, reference: Tensor, target_other: Tensor, reference_other: Tensor) -> Tensor:
        size = target.shape[-2:]
        context = [v.mean(dim=(2, 3), keepdim=True).expand(-1, -1, *size) for v in (target_other, reference_other)]
        return torch.cat([target, reference, *context], dim=1)
