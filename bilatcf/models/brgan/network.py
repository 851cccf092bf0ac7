"""BR-GAN networks and losses (Wang et al., MICCAI 2020, §2), pure PyTorch.

The pieces, in the paper's order (Fig. 2):

* a shared backbone gives the target and contralateral features f_T, f_C (last conv layer);
* G_T2C translates f_T into its healthy version f_H; D_C tells f_H (fake) from real f_C (Eq. 1);
* the residual-preserved module keeps the suspicious part of the target, f_P = f_T ⊙ softmax(f_T − f_H) (Eq. 2);
* G_C2T translates back from concat[f_H, f_P] (cycle L^T_c) and from concat[f_C, f_P] (second cycle L^C_c, judged by
  D_T against real f_T);
* the classifier reads concat[f_T − f_H, f_T]; the residual embedding (Eq. 3) asks it to give f_P the prediction of f_T.

``docs/models/brgan.md`` maps each equation to its function and lists every default the paper leaves open.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from bilatcf.models.cgn.network import FeatureGenerator
from bilatcf.nn.backbones import Backbone
from bilatcf.nn.blocks import GAN_INIT_GAIN, FeatureDiscriminator, init_weights
from bilatcf.nn.cam import spatial_softmax
from bilatcf.nn.heads import LinearCAMHead

#: Table 3's "Bilateral" column: none = vanilla, sbf = concatenated features, gan = the bilateral-cycle generator.
Bilateral = Literal["none", "sbf", "gan"]
#: Table 3's L_c column: no cycle (G_T2C and D_C only), single (L^T_c), double (L^T_c and L^C_c).
Cycle = Literal["none", "single", "double"]


def preserved_features(target: Tensor, healthy: Tensor, use_mask: bool = True, rescale: bool = True) -> Tensor:
    """f_P of Eq. 2: f_T ⊙ softmax(f_T − f_H), the softmax over the spatial positions of each channel.

    Per channel over positions (as CGN's Ω): the attention says *where* the residual of that channel is large, which is
    the lesion localisation the paper asks of it; a softmax over channels would instead pick the channel at each
    position and keep something of f_T everywhere. ``rescale`` multiplies the attention by h·w, so a uniform residual
    gives f_P = f_T (the plain softmax would shrink f_P by the number of positions, ~1/100 at 224 px, and the
    classifier of Eq. 3 would see near-zero features). ``use_mask`` False (Table 3, "Mask ×"): f_P = f_T − f_H, the
    residual itself, which the paper names as the alternative the mask replaces.
    """
    residual = target - healthy
    if not use_mask:
        return residual
    attention = spatial_softmax(residual.float()).to(target.dtype)
    if rescale:
        attention = attention * (target.shape[-2] * target.shape[-1])
    return target * attention


class BRGANNetwork(nn.Module):
    """Backbone, the two feature generators, the two discriminators and the classifier of one Table 3 row.

    Args:
        backbone: the shared feature extractor.
        bilateral: Table 3's bilateral column.
        cycle: Table 3's L_c column (``none`` builds no G_C2T and no D_T).
        use_mask: the attention mask of Eq. 2 (see :func:`preserved_features`).
        rescale_mask: multiply the attention by h·w (see :func:`preserved_features`).
        detach_features: the features the GAN, cycle and RE losses read are constants (see :meth:`forward`).
        generator_channels: width of the residual blocks of both generators (None: the backbone's width).
        discriminator_channels: hidden width of both feature discriminators.
    """

    def __init__(
        self,
        backbone: Backbone,
        bilateral: str,
        cycle: str,
        use_mask: bool,
        rescale_mask: bool,
        detach_features: bool,
        generator_channels: int | None,
        discriminator_channels: int,
    ) -> None:
        super().__init__()
        channels = backbone.out_channels
        width = generator_channels or channels
        self.backbone = backbone
        self.bilateral = bilateral
        self.cycle = cycle
        self.use_mask = use_mask
        self.rescale_mask = rescale_mask
        self.detach_features = detach_features
        gan = bilateral == "gan"
        back = gan and cycle != "none"
        self.g_t2c = FeatureGenerator(channels, width) if gan else None
        self.g_c2t = FeatureGenerator(channels, width, in_channels=2 * channels) if back else None
        self.d_c = (
            init_weights(FeatureDiscriminator(channels, discriminator_channels), "normal", GAN_INIT_GAIN)
            if gan
            else None
        )
        self.d_t = (
            init_weights(FeatureDiscriminator(channels, discriminator_channels), "normal", GAN_INIT_GAIN)
            if back
            else None
        )
        two_maps = bilateral != "none"
        self.classifier = LinearCAMHead(2 * channels if two_maps else channels, hidden=channels if two_maps else None)

    def discriminators(self) -> list[nn.Module]:
        return [d for d in (self.d_c, self.d_t) if d is not None]

    def forward(self, target: Tensor, reference: Tensor) -> dict[str, Tensor]:
        """Features, logits [B], CAM [B,1,h,w] and, for ``gan``, f_H and the explanation |f_T − f_H| (channel max).

        With ``detach_features`` and gradients on, G_T2C runs on [f_T.detach(); f_T] (one call): the first copy of f_H
        feeds the GAN/cycle/RE losses (they train the generators, never the backbone), the second the classifier, so
        L_CLS trains the backbone through G_T2C as Eq. 4 does. Both copies have the same values.
        """
        if self.bilateral == "none":
            target_features = self.backbone(target)
            logits, cam = self.classifier(target_features)
            return {"logits": logits, "cam": cam, "target_features": target_features}
        target_features, reference_features = self.backbone(torch.cat([target, reference])).chunk(2)
        out = {"target_features": target_features, "reference_features": reference_features}
        if self.bilateral == "sbf":
            out["logits"], out["cam"] = self.classifier(torch.cat([target_features, reference_features], 1))
            return out
        if self.detach_features and torch.is_grad_enabled() and target_features.requires_grad:
            healthy_for_losses, healthy = self.g_t2c(torch.cat([target_features.detach(), target_features])).chunk(2)
        else:
            healthy_for_losses = healthy = self.g_t2c(target_features)
        residual = target_features - healthy
        out["logits"], out["cam"] = self.classifier(torch.cat([residual, target_features], 1))
        out["cf_features"] = healthy_for_losses
        out["explanation"] = residual.abs().amax(dim=1, keepdim=True)
        return out

    def loss_features(self, out: dict[str, Tensor] | object) -> tuple[Tensor, Tensor, Tensor]:
        """(f_T, f_C, f_H) as the GAN, cycle and RE losses see them."""
        target, reference = out.target_features, out.reference_features
        if self.detach_features:
            target, reference = target.detach(), reference.detach()
        return target, reference, out.cf_features

    def translations(
        self, target: Tensor, reference: Tensor, healthy: Tensor, with_preserved: bool
    ) -> dict[str, Tensor]:
        """f_P (Eq. 2) and the back translations of both cycles.

        ``target_cycle`` = G_C2T([f_H, f_P]) (≈ f_T, L^T_c); ``target_fake`` = G_C2T([f_C, f_P]) (D_T's fake);
        ``reference_cycle`` = G_T2C(G_C2T([f_C, f_P])) (≈ f_C, L^C_c, with ``cycle`` double).
        """
        out: dict[str, Tensor] = {}
        if self.g_c2t is None and not with_preserved:
            return out
        preserved = preserved_features(target, healthy, self.use_mask, self.rescale_mask)
        out["preserved"] = preserved
        if self.g_c2t is None:
            return out
        batch = target.shape[0]
        back = self.g_c2t(torch.cat([torch.cat([healthy, reference]), torch.cat([preserved, preserved])], 1))
        out["target_cycle"], out["target_fake"] = back.split(batch)
        if self.cycle == "double":
            out["reference_cycle"] = self.g_t2c(out["target_fake"])
        return out

    def preserved_logits(self, preserved: Tensor) -> Tensor:
        """p_m(f_P) of Eq. 3 as a logit: the classifier on (residual f_P, features f_P), its weights constant.

        f_P is the part of f_T that the residual-preserved module separated as the lesion, so it stands for both the
        residual and the features. The classifier's weights are constants and it runs in inference mode (batch norm
        with running statistics, not updated by the f_P batch): L_RE trains G_T2C to separate f_P, instead of
        teaching the classifier a shortcut from f_P to p_m(f_T).
        """
        inputs = torch.cat([preserved, preserved], dim=1)
        modes = [(module, module.training) for module in self.classifier.modules()]
        self.classifier.eval()
        try:
            constants = {name: p.detach() for name, p in self.classifier.named_parameters()}
            return functional_call(self.classifier, constants, (inputs,))[0]
        finally:
            for module, training in modes:
                module.training = training


def residual_embedding_loss(preserved_logits: Tensor, target_logits: Tensor) -> Tensor:
    """L_RE of Eq. 3 = BCE(p_m(f_P), target p_m(f_T)), per sample then averaged; the target is detached."""
    target = torch.sigmoid(target_logits.detach().float())
    return nn.functional.binary_cross_entropy_with_logits(preserved_logits.float(), target)
