"""CVT: the LightningModule (options, training step, optimizer) around :class:`CVTNetwork`."""

from __future__ import annotations

from typing import get_args

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.base import BilateralModule
from bilatcf.models.cvt.network import Combine, CVTNetwork, Uniform, Variant
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import create_backbone
from bilatcf.registry import register_model


@register_model("cvt")
class CVT(BilateralModule):
    """Cross-view transformer: bidirectional attention between the target's and the reference's penultimate-stage
    maps, then each view's last stage, GAP, concatenation, linear → the target's logit (BCE on the task label).

    Args:
        backbone: any timm model name that runs in two halves (ResNet-like) or ``tv_alexnet``; the attention sits
            between its penultimate and last stage (ResNet: after layer3).
        weights: local weights file loaded into both encoders (no downloads); None trains from scratch.
        output_stride: backbone output stride (16: ResNet's layer4 dilated, maps of 1/16 of the image).
        shared_encoder: one encoder for both views (True) or two with their own weights (False, the paper's).
        variant: ``pixel`` (every position of the other view is a key) or ``token`` (``tokens`` spatial-softmax
            tokens of the other view are).
        heads: attention heads (the paper: 12–24).
        head_dim: query/key dimensions per head; the scale is 1/√head_dim.
        tokens: tokens per view of the ``token`` variant (the paper: 16–64); unused by ``pixel``.
        combine: ``layernorm`` (LayerNorm(x + Dropout(A))), ``add`` (x + Dropout(A)) or ``concat`` (a linear map of
            [x, Dropout(A)] back to the trunk's channels).
        dropout: dropout rate on the attention output, with masks keyed on the samples.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clipping (None: off).
    """

    description = "Cross-view transformer: bidirectional pixel/token attention between the views after layer3"
    paper = "van Tulder et al., MICCAI 2021 (baseline of DisAsymNet Tables 1-2)"

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        shared_encoder: bool = False,
        variant: Variant = "pixel",
        heads: int = 12,
        head_dim: int = 32,
        tokens: int = 16,
        combine: Combine = "layernorm",
        dropout: float = 0.1,
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        _check_options(variant, combine, heads, head_dim, tokens, dropout)
        self.save_hyperparameters()
        self.grad_clip = grad_clip
        target_encoder = create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride)
        reference_encoder = (
            target_encoder
            if shared_encoder
            else create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride)
        )
        self.network = CVTNetwork(target_encoder, reference_encoder, heads, head_dim, variant, tokens, combine, dropout)

    def forward(self, target: Tensor, reference: Tensor, uniform: Uniform | None = None) -> BilateralOutput:
        logits, cam, target_map, reference_map = self.network(target, reference, uniform)
        return BilateralOutput(logits=logits, cam=cam, target_features=target_map, reference_features=reference_map)

    def training_step(self, batch: BilateralBatch, batch_idx: int) -> Tensor:
        # Dropout masks come from the per-sample generators, so DDP and resumed runs reproduce a single run.
        uniform = self.sample_random(batch).rand if self.hparams.dropout > 0 else None
        out = self(batch.target, batch.reference, uniform)
        return self.log_losses({"loss": self.classification_loss(out.logits, getattr(batch, self.label_field))})

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "model": torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        }


def _check_options(variant: str, combine: str, heads: int, head_dim: int, tokens: int, dropout: float) -> None:
    if variant not in get_args(Variant):
        raise ConfigError(f"cvt: model.variant={variant!r} is not one of {', '.join(get_args(Variant))}.")
    if combine not in get_args(Combine):
        raise ConfigError(f"cvt: model.combine={combine!r} is not one of {', '.join(get_args(Combine))}.")
    for name, value in (("heads", heads), ("head_dim", head_dim), ("tokens", tokens)):
        if value < 1:
            raise ConfigError(
                f"cvt: model.{name}={value} must be a positive integer (the paper uses heads 12-24, "
                "head_dim 32, tokens 16-64)."
            )
    if not 0 <= dropout < 1:
        raise ConfigError(f"cvt: model.dropout={dropout} must be in [0, 1) (0 turns dropout off).")
