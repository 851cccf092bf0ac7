"""Sending figures to whichever experiment loggers a trainer has (TensorBoard, Weights & Biases), next to the PNG
files the callbacks always write.

Loggers are duck-typed, so a logger bilatcf does not know is skipped rather than an error: a ``WandbLogger`` has
``log_image``; a ``TensorBoardLogger``'s ``experiment`` has ``add_image``; a ``CSVLogger`` has neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _read_png(path: Path) -> np.ndarray:
    """An RGB uint8 [H, W, 3] array of a PNG file."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read the figure {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def log_images(trainer: Any, key: str, paths: Sequence[str | Path], step: int) -> None:
    """Log the PNG files ``paths`` under ``key`` to every logger of ``trainer`` that takes images (rank 0 only)."""
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
