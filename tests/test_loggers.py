"""Loggers: CSV and TensorBoard in one run folder by default (continued on resume), and Weights & Biases offline."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml
from jsonargparse import Namespace

from bilatcf.cli import main
from bilatcf.errors import MissingDependencyError
from bilatcf.loggers import log_images, prepare_loggers
from tests.conftest import REPO, TINY_CONFIG

TINY_SBF = ["--config", str(TINY_CONFIG), "--model", "sbf", "--model.backbone", "test_resnet"]
CSV = "pytorch_lightning.loggers.CSVLogger"
TENSORBOARD = "pytorch_lightning.loggers.TensorBoardLogger"
WANDB = "pytorch_lightning.loggers.WandbLogger"


def entry(class_path: str, **init_args) -> Namespace:
    defaults = {"save_dir": ".", "dir": None} if class_path == WANDB else {"name": "lightning_logs", "version": None}
    return Namespace(class_path=class_path, init_args=Namespace(**{**defaults, **init_args}))


def tiny_pngs(folder: Path, count: int = 2) -> list[Path]:
    """``count`` different 8×6 PNG files (W&B stores identical images once)."""
    paths = []
    for index in range(count):
        image = np.zeros((8, 6, 3), np.uint8)
        image[2:6, 1:4] = (0, 0, 255 - 50 * index)  # a red square (BGR), a different shade per file
        paths.append(folder / f"figure_{index}.png")
        cv2.imwrite(str(paths[-1]), image)
    return paths


# ------------------------------------------------------------------------------------------------ folders
def test_loggers_share_one_version_after_the_existing_ones(tmp_path):
    for n in (0, 2):
        (tmp_path / "lightning_logs" / f"version_{n}").mkdir(parents=True)
    given = [entry(CSV, save_dir=str(tmp_path)), entry(TENSORBOARD, save_dir=str(tmp_path))]
    prepared = prepare_loggers(given, tmp_path)
    assert [e.init_args.version for e in prepared] == [3, 3]
    assert [e.init_args.version for e in given] == [None, None]  # the parsed config is left as given


def test_a_resumed_run_continues_in_the_checkpoints_folder_and_wandb_writes_there(tmp_path):
    run_dir = tmp_path / "elsewhere" / "lightning_logs" / "version_7"
    given = [entry(WANDB), entry(CSV, save_dir="runs"), entry(TENSORBOARD, save_dir="runs", name="other")]
    wandb, csv_logger, other = prepare_loggers(given, "runs", resume_dir=run_dir)
    assert (csv_logger.init_args.save_dir, csv_logger.init_args.version) == (str(run_dir.parent.parent), "version_7")
    assert (other.init_args.save_dir, other.init_args.version) == ("runs", 0)  # another name: a folder of its own
    assert wandb.init_args.save_dir == str(run_dir)


def test_wandb_alone_gets_a_run_folder_under_the_root(tmp_path):
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)
    explicit = entry(WANDB, save_dir=str(tmp_path / "mine"))
    default, kept = prepare_loggers([entry(WANDB), explicit], tmp_path)
    assert default.init_args.save_dir == str(tmp_path / "lightning_logs" / "version_1")
    assert kept.init_args.save_dir == str(tmp_path / "mine")


def test_print_config_shows_the_default_loggers_under_the_run_root(tmp_path, capsys):
    assert main(["fit", "--model", "sbf", "--trainer.default_root_dir", str(tmp_path), "--print_config"]) == 0
    loggers = yaml.safe_load(capsys.readouterr().out)["trainer"]["logger"]
    assert [(lg["class_path"], lg["init_args"]["save_dir"]) for lg in loggers] == [
        (CSV, str(tmp_path)),
        (TENSORBOARD, str(tmp_path)),
    ]


def test_wandb_logger_without_wandb_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails as if it were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'bilatcf\[wandb\]'"):
        prepare_loggers([entry(WANDB)], tmp_path)
    args = ["fit", *TINY_SBF, "--trainer.logger", "WandbLogger", "--trainer.default_root_dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "pip install 'bilatcf[wandb]'" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------ default run
def test_default_run_logs_csv_and_tensorboard_in_one_folder_and_resume_continues_there(tmp_path):
    base = ["fit", *TINY_SBF, "--trainer.default_root_dir", str(tmp_path), "--test_after_fit", "false"]
    assert main(base) == 0
    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]
    assert {"config.yaml", "metrics.csv", "checkpoints"} <= {p.name for p in run_dir.iterdir()}
    first_events = sorted(run_dir.glob("events.out.tfevents.*"))
    assert first_events

    assert main([*base, "--ckpt_path", "last", "--trainer.max_epochs", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) > len(first_events)
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert {row["epoch"] for row in rows if row.get("val/auc")} == {"0", "1"}  # epoch 0's rows were kept


@pytest.mark.slow
def test_ddp_fit_with_default_loggers_writes_one_run_folder(tmp_path):
    # Each process builds its own loggers; rank 0's folder is the run's, and the run ends with its summary.
    args = [*TINY_SBF, "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    result = subprocess.run(
        [sys.executable, "-m", "bilatcf.cli", "fit", *args, "--trainer.default_root_dir", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sync_dist=True" not in result.stderr  # the test metrics are synchronised by torchmetrics, and say so
    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert f"run dir: {run_dir}" in result.stdout
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]
    assert {"metrics.csv", "metrics.json", "config.yaml", "checkpoints"} <= {p.name for p in run_dir.iterdir()}
    assert list(run_dir.glob("events.out.tfevents.*"))


# ------------------------------------------------------------------------------------------------ figures
def test_log_images_sends_one_tensorboard_image_per_file(tmp_path):
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tensorboard = TensorBoardLogger(tmp_path, name="", version="run")
    trainer = SimpleNamespace(is_global_zero=True, loggers=[CSVLogger(tmp_path), tensorboard])
    paths = tiny_pngs(tmp_path)
    log_images(trainer, "figures/test", paths, step=3)
    tensorboard.experiment.flush()
    events = EventAccumulator(tensorboard.log_dir)
    events.Reload()
    assert events.Tags()["images"] == ["figures/test/000", "figures/test/001"]
    image = events.Images("figures/test/001")[0]
    assert (image.step, image.width, image.height) == (3, 6, 8)


# ------------------------------------------------------------------------------------------------ Weights & Biases
def wandb_records(run_dir: Path) -> list:
    """The records of a W&B offline run file (``run-<id>.wandb``: a LevelDB-style log of protobuf records, in 32 KiB
    blocks after a 7-byte header); wandb 0.31 writes no files/config.yaml or wandb-summary.json offline."""
    from wandb.proto import wandb_internal_pb2

    data = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # the block's tail is padding
            position += left
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last fragment of one
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def logged_keys(records: list, kind: str) -> set[str]:
    items = [
        item
        for record in records
        if record.WhichOneof("record_type") == kind
        for item in (record.history.item if kind == "history" else record.config.update)
    ]
    return {item.key or "/".join(item.nested_key) for item in items}


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B in offline mode, in a working directory of its own; ``close()`` ends the run and waits until its file is
    written (``wandb.finish`` alone returns before the service has written it)."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.chdir(tmp_path)

    def close() -> None:
        wandb.finish()
        wandb.teardown()

    yield SimpleNamespace(close=close)
    close()


def test_log_images_sends_the_files_to_wandb(tmp_path, offline_wandb):
    from pytorch_lightning.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path / "run"))
    paths = tiny_pngs(tmp_path)
    log_images(SimpleNamespace(is_global_zero=True, loggers=[logger]), "figures/test", paths, step=3)
    offline_wandb.close()
    run = next((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(list((run / "files" / "media" / "images" / "figures").glob("test_*.png"))) == 2
    assert {"figures/test/count", "trainer/global_step"} <= logged_keys(wandb_records(run), "history")


def test_fit_with_wandb_offline_logs_metrics_and_config_into_the_run_folder(tmp_path, offline_wandb):
    assert main(["fit", *TINY_SBF, "--trainer.logger", "WandbLogger"]) == 0
    offline_wandb.close()
    run_dir = tmp_path / "runs" / "lightning_logs" / "version_0"
    assert {"config.yaml", "metrics.json", "checkpoints", "figures", "wandb"} <= {p.name for p in run_dir.iterdir()}
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and json.loads((run_dir / "metrics.json").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing in the working directory itself
    records = wandb_records(next((run_dir / "wandb").glob("offline-run-*")))
    assert {"train/loss", "val/auc", "test/auc"} <= logged_keys(records, "history")
    assert {"model", "data", "trainer", "seed_everything"} <= logged_keys(records, "config")
