"""Wu et al. (IEEE TMI 2020): the view-wise multi-view CNN on bilatcf's (target, reference) pairs."""

from __future__ import annotations

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.base import BilateralModule
from bilatcf.models.outputs import BilateralOutput
from bilatcf.models.wu.network import ViewWiseBranch, average_views, build_backbone, standardize
from bilatcf.registry import register_model

#: Views scored by the CC branch in four-view mode (the craniocaudal family); every other view goes to the MLO branch.
CRANIOCAUDAL_VIEWS = frozenset({"CC", "XCC", "XCCL", "XCCM"})
#: Stream of :meth:`sample_random` for the training input noise.
NOISE_STREAM = 0


@register_model("wu")
class Wu(BilateralModule):
    """View-wise multi-view CNN: shared backbone on target and reference → GAP → concat → FC 512 + ReLU → per-side
    logits; with ``four_view``, separate CC and MLO branches whose predictions are averaged.

    ``logits`` is the target's prediction; the reference's (the paper's other per-side output) is trained on
    ``ref_label`` where it is known and appears in training outputs only, as ``heads["reference"]``: a reference is
    scored as the target of its own pair whenever it carries the task's label, so evaluation reads the target head
    alone. ``cam`` is the Grad-CAM of the target's predicted class.

    Args:
        backbone: any timm model name, ``tv_alexnet``, or ``wu_resnet22`` (the paper's ResNet-22, built by this model).
        weights: local weights file for the backbone (no downloads); None trains from scratch (``wu_resnet22``: None).
        output_stride: backbone output stride (None: the backbone's own, 64 for ``wu_resnet22``).
        four_view: separate CC and MLO branches, each with its own backbone; a pair's prediction averages its own
            view's branch and, when the data carries the study's other views (``--data.four_view true``), the other
            branch on them.
        hidden: width of the FC layer after the concatenation.
        input_noise: standard deviation of the Gaussian noise added to the (standardised) images in training.
        standardize: standardise each image to zero mean and unit variance before the backbone.
        reference_weight: weight of the reference head's BCE on ``ref_label`` (0: the target head alone is trained).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clipping (None: off).
    """

    description = "View-wise multi-view CNN: shared backbone, concat pooled [target, reference], FC 512, per-side heads"
    paper = "Wu et al., IEEE TMI 2020 (baseline)"

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        output_stride: int | None = 16,
        four_view: bool = False,
        hidden: int = 512,
        input_noise: float = 0.01,
        standardize: bool = True,
        reference_weight: float = 1.0,
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        if hidden < 1:
            raise ConfigError(f"wu: model.hidden={hidden} must be >= 1 (the paper's FC layer has 512 units).")
        for name, value in (("input_noise", input_noise), ("reference_weight", reference_weight)):
            if value < 0:
                raise ConfigError(f"wu: model.{name}={value} must be >= 0 (0 turns it off).")
        self.save_hyperparameters()
        self.grad_clip = grad_clip
        names = ("cc", "mlo") if four_view else ("shared",)
        self.branches = nn.ModuleDict(
            {name: ViewWiseBranch(build_backbone(backbone, weights, output_stride), hidden) for name in names}
        )

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.hparams.four_view and not getattr(datamodule, "hparams", {}).get("four_view", True):
            rank_zero_warn(
                "wu: model.four_view is set but the data has no other views (--data.four_view false), so every pair "
                "is scored by its own view's branch alone, without the CC/MLO average; add --data.four_view true "
                "(configs/ablations/wu/four_view.yaml sets both)."
            )

    # ------------------------------------------------------------------ model
    def forward(
        self,
        target: Tensor,
        reference: Tensor,
        target_other: Tensor | None = None,
        reference_other: Tensor | None = None,
        craniocaudal: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> BilateralOutput:
        """Score pairs of one view each; ``target_other`` / ``reference_other`` are read in four-view mode only.

        Args:
            craniocaudal: [B] bool, the pair's view is CC (four-view mode: which branch is the pair's own).
            noise: [B, V, 1, H, W] N(0, 1) draws for the V images of each pair (target, reference, then the other
                views), scaled by ``input_noise`` and added after standardisation; None in evaluation.
        """
        if not self.hparams.four_view:
            target, reference = self._inputs([target, reference], noise)
            target_logit, reference_logit, features, cam = self.branches["shared"](target, reference)
            return self._output(target_logit, reference_logit, features, cam)
        if craniocaudal is None:
            raise ConfigError(
                "wu (four_view): forward needs each pair's view (craniocaudal [B] bool) to choose its branch; "
                "call forward_batch(batch), which reads it from the batch's meta."
            )
        return self._four_view(target, reference, target_other, reference_other, craniocaudal, noise)

    def _inputs(self, images: list[Tensor | None], noise: Tensor | None) -> list[Tensor | None]:
        """Standardised images (when asked), plus the training noise when ``noise`` is given."""
        prepared = []
        for index, image in enumerate(images):
            if image is not None:
                image = standardize(image) if self.hparams.standardize else image
                if noise is not None:
                    image = image + self.hparams.input_noise * noise[:, index].to(image.dtype)
            prepared.append(image)
        return prepared

    def _four_view(
        self,
        target: Tensor,
        reference: Tensor,
        target_other: Tensor | None,
        reference_other: Tensor | None,
        craniocaudal: Tensor,
        noise: Tensor | None,
    ) -> BilateralOutput:
        """Each branch scores the images of its view: a pair's own images in its own view's branch, and its other
        views (where the study has them: not all-zero, as the pipeline fills a missing view) in the other branch.
        The pair's prediction is the mean probability over the branches that scored it."""
        size = len(target)
        has_other = torch.zeros(size, dtype=torch.bool, device=target.device)
        if target_other is not None and reference_other is not None:
            has_other = (target_other.flatten(1).amax(1) > 0) & (reference_other.flatten(1).amax(1) > 0)
        target, reference, target_other, reference_other = self._inputs(
            [target, reference, target_other, reference_other], noise
        )
        target_logits, reference_logits, available, features, cam, idle = [], [], [], None, None, []
        for name, own in (("cc", craniocaudal), ("mlo", ~craniocaudal)):
            branch, scored = self.branches[name], own | has_other
            rows = scored.nonzero().squeeze(1)
            if rows.numel() == 0:
                idle.append(branch)
                target_logits.append(target.new_zeros(size))
                reference_logits.append(target.new_zeros(size))
                available.append(scored)
                continue
            own_rows = own[rows]
            side_target = _pick(own_rows, target[rows], target_other, rows)
            side_reference = _pick(own_rows, reference[rows], reference_other, rows)
            target_logit, reference_logit, branch_features, branch_cam = branch(side_target, side_reference)
            target_logits.append(_scatter(target_logit, rows, size))
            reference_logits.append(_scatter(reference_logit, rows, size))
            available.append(scored)
            # The maps and features are the target's own view's (the other view is another projection).
            mine = rows[own_rows]
            features = _scatter(branch_features[own_rows], mine, size, into=features)
            cam = _scatter(branch_cam[own_rows], mine, size, into=cam)
        # In float32 (the branches' logits are bf16 under bf16-mixed, an idle branch's placeholder is not).
        available = torch.stack(available)
        logits = average_views(torch.stack([v.float() for v in target_logits]), available) + _kept_in_graph(idle)
        reference = average_views(torch.stack([v.float() for v in reference_logits]), available)
        return self._output(logits, reference, features, cam)

    def _output(self, logits: Tensor, reference_logits: Tensor, features: Tensor, cam: Tensor) -> BilateralOutput:
        heads = {"reference": reference_logits} if self.training else {}
        return BilateralOutput(logits=logits, cam=cam[:, None], target_features=features, heads=heads)

    def forward_batch(self, batch: BilateralBatch, noise: Tensor | None = None) -> BilateralOutput:
        if not self.hparams.four_view:
            return self(batch.target, batch.reference, noise=noise)
        craniocaudal = torch.tensor(
            [meta["view"] in CRANIOCAUDAL_VIEWS for meta in batch.meta], dtype=torch.bool, device=batch.target.device
        )
        return self(batch.target, batch.reference, batch.target_other, batch.reference_other, craniocaudal, noise)

    # ------------------------------------------------------------------ training
    def input_noise_draws(self, batch: BilateralBatch) -> Tensor | None:
        """[B, V, 1, H, W] N(0, 1) draws keyed on (seed, iteration, pair), so DDP and resume see the same noise."""
        if not self.hparams.input_noise:
            return None
        views = 4 if self.hparams.four_view and batch.target_other is not None else 2
        return self.sample_random(batch, NOISE_STREAM).randn(views, *batch.target.shape[1:])

    def training_step(self, batch: BilateralBatch, batch_idx: int) -> Tensor:
        out = self.forward_batch(batch, noise=self.input_noise_draws(batch))
        losses = {"cls": self.classification_loss(out.logits, batch.label)}
        if self.hparams.reference_weight:
            reference_loss = self.classification_loss(out.heads["reference"], batch.ref_label)
            losses["reference_cls"] = self.hparams.reference_weight * reference_loss
        return self.log_losses(losses)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "model": torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        }


def _pick(own: Tensor, own_images: Tensor, other_images: Tensor | None, rows: Tensor) -> Tensor:
    """Per row: the pair's own image where ``own``, else its other view's image."""
    if other_images is None:
        return own_images
    return torch.where(own[:, None, None, None], own_images, other_images[rows])


def _scatter(values: Tensor, rows: Tensor, size: int, into: Tensor | None = None) -> Tensor:
    """``values`` placed at ``rows`` of a [size, ...] tensor (``into``, or zeros), out of place (autograd-safe)."""
    base = values.new_zeros(size, *values.shape[1:]) if into is None else into.to(values.dtype)
    return base.index_copy(0, rows, values)


def _kept_in_graph(branches: list[nn.Module]) -> Tensor | float:
    """0 × the parameters of branches that scored nothing in this batch: they get a zero gradient instead of none,
    so DDP (which expects a gradient for every parameter on every process) runs as for any classifier."""
    if not branches:
        return 0.0
    return 0.0 * sum(p.sum() for branch in branches for p in branch.parameters())
