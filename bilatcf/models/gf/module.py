from bilatcf.models.classifier import FusionClassifier
from bilatcf.models.gf.network import GatedFusion
from bilatcf.registry import register_model


@register_model("gf")
class GF(FusionClassifier):
    """Gated fusion: SBF with a learned gate on the bilateral difference (asymmetric enhancement)."""

    description = "Gated bilateral fusion: learned gate on the target-reference difference"
    paper = "baseline (CGN TIP 2021 Table II 'GF')"

    def build_fusion(self, channels: int) -> GatedFusion:
        return GatedFusion(channels)
