"""The base LightningModule every method inherits (DESIGN §4).

It holds what all methods share and nothing else:

* one typed output (:class:`BilateralOutput`), filled by ``predict_step`` for validation, test, metrics, figures and
  ``bilatcf predict`` alike, with an operating threshold for scores that are not probabilities;
* the GAN step kit: optimizers by name (:meth:`build_optimizers`), one step helper (:meth:`step`: toggle → loss →
  NaN check → zero_grad → backward → clip → step → untoggle, and no optimizer stepped on a batch whose loss is not
  finite), a step counter per optimizer, n-critic schedules (:class:`~bilatcf.models.kit.NCritic`) and schedulers
  stepped per their ``interval``;
* training phases (:meth:`training_phases`), test-time optimisation (``test_time_optimization``), randomness keyed on
  (seed, step, global sample index) (:meth:`sample_random`) and per-rank state (history pools) in checkpoints;
* a hook that builds state from the training split before training (:meth:`build_training_state`);
* an own iteration counter (``self.iteration``, a buffer), because ``trainer.global_step`` advances once per
  ``optimizer.step()`` and so counts a GAN iteration two or three times.

DDP with several optimizers and separate backward passes needs ``find_unused_parameters=True``; the CLI sets it for
every model with manual optimisation, however the strategy is given, so no model has to care.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics.classification import BinaryAUROC

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError, TrainingDivergedError
from bilatcf.models.kit import NCritic, OptimizerSpec, Phase, SampleRandom, StepCounters
from bilatcf.models.outputs import BilateralOutput, ScoreKind
from bilatcf.nn.cam import normalize_map

LossValue = Tensor | Callable[[], Tensor]
#: The single phase of a method without stages: every optimizer, scores from the start.
SINGLE_PHASE = (Phase("train", epochs=None, optimizers=()),)


class BilateralModule(pl.LightningModule):
    """Shared evaluation, prediction and optimisation helpers for bilateral methods."""

    model_name: ClassVar[str] = "base"
    description: ClassVar[str] = ""  # one line for `bilatcf list`
    paper: ClassVar[str] = ""  # short citation for `bilatcf list` and the docs
    #: Registered but left out of `bilatcf list` (the template a new method starts from).
    hidden: ClassVar[bool] = False
    #: Which batch field is the training label (DisAsymNet-style models may use ``asym_label`` too).
    label_field: ClassVar[str] = "label"
    #: DataModule options the method needs (e.g. SFF: ``{"four_view": True}``); checked when training starts.
    data_options: ClassVar[dict[str, Any]] = {}
    #: Models that train on a unilateral toy preset (``vagan``, ``cxgan``) name it; the tests use that data for them.
    toy_preset: ClassVar[str | None] = None
    #: ``probability`` (logits through a sigmoid) or ``anomaly`` (raw scores; threshold chosen on validation).
    score_kind: ClassVar[ScoreKind] = "probability"
    #: Named extra heads (``BilateralOutput.heads``) and the batch label each is evaluated against.
    extra_heads: ClassVar[dict[str, str]] = {}
    #: The method optimises at evaluation (e.g. AnoGAN's latent search): evaluation runs with gradients enabled.
    test_time_optimization: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        # The operating threshold of anomaly scores (NaN until a validation epoch chooses it).
        self.register_buffer("operating_threshold", torch.tensor(0.5 if self.score_kind == "probability" else math.nan))
        self.steps = StepCounters()
        self.val_auc = BinaryAUROC()
        self.grad_clip: float | None = None
        self._val_scores: list[Tensor] = []
        self._val_labels: list[Tensor] = []
        self._undo: list[Any] = []  # snapshots of the optimizers stepped on the current batch

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        options = getattr(datamodule, "hparams", {})
        for key, value in self.data_options.items():
            if key in options and options[key] != value:
                raise ConfigError(
                    f"model '{self.model_name}' needs the data option {key}={value}: "
                    f"add --data.{key} {str(value).lower()} (or set it in the data YAML)."
                )
        if self.test_time_optimization and self._trainer is not None:
            # Lightning evaluates under torch.inference_mode by default, where no graph can be built; the loops read
            # this flag when they start, which is after setup.
            for loop in (self.trainer.validate_loop, self.trainer.test_loop, self.trainer.predict_loop):
                loop.inference_mode = False
            self.trainer.fit_loop.epoch_loop.val_loop.inference_mode = False
        if stage == "fit" and datamodule is not None:
            self.build_training_state(datamodule)

    def build_training_state(self, datamodule: pl.LightningDataModule) -> None:
        """Build state from the training split before training (e.g. a tumour bank, a set of normal images).

        Called once per ``fit``, after the DataModule is set up; read the data through its public API
        (``datamodule.training_images(lesion_free=...)``). The default builds nothing.
        """

    # ------------------------------------------------------------------ model API
    def forward_batch(self, batch: BilateralBatch) -> BilateralOutput:
        """Run the model on a batch. Four-view models override this to pass the extra views."""
        return self(batch.target, batch.reference)

    def extract_features(self, images: Tensor) -> Tensor:
        """Backbone features of images; feature-level counterfactual methods override it (used for GT fidelity)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ optimizers by name
    def build_optimizers(self) -> dict[str, OptimizerSpec | torch.optim.Optimizer]:
        """Every optimizer of the method by name (e.g. ``{"generator": ..., "discriminator": ...}``), in step order."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_optimizers()")

    def configure_optimizers(self) -> list[dict[str, Any]]:
        specs = {
            name: spec if isinstance(spec, OptimizerSpec) else OptimizerSpec(spec)
            for name, spec in self.build_optimizers().items()
        }
        self.optimizer_names = tuple(specs)
        configs = []
        for name, spec in specs.items():
            config: dict[str, Any] = {"optimizer": spec.optimizer}
            if spec.scheduler is not None:
                config["lr_scheduler"] = {"scheduler": spec.scheduler, "interval": spec.interval, "name": f"lr/{name}"}
            configs.append(config)
        return configs

    def optimizer(self, name: str) -> Any:
        """The (Lightning-wrapped) optimizer registered under ``name`` by :meth:`build_optimizers`."""
        names = getattr(self, "optimizer_names", ())
        if name not in names:
            raise ConfigError(f"{self.model_name}: no optimizer named {name!r}; it has {', '.join(names) or 'none'}.")
        optimizers = self.optimizers()
        return optimizers[names.index(name)] if isinstance(optimizers, list) else optimizers

    # ------------------------------------------------------------------ phases
    def training_phases(self) -> tuple[Phase, ...]:
        """The method's training stages, in order. One stage by default: every optimizer, scoring from the start."""
        return SINGLE_PHASE

    @property
    def phase(self) -> Phase:
        """The stage of the current epoch (derived from the epoch, so a resumed run continues in its stage)."""
        epoch, phases = self.current_epoch if self._trainer is not None else 0, self.training_phases()
        for phase in phases[:-1]:
            if epoch < phase.epochs:
                return phase
            epoch -= phase.epochs
        return phases[-1]

    def on_fit_start(self) -> None:
        phases = self.training_phases()
        fixed = sum(phase.epochs or 0 for phase in phases[:-1])
        max_epochs = self.trainer.max_epochs
        if len(phases) > 1 and max_epochs is not None and 0 <= max_epochs <= fixed:
            raise ConfigError(
                f"{self.model_name} trains in stages ({', '.join(f'{p.name}: {p.epochs}' for p in phases[:-1])} "
                f"epochs, then {phases[-1].name}), which needs --trainer.max_epochs > {fixed}; got {max_epochs}."
            )

    def on_train_epoch_start(self) -> None:
        frozen = set(self.phase.frozen)
        for name in {n for phase in self.training_phases() for n in phase.frozen}:
            module = self.get_submodule(name)
            module.requires_grad_(name not in frozen)
            module.train(name not in frozen)

    # ------------------------------------------------------------------ training helpers
    def classification_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """BCE on pairs with a known label (label -1 is ignored)."""
        known = labels >= 0
        if not known.any():
            return logits.sum() * 0.0
        return F.binary_cross_entropy_with_logits(logits[known], labels[known].float())

    def checked(self, name: str, value: Tensor) -> Tensor:
        """``value``, after checking that it is finite (every loss term passes here before any optimizer steps).

        A non-finite value undoes the steps already taken on this batch (``step(..., last=False)``), wherever it is
        checked: inside a later step or outside any step (e.g. a loss logged before its step is entered).
        """
        if not torch.isfinite(value.detach()).all():
            self._undo_batch()
            raise TrainingDivergedError(
                f"loss '{name}' became {value.detach().float().mean().item()} at iteration {int(self.iteration)} "
                f"(epoch {self.current_epoch}) of model '{self.model_name}'. Training stopped before any optimizer "
                "stepped on this batch, and no checkpoint was written for it. Lower the learning rate, enable "
                "gradient clipping (--model.grad_clip) or check the data."
            )
        return value

    def _undo_batch(self) -> None:
        """Restore the optimizers stepped on this batch (latest first) to their state before the batch."""
        for snapshot in reversed(self._undo):
            _restore(snapshot)
        self._undo = []

    def log_losses(self, losses: dict[str, Tensor], prefix: str = "train") -> Tensor:
        """Check and log every loss term; return their sum."""
        for name, value in losses.items():
            self.checked(name, value)
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

    def step(self, name: str, loss: LossValue, last: bool = True) -> Tensor:
        """One optimisation step of the optimizer ``name``: toggle → loss → check → backward → clip → step.

        Args:
            name: an optimizer name from :meth:`build_optimizers`; also the loss name in logs and the NaN message.
            loss: the loss tensor, or a zero-argument function computing it, evaluated *after* the toggle so that the
                parameters of the other networks take no part in its graph (cheaper, and cleaner under DDP).
            last: False when another step follows on the same batch. The optimizer's parameters and state are then
                kept until the batch ends, so that a later non-finite loss undoes this step too: no optimizer ever
                steps on a batch with a non-finite loss.
        """
        if self.phase.optimizers and name not in self.phase.optimizers:
            raise ConfigError(f"{self.model_name}: optimizer {name!r} does not train in phase {self.phase.name!r}.")
        optimizer = self.optimizer(name)
        self.toggle_optimizer(optimizer)
        try:
            value = self.checked(name, loss() if callable(loss) else loss)
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(value)
            if not last:
                self._undo.append(_snapshot(optimizer.optimizer))
            optimizer.step()  # clipping happens in on_before_optimizer_step, after AMP unscaling
        except TrainingDivergedError:
            self._undo_batch()
            raise
        finally:
            self.untoggle_optimizer(optimizer)
        if last:
            self._undo = []
        self.steps.increment(name)
        self._step_schedulers(optimizer.optimizer, "step")
        self.log(
            f"train/{name}", value.detach(), on_step=True, on_epoch=False, sync_dist=True, batch_size=self._batch_size
        )
        return value.detach()

    def generator_due(self, schedule: NCritic, critic: str = "critic", generator: str = "generator") -> bool:
        """Call once per batch, before its critic step: whether the generator steps on this batch too.

        True when this batch's critic step completes the ``schedule.critic_steps(...)`` critic steps due before the
        next generator step; the count lives in ``self.steps``, so it survives a resume. The usual batch::

            due = self.generator_due(self.n_critic)
            self.step("critic", critic_loss, last=not due)
            if due:
                self.step("generator", generator_loss)
        """
        mark = f"{critic}@{generator}"  # critic steps taken when the generator last stepped
        due = self.steps[critic] + 1 - self.steps[mark] >= schedule.critic_steps(self.steps[generator])
        if due:
            self.steps.counts[mark] = self.steps[critic] + 1
        return due

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Lightning calls this after unscaling AMP gradients, for automatic and manual optimisation alike.
        if self.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")

    def _step_schedulers(self, optimizer: torch.optim.Optimizer | None, interval: str) -> None:
        """Manual optimisation steps its schedulers itself: those of ``optimizer`` (all if None) with ``interval``."""
        if self.automatic_optimization or self._trainer is None:
            return
        for config in self.trainer.lr_scheduler_configs:
            if config.interval == interval and (optimizer is None or config.scheduler.optimizer is optimizer):
                config.scheduler.step()

    def sample_random(self, batch: BilateralBatch, stream: int = 0) -> SampleRandom:
        """Random draws for this batch keyed on (seed, iteration, global sample index, ``stream``).

        Use a different ``stream`` for each stochastic part of a step (gradient-penalty ε, pool draws, ...). The
        sample index is the pair's index in its dataset (``meta["index"]``), the same whichever process holds it.
        """
        indices = [meta.get("index") for meta in batch.meta]
        if any(index is None for index in indices):
            raise ConfigError(
                "this batch's meta has no 'index' (the pair's index in its dataset), which seeded per-sample "
                "randomness needs; batches from bilatcf's DataModules carry it."
            )
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return SampleRandom(seed, int(self.iteration), indices, stream, batch.target.device)

    def training_step(self, batch: BilateralBatch, batch_idx: int) -> Tensor | None:
        """Plain classifiers: BCE on the task label (automatic optimization). GAN methods override this."""
        out = self.forward_batch(batch)
        return self.log_losses({"loss": self.classification_loss(out.logits, getattr(batch, self.label_field))})

    def on_train_batch_start(self, batch: BilateralBatch, batch_idx: int) -> None:
        self._batch_size = len(batch)
        self._undo = []

    def on_train_batch_end(self, outputs: Any, batch: BilateralBatch, batch_idx: int) -> None:
        self._undo = []
        self.iteration += 1

    def on_train_epoch_end(self) -> None:
        self._step_schedulers(None, "epoch")

    # ------------------------------------------------------------------ evaluation (shared by every method)
    def predict_step(self, batch: BilateralBatch, batch_idx: int = 0, dataloader_idx: int = 0) -> BilateralOutput:
        """The model's output for a batch with everything evaluation reads: scores, predicted class, maps at image
        size, healthy-image features, and the batch itself."""
        # Test-time optimisation enables gradients where its search needs them; everything else runs without.
        with contextlib.nullcontext() if self.test_time_optimization else torch.no_grad():
            out = self.forward_batch(batch)
            size = tuple(batch.target.shape[-2:])
            score = self.task_score(out.logits)
            explanation = out.explanation
            if explanation is not None:
                explanation = explanation.detach().float()
                if explanation.shape[-2:] != size:
                    explanation = F.interpolate(explanation, size=size, mode="bilinear", align_corners=False)
            healthy = None
            if out.cf_features is not None and batch.has_healthy.any():
                healthy = self.extract_features(batch.healthy).detach().float()
        detached = {k: (v.detach().float() if v is not None else None) for k, v in _image_and_feature_fields(out)}
        return out.replace(
            logits=out.logits.detach().float(),
            cam=normalize_map(out.cam.detach().float(), size),
            explanation=explanation,
            heads={k: v.detach().float() for k, v in out.heads.items()},
            score=score,
            pred=(score >= self.operating_threshold).long(),
            head_scores={k: self.task_score(v) for k, v in out.heads.items()},
            healthy_features=healthy,
            batch=batch,
            **detached,
        )

    @property
    def final_evaluation(self) -> bool:
        """True in ``test`` and ``predict``, False in validation: methods that optimise at evaluation use a cheaper
        setting for validation (e.g. fewer latent-search steps)."""
        return self._trainer is not None and (self.trainer.testing or self.trainer.predicting)

    def task_score(self, logits: Tensor) -> Tensor:
        """The score the AUC reads: a probability (sigmoid of the logit), or the raw anomaly score."""
        logits = logits.detach().float()
        return torch.sigmoid(logits) if self.score_kind == "probability" else logits

    def validation_step(self, batch: BilateralBatch, batch_idx: int) -> BilateralOutput:
        result = self.predict_step(batch, batch_idx)
        labels = getattr(batch, self.label_field)
        known = labels >= 0
        if known.any():
            self.val_auc.update(result.score[known], labels[known])
            if self.score_kind == "anomaly":
                self._val_scores.append(result.score[known])
                self._val_labels.append(labels[known])
        return result

    def on_validation_epoch_end(self) -> None:
        # AUC needs both classes; an undefined AUC is logged as 0.5 (chance) so checkpoint selection still works.
        # Stages that produce no scores log -inf, so the best checkpoint is always one of a scoring stage.
        try:
            auc = torch.nan_to_num(self.val_auc.compute().float(), nan=0.5)
        except (ValueError, RuntimeError):
            auc = torch.tensor(0.5)
        if not self.phase.scores:
            auc = torch.tensor(-math.inf)
        self.log("val/auc", auc, prog_bar=True, sync_dist=True)
        self.val_auc.reset()
        if self.score_kind == "anomaly" and not self.trainer.sanity_checking:
            self._choose_threshold()
        self._val_scores, self._val_labels = [], []

    def _choose_threshold(self) -> None:
        """Operating threshold of anomaly scores: the validation score maximising Youden's J (sensitivity +
        specificity − 1), over all ranks."""
        if not self._val_scores:
            return
        scores = self.all_gather(torch.cat(self._val_scores)).flatten()
        labels = self.all_gather(torch.cat(self._val_labels)).flatten()
        if labels.min() == labels.max():
            return
        candidates = torch.unique(scores)
        predicted = scores[None, :] >= candidates[:, None]
        positive = labels[None, :] == 1
        sensitivity = (predicted & positive).sum(1) / positive.sum()
        specificity = (~predicted & ~positive).sum(1) / (~positive).sum()
        self.operating_threshold.fill_(float(candidates[torch.argmax(sensitivity + specificity)]))

    def test_step(self, batch: BilateralBatch, batch_idx: int) -> BilateralOutput:
        return self.predict_step(batch, batch_idx)

    def on_test_start(self) -> None:
        if self.score_kind == "anomaly" and torch.isnan(self.operating_threshold):
            rank_zero_warn(
                f"{self.model_name}: no operating threshold was chosen (no validation epoch ran), so accuracy, "
                "sensitivity and top-1 localization treat every pair as negative; AUC is unaffected."
            )

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The model's registry name and the data config: `bilatcf test --ckpt_path P` needs neither --model nor --data.
        from bilatcf.checkpoints import add_run_metadata

        add_run_metadata(self, checkpoint)
        # Per-rank state (history pools): every rank's copy, since only rank 0 writes the file.
        states = {name: _to_cpu(module.get_extra_state()) for name, module in self._per_rank_modules()}
        if states and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, states)
            checkpoint["bilatcf_rank_states"] = gathered

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Runs before the state dict is loaded: put this rank's per-rank state in its place. A run resumed on more
        # ranks than it was saved from gives the extra ranks copies (modulo the saved count).
        states = checkpoint.get("bilatcf_rank_states")
        if states:
            rank = self.global_rank if self._trainer is not None else 0
            for name, state in states[rank % len(states)].items():
                checkpoint["state_dict"][f"{name}._extra_state"] = state

    def _per_rank_modules(self) -> Iterable[tuple[str, torch.nn.Module]]:
        return ((name, m) for name, m in self.named_modules() if getattr(m, "per_rank_state", False))

    _batch_size: int = 1


def _image_and_feature_fields(out: BilateralOutput) -> list[tuple[str, Tensor | None]]:
    return [(k, getattr(out, k)) for k in ("counterfactual", "target_features", "reference_features", "cf_features")]


def _snapshot(optimizer: torch.optim.Optimizer) -> tuple[torch.optim.Optimizer, list[Tensor], list[Tensor], dict]:
    """Copies of an optimizer's parameters and state, to undo its step."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return optimizer, params, [p.detach().clone() for p in params], copy.deepcopy(optimizer.state_dict())


def _restore(snapshot: tuple[torch.optim.Optimizer, list[Tensor], list[Tensor], dict]) -> None:
    optimizer, params, values, state = snapshot
    with torch.no_grad():
        for param, value in zip(params, values, strict=True):
            param.copy_(value)
    optimizer.load_state_dict(state)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value
