"""CycleGAN's training as a bilateral baseline: a discriminator step, a generator step, then a classifier step.

Domains come from each batch: A (abnormal) = targets with a lesion (``target_abnormal == 1``); N (normal) = truly
lesion-free images, i.e. references with ``ref_abnormal == 0`` and targets with ``target_abnormal == 0`` (a benign
lesion is not normal; ``-1``, unknown, is in neither domain). Targets and references are stacked into one batch of 2B
images and every loss is a per-sample loss times a 0/1 domain mask, averaged over those 2B images
(:func:`~bilatcf.models.cyclegan.network.masked_mean`). At ``level: feature`` the same losses read the backbone
features of the 2B images (detached) instead of the images. ``docs/models/cyclegan.md`` maps each loss to its function.
"""

from __future__ import annotations

from typing import get_args

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.base import BilateralModule
from bilatcf.models.cyclegan.network import CycleGANNetwork, Level, masked_mean, per_sample_l1, to_tanh_range
from bilatcf.models.kit import OptimizerSpec, linear_decay
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import create_backbone
from bilatcf.nn.losses import gan_loss
from bilatcf.nn.pool import HistoryPool
from bilatcf.registry import register_model

#: Streams of :meth:`sample_random`: the pool of D_N (fakes of the target half), and the pool of D_A (two streams,
#: one per half of the stacked [targets; references] batch).
POOL_N_STREAM = 0
POOL_A_TARGET_STREAM = 1
POOL_A_REFERENCE_STREAM = 2
BETAS = (0.5, 0.999)


def domain_masks(batch: BilateralBatch) -> tuple[Tensor, Tensor]:
    """(abnormal, normal) 0/1 masks [2B] over the stacked images [targets; references].

    Abnormal: targets with ``target_abnormal == 1`` (references are never in A: a benign reference is abnormal but is
    not the method's source domain). Normal: targets with ``target_abnormal == 0`` and references with
    ``ref_abnormal == 0``.
    """
    if batch.target_abnormal is None or batch.ref_abnormal is None:
        raise ConfigError("cyclegan needs batch.target_abnormal and batch.ref_abnormal (bilatcf's collate fills them).")
    target_abnormal, ref_abnormal = batch.target_abnormal, batch.ref_abnormal
    abnormal = torch.cat([target_abnormal == 1, torch.zeros_like(ref_abnormal, dtype=torch.bool)]).float()
    normal = torch.cat([target_abnormal == 0, ref_abnormal == 0]).float()
    return abnormal, normal


def check_flags(model: str, minimum: float, **flags: float) -> None:
    """A ConfigError naming the first flag below ``minimum`` (``model: flag=value must be ≥ minimum.``)."""
    for flag, value in flags.items():
        if value < minimum:
            raise ConfigError(f"{model}: {flag}={value} must be ≥ {minimum:g}.")


def decay_schedule(epochs: int, decay_epochs: int | None) -> tuple[int, int]:
    """(epochs, decay_epochs) of the linear LR decay; ``decay_epochs=None`` is the second half, ``epochs // 2``."""
    if epochs < 1:
        raise ConfigError(f"cyclegan: epochs={epochs} must be ≥ 1 (set model.epochs or trainer.max_epochs).")
    decay = epochs // 2 if decay_epochs is None else decay_epochs
    if not 0 <= decay <= epochs:
        raise ConfigError(f"cyclegan: decay_epochs={decay} must lie in [0, epochs={epochs}].")
    return epochs, decay


@register_model("cyclegan")
class CycleGAN(BilateralModule):
    """CycleGAN abnormal → normal translation; the classifier reads the target and its translation's residual.

    Args:
        backbone: classifier backbone (any timm name or ``tv_alexnet``).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride.
        level: ``image`` (CycleGAN: translate images, H_C = backbone(G_A2N(X_T))) or ``feature`` (the same cycle on
            backbone features, H_C = F_A2N(H_T), as BR-GAN's and CGN's feature generators; no image counterfactual).
        generator_channels: base width of both ResNet generators (CycleGAN: 64); at feature level the width of the
            feature generators' residual blocks.
        generator_blocks: residual blocks per generator (CycleGAN: 6 at ≤ 128 px, bilatcf's default 128×64 images;
            9 at 256 px: set 9 for larger images; BR-GAN and CGN use 9 feature blocks).
        discriminator_channels: base width of both 70×70 PatchGANs (CycleGAN: 64); at feature level the hidden width
            of the feature discriminators.
        pool_size: history pool of translated images (features at feature level) per discriminator (0: off).
        cycle_weight: λ of the two L1 cycle losses.
        identity_weight: identity loss weight as a fraction of λ (CycleGAN: 0.5, i.e. 0.5·λ).
        lr: Adam learning rate of generators and discriminators.
        epochs: epochs of the LR schedule (None: the trainer's ``max_epochs``).
        decay_epochs: final epochs over which the GAN learning rates decay linearly to 0 (None: ``epochs // 2``).
        classifier_lr: AdamW learning rate of backbone and head.
        weight_decay: AdamW weight decay of backbone and head.
        grad_clip: gradient-norm clipping per optimizer (None: off).
    """

    description = "CycleGAN baseline: abnormal→normal image (or feature) translation, classifier on residual + target"
    paper = "Zhu et al., ICCV 2017"
    #: Tiny networks for the test battery.
    test_config = {"generator_channels": 4, "generator_blocks": 1, "discriminator_channels": 4}

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        level: Level = "image",
        generator_channels: int = 64,
        generator_blocks: int = 6,
        discriminator_channels: int = 64,
        pool_size: int = 50,
        cycle_weight: float = 10.0,
        identity_weight: float = 0.5,
        lr: float = 2e-4,
        epochs: int | None = None,
        decay_epochs: int | None = None,
        classifier_lr: float = 3e-4,
        weight_decay: float = 1e-4,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if level not in get_args(Level):
            raise ConfigError(f"cyclegan: model.level={level!r} is not one of {', '.join(get_args(Level))}.")
        check_flags(
            "cyclegan",
            1,
            generator_channels=generator_channels,
            generator_blocks=generator_blocks,
            discriminator_channels=discriminator_channels,
        )
        check_flags("cyclegan", 0, cycle_weight=cycle_weight, identity_weight=identity_weight)
        if epochs is not None:
            decay_schedule(epochs, decay_epochs)
        elif decay_epochs is not None and decay_epochs < 0:
            raise ConfigError(f"cyclegan: decay_epochs={decay_epochs} must be ≥ 0.")
        network = CycleGANNetwork(
            create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride),
            generator_channels,
            generator_blocks,
            discriminator_channels,
            level,
        )
        self.init_translation(network, pool_size, grad_clip)

    def init_translation(self, network: torch.nn.Module, pool_size: int, grad_clip: float | None) -> None:
        """What every model with this training step holds: manual optimisation, the network (generators ``g_a2n``,
        ``g_n2a``, discriminators ``d_n``, ``d_a``, classifier ``backbone`` + ``head``) and one history pool per
        discriminator (checkpointed per rank). Subclasses with other networks (CX-GAN) call it from their own
        constructor."""
        self.grad_clip = grad_clip
        self.automatic_optimization = False
        self.network = network
        self.pool_n = HistoryPool(pool_size)
        self.pool_a = HistoryPool(pool_size)

    def forward(self, target: Tensor, reference: Tensor) -> BilateralOutput:
        return BilateralOutput(**self.network(target, reference))

    def extract_features(self, images: Tensor) -> Tensor:
        return self.network.backbone(images)

    # ------------------------------------------------------------------ optimizers
    def build_optimizers(self) -> dict[str, OptimizerSpec | torch.optim.Optimizer]:
        """``generator`` (both G) and ``discriminator`` (both D): :meth:`gan_optimizer`; ``classifier``: AdamW."""
        net = self.network
        return {
            "generator": self.gan_optimizer([*net.g_a2n.parameters(), *net.g_n2a.parameters()]),
            "discriminator": self.gan_optimizer([*net.d_n.parameters(), *net.d_a.parameters()]),
            "classifier": self.classifier_optimizer(),
        }

    def gan_optimizer(self, parameters: list) -> OptimizerSpec:
        """Adam 2e-4, betas (0.5, 0.999), with CycleGAN's linear decay (epoch interval) over ``decay_epochs``."""
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        epochs = self.hparams.epochs if self.hparams.epochs is not None else max_epochs
        if epochs is None or epochs < 1:
            raise ConfigError(
                "cyclegan: the LR schedule needs a number of epochs; set model.epochs or trainer.max_epochs."
            )
        epochs, decay = decay_schedule(epochs, self.hparams.decay_epochs)
        optimizer = torch.optim.Adam(parameters, lr=self.hparams.lr, betas=BETAS)
        return OptimizerSpec(optimizer, linear_decay(optimizer, epochs, decay), "epoch")

    def classifier_optimizer(self) -> torch.optim.Optimizer:
        """AdamW over backbone and head (constant LR)."""
        net = self.network
        return torch.optim.AdamW(
            [*net.backbone.parameters(), *net.head.parameters()],
            lr=self.hparams.classifier_lr,
            weight_decay=self.hparams.weight_decay,
        )

    # ------------------------------------------------------------------ training
    def training_step(self, batch: BilateralBatch, batch_idx: int) -> None:
        out = self.forward_batch(batch)
        real, fake_n = self.real_and_translated(batch, out)
        self.cycle_steps(batch, real, fake_n)
        self.step("classifier", self.log_losses({"cls": self.classification_loss(out.logits, self.labels(batch))}))

    def cycle_steps(self, batch: BilateralBatch, real: Tensor, fake_n: Tensor, last: bool = False) -> None:
        """The ``discriminator`` step, then the ``generator`` step, on the 2B stacked samples ``real`` and their
        translations ``fake_n`` = G_A2N(real); ``last``: no other step follows on this batch."""
        abnormal, normal = domain_masks(batch)
        fake_a = self.network.g_n2a(real)
        pooled_n = query_pool(
            self.pool_n,
            fake_n[abnormal.bool()],
            select_generators(self.sample_random(batch, POOL_N_STREAM).generators, abnormal),
        )
        pool_a_generators = (
            self.sample_random(batch, POOL_A_TARGET_STREAM).generators
            + self.sample_random(batch, POOL_A_REFERENCE_STREAM).generators
        )
        pooled_a = query_pool(self.pool_a, fake_a[normal.bool()], select_generators(pool_a_generators, normal))
        self.step(
            "discriminator",
            lambda: self.discriminator_loss(real, pooled_n, pooled_a, abnormal, normal),
            last=False,
        )
        self.step(
            "generator",
            lambda: self.log_losses(self.generator_losses(real, fake_n, fake_a, abnormal, normal)),
            last=last,
        )

    def real_and_translated(self, batch: BilateralBatch, out: BilateralOutput) -> tuple[Tensor, Tensor]:
        """The 2B stacked real samples [targets; references] and their translations G_A2N(real).

        ``forward`` gave G_A2N of the targets (X_C, or H_C at feature level) and the classifier's logits; G_A2N of the
        references joins it, so each generator runs once on the 2B samples (instance norm is per sample: the split
        changes nothing). Image level: images in [−1, 1] [2B, 1, H, W]. Feature level: [H_T; H_R] detached
        [2B, C, h, w], so the CycleGAN losses train the generators and discriminators and never the backbone.
        """
        net, size = self.network, len(batch)
        if self.hparams.level == "feature":
            real = torch.cat([out.target_features, out.reference_features]).detach()
            return real, torch.cat([out.cf_features, net.g_a2n(real[size:])])
        real = to_tanh_range(torch.cat([batch.target, batch.reference]))
        return real, torch.cat([to_tanh_range(out.counterfactual), net.g_a2n(real[size:])])

    def discriminator_loss(
        self, real: Tensor, pooled_n: Tensor, pooled_a: Tensor, abnormal: Tensor, normal: Tensor
    ) -> Tensor:
        """½ (LSGAN real + fake) per discriminator. D_N: real N samples vs pooled G_A2N(A); D_A: real A samples vs
        pooled G_N2A(N). The pooled fakes are summed and divided by the 2B stacked samples, like the masked reals.
        Samples are images, or features at feature level."""
        net = self.network
        return 0.5 * (lsgan_critic(net.d_n, real, pooled_n, normal) + lsgan_critic(net.d_a, real, pooled_a, abnormal))

    def generator_losses(
        self, real: Tensor, fake_n: Tensor, fake_a: Tensor, abnormal: Tensor, normal: Tensor
    ) -> dict[str, Tensor]:
        """LSGAN for both generators, L1 cycles A→N→A and N→A→N (λ), identities G_A2N(N) ≈ N and G_N2A(A) ≈ A
        (identity_weight·λ), each masked to the domain it applies to (on images, or features at feature level)."""
        net, cycle = self.network, self.hparams.cycle_weight
        identity = self.hparams.identity_weight * cycle
        return {
            "adv_a2n": masked_mean(gan_loss(net.d_n(fake_n), True, "lsgan", per_sample=True), abnormal),
            "adv_n2a": masked_mean(gan_loss(net.d_a(fake_a), True, "lsgan", per_sample=True), normal),
            "cycle_a": cycle * masked_mean(per_sample_l1(net.g_n2a(fake_n), real), abnormal),
            "cycle_n": cycle * masked_mean(per_sample_l1(net.g_a2n(fake_a), real), normal),
            "identity_n": identity * masked_mean(per_sample_l1(fake_n, real), normal),
            "identity_a": identity * masked_mean(per_sample_l1(fake_a, real), abnormal),
        }

    def labels(self, batch: BilateralBatch) -> Tensor:
        """The task labels the classifier's BCE reads."""
        return getattr(batch, self.label_field)


def lsgan_critic(discriminator: torch.nn.Module, real: Tensor, pooled: Tensor, mask: Tensor) -> Tensor:
    """LSGAN(D(real), 1) on the samples of ``mask`` plus LSGAN(D(pooled), 0), both summed and divided by the number of
    ``real`` samples (the masked mean of :func:`masked_mean`; a batch without pooled fakes adds no fake term)."""
    loss = masked_mean(gan_loss(discriminator(real), True, "lsgan", per_sample=True), mask)
    if len(pooled) == 0:
        return loss
    return loss + gan_loss(discriminator(pooled), False, "lsgan", per_sample=True).sum() / real.shape[0]


def query_pool(pool: HistoryPool, fakes: Tensor, generators: list[torch.Generator]) -> Tensor:
    """The pool's answer for the domain's fakes, detached (they only feed the discriminator step; a disabled pool
    returns its query as is, and the generator step must not back-propagate through a graph that step freed); a batch
    without any sample of the domain queries nothing."""
    return fakes.detach() if len(fakes) == 0 else pool.query(fakes.detach(), generators)


def select_generators(generators: list[torch.Generator], mask: Tensor) -> list[torch.Generator]:
    """The per-sample generators of the samples ``mask`` keeps (for the pool query of those samples)."""
    return [g for g, keep in zip(generators, mask.tolist()) if keep]
