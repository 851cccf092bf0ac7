"""The Python API for research code: networks without Lightning, metrics as torchmetrics classes, and
``bilatcf.load`` predicting exactly what ``bilatcf predict`` writes."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torchmetrics import Metric

import bilatcf
import bilatcf.metrics
from bilatcf.api import Predictor
from bilatcf.cli import main
from bilatcf.data.datamodule import BilateralDataModule
from bilatcf.data.io import read_image
from bilatcf.data.preprocess import PreprocessInfo, unmap_map
from bilatcf.errors import ConfigError, DataError
from bilatcf.metrics import EvaluationSuite
from bilatcf.models import METHODS
from bilatcf.models.outputs import BilateralOutput
from tests.conftest import REPO

#: Every method folder with a pure-PyTorch ``network.py`` (DESIGN §1: networks never import Lightning).
NETWORK_MODULES = sorted(
    f"bilatcf.models.{p.parent.name}.network" for p in (REPO / "bilatcf" / "models").glob("*/network.py")
)
#: Modules research code imports that need no Lightning either.
LIGHT_MODULES = ["bilatcf", "bilatcf.metrics", "bilatcf.models", "bilatcf.nn"]

# Run in a fresh interpreter: a meta-path finder makes every Lightning import raise, naming the chain of modules that
# asked for it; each module of argv is imported in turn and the result printed as JSON (module -> error or null).
_WITHOUT_LIGHTNING = r"""
import importlib, importlib.abc, inspect, json, sys

BLOCKED = ("pytorch_lightning", "lightning", "lightning_fabric")

class NoLightning(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            chain = [f.frame.f_globals.get("__name__") for f in reversed(inspect.stack())
                     if f.function == "<module>" and f.frame.f_globals.get("__name__") != "__main__"]
            raise ImportError(" -> ".join([*chain, name]))
        return None

sys.meta_path.insert(0, NoLightning())
results = {}
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
        results[module] = None
    except ImportError as error:
        results[module] = str(error)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def imports_without_lightning() -> dict[str, str | None]:
    """Import every network (and the light modules) once, in one subprocess where Lightning cannot be imported.

    One interpreter for all modules is enough: with every Lightning import refused, a module imported earlier cannot
    hide a later module's path to Lightning (a failed import leaves nothing that would satisfy it).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    modules = [*NETWORK_MODULES, *LIGHT_MODULES]
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_LIGHTNING, *modules], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_method_folder_has_a_network():
    assert sorted(METHODS) == sorted(module.split(".")[2] for module in NETWORK_MODULES)


@pytest.mark.parametrize("module", [*NETWORK_MODULES, *LIGHT_MODULES])
def test_imports_without_lightning(module, imports_without_lightning):
    error = imports_without_lightning[module]
    assert error is None, f"importing {module} imports Lightning: {error}"


# ---------------------------------------------------------------------------------------------------------- metrics
def _metric_inputs() -> dict[str, tuple[dict, tuple, str, float]]:
    """Per metric class: (init kwargs, update args, a key of compute(), its value) on tiny tensors with a known answer:
    the maps, counterfactuals and features below are perfect, so every score is at its best."""

    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, 2:4, 2:4] = 1
    mask[1, :, 4:6, 4:6] = 1
    has_mask, labels = torch.ones(2, dtype=torch.bool), torch.tensor([1, 1])
    image = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    features = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    lesion = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    lesion[0, :, 1, 1] = True
    boxes = [[[2.0, 2.0, 4.0, 4.0]], [[4.0, 4.0, 6.0, 6.0]]]
    scores, score_labels = torch.tensor([0.1, 0.9, 0.2, 0.8]), torch.tensor([0, 1, 0, 1])
    return {
        "BootstrapAUROC": ({"num_bootstrap": 20}, (scores, score_labels), "auc", 1.0),
        "ClassificationRates": ({}, (torch.tensor([0, 1, 1, 1]), score_labels), "acc", 0.75),
        "TopOneLocError": ({}, (mask, labels, labels, boxes), "", 0.0),
        "PointingGame": ({}, (mask, labels, mask, has_mask, boxes), "", 1.0),
        "SegmentationScores": ({}, (mask, mask, has_mask), "iou", 1.0),
        "MapAveragePrecision": ({}, (mask, mask, has_mask), "", 1.0),
        "ThresholdAccuracy": ({}, (mask, mask, has_mask), "mean_tiou", 1.0),
        "ExplanationNCC": ({}, (mask, mask, has_mask), "ncc", 1.0),
        "MaskedImageComparison": ({}, (image, image, mask, has_mask), "ssim_out", 1.0),
        "FeatureFrechetDistance": ({}, (features, features), "", 0.0),
        "FeatureFidelityRatio": ({}, (features, features, lesion, has_mask), "ratio_out", 0.0),
    }


def _exported_metrics() -> list[str]:
    return [
        name
        for name in bilatcf.metrics.__all__
        if inspect.isclass(cls := getattr(bilatcf.metrics, name)) and issubclass(cls, Metric)
    ]


def test_every_metric_the_evaluation_computes_is_exported_as_a_metric_class():
    """The suite computes every docs/metrics.md key from its Metric children: each child's class is public."""
    used = {type(m) for m in EvaluationSuite().modules() if isinstance(m, Metric)}
    own = {cls.__name__ for cls in used if cls.__module__.startswith("bilatcf.")}
    assert own and own <= set(_exported_metrics()), (
        f"not exported from bilatcf.metrics: {own - set(_exported_metrics())}"
    )
    assert set(_exported_metrics()) == set(_metric_inputs()), "every exported Metric needs a case in _metric_inputs"


@pytest.mark.parametrize("name", sorted(_metric_inputs()))
def test_metric_class_updates_and_computes(name):
    kwargs, args, key, expected = _metric_inputs()[name]
    metric = getattr(bilatcf.metrics, name)(**kwargs)
    assert isinstance(metric, Metric)
    metric.update(*args)
    value = metric.compute()
    value = value[key] if key else value
    assert torch.isclose(
        torch.as_tensor(value, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64), atol=1e-5
    )


# ----------------------------------------------------------------------------------------------------- bilatcf.load
@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_datamodule_factory):
    """An sbf fitted for two steps on the tiny synthetic data, and its checkpoint (written by a plain Trainer)."""
    pl.seed_everything(0, verbose=False)
    model = bilatcf.create_model("sbf", backbone="test_resnet")
    trainer = pl.Trainer(
        max_steps=2,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=tiny_datamodule_factory())
    path = tmp_path_factory.mktemp("trained") / "sbf.ckpt"
    trainer.save_checkpoint(path)
    return model, path


@pytest.fixture(scope="module", params=["png", "npy"])
def exams(request, tmp_path_factory) -> Path:
    """Three synthetic patients written as image files by `bilatcf data synth` (right breasts as acquired)."""
    out = tmp_path_factory.mktemp(f"exams_{request.param}")
    synth = ["data", "synth", "--format", request.param, "--num_patients", "3", "--image_size", "64", "32"]
    assert main([*synth, "--out", str(out / "files")]) == 0
    return out / "files"


def _manifest(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "manifest.csv") as handle:
        return {row["image_id"]: row for row in csv.DictReader(handle)}


def _assert_predictor_agrees(predictor, folder: Path, expected: list[tuple[str, str, float, np.ndarray]]) -> None:
    """``predictor.predict`` on each (target id, reference id) gives the expected score and original-geometry CAM."""
    records = _manifest(folder)
    assert len(expected) == len(records), "every image of the exams is a target once"
    for target_id, reference_id, score, cam_original in expected:
        target, reference = records[target_id], records[reference_id]
        result = predictor.predict(
            folder / target["path"],
            folder / reference["path"],
            target_laterality=target["laterality"],
            reference_laterality=reference["laterality"],
            view=target["view"],
        )
        assert abs(result.score - score) <= 1e-5, (target_id, result.score, score)
        assert result.pred == int(result.score >= 0.5)
        assert result.cam_original.shape == read_image(folder / target["path"]).shape
        np.testing.assert_allclose(result.cam_original, cam_original, atol=1e-5)


def test_load_rebuilds_the_trained_model_in_eval_mode(trained):
    model, path = trained
    predictor = bilatcf.load(path)
    assert type(predictor.model) is type(model) and not predictor.model.training
    assert predictor.image_size == (64, 32)
    assert predictor.data_config["class_path"] == "bilatcf.data.datamodule.BilateralDataModule"
    loaded = predictor.model.state_dict()
    assert loaded.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value) if isinstance(value, torch.Tensor) else loaded[key] == value, key


def test_predict_scores_files_as_the_datamodule_prepares_them(trained, exams):
    """The manifest DataModule's predict batches through the model: the numbers `bilatcf predict` writes."""
    predictor = bilatcf.load(trained[1])
    datamodule = BilateralDataModule(
        source="manifest", manifest=str(exams / "manifest.csv"), image_size=(64, 32), predict_split="all"
    )
    datamodule.setup("predict")
    expected = []
    for batch in datamodule.predict_dataloader():
        output = predictor.model.predict_step(batch)
        for i, meta in enumerate(batch.meta):
            cam = unmap_map(output.cam[i, 0].numpy(), PreprocessInfo.from_dict(meta))
            expected.append((meta["image_id"], meta["reference_id"], float(output.score[i]), cam))
    _assert_predictor_agrees(predictor, exams, expected)


def test_predict_gives_the_scores_of_bilatcf_predict(trained, exams, tmp_path):
    out = tmp_path / "predict"
    data = ["--data.source", "manifest", "--data.manifest", str(exams / "manifest.csv"), "--data.predict_split", "all"]
    cli = ["predict", "--ckpt_path", str(trained[1]), "--trainer.default_root_dir", str(out)]
    assert main([*cli, *data, "--trainer.enable_progress_bar", "false"]) == 0
    predictions = next(out.rglob("predictions.csv"))
    with open(predictions) as handle:
        rows = list(csv.DictReader(handle))
    heatmaps = predictions.parent / "heatmaps"
    expected = [
        (
            row["image_id"],
            row["reference_id"],
            float(row["score"]),
            np.load(heatmaps / f"{row['image_id']}_cam_original.npy"),
        )
        for row in rows
    ]
    _assert_predictor_agrees(bilatcf.load(trained[1]), exams, expected)


def test_arrays_score_as_their_files(trained, exams):
    predictor = bilatcf.load(trained[1])
    records = _manifest(exams)
    target = records[min(records)]  # a left breast, and its contralateral image
    reference = records[min(records).replace("_L_", "_R_")]
    sides = {"target_laterality": target["laterality"], "reference_laterality": reference["laterality"]}
    from_files = predictor.predict(exams / target["path"], exams / reference["path"], **sides)
    arrays = [read_image(exams / row["path"]) for row in (target, reference)]
    from_arrays = predictor.predict(*arrays, **sides)
    from_tensors = predictor.predict(*(torch.from_numpy(a)[None] for a in arrays), **sides)
    assert from_arrays.score == from_files.score == from_tensors.score
    np.testing.assert_array_equal(from_arrays.cam_original, from_files.cam_original)
    assert from_files.target.shape == from_files.cam.shape == (64, 32)
    assert from_files.explanation is None and from_files.counterfactual_original is None  # sbf makes neither


def test_predict_batch_is_the_models_output_without_gradients(trained, tiny_datamodule_factory):
    predictor = bilatcf.load(trained[1])
    batch = next(iter(tiny_datamodule_factory().val_dataloader()))
    output = predictor.predict_batch(batch)
    assert isinstance(output, BilateralOutput) and output.score.shape == (len(batch),)
    assert not any(value.requires_grad for value in output.tensors().values())
    with pytest.raises(DataError, match="'reference' has values in"):
        predictor.predict_batch(dataclasses.replace(batch, reference=batch.reference * 2 + 1))


def test_errors_say_what_was_wrong(trained, exams, tmp_path):
    predictor = bilatcf.load(trained[1])
    image = next(iter(_manifest(exams).values()))
    path = exams / image["path"]
    with pytest.raises(ConfigError, match="checkpoint not found"):
        bilatcf.load(tmp_path / "missing.ckpt")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="is not a bilatcf checkpoint"):
        bilatcf.load(tmp_path / "notes.ckpt")
    with pytest.raises(DataError, match="reference image not found: .*missing.png"):
        predictor.predict(path, tmp_path / "missing.png", target_laterality="L")
    with pytest.raises(ConfigError, match="target_laterality='left side' is not a laterality: give 'L' or 'R'"):
        predictor.predict(path, path, target_laterality="left side")
    with pytest.raises(ConfigError, match="reference_laterality=None|reference_laterality=2"):
        predictor.predict(path, path, target_laterality="R", reference_laterality=2)
    with pytest.raises(DataError, match="the target array: image has shape"):
        predictor.predict(np.zeros((3, 64, 32)), path, target_laterality="L")
    with pytest.raises(ConfigError, match="records no image_size"):
        Predictor(predictor.model).predict(path, path, target_laterality="L")
