"""Two small models that use the harness features no shipped method uses yet, so the battery checks them too.

* ``_phased`` — the template trained in two stages (a GAN, then the classifier with the GAN frozen), like CX-GAN
  cascaded or f-AnoGAN;
* ``_latent_search`` — an anomaly scorer that optimises a latent code per image at evaluation (AnoGAN's search) on the
  unilateral ``vagan`` toy preset, with a cheaper search for validation and state built from the training split.

Both are registered hidden, so ``bilatcf list`` never shows them; importing this module (tests/conftest.py does)
registers them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bilatcf.data.types import BilateralBatch
from bilatcf.models._template.module import Template
from bilatcf.models.base import BilateralModule
from bilatcf.models.kit import Phase
from bilatcf.models.outputs import BilateralOutput
from bilatcf.registry import register_model


@register_model("_phased")
class Phased(Template):
    """Stage ``gan``: generator and discriminator; stage ``classifier``: backbone and head, the GAN frozen."""

    description = "harness test: two training stages"
    test_config = {"gan_epochs": 1}  # noqa: RUF012

    def __init__(
        self, backbone: str = "resnet18", output_stride: int | None = 16, map_weight: float = 10.0, gan_epochs: int = 2
    ) -> None:
        # Every hyper-parameter the template's losses read is an argument here: under LightningCLI,
        # save_hyperparameters stores the arguments the CLI passed to this class, not the parent's defaults.
        super().__init__(backbone=backbone, output_stride=output_stride, map_weight=map_weight)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        network = self.network
        classifier = [*network.backbone.parameters(), *network.head.parameters()]
        return {
            "generator": torch.optim.Adam(network.generator.parameters(), lr=2e-4),
            "discriminator": torch.optim.Adam(network.discriminator.parameters(), lr=2e-4),
            "classifier": torch.optim.Adam(classifier, lr=2e-4),
        }

    def training_phases(self) -> tuple[Phase, ...]:
        return (
            Phase(
                "gan",
                self.hparams.gan_epochs,
                ("discriminator", "generator"),
                ("network.backbone", "network.head"),
                False,
            ),
            Phase("classifier", None, ("classifier",), ("network.generator", "network.discriminator")),
        )

    def training_step(self, batch: BilateralBatch, batch_idx: int) -> None:
        out = self.forward_batch(batch)
        if self.phase.name == "classifier":
            self.step("classifier", lambda: self.checked("cls", self.classification_loss(out.logits, batch.label)))
            return
        fake = self.pool.query(out.counterfactual, self.sample_random(batch).generators)
        self.step("discriminator", lambda: self.discriminator_loss(batch, fake), last=False)
        losses = self.generator_losses(batch, out)
        self.step("generator", lambda: self.log_losses({"adv": losses["adv"], "map": losses["map"]}))


class _Decoder(nn.Module):
    def __init__(self, latent: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size
        self.linear = nn.Linear(latent, 8 * 8)
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        coarse = self.linear(z).view(-1, 1, 8, 8)
        return torch.sigmoid(self.conv(F.interpolate(coarse, size=self.size, mode="bilinear", align_corners=False)))


@register_model("_latent_search")
class LatentSearch(BilateralModule):
    """x ≈ G(z) for lesion-free images; at evaluation z is searched per image and the residual is the anomaly score."""

    description = "harness test: test-time optimisation"
    hidden = True
    toy_preset = "vagan"
    score_kind = "anomaly"
    test_time_optimization = True
    test_config = {"val_search_steps": 1, "test_search_steps": 3}  # noqa: RUF012

    def __init__(self, latent: int = 8, val_search_steps: int = 2, test_search_steps: int = 10) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.decoder = _Decoder(latent, (112, 112))
        self.register_buffer("normal_mean", torch.zeros(()))

    def build_training_state(self, datamodule) -> None:
        images = [image.image for image in datamodule.training_images(lesion_free=True)]
        self.normal_mean.fill_(float(torch.as_tensor(sum(i.mean() for i in images) / max(len(images), 1))))

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": torch.optim.Adam(self.decoder.parameters(), lr=1e-3)}

    def training_step(self, batch: BilateralBatch, batch_idx: int) -> None:
        z = self.sample_random(batch).randn(self.hparams.latent)
        normal = (batch.target_abnormal == 0).float()[:, None, None, None]
        self.step(
            "generator", lambda: self.log_losses({"rec": ((self.decoder(z) - batch.target).abs() * normal).mean()})
        )

    def forward(self, target: Tensor, reference: Tensor) -> BilateralOutput:
        steps = self.hparams.test_search_steps if self.final_evaluation else self.hparams.val_search_steps
        with torch.enable_grad():
            z = torch.zeros(len(target), self.hparams.latent, device=target.device, requires_grad=True)
            for _ in range(steps):
                residual = (self.decoder(z) - target).abs().mean()
                (gradient,) = torch.autograd.grad(residual, z)
                z = (z - 0.5 * gradient).detach().requires_grad_(True)
        residual_map = (self.decoder(z) - target).abs()
        score = residual_map.flatten(1).mean(1) - self.normal_mean
        return BilateralOutput(logits=score, cam=residual_map, explanation=residual_map)
