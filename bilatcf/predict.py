"""Writes what `bilatcf predict` produces: one CSV row per pair and the heatmaps (NPY and PNG)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning.callbacks import BasePredictionWriter

from bilatcf.models.outputs import require_output
from bilatcf.viz import heatmap_overlay

CSV_COLUMNS = ("image_id", "reference_id", "patient_id", "laterality", "view", "score", "pred", "label")


class PredictionWriter(BasePredictionWriter):
    """Write ``predictions.csv`` and ``heatmaps/<image_id>.{npy,png}`` into ``<run dir>/<dirname>``.

    Columns: ids, ``score`` (the task score: a probability, or the raw score of anomaly models), ``pred`` (the class at
    the model's operating threshold), ``label`` and one ``<head>_score`` per extra head.

    Args:
        dirname: folder (inside the run dir) receiving the predictions.
        heatmaps: also write the CAM (and explanation / counterfactual when the model has them) per pair.
    """

    def __init__(self, dirname: str = "predictions", heatmaps: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.dirname = dirname
        self.heatmaps = heatmaps
        self._rows: list[dict[str, Any]] = []

    def _folder(self, trainer) -> Path:
        folder = Path(trainer.log_dir or trainer.default_root_dir) / self.dirname
        (folder / "heatmaps").mkdir(parents=True, exist_ok=True)
        return folder

    def on_predict_start(self, trainer, pl_module) -> None:
        self._rows = []

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        import cv2

        output = require_output(prediction, "predict_step")
        labels = getattr(output.batch, getattr(pl_module, "label_field", "label"))
        folder = self._folder(trainer)
        for i, meta in enumerate(output.batch.meta):
            row = {
                "image_id": meta.get("image_id", f"{batch_idx}_{i}"),
                "reference_id": meta.get("reference_id", ""),
                "patient_id": meta.get("patient_id", ""),
                "laterality": meta.get("laterality", ""),
                "view": meta.get("view", ""),
                "score": f"{float(output.score[i]):.6f}",
                "pred": int(output.pred[i]),
                "label": int(labels[i]),
            }
            row.update({f"{name}_score": f"{float(score[i]):.6f}" for name, score in output.head_scores.items()})
            self._rows.append(row)
            if not self.heatmaps:
                continue
            stem = folder / "heatmaps" / str(row["image_id"])
            for key in ("cam", "explanation", "counterfactual"):
                value = getattr(output, key)
                if value is not None:
                    heatmap = value[i, 0].float().cpu().numpy()
                    np.save(f"{stem}_{key}.npy", heatmap.astype(np.float32))
                    if key == "counterfactual":
                        scaled = (heatmap - heatmap.min()) / max(float(heatmap.max() - heatmap.min()), 1e-8)
                        cv2.imwrite(f"{stem}_{key}.png", (scaled * 255).astype(np.uint8))
                    else:
                        heatmap_overlay(
                            output.batch.target[i, 0], heatmap, f"{stem}_{key}.png", title=f"{stem.name} {key}"
                        )

    def on_predict_end(self, trainer, pl_module) -> None:
        folder = self._folder(trainer)
        path = folder / (f"predictions_rank{trainer.global_rank}.csv" if trainer.world_size > 1 else "predictions.csv")
        with open(path, "w", newline="") as handle:
            heads = [f"{name}_score" for name in getattr(pl_module, "extra_heads", {})]
            writer = csv.DictWriter(handle, fieldnames=(*CSV_COLUMNS, *heads))
            writer.writeheader()
            writer.writerows(self._rows)
        if trainer.global_rank == 0:
            print(f"predictions: {path}")
