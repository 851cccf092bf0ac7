"""The CAM / Grad-CAM baseline: ``vanilla``'s classifier, the positive class's CAM or Grad-CAM as explanation."""

from __future__ import annotations

from typing import get_args

from torch import Tensor

from bilatcf.errors import ConfigError
from bilatcf.models.cam.network import MapKind, explanation_map
from bilatcf.models.outputs import BilateralOutput
from bilatcf.models.vanilla import Vanilla
from bilatcf.registry import register_model


@register_model("cam")
class CAM(Vanilla):
    """A plain single-image classifier (backbone → GAP → linear on the target) whose explanation is a class map.

    Training is ``vanilla``'s (BCE, AdamW). ``explanation`` [B, 1, H, W] is the map of the positive class (the lesion)
    on the backbone's last feature map, upsampled to the image and min–max normalised; it is computed in evaluation
    only (training reads the logits alone). ``cam`` stays the head's map of the *predicted* class, as for ``vanilla``.

    Args:
        backbone: any timm model name or ``tv_alexnet`` (the maps are on its last convolutional feature map).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride (16: maps of 1/16 of the image).
        map: ``cam`` (Zhou et al. 2016) or ``gradcam`` (Selvaraju et al. 2017, by autograd).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clipping (None: off).
    """

    description = "Plain single-image classifier whose CAM or Grad-CAM (map: cam|gradcam) is the explanation map"
    paper = "Zhou et al., CVPR 2016 (CAM); Selvaraju et al., ICCV 2017 (Grad-CAM) (baselines)"

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        map: MapKind = "cam",
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        grad_clip: float | None = None,
    ) -> None:
        if map not in get_args(MapKind):
            raise ConfigError(f"cam: model.map={map!r} is not one of {', '.join(get_args(MapKind))}.")
        super().__init__(backbone, weights, output_stride, lr, weight_decay, grad_clip)

    def forward(
        self,
        target: Tensor,
        reference: Tensor,
        target_other: Tensor | None = None,
        reference_other: Tensor | None = None,
    ) -> BilateralOutput:
        out = super().forward(target, reference)
        if self.training:
            return out
        size = (target.shape[-2], target.shape[-1])
        return out.replace(explanation=explanation_map(out.target_features, self.head, self.hparams.map, size))
