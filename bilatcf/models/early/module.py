"""Early fusion: one backbone on [target, mirrored reference, target − reference], GAP, linear head, CAM."""

from __future__ import annotations

import torch
from torch import Tensor

from bilatcf.models.base import BilateralModule
from bilatcf.models.early.network import CHANNELS, bilateral_channels
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import create_backbone
from bilatcf.nn.heads import LinearCAMHead
from bilatcf.registry import register_model


@register_model("early")
class EarlyFusion(BilateralModule):
    """Image-level bilateral fusion: the backbone's input channels are [X_T, X_R, X_T − X_R].

    One backbone pass per pair (half of SBF's two), on a 3-channel image; then global average pooling, one linear
    logit (BCE on the task label) and the CAM of the predicted class on the fused feature map.

    Args:
        backbone: any timm model name or ``tv_alexnet``, built with 3 input channels (a local RGB weights file loads
            as is: its three input planes read target, reference and difference).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride (None: the backbone's own).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clipping (None: off).
    """

    description = "Image-level early fusion: one backbone on channels [target, mirrored reference, target − reference]"
    paper = "baseline (classic bilateral CAD: image-level fusion)"

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.grad_clip = grad_clip
        self.backbone = create_backbone(backbone, in_chans=len(CHANNELS), weights=weights, output_stride=output_stride)
        self.head = LinearCAMHead(self.backbone.out_channels)

    def forward(
        self,
        target: Tensor,
        reference: Tensor,
        target_other: Tensor | None = None,
        reference_other: Tensor | None = None,
    ) -> BilateralOutput:
        logits, cam = self.head(self.backbone(bilateral_channels(target, reference)))
        return BilateralOutput(logits=logits, cam=cam)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "model": torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        }
