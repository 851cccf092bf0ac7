"""AnoGAN's training and scoring: a DCGAN trained on normal images, then a latent search per image at evaluation.

Training (``AnoGAN.training_step``) is a DCGAN on the normal images of each batch: targets with
``target_abnormal == 0`` and references with ``ref_abnormal == 0`` (:func:`stacked_domains`), one latent code per normal
image drawn from U(−1, 1) with :meth:`sample_random`. Evaluation (``AnoGAN.forward_batch``) searches, for every target,
the code z whose G(z) is closest to it (``AnoGANNetwork.search``); the mapping loss at the end of the search is the
anomaly score, G(z) the counterfactual and |X_T − G(z)| the explanation. ``docs/models/anogan.md`` maps each equation
to its function.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.anogan.network import AnoGANNetwork, bottom_size, mapping_loss
from bilatcf.models.base import BilateralModule
from bilatcf.models.cyclegan.module import domain_masks
from bilatcf.models.cyclegan.network import from_tanh_range, to_tanh_range
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.losses import gan_loss
from bilatcf.registry import register_model

#: Streams of :meth:`sample_random`: the training codes of the target half and of the reference half of the stacked
#: batch, and the initial codes of the latent search.
LATENT_TARGET_STREAM = 0
LATENT_REFERENCE_STREAM = 1
SEARCH_STREAM = 2
LATENT_STREAMS = (LATENT_TARGET_STREAM, LATENT_REFERENCE_STREAM)
BETAS = (0.5, 0.999)  # DCGAN


def stacked_domains(batch: BilateralBatch) -> tuple[Tensor, Tensor, Tensor]:
    """The stacked images [targets; references] [2B, 1, H, W] in [0, 1] and their (abnormal, normal) 0/1 masks [2B].

    The domains are CycleGAN's (:func:`~bilatcf.models.cyclegan.module.domain_masks`): abnormal = targets with a lesion;
    normal = truly lesion-free targets and references. A reference identical to its target (the unilateral toy presets,
    whose batches repeat the image as its own reference) is left out of the normal domain, so each image counts once.
    """
    abnormal, normal = domain_masks(batch)
    itself = (batch.reference == batch.target).flatten(1).all(dim=1)
    normal[len(batch) :] *= (~itself).to(normal.dtype)
    return torch.cat([batch.target, batch.reference]), abnormal, normal


def stacked_uniform(
    model: BilateralModule, batch: BilateralBatch, streams: tuple[int, int], low: float, high: float, *shape: int
) -> Tensor:
    """U(low, high) draws [2B, *shape] for the stacked images: the targets' from ``streams[0]``, the references' from
    ``streams[1]`` (:meth:`~bilatcf.models.base.BilateralModule.sample_random`, keyed on each pair's dataset index)."""
    return torch.cat([model.sample_random(batch, stream).uniform(low, high, *shape) for stream in streams])


def select(mask: Tensor) -> tuple[Tensor, Tensor]:
    """(rows, weights) of the samples a 0/1 mask keeps. With none kept, row 0 with weight 0: the losses then still
    build a graph through every network (so every process of a DDP run takes the same backward passes), worth 0."""
    rows = mask.nonzero().flatten()
    if len(rows):
        return rows, torch.ones(len(rows), device=mask.device)
    return torch.zeros(1, dtype=torch.long, device=mask.device), torch.zeros(1, device=mask.device)


def check_image_size(images: Tensor, image_size: Sequence[int], model: str) -> None:
    """A ConfigError naming ``--model.image_size`` when the data's images are not the size the generator makes."""
    height, width = images.shape[-2:]
    if (height, width) != tuple(image_size):
        raise ConfigError(
            f"{model}: the data's images are {height}×{width}, but the generator makes {image_size[0]}×{image_size[1]} "
            f"images (model.image_size={list(image_size)}); set --model.image_size '[{height}, {width}]' (a DCGAN "
            "generator has a fixed output size)."
        )


def check_positive(model: str, **values: float) -> None:
    """A ConfigError naming the first flag that is not > 0."""
    for flag, value in values.items():
        if not value > 0:
            raise ConfigError(f"{model}: {flag}={value} must be > 0.")


@register_model("anogan")
class AnoGAN(BilateralModule):
    """AnoGAN: a DCGAN of normal images; the anomaly score of an image is how badly the best G(z) matches it.

    Args:
        image_size: (H, W) of the data's images, each divisible by 2^depth (the DCGAN generator's fixed output size;
            bilatcf's default synthetic images are 128×64, the toy presets 112×112 (``vagan``) and 128×128
            (``cxgan``)). Checked against every batch.
        latent_dim: size of z (DCGAN, AnoGAN: 100).
        generator_channels: base width of G (channels before its last layer).
        discriminator_channels: base width of D (channels of its first layer).
        depth: stride-2 layers of G and D.
        lr: Adam learning rate of G and D (DCGAN: 2e-4, β (0.5, 0.999)).
        search_steps: Adam steps of the latent search in ``test`` and ``predict`` (AnoGAN: Γ = 500).
        val_search_steps: Adam steps of the latent search in validation (cheaper; it runs every epoch).
        search_lr: Adam learning rate of the latent search.
        discrimination_weight: λ of the mapping loss (1 − λ)·L_R + λ·L_D (AnoGAN: 0.1).
        grad_clip: gradient-norm clipping per optimizer (None: off).
    """

    description = "AnoGAN: DCGAN on normal images; latent search per image at evaluation, residual as anomaly map"
    paper = "Schlegl et al., IPMI 2017"
    score_kind = "anomaly"
    test_time_optimization = True
    #: Tiny networks and a short search for the test battery (its bilateral images are 64×32).
    test_config = {  # noqa: RUF012
        "image_size": [64, 32],
        "latent_dim": 8,
        "generator_channels": 4,
        "discriminator_channels": 4,
        "depth": 2,
        "search_steps": 3,
        "val_search_steps": 2,
    }

    def __init__(
        self,
        image_size: tuple[int, int] = (128, 64),
        latent_dim: int = 100,
        generator_channels: int = 64,
        discriminator_channels: int = 64,
        depth: int = 4,
        lr: float = 2e-4,
        search_steps: int = 500,
        val_search_steps: int = 100,
        search_lr: float = 0.01,
        discrimination_weight: float = 0.1,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        name = self.model_name
        if len(image_size) != 2:
            raise ConfigError(f"{name}: image_size={list(image_size)} must be [height, width].")
        for flag, value in (
            ("latent_dim", latent_dim),
            ("generator_channels", generator_channels),
            ("discriminator_channels", discriminator_channels),
            ("depth", depth),
        ):
            if value < 1:
                raise ConfigError(f"{name}: {flag}={value} must be ≥ 1.")
        for flag, value in (("search_steps", search_steps), ("val_search_steps", val_search_steps)):
            if value < 0:
                raise ConfigError(f"{name}: {flag}={value} must be ≥ 0.")
        check_positive(name, lr=lr, search_lr=search_lr)
        if not 0 <= discrimination_weight <= 1:
            raise ConfigError(f"{name}: discrimination_weight={discrimination_weight} must lie in [0, 1].")
        bottom_size(image_size, depth, name)
        self.grad_clip = grad_clip
        self.automatic_optimization = False
        self.network = AnoGANNetwork(latent_dim, image_size, generator_channels, discriminator_channels, depth)

    # ------------------------------------------------------------------ evaluation
    def forward_batch(self, batch: BilateralBatch) -> BilateralOutput:
        return self(batch.target, batch.reference, self.initial_latent(batch))

    def initial_latent(self, batch: BilateralBatch) -> Tensor:
        """z_0 ~ U(−1, 1) per target, keyed on its dataset index (the same on any process, after a resume)."""
        return self.sample_random(batch, SEARCH_STREAM).uniform(-1.0, 1.0, self.hparams.latent_dim)

    def forward(self, target: Tensor, reference: Tensor, initial_latent: Tensor | None = None) -> BilateralOutput:
        """Search z for each target; score = the mapping loss at z_Γ, counterfactual = G(z_Γ), explanation |X_T − X_C|.

        ``reference`` is not used (AnoGAN is a single-image method). ``initial_latent`` [B, latent_dim] is z_0; None
        draws it from U(−1, 1) seeded by the position in the call (``forward_batch`` keys it on the dataset index).
        """
        hp = self.hparams
        check_image_size(target, hp.image_size, self.model_name)
        if initial_latent is None:
            generator = torch.Generator().manual_seed(0)
            initial_latent = (torch.rand(len(target), hp.latent_dim, generator=generator) * 2 - 1).to(target.device)
        steps = hp.search_steps if self.final_evaluation else hp.val_search_steps
        images = to_tanh_range(target)
        net = self.network
        z = net.search(images, initial_latent, steps, hp.search_lr, hp.discrimination_weight)
        generated = net.generator(z)
        score = self.anomaly_score(images, generated)
        counterfactual = from_tanh_range(generated).clamp(0.0, 1.0)
        explanation = (target - counterfactual).abs()
        return BilateralOutput(logits=score, cam=explanation, counterfactual=counterfactual, explanation=explanation)

    def anomaly_score(self, images: Tensor, generated: Tensor) -> Tensor:
        """The anomaly score A(x) = (1 − λ)·R(x) + λ·D(x): the mapping loss at the searched code, per image [B]."""
        features = self.network.discriminator.features
        return mapping_loss(
            images, generated, features(images), features(generated), self.hparams.discrimination_weight
        )

    # ------------------------------------------------------------------ training
    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """``discriminator`` and ``generator``: Adam (DCGAN's lr 2e-4, β (0.5, 0.999))."""
        net, lr = self.network, self.hparams.lr
        return {
            "discriminator": torch.optim.Adam(net.discriminator.parameters(), lr=lr, betas=BETAS),
            "generator": torch.optim.Adam(net.generator.parameters(), lr=lr, betas=BETAS),
        }

    def training_step(self, batch: BilateralBatch, batch_idx: int) -> None:
        check_image_size(batch.target, self.hparams.image_size, self.model_name)
        images, _, normal = stacked_domains(batch)
        rows, weights = select(normal)
        real = to_tanh_range(images[rows])
        fake = self.network.generator(self.training_latent(batch)[rows])
        count = len(images)  # the stacked batch: the denominator of every loss, whatever the masks keep
        self.step(
            "discriminator", lambda: self.log_losses(self.discriminator_losses(real, fake, weights, count)), last=False
        )
        self.step("generator", lambda: self.log_losses(self.generator_losses(fake, weights, count)))

    def training_latent(self, batch: BilateralBatch) -> Tensor:
        """One code z ~ U(−1, 1) per stacked image [2B, latent_dim] (target half, then reference half)."""
        return stacked_uniform(self, batch, LATENT_STREAMS, -1.0, 1.0, self.hparams.latent_dim)

    def discriminator_losses(self, real: Tensor, fake: Tensor, weights: Tensor, count: int) -> dict[str, Tensor]:
        """BCE: normal images real, G(z) fake (detached); Σ weight·loss / count over the stacked batch."""
        discriminator = self.network.discriminator
        return {
            "d_real": weighted_mean(gan_loss(discriminator(real), True, "bce", per_sample=True), weights, count),
            "d_fake": weighted_mean(
                gan_loss(discriminator(fake.detach()), False, "bce", per_sample=True), weights, count
            ),
        }

    def generator_losses(self, fake: Tensor, weights: Tensor, count: int) -> dict[str, Tensor]:
        """The non-saturating generator loss BCE(D(G(z)), real) (DCGAN)."""
        adversarial = gan_loss(self.network.discriminator(fake), True, "bce", per_sample=True)
        return {"g_adv": weighted_mean(adversarial, weights, count)}


def weighted_mean(per_sample: Tensor, weights: Tensor, count: int) -> Tensor:
    """Σ weight·loss / count: a mean over the stacked batch with a denominator that does not depend on the masks (a
    2-process DDP run then averages to what one process computes on the global batch)."""
    return (per_sample.float() * weights).sum() / count
