from typing import ClassVar

from bilatcf.models.classifier import FusionClassifier
from bilatcf.models.sff.network import FourViewFusion
from bilatcf.registry import register_model


@register_model("sff")
class SFF(FusionClassifier):
    """Four-view fusion: ipsilateral CC/MLO and contralateral views (needs ``--data.four_view true``)."""

    description = "Four-view fusion: target + contralateral spatially, the other views as global context"
    paper = "baseline (CGN TIP 2021 Table II 'SFF')"
    data_options: ClassVar[dict] = {"four_view": True}

    def build_fusion(self, channels: int) -> FourViewFusion:
        return FourViewFusion(channels)
