"""CGN training (Wang et al., IEEE TIP 2021): the joint objective of Eq. 14 and every ablation of Tables III–IV.

One training step runs the backbone once on [X_T; X_R] ([X_T; X_R; X_C] at image level), then (GAN rows) a discriminator
step on detached inputs and a generator step on Eq. 14: L_CLS + L_AD(G) + L_NE + L_FT (or L_FC). Every row uses manual
optimization, so the step reads the same for all of them. See ``docs/models/cgn.md`` for the equation map and defaults.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.base import BilateralModule
from bilatcf.models.cgn.network import (
    GAN_INPUTS,
    Bilateral,
    CGNNetwork,
    Level,
    feedback_triplet_loss,
    lesion_estimate,
    triplet_distances,
)
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import create_backbone
from bilatcf.nn.losses import gan_loss, negative_embedding_loss
from bilatcf.registry import register_model

Triplet = Literal["none", "non-feedback", "feedback"]
Variant = Literal["none", "masked-d", "fc"]
FeedbackMap = Literal["predicted", "malignant"]
#: Adam betas of the discriminator (the DCGAN/pix2pix convention; the paper gives none).
DISCRIMINATOR_BETAS = (0.5, 0.999)


@register_model("cgn")
class CGN(BilateralModule):
    """Bilateral asymmetry guided counterfactual generating network.

    Args:
        backbone: any timm model name or ``tv_alexnet`` (shared by both breasts; last conv layer).
        weights: local weights file for the backbone (no downloads); None trains from scratch.
        output_stride: backbone output stride (timm models), e.g. 16 for a finer feature map and CAM.
        bilateral: Table III's bilateral input: ``none`` (vanilla; with ``use_ne`` or a triplet: a generator on H_T
            alone and no discriminator, Table III row 8), ``sbf`` (classifier on concat[H_T, H_R]), ``tf-gan``
            (generator input H_T), ``bf-gan`` ((1 − α)·H_T + α·H_R), ``adain-gan`` (Eq. 6–7, the paper's CGN).
        alpha: interpolation weight α of Eq. 7 (bilatcf default 0.5: the paper does not state it).
        use_ne: add the negative embedding loss L_NE (Eq. 13).
        triplet: ``feedback`` (Eq. 10–12 with Ω from the CAM), ``non-feedback`` (Ω from the largest
            target–counterfactual distance), or ``none``.
        feedback_map: the CAM that Ω softmaxes with feedback: of the ``predicted`` class, or of the ``malignant``
            class whatever the prediction (see ``docs/models/cgn.md``).
        adaptive_reference: d_rc enters L_FT as a constant, the "adaptive reference" below which the triplet holds
            d_tc (§III-B), so L_FT only pulls H_C towards H_T outside Ω. False: L_FT also enlarges d_rc, pushing H_C
            away from every reference feature.
        margin: triplet margin β of Eq. 12 (in squared feature units; the paper does not state it).
        variant: Table IV: ``masked-d`` (variant 1: D on the Ω regions, Eq. 16–19; pair with ``triplet: none`` for the
            paper's L_1), ``fc`` (variant 2: L_FC = d_tc replaces L_FT, Eq. 20–21), or ``none``.
        level: ``feature`` (the paper's CGN) or ``image`` (Table IV: an image generator makes X_C, H_C = backbone(X_C),
            an image PatchGAN judges X_R vs X_C).
        ne_trains_classifier: let L_NE update the classifier too (default: only the generator side, as L_NE(G)).
        detach_features: the backbone learns from L_CLS alone (through H_T, and through G and AdaIN back to H_T and
            H_R): the counterfactual losses (L_AD for G, L_NE, L_FT/L_FC) see H_T and H_R as constants, so they train G
            and never reshape the features (e.g. inflate them until the triplet margin holds). At image level
            H_C = backbone(X_C) carries their gradient back to the image generator, and the backbone's weights learn
            from them too (see ``docs/models/cgn.md``). False follows Eq. 14 literally.
        generator_channels: width of the nine residual blocks of the feature generator (None: the backbone's width).
        image_generator_channels: base width of the image-level ResNet generator.
        discriminator_channels: hidden width of the feature discriminator / base width of the image PatchGAN.
        adversarial_weight: weight of L_AD in the generator loss (Eq. 14: 1).
        ne_weight: weight of L_NE (Eq. 14: 1).
        triplet_weight: weight of L_FT or L_FC (Eq. 14: 1).
        lr: AdamW learning rate of backbone, generator and classifier.
        discriminator_lr: Adam learning rate of the discriminator.
        weight_decay: AdamW weight decay of backbone, generator and classifier.
        grad_clip: gradient-norm clipping per optimizer (None: off).
    """

    description = "Counterfactual generating network: AdaIN-fused counterfactual features, feedback triplet, NE loss"
    paper = "Wang et al., IEEE TIP 2021"

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        bilateral: Bilateral = "adain-gan",
        alpha: float = 0.5,
        use_ne: bool = True,
        triplet: Triplet = "feedback",
        feedback_map: FeedbackMap = "predicted",
        adaptive_reference: bool = True,
        margin: float = 40.0,
        variant: Variant = "none",
        level: Level = "feature",
        ne_trains_classifier: bool = False,
        detach_features: bool = True,
        generator_channels: int | None = 64,
        image_generator_channels: int = 32,
        discriminator_channels: int = 64,
        adversarial_weight: float = 1.0,
        ne_weight: float = 1.0,
        triplet_weight: float = 1.0,
        lr: float = 3e-4,
        discriminator_lr: float = 3e-4,
        weight_decay: float = 1e-4,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        _check_flags(bilateral, alpha, use_ne, triplet, margin, variant, level, feedback_map)
        self.save_hyperparameters()
        self.grad_clip = grad_clip
        self.automatic_optimization = False  # one step idiom for every row: optional D step, then the G step
        gan = bilateral in GAN_INPUTS
        with_generator = gan or (bilateral == "none" and (use_ne or triplet != "none"))
        self.network = CGNNetwork(
            create_backbone(backbone, in_chans=1, weights=weights, output_stride=output_stride),
            bilateral,
            alpha,
            level,
            with_generator=with_generator,
            with_discriminator=gan,
            with_reference=bilateral != "none" or triplet != "none",
            detach_counterfactual_losses=detach_features,
            generator_channels=image_generator_channels if level == "image" else generator_channels,
            discriminator_channels=discriminator_channels,
        )

    # ------------------------------------------------------------------ model API
    def forward(self, target: Tensor, reference: Tensor) -> BilateralOutput:
        """``logits`` [B], ``cam`` [B,1,h,w], ``target_features``, ``reference_features``, ``cf_features``,
        ``explanation`` (channel max of |H_T − H_C|; |X_T − X_C| at image level) and, at image level,
        ``counterfactual`` [B,1,H,W] in [0, 1]. Rows without a generator return only what they compute."""
        return BilateralOutput(**self.network(target, reference))

    def extract_features(self, images: Tensor) -> Tensor:
        return self.network.backbone(images)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """``generator``: backbone, G and classifier (AdamW); ``discriminator``: D (Adam), on the GAN rows."""
        discriminator = self.network.discriminator
        skip = set() if discriminator is None else {id(p) for p in discriminator.parameters()}
        generator_side = [p for p in self.parameters() if id(p) not in skip]
        optimizers = {
            "generator": torch.optim.AdamW(generator_side, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        }
        if discriminator is not None:
            optimizers["discriminator"] = torch.optim.Adam(
                discriminator.parameters(), lr=self.hparams.discriminator_lr, betas=DISCRIMINATOR_BETAS
            )
        return optimizers

    # ------------------------------------------------------------------ training
    def training_step(self, batch: BilateralBatch, batch_idx: int) -> None:
        """A discriminator step on detached inputs (GAN rows), then the generator step on Eq. 14."""
        out = self.forward_batch(batch)
        omega = self.lesion_area(out)
        if self.network.discriminator is not None:
            real, fake = self._real_and_fake(out, batch)
            self.step("discriminator", lambda: self.discriminator_loss(real, fake, omega), last=False)
        self.step("generator", lambda: self.log_losses(self.generator_losses(out, omega, batch)))

    def lesion_area(self, out: BilateralOutput) -> Tensor | None:
        """Ω (detached, sums to 1 per sample), when a triplet/FC loss or the masked discriminator needs it."""
        hp = self.hparams
        if hp.triplet == "none" and hp.variant != "masked-d":
            return None
        return lesion_estimate(out, feedback=hp.triplet != "non-feedback", class_map=hp.feedback_map)

    def discriminator_loss(self, real: Tensor, fake: Tensor, omega: Tensor | None) -> Tensor:
        """D's side of Eq. 9, −[log D(real) + log(1 − D(fake))]; on the Ω regions for variant (1) (Eq. 18)."""
        weight = omega if self.hparams.variant == "masked-d" else None
        discriminator = self.network.discriminator
        return gan_loss(discriminator(real.detach()), True, weight=weight) + gan_loss(
            discriminator(fake.detach()), False, weight=weight
        )

    def generator_losses(self, out: BilateralOutput, omega: Tensor | None, batch: BilateralBatch) -> dict[str, Tensor]:
        """The terms of Eq. 14 (or Eq. 19 / 21) that the generator, classifier and backbone minimise."""
        hp = self.hparams
        losses = {"cls": self.classification_loss(out.logits, getattr(batch, self.label_field))}
        if self.network.generator is None:
            return losses
        target, reference, counterfactual = self._loss_features(out)
        if self.network.discriminator is not None:
            # Non-saturating form of the generator's side of Eq. 9 / Eq. 17: −log D(fake).
            fake = self._real_and_fake(out, batch)[1]
            weight = omega if hp.variant == "masked-d" else None
            losses["adv"] = hp.adversarial_weight * gan_loss(self.network.discriminator(fake), True, weight=weight)
        if hp.use_ne:
            logits = self.network.counterfactual_logits(counterfactual, hp.ne_trains_classifier)
            losses["ne"] = hp.ne_weight * negative_embedding_loss(logits.float()).mean()  # Eq. 13
        if hp.triplet != "none":
            losses.update(self.triplet_losses(target, reference, counterfactual, omega))
        return losses

    def triplet_losses(
        self, target: Tensor, reference: Tensor, counterfactual: Tensor, omega: Tensor
    ) -> dict[str, Tensor]:
        """L_FT (Eq. 10–12) or, for variant (2), L_FC = d_tc (Eq. 20).

        d_tc and d_rc are logged under ``diag/``, apart from the optimised losses under ``train/``: they are distances
        between maps that start equal (G starts as the identity), so float noise is a large part of them early on.
        """
        d_tc, d_rc = triplet_distances(target, reference, counterfactual, omega, self.hparams.adaptive_reference)
        self.log_dict(
            {"diag/d_tc": d_tc.detach().mean(), "diag/d_rc": d_rc.detach().mean()},
            on_step=True,
            on_epoch=False,
            sync_dist=True,
            batch_size=self._batch_size,
        )
        if self.hparams.variant == "fc":
            return {"fc": self.hparams.triplet_weight * d_tc.mean()}
        return {"ft": self.hparams.triplet_weight * feedback_triplet_loss(d_tc, d_rc, self.hparams.margin)}

    def _loss_features(self, out: BilateralOutput) -> tuple[Tensor, Tensor, Tensor]:
        """(H_T, H_R, H_C) as the counterfactual losses see them (see ``detach_features``)."""
        target = out.target_features
        reference = target if out.reference_features is None else out.reference_features
        if self.hparams.detach_features:
            target, reference = target.detach(), reference.detach()
        return target, reference, out.cf_features

    def _real_and_fake(self, out: BilateralOutput, batch: BilateralBatch) -> tuple[Tensor, Tensor]:
        """The discriminator's real and fake inputs: (X_R, X_C) at image level, (H_R, H_C) at feature level."""
        if self.hparams.level == "image":
            return batch.reference, out.counterfactual
        return out.reference_features, out.cf_features


def _check_flags(
    bilateral: str, alpha: float, use_ne: bool, triplet: str, margin: float, variant: str, level: str, feedback_map: str
) -> None:
    """Refuse flag combinations the paper does not define, saying which flag to change."""
    choices = {
        "bilateral": (bilateral, ("none", "sbf", *GAN_INPUTS)),
        "triplet": (triplet, ("none", "non-feedback", "feedback")),
        "variant": (variant, ("none", "masked-d", "fc")),
        "level": (level, ("feature", "image")),
        "feedback_map": (feedback_map, ("predicted", "malignant")),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"CGN: model.{name}={value!r} is not one of {', '.join(allowed)}.")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"CGN: model.alpha={alpha} must lie in [0, 1] (the interpolation weight of Eq. 7).")
    if margin < 0:
        raise ConfigError(f"CGN: model.margin={margin} must be ≥ 0 (the triplet margin β of Eq. 12).")
    if bilateral == "sbf" and (use_ne or triplet != "none"):
        raise ConfigError(
            "CGN: bilateral='sbf' has no counterfactual, so use_ne and triplet have nothing to act on; "
            "set model.use_ne=false and model.triplet=none, or choose a GAN row (tf-gan, bf-gan, adain-gan)."
        )
    if bilateral not in GAN_INPUTS and (variant != "none" or level != "feature"):
        raise ConfigError(
            f"CGN: variant={variant!r} and level={level!r} modify the GAN, which bilateral={bilateral!r} "
            "does not have; choose bilateral tf-gan, bf-gan or adain-gan, or variant none / level feature."
        )
    if variant == "fc" and triplet == "none":
        raise ConfigError(
            "CGN: variant='fc' replaces the triplet loss by L_FC = d_tc (Eq. 20), which needs Ω; set "
            "model.triplet to 'feedback' (the paper's variant 2) or 'non-feedback'."
        )
