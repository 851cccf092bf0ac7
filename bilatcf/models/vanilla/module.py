from torch import Tensor

from bilatcf.models.classifier import FusionClassifier
from bilatcf.models.outputs import BilateralOutput
from bilatcf.models.vanilla.network import TargetOnly
from bilatcf.registry import register_model


@register_model("vanilla")
class Vanilla(FusionClassifier):
    """Single-view baseline: backbone → GAP → linear on the target image only (the reference is never computed)."""

    description = "Single-view classifier (target only): the reference every bilateral method must beat"
    paper = "baseline (CGN/BR-GAN Table II 'ResNet50'/'AlexNet')"

    def build_fusion(self, channels: int) -> TargetOnly:
        return TargetOnly(channels)

    def forward(
        self,
        target: Tensor,
        reference: Tensor,
        target_other: Tensor | None = None,
        reference_other: Tensor | None = None,
    ) -> BilateralOutput:
        features = self.backbone(target)
        logits, cam = self.head(self.fusion(features))
        return BilateralOutput(logits=logits, cam=cam, target_features=features)
