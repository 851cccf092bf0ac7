"""Heatmap overlays: a readable colour PNG of a map over its image, as `bilatcf predict` writes them."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from bilatcf.errors import DataError
from bilatcf.models.outputs import BilateralOutput
from bilatcf.predict import PredictionWriter
from bilatcf.viz import heatmap_overlay


def is_colour(path) -> bool:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return bool((image[..., 0] != image[..., 2]).any())


def test_heatmap_overlay_writes_a_colour_png_at_least_the_image_size(tmp_path):
    image = np.linspace(0.0, 1.0, 64 * 32, dtype=np.float32).reshape(64, 32)
    heatmap = torch.zeros(16, 8)  # a smaller map is resized to the image
    heatmap[4:8, 2:5] = 3.0
    path = heatmap_overlay(torch.from_numpy(image), heatmap, tmp_path / "sub" / "cam.png", title="P00001 L CC")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert written.shape[0] >= 64 and written.shape[1] >= 32
    assert is_colour(path)


def test_a_flat_heatmap_and_a_wrong_shape(tmp_path):
    assert heatmap_overlay(np.ones((64, 32)), np.zeros((64, 32)), tmp_path / "flat.png").is_file()
    with pytest.raises(DataError, match="heatmap_overlay heatmap has shape"):
        heatmap_overlay(np.ones((64, 32)), np.zeros((1, 64, 32)), tmp_path / "bad.png")


def test_predict_writes_cam_and_explanation_overlays_and_a_grey_counterfactual(tmp_path):
    target = torch.rand(2, 1, 64, 32)
    batch = SimpleNamespace(
        meta=[{"image_id": "P1_L_CC"}, {"image_id": "P1_R_CC"}], target=target, label=torch.tensor([0, 1])
    )
    prediction = BilateralOutput(
        logits=torch.tensor([-1.0, 2.0]),
        cam=torch.rand(2, 1, 64, 32),
        explanation=torch.randn(2, 1, 64, 32),
        counterfactual=target * 0.9,
        score=torch.tensor([0.2, 0.9]),
        pred=torch.tensor([0, 1]),
        batch=batch,
    )
    trainer = SimpleNamespace(log_dir=str(tmp_path), default_root_dir=str(tmp_path))
    PredictionWriter().write_on_batch_end(trainer, SimpleNamespace(), prediction, None, None, 0, 0)
    heatmaps = tmp_path / "predictions" / "heatmaps"
    for stem in ("P1_L_CC", "P1_R_CC"):
        assert is_colour(heatmaps / f"{stem}_cam.png") and is_colour(heatmaps / f"{stem}_explanation.png")
        assert not is_colour(heatmaps / f"{stem}_counterfactual.png")
        assert np.load(heatmaps / f"{stem}_cam.npy").shape == (64, 32)
