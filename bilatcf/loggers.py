"""Experiment loggers of a run: where they write, and what bilatcf sends them besides Lightning's metrics.

Every run has one folder, ``<default_root_dir>/lightning_logs/version_N/`` (``runs/`` by default): config.yaml,
metrics.json, figures/, checkpoints/, CSV (``metrics.csv``) and TensorBoard (``events.out.tfevents.*``) logs, and the
``wandb/`` folder of a Weights & Biases run. Lightning computes a logger's folder on its own, logger by logger, so
:func:`prepare_loggers` fills the logger options in before the loggers are built (one version number for all, the
checkpoint's folder when a run resumes) and :func:`settle_run_folder` points the rest of the run at that folder.

Figures go to every logger that takes images (:func:`log_images`). Loggers are duck-typed, so a logger bilatcf does not
know is skipped rather than an error: a ``WandbLogger`` has ``log_image``; a ``TensorBoardLogger``'s ``experiment`` has
``add_image``; a ``CSVLogger`` has neither.
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from bilatcf.errors import MissingDependencyError

#: The folder of the run folders under the root (``<root>/lightning_logs/version_N``): the default loggers' ``name``.
RUNS_NAME = "lightning_logs"
#: Loggers whose folder is ``<save_dir>/<name>/<version>`` (Lightning's ``trainer.log_dir`` is that folder).
FOLDER_LOGGERS = (CSVLogger, TensorBoardLogger)


# ------------------------------------------------------------------------------------------------ before building
def prepare_loggers(config: Any, root: str | os.PathLike, resume_dir: Path | None = None) -> Any:
    """A copy of the ``trainer.logger`` config with the folders filled in, so every logger writes to one run folder.

    * CSV and TensorBoard loggers without a ``version`` that share a ``<save_dir>/<name>`` get one version number,
      chosen here once (each logger would otherwise count the existing folders on its own, whenever it first needs
      its folder, and one that counts after the other has created its folder picks the next number).
    * When ``fit`` resumes, those that write under ``root`` (or the checkpoint's root) with the ``name`` of the
      checkpoint's run folder ``resume_dir`` (``<root>/<name>/<version>``) continue in that folder.
    * A ``WandbLogger`` left at ``save_dir: .`` writes its ``wandb/`` folder into the run folder, not into the
      current directory: the folder of the first CSV/TensorBoard logger, else ``resume_dir`` or a new
      ``<root>/lightning_logs/version_N``.

    Args:
        config: the parsed ``trainer.logger`` value: ``None``, a bool, or one or a list of ``class_path``/``init_args``
            entries.
        root: ``--trainer.default_root_dir``.
        resume_dir: the run folder of the checkpoint ``fit`` resumes from, if any.

    Raises:
        MissingDependencyError: a ``WandbLogger`` without the ``wandb`` package.
    """
    if config is None or isinstance(config, bool):
        return config
    config = copy.deepcopy(config)
    entries = config if isinstance(config, list) else [config]
    classes = [_logger_class(entry) for entry in entries]
    versions: dict[tuple[str, str], Any] = {}
    run_dir = None
    for entry, cls in zip(entries, classes):
        if cls is None or not issubclass(cls, FOLDER_LOGGERS):
            continue
        args = entry.init_args
        if args.get("version") is None and _continues(args, root, resume_dir):
            args.save_dir, args.version = str(resume_dir.parent.parent), resume_dir.name
        if args.get("version") is None:
            key = (str(args.save_dir), str(args.get("name") or ""))
            if key not in versions:
                versions[key] = _next_version(Path(*key))
            args.version = versions[key]
        if run_dir is None:
            run_dir = _folder(args.save_dir, args.get("name"), args.version)
    for entry, cls in zip(entries, classes):
        if cls is None or not issubclass(cls, WandbLogger):
            continue
        if importlib.util.find_spec("wandb") is None:
            raise MissingDependencyError("wandb", "--trainer.logger WandbLogger (Weights & Biases)", extra="wandb")
        args = entry.init_args
        if args.get("save_dir") in (None, ".") and args.get("dir") is None:
            run_dir = run_dir or resume_dir or _folder(root, RUNS_NAME, _next_version(Path(root, RUNS_NAME)))
            args.save_dir = str(run_dir)
    return config


def _continues(args: Any, root: str | os.PathLike, resume_dir: Path | None) -> bool:
    if resume_dir is None or args.get("name") != resume_dir.parent.name:
        return False
    save_dir = os.path.abspath(str(args.save_dir))
    return save_dir in (os.path.abspath(root), os.path.abspath(resume_dir.parent.parent))


def _logger_class(entry: Any) -> type | None:
    class_path = entry.get("class_path") if hasattr(entry, "get") else None
    if not class_path or entry.get("init_args") is None:
        return None
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None  # the parser has accepted it; Lightning reports what is wrong when it builds it
    return cls if isinstance(cls, type) else None


def _next_version(folder: Path) -> int:
    """Lightning's rule: one more than the highest ``version_<n>`` folder in ``folder`` (0 when there is none)."""
    numbers = [
        int(match.group(1))
        for path in (folder.iterdir() if folder.is_dir() else [])
        if path.is_dir() and (match := re.fullmatch(r"version_(\d+)", path.name))
    ]
    return max(numbers, default=-1) + 1


def _folder(save_dir: Any, name: Any, version: Any) -> Path:
    return Path(str(save_dir), str(name or ""), version if isinstance(version, str) else f"version_{version}")


# ------------------------------------------------------------------------------------------------ after building
def settle_run_folder(trainer: Any) -> None:
    """Point checkpoints at the run folder and open the CSV logs, right after the trainer is built.

    * Lightning puts checkpoints in ``<save_dir>/<name>/<version>/checkpoints`` of the first logger. For CSV and
      TensorBoard that is ``trainer.log_dir``; for any other first logger (a ``WandbLogger``: ``<save_dir>/<project>/
      <run id>``) it is not, while ``trainer.log_dir`` (config.yaml, metrics.json, figures) is its ``save_dir``. So a
      ``ModelCheckpoint`` without ``dirpath`` writes to ``<save_dir>/checkpoints`` then, in the run folder.
    * A CSV logger deletes the ``metrics.csv`` it finds in its folder when it starts; a resumed run keeps the rows
      logged before and appends its own.
    """
    from lightning_fabric.utilities.rank_zero import rank_zero_only
    from pytorch_lightning.callbacks import ModelCheckpoint

    loggers = list(getattr(trainer, "loggers", []))
    if loggers and not isinstance(loggers[0], FOLDER_LOGGERS):
        folder = Path(loggers[0].save_dir or trainer.default_root_dir)
        for callback in trainer.callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = str(folder / "checkpoints")
    if rank_zero_only.rank != 0:
        return
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            _open_keeping_rows(logger)


def _open_keeping_rows(logger: CSVLogger) -> None:
    path = Path(logger.log_dir) / "metrics.csv"
    rows = []
    if path.is_file():
        with path.open(newline="") as file:
            rows = list(csv.DictReader(file))
    with warnings.catch_warnings():
        # "... exists and is not empty. Previous log files ... will be deleted": not the rows read above.
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
        writer = logger.experiment
    if rows:
        writer.metrics.extend(rows)
        writer.save()


class RunConfigCallback(SaveConfigCallback):
    """Saves ``config.yaml`` in the run folder (Lightning's callback) and sends the full parsed config (model, data,
    trainer options) once to every logger that keeps no files in the run folder (Weights & Biases, ...), so an
    online run shows how it was made. CSV and TensorBoard already get the model's hyper-parameters from Lightning and
    have config.yaml beside them."""

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        loggers = [logger for logger in trainer.loggers if not isinstance(logger, FOLDER_LOGGERS)]
        if not loggers:
            return
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in loggers:
            logger.log_hyperparams(config)


# ------------------------------------------------------------------------------------------------ figures
def _read_png(path: Path) -> np.ndarray:
    """An RGB uint8 [H, W, 3] array of a PNG file."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read the figure {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def log_images(trainer: Any, key: str, paths: Sequence[str | Path], step: int) -> None:
    """Log the PNG files ``paths`` under ``key`` to every logger of ``trainer`` that takes images (rank 0 only).

    Weights & Biases gets one list of images under ``key``; TensorBoard one image per file, ``key/000``, ``key/001``...
    """
    if not paths or not getattr(trainer, "is_global_zero", True):
        return
    images = None
    for logger in getattr(trainer, "loggers", []):
        if hasattr(logger, "log_image"):  # Weights & Biases
            logger.log_image(key=key, images=[str(path) for path in paths], step=step)
            continue
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_image"):  # TensorBoard
            images = images if images is not None else [_read_png(Path(path)) for path in paths]
            for index, image in enumerate(images):
                experiment.add_image(f"{key}/{index:03d}", image, global_step=step, dataformats="HWC")
