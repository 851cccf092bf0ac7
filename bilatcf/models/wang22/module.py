"""Wang et al. (MIDL 2022), "Looking for abnormalities using asymmetrical information from bilateral mammograms": an
approximation, DisAsymNet's AsyC alone (see docs/models/wang22.md for why)."""

from __future__ import annotations

from typing import ClassVar

from bilatcf.models.disasymnet import DisAsymNet
from bilatcf.registry import register_model


@register_model("wang22")
class Wang22(DisAsymNet):
    """DisAsymNet's asymmetric transformer classifier (AsyC) without the decoder, the self-adversarial scheme and the
    synthesis: the configuration of ``disasymnet`` with ``decoder`` and ``synthesis`` off, trained on L_diag.

    Args:
        backbone: the shared encoder (any timm model name or ``tv_alexnet``; the paper's comparison: ResNet-18).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride.
        transformer_depth: blocks of the asymmetric transformer (DisAsymNet's 12).
        transformer_heads: attention heads per block (8).
        lr: Adam learning rate (1e-4).
        lr_step_epochs: the learning rate is multiplied by ``lr_gamma`` every this many epochs.
        lr_gamma: the decay factor.
        grad_clip: gradient-norm clipping (None: off).
    """

    description = "Wang et al. 2022 (approximation): DisAsymNet's asymmetric transformer classifier (AsyC) alone"
    paper = "Wang et al., MIDL 2022 (approximated by DisAsymNet's AsyC, MICCAI 2023)"
    test_config: ClassVar[dict] = {"transformer_depth": 1}

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        transformer_depth: int = 12,
        transformer_heads: int = 8,
        lr: float = 1e-4,
        lr_step_epochs: int = 20,
        lr_gamma: float = 0.1,
        grad_clip: float | None = None,
    ) -> None:
        # Every hyper-parameter forwarded is an argument here: under LightningCLI, save_hyperparameters stores the
        # arguments the CLI passed to this class, and load_from_checkpoint rebuilds it from them.
        super().__init__(
            backbone=backbone,
            weights=weights,
            output_stride=output_stride,
            transformer=True,
            decoder=False,
            synthesis=False,
            transformer_depth=transformer_depth,
            transformer_heads=transformer_heads,
            lr=lr,
            lr_step_epochs=lr_step_epochs,
            lr_gamma=lr_gamma,
            grad_clip=grad_clip,
        )
