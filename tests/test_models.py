"""The registry-driven battery: every registered model and every ablation YAML gets every test here (DESIGN §6)."""

from __future__ import annotations

import copy
import math

import pytest
import pytorch_lightning as pl
import torch

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import TrainingDivergedError
from bilatcf.registry import get_model_class
from tests.conftest import CASE_IDS, CASES, tiny_kwargs


def build(name: str, init_args: dict):
    cls = get_model_class(name)
    pl.seed_everything(0, verbose=False)
    return cls(**tiny_kwargs(cls, init_args))


def first_batch(datamodule, split: str = "train") -> BilateralBatch:
    loader = getattr(datamodule, f"{split}_dataloader")()
    return next(iter(loader))


def quiet_trainer(**kwargs) -> pl.Trainer:
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
    }
    return pl.Trainer(**{**defaults, **kwargs})


@pytest.mark.parametrize(("case", "name", "init_args"), CASES, ids=CASE_IDS)
def test_forward_contract(case, name, init_args, tiny_datamodule_factory):
    model = build(name, init_args).eval()
    datamodule = tiny_datamodule_factory(model.data_options)
    batch = first_batch(datamodule)
    out = model.forward_batch(batch)
    size = len(batch)
    assert out["logits"].shape == (size,)
    assert torch.isfinite(out["logits"]).all()
    assert out["cam"].ndim == 4 and out["cam"].shape[:2] == (size, 1)
    assert torch.isfinite(out["cam"]).all()
    if "counterfactual" in out:
        assert out["counterfactual"].shape == batch.target.shape
        assert out["counterfactual"].min() >= 0 and out["counterfactual"].max() <= 1
    if "explanation" in out:
        assert out["explanation"].shape[:2] == (size, 1) and torch.isfinite(out["explanation"]).all()
    if "cf_features" in out:
        assert out["cf_features"].shape == out["target_features"].shape
    prediction = model.predict_step(batch)
    assert prediction["cam"].shape == batch.target.shape
    assert prediction["cam"].min() >= 0 and prediction["cam"].max() <= 1
    assert ((prediction["prob"] >= 0) & (prediction["prob"] <= 1)).all()


class _GradientRecorder(pl.Callback):
    """Records which parameters received a non-zero gradient and snapshots them before the first step."""

    def on_train_start(self, trainer, pl_module):
        self.before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}
        self.touched: set[str] = set()
        for n, p in pl_module.named_parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(lambda param, n=n: self._record(n, param))

    def _record(self, name, param):
        if param.grad is not None and param.grad.abs().sum() > 0:
            self.touched.add(name)


@pytest.mark.parametrize(("case", "name", "init_args"), CASES, ids=CASE_IDS)
def test_training_steps_train_every_optimizer_parameter(case, name, init_args, tiny_datamodule_factory):
    # Two steps, not one: residual backbones zero-initialise the last norm of each block (a from-scratch training aid),
    # so the first step cannot reach the layers inside those blocks; the second does.
    model = build(name, init_args)
    datamodule = tiny_datamodule_factory(model.data_options)
    recorder = _GradientRecorder()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, callbacks=[recorder])
    trainer.fit(model, datamodule=datamodule)
    assert int(model.iteration) == 2, "the model's own iteration counter counts training steps, not optimizer steps"
    names = {id(p): n for n, p in model.named_parameters()}
    optimizers = trainer.optimizers
    assert optimizers, "configure_optimizers returned no optimizer"
    for index, optimizer in enumerate(optimizers):
        params = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
        assert params, f"optimizer {index} has no parameters"
        no_grad = [n for n in params if n not in recorder.touched]
        assert not no_grad, f"optimizer {index}: parameters without gradient: {no_grad[:5]}"
        unchanged = [n for n in params if torch.equal(recorder.before[n], dict(model.named_parameters())[n].detach())]
        assert not unchanged, f"optimizer {index}: parameters not updated: {unchanged[:5]}"


@pytest.mark.parametrize(("case", "name", "init_args"), CASES, ids=CASE_IDS)
def test_checkpoint_round_trip_reproduces_predictions(case, name, init_args, tiny_datamodule_factory, tmp_path):
    model = build(name, init_args)
    datamodule = tiny_datamodule_factory(model.data_options)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1)
    trainer.fit(model, datamodule=datamodule)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = type(model).load_from_checkpoint(path).eval()
    model.eval()
    batch = first_batch(datamodule, "val")
    expected, actual = model.predict_step(batch), loaded.predict_step(batch)
    for key in ("prob", "cam", "counterfactual", "explanation", "cf_features"):
        if key in expected:
            assert torch.equal(expected[key], actual[key]), key
    assert int(loaded.iteration) == int(model.iteration)
    assert torch.load(path, weights_only=True)["bilatcf_model"] == name


@pytest.mark.parametrize(("case", "name", "init_args"), CASES, ids=CASE_IDS)
def test_bf16_mixed_precision_step(case, name, init_args, tiny_datamodule_factory):
    model = build(name, init_args)
    datamodule = tiny_datamodule_factory(model.data_options)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, precision="bf16-mixed")
    trainer.fit(model, datamodule=datamodule)
    losses = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    assert losses and all(math.isfinite(v) for v in losses.values()), losses


@pytest.mark.parametrize(("case", "name", "init_args"), CASES, ids=CASE_IDS)
def test_nan_loss_stops_training_with_the_loss_name(case, name, init_args, tiny_datamodule_factory, monkeypatch):
    model = build(name, init_args)
    datamodule = tiny_datamodule_factory(model.data_options)
    forward = model.forward

    def poisoned(*args, **kwargs):
        out = dict(forward(*args, **kwargs))
        out["logits"] = out["logits"] * float("nan")
        return out

    monkeypatch.setattr(model, "forward", poisoned)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1)
    with pytest.raises(TrainingDivergedError, match=r"loss '.+' became nan at iteration 0"):
        trainer.fit(model, datamodule=datamodule)


@pytest.mark.parametrize(("case", "name", "init_args"), CASES, ids=CASE_IDS)
def test_resume_matches_uninterrupted_run(case, name, init_args, tiny_datamodule_factory, tmp_path):
    def run(epochs_first: int, resume: bool) -> dict[str, torch.Tensor]:
        model = build(name, init_args)
        datamodule = tiny_datamodule_factory(model.data_options)
        trainer = quiet_trainer(max_epochs=epochs_first, limit_train_batches=2)
        trainer.fit(model, datamodule=datamodule)
        if resume:
            path = tmp_path / "stopped.ckpt"
            trainer.save_checkpoint(path)
            model = build(name, init_args)
            trainer = quiet_trainer(max_epochs=2, limit_train_batches=2)
            trainer.fit(model, datamodule=datamodule, ckpt_path=path)
        assert int(model.iteration) == 4
        return copy.deepcopy(model.state_dict())

    uninterrupted, resumed = run(2, resume=False), run(1, resume=True)
    for key, value in uninterrupted.items():
        assert torch.allclose(value.float(), resumed[key].float(), atol=1e-6), key
