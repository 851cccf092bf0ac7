"""Callbacks that CLI tests add with ``--trainer.callbacks+=...`` to steer a run from outside."""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
import torch


class DecreasingValAUC(pl.Callback):
    """Replace the logged ``val/auc`` by 1.0, 0.9, 0.8, … (epoch 0, 1, 2, …): a metric that never improves again."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            trainer.callback_metrics["val/auc"] = torch.tensor(1.0 - 0.1 * trainer.current_epoch)


class PauseAtEpoch(pl.Callback):
    """At the start of epoch ``epoch`` write ``marker`` and sleep, so a test can kill the run at a known point."""

    def __init__(self, marker: str, epoch: int = 1, seconds: float = 600.0) -> None:
        self.marker = marker
        self.epoch = epoch
        self.seconds = seconds

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            Path(self.marker).write_text(str(trainer.global_step))
            time.sleep(self.seconds)
