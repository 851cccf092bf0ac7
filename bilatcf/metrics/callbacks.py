"""Lightning callbacks that evaluate a model and draw figures from the shared test/predict output dict (DESIGN §4).

Both are ordinary callbacks listed in the YAML under ``trainer.callbacks`` (visible in ``--print_config``), not
hidden in the base module, so users can drop them into their own trainers:

```yaml
trainer:
  callbacks:
    - class_path: bilatcf.metrics.callbacks.EvaluationCallback
      init_args: {num_bootstrap: 1000}
    - class_path: bilatcf.metrics.callbacks.FigureCallback
```
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.aggregation import SumMetric

from bilatcf.errors import ConfigError, DataError
from bilatcf.loggers import log_images
from bilatcf.metrics.classification import BootstrapAUROC, ClassificationRates
from bilatcf.metrics.counterfactual import (
    ExplanationNCC,
    FeatureFidelityRatio,
    FeatureFrechetDistance,
    MaskedImageComparison,
    lesion_positions,
)
from bilatcf.metrics.localization import (
    POINTING_TOLERANCE,
    MapAveragePrecision,
    PointingGame,
    SegmentationScores,
    ThresholdAccuracy,
    TopOneLocError,
    annotated,
    pointing_rule,
    threshold_rule,
)
from bilatcf.models.outputs import BilateralOutput, require_output
from bilatcf.viz import pair_panel, roc_figure

FID_PAIRS = ("target_reference", "cf_reference", "target_cf", "target_cf_outside")


class EvaluationSuite(torch.nn.Module):
    """Every bilatcf metric, fed with the model's output dicts; ``compute`` gives the metrics.json numbers (no prefix).

    Metrics whose inputs a model does not produce (no ``explanation``, no ``counterfactual``, no features, no true
    healthy image) stay empty and are left out of the result, as are undefined values (e.g. AUC with one class).
    ``compute`` runs every metric on every rank in the same order, so the DDP syncs inside torchmetrics always match.
    """

    def __init__(
        self,
        num_bootstrap: int = 1000,
        seed: int = 0,
        cam_threshold: float = 0.2,
        loc_iou: float = 0.1,
        seg_threshold: float = 0.5,
        pointing_tolerance: float = POINTING_TOLERANCE,
    ) -> None:
        super().__init__()
        self.num_pairs = SumMetric()
        self._auc_args = {"num_bootstrap": num_bootstrap, "seed": seed}
        self.auc = BootstrapAUROC(**self._auc_args)
        self.rates = ClassificationRates()
        self.loc = TopOneLocError(iou_threshold=loc_iou, cam_threshold=cam_threshold)
        self.pointing = PointingGame(tolerance=pointing_tolerance)
        self.seg = SegmentationScores(threshold=seg_threshold)
        self.seg_ap = MapAveragePrecision()
        self.tloc = ThresholdAccuracy(threshold=seg_threshold)
        self.expl = SegmentationScores(threshold=seg_threshold)
        self.expl_ap = MapAveragePrecision()
        self.expl_loc = TopOneLocError(iou_threshold=loc_iou, cam_threshold=cam_threshold)
        self.expl_pointing = PointingGame(tolerance=pointing_tolerance)
        self.ncc = ExplanationNCC()
        self.nonres = MaskedImageComparison()
        self.fidelity = MaskedImageComparison()
        self.input_fidelity = MaskedImageComparison()
        self.fid = torch.nn.ModuleDict({name: FeatureFrechetDistance() for name in FID_PAIRS})
        self.feature_fidelity = FeatureFidelityRatio()
        self.configure("label", {})

    def configure(self, label_field: str, heads: Mapping[str, str]) -> None:
        """Read the task label from the batch field ``label_field``, and evaluate one AUC (with bootstrap CI) per
        extra head of the model, ``heads`` mapping each head name to its batch label field."""
        self.label_field = label_field
        self.head_labels = dict(heads)
        self.head_auc = torch.nn.ModuleDict({name: BootstrapAUROC(**self._auc_args) for name in heads})

    def update(self, output: BilateralOutput) -> None:
        """Add one batch of a model's evaluated output (``BilateralModule.predict_step``)."""
        output = require_output(output, "the evaluated step")
        batch = output.batch
        if output.score is None or batch is None:
            raise ConfigError(
                "the evaluation got a BilateralOutput without score/batch: validation_step and test_step must "
                "return BilateralModule.predict_step(batch), which fills them."
            )
        label = getattr(batch, self.label_field)
        mask, has_mask, cam = batch.target_mask, batch.has_mask.bool(), output.cam
        boxes = [meta.get("boxes", []) for meta in batch.meta]
        self.num_pairs.update(torch.tensor(float(len(output)), device=cam.device))
        self.auc.update(output.score, label)
        self.rates.update(output.pred, label)
        self.loc.update(cam, output.pred, label, boxes)
        self.pointing.update(cam, label, mask, has_mask, boxes)
        self.seg.update(cam, mask, has_mask)
        self.seg_ap.update(cam, mask, has_mask)
        self.tloc.update(cam, mask, has_mask)
        for name, field in self.head_labels.items():
            self.head_auc[name].update(output.head_scores[name], getattr(batch, field))
        if output.explanation is not None:
            magnitude = output.explanation.abs()
            self.expl.update(magnitude, mask, has_mask)
            self.expl_ap.update(magnitude, mask, has_mask)
            self.expl_loc.update(magnitude, output.pred, label, boxes)
            self.expl_pointing.update(magnitude, label, mask, has_mask, boxes)
            self.ncc.update(output.explanation, mask, has_mask)
        if output.counterfactual is not None:
            # Non-resemblance and masked SSIM are defined on images with a lesion (CX-GAN §4.3–4.4).
            self.nonres.update(batch.target, output.counterfactual, mask, annotated(mask, has_mask))
            with_healthy = has_mask & batch.has_healthy.bool()
            self.fidelity.update(output.counterfactual, batch.healthy, mask, with_healthy)
            # The same comparison for the input itself: the error of a counterfactual that changes nothing.
            self.input_fidelity.update(batch.target, batch.healthy, mask, with_healthy)
        if output.target_features is not None:
            self._update_features(output, mask, has_mask)

    def _update_features(self, output: BilateralOutput, mask: Tensor, has_mask: Tensor) -> None:
        target, reference, cf = output.target_features, output.reference_features, output.cf_features
        if reference is not None:
            self.fid["target_reference"].update(target, reference)
        if cf is None:
            return
        if reference is not None:
            self.fid["cf_reference"].update(cf, reference)
        self.fid["target_cf"].update(target, cf)
        lesion = lesion_positions(mask, tuple(target.shape[-2:]))
        self.fid["target_cf_outside"].update(target, cf, keep=~lesion & has_mask[:, None, None, None])
        self.feature_fidelity.update(target, cf, lesion, has_mask, output.healthy_features, output.batch.has_healthy)

    def compute(self) -> dict[str, float]:
        """All defined metrics as floats; key ``num_pairs`` is always present."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            values: dict[str, Tensor] = {
                "num_pairs": self.num_pairs.compute(),
                **self.auc.compute(),
                **self.rates.compute(),
                "loc_error": self.loc.compute(),
                "pointing": self.pointing.compute(),
            }
            values.update(_prefixed("seg_", self.seg.compute()))
            values["seg_ap"] = self.seg_ap.compute()
            values.update(self.tloc.compute())
            expl = self.expl.compute()
            values.update(expl_iou=expl["iou"], expl_dice=expl["dice"], expl_loc_error=self.expl_loc.compute())
            values["expl_pointing"] = self.expl_pointing.compute()
            values["expl_ap"] = self.expl_ap.compute()
            values.update(_prefixed("expl_", self.ncc.compute()))
            nonres = self.nonres.compute()
            values.update(
                nonres_dissimilarity_in=nonres["mae_in"],
                nonres_dissimilarity_out=nonres["mae_out"],
                masked_ssim=nonres["ssim_out"],
            )
            for name, metric in self.head_auc.items():
                values.update(_prefixed(f"{name}_", metric.compute()))
            values.update({f"cf_fid_{name}": metric.compute() for name, metric in self.fid.items()})
            values.update(_prefixed("cf_fidelity_", self.fidelity.compute()))
            values["cf_fidelity_input_mae_in"] = self.input_fidelity.compute()["mae_in"]
            values.update(_prefixed("cf_fidelity_", self.feature_fidelity.compute()))
        results = {name: float(value) for name, value in values.items()}
        return {name: value for name, value in results.items() if math.isfinite(value)}

    def scored_pairs(self) -> tuple[Tensor, Tensor]:
        """The task scores and labels of every pair with a known label, over all ranks (for the ROC curve).

        Under DDP this gathers from every rank, so every rank must call it, in the same order as :meth:`compute`.
        """
        with self.auc.sync_context():
            scores, labels = (_cat(getattr(self.auc, name)) for name in ("preds", "labels"))
        return scores.float().cpu(), labels.long().cpu()

    def reset(self) -> None:
        for metric in self.modules():
            if metric is not self and hasattr(metric, "reset"):
                metric.reset()


def _cat(values: Tensor | list[Tensor]) -> Tensor:
    """A metric's list state (a tensor once synchronised) as one tensor."""
    if isinstance(values, Tensor):
        return values.flatten()
    return torch.cat([v.flatten() for v in values]) if values else torch.zeros(0)


def _prefixed(prefix: str, values: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {prefix + name: value for name, value in values.items()}


def _log_dir(trainer: pl.Trainer) -> Path:
    """The run folder. ``trainer.log_dir`` broadcasts from rank 0, so every rank must call this (never inside a
    rank-0 branch, or DDP deadlocks)."""
    return Path(trainer.log_dir or trainer.default_root_dir)


def _describe_data(trainer: pl.Trainer) -> str:
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None:
        return "dataloaders"
    # The bilatcf datamodules name their source in `source_name` ("synthetic", "manifest", "toy:vagan").
    source = getattr(datamodule, "source_name", None) or getattr(datamodule, "source", None)
    return type(datamodule).__name__ + (f"({source})" if isinstance(source, str) else "")


class EvaluationCallback(pl.Callback):
    """Full evaluation at the end of testing: logs ``test/*`` scalars and writes ``metrics.json`` and the ROC curve of
    the test pairs (``roc.png``) in the run folder.

    Metric definitions and the metrics.json keys are documented in ``docs/metrics.md``. The file also records the
    model, the data, the global seed, the number of test pairs, the binarisation rules and, when the same callback saw
    training, ``train_seconds`` (wall time from train start to train end, validation included) and
    ``pairs_per_second`` (training pairs over all ranks / train_seconds). The written dict is kept in ``self.results``.

    Args:
        num_bootstrap: bootstrap resamples for the AUC confidence interval.
        seed: seed of the bootstrap generator.
        cam_threshold: CAM fraction of its maximum kept for the top-1 localization box.
        loc_iou: IoU a CAM box needs with a GT box to count as a correct localization.
        seg_threshold: threshold on min–max normalised CAM / |explanation| maps for IoU, IoR, Dice, TIoU, TIoR.
        pointing_tolerance: pointing-game tolerance around the GT lesion, as a fraction of the image height.
        filename: name of the metrics file in the run folder.
        roc_filename: name of the ROC curve PNG of the test pairs written next to it (:func:`bilatcf.viz.roc_figure`;
            skipped when the known labels hold one class only); None: no ROC file.
        eval_val: also run the full suite at the end of every validation epoch (logged as ``val/*``, kept in
            ``self.val_results``; no file). Costs a bootstrap per epoch.
    """

    def __init__(
        self,
        num_bootstrap: int = 1000,
        seed: int = 0,
        cam_threshold: float = 0.2,
        loc_iou: float = 0.1,
        seg_threshold: float = 0.5,
        pointing_tolerance: float = POINTING_TOLERANCE,
        filename: str = "metrics.json",
        eval_val: bool = False,
        roc_filename: str | None = "roc.png",
    ) -> None:
        super().__init__()
        self.filename = filename
        self.roc_filename = roc_filename
        self.eval_val = eval_val
        self.seg_threshold = seg_threshold
        self.pointing_tolerance = pointing_tolerance
        suite_args = {
            "num_bootstrap": num_bootstrap,
            "seed": seed,
            "cam_threshold": cam_threshold,
            "loc_iou": loc_iou,
            "seg_threshold": seg_threshold,
            "pointing_tolerance": pointing_tolerance,
        }
        self._test_suite = EvaluationSuite(**suite_args)
        self._val_suite = EvaluationSuite(**suite_args) if eval_val else None
        self.results: dict[str, Any] = {}
        self.val_results: dict[str, float] = {}
        self.train_seconds: float | None = None
        self._train_pairs = 0
        self._train_start: float | None = None

    # ------------------------------------------------------------------ lifecycle
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "test":
            self.results = {}
        for suite in (self._test_suite, self._val_suite):
            if suite is not None:
                suite.configure(getattr(pl_module, "label_field", "label"), getattr(pl_module, "extra_heads", {}))
                suite.to(pl_module.device)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._train_pairs = 0
        self._train_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._train_pairs += len(batch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._train_start is not None:
            self.train_seconds = time.perf_counter() - self._train_start

    # ------------------------------------------------------------------ validation (opt-in)
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._val_suite is not None:
            self._val_suite.reset()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._val_suite is not None and not trainer.sanity_checking:
            self._val_suite.update(require_output(outputs, "validation_step"))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._val_suite is None or trainer.sanity_checking:
            return
        results = self._val_suite.compute()
        if results["num_pairs"] > 0:
            self.val_results = results
            _log(pl_module, "val", results)

    # ------------------------------------------------------------------ test
    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._test_suite.reset()
        self.results = {}

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._test_suite.update(require_output(outputs, "test_step"))

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        results = self._test_suite.compute()
        if results["num_pairs"] == 0:
            raise DataError(_EMPTY_TEST)
        _log(pl_module, "test", results)
        self.results = self._record(trainer, pl_module, results)
        scores, labels = self._test_suite.scored_pairs() if self.roc_filename else (None, None)  # every rank
        path = _log_dir(trainer) / self.filename
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.results, indent=2) + "\n")
            if labels is not None and labels.unique().numel() == 2:
                roc_figure(scores, labels, path.parent / self.roc_filename)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Lightning skips the whole test loop (no test hook runs) when the test loader is empty; teardown still runs
        # (and only when no other error is being raised).
        if stage == "test" and not self.results:
            raise DataError(_EMPTY_TEST)

    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule, results: dict[str, float]) -> dict[str, Any]:
        seed = os.environ.get("PL_GLOBAL_SEED")
        record: dict[str, Any] = {
            "model": getattr(pl_module, "model_name", None) or type(pl_module).__name__,
            "data": _describe_data(trainer),
            "seed": int(seed) if seed is not None else None,
            "num_test_pairs": int(results.pop("num_pairs")),
        }
        if self.train_seconds is not None:
            record["train_seconds"] = self.train_seconds
            record["pairs_per_second"] = self._train_pairs * trainer.world_size / self.train_seconds
        threshold = getattr(pl_module, "operating_threshold", None)
        if threshold is not None:
            record["operating_threshold"] = float(threshold) if math.isfinite(float(threshold)) else None
        record["expl_threshold_rule"] = threshold_rule(self.seg_threshold, absolute=True)
        record["seg_threshold_rule"] = threshold_rule(self.seg_threshold)
        record["pointing_rule"] = pointing_rule(self.pointing_tolerance)
        record.update({f"test/{name}": value for name, value in results.items()})
        return record


_EMPTY_TEST = (
    "the test split is empty: no pair reached the EvaluationCallback. Check the data's split column "
    "(or --data.fold / split fractions) so that some patients fall in 'test', or run `bilatcf data check`."
)


def _log(pl_module: pl.LightningModule, prefix: str, results: dict[str, float]) -> None:
    # torchmetrics has already synchronised the values, so they are the same on every rank. Syncing them again with
    # max keeps them exact (a mean over ranks may round) and tells Lightning they are synchronised (it warns otherwise).
    for name, value in results.items():
        if name != "num_pairs":
            pl_module.log(f"{prefix}/{name}", value, sync_dist=True, reduce_fx="max")


class FigureCallback(pl.Callback):
    """PNG panels of a few pairs (:func:`bilatcf.viz.pair_panel`), one file per pair, at test and during training.

    * Test: the first ``num_pairs`` test pairs, into ``<run dir>/<dirname>/pair_NNN.png``.
    * Validation: every ``val_every_n_epochs`` epochs, the first ``val_num_pairs`` validation pairs (the same pairs
      every epoch, so the panels show how the model's maps change as it trains), into
      ``<run dir>/<dirname>/val/epoch_NNN/pair_NNN.png``.

    Each panel shows the target with its GT outline, label and score, the (mirrored) reference, the counterfactual or
    the feature residual, the explanation and the CAM over the target. The panels are drawn from the outputs the
    validation and test steps return anyway (no extra forward pass), on rank 0 only (from its share of the pairs
    under DDP), and sent to the trainer's TensorBoard / Weights & Biases logger (:func:`bilatcf.loggers.log_images`;
    keys ``val/pairs`` and ``test/pairs``) as well as written.

    Args:
        num_pairs: test pairs drawn.
        dirname: folder in the run directory receiving the panels.
        val_every_n_epochs: draw validation panels every this many epochs (0: never).
        val_num_pairs: validation pairs drawn per epoch (0: none).
    """

    def __init__(
        self, num_pairs: int = 8, dirname: str = "figures", val_every_n_epochs: int = 1, val_num_pairs: int = 4
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_pairs", num_pairs),
            ("val_every_n_epochs", val_every_n_epochs),
            ("val_num_pairs", val_num_pairs),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"FigureCallback {name} = {value!r} is not valid: give an integer >= 0 (0 draws none), e.g. "
                    f"--trainer.callbacks.init_args.{name} 4 or in the callback's init_args in the --config file."
                )
        self.num_pairs = num_pairs
        self.dirname = dirname
        self.val_every_n_epochs = val_every_n_epochs
        self.val_num_pairs = val_num_pairs
        self.paths: list[Path] = []
        self.val_paths: dict[int, list[Path]] = {}
        self._samples: list[dict[str, Any]] = []
        self._val_samples: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ validation
    def _val_due(self, trainer: pl.Trainer) -> bool:
        return (
            not trainer.sanity_checking
            and self.val_every_n_epochs > 0
            and self.val_num_pairs > 0
            and trainer.current_epoch % self.val_every_n_epochs == 0
        )

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_samples = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.is_global_zero and self._val_due(trainer):
            self._collect(self._val_samples, self.val_num_pairs, outputs, "validation_step", pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._val_due(trainer):
            return
        epoch = trainer.current_epoch
        directory = _log_dir(trainer) / self.dirname / "val" / f"epoch_{epoch:03d}"
        if trainer.is_global_zero and self._val_samples:
            self.val_paths[epoch] = self._write(self._val_samples, directory, pl_module)
            log_images(trainer, "val/pairs", self.val_paths[epoch], step=trainer.global_step)
        self._val_samples = []

    # ------------------------------------------------------------------ test
    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._samples = []
        self.paths = []

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.is_global_zero:
            self._collect(self._samples, self.num_pairs, outputs, "test_step", pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        directory = _log_dir(trainer) / self.dirname
        if trainer.is_global_zero and self._samples:
            self.paths = self._write(self._samples, directory, pl_module)
            log_images(trainer, "test/pairs", self.paths, step=trainer.global_step)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _collect(
        samples: list[dict[str, Any]], limit: int, outputs: Any, where: str, pl_module: pl.LightningModule
    ) -> None:
        if len(samples) >= limit:
            return
        output = require_output(outputs, where)
        label_field = getattr(pl_module, "label_field", "label")
        for row in range(min(limit - len(samples), len(output))):
            samples.append(figure_sample(output, row, label_field))

    @staticmethod
    def _write(samples: list[dict[str, Any]], directory: Path, pl_module: pl.LightningModule) -> list[Path]:
        name = score_name(pl_module)
        return [pair_panel(sample, directory / f"pair_{i:03d}.png", name) for i, sample in enumerate(samples)]


def score_name(pl_module: Any) -> str:
    """How figures name a model's task score: ``p`` for a probability, ``score`` for an anomaly score."""
    return "p" if getattr(pl_module, "score_kind", "probability") == "probability" else "score"


def figure_sample(output: BilateralOutput, row: int, label_field: str = "label") -> dict[str, Any]:
    """One pair of an evaluated output as the sample dict :func:`bilatcf.viz.pair_panel` draws (leading dimension 1,
    on the CPU). Feature-level methods (features and counterfactual features, no counterfactual image) get a
    ``feature_residual``: |H_T - H_C| (the L2 norm over channels), upsampled bilinearly to the image size."""
    batch = output.batch
    tensors = {
        "target": batch.target,
        "reference": batch.reference,
        "target_mask": batch.target_mask,
        "has_mask": batch.has_mask,
        "label": getattr(batch, label_field),
        "counterfactual": output.counterfactual,
        "explanation": output.explanation,
        "cam": output.cam,
        "prob": output.score,
    }
    sample: dict[str, Any] = {k: v[row : row + 1].detach().cpu() for k, v in tensors.items() if v is not None}
    if output.counterfactual is not None and batch.has_healthy is not None and bool(batch.has_healthy[row]):
        sample["healthy"] = batch.healthy[row : row + 1].detach().cpu()  # the true counterfactual (synthetic data)
    features, cf_features = output.target_features, output.cf_features
    if output.counterfactual is None and features is not None and cf_features is not None:
        if features.dim() == 4 and features.shape == cf_features.shape:
            residual = (features[row : row + 1] - cf_features[row : row + 1]).detach().float().norm(dim=1, keepdim=True)
            size = tuple(batch.target.shape[-2:])
            sample["feature_residual"] = F.interpolate(residual, size=size, mode="bilinear", align_corners=False).cpu()
    sample["boxes"] = [batch.meta[row].get("boxes", [])]
    sample["meta"] = batch.meta[row : row + 1]
    return sample
