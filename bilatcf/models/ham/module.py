"""HAM's training: the task BCE on the abnormal head, the per-type BCE, and the bound / union (and optional box) losses
on the refined CAMs, in one AdamW step per batch."""

from __future__ import annotations

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.base import BilateralModule
from bilatcf.models.ham.network import (
    LESION_TYPES,
    HAMNetwork,
    bound_loss,
    box_loss,
    lesion_type_labels,
    meta_lesion_types,
    type_bce,
    union_loss,
)
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import create_backbone
from bilatcf.registry import register_model

#: The stream of :meth:`sample_random` the dropout masks come from.
DROPOUT_STREAM = 0


@register_model("ham")
class HAM(BilateralModule):
    """Hierarchical attention mining, single image: the target through a ResNet with foreground attention on its last
    stage, LSE pooling into an abnormal head (the task logit) and a per-lesion-type head, whose refined CAMs are tied
    by the bound (type ⊂ abnormal) and union (abnormal ⊂ ∪ types) losses.

    The per-type labels (mass / calcification / distortion) come from ``batch.meta["lesion_types"]`` (synthetic data);
    where a batch does not carry them, the per-type, bound and union losses skip the image (see docs/models/ham.md).

    Args:
        backbone: any timm model name (a ResNet in the paper); the attention is on its last stage.
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride (16: 8×4 maps at 128×64, as the other baselines; the authors' 8 costs
            3.3× as much here, see docs/models/ham.md).
        hidden: channels of the fused map both heads pool (the authors': 512).
        attention_reduction: bottleneck reduction of the attention's 1×1 convs.
        dropout: channel dropout on the fused map in training.
        lse_r: LSE pooling sharpness r.
        abnormal_weight: weight of the abnormal head's BCE (on the task label).
        type_weight: weight of the per-type BCE.
        bound_weight: weight of the bound loss (each type's map inside the abnormality map).
        union_weight: weight of the union loss (the abnormality map inside the union of the type maps).
        box_supervision: add the MSE between the refined abnormality map and the lesion mask where the batch has one.
        box_weight: weight of that MSE.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clipping (None: off).
    """

    description = (
        "HAM: foreground attention, LSE pooling, abnormal + per-lesion-type heads tied by bound/union CAM losses"
    )
    paper = "Ouyang et al., IEEE TMI 2020 (DisAsymNet baseline)"
    #: Tiny tests: a narrow fused map (the default 512 is the authors').
    test_config = {"hidden": 32}

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        hidden: int = 512,
        attention_reduction: int = 16,
        dropout: float = 0.1,
        lse_r: float = 6.0,
        abnormal_weight: float = 0.01,
        type_weight: float = 1.0,
        bound_weight: float = 0.001,
        union_weight: float = 0.001,
        box_supervision: bool = False,
        box_weight: float = 0.5,
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        _check_options(self.hparams)
        self.grad_clip = grad_clip
        self.network = HAMNetwork(
            create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride),
            hidden=hidden,
            num_types=len(LESION_TYPES),
            dropout=dropout,
            lse_r=lse_r,
            reduction=attention_reduction,
        )

    def forward(
        self,
        target: Tensor,
        reference: Tensor,
        target_other: Tensor | None = None,
        reference_other: Tensor | None = None,
        dropout_noise: Tensor | None = None,
    ) -> BilateralOutput:
        """``logits`` [B] (abnormal head), ``cam`` = ``explanation`` [B, 1, H, W] (the refined abnormality CAM) and
        ``target_features`` (the fused map f the heads pool). The reference is never computed."""
        fused = self.network(target, dropout_noise)
        cam = self.network.abnormal_map(fused, (target.shape[-2], target.shape[-1]))
        return BilateralOutput(
            logits=self.network.abnormal_logits(fused), cam=cam, explanation=cam, target_features=fused
        )

    def forward_batch(self, batch: BilateralBatch) -> BilateralOutput:
        noise = None
        if self.training and self.hparams.dropout > 0:
            # Dropout masks keyed on (seed, step, sample): the same under DDP and after a resume.
            noise = self.sample_random(batch, DROPOUT_STREAM).rand(self.hparams.hidden, 1, 1)
        return self(batch.target, batch.reference, dropout_noise=noise)

    def extract_features(self, images: Tensor) -> Tensor:
        return self.network.backbone(images)

    def training_step(self, batch: BilateralBatch, batch_idx: int) -> Tensor:
        return self.log_losses(self.losses(batch, self.forward_batch(batch)))

    def losses(self, batch: BilateralBatch, out: BilateralOutput) -> dict[str, Tensor]:
        """The weighted terms: ``abnormal``, ``type``, ``bound``, ``union`` (and ``box`` with box supervision)."""
        hp, fused, abnormal_map = self.hparams, out.target_features, out.cam
        labels = getattr(batch, self.label_field)
        abnormal = batch.target_abnormal if batch.target_abnormal is not None else torch.full_like(labels, -1)
        types = lesion_type_labels(meta_lesion_types(batch.meta), abnormal)
        present = types == 1
        # The hierarchy holds on positive images with a known type (a lesion-free image's maps locate nothing).
        eligible = (labels == 1) & present.any(1)
        type_maps = self.network.type_maps(fused, tuple(abnormal_map.shape[-2:]))
        losses = {
            "abnormal": hp.abnormal_weight * self.classification_loss(out.logits, labels),
            "type": hp.type_weight * type_bce(self.network.type_logits(fused), types),
            "bound": hp.bound_weight * bound_loss(type_maps, abnormal_map, present, eligible),
            "union": hp.union_weight * union_loss(type_maps, abnormal_map, present, eligible),
        }
        if hp.box_supervision:
            mask = batch.target_mask
            annotated = batch.has_mask.bool() & (labels == 1) & (mask.flatten(1).amax(1) > 0)
            losses["box"] = hp.box_weight * box_loss(abnormal_map, mask, annotated)
        return losses

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "model": torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        }


def _check_options(hp) -> None:
    """Constructor values that cannot work, with what to set instead."""
    if hp.hidden < 1 or hp.attention_reduction < 1:
        raise ConfigError(
            f"ham: model.hidden={hp.hidden} and model.attention_reduction={hp.attention_reduction} must be "
            "positive integers (defaults: 512, the authors' width, and 16)."
        )
    if not 0 <= hp.dropout < 1:
        raise ConfigError(f"ham: model.dropout={hp.dropout} must be in [0, 1) (the authors': 0.1).")
    if not hp.lse_r > 0:
        raise ConfigError(f"ham: model.lse_r={hp.lse_r} must be > 0 (the authors': 6).")
    weights = ("abnormal_weight", "type_weight", "bound_weight", "union_weight", "box_weight")
    negative = [name for name in weights if hp[name] < 0]
    if negative:
        raise ConfigError(
            f"ham: {', '.join(f'model.{n}={hp[n]}' for n in negative)} must be ≥ 0 (0 switches a term off)."
        )
