"""CGN networks and losses (Wang et al., IEEE TIP 2021, §III-B), pure PyTorch.

The pieces, in the paper's order (Fig. 3):

* a shared backbone gives the target and reference features H_T, H_R (last conv layer);
* the counterfactual generation module mixes them, (1 − α)·H_T + α·AdaIN(H_T, H_R) (Eq. 6–7), and a generator of nine
  residual blocks turns the mixture into the counterfactual features H_C;
* the classification module (the seeds' "FusionLayer") classifies concat[H_T − H_C, H_T] (Eq. 8); its CAM, softmaxed
  over positions, is the prediction feedback Ω that estimates the lesion area;
* a discriminator tells H_R (real) from H_C (fake) (Eq. 9); the feedback triplet (Eq. 10–12) keeps H_C close to H_T
  outside Ω; the negative embedding (Eq. 13) asks the classifier to call H_C benign.

Every ablation of Tables III–IV is a choice made here (:data:`Bilateral`, ``level``) or in the losses at the bottom.
``docs/models/cgn.md`` maps each equation to its function and lists every default the paper leaves open.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from bilatcf.errors import ConfigError
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.backbones import Backbone
from bilatcf.nn.blocks import (
    GAN_INIT_GAIN,
    FeatureDiscriminator,
    PatchDiscriminator,
    ResBlock,
    ResnetGenerator,
    adain,
    init_weights,
)
from bilatcf.nn.cam import spatial_softmax
from bilatcf.nn.heads import LinearCAMHead
from bilatcf.nn.losses import chamfer_distance, feature_map_points, triplet_hinge, weighted_feature_distance

#: Table III's "Bilateral" column: none = vanilla, sbf = concatenated features, and three generator inputs.
Bilateral = Literal["none", "sbf", "tf-gan", "bf-gan", "adain-gan"]
Level = Literal["feature", "image"]
GAN_INPUTS = ("tf-gan", "bf-gan", "adain-gan")
#: AdaIN's ε (added to the variances), bilatcf default. The usual 1e-5 is too small for last-layer ReLU features: on a
#: small map a few channels are nearly constant, and σ(H_R)/σ(H_T) then multiplies gradients by up to ~300 (seen as
#: DDP and 1-process runs drifting apart after one step). 1e-2 caps σ(H_T) below at 0.1 and moves the σ of a typical
#: channel (variance ≈ 0.2 after batch norm) by ~2.5%.
ADAIN_EPS = 1e-2


def generator_input(target: Tensor, reference: Tensor, bilateral: str, alpha: float) -> Tensor:
    """The input of the generator G (Eq. 7) for each Table III row.

    ``adain-gan``: (1 − α)·H_T + α·AdaIN(H_T, H_R) (Eq. 6–7, ε = :data:`ADAIN_EPS`). ``bf-gan``: the simple
    combination (1 − α)·H_T + α·H_R (the mean at α = 0.5). ``tf-gan`` and ``none`` (a generator without reference,
    Table III row 8): H_T alone.
    """
    if bilateral not in ("adain-gan", "bf-gan"):
        return target
    mixed = adain(target, reference, eps=ADAIN_EPS) if bilateral == "adain-gan" else reference
    return (1 - alpha) * target + alpha * mixed


class FeatureGenerator(nn.Module):
    """G of Eq. 7: nine residual blocks on the feature map, H_C = x + P_out(blocks(P_in(x))).

    The blocks run at ``width`` channels between two 1×1 projections, around a global skip. The paper keeps the
    backbone's width; at ResNet-50's 2048 channels nine 3×3 blocks would outweigh the backbone (≈ 680 M parameters),
    so bilatcf projects down (``width=None`` keeps the paper's width). The skip and a zero-initialised last projection
    make G start as the identity: H_C starts as the generator input and the losses move it from there. (With the usual
    N(0, 0.02) init everywhere, nine instance-normalised blocks put H_C further from H_T than H_R is, so the triplet
    loss would first have to undo the initialisation.)

    ``in_channels`` (default ``channels``) lets the input carry extra channels after the first ``channels`` ones
    (BR-GAN's G_C2T reads concat[f_H, f_P]): the skip then adds the first ``channels`` input channels.
    """

    def __init__(self, channels: int, width: int, num_blocks: int = 9, in_channels: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.project_in = nn.Conv2d(in_channels or channels, width, 1)
        self.blocks = nn.Sequential(*[ResBlock(width, norm="instance", padding="zeros") for _ in range(num_blocks)])
        self.project_out = nn.Conv2d(width, channels, 1)
        init_weights(self, "normal", GAN_INIT_GAIN)
        nn.init.zeros_(self.project_out.weight)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] * x.shape[-1] < 2:
            raise ConfigError(
                f"The feature generator needs a feature map of at least 2 positions; the backbone gave "
                f"{tuple(x.shape[-2:])}. Use larger images (data.image_size) or a smaller "
                "backbone stride (model.output_stride: 16 or 8)."
            )
        return x[:, : self.channels] + self.project_out(self.blocks(self.project_in(x)))


class ImageGenerator(nn.Module):
    """The image-level counterfactual generator (Table IV, "image level"): X_C = (1 + G(input)) / 2 in [0, 1].

    G is CycleGAN's ResNet generator (nine blocks, tanh output). Its input is concat[X_T, X_R] when the Table III row
    uses the reference (bf-gan, adain-gan: AdaIN is a feature-level operation with no image-level counterpart beyond
    the concatenation) and X_T alone for tf-gan.
    """

    def __init__(self, use_reference: bool, base: int) -> None:
        super().__init__()
        self.use_reference = use_reference
        self.net = init_weights(
            ResnetGenerator(2 if use_reference else 1, 1, base=base, num_blocks=9, out_activation="tanh"),
            "normal",
            GAN_INIT_GAIN,
        )

    def forward(self, target: Tensor, reference: Tensor) -> Tensor:
        inputs = torch.cat([target, reference], dim=1) if self.use_reference else target
        return (self.net(inputs) + 1) / 2


class CGNNetwork(nn.Module):
    """Backbone, counterfactual generator, fusion classifier and discriminator of CGN for one ablation setting.

    Args:
        backbone: the shared feature extractor.
        bilateral: Table III's bilateral column (see :func:`generator_input`).
        alpha: AdaIN / combination weight α of Eq. 7.
        level: ``feature`` (the paper's CGN) or ``image`` (Table IV: generate X_C, then H_C = backbone(X_C)).
        with_generator: build G (the "none" row uses one only with L_NE or a triplet loss).
        with_discriminator: build D (the GAN rows).
        with_reference: compute H_R (the classifier, G, D or the triplet's d_rc reads it).
        detach_counterfactual_losses: at feature level, the H_C that the counterfactual losses read is computed from
            H_T and H_R as constants, so those losses train G and never the backbone; the classifier's H_C keeps the
            path through G back to both features (see :meth:`counterfactual_features`).
        generator_channels: width of G's residual blocks (feature level; None: the backbone's width, as the paper)
            or base width of the image generator (image level).
        discriminator_channels: hidden width of the feature discriminator / base width of the image PatchGAN.
    """

    def __init__(
        self,
        backbone: Backbone,
        bilateral: str,
        alpha: float,
        level: str,
        with_generator: bool,
        with_discriminator: bool,
        with_reference: bool,
        detach_counterfactual_losses: bool,
        generator_channels: int | None,
        discriminator_channels: int,
    ) -> None:
        super().__init__()
        channels = backbone.out_channels
        self.backbone = backbone
        self.bilateral = bilateral
        self.alpha = alpha
        self.level = level
        self.with_reference = with_reference
        self.detach_counterfactual_losses = detach_counterfactual_losses
        self.generator = self._build_generator(channels, with_generator, generator_channels)
        self.discriminator = self._build_discriminator(channels, with_discriminator, discriminator_channels)
        # The classifier sees exactly what the baselines see: vanilla's head on H_T, SBF's FusionLayer on two maps.
        two_maps = bilateral == "sbf" or self.generator is not None
        self.classifier = LinearCAMHead(2 * channels if two_maps else channels, hidden=channels if two_maps else None)

    def _build_generator(self, channels: int, enabled: bool, width: int | None) -> nn.Module | None:
        if not enabled:
            return None
        if self.level == "image":
            return ImageGenerator(self.bilateral in ("bf-gan", "adain-gan"), base=width or channels)
        return FeatureGenerator(channels, width or channels)

    def _build_discriminator(self, channels: int, enabled: bool, width: int) -> nn.Module | None:
        if not enabled:
            return None
        network = PatchDiscriminator(1, base=width) if self.level == "image" else FeatureDiscriminator(channels, width)
        return init_weights(network, "normal", GAN_INIT_GAIN)

    def counterfactual_features(self, target_features: Tensor, reference_features: Tensor) -> tuple[Tensor, Tensor]:
        """H_C = G(generator input) at feature level (Eq. 7), as (the losses' copy, the classifier's copy).

        The two copies have the same values. With ``detach_counterfactual_losses`` and gradients on, the losses' copy
        is G of the *detached* input, while the classifier's copy keeps the path G → AdaIN → (H_T, H_R): L_CLS (Eq. 8)
        then trains the backbone on both breasts through the counterfactual, as Eq. 14 does, and L_AD, L_NE and L_FT
        still train G alone. (If the classifier's H_C were detached too, the backbone would learn from H_T only, like
        the single-view baseline, and H_R would never receive a gradient.) One G call on the two copies stacked.
        """
        mixed = generator_input(target_features, reference_features, self.bilateral, self.alpha)
        if not (self.detach_counterfactual_losses and torch.is_grad_enabled() and mixed.requires_grad):
            counterfactual = self.generator(mixed)
            return counterfactual, counterfactual
        for_losses, for_classifier = self.generator(torch.cat([mixed.detach(), mixed])).chunk(2)
        return for_losses, for_classifier

    def forward(self, target: Tensor, reference: Tensor) -> dict[str, Tensor]:
        """Features, logits [B], CAM [B,1,h,w] and, with a generator, H_C and the explanation |H_T − H_C| (channel max).

        The reference goes through the backbone only when something reads H_R (never for vanilla).
        """
        if self.level == "image":
            return self._forward_image(target, reference)
        if self.with_reference:
            target_features, reference_features = self.backbone(torch.cat([target, reference])).chunk(2)
            out = {"target_features": target_features, "reference_features": reference_features}
        else:
            target_features = reference_features = self.backbone(target)
            out = {"target_features": target_features}
        if self.generator is None:
            fused = torch.cat([target_features, reference_features], 1) if self.bilateral == "sbf" else target_features
            out["logits"], out["cam"] = self.classifier(fused)
            return out
        out["cf_features"], classified = self.counterfactual_features(target_features, reference_features)
        return self._classify(out, classified)

    def _forward_image(self, target: Tensor, reference: Tensor) -> dict[str, Tensor]:
        counterfactual = self.generator(target, reference)
        # One backbone call for the three images keeps batch-norm statistics identical for H_T, H_R and H_C.
        target_features, reference_features, cf_features = self.backbone(
            torch.cat([target, reference, counterfactual])
        ).chunk(3)
        out = {
            "target_features": target_features,
            "reference_features": reference_features,
            "cf_features": cf_features,
            "counterfactual": counterfactual,
        }
        out = self._classify(out, cf_features)
        out["explanation"] = (target - counterfactual).abs()  # the image residual is finer than the feature one
        return out

    def _classify(self, out: dict[str, Tensor], counterfactual: Tensor) -> dict[str, Tensor]:
        """Eq. 8: the FusionLayer classifier on concat[H_T − H_C, H_T]; also the feature-residual heatmap."""
        residual = out["target_features"] - counterfactual
        out["logits"], out["cam"] = self.classifier(torch.cat([residual, out["target_features"]], dim=1))
        out["explanation"] = residual.abs().amax(dim=1, keepdim=True)
        return out

    def counterfactual_logits(self, cf_features: Tensor, train_classifier: bool) -> Tensor:
        """p_m(H_C) of Eq. 13 as a logit: the classifier applied to (residual 0, features H_C).

        A counterfactual is its own counterfactual, so its residual is 0. The classifier runs in inference mode (batch
        norm with running statistics, which the counterfactual batch must not update). With ``train_classifier`` False
        its weights are constants here, so L_NE trains G (the paper writes L_NE(G)) instead of teaching the classifier
        that a zero residual means benign.
        """
        inputs = torch.cat([torch.zeros_like(cf_features), cf_features], dim=1)
        modes = [(module, module.training) for module in self.classifier.modules()]  # callbacks may freeze parts
        self.classifier.eval()
        try:
            if train_classifier:
                return self.classifier(inputs)[0]
            constants = {name: p.detach() for name, p in self.classifier.named_parameters()}
            return functional_call(self.classifier, constants, (inputs,))[0]
        finally:
            for module, training in modes:
                module.training = training


# ---------------------------------------------------------------------------------------------------- losses


def lesion_estimate(out: BilateralOutput, feedback: bool, class_map: str = "predicted") -> Tensor:
    """Ω [B,1,h,w], summing to 1 per sample (detached: an estimate fed back to the losses, not a target for the CAM).

    Feedback (the paper's prediction feedback): Ω = softmax over positions of the classifier's CAM, of the predicted
    class (``class_map="predicted"``, the map the localization metric reads) or of the malignant class
    (``"malignant"``: the head's w·f whatever it predicts; the benign map of a one-logit head is its negative).
    Non-feedback (Table III): Ω = softmax over positions of the target–counterfactual distance ‖H_T − H_C‖², the
    areas with the largest distance.
    """
    if not feedback:
        score = (out.target_features.float() - out.cf_features.float()).pow(2).sum(dim=1, keepdim=True)
    elif class_map == "malignant":  # undo the head's sign flip of the predicted-benign maps
        score = out.cam * torch.where(out.logits >= 0, 1.0, -1.0).to(out.cam.dtype)[:, None, None, None]
    else:
        score = out.cam
    if score.shape[-2:] != out.target_features.shape[-2:]:
        score = F.interpolate(score.float(), size=out.target_features.shape[-2:], mode="bilinear", align_corners=False)
    return spatial_softmax(score.detach().float())


def triplet_distances(
    target: Tensor, reference: Tensor, counterfactual: Tensor, omega: Tensor, adaptive_reference: bool = False
) -> tuple[Tensor, Tensor]:
    """(d_tc, d_rc), one value per sample.

    d_tc (Eq. 10) = Σ (1 − Ω_ij)‖H_T^ij − H_C^ij‖² / (hw − 1): since Ω sums to 1, Σ(1 − Ω_ij) = hw − 1, so d_tc is the
    (1 − Ω)-weighted mean distance outside the estimated lesion. d_rc (Eq. 11) = the symmetric chamfer distance between
    the positions of H_R and H_C over 2hw (misalignment-tolerant). With ``adaptive_reference`` d_rc is a constant
    (computed without a graph): the level that d_tc must stay β below, not a distance that L_FT enlarges.
    """
    d_tc = weighted_feature_distance(target, counterfactual, 1 - omega)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not adaptive_reference):
        d_rc = chamfer_distance(feature_map_points(reference), feature_map_points(counterfactual), reduction="mean")
    return d_tc, d_rc


def feedback_triplet_loss(d_tc: Tensor, d_rc: Tensor, margin: float) -> Tensor:
    """L_FT (Eq. 12) = max(0, d_tc + β − d_rc), per sample, then averaged (Eq. 14 sums per-sample losses)."""
    return triplet_hinge(d_tc, d_rc, margin).mean()
