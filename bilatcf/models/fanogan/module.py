"""f-AnoGAN's training in two phases (one ``bilatcf fit`` runs both) and its one-pass scoring.

* Phase ``gan`` (``gan_epochs`` epochs): a WGAN-GP on the normal images of each batch (lesion-free targets and
  references, :func:`~bilatcf.models.anogan.module.stacked_domains`), one code z ~ U(−1, 1) per normal image; critic
  steps on every batch, a generator step every ``n_critic`` of them. The encoder is frozen.
* Phase ``encoder`` (until ``trainer.max_epochs``): the izif encoder on the same normal images, G and D frozen (eval
  mode, no gradients). Only this phase produces scores, so validation AUC and the best checkpoint watch it alone.

Scoring (``FAnoGAN.forward``): z = E(x), counterfactual G(z), score = the izi_f loss of the image, explanation
|X_T − G(z)|. ``docs/models/fanogan.md`` maps each equation to its function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.anogan.module import (
    LATENT_STREAMS,
    check_image_size,
    check_positive,
    select,
    stacked_domains,
    stacked_uniform,
    weighted_mean,
)
from bilatcf.models.anogan.network import bottom_size
from bilatcf.models.base import BilateralModule
from bilatcf.models.cyclegan.network import from_tanh_range, to_tanh_range
from bilatcf.models.fanogan.network import FAnoGANNetwork
from bilatcf.models.kit import NCritic, Phase
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.losses import gan_loss, gradient_penalty
from bilatcf.registry import register_model

#: Streams of :meth:`sample_random` beyond the latent codes' (``LATENT_STREAMS``): the gradient penalty's ε of the
#: target half and of the reference half of the stacked batch.
GP_STREAMS = (2, 3)
BETAS = (0.0, 0.9)  # WGAN-GP


@register_model("fanogan")
class FAnoGAN(BilateralModule):
    """f-AnoGAN: a WGAN-GP of normal images and an encoder E with G(E(x)) ≈ x; the anomaly score is the mismatch.

    Args:
        image_size: (H, W) of the data's images, each divisible by 2^depth (the generator's fixed output size;
            bilatcf's synthetic default 128×64, the toy presets 112×112 and 128×128). Checked against every batch.
        latent_dim: size of z (f-AnoGAN: 128).
        generator_channels: base width of G.
        critic_channels: base width of D.
        encoder_channels: base width of E.
        depth: stride-2 layers of G, D and E.
        n_critic: critic steps per generator step (WGAN-GP, f-AnoGAN: 5).
        gp_weight: λ of the gradient penalty (10).
        lr: Adam learning rate of G and D (WGAN-GP, f-AnoGAN: 1e-4, β (0, 0.9)).
        gan_epochs: epochs of phase 1 (the WGAN-GP); the encoder trains in the remaining ``trainer.max_epochs``.
        feature_weight: κ of the izi_f loss (f-AnoGAN: 1).
        encoder_lr: RMSProp learning rate of the encoder (f-AnoGAN: 5e-5).
        grad_clip: gradient-norm clipping per optimizer (None: off).
    """

    description = (
        "f-AnoGAN: WGAN-GP on normal images, then an izif encoder for one-pass scoring; residual as anomaly map"
    )
    paper = "Schlegl et al., Medical Image Analysis 2019"
    score_kind = "anomaly"
    #: Tiny networks for the test battery (64×32 images); one GAN epoch and two critic steps per generator step, so
    #: the battery's two batches per phase run the whole schedule.
    test_config = {  # noqa: RUF012
        "image_size": [64, 32],
        "latent_dim": 8,
        "generator_channels": 4,
        "critic_channels": 4,
        "encoder_channels": 4,
        "depth": 2,
        "n_critic": 2,
        "gan_epochs": 1,
    }

    def __init__(
        self,
        image_size: tuple[int, int] = (128, 64),
        latent_dim: int = 128,
        generator_channels: int = 64,
        critic_channels: int = 64,
        encoder_channels: int = 64,
        depth: int = 4,
        n_critic: int = 5,
        gp_weight: float = 10.0,
        lr: float = 1e-4,
        gan_epochs: int = 5,
        feature_weight: float = 1.0,
        encoder_lr: float = 5e-5,
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
            ("critic_channels", critic_channels),
            ("encoder_channels", encoder_channels),
            ("depth", depth),
            ("n_critic", n_critic),
            ("gan_epochs", gan_epochs),
        ):
            if value < 1:
                raise ConfigError(f"{name}: {flag}={value} must be ≥ 1.")
        for flag, value in (("gp_weight", gp_weight), ("feature_weight", feature_weight)):
            if value < 0:
                raise ConfigError(f"{name}: {flag}={value} must be ≥ 0.")
        check_positive(name, lr=lr, encoder_lr=encoder_lr)
        bottom_size(image_size, depth, name)
        self.grad_clip = grad_clip
        self.automatic_optimization = False
        self.n_critic = NCritic(n=n_critic, warmup_generator_steps=0, warmup_every=0)
        self.network = FAnoGANNetwork(
            latent_dim, image_size, generator_channels, critic_channels, encoder_channels, depth
        )

    def forward(self, target: Tensor, reference: Tensor) -> BilateralOutput:
        """z = E(X_T); score = the izi_f loss, counterfactual = G(z), explanation = |X_T − X_C|. ``reference`` is not
        used (f-AnoGAN is a single-image method)."""
        check_image_size(target, self.hparams.image_size, self.model_name)
        reconstruction, score = self.network.reconstruct(to_tanh_range(target), self.hparams.feature_weight)
        counterfactual = from_tanh_range(reconstruction).clamp(0.0, 1.0)
        explanation = (target - counterfactual).abs()
        return BilateralOutput(logits=score, cam=explanation, counterfactual=counterfactual, explanation=explanation)

    # ------------------------------------------------------------------ optimizers and phases
    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """``critic``, ``generator``: Adam 1e-4, β (0, 0.9); ``encoder``: RMSProp 5e-5 (f-AnoGAN)."""
        net, lr = self.network, self.hparams.lr
        return {
            "critic": torch.optim.Adam(net.critic.parameters(), lr=lr, betas=BETAS),
            "generator": torch.optim.Adam(net.generator.parameters(), lr=lr, betas=BETAS),
            "encoder": torch.optim.RMSprop(net.encoder.parameters(), lr=self.hparams.encoder_lr),
        }

    def training_phases(self) -> tuple[Phase, ...]:
        return (
            Phase("gan", self.hparams.gan_epochs, ("critic", "generator"), ("network.encoder",), scores=False),
            Phase("encoder", None, ("encoder",), ("network.generator", "network.critic")),
        )

    # ------------------------------------------------------------------ training
    def training_step(self, batch: BilateralBatch, batch_idx: int) -> None:
        check_image_size(batch.target, self.hparams.image_size, self.model_name)
        images, _, normal = stacked_domains(batch)
        rows, weights = select(normal)
        real = to_tanh_range(images[rows])
        count = len(images)  # the stacked batch: the denominator of every loss, whatever the masks keep
        if self.phase.name == "encoder":
            self.step("encoder", lambda: self.log_losses({"izif": weighted_mean(self.izif(real), weights, count)}))
            return
        fake = self.network.generator(
            stacked_uniform(self, batch, LATENT_STREAMS, -1.0, 1.0, self.hparams.latent_dim)[rows]
        )
        epsilon = stacked_uniform(self, batch, GP_STREAMS, 0.0, 1.0)[rows]
        # The generator steps when this batch's critic step completes n_critic critic steps (the critic's own step
        # counter, saved in checkpoints; never trainer.global_step).
        due = self.generator_due(self.n_critic)
        self.step(
            "critic",
            lambda: self.log_losses(self.critic_losses(real, fake, epsilon, weights, count)),
            last=not due,
        )
        if due:
            self.step("generator", lambda: self.log_losses(self.generator_losses(fake, weights, count)))

    def critic_losses(
        self, real: Tensor, fake: Tensor, epsilon: Tensor, weights: Tensor, count: int
    ) -> dict[str, Tensor]:
        """WGAN-GP critic loss D(G(z)) − D(x) + λ·GP, each normal image x paired with its own code's G(z)."""
        critic, fake = self.network.critic, fake.detach()
        # The penalty is the mean over this process's pairs, so its weighted sum is mean · Σ weight.
        penalty = gradient_penalty(critic, real, fake, epsilon) * weights.sum() / count
        return {
            "critic_real": weighted_mean(gan_loss(critic(real), True, "wgan", per_sample=True), weights, count),
            "critic_fake": weighted_mean(gan_loss(critic(fake), False, "wgan", per_sample=True), weights, count),
            "gp": self.hparams.gp_weight * penalty,
        }

    def generator_losses(self, fake: Tensor, weights: Tensor, count: int) -> dict[str, Tensor]:
        """WGAN generator loss −D(G(z))."""
        adversarial = gan_loss(self.network.critic(fake), True, "wgan", per_sample=True)
        return {"g_adv": weighted_mean(adversarial, weights, count)}

    def izif(self, images: Tensor) -> Tensor:
        """The izi_f loss per image [B] of images in [−1, 1] (trains E through the frozen G and D)."""
        return self.network.reconstruct(images, self.hparams.feature_weight)[1]
