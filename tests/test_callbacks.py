"""EvaluationCallback / FigureCallback driven by a real Trainer and a tiny fake model with hand-computable outputs.

Eight 16×16 pairs: background 0.3, a 4×4 lesion of 0.9 at rows/cols 4:8 in pairs 0, 1, 2, 6. The fake model's
counterfactual is the true healthy image, its explanation |target − counterfactual|, its CAM the GT mask except in
pair 6 (a 4×8 box over the lesion), and its features (avg-pool of x and x², C = 2) make every feature metric
hand-computable.
"""

import json
import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError, DataError
from bilatcf.metrics import EvaluationCallback, EvaluationSuite, FigureCallback
from bilatcf.metrics.callbacks import figure_sample
from bilatcf.models.outputs import BilateralOutput

PROBS = [0.9, 0.8, 0.3, 0.4, 0.2, 0.1, 0.7, 0.6]
LABELS = [1, 1, 1, 0, 0, 0, 1, 0]
LESIONS = (0, 1, 2, 6)
SIZE = 16


def _sample(index: int) -> dict:
    healthy = torch.full((1, SIZE, SIZE), 0.3)
    target, mask = healthy.clone(), torch.zeros(1, SIZE, SIZE)
    boxes = []
    if index in LESIONS:
        target[:, 4:8, 4:8] = 0.9
        mask[:, 4:8, 4:8] = 1.0
        boxes = [[4.0, 4.0, 8.0, 8.0]]
    return {
        "target": target,
        "reference": healthy.clone(),
        "target_mask": mask,
        "healthy": healthy,
        "label": LABELS[index],
        "ref_label": 0,
        "asym_label": LABELS[index],
        "has_mask": True,
        "has_healthy": True,
        "meta": {"index": index, "boxes": boxes},
    }


class TinyData(pl.LightningDataModule):
    source = "synthetic"

    def __init__(self, num_test: int = 8) -> None:
        super().__init__()
        self.num_test = num_test

    def _loader(self, count: int) -> DataLoader:
        return DataLoader([_sample(i) for i in range(count)], batch_size=4, collate_fn=BilateralBatch.collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader(8)

    def val_dataloader(self) -> DataLoader:
        return self._loader(8)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.num_test)


def _features(images: torch.Tensor) -> torch.Tensor:
    return torch.cat([F.avg_pool2d(images, 4), F.avg_pool2d(images.square(), 4)], dim=1)


class FakeModel(pl.LightningModule):
    model_name = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: BilateralBatch, batch_idx: int) -> torch.Tensor:
        return (self.weight - 1).square().sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def predict_step(self, batch: BilateralBatch, batch_idx: int = 0) -> BilateralOutput:
        index = [m["index"] for m in batch.meta]
        prob = torch.tensor([PROBS[i] for i in index])
        cam = batch.target_mask.clone()
        for row, i in enumerate(index):
            if i == 6:
                cam[row] = 0.0
                cam[row, :, 4:8, 4:12] = 1.0
        return BilateralOutput(
            logits=torch.logit(prob),
            cam=cam,
            score=prob,
            pred=(prob >= 0.5).long(),
            batch=batch,
            counterfactual=batch.healthy,
            explanation=(batch.target - batch.healthy).abs(),
            target_features=_features(batch.target),
            reference_features=_features(batch.reference),
            cf_features=_features(batch.healthy),
            healthy_features=_features(batch.healthy),
        )

    def validation_step(self, batch: BilateralBatch, batch_idx: int) -> BilateralOutput:
        return self.predict_step(batch, batch_idx)

    def test_step(self, batch: BilateralBatch, batch_idx: int) -> BilateralOutput:
        return self.predict_step(batch, batch_idx)


def _trainer(tmp_path, callbacks) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )


def _expected_feature_fid() -> float:
    # 128 feature vectors (8 images × 16 cells); 4 lesion cells differ from the others by d = (0.9−0.3, 0.81−0.09).
    # The reference (and the counterfactual) features are constant, so FD = ‖Δμ‖² + Tr Σ_target (unbiased).
    n, p, d2 = 128, 4 / 128, 0.6**2 + 0.72**2
    return p**2 * d2 + n / (n - 1) * p * (1 - p) * d2


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    pl.seed_everything(7)
    evaluation = EvaluationCallback(num_bootstrap=50, eval_val=True)
    figures = FigureCallback(num_pairs=3)
    trainer = _trainer(root, [evaluation, figures])
    model, data = FakeModel(), TinyData()
    trainer.fit(model, datamodule=data)
    logged = trainer.test(model, datamodule=data, verbose=False)[0]
    return root, evaluation, figures, logged


def test_metrics_json_values(fitted):
    root, evaluation, _, logged = fitted
    written = json.loads((root / "metrics.json").read_text())
    assert written == evaluation.results
    expected = {
        "test/auc": 14 / 16,
        "test/acc": 6 / 8,
        "test/sensitivity": 3 / 4,
        "test/specificity": 3 / 4,
        "test/loc_error": 1 / 4,  # pair 2 has the wrong class; pair 6's CAM box has IoU 0.5 >= 0.1
        # Positives 0, 1, 2 peak on their lesion; pair 6's CAM peaks on 32 tied pixels, 16 on the lesion (0.5 px
        # tolerance at 16 px: only lesion pixels hit). The class does not matter.
        "test/pointing": (3 + 16 / 32) / 4,
        "test/seg_iou": (3 + 0.5) / 4,
        "test/seg_ior": 1.0,
        "test/seg_dice": (3 + 2 / 3) / 4,
        "test/mean_tiou": (5 + 2 * 0.75) / 7,
        "test/mean_tior": 1.0,
        "test/expl_iou": 1.0,
        "test/expl_dice": 1.0,
        "test/expl_ncc": 1.0,
        "test/expl_ncc_std": 0.0,
        "test/expl_loc_error": 1 / 4,  # the explanation is the lesion itself: only pair 2's wrong class fails
        "test/expl_pointing": 1.0,
        "test/expl_ap": 1.0,  # every lesion pixel ranks above every other
        "test/nonres_dissimilarity_in": 0.6,  # the lesion (0.9 on 0.3) is removed: |y − x| = 0.6 inside
        "test/nonres_dissimilarity_out": 0.0,  # and nothing changes outside
        "test/masked_ssim": 1.0,
        "test/cf_fidelity_mae_in": 0.0,
        "test/cf_fidelity_input_mae_in": 0.6,  # the input itself is 0.6 from the truth inside the lesion
        "test/cf_fidelity_mae_out": 0.0,
        "test/cf_fidelity_ssim_out": 1.0,
        "test/cf_fidelity_ratio_in": 0.0,
        "test/cf_fidelity_ratio_out": 0.0,
        "test/cf_fid_target_reference": _expected_feature_fid(),
        "test/cf_fid_target_cf": _expected_feature_fid(),
        "test/cf_fid_cf_reference": 0.0,
        "test/cf_fid_target_cf_outside": 0.0,
    }
    for key, value in expected.items():
        tolerance = 1e-4 if "ssim" in key else 1e-6  # float32 SSIM of identical images is 1 − 3e-5
        assert written[key] == pytest.approx(value, abs=tolerance), key
        assert logged[key] == pytest.approx(value, abs=tolerance), key
    assert written["test/auc_ci_low"] <= written["test/auc"] <= written["test/auc_ci_high"]
    assert written["model"] == "fake" and written["data"] == "TinyData(synthetic)" and written["seed"] == 7
    assert written["num_test_pairs"] == 8
    assert written["pairs_per_second"] == pytest.approx(8 / written["train_seconds"])
    assert written["expl_threshold_rule"].startswith("|map| min-max") and "> 0.5" in written["seg_threshold_rule"]
    assert written["pointing_rule"].startswith("hit = map peak within 0.03125 x image height of a GT lesion pixel")


def test_eval_val_runs_the_suite_on_validation(fitted):
    _, evaluation, _, _ = fitted
    assert evaluation.val_results["auc"] == pytest.approx(14 / 16)
    assert evaluation.val_results["num_pairs"] == 8


def test_figure_callback_writes_one_png_per_pair(fitted):
    root, _, figures, _ = fitted
    assert [p.name for p in figures.paths] == ["pair_000.png", "pair_001.png", "pair_002.png"]
    assert all(p.parent == root / "figures" and p.stat().st_size > 1000 for p in figures.paths)
    assert sorted(p.name for p in (root / "figures").glob("*.png")) == ["pair_000.png", "pair_001.png", "pair_002.png"]


def test_the_test_writes_the_roc_curve_next_to_metrics_json(fitted):
    from matplotlib.image import imread

    root = fitted[0]
    assert imread(root / "roc.png").shape[:2] == (400, 400)


class ImageLogger(pl.loggers.Logger):
    """A logger that takes images, as Weights & Biases' does, and remembers what it got."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, list[str], int]] = []

    name, version = "images", 0

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_image(self, key: str, images: list[str], step: int) -> None:
        self.images.append((key, images, step))


def test_validation_panels_every_n_epochs_reach_the_logger(tmp_path):
    figures = FigureCallback(num_pairs=1, val_every_n_epochs=2, val_num_pairs=2)
    logger = ImageLogger()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=3,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,  # the sanity check draws nothing
        default_root_dir=tmp_path,
        callbacks=[figures],
    )
    trainer.fit(FakeModel(), datamodule=TinyData())
    val = tmp_path / "figures" / "val"
    assert sorted(p.name for p in val.iterdir()) == ["epoch_000", "epoch_002"]
    for epoch in ("epoch_000", "epoch_002"):
        assert sorted(p.name for p in (val / epoch).iterdir()) == ["pair_000.png", "pair_001.png"]
    assert [(key, len(images)) for key, images, _ in logger.images] == [("val/pairs", 2), ("val/pairs", 2)]
    assert logger.images[0][2] < logger.images[1][2]  # logged at the step of their epoch
    assert figures.val_paths[2] == [val / "epoch_002" / "pair_000.png", val / "epoch_002" / "pair_001.png"]
    trainer.test(FakeModel(), datamodule=TinyData(), verbose=False)
    assert logger.images[-1][0] == "test/pairs" and len(logger.images[-1][1]) == 1


def test_figure_callback_refuses_a_negative_count():
    with pytest.raises(ConfigError, match="val_num_pairs = -1 is not valid"):
        FigureCallback(val_num_pairs=-1)


def test_empty_test_split_raises(tmp_path):
    trainer = _trainer(tmp_path, [EvaluationCallback(num_bootstrap=10)])
    with pytest.raises(DataError, match="test split is empty"):
        trainer.test(FakeModel(), datamodule=TinyData(num_test=0), verbose=False)


def test_suite_omits_what_a_model_does_not_produce():
    suite = EvaluationSuite(num_bootstrap=10)
    batch = BilateralBatch.collate([_sample(i) for i in range(4)])
    full = FakeModel().predict_step(batch)
    batch.label = torch.tensor([1, 1, 1, 1])  # one class only: AUC undefined
    outputs = BilateralOutput(logits=full.logits, cam=full.cam, score=full.score, pred=full.pred, batch=batch)
    suite.update(outputs)
    results = suite.compute()
    assert sorted(results) == [
        "acc",
        "loc_error",
        "mean_tior",
        "mean_tiou",
        "num_pairs",
        "pointing",
        "seg_ap",
        "seg_dice",
        "seg_ior",
        "seg_iou",
        "sensitivity",
    ]
    assert results["sensitivity"] == pytest.approx(2 / 4) and math.isfinite(results["loc_error"])


def test_suite_reset_forgets_previous_batches():
    suite = EvaluationSuite(num_bootstrap=10)
    batch = BilateralBatch.collate([_sample(i) for i in range(8)])
    suite.update(FakeModel().predict_step(batch))
    suite.reset()
    assert suite.compute() == {"num_pairs": 0.0}


def test_pair_panel_has_one_column_per_available_map(tmp_path):
    from matplotlib.image import imread

    from bilatcf.viz import pair_panel

    output = FakeModel().predict_step(BilateralBatch.collate([_sample(i) for i in (0, 3)]))
    samples = [figure_sample(output, row) for row in range(2)]
    full = imread(pair_panel(_stacked(samples), tmp_path / "full.png"))
    plain_output = output.replace(counterfactual=None, explanation=None, cf_features=None)
    plain = imread(pair_panel(_stacked([figure_sample(plain_output, row) for row in range(2)]), tmp_path / "plain.png"))
    feature_output = output.replace(counterfactual=None)  # features and counterfactual features, no image
    feature = imread(pair_panel(_stacked([figure_sample(feature_output, row) for row in range(2)]), tmp_path / "f.png"))
    output.batch.has_healthy = torch.zeros(2)
    unknown = imread(pair_panel(_stacked([figure_sample(output, row) for row in range(2)]), tmp_path / "unknown.png"))
    # 3.6-inch rows at 100 dpi, 2 rows; cells 3.6 inches wide (square images), heatmap cells 0.7 inch more for their
    # colour bar. Columns: target, reference, counterfactual, true healthy, explanation, CAM; without a known healthy
    # image 5; a feature-level method 5 (target, reference, feature residual, explanation, CAM); a plain classifier 3
    # (target, reference, CAM).
    assert full.shape[:2] == (720, 6 * 360 + 2 * 70) and unknown.shape[:2] == (720, 5 * 360 + 2 * 70)
    assert feature.shape[:2] == (720, 5 * 360 + 3 * 70) and plain.shape[:2] == (720, 3 * 360 + 70)


def test_roc_figure_needs_both_classes(tmp_path):
    from bilatcf.viz import roc_figure

    path = roc_figure(torch.tensor([0.2, 0.8, 0.5]), torch.tensor([0, 1, -1]), tmp_path / "roc.png")
    assert path.stat().st_size > 1000
    with pytest.raises(DataError, match="both classes"):
        roc_figure(torch.tensor([0.2, 0.8]), torch.tensor([1, -1]), tmp_path / "bad.png")


def test_suite_evaluates_every_extra_head_against_its_label():
    suite = EvaluationSuite(num_bootstrap=10)
    suite.configure("label", {"asymmetry": "asym_label", "reference": "ref_label"})
    batch = BilateralBatch.collate([_sample(i) for i in range(8)])
    full = FakeModel().predict_step(batch)
    batch.ref_label = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
    # The asymmetry head ranks the pairs like the task score; the reference head ranks them perfectly.
    heads = {"asymmetry": full.score, "reference": batch.ref_label.float()}
    suite.update(full.replace(head_scores=heads))
    results = suite.compute()
    assert results["asymmetry_auc"] == pytest.approx(14 / 16)
    assert results["reference_auc"] == pytest.approx(1.0)
    assert results["reference_auc_ci_low"] <= 1.0 and "reference_auc_ci_high" in results


def test_suite_refuses_a_plain_dict():
    with pytest.raises(ConfigError, match="BilateralOutput"):
        EvaluationSuite(num_bootstrap=10).update({"prob": torch.zeros(1)})


def _stacked(samples: list[dict]) -> dict:
    """Several one-pair figure samples as one sample dict of several rows."""
    return {
        key: torch.cat([s[key] for s in samples])
        if isinstance(samples[0][key], torch.Tensor)
        else [v for s in samples for v in s[key]]
        for key in samples[0]
    }
