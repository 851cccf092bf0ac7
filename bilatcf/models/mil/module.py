"""Deep multi-instance networks for whole-mammogram classification (Zhu et al., MICCAI 2017), on the target alone.

The backbone's last feature map is a bag of instances; a shared 1×1-conv classifier scores every instance and the image
score is the top instance's. ``variant`` picks the scheme (max pooling, label assignment, sparse MIL). The reference is
never computed. See ``docs/models/mil.md`` for the equation map, the defaults and the deviations.
"""

from __future__ import annotations

from typing import get_args

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.base import BilateralModule
from bilatcf.models.mil.network import (
    InstanceClassifier,
    MILOutput,
    Variant,
    image_cross_entropy,
    image_logit,
    label_assignment_loss,
    sparsity_penalty,
)
from bilatcf.nn.backbones import create_backbone
from bilatcf.registry import register_model

#: Zhu et al.'s L2 coefficient of each scheme (their training setting).
AUTHORS_WEIGHT_DECAY: dict[str, float] = {"max": 1e-5, "label_assign": 1e-5, "sparse": 5e-6}


@register_model("mil")
class MIL(BilateralModule):
    """Single-image deep multi-instance network: backbone → shared instance classifier → max over the bag.

    Outputs: ``logits`` [B] = logit of the image probability max_ij r_ij (= max_ij z_ij, computed on logits),
    ``cam`` and ``explanation`` [B, 1, h, w] = the patch-probability map r = σ(z) (the malignant class's map whatever
    the prediction), ``target_features`` (the bag) and ``instance_logits`` z.

    Args:
        backbone: any timm model name or ``tv_alexnet`` (its last feature map is the bag).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride (16: one instance per 16×16 pixels; None: the backbone's own).
        variant: ``max`` (max-pooling MIL, 2-class softmax per instance), ``label_assign`` (label assignment: the
            ``top_k`` instances get the image label, the others 0, BCE over all) or ``sparse`` (max pooling plus an
            L1 penalty on the patch-probability map).
        top_k: instances that get the image label (``label_assign`` only; Zhu et al.: 1).
        sparsity_weight: μ, the weight of the L1 penalty ‖r‖₁ (``sparse`` only; Zhu et al.: 1e-4).
        head_channels: width of the instance classifier's two hidden 1×1 convolutions (Zhu et al.: 128).
        lr: Adam learning rate (the zoo's common 3e-4; Zhu et al.: 5e-5).
        weight_decay: L2 coefficient λ, as Adam's (coupled) weight decay: λ·θ is added to every gradient. None: Zhu
            et al.'s per scheme, 1e-5 (``max``, ``label_assign``) or 5e-6 (``sparse``).
        grad_clip: gradient-norm clipping (None: off).
    """

    description = "Deep multi-instance network (variant: max|label_assign|sparse) on the target; patch map as CAM"
    paper = "Zhu et al., MICCAI 2017 (baseline)"

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        variant: Variant = "max",
        top_k: int = 1,
        sparsity_weight: float = 1e-4,
        head_channels: int = 128,
        lr: float = 3e-4,
        weight_decay: float | None = None,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        _check_options(variant, top_k, sparsity_weight, head_channels, lr, weight_decay)
        self.save_hyperparameters()
        self.grad_clip = grad_clip
        self.backbone = create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride)
        self.head = InstanceClassifier(self.backbone.out_channels, head_channels, classes=2 if variant == "max" else 1)

    @property
    def l2_weight(self) -> float:
        """The L2 coefficient in use: ``weight_decay``, or the authors' value for the variant when it is None."""
        weight_decay = self.hparams.weight_decay
        return AUTHORS_WEIGHT_DECAY[self.hparams.variant] if weight_decay is None else weight_decay

    # ------------------------------------------------------------------ model API
    def forward(self, target: Tensor, reference: Tensor) -> MILOutput:
        """The bag of ``target`` scored instance by instance; ``reference`` is ignored (a single-image method)."""
        features = self.backbone(target)
        instance_logits = self.head(features)
        probabilities = torch.sigmoid(instance_logits)
        return MILOutput(
            logits=image_logit(instance_logits),
            cam=probabilities,
            explanation=probabilities,
            target_features=features,
            instance_logits=instance_logits,
        )

    def extract_features(self, images: Tensor) -> Tensor:
        return self.backbone(images)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """``model``: Adam with the L2 penalty as coupled weight decay (Zhu et al.'s L2 regularisation)."""
        return {"model": torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.l2_weight)}

    # ------------------------------------------------------------------ training
    def training_step(self, batch: BilateralBatch, batch_idx: int) -> Tensor:
        out = self.forward_batch(batch)
        return self.log_losses(self.losses(out, getattr(batch, self.label_field)))

    def losses(self, out: MILOutput, labels: Tensor) -> dict[str, Tensor]:
        """The loss terms of the variant: ``cls`` (CE on the image probability), ``instance`` (label assignment's
        BCE over every instance), ``sparsity`` (μ‖r‖₁)."""
        hp = self.hparams
        if hp.variant == "label_assign":
            return {"instance": label_assignment_loss(out.logits, out.instance_logits, labels, hp.top_k)}
        losses = {"cls": image_cross_entropy(out.logits, labels)}
        if hp.variant == "sparse":
            losses["sparsity"] = hp.sparsity_weight * sparsity_penalty(out.explanation)
        return losses


def _check_options(
    variant: str, top_k: int, sparsity_weight: float, head_channels: int, lr: float, weight_decay: float | None
) -> None:
    if variant not in get_args(Variant):
        raise ConfigError(f"mil: model.variant={variant!r} is not one of {', '.join(get_args(Variant))}.")
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"mil: model.top_k={top_k!r} must be a whole number ≥ 1 (instances given the image label).")
    if sparsity_weight < 0:
        raise ConfigError(f"mil: model.sparsity_weight={sparsity_weight} must be ≥ 0 (the weight μ of ‖r‖₁).")
    if head_channels < 1:
        raise ConfigError(f"mil: model.head_channels={head_channels} must be ≥ 1.")
    if lr <= 0:
        raise ConfigError(f"mil: model.lr={lr} must be > 0.")
    if weight_decay is not None and weight_decay < 0:
        raise ConfigError(
            f"mil: model.weight_decay={weight_decay} must be ≥ 0, or null for the authors' value of the variant."
        )
