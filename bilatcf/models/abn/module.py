"""ABN as a bilatcf model: the target image alone, the perception branch's logit as the task score."""

from __future__ import annotations

from typing import get_args

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.abn.network import (
    AttentionBranchNetwork,
    MapKind,
    abn_loss,
    attention_stage,
    binary_logit,
    predicted_class_map,
)
from bilatcf.models.base import BilateralModule
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import create_backbone
from bilatcf.registry import register_model


@register_model("abn")
class ABN(BilateralModule):
    """Attention branch network on the target image (the reference is never computed).

    ``logits`` is the perception branch's z1 − z0 (read through a sigmoid: the softmax probability of class 1);
    ``heads["attention"]`` is the attention branch's a1 − a0, evaluated against the same label. ``explanation`` is the
    attention map M; ``cam`` is M too (``map: attention``) or the attention branch's map of the predicted class
    (``map: class``). Training minimises CE(attention) + CE(perception) with AdamW.

    Args:
        backbone: a timm model whose stages run in sequence (ResNet-like: resnet18, resnet50, convnext_*) or
            ``tv_alexnet``; the attention branch sits before its last stage.
        weights: local weights file for the backbone (no downloads); None trains from scratch. The attention branch is
            always newly initialised.
        output_stride: backbone output stride (16: ResNet's layer4 dilated at 1/16; None: the model's own, 1/32).
        map_kernel: kernel of the conv K→1 that makes M (3: the authors' code; 1: the paper's figure); odd.
        map: which map is ``cam``: ``attention`` (M, class-agnostic) or ``class`` (the predicted class's map).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clipping (None: off).
    """

    description = "Attention branch network (target only): a stride-1 attention branch's map M re-weights g as g·M + g"
    paper = "Fukui et al., CVPR 2019 (baseline of CGN Table I / BR-GAN Table 1)"
    extra_heads = {"attention": "label"}

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        map_kernel: int = 3,
        map: MapKind = "attention",
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        if map not in get_args(MapKind):
            raise ConfigError(f"abn: model.map={map!r} is not one of {', '.join(get_args(MapKind))}.")
        if not isinstance(map_kernel, int) or map_kernel < 1 or map_kernel % 2 == 0:
            raise ConfigError(
                f"abn: model.map_kernel={map_kernel!r} must be an odd positive integer (3: the authors' code, "
                "1: the paper's figure), so that the attention map keeps the trunk's size."
            )
        self.save_hyperparameters()
        self.grad_clip = grad_clip
        self.network = AttentionBranchNetwork(
            create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride),
            attention_stage(backbone, output_stride),
            map_kernel,
        )

    def forward(
        self,
        target: Tensor,
        reference: Tensor,
        target_other: Tensor | None = None,
        reference_other: Tensor | None = None,
    ) -> BilateralOutput:
        parts = self.network(target)
        cam = parts.attention_map if self.hparams.map == "attention" else predicted_class_map(parts)
        return BilateralOutput(
            logits=binary_logit(parts.perception_logits),
            cam=cam,
            explanation=parts.attention_map,
            target_features=parts.features,
            heads={"attention": binary_logit(parts.attention_logits)},
        )

    def training_step(self, batch: BilateralBatch, batch_idx: int) -> Tensor:
        out = self.forward_batch(batch)
        loss = self.log_losses(abn_loss(out.heads["attention"], out.logits, getattr(batch, self.label_field)))
        self.log(
            "train/loss",
            loss.detach(),
            on_step=True,
            on_epoch=False,
            prog_bar=True,
            sync_dist=True,
            batch_size=len(batch),
        )
        return loss

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "model": torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        }
