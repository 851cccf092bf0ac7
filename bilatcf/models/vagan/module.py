"""VA-GAN's training: critic steps on every batch, a map-generator step when the n-critic schedule says so.

Domains come from each batch (:func:`~bilatcf.models.anogan.module.stacked_domains`): the generator reads the
abnormal images (targets with ``target_abnormal == 1``); the critic's real images are the normal ones (truly
lesion-free targets and references; on the unilateral toy presets, class 0). The two domains hold different samples,
so each critic term is a mean over its own domain in the *global* batch (all processes: :meth:`VAGAN.domain_mean`), and
the gradient penalty pairs every generated image with a normal image drawn from the global batch, so a 2-process DDP run
computes what one process computes. ``docs/models/vagan.md`` maps each loss to its function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.anogan.module import check_positive, select, stacked_domains
from bilatcf.models.base import BilateralModule
from bilatcf.models.cyclegan.network import from_tanh_range, to_tanh_range
from bilatcf.models.kit import NCritic
from bilatcf.models.outputs import BilateralOutput
from bilatcf.models.vagan.network import VAGANNetwork, map_l1
from bilatcf.nn.blocks import Norm
from bilatcf.nn.losses import gradient_penalty
from bilatcf.registry import register_model

#: Streams of :meth:`sample_random`: the gradient penalty's ε, and the draw of each generated image's normal partner.
GP_STREAM = 0
PARTNER_STREAM = 1
BETAS = (0.0, 0.9)  # VA-GAN (and WGAN-GP)


@dataclass
class CriticBatch:
    """What the critic and generator losses of one batch read (images in [−1, 1]).

    ``real`` are the normal images of this process (``real_weights`` 1, or one placeholder row of weight 0);
    ``source`` the abnormal targets the generator reads (``source_weights`` likewise); ``partners`` the normal image
    each generated image is interpolated with in the gradient penalty (``penalty_weights`` 0 when the global batch has
    no normal image); ``epsilon`` the penalty's mixing weights; the counts are those of the global batch.
    """

    real: Tensor
    real_weights: Tensor
    source: Tensor
    source_weights: Tensor
    partners: Tensor
    penalty_weights: Tensor
    epsilon: Tensor
    normal_count: Tensor
    abnormal_count: Tensor


@register_model("vagan")
class VAGAN(BilateralModule):
    """VA-GAN: M(x) turns an abnormal image into a normal-looking y = tanh(x + M(x)); M is the explanation.

    Args:
        generator_channels: channels of the U-Net map generator's first level.
        generator_depth: down-sampling steps of the U-Net (H and W must be divisible by 2^depth).
        generator_norm: normalisation of the U-Net's conv blocks (``batch``, ``instance`` or ``none``).
        critic_channels: channels of the critic's first conv.
        critic_depth: stride-2 convs of the critic.
        tanh_output: y = tanh(x + M) (VA-GAN) or y = x + M (the critic then sees unbounded images).
        n_critic: critic steps per generator step after the warm-up (VA-GAN: 5).
        warmup_critic_steps: critic steps before each warm-up generator step (VA-GAN: 100).
        warmup_generator_steps: the first generator steps that get ``warmup_critic_steps`` (VA-GAN: 25; 0: none).
        warmup_every: every this many generator steps, one more warm-up step (VA-GAN: 100; 0: never).
        gp_weight: weight of the WGAN-GP gradient penalty (10).
        map_weight: λ of the L1 penalty on M (VA-GAN: 100).
        lr: Adam learning rate of generator and critic (VA-GAN: 1e-4, β (0, 0.9)).
        grad_clip: gradient-norm clipping per optimizer (None: off).
    """

    description = "VA-GAN: U-Net map generator M, x + M made to look normal by a WGAN-GP critic; M is the explanation"
    paper = "Baumgartner et al., CVPR 2018"
    score_kind = "anomaly"
    #: Tiny networks for the test battery; two critic steps per generator step and no warm-up, so that the battery's
    #: two batches run the whole schedule (a critic-only batch, then one with the generator step).
    test_config = {  # noqa: RUF012
        "generator_channels": 4,
        "generator_depth": 2,
        "critic_channels": 4,
        "critic_depth": 2,
        "n_critic": 2,
        "warmup_generator_steps": 0,
        "warmup_every": 0,
    }

    def __init__(
        self,
        generator_channels: int = 32,
        generator_depth: int = 4,
        generator_norm: Norm = "batch",
        critic_channels: int = 32,
        critic_depth: int = 4,
        tanh_output: bool = True,
        n_critic: int = 5,
        warmup_critic_steps: int = 100,
        warmup_generator_steps: int = 25,
        warmup_every: int = 100,
        gp_weight: float = 10.0,
        map_weight: float = 100.0,
        lr: float = 1e-4,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        name = self.model_name
        if generator_norm not in get_args(Norm):
            raise ConfigError(f"{name}: generator_norm={generator_norm!r} is not one of {', '.join(get_args(Norm))}.")
        for flag, value, minimum in (
            ("generator_channels", generator_channels, 1),
            ("generator_depth", generator_depth, 1),
            ("critic_channels", critic_channels, 1),
            ("critic_depth", critic_depth, 1),
            ("n_critic", n_critic, 1),
            ("warmup_critic_steps", warmup_critic_steps, 1),
            ("warmup_generator_steps", warmup_generator_steps, 0),
            ("warmup_every", warmup_every, 0),
        ):
            if value < minimum:
                raise ConfigError(f"{name}: {flag}={value} must be ≥ {minimum}.")
        for flag, value in (("gp_weight", gp_weight), ("map_weight", map_weight)):
            if value < 0:
                raise ConfigError(f"{name}: {flag}={value} must be ≥ 0.")
        check_positive(name, lr=lr)
        self.grad_clip = grad_clip
        self.automatic_optimization = False
        self.n_critic = NCritic(n_critic, warmup_critic_steps, warmup_generator_steps, warmup_every)
        self.network = VAGANNetwork(
            generator_channels, generator_depth, generator_norm, critic_channels, critic_depth, tanh_output
        )

    def forward(self, target: Tensor, reference: Tensor) -> BilateralOutput:
        """Score = mean |M(X_T)| per image (the anomaly score), explanation = M (signed, in [−1, 1] image units),
        counterfactual = (y + 1) / 2. ``reference`` is not used (VA-GAN is a single-image method)."""
        attribution, generated = self.network(to_tanh_range(target))
        return BilateralOutput(
            logits=map_l1(attribution),
            cam=attribution.abs(),
            counterfactual=from_tanh_range(generated).clamp(0.0, 1.0),
            explanation=attribution,
        )

    # ------------------------------------------------------------------ optimizers
    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """``critic`` and ``generator``: Adam, lr 1e-4, β (0, 0.9) (VA-GAN)."""
        net, lr = self.network, self.hparams.lr
        return {
            "critic": torch.optim.Adam(net.critic.parameters(), lr=lr, betas=BETAS),
            "generator": torch.optim.Adam(net.generator.parameters(), lr=lr, betas=BETAS),
        }

    # ------------------------------------------------------------------ training
    def training_step(self, batch: BilateralBatch, batch_idx: int) -> None:
        data = self.critic_batch(batch)
        attribution, generated = self.network(data.source)
        # The generator steps on this batch when its critic step completes the critic steps the schedule asks for
        # (counted on the critic's own step counter, saved in checkpoints; never on trainer.global_step).
        due = self.generator_due(self.n_critic)
        self.step("critic", lambda: self.log_losses(self.critic_losses(data, generated)), last=not due)
        if due:
            self.step("generator", lambda: self.log_losses(self.generator_losses(data, attribution, generated)))

    def critic_batch(self, batch: BilateralBatch) -> CriticBatch:
        """Domains, global counts and gradient-penalty partners of a batch.

        The partner of each generated image is a normal image of the global batch (every process's, ordered by
        dataset index so the order does not depend on how the batch is split), drawn uniformly per sample from
        ``sample_random``: WGAN-GP interpolates between independently drawn real and generated samples.
        """
        size = len(batch)
        draw = self.sample_random(batch, PARTNER_STREAM).rand()  # first: it explains a batch without dataset indices
        images, abnormal, normal = stacked_domains(batch)
        images = to_tanh_range(images)
        index = torch.tensor([meta["index"] for meta in batch.meta], device=images.device)
        keys = torch.cat([2 * index, 2 * index + 1])  # targets, then references
        all_images, all_normal, all_abnormal, all_keys = self.gathered(images, normal, abnormal, keys)
        order = all_keys.argsort()
        pool = all_images[order][all_normal[order].bool()]
        source_rows, source_weights = select(abnormal[:size])
        real_rows, real_weights = select(normal)
        draw = draw[source_rows]
        if len(pool):
            partners, penalty_weights = pool[(draw * len(pool)).long().clamp_max(len(pool) - 1)], source_weights
        else:
            partners, penalty_weights = images[source_rows], torch.zeros_like(source_weights)
        return CriticBatch(
            real=images[real_rows],
            real_weights=real_weights,
            source=images[source_rows],
            source_weights=source_weights,
            partners=partners,
            penalty_weights=penalty_weights,
            epsilon=self.sample_random(batch, GP_STREAM).rand()[source_rows],
            normal_count=all_normal.sum(),
            abnormal_count=all_abnormal.sum(),
        )

    def critic_losses(self, data: CriticBatch, generated: Tensor) -> dict[str, Tensor]:
        """VA-GAN's critic loss D(x_normal) − D(y) + λ_gp·GP, each term a mean over its domain (the critic learns to
        score generated images high and normal ones low; the generator pushes D(y) down)."""
        critic, generated = self.network.critic, generated.detach()
        # The penalty is the mean over this process's generated images, so its weighted sum is mean · Σ weight.
        penalty = gradient_penalty(critic, data.partners, generated, data.epsilon)
        return {
            "critic_normal": self.domain_mean(critic(data.real), data.real_weights, data.normal_count),
            "critic_generated": -self.domain_mean(critic(generated), data.source_weights, data.abnormal_count),
            "gp": self.hparams.gp_weight
            * self.domain_mean(penalty.expand(len(generated)), data.penalty_weights, data.abnormal_count),
        }

    def generator_losses(self, data: CriticBatch, attribution: Tensor, generated: Tensor) -> dict[str, Tensor]:
        """VA-GAN's map-generator loss D(y) + λ·‖M(x)‖₁, means over the abnormal images."""
        weights, count = data.source_weights, data.abnormal_count
        return {
            "adv": self.domain_mean(self.network.critic(generated), weights, count),
            "map": self.hparams.map_weight * self.domain_mean(map_l1(attribution), weights, count),
        }

    def domain_mean(self, per_sample: Tensor, weights: Tensor, count: Tensor) -> Tensor:
        """The mean over a domain's samples in the global batch: Σ weight·value · world_size / global count.

        DDP averages gradients (and the logged values) over the processes, so each process contributes its share of
        the global sum; a domain with no sample anywhere contributes 0.
        """
        world = self.trainer.world_size if self._trainer is not None else 1
        return (per_sample.float() * weights).sum() * world / count.clamp_min(1)

    def gathered(self, *tensors: Tensor) -> list[Tensor]:
        """Each tensor of every process, concatenated along dim 0 (the tensors themselves in one process)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return list(tensors)
        return [self.all_gather(tensor).flatten(0, 1) for tensor in tensors]
