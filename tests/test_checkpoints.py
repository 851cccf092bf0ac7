"""Checkpoints: what best and last hold, the data they carry, and how ``--ckpt_path`` finds, checks and resumes them."""

from __future__ import annotations

import fractions
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from bilatcf.checkpoints import find_checkpoint, read_checkpoint
from bilatcf.cli import main
from bilatcf.errors import ConfigError
from tests.conftest import REPO, TINY_CONFIG

TINY_SBF = ["--config", str(TINY_CONFIG), "--model", "sbf", "--model.backbone", "test_resnet"]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> SimpleNamespace:
    """A tiny sbf run (48 patients at 64×32) of 3 epochs whose val/auc only gets worse: best is epoch 0."""
    root = tmp_path_factory.mktemp("run")
    args = ["fit", *TINY_SBF, "--trainer.max_epochs", "3", "--trainer.default_root_dir", str(root)]
    assert main([*args, "--trainer.callbacks+=tests.cli_helpers.DecreasingValAUC"]) == 0
    run_dir = root / "lightning_logs" / "version_0"
    return SimpleNamespace(
        root=root,
        dir=run_dir,
        best=next((run_dir / "checkpoints").glob("best-*.ckpt")),
        last=run_dir / "checkpoints" / "last.ckpt",
        metrics=json.loads((run_dir / "metrics.json").read_text()),
    )


def test_last_is_the_end_of_the_run_when_the_metric_stops_improving(run):
    last, best = load(run.last), load(run.best)
    assert last["epoch"] == 2 and last["global_step"] == 3 * 2  # 3 epochs of 2 batches (tiny.yaml)
    assert best["epoch"] == 0 and run.best.name == "best-epoch=0.ckpt"
    states = [s for s in last["callbacks"].values() if s.get("monitor") == "val/auc"]
    assert len(states) == 1 and float(states[0]["best_model_score"]) == pytest.approx(1.0)
    assert Path(states[0]["best_model_path"]) == run.best


def test_best_holds_the_weights_and_last_the_training_state(run):
    last, best = load(run.last), load(run.best)
    assert "optimizer_states" in last and "loops" in last and "callbacks" in last
    assert "optimizer_states" not in best and "callbacks" not in best
    assert best["state_dict"].keys() == last["state_dict"].keys()
    assert run.best.stat().st_size < run.last.stat().st_size
    assert read_checkpoint(run.last).resumable and not read_checkpoint(run.best).resumable


def test_checkpoints_carry_their_data_config(run):
    for path in (run.best, run.last):
        data = load(path)["bilatcf_data"]
        assert data["class_path"] == "bilatcf.data.datamodule.BilateralDataModule"
        assert data["init_args"]["num_patients"] == 48 and data["init_args"]["image_size"] == [64, 32]


def test_test_evaluates_on_the_data_the_checkpoint_was_trained_on(run, tmp_path, capsys):
    # No --config, no --data: without the checkpoint's data this would be 1000 patients at 128×64.
    args = ["test", "--ckpt_path", str(run.best), "--trainer.default_root_dir", str(tmp_path)]
    assert main([*args, "--trainer.accelerator", "cpu", "--trainer.limit_test_batches", "2"]) == 0
    printed = capsys.readouterr().out
    assert sum(line.startswith("test/auc ") for line in printed.splitlines()) == 1  # one metrics table
    metrics = json.loads(next(tmp_path.rglob("metrics.json")).read_text())
    assert metrics["num_test_pairs"] == run.metrics["num_test_pairs"]
    assert metrics["data"] == run.metrics["data"]
    assert metrics["test/auc"] == pytest.approx(run.metrics["test/auc"])
    config = yaml.safe_load(next(tmp_path.rglob("config.yaml")).read_text())
    assert config["data"]["init_args"]["num_patients"] == 48 and config["data"]["init_args"]["image_size"] == [64, 32]


def printed_config(capsys, args: list[str]) -> dict:
    capsys.readouterr()
    assert main([*args, "--print_config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_given_data_options_override_the_checkpoint_data_key_by_key(run, capsys):
    args = ["test", "--ckpt_path", str(run.best)]
    assert printed_config(capsys, args)["data"]["init_args"]["num_patients"] == 48
    data = printed_config(capsys, [*args, "--data.num_patients", "60"])["data"]["init_args"]
    assert data["num_patients"] == 60 and data["image_size"] == [64, 32]


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--data.image_size", "[128,64]"], "image_size=[128,64] where the model was trained with image_size=[64,32]"),
        (["--data.task", "abnormality"], "task=abnormality where the model was trained with task=malignancy"),
        (["--data.four_view", "true"], "four_view=true where the model was trained with four_view=false"),
    ],
    ids=["image_size", "task", "four_view"],
)
def test_data_the_checkpoint_cannot_be_evaluated_on_is_refused(run, tmp_path, capsys, option, expected):
    args = ["test", "--ckpt_path", str(run.best), "--trainer.default_root_dir", str(tmp_path), *option]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_a_model_config_without_its_data_option_is_refused(tmp_path, capsys):
    args = ["fit", "--config", str(TINY_CONFIG), "--model", "sff", "--trainer.default_root_dir", str(tmp_path)]
    assert main(args) == 2
    assert "needs the data option four_view=true" in capsys.readouterr().err


@pytest.mark.parametrize(
    "model",
    ["vanilla", "Vanilla", "bilatcf.models.vanilla.Vanilla", "bilatcf.models.vanilla.module.Vanilla", "yaml"],
)
def test_a_model_that_disagrees_with_the_checkpoint_is_refused(run, tmp_path, capsys, model):
    if model == "yaml":
        config = tmp_path / "model.yaml"
        config.write_text("model:\n  class_path: bilatcf.models.vanilla.Vanilla\n")
        option = ["--config", str(config)]
    else:
        option = ["--model", model]
    assert main(["test", "--ckpt_path", str(run.best), *option, "--trainer.default_root_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "written by model 'sbf'" in err and "--model is 'vanilla'" in err and "--model sbf" in err


def test_ckpt_path_keywords_pick_the_latest_run(run, capsys):
    for keyword, path in (("best", run.best), ("last", run.last)):
        args = ["test", "--ckpt_path", keyword, "--trainer.default_root_dir", str(run.root)]
        assert printed_config(capsys, args)["ckpt_path"] == str(path)


def fake_checkpoint(path: Path, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "bilatcf_model": "sbf", **extra}, path)
    return path


def test_find_checkpoint_resolves_last_best_and_hpc(tmp_path):
    old = fake_checkpoint(tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt")
    best = fake_checkpoint(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "best-epoch=3.ckpt")
    state = {"ModelCheckpoint{...}": {"monitor": "val/auc", "best_model_path": str(best)}}
    new = fake_checkpoint(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", callbacks=state)
    os.utime(old, (time.time() - 60, time.time() - 60))  # version_0 was resumed after version_1 was written
    assert find_checkpoint("last", tmp_path) == new
    assert find_checkpoint("best", tmp_path) == best
    for n in (1, 2, 10):
        fake_checkpoint(tmp_path / f"hpc_ckpt_{n}.ckpt")
    assert find_checkpoint("hpc", tmp_path) == tmp_path / "hpc_ckpt_10.ckpt"
    with pytest.raises(ConfigError, match="no run under"):
        find_checkpoint("last", tmp_path / "empty")


def write_foreign_file(kind: str, path: Path) -> Path:
    if kind == "text":
        path.write_text("just some notes\n")
    elif kind == "yaml":
        path.write_text("model:\n  class_path: bilatcf.models.sbf.SBF\n")
    elif kind == "torch-list":
        torch.save([1, 2, 3], path)
    elif kind == "pickle-object":
        path.write_bytes(pickle.dumps(fractions.Fraction(1, 3)))
    elif kind == "torch-object":
        torch.save({"state_dict": {}, "extra": fractions.Fraction(1, 3)}, path)
    elif kind == "lightning-checkpoint":
        torch.save({"state_dict": {}, "epoch": 0}, path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    "kind", ["text", "yaml", "torch-list", "pickle-object", "torch-object", "lightning-checkpoint", "empty", "folder"]
)
def test_a_file_that_is_not_a_bilatcf_checkpoint_is_refused(tmp_path, capsys, kind):
    path = write_foreign_file(kind, tmp_path / "model.ckpt")
    assert main(["test", "--ckpt_path", str(path), "--trainer.default_root_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and ("not a bilatcf checkpoint" in err or "is a folder" in err)
    assert "weights_only" not in err and "Traceback" not in err


def test_fit_does_not_resume_from_a_weights_only_checkpoint(run, tmp_path, capsys):
    assert main(["fit", "--ckpt_path", str(run.best), "--trainer.default_root_dir", str(tmp_path)]) == 2
    assert "holds the model weights only" in capsys.readouterr().err


def test_fit_resumes_the_run_in_its_own_folder(tmp_path, capsys):
    base = ["fit", *TINY_SBF, "--trainer.default_root_dir", str(tmp_path), "--test_after_fit", "false"]
    assert main(base) == 0
    run_dir = tmp_path / "lightning_logs" / "version_0"
    first = load(run_dir / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    assert main([*base, "--ckpt_path", "last", "--trainer.max_epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in printed
    assert f"the run continues in {run_dir}" in printed
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]
    resumed = load(run_dir / "checkpoints" / "last.ckpt")
    assert (first["epoch"], resumed["epoch"]) == (0, 1) and resumed["global_step"] == 2 * first["global_step"]
    best = [s for s in resumed["callbacks"].values() if s.get("monitor")][0]
    assert Path(best["best_model_path"]).parent == run_dir / "checkpoints" and best["best_model_score"] is not None


@pytest.mark.slow
def test_a_killed_fit_resumed_from_last_ends_like_an_uninterrupted_one(tmp_path):
    base = [sys.executable, "-m", "bilatcf.cli", "fit", *TINY_SBF, "--trainer.max_epochs", "3"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def fit(root: Path, *extra: str) -> str:
        result = subprocess.run(
            [*base, "--trainer.default_root_dir", str(root), *extra],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    fit(tmp_path / "whole")
    killed, marker = tmp_path / "killed", tmp_path / "epoch1-started"
    pause = {"class_path": "tests.cli_helpers.PauseAtEpoch", "init_args": {"marker": str(marker), "epoch": 1}}
    process = subprocess.Popen(
        [*base, "--trainer.default_root_dir", str(killed), f"--trainer.callbacks+={json.dumps(pause)}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not marker.exists():  # epoch 0 is done and its last.ckpt written once epoch 1 starts
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before epoch 1"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    last = killed / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert load(last)["epoch"] == 0 and not list(killed.rglob("metrics.json"))

    printed = fit(killed, "--ckpt_path", "last")
    assert f"resuming from {last} (epoch 0, global step 2)" in printed  # not a fresh start with the same seed
    assert sorted(p.name for p in (killed / "lightning_logs").iterdir()) == ["version_0"]
    resumed, whole = (json.loads(next(r.rglob("metrics.json")).read_text()) for r in (killed, tmp_path / "whole"))
    scores = {k: v for k, v in whole.items() if k.startswith("test/")}
    assert scores and {k: resumed[k] for k in scores} == pytest.approx(scores, rel=1e-6, abs=1e-7)
    assert resumed["num_test_pairs"] == whole["num_test_pairs"]
    finals = [load(next(r.rglob("last.ckpt"))) for r in (killed, tmp_path / "whole")]
    assert finals[0]["global_step"] == finals[1]["global_step"]
    best = [[s for s in f["callbacks"].values() if s.get("monitor")][0] for f in finals]
    assert float(best[0]["best_model_score"]) == pytest.approx(float(best[1]["best_model_score"]))
    assert Path(best[0]["best_model_path"]).name == Path(best[1]["best_model_path"]).name
