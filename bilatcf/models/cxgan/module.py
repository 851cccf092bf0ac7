"""CX-GAN's training: CycleGAN's step with an additive-map forward generator (integrated), or CycleGAN then a residual
pix2pix-style GAN in two phases of one ``fit`` (cascaded).

Everything the two models share with ``cyclegan`` is inherited from :class:`~bilatcf.models.cyclegan.CycleGAN`: the
domains of each batch (:func:`~bilatcf.models.cyclegan.module.domain_masks`: abnormal = targets with a lesion, normal
= truly lesion-free targets and references), the discriminator and generator steps with their LSGAN, cycle and
identity terms and history pools (:meth:`~bilatcf.models.cyclegan.CycleGAN.cycle_steps`), and the classifier on
concat[H_T − H_C, H_T]. With G_A2N(x) = x + M(x) CycleGAN's losses are Eq. 8–10. ``docs/models/cxgan.md`` maps each
equation to its function.
"""

from __future__ import annotations

from typing import get_args

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.base import SINGLE_PHASE, BilateralModule
from bilatcf.models.cxgan.network import CXGANNetwork, Variant
from bilatcf.models.cyclegan.module import (
    CycleGAN,
    check_flags,
    domain_masks,
    lsgan_critic,
    query_pool,
    select_generators,
)
from bilatcf.models.cyclegan.network import masked_mean, per_sample_l1, to_tanh_range
from bilatcf.models.kit import OptimizerSpec, Phase
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import create_backbone
from bilatcf.nn.losses import gan_loss
from bilatcf.nn.pool import HistoryPool
from bilatcf.registry import register_model

#: Stream of :meth:`sample_random` for the residual GAN's pool (CycleGAN's pools use streams 0–2).
POOL_R_STREAM = 3
#: Phase 1 and phase 2 of the cascaded model.
CYCLE_PHASE, RESIDUAL_PHASE = "cycle", "residual"


@register_model("cxgan")
class CXGAN(CycleGAN):
    """CX-GAN: the explanation is a map M with x⁻ = x⁺ + M(x⁺), learnt by a CycleGAN (integrated) or from a
    CycleGAN's counterfactual instances (cascaded).

    Args:
        backbone: classifier backbone (any timm name or ``tv_alexnet``).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride.
        variant: ``integrated`` (§3.2, Eq. 8–10) or ``cascaded`` (§3.1: phase 1 a CycleGAN, Eq. 2–4; phase 2 a
            residual GAN on its counterfactual instances, Eq. 5–7).
        generator_channels: base width of every U-Net generator (the notebooks' 32).
        discriminator_channels: base width of every PatchGAN (the notebooks' 64).
        discriminator_layers: stride-2 convs per PatchGAN (the notebooks' 4: patches of 1/16 of the image).
        pool_size: history pool of generated images per discriminator (paper: 50; 0: off, as the notebooks).
        cycle_weight: λ of the L1 cycle losses (Eq. 2, 10).
        identity_weight: identity loss weight as a fraction of λ (the notebooks' 0.1, i.e. 1 at λ = 10).
        residual_weight: λ of the residual L1 loss of phase 2 (Eq. 5, 7; pix2pix's 100). Cascaded only.
        cycle_epochs: epochs of phase 1; phase 2 runs until ``trainer.max_epochs``. Cascaded only.
        lr: Adam learning rate of every generator and discriminator (constant).
        betas: Adam betas of every generator and discriminator (paper: (0.5, 0.9); the notebooks: (0.5, 0.999)).
        classifier_lr: AdamW learning rate of backbone and head.
        weight_decay: AdamW weight decay of backbone and head.
        grad_clip: gradient-norm clipping per optimizer (None: off).
    """

    description = "CX-GAN: counterfactual explanation map M with x⁻ = x⁺ + M(x⁺), integrated or cascaded CycleGAN"
    paper = "Zia, Nisar & Murtaza, CX-GAN (cycle-consistent counterfactual explanation)"
    #: Tiny networks (and a one-epoch phase 1) for the test battery.
    test_config = {"generator_channels": 4, "discriminator_channels": 4, "cycle_epochs": 1}

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        variant: Variant = "integrated",
        generator_channels: int = 32,
        discriminator_channels: int = 64,
        discriminator_layers: int = 4,
        pool_size: int = 50,
        cycle_weight: float = 10.0,
        identity_weight: float = 0.1,
        residual_weight: float = 100.0,
        cycle_epochs: int = 5,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        classifier_lr: float = 3e-4,
        weight_decay: float = 1e-4,
        grad_clip: float | None = None,
    ) -> None:
        # CycleGAN's constructor builds CycleGAN's networks; CX-GAN builds its own and shares the rest. Lightning's
        # save_hyperparameters() reads the arguments of constructors that call super(), so they are passed here.
        BilateralModule.__init__(self)
        self.save_hyperparameters({name: value for name, value in locals().items() if name != "self"})
        if variant not in get_args(Variant):
            raise ConfigError(f"cxgan: model.variant={variant!r} is not one of {', '.join(get_args(Variant))}.")
        check_flags(
            "cxgan",
            1,
            generator_channels=generator_channels,
            discriminator_channels=discriminator_channels,
            discriminator_layers=discriminator_layers,
            cycle_epochs=cycle_epochs,
        )
        check_flags(
            "cxgan",
            0,
            pool_size=pool_size,
            cycle_weight=cycle_weight,
            identity_weight=identity_weight,
            residual_weight=residual_weight,
        )
        if len(betas) != 2 or not all(0 <= beta < 1 for beta in betas):
            raise ConfigError(f"cxgan: model.betas={list(betas)} must be two numbers in [0, 1), e.g. [0.5, 0.9].")
        network = CXGANNetwork(
            create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride),
            variant,
            generator_channels,
            discriminator_channels,
            discriminator_layers,
        )
        self.init_translation(network, pool_size, grad_clip)
        if variant == "cascaded":
            self.pool_r = HistoryPool(pool_size)

    @property
    def cascaded(self) -> bool:
        return self.hparams.variant == "cascaded"

    # ------------------------------------------------------------------ phases and optimizers
    def training_phases(self) -> tuple[Phase, ...]:
        """Integrated: one phase. Cascaded: ``cycle`` (the CycleGAN; no scores) for ``cycle_epochs``, then
        ``residual`` (G^{+→M}, D_R and the classifier) with the CycleGAN frozen."""
        if not self.cascaded:
            return SINGLE_PHASE
        return (
            Phase(
                CYCLE_PHASE,
                self.hparams.cycle_epochs,
                ("discriminator", "generator"),
                ("network.map_generator", "network.d_r", "network.backbone", "network.head"),
                scores=False,
            ),
            Phase(
                RESIDUAL_PHASE,
                None,
                ("residual_discriminator", "map_generator", "classifier"),
                ("network.g_a2n", "network.g_n2a", "network.d_n", "network.d_a"),
            ),
        )

    def build_optimizers(self) -> dict[str, OptimizerSpec | torch.optim.Optimizer]:
        """CycleGAN's ``generator``, ``discriminator`` and ``classifier``; cascaded adds ``residual_discriminator``
        (D_R) and ``map_generator`` (G^{+→M})."""
        optimizers = super().build_optimizers()
        if not self.cascaded:
            return optimizers
        net = self.network
        classifier = optimizers.pop("classifier")
        return {
            **optimizers,
            "residual_discriminator": self.gan_optimizer(list(net.d_r.parameters())),
            "map_generator": self.gan_optimizer(list(net.map_generator.parameters())),
            "classifier": classifier,
        }

    def gan_optimizer(self, parameters: list) -> OptimizerSpec:
        """Adam with ``lr`` and ``betas`` at a constant rate (§3.3; neither the paper nor the notebooks decay it)."""
        return OptimizerSpec(torch.optim.Adam(parameters, lr=self.hparams.lr, betas=tuple(self.hparams.betas)))

    # ------------------------------------------------------------------ training
    def training_step(self, batch: BilateralBatch, batch_idx: int) -> None:
        if not self.cascaded:
            super().training_step(batch, batch_idx)  # CycleGAN's step; real_and_translated gives x + M(x)
        elif self.phase.name == CYCLE_PHASE:
            real = to_tanh_range(torch.cat([batch.target, batch.reference]))
            self.cycle_steps(batch, real, self.network.g_a2n(real), last=True)
        else:
            self.residual_step(batch)

    def real_and_translated(self, batch: BilateralBatch, out: BilateralOutput) -> tuple[Tensor, Tensor]:
        """Integrated: the 2B stacked images [targets; references] in [−1, 1] and x + M(x) (Eq. 8), unclamped.

        The targets' x + M(x) is ``forward``'s X_T + explanation (its graph reaches G^{+→M}); G^{+→M} runs on the
        references here, so it runs once per image.
        """
        real = to_tanh_range(torch.cat([batch.target, batch.reference]))
        translated_targets = to_tanh_range(batch.target + out.explanation)
        return real, torch.cat([translated_targets, self.network.g_a2n(real[len(batch) :])])

    def residual_step(self, batch: BilateralBatch) -> None:
        """Phase 2 of the cascaded model: the ``residual_discriminator`` step, the ``map_generator`` step, then the
        classifier's, on the abnormal targets x⁺ and their counterfactual instances x⁻ = G_A2N(x⁺) of phase 1."""
        abnormal = domain_masks(batch)[0][: len(batch)]
        with torch.no_grad():  # the frozen CycleGAN of phase 1 makes the pairs (x⁺, x⁻)
            instance = self.network.g_a2n(to_tanh_range(batch.target))
        out = self.forward_batch(batch)
        fake = to_tanh_range(batch.target + out.explanation)  # x⁺ + M(x⁺), unclamped
        generators = select_generators(self.sample_random(batch, POOL_R_STREAM).generators, abnormal)
        pooled = query_pool(self.pool_r, fake[abnormal.bool()], generators)
        self.step(
            "residual_discriminator",
            lambda: self.residual_discriminator_loss(instance, pooled, abnormal),
            last=False,
        )
        self.step("map_generator", lambda: self.log_losses(self.residual_losses(instance, fake, abnormal)), last=False)
        self.step("classifier", self.log_losses({"cls": self.classification_loss(out.logits, self.labels(batch))}))

    def residual_discriminator_loss(self, instance: Tensor, pooled: Tensor, abnormal: Tensor) -> Tensor:
        """Eq. 6 for D_R, as LSGAN and halved (pix2pix): ½ [LSGAN(D_R(x⁻), 1) + LSGAN(D_R(pool(x⁺ + M)), 0)], over
        the abnormal targets; the counterfactual instances x⁻ are D_R's real images (pix2pix's paired targets)."""
        return 0.5 * lsgan_critic(self.network.d_r, instance, pooled, abnormal)

    def residual_losses(self, instance: Tensor, fake: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        """Eq. 6 (G^{+→M}'s term, LSGAN) and λ_r · Eq. 5, ‖x⁻ − (x⁺ + M(x⁺))‖₁ in [−1, 1], over the abnormal targets
        (Eq. 7)."""
        return {
            "adv_r": masked_mean(gan_loss(self.network.d_r(fake), True, "lsgan", per_sample=True), abnormal),
            "l1_r": self.hparams.residual_weight * masked_mean(per_sample_l1(fake, instance), abnormal),
        }
