from bilatcf.models.classifier import FusionClassifier
from bilatcf.models.sbf.network import ConcatFusion
from bilatcf.registry import register_model


@register_model("sbf")
class SBF(FusionClassifier):
    """Simple bilateral fusion: concat[H_T, H_R] → fusion conv → GAP → linear.

    Two backbone passes and nothing else: the cost floor of any bilateral method (benchmarks report ratios to it).
    """

    description = "Simple bilateral fusion: concatenated target/reference features → fusion conv → classifier"
    paper = "baseline (CGN TIP 2021 Table III 'SBF')"

    def build_fusion(self, channels: int) -> ConcatFusion:
        return ConcatFusion(channels)
