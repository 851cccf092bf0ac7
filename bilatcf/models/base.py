"""The base LightningModule every method inherits (DESIGN §4).

It holds what all methods share and nothing else:

* one ``predict_step`` output dict feeding validation, test, metrics, figures and ``bilatcf predict`` alike;
* the manual-optimization idiom for GAN methods (:meth:`optimizer_step_`), with gradient clipping and a NaN/Inf guard;
* an own iteration counter (``self.iteration``, a buffer saved in checkpoints), because ``trainer.global_step`` advances
  once per ``optimizer.step()`` and so counts a GAN iteration two or three times;
* DDP with several optimizers and separate backward passes: :func:`ddp_strategy` (``find_unused_parameters=True``) is
  what the CLI uses for ``--trainer.strategy ddp``, so no model has to care.

A method implements ``forward(target, reference) -> dict`` (at least ``logits`` [B] and ``cam`` [B,1,h,w]) and, if it is
not a plain classifier, its own ``training_step`` and ``configure_optimizers``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import BinaryAUROC

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError, TrainingDivergedError
from bilatcf.nn.cam import normalize_map

LossValue = Tensor | Callable[[], Tensor]


class BilateralModule(pl.LightningModule):
    """Shared evaluation, prediction and optimisation helpers for bilateral methods."""

    model_name: ClassVar[str] = "base"
    description: ClassVar[str] = ""  # one line for `bilatcf list`
    paper: ClassVar[str] = ""  # short citation for `bilatcf list` and the docs
    #: Which batch field is the training label (DisAsymNet-style models may use ``asym_label`` too).
    label_field: ClassVar[str] = "label"
    #: DataModule options the method needs (e.g. SFF: ``{"four_view": True}``); checked when training starts.
    data_options: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.val_auc = BinaryAUROC()
        self.grad_clip: float | None = None

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        options = getattr(datamodule, "hparams", {})
        for key, value in self.data_options.items():
            if key in options and options[key] != value:
                raise ConfigError(
                    f"model '{self.model_name}' needs the data option {key}={value}: "
                    f"add --data.{key} {str(value).lower()} (or set it in the data YAML)."
                )

    # ------------------------------------------------------------------ model API
    def forward_batch(self, batch: BilateralBatch) -> dict[str, Tensor]:
        """Run the model on a batch. Four-view models override this to pass the extra views."""
        return self(batch.target, batch.reference)

    def extract_features(self, images: Tensor) -> Tensor:
        """Backbone features of images; feature-level counterfactual methods override it (used for GT fidelity)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training helpers
    def classification_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """BCE on pairs with a known label (label -1 is ignored)."""
        known = labels >= 0
        if not known.any():
            return logits.sum() * 0.0
        return F.binary_cross_entropy_with_logits(logits[known], labels[known].float())

    def check_finite(self, name: str, value: Tensor) -> None:
        """Stop training with a clear message when a loss is NaN/Inf (before a garbage checkpoint exists)."""
        if not torch.isfinite(value.detach()).all():
            raise TrainingDivergedError(
                f"loss '{name}' became {value.detach().float().mean().item()} at iteration {int(self.iteration)} "
                f"(epoch {self.current_epoch}) of model '{self.model_name}'. Training stopped; no checkpoint was "
                "written for this step. Lower the learning rate, enable gradient clipping (--model.grad_clip) or "
                "check the data."
            )

    def log_losses(self, losses: dict[str, Tensor], prefix: str = "train") -> Tensor:
        """Check and log every loss term; return their sum."""
        for name, value in losses.items():
            self.check_finite(name, value)
            self.log(
                f"{prefix}/{name}",
                value.detach(),
                on_step=True,
                on_epoch=False,
                prog_bar=name == "loss",
                sync_dist=True,
                batch_size=self._batch_size,
            )
        return sum(losses.values())

    def optimizer_step_(self, optimizer: Any, loss: LossValue, name: str) -> Tensor:
        """One manual optimisation step: toggle → zero_grad → backward → clip → step → untoggle.

        Args:
            optimizer: one of ``self.optimizers()``.
            loss: the loss tensor, or a zero-argument function computing it. A function is evaluated *after* the
                toggle, so parameters of the other networks do not take part in the graph (cheaper, and cleaner under
                DDP).
            name: the loss name for logs and the NaN guard.
        """
        self.toggle_optimizer(optimizer)
        try:
            value = loss() if callable(loss) else loss
            self.check_finite(name, value)
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(value)
            if self.grad_clip:
                self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
            optimizer.step()
        finally:
            self.untoggle_optimizer(optimizer)
        self.log(
            f"train/{name}", value.detach(), on_step=True, on_epoch=False, sync_dist=True, batch_size=self._batch_size
        )
        return value.detach()

    def step_schedulers(self) -> None:
        """Step every LR scheduler once (manual optimization does not step them)."""
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    def training_step(self, batch: BilateralBatch, batch_idx: int) -> Tensor | None:
        """Plain classifiers: BCE on the task label (automatic optimization). GAN methods override this."""
        out = self.forward_batch(batch)
        return self.log_losses({"loss": self.classification_loss(out["logits"], getattr(batch, self.label_field))})

    def on_train_batch_start(self, batch: BilateralBatch, batch_idx: int) -> None:
        self._batch_size = len(batch)

    def on_train_batch_end(self, outputs: Any, batch: BilateralBatch, batch_idx: int) -> None:
        self.iteration += 1

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:
            self.step_schedulers()

    # ------------------------------------------------------------------ evaluation (shared by every method)
    @torch.no_grad()
    def predict_step(self, batch: BilateralBatch, batch_idx: int = 0, dataloader_idx: int = 0) -> dict[str, Any]:
        """The one output dict of DESIGN §4 used by metrics, figures and `bilatcf predict`."""
        out = self.forward_batch(batch)
        size = tuple(batch.target.shape[-2:])
        prob = torch.sigmoid(out["logits"].float())
        result: dict[str, Any] = {
            "prob": prob,
            "pred": (prob >= 0.5).long(),
            "label": getattr(batch, self.label_field),
            "cam": normalize_map(out["cam"].float(), size),
            "target": batch.target,
            "reference": batch.reference,
            "target_mask": batch.target_mask,
            "has_mask": batch.has_mask,
            "healthy": batch.healthy,
            "has_healthy": batch.has_healthy,
            "boxes": [m.get("boxes", []) for m in batch.meta],
            "meta": batch.meta,
        }
        for key in ("counterfactual", "explanation", "target_features", "reference_features", "cf_features"):
            if key in out:
                result[key] = out[key].float()
        if "explanation" in result and result["explanation"].shape[-2:] != size:
            result["explanation"] = F.interpolate(
                result["explanation"], size=size, mode="bilinear", align_corners=False
            )
        if "cf_features" in out and batch.has_healthy.any():
            result["healthy_features"] = self.extract_features(batch.healthy).float()
        return result

    def validation_step(self, batch: BilateralBatch, batch_idx: int) -> dict[str, Any]:
        result = self.predict_step(batch, batch_idx)
        known = result["label"] >= 0
        if known.any():
            self.val_auc.update(result["prob"][known], result["label"][known])
        return result

    def on_validation_epoch_end(self) -> None:
        # AUC needs both classes; an undefined AUC is logged as 0.5 (chance) so checkpoint selection still works.
        try:
            auc = self.val_auc.compute()
        except (ValueError, RuntimeError):
            auc = torch.tensor(0.5)
        self.log("val/auc", torch.nan_to_num(auc.float(), nan=0.5), prog_bar=True, sync_dist=True)
        self.val_auc.reset()

    def test_step(self, batch: BilateralBatch, batch_idx: int) -> dict[str, Any]:
        return self.predict_step(batch, batch_idx)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The model's registry name and the data config: `bilatcf test --ckpt_path P` needs neither --model nor --data.
        from bilatcf.checkpoints import add_run_metadata

        add_run_metadata(self, checkpoint)

    _batch_size: int = 1
