"""DisAsymNet training (Wang et al., MICCAI 2023 §2.4): two optimisation steps per batch, every ablation of Tables 1–2.

Step 1 (optimizer ``model``: AsyC + AsyD) minimises λ1·L_diag + λ2·L_rec + λ3·L_disc + λ4·L_syn; step 2 (optimizer
``refine``: AsyC) minimises L_refine on the generated normal pairs. Without the decoder only L_diag remains (one step).
See ``docs/models/disasymnet.md`` for the equation map, the defaults the paper leaves open and the deviations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.base import BilateralModule
from bilatcf.models.disasymnet.network import (
    DisAsymNetNetwork,
    reconstruction_loss,
    side_rows,
    synthesis_loss,
)
from bilatcf.models.disasymnet.synthesis import BREAST_THRESHOLD, TumourBank, draws_per_pair, synthesize_pair
from bilatcf.models.kit import OptimizerSpec
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import create_backbone
from bilatcf.nn.cam import normalize_map
from bilatcf.registry import register_model

#: Stream of :meth:`sample_random` for the tumour synthesis.
SYNTHESIS_STREAM = 0


@dataclass
class SyntheticPairs:
    """The synthetic asymmetric pairs of a batch: made from its normal pairs ``rows``, images [F, 1, H, W]."""

    rows: Tensor
    target: Tensor
    reference: Tensor


@register_model("disasymnet")
class DisAsymNet(BilateralModule):
    """Disentanglement of asymmetrical abnormality on bilateral mammograms with self-adversarial learning.

    The pair (target, reference) is the paper's (x^r, x^l) in either order. ``logits`` is the target's abnormal head,
    ``heads["asymmetry"]`` the pair's asymmetry head, ``cam`` the target's CAM of the abnormal head, and with the
    decoder ``counterfactual`` = x_n (the reconstructed normal target) and ``explanation`` = x_ab (its abnormal
    channel).

    Args:
        backbone: the shared encoder ψ_e (any timm model name or ``tv_alexnet``; the paper: ResNet-18).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride (16: tokens and CAM at 1/16 of the image).
        transformer: the asymmetric transformer ψ_asyt (False: the paper's "AsyC ablated", the two sides' pooled
            features concatenated for the asymmetry classifier).
        decoder: AsyD, the frozen discriminator and the refinement step (False: AsyC alone, L_diag only).
        synthesis: the asymmetric synthesis and L_syn (needs ``decoder`` and lesion masks in the training split).
        transformer_depth: blocks N of ψ_asyt (the paper: 12).
        transformer_heads: attention heads per block (the paper: 8).
        decoder_width: channels of AsyD's full-resolution block.
        bank_size: at most this many tumours in the bank, evenly spaced over the training split's lesions.
        max_tumours: tumours per synthesised side drawn from 1..max_tumours (the paper: 3).
        breast_threshold: pixels above it are breast; tumour centres are drawn among them.
        diag_weight: λ1 of L_diag (1).
        rec_weight: λ2 of L_rec (0.1).
        disc_weight: λ3 of L_disc (1).
        syn_weight: λ4 of L_syn (0.5).
        lr: Adam learning rate of both optimizers (the paper: 1e-4).
        lr_step_epochs: the learning rate is multiplied by ``lr_gamma`` every this many epochs (the paper: 20).
        lr_gamma: the decay factor (the paper: 0.1).
        grad_clip: gradient-norm clipping per optimizer (None: off).
    """

    description = (
        "DisAsymNet: asymmetric transformer (AsyC), normal/abnormal disentangling decoder (AsyD), self-adversarial"
    )
    paper = "Wang et al., MICCAI 2023"
    data_options = {"task": "abnormality"}  # noqa: RUF012
    extra_heads = {"asymmetry": "asym_label"}  # noqa: RUF012
    test_config = {"transformer_depth": 1}  # noqa: RUF012

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        transformer: bool = True,
        decoder: bool = True,
        synthesis: bool = True,
        transformer_depth: int = 12,
        transformer_heads: int = 8,
        decoder_width: int = 32,
        bank_size: int = 256,
        max_tumours: int = 3,
        breast_threshold: float = BREAST_THRESHOLD,
        diag_weight: float = 1.0,
        rec_weight: float = 0.1,
        disc_weight: float = 1.0,
        syn_weight: float = 0.5,
        lr: float = 1e-4,
        lr_step_epochs: int = 20,
        lr_gamma: float = 0.1,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        _check_options(
            synthesis=synthesis,
            decoder=decoder,
            transformer_depth=transformer_depth,
            transformer_heads=transformer_heads,
            decoder_width=decoder_width,
            bank_size=bank_size,
            max_tumours=max_tumours,
            breast_threshold=breast_threshold,
            weights={"diag": diag_weight, "rec": rec_weight, "disc": disc_weight, "syn": syn_weight},
            lr=lr,
            lr_step_epochs=lr_step_epochs,
            lr_gamma=lr_gamma,
        )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.grad_clip = grad_clip
        # Read from attributes, not self.hparams: under LightningCLI a subclass (latefusion, wang22) saves only the
        # arguments of its own signature.
        self.loss_weights = {"diag": diag_weight, "rec": rec_weight, "disc": disc_weight, "syn": syn_weight}
        self.max_tumours, self.breast_threshold = max_tumours, breast_threshold
        self.lr, self.lr_step_epochs, self.lr_gamma = lr, lr_step_epochs, lr_gamma
        self.network = DisAsymNetNetwork(
            create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride),
            transformer_depth if transformer else None,
            transformer_heads,
            decoder,
            decoder_width,
        )
        self.bank = TumourBank(bank_size) if synthesis else None

    # ------------------------------------------------------------------ model API
    def forward(self, target: Tensor, reference: Tensor) -> BilateralOutput:
        return BilateralOutput(**self.network(target, reference))

    def build_training_state(self, datamodule) -> None:
        """Cut the tumour bank from the training split's abnormal images with their GT masks (synthesis only)."""
        if self.bank is None:
            return
        if not hasattr(datamodule, "training_images"):
            raise ConfigError(
                f"{self.model_name}: synthesis cuts its tumour bank from datamodule.training_images(), which "
                f"{type(datamodule).__name__} lacks; use a bilatcf DataModule or set --model.synthesis false."
            )
        with_mask, without_mask = self.bank.fill(datamodule.training_images(lesion_free=False), self.breast_threshold)
        if not len(self.bank):
            raise ConfigError(
                f"{self.model_name}: synthesis needs lesion masks to cut its tumour bank, but the training split's "
                f"abnormal images give no lesion ({with_mask} with a mask, {without_mask} without). Use data with "
                "lesion masks (the synthetic data has them; a manifest gives them in 'mask_path'), or set "
                "--model.synthesis false (the paper's 'AsyC & AsyD' row)."
            )
        rank_zero_info(
            f"{self.model_name}: tumour bank of {len(self.bank)} lesions from {with_mask} masked abnormal training "
            f"images ({without_mask} without a mask skipped)."
        )

    def build_optimizers(self) -> dict[str, OptimizerSpec]:
        """``model``: AsyC + AsyD (step 1); ``refine``: AsyC (step 2, with the decoder). Adam, step decay per epoch."""
        groups = {"model": list(self.network.parameters())}
        if self.network.decoder is not None:
            groups["refine"] = list(self.network.asyc.parameters())
        specs = {}
        for name, parameters in groups.items():
            optimizer = torch.optim.Adam(parameters, lr=self.lr)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, self.lr_step_epochs, gamma=self.lr_gamma)
            specs[name] = OptimizerSpec(optimizer, scheduler, interval="epoch")
        return specs

    # ------------------------------------------------------------------ training
    def training_step(self, batch: BilateralBatch, batch_idx: int) -> None:
        network, weights = self.network, self.loss_weights
        if network.decoder is None:
            result = network.classify(batch.target, batch.reference)
            diag = self.diag_loss(result.asym_logits, result.side_logits, batch)
            self.step("model", lambda: self.log_losses({"diag": weights["diag"] * diag}))
            return
        network.sync_discriminator()  # ψ_d ← AsyC, in place, before this batch's updates
        fake = self.synthesize(batch) if self.bank is not None else None
        targets, references = batch.target, batch.reference
        if fake is not None:
            targets, references = torch.cat([targets, fake.target]), torch.cat([references, fake.reference])
        # One AsyC pass and one decoder pass over the real and the synthetic pairs together.
        result = network.classify(targets, references, stages=True)
        normal, abnormal = network.decode(result.features, result.stages, batch.target.shape[-2:])
        index = torch.arange(len(batch), device=targets.device)
        real = side_rows(index, len(targets))
        images = torch.cat([batch.target, batch.reference])
        cam = normalize_map(result.class_maps[real].detach(), tuple(images.shape[-2:]))  # M, in [0, 1]
        losses = {
            "diag": weights["diag"] * self.diag_loss(result.asym_logits[index], result.side_logits[real], batch),
            "rec": weights["rec"] * reconstruction_loss(images, normal[real], abnormal[real], cam),
            "disc": weights["disc"] * self.disc_loss(normal[real]),
        }
        if self.bank is not None:
            losses["syn"] = weights["syn"] * self.syn_loss(batch, normal, fake)
        self.step("model", lambda: self.log_losses(losses), last=False)
        self.step("refine", lambda: self.refine_loss(batch, normal[real].detach()))

    def diag_loss(self, asym_logits: Tensor, side_logits: Tensor, batch: BilateralBatch) -> Tensor:
        """L_cls with the batch's labels: BCE(asymmetry) + BCE(both sides' abnormal heads). On the real pair it is
        L_diag = L_cls(y^asy, y^r, y^l, x^r, x^l), on the generated normal pair L_refine."""
        return self.pair_loss(asym_logits, side_logits, batch.asym_label, torch.cat([batch.label, batch.ref_label]))

    def disc_loss(self, normal: Tensor) -> Tensor:
        """L_disc = L_cls(y^asy = 0, y^r = 0, y^l = 0, x_n^r, x_n^l), judged by the frozen ψ_d: its weights take no
        gradient, so L_disc trains the decoder through x_n."""
        pairs = len(normal) // 2
        judged = self.network.discriminator(normal[:pairs], normal[pairs:])
        zeros = torch.zeros(pairs, dtype=torch.long, device=normal.device)
        return self.pair_loss(judged.asym_logits, judged.side_logits, zeros, torch.cat([zeros, zeros]))

    def syn_loss(self, batch: BilateralBatch, normal: Tensor, fake: SyntheticPairs | None) -> Tensor:
        """L_syn = L1(x|real, x_n|fake) on both sides of the batch's synthetic pairs (0 when it has no normal pair).

        ``normal`` is x_n of every side of the AsyC pass: the batch's pairs, then the synthetic ones.
        """
        if fake is None:
            return normal.sum() * 0.0
        pairs = len(batch)
        synthetic = side_rows(pairs + torch.arange(len(fake.rows), device=normal.device), pairs + len(fake.rows))
        real = torch.cat([batch.target[fake.rows], batch.reference[fake.rows]])
        return synthesis_loss(real, normal[synthetic], pairs)

    def refine_loss(self, batch: BilateralBatch, normal: Tensor) -> Tensor:
        """L_refine = L_cls(y^asy, y^r, y^l, x_n^r, x_n^l): AsyC classifies the generated normal pair (detached)."""
        pairs = len(batch)
        result = self.network.classify(normal[:pairs], normal[pairs:])
        return self.diag_loss(result.asym_logits, result.side_logits, batch)

    def pair_loss(self, asym_logits: Tensor, side_logits: Tensor, asym_labels: Tensor, side_labels: Tensor) -> Tensor:
        """L_cls: BCE of the asymmetry head plus BCE of the abnormal head over both sides (unknown labels ignored)."""
        return self.classification_loss(asym_logits, asym_labels) + self.classification_loss(side_logits, side_labels)

    def synthesize(self, batch: BilateralBatch) -> SyntheticPairs | None:
        """Synthetic asymmetric pairs from every normal pair of the batch (y^asy = 0), None if it has none.

        The draws come from ``sample_random`` (keyed on seed, iteration and the pair's dataset index), so a pair gets
        the same tumours whichever process holds it and after a resume.
        """
        rows = (batch.asym_label == 0).nonzero().flatten()
        if not len(rows):
            return None
        if not len(self.bank):
            raise ConfigError(
                f"{self.model_name}: the tumour bank is empty. It is built from the training split when fit starts "
                "(build_training_state); train through Trainer.fit with a bilatcf DataModule, or set "
                "--model.synthesis false."
            )
        draws = self.sample_random(batch, SYNTHESIS_STREAM).rand(draws_per_pair(self.max_tumours)).cpu()
        pairs = [
            synthesize_pair(
                batch.target[row], batch.reference[row], self.bank, draws[row], self.max_tumours, self.breast_threshold
            )
            for row in rows.tolist()
        ]
        return SyntheticPairs(
            rows=rows, target=torch.stack([p[0] for p in pairs]), reference=torch.stack([p[1] for p in pairs])
        )


def _check_options(
    *,
    synthesis: bool,
    decoder: bool,
    transformer_depth: int,
    transformer_heads: int,
    decoder_width: int,
    bank_size: int,
    max_tumours: int,
    breast_threshold: float,
    weights: dict[str, float],
    lr: float,
    lr_step_epochs: int,
    lr_gamma: float,
) -> None:
    """Refuse values and combinations the method does not define, saying which option to change."""
    if synthesis and not decoder:
        raise ConfigError(
            "disasymnet: synthesis supervises the decoder (L_syn), which decoder=false removes; set "
            "--model.synthesis false too (the paper's 'AsyC' row), or keep --model.decoder true."
        )
    positive = {
        "transformer_depth": transformer_depth,
        "transformer_heads": transformer_heads,
        "decoder_width": decoder_width,
        "bank_size": bank_size,
        "max_tumours": max_tumours,
        "lr_step_epochs": lr_step_epochs,
    }
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"disasymnet: model.{name}={value} must be ≥ 1.")
    if not 0.0 <= breast_threshold < 1.0:
        raise ConfigError(f"disasymnet: model.breast_threshold={breast_threshold} must lie in [0, 1) (image units).")
    for name, value in weights.items():
        if value < 0:
            raise ConfigError(f"disasymnet: model.{name}_weight={value} must be ≥ 0 (a loss weight λ).")
    if lr <= 0 or not 0.0 < lr_gamma <= 1.0:
        raise ConfigError(f"disasymnet: model.lr={lr} must be > 0 and model.lr_gamma={lr_gamma} in (0, 1].")
