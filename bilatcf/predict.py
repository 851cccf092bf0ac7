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


#: What a file-read image's meta carries of its preprocessing (PreprocessInfo); synthetic images carry other keys.
GEOMETRY_KEYS = {"original_size", "crop_box", "flipped", "scale", "pad"}
#: Rows of the original-geometry overlay PNGs at most (the NPY keeps the full resolution).
OVERLAY_MAX_ROWS = 1024


def original_image(meta: dict[str, Any]) -> np.ndarray | None:
    """The pair's target as its file holds it (decoded once per pair), or None for an image not read from a file."""
    from bilatcf.data.io import read_image

    return read_image(meta["path"]) if GEOMETRY_KEYS <= meta.keys() and meta.get("path") else None


def write_original_geometry(
    heatmap: np.ndarray, meta: dict[str, Any], image: np.ndarray, stem: str, title: str
) -> None:
    """``<stem>.npy``: the map in the original file's pixels (:func:`~bilatcf.data.preprocess.unmap_map`);
    ``<stem>.png``: it over the original ``image``, at most :data:`OVERLAY_MAX_ROWS` rows."""
    import cv2

    from bilatcf.data.preprocess import PreprocessInfo, unmap_map

    original = unmap_map(heatmap, PreprocessInfo.from_dict(meta))
    np.save(f"{stem}.npy", original)
    factor = max(1.0, image.shape[0] / OVERLAY_MAX_ROWS)
    size = (max(1, round(image.shape[1] / factor)), max(1, round(image.shape[0] / factor)))
    shrink = (lambda a: cv2.resize(a, size, interpolation=cv2.INTER_AREA)) if factor > 1 else (lambda a: a)
    heatmap_overlay(shrink(image), shrink(original), f"{stem}.png", title=f"{title}, original geometry")


class PredictionWriter(BasePredictionWriter):
    """Write ``predictions.csv`` and ``heatmaps/<image_id>.{npy,png}`` into ``<run dir>/<dirname>``.

    Columns: ids, ``score`` (the task score: a probability, or the raw score of anomaly models), ``pred`` (the class at
    the model's operating threshold), ``label`` and one ``<head>_score`` per extra head. For images read from files,
    the CAM and explanation are also written in the original file's geometry (``<image_id>_<map>_original.{npy,png}``:
    padding, resize, flip and crop undone).

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
            source = original_image(meta)
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
                        if source is not None:
                            write_original_geometry(
                                heatmap, meta, source, f"{stem}_{key}_original", f"{stem.name} {key}"
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
