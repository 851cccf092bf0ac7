"""Backbone → fusion → CAM head: the shape shared by the classification baselines (vanilla, sbf, gf, sff).

Each baseline only chooses its fusion module (its ``network.py``); the backbone is shared by all views, as in the seeds.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bilatcf.data.types import BilateralBatch
from bilatcf.models.base import BilateralModule
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import create_backbone
from bilatcf.nn.heads import LinearCAMHead


class FusionClassifier(BilateralModule):
    """A classifier on fused bilateral features; subclasses implement :meth:`build_fusion`.

    Args:
        backbone: any timm model name or ``tv_alexnet`` (features of the last conv layer, shared by all views).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride; 16 doubles the CAM resolution of a stride-32 ResNet (None: the
            model's own).
        lr: Adam learning rate.
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clipping (None: off), applied after AMP unscaling.
    """

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
        self.backbone = create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride)
        self.fusion = self.build_fusion(self.backbone.out_channels)
        self.head = LinearCAMHead(self.fusion.out_channels, hidden=self.fusion.hidden)

    def build_fusion(self, channels: int) -> nn.Module:
        """The method's fusion module, with attributes ``out_channels`` and ``hidden`` (head conv width or None)."""
        raise NotImplementedError

    def extract_features(self, images: Tensor) -> Tensor:
        return self.backbone(images)

    def forward(
        self,
        target: Tensor,
        reference: Tensor,
        target_other: Tensor | None = None,
        reference_other: Tensor | None = None,
    ) -> BilateralOutput:
        views = [target, reference] + [v for v in (target_other, reference_other) if v is not None]
        features = self.backbone(torch.cat(views)).chunk(len(views))
        logits, cam = self.head(self.fusion(*features))
        return BilateralOutput(logits=logits, cam=cam, target_features=features[0])

    def forward_batch(self, batch: BilateralBatch) -> BilateralOutput:
        return self(batch.target, batch.reference, batch.target_other, batch.reference_other)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "model": torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        }
