"""Figures: heatmap overlays as `bilatcf predict` writes them, and the pair panels of figures and explain."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from bilatcf.errors import DataError
from bilatcf.metrics.callbacks import figure_sample
from bilatcf.models.outputs import BilateralOutput
from bilatcf.predict import PredictionWriter
from bilatcf.viz import heatmap_overlay, pair_panel


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


def test_target_and_reference_share_one_grey_window(tmp_path):
    # A brighter target and a darker reference: with one window the target is white and the reference black; windows
    # of their own would draw both mid-grey.
    sample = {"target": torch.full((1, 1, 64, 64), 0.6), "reference": torch.full((1, 1, 64, 64), 0.2)}
    sample["target"][..., :8] = 0.2  # the window spans both images' values: 0.2 to 0.6
    panel = cv2.imread(str(pair_panel(sample, tmp_path / "window.png")), cv2.IMREAD_GRAYSCALE)
    middle = panel.shape[0] // 2 + 20  # below the titles
    assert panel[middle, 200] > 250 and panel[middle, 360 + 180] < 5


def test_feature_methods_get_a_feature_residual_at_image_size(tmp_path):
    features = torch.zeros(2, 4, 8, 4)
    cf_features = features.clone()
    cf_features[1] -= 0.5  # pair 1: |H_T - H_C| = 0.5 in each of 4 channels, L2 norm 1.0
    batch = SimpleNamespace(
        target=torch.rand(2, 1, 64, 32),
        reference=torch.rand(2, 1, 64, 32),
        target_mask=torch.zeros(2, 1, 64, 32),
        has_mask=torch.zeros(2),
        label=torch.tensor([0, 1]),
        has_healthy=torch.zeros(2),
        meta=[{"patient_id": "P1", "laterality": "L", "view": "CC"}, {"patient_id": "P1", "laterality": "R"}],
    )
    output = BilateralOutput(
        logits=torch.zeros(2),
        cam=torch.rand(2, 1, 64, 32),
        target_features=features,
        cf_features=cf_features,
        score=torch.tensor([0.3, 0.7]),
        batch=batch,
    )
    sample = figure_sample(output, 1)
    assert sample["feature_residual"].shape == (1, 1, 64, 32)
    assert torch.allclose(sample["feature_residual"], torch.ones(1, 1, 64, 32))
    assert "feature_residual" not in figure_sample(output.replace(counterfactual=batch.target), 1)
    path = pair_panel(sample, tmp_path / "feature.png", score_name="score")
    assert is_colour(path) and cv2.imread(str(path)).shape[0] == 360
