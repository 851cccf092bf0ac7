"""The template's training: a discriminator step, then a generator step — the structure every GAN method follows.

Copy this folder to ``bilatcf/models/<name>/``, rename the class and the registry key, then replace the networks and
the losses with the paper's. What stays: optimizers by name (:meth:`build_optimizers`), one :meth:`step` per
optimizer (the first with ``last=False`` so a later non-finite loss undoes it), randomness from
:meth:`sample_random`, a :class:`HistoryPool` registered as a sub-module (its contents are checkpointed per rank),
and a :class:`BilateralOutput` from ``forward``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.models._template.network import TemplateNetwork
from bilatcf.models.base import BilateralModule
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import create_backbone
from bilatcf.nn.losses import gan_loss
from bilatcf.nn.pool import HistoryPool
from bilatcf.registry import register_model

#: Streams of :meth:`sample_random`: one per stochastic part of a step.
POOL_STREAM = 0


@register_model("_template")
class Template(BilateralModule):
    """A minimal two-optimizer GAN: X_C = clip(X_T + M(X_T, X_R)) must look like a lesion-free breast.

    Args:
        backbone: classifier backbone (any timm name or ``tv_alexnet``).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride.
        generator_channels: base width of the map generator.
        discriminator_channels: base width of the PatchGAN.
        pool_size: history pool of generated images fed to the discriminator (0: off).
        map_weight: weight of the L1 penalty on the map (keeps X_C close to X_T).
        lr: Adam learning rate of both optimizers.
        grad_clip: gradient-norm clipping per optimizer (None: off).
    """

    description = "Template: a minimal two-optimizer GAN that new methods start from"
    paper = "bilatcf template"
    hidden = True

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        generator_channels: int = 16,
        discriminator_channels: int = 16,
        pool_size: int = 50,
        map_weight: float = 10.0,
        lr: float = 2e-4,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.grad_clip = grad_clip
        self.automatic_optimization = False
        self.network = TemplateNetwork(
            create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride),
            generator_channels,
            discriminator_channels,
        )
        self.pool = HistoryPool(pool_size)

    def forward(self, target: Tensor, reference: Tensor) -> BilateralOutput:
        return BilateralOutput(**self.network(target, reference))

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        discriminator = list(self.network.discriminator.parameters())
        # A list, not a set: the parameter order must be the same in every instance, or a resumed optimizer's state
        # would land on the wrong parameters.
        skip = {id(p) for p in discriminator}
        generator_side = [p for p in self.parameters() if id(p) not in skip]
        betas = (0.5, 0.999)
        return {
            "generator": torch.optim.Adam(generator_side, lr=self.hparams.lr, betas=betas),
            "discriminator": torch.optim.Adam(discriminator, lr=self.hparams.lr, betas=betas),
        }

    def training_step(self, batch: BilateralBatch, batch_idx: int) -> None:
        out = self.forward_batch(batch)
        fake = self.pool.query(out.counterfactual, self.sample_random(batch, POOL_STREAM).generators)
        self.step("discriminator", lambda: self.discriminator_loss(batch, fake), last=False)
        self.step("generator", lambda: self.log_losses(self.generator_losses(batch, out)))

    def discriminator_loss(self, batch: BilateralBatch, fake: Tensor) -> Tensor:
        """LSGAN: lesion-free references are real (benign lesions are not normal), pooled counterfactuals fake.

        The real term averages over the whole batch (not over the lesion-free pairs it keeps), so that a 2-process
        DDP run computes what one process computes on the same global batch.
        """
        discriminator = self.network.discriminator
        lesion_free = (batch.ref_abnormal == 0).float()
        real = gan_loss(discriminator(batch.reference), True, "lsgan", per_sample=True)
        return (real * lesion_free).mean() + gan_loss(discriminator(fake.detach()), False, "lsgan")

    def generator_losses(self, batch: BilateralBatch, out: BilateralOutput) -> dict[str, Tensor]:
        """BCE of the classifier, LSGAN for the generator, and an L1 penalty on the map."""
        return {
            "cls": self.classification_loss(out.logits, batch.label),
            "adv": gan_loss(self.network.discriminator(out.counterfactual), True, "lsgan"),
            "map": self.hparams.map_weight * out.explanation.abs().mean(),
        }
