"""BR-GAN as a LightningModule: the training of Eq. 4 and every ablation of Table 3.

One training step runs the backbone once on [X_T; X_R], then (``gan`` rows) a discriminator step for D_C and D_T on
detached inputs and a generator step on Eq. 4: L_CLS + L_RE + the generators' sides of both GAN games + L^T_c + L^C_c.
Every row uses manual optimization, so the step reads the same for all of them. See ``docs/models/brgan.md``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.base import BilateralModule
from bilatcf.models.brgan.network import Bilateral, BRGANNetwork, Cycle, residual_embedding_loss
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import create_backbone
from bilatcf.nn.losses import cycle_loss, gan_loss
from bilatcf.registry import register_model

#: Adam betas of the discriminators (the DCGAN/CycleGAN convention; the paper gives none).
DISCRIMINATOR_BETAS = (0.5, 0.999)


@register_model("brgan")
class BRGAN(BilateralModule):
    """Bilateral residual generating adversarial network.

    Args:
        backbone: any timm model name or ``tv_alexnet`` (shared by both breasts; last conv layer).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride (timm models).
        bilateral: Table 3's bilateral column: ``none`` (vanilla), ``sbf`` (classifier on concat[f_T, f_C]) or
            ``gan`` (the bilateral-cycle generator, the paper's BR-GAN).
        cycle: ``none`` (G_T2C and D_C only, Table 3 row 3), ``single`` (L^T_c) or ``double`` (L^T_c and L^C_c).
            Both single and double build G_C2T and play D_T's game.
        use_re: add the residual embedding loss L_RE (Eq. 3).
        use_mask: the attention mask of Eq. 2; False: f_P = f_T − f_H (the residual itself).
        rescale_mask: multiply the spatial softmax by h·w, so a uniform residual keeps f_P = f_T (bilatcf default).
        detach_features: the GAN, cycle and RE losses see f_T and f_C as constants, so they train the generators and
            never reshape the backbone's features; the backbone learns from L_CLS (through f_T and through G_T2C).
            False follows Eq. 4 literally.
        generator_channels: width of the residual blocks of G_T2C and G_C2T (None: the backbone's width).
        discriminator_channels: hidden width of D_C and D_T.
        adversarial_weight: weight of both generators' GAN terms (Eq. 4: 1).
        cycle_weight: weight of L^T_c and L^C_c (Eq. 4: 1).
        re_weight: weight of L_RE (Eq. 4: 1).
        lr: AdamW learning rate of backbone, generators and classifier.
        discriminator_lr: Adam learning rate of the discriminators.
        weight_decay: AdamW weight decay of backbone, generators and classifier.
        grad_clip: gradient-norm clipping per optimizer (None: off).
    """

    description = "Bilateral residual GAN: feature-level bilateral cycle with a residual-preserved module"
    paper = "Wang et al., MICCAI 2020"

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        bilateral: Bilateral = "gan",
        cycle: Cycle = "double",
        use_re: bool = True,
        use_mask: bool = True,
        rescale_mask: bool = True,
        detach_features: bool = True,
        generator_channels: int | None = 64,
        discriminator_channels: int = 64,
        adversarial_weight: float = 1.0,
        cycle_weight: float = 1.0,
        re_weight: float = 1.0,
        lr: float = 3e-4,
        discriminator_lr: float = 3e-4,
        weight_decay: float = 1e-4,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        _check_flags(bilateral, cycle, use_re, use_mask)
        self.save_hyperparameters()
        self.grad_clip = grad_clip
        self.automatic_optimization = False
        self.network = BRGANNetwork(
            create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride),
            bilateral,
            cycle,
            use_mask=use_mask,
            rescale_mask=rescale_mask,
            detach_features=detach_features,
            generator_channels=generator_channels,
            discriminator_channels=discriminator_channels,
        )

    # ------------------------------------------------------------------ model API
    def forward(self, target: Tensor, reference: Tensor) -> BilateralOutput:
        """``logits`` [B], ``cam`` [B,1,h,w], ``target_features`` f_T, ``reference_features`` f_C and, for ``gan``,
        ``cf_features`` f_H and ``explanation`` (channel max of |f_T − f_H|)."""
        return BilateralOutput(**self.network(target, reference))

    def extract_features(self, images: Tensor) -> Tensor:
        return self.network.backbone(images)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """``generator``: backbone, G_T2C, G_C2T and classifier (AdamW); ``discriminator``: D_C and D_T (Adam)."""
        discriminators = [p for d in self.network.discriminators() for p in d.parameters()]
        skip = {id(p) for p in discriminators}
        generator_side = [p for p in self.parameters() if id(p) not in skip]
        optimizers = {
            "generator": torch.optim.AdamW(generator_side, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        }
        if discriminators:
            optimizers["discriminator"] = torch.optim.Adam(
                discriminators, lr=self.hparams.discriminator_lr, betas=DISCRIMINATOR_BETAS
            )
        return optimizers

    # ------------------------------------------------------------------ training
    def training_step(self, batch: BilateralBatch, batch_idx: int) -> None:
        """A discriminator step on detached inputs (``gan`` rows), then the generator step on Eq. 4."""
        out = self.forward_batch(batch)
        labels = getattr(batch, self.label_field)
        if self.network.g_t2c is None:
            self.step("generator", lambda: self.log_losses({"cls": self.classification_loss(out.logits, labels)}))
            return
        target, reference, healthy = self.network.loss_features(out)
        moved = self.network.translations(target, reference, healthy, with_preserved=self.hparams.use_re)
        self.step("discriminator", lambda: self.discriminator_loss(target, reference, healthy, moved), last=False)
        self.step("generator", lambda: self.log_losses(self.generator_losses(out, labels, moved)))

    def discriminator_loss(
        self, target: Tensor, reference: Tensor, healthy: Tensor, moved: dict[str, Tensor]
    ) -> Tensor:
        """D's side of Eq. 1 for both games: D_C (real f_C, fake f_H) and D_T (real f_T, fake G_C2T([f_C, f_P]))."""
        net = self.network
        loss = gan_loss(net.d_c(reference.detach()), True) + gan_loss(net.d_c(healthy.detach()), False)
        if net.d_t is not None:
            loss = (
                loss
                + gan_loss(net.d_t(target.detach()), True)
                + gan_loss(net.d_t(moved["target_fake"].detach()), False)
            )
        return loss

    def generator_losses(self, out: BilateralOutput, labels: Tensor, moved: dict[str, Tensor]) -> dict[str, Tensor]:
        """The terms of Eq. 4 that the generators, the classifier and the backbone minimise (batch means)."""
        hp, net = self.hparams, self.network
        target, reference, healthy = net.loss_features(out)
        # Non-saturating form of the generators' sides of Eq. 1: −log D(fake).
        losses = {
            "cls": self.classification_loss(out.logits, labels),
            "adv_c": hp.adversarial_weight * gan_loss(net.d_c(healthy), True),
        }
        if net.d_t is not None:
            losses["adv_t"] = hp.adversarial_weight * gan_loss(net.d_t(moved["target_fake"]), True)
            losses["cycle_t"] = hp.cycle_weight * cycle_loss(moved["target_cycle"].float(), target.float(), "mse")
        if "reference_cycle" in moved:
            losses["cycle_c"] = hp.cycle_weight * cycle_loss(moved["reference_cycle"].float(), reference.float(), "mse")
        if hp.use_re:
            logits = net.preserved_logits(moved["preserved"])
            losses["re"] = hp.re_weight * residual_embedding_loss(logits, out.logits)
        return losses


def _check_flags(bilateral: str, cycle: str, use_re: bool, use_mask: bool) -> None:
    """Refuse flag combinations the paper does not define, saying which flag to change."""
    choices = {"bilateral": (bilateral, ("none", "sbf", "gan")), "cycle": (cycle, ("none", "single", "double"))}
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"BR-GAN: model.{name}={value!r} is not one of {', '.join(allowed)}.")
    if bilateral != "gan":
        for name, value in (("cycle", cycle != "none"), ("use_re", use_re), ("use_mask", use_mask)):
            if value:
                raise ConfigError(
                    f"BR-GAN: bilateral={bilateral!r} has no generator, so model.{name} has nothing to act on; set "
                    "model.cycle=none, model.use_re=false and model.use_mask=false, or choose bilateral='gan'."
                )
    elif use_mask and cycle == "none" and not use_re:
        raise ConfigError(
            "BR-GAN: model.use_mask=true shapes f_P (Eq. 2), which nothing reads with cycle='none' and use_re=false; "
            "set model.use_mask=false, or model.cycle to 'single'/'double', or model.use_re=true."
        )
