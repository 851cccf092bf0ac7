"""The `bilatcf` command end to end, for every registered model (and, in `make test-all`, every ablation)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bilatcf.cli import main
from bilatcf.registry import get_model_class, list_models
from tests.conftest import (
    BASE_CASE_IDS,
    BASE_CASES,
    CASE_IDS,
    CASES,
    REPO,
    TINY_CONFIG,
    schedule_epochs,
    tiny_cli_overrides,
    tiny_data_config,
)

ABLATION_CASES = [c for c in CASES if "/" in c[0]]
ABLATION_IDS = [c[0] for c in ABLATION_CASES]


def data_options(name: str) -> list[str]:
    """The model's tiny data on top of configs/tiny.yaml: its data options, or its toy preset."""
    cls = get_model_class(name)
    if cls.toy_preset is not None:
        return ["--data", json.dumps(tiny_data_config(cls))]
    return [arg for key, value in cls.data_options.items() for arg in (f"--data.init_args.{key}", str(value).lower())]


def model_argument(name: str) -> str:
    """``--model``'s value: the registry name, or the class path of a model outside the library (the harness models
    register when their module is imported, which a class path does)."""
    cls = get_model_class(name)
    return name if cls.__module__.startswith("bilatcf.") else f"{cls.__module__}.{cls.__qualname__}"


def fit_args(case: str, name: str, init_args: dict, root: Path) -> list[str]:
    args = ["fit", "--config", str(TINY_CONFIG), "--model", model_argument(name)]
    if "/" in case:
        args = ["fit", "--config", str(TINY_CONFIG), "--config", str(REPO / "configs" / "ablations" / f"{case}.yaml")]
    cls = get_model_class(name)
    return (
        args
        + tiny_cli_overrides(cls, init_args)
        + data_options(name)
        + ["--trainer.default_root_dir", str(root), "--trainer.max_epochs", str(schedule_epochs(cls, init_args))]
    )


def run_fit_test_predict(case, name, init_args, tmp_path: Path, capsys) -> None:
    assert main(fit_args(case, name, init_args, tmp_path)) == 0
    printed = capsys.readouterr().out
    assert "run dir:" in printed and "test/auc" in printed
    metrics_files = list(tmp_path.rglob("metrics.json"))
    assert len(metrics_files) == 1
    metrics = json.loads(metrics_files[0].read_text())
    run_dir = metrics_files[0].parent
    assert (run_dir / "config.yaml").is_file()
    for key in ("test/auc", "test/auc_ci_low", "test/auc_ci_high", "test/loc_error", "test/seg_iou"):
        assert key in metrics, key
    assert metrics["model"] == name
    assert metrics["test/auc_ci_low"] <= metrics["test/auc"] <= metrics["test/auc_ci_high"]
    checkpoints = sorted(run_dir.rglob("*.ckpt"))
    assert checkpoints
    predict_root = tmp_path / "predict"
    args = [
        "predict",
        "--config",
        str(TINY_CONFIG),
        "--ckpt_path",
        str(checkpoints[0]),
        "--trainer.default_root_dir",
        str(predict_root),
    ] + data_options(name)
    assert main(args) == 0
    rows = list(csv.DictReader(next(predict_root.rglob("predictions.csv")).open()))
    assert rows and all(r["pred"] in ("0", "1") for r in rows)
    if get_model_class(name).score_kind == "probability":
        assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert list(predict_root.rglob("*_cam.npy"))


@pytest.mark.parametrize(("case", "name", "init_args"), BASE_CASES, ids=BASE_CASE_IDS)
def test_fit_test_predict(case, name, init_args, tmp_path, capsys):
    run_fit_test_predict(case, name, init_args, tmp_path, capsys)


@pytest.mark.slow
@pytest.mark.parametrize(("case", "name", "init_args"), ABLATION_CASES, ids=ABLATION_IDS)
def test_fit_test_predict_ablation(case, name, init_args, tmp_path, capsys):
    run_fit_test_predict(case, name, init_args, tmp_path, capsys)


def logged_losses(root: Path, steps: int = 2) -> list[dict[str, float]]:
    """Training losses of the first `steps` logged steps (rank 0's CSV; under DDP, averaged over ranks)."""
    rows = list(csv.DictReader(next(root.rglob("metrics.csv")).open()))
    rows = [{k: float(v) for k, v in r.items() if k.startswith("train/") and v} for r in rows]
    return [r for r in rows if r][:steps]


def run_cli_process(args: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "bilatcf.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]


def ddp_case_args(case, name, init_args, root: Path, devices: int, batch_size: int) -> list[str]:
    args = fit_args(case, name, init_args, root)
    return args + [
        "--trainer.devices",
        str(devices),
        "--trainer.strategy",
        "ddp" if devices > 1 else "auto",
        "--trainer.logger",
        "CSVLogger",
        "--trainer.logger.save_dir",
        str(root),
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.callbacks+=tests.ddp_helpers.FreezeBatchNorm",
        "--data.init_args.batch_size",
        str(batch_size),
        "--data.init_args.shuffle",
        "false",
        *([] if get_model_class(name).toy_preset else ["--data.init_args.augment", "false"]),
        "--test_after_fit",
        "false",
    ]


def check_ddp_matches_single_process(case, name, init_args, tmp_path: Path) -> None:
    # Same global batch: 2 processes × 2 pairs vs 1 process × 4 pairs, batch norm frozen (no SyncBatchNorm on CPU).
    # Step 1 checks the forward; step 2 also checks that gradients were averaged across processes before the update.
    # Tolerance 1e-4 relative: only the float summation order differs.
    run_cli_process(ddp_case_args(case, name, init_args, tmp_path / "ddp", devices=2, batch_size=2))
    run_cli_process(ddp_case_args(case, name, init_args, tmp_path / "single", devices=1, batch_size=4))
    ddp, single = logged_losses(tmp_path / "ddp"), logged_losses(tmp_path / "single")
    assert len(ddp) == len(single) == 2
    for step, (ddp_losses, single_losses) in enumerate(zip(ddp, single)):
        assert ddp_losses.keys() == single_losses.keys()
        for key in ddp_losses:
            assert ddp_losses[key] == pytest.approx(single_losses[key], rel=1e-4, abs=1e-5), (step, key)


@pytest.mark.parametrize(("case", "name", "init_args"), BASE_CASES, ids=BASE_CASE_IDS)
def test_ddp_two_processes_match_one(case, name, init_args, tmp_path):
    check_ddp_matches_single_process(case, name, init_args, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("case", "name", "init_args"), ABLATION_CASES, ids=ABLATION_IDS)
def test_ddp_two_processes_match_one_ablation(case, name, init_args, tmp_path):
    check_ddp_matches_single_process(case, name, init_args, tmp_path)


class _RankedTrainer:
    """What the run summary reads of a trainer; counts the reads of ``log_dir`` (a DDP collective in Lightning)."""

    callbacks: list = []

    def __init__(self, global_rank: int) -> None:
        self.global_rank = global_rank
        self.log_dir_reads = 0

    @property
    def log_dir(self) -> str:
        self.log_dir_reads += 1
        return "runs/lightning_logs/version_0"


def test_the_run_summary_reads_the_run_dir_on_every_rank(capsys):
    # Rank 0 broadcasts log_dir; a rank that returned without taking part left `fit` under DDP waiting, then failing.
    from bilatcf.cli import _print_summary

    trainers = [_RankedTrainer(0), _RankedTrainer(1)]
    for trainer in trainers:
        _print_summary(trainer)
    assert [t.log_dir_reads for t in trainers] == [1, 1]
    assert capsys.readouterr().out.count("run dir: runs/lightning_logs/version_0") == 1


def test_list_prints_every_model(capsys):
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    for name in list_models():
        assert name in printed


def test_unknown_model_lists_valid_ones(capsys):
    assert main(["fit", "--model", "nosuchmodel"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nosuchmodel'" in err and "sbf" in err and "Traceback" not in err


def test_checkpoint_of_another_model_is_refused(tmp_path, capsys):
    case = next(c for c in BASE_CASES if c[1] == "sbf")
    assert main(fit_args(*case, tmp_path) + ["--test_after_fit", "false"]) == 0
    checkpoint = next(tmp_path.rglob("*.ckpt"))
    capsys.readouterr()
    assert main(["test", "--model", "vanilla", "--ckpt_path", str(checkpoint), "--config", str(TINY_CONFIG)]) == 2
    err = capsys.readouterr().err
    assert "written by model 'sbf'" in err and "--model sbf" in err


def test_empty_test_split_is_a_clear_error(tmp_path, capsys):
    case = next(c for c in BASE_CASES if c[1] == "vanilla")
    args = fit_args(*case, tmp_path) + ["--data.init_args.num_patients", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "split is empty" in err and "--data.num_patients" in err


def test_unknown_config_key_is_rejected(tmp_path, capsys):
    args = ["fit", "--model", "sbf", "--model.no_such_option", "1", "--trainer.default_root_dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "unknown option --model.no_such_option" in err and "Traceback" not in err


def test_ablation_yamls_name_registered_models():
    assert all(name in list_models(include_hidden=True) for _, name, _ in CASES)
    assert len(CASE_IDS) == len(set(CASE_IDS))
