"""Fixed-Point GAN's training as a bilateral baseline: critic steps, a generator step every ``n_critic`` of them, and a
classifier step on every batch.

Domains come from each batch exactly as in ``cyclegan`` (:func:`~bilatcf.models.cyclegan.module.domain_masks`):
abnormal = targets with a lesion, normal = truly lesion-free targets and references; unknown (``-1``) and abnormal
references are in neither domain. Targets and references are stacked into one batch of 2B images, and every loss is a
per-sample loss times the 0/1 mask of the samples in a domain, averaged over those 2B images
(:func:`~bilatcf.models.cyclegan.network.masked_mean`). ``docs/models/fixedpoint.md`` maps each loss to its function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.base import BilateralModule
from bilatcf.models.cyclegan.module import domain_masks
from bilatcf.models.cyclegan.network import masked_mean, per_sample_l1, to_tanh_range
from bilatcf.models.fixedpoint.network import (
    ABNORMAL,
    NORMAL,
    FixedPointGANNetwork,
    domain_cross_entropy,
    masked_gradient_penalty,
    other_domain,
    patch_mean,
)
from bilatcf.models.kit import NCritic, OptimizerSpec
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import create_backbone
from bilatcf.registry import register_model

#: Streams of :meth:`sample_random`: the gradient penalty's ε of the target half and of the reference half of the
#: stacked [targets; references] batch.
GP_TARGET_STREAM = 0
GP_REFERENCE_STREAM = 1
BETAS = (0.5, 0.999)


def stacked_domains(batch: BilateralBatch) -> tuple[Tensor, Tensor]:
    """(domain index, known mask) [2B] over the stacked images [targets; references].

    The index is ``NORMAL`` for the normal domain and ``ABNORMAL`` otherwise; ``known`` (1 in either domain, 0 in
    neither) is the mask every loss applies, so the index of an unknown sample is never read.
    """
    abnormal, normal = domain_masks(batch)
    return torch.where(normal.bool(), NORMAL, ABNORMAL), abnormal + normal


@register_model("fixedpoint")
class FixedPointGAN(BilateralModule):
    """Fixed-Point GAN translation to the normal domain; the classifier reads the target and its translation's residual.

    Args:
        backbone: classifier backbone (any timm name or ``tv_alexnet``).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride.
        generator_channels: base width of the conditional ResNet generator (StarGAN: 64).
        generator_blocks: residual blocks of the generator (StarGAN: 6).
        critic_channels: base width of the critic (StarGAN: 64).
        critic_layers: stride-2 convs of the critic (StarGAN: 6 at 128 px; each axis needs ≥ 2^critic_layers px).
        n_critic: critic steps per generator step (Fixed-Point GAN: 5).
        gp_weight: λ_gp of the WGAN-GP gradient penalty.
        cls_weight: λ_cls of the domain classification losses (critic on real images, generator on translations).
        rec_weight: λ_rec of the L1 reconstruction (cycle) losses.
        id_weight: λ_id of the L1 conditional identity loss (Fixed-Point GAN: 0.1 on medical images, 10 on faces).
        lr: Adam learning rate of generator and critic.
        classifier_lr: AdamW learning rate of backbone and head.
        weight_decay: AdamW weight decay of backbone and head.
        grad_clip: gradient-norm clipping per optimizer (None: off).
    """

    description = "Fixed-Point GAN baseline: residual translation to normal, classifier on residual + target features"
    paper = "Siddiquee et al., ICCV 2019"
    #: Tiny networks for the test battery; two critic steps per generator step so that the battery's two batches run
    #: the whole schedule (a critic-only batch, then one with the generator step).
    test_config = {
        "generator_channels": 4,
        "generator_blocks": 1,
        "critic_channels": 4,
        "critic_layers": 2,
        "n_critic": 2,
    }

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        generator_channels: int = 64,
        generator_blocks: int = 6,
        critic_channels: int = 64,
        critic_layers: int = 6,
        n_critic: int = 5,
        gp_weight: float = 10.0,
        cls_weight: float = 1.0,
        rec_weight: float = 10.0,
        id_weight: float = 0.1,
        lr: float = 1e-4,
        classifier_lr: float = 3e-4,
        weight_decay: float = 1e-4,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for flag, value in (
            ("generator_channels", generator_channels),
            ("generator_blocks", generator_blocks),
            ("critic_channels", critic_channels),
            ("critic_layers", critic_layers),
            ("n_critic", n_critic),
        ):
            if value < 1:
                raise ConfigError(f"fixedpoint: {flag}={value} must be ≥ 1.")
        for flag, value in (
            ("gp_weight", gp_weight),
            ("cls_weight", cls_weight),
            ("rec_weight", rec_weight),
            ("id_weight", id_weight),
            ("weight_decay", weight_decay),
        ):
            if value < 0:
                raise ConfigError(f"fixedpoint: {flag}={value} must be ≥ 0.")
        for flag, value in (("lr", lr), ("classifier_lr", classifier_lr), ("grad_clip", grad_clip)):
            if value is not None and value <= 0:
                raise ConfigError(f"fixedpoint: {flag}={value} must be > 0.")
        self.grad_clip = grad_clip
        self.automatic_optimization = False
        self.n_critic = NCritic(n=n_critic, warmup_generator_steps=0, warmup_every=0)
        self.network = FixedPointGANNetwork(
            create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride),
            generator_channels,
            generator_blocks,
            critic_channels,
            critic_layers,
        )

    def forward(self, target: Tensor, reference: Tensor) -> BilateralOutput:
        return BilateralOutput(**self.network(target, reference))

    def extract_features(self, images: Tensor) -> Tensor:
        return self.network.backbone(images)

    # ------------------------------------------------------------------ optimizers
    def build_optimizers(self) -> dict[str, OptimizerSpec | torch.optim.Optimizer]:
        """``critic`` and ``generator``: Adam (β 0.5, 0.999); ``classifier`` (backbone and head): AdamW."""
        net, lr = self.network, self.hparams.lr
        classifier = [*net.backbone.parameters(), *net.head.parameters()]
        return {
            "critic": torch.optim.Adam(net.critic.parameters(), lr=lr, betas=BETAS),
            "generator": torch.optim.Adam(net.generator.parameters(), lr=lr, betas=BETAS),
            "classifier": torch.optim.AdamW(
                classifier, lr=self.hparams.classifier_lr, weight_decay=self.hparams.weight_decay
            ),
        }

    # ------------------------------------------------------------------ training
    def training_step(self, batch: BilateralBatch, batch_idx: int) -> None:
        domains, known = stacked_domains(batch)
        out = self.forward_batch(batch)  # X_C (no graph) and the classifier's logits
        real = to_tanh_range(torch.cat([batch.target, batch.reference]))  # [2B, 1, H, W] in [−1, 1]
        epsilon = torch.cat(
            [self.sample_random(batch, stream).rand() for stream in (GP_TARGET_STREAM, GP_REFERENCE_STREAM)]
        )
        # The generator steps on this batch when its critic step completes the n_critic critic steps due (counted
        # on the critic's own step counter, saved in checkpoints; never on trainer.global_step).
        due = self.generator_due(self.n_critic)
        self.step("critic", lambda: self.log_losses(self.critic_losses(real, domains, known, epsilon)), last=False)
        if due:
            self.step("generator", lambda: self.log_losses(self.generator_losses(real, domains, known)), last=False)
        # A lambda, so that a non-finite classification loss is caught inside the step kit, which then undoes the
        # critic and generator steps of this batch.
        self.step(
            "classifier", lambda: self.log_losses({"cls": self.classification_loss(out.logits, self.labels(batch))})
        )

    def critic_losses(self, real: Tensor, domains: Tensor, known: Tensor, epsilon: Tensor) -> dict[str, Tensor]:
        """−D_src(x) + D_src(G(x, c_trg)) + λ_gp·GP + λ_cls·CE(D_cls(x), c_orig), each masked to the known samples.

        The fakes are the cross-domain translations (c_trg = the other domain), made without a graph.
        """
        critic = self.network.critic
        with torch.no_grad():
            fake = self.network.generator(real, other_domain(domains))
        source, domain_logits = critic(torch.cat([real, fake]))
        real_source, fake_source = source.chunk(2)
        return {
            "critic_real": -masked_mean(patch_mean(real_source), known),
            "critic_fake": masked_mean(patch_mean(fake_source), known),
            "gp": self.hparams.gp_weight * masked_gradient_penalty(critic, real, fake, epsilon, known),
            "critic_domain": self.hparams.cls_weight
            * masked_mean(domain_cross_entropy(domain_logits[: len(real)], domains), known),
        }

    def generator_losses(self, real: Tensor, domains: Tensor, known: Tensor) -> dict[str, Tensor]:
        """The cross-domain translation x → G(x, c_trg) and the same-domain one x → G(x, c_orig), each with its
        adversarial, domain-classification and reconstruction G(·, c_orig) ≈ x terms, plus the conditional identity
        loss G(x, c_orig) ≈ x (the fixed point), each masked to the known samples."""
        net, hp = self.network, self.hparams
        count = len(real)
        # One generator call for both translations and one for both reconstructions (instance norm is per sample).
        targets = torch.cat([other_domain(domains), domains])
        translated = net.generator(torch.cat([real, real]), targets)
        reconstructed = net.generator(translated, torch.cat([domains, domains]))
        source, domain_logits = net.critic(translated)
        adversarial = -patch_mean(source)
        domain = domain_cross_entropy(domain_logits, targets)
        reconstruction = per_sample_l1(reconstructed, torch.cat([real, real]))

        def cross(values: Tensor) -> Tensor:
            return masked_mean(values[:count], known)

        def same(values: Tensor) -> Tensor:
            return masked_mean(values[count:], known)

        return {
            "adv": cross(adversarial),
            "domain": hp.cls_weight * cross(domain),
            "rec": hp.rec_weight * cross(reconstruction),
            "adv_id": same(adversarial),
            "domain_id": hp.cls_weight * same(domain),
            "rec_id": hp.rec_weight * same(reconstruction),
            "id": hp.id_weight * masked_mean(per_sample_l1(translated[count:], real), known),
        }

    def labels(self, batch: BilateralBatch) -> Tensor:
        """The task labels the classifier's BCE reads."""
        return getattr(batch, self.label_field)
