"""Late fusion (Li et al., IEEE/ACM TCBB 2020) as DisAsymNet (MICCAI 2023) compares with it, on bilateral pairs."""

from __future__ import annotations

from typing import ClassVar

from bilatcf.models.disasymnet import DisAsymNet
from bilatcf.registry import register_model


@register_model("latefusion")
class LateFusion(DisAsymNet):
    """Shared encoder per side → GAP → concatenation → asymmetry head, plus a per-side abnormal head and its CAM.

    The configuration of ``disasymnet`` with ``transformer``, ``decoder`` and ``synthesis`` off: the paper's "AsyC
    ablated" network, trained on L_diag (BCE of the asymmetry head + BCE of both sides' abnormal heads).

    Args:
        backbone: the shared encoder (any timm model name or ``tv_alexnet``; DisAsymNet's comparison: ResNet-18).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride.
        lr: Adam learning rate (DisAsymNet's setting for every method: 1e-4).
        lr_step_epochs: the learning rate is multiplied by ``lr_gamma`` every this many epochs.
        lr_gamma: the decay factor.
        grad_clip: gradient-norm clipping (None: off).
    """

    description = "Late fusion: shared encoder per side, pooled features concatenated → asymmetry head, per-side heads"
    paper = "Li et al., IEEE/ACM TCBB 2020 (baseline of DisAsymNet, MICCAI 2023)"
    test_config: ClassVar[dict] = {}

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
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
            transformer=False,
            decoder=False,
            synthesis=False,
            lr=lr,
            lr_step_epochs=lr_step_epochs,
            lr_gamma=lr_gamma,
            grad_clip=grad_clip,
        )
