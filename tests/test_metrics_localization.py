"""Localization metrics on hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from bilatcf.metrics import (
    SegmentationScores,
    ThresholdAccuracy,
    TopOneLocError,
    binarize_map,
    box_iou,
    heatmap_to_box,
    overlap_scores,
    threshold_rule,
)


def _two_blobs() -> torch.Tensor:
    cam = torch.zeros(10, 12)
    cam[1:3, 1:3] = 1.0  # small, strong blob: 4 pixels
    cam[5:9, 6:11] = 0.5  # large, weaker blob: 20 pixels
    return cam


def test_heatmap_box_is_the_largest_component():
    assert heatmap_to_box(_two_blobs(), threshold=0.2) == (6.0, 5.0, 11.0, 9.0)


def test_heatmap_box_threshold_is_relative_to_the_maximum():
    # 0.5 is not above 0.6 × max = 0.6: only the small blob survives.
    assert heatmap_to_box(_two_blobs(), threshold=0.6) == (1.0, 1.0, 3.0, 3.0)
    assert heatmap_to_box(_two_blobs().numpy() * 7, threshold=0.6) == (1.0, 1.0, 3.0, 3.0)


def test_heatmap_box_of_an_empty_map_is_none():
    assert heatmap_to_box(torch.zeros(8, 8)) is None


def test_diagonal_pixels_are_one_component():
    cam = np.zeros((6, 6), dtype=np.float32)
    cam[1, 1] = cam[2, 2] = cam[3, 3] = 1.0  # 8-connected diagonal: 3 pixels, beats the 2-pixel blob
    cam[0, 4:6] = 1.0
    assert heatmap_to_box(cam) == (1.0, 1.0, 4.0, 4.0)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 2, 2), (1, 1, 3, 3), 1 / 7),  # intersection 1, union 4 + 4 − 1
        ((0, 0, 2, 2), (2, 0, 4, 2), 0.0),  # touching edges
        ((1, 2, 5, 4), (1, 2, 5, 4), 1.0),
        ((0, 0, 4, 4), (0, 0, 2, 1), 2 / 16),  # contained
    ],
)
def test_box_iou(a, b, expected):
    assert box_iou(a, b) == pytest.approx(expected)


def _blob_cam(size: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    cam = torch.zeros(1, size, size)
    x0, y0, x1, y1 = box
    cam[0, y0:y1, x0:x1] = 1.0
    return cam


def test_top1_loc_error_needs_right_class_and_overlap():
    gt = [0.0, 0.0, 4.0, 4.0]
    cams = torch.stack(
        [
            _blob_cam(16, (0, 0, 4, 4)),  # right class, on the lesion → correct
            _blob_cam(16, (10, 10, 14, 14)),  # right class, elsewhere → wrong
            _blob_cam(16, (0, 0, 4, 4)),  # on the lesion, wrong class → wrong
            _blob_cam(16, (0, 0, 2, 1)),  # right class, IoU 2/16 = 0.125 >= 0.1 → correct
            _blob_cam(16, (0, 0, 1, 1)),  # right class, IoU 1/16 < 0.1 → wrong
            _blob_cam(16, (0, 0, 4, 4)),  # no GT box → not counted
            _blob_cam(16, (0, 0, 4, 4)),  # unknown label → not counted
        ]
    )
    pred = torch.tensor([1, 0, 1, 1, 0, 1, 1])
    label = torch.tensor([1, 0, 0, 1, 0, 1, -1])
    boxes = [[gt], [gt], [gt], [[9.0, 9.0, 10.0, 10.0], gt], [gt], [], [gt]]
    metric = TopOneLocError()
    metric.update(cams, pred, label, boxes)
    assert float(metric.compute()) == pytest.approx(1 - 2 / 5)


def test_top1_loc_error_without_annotations_is_nan():
    metric = TopOneLocError()
    metric.update(torch.zeros(1, 1, 8, 8), torch.tensor([1]), torch.tensor([1]), [[]])
    assert math.isnan(metric.compute())


def _segmentation_case():
    heat = torch.zeros(4, 1, 4, 4)
    heat[0, 0] = torch.tensor([[0, 0, 0, 0], [0, 8, 9, 0], [0, 7, 2, 0], [0, 0, 0, 0]], dtype=torch.float32)
    mask = torch.zeros(4, 1, 4, 4)
    mask[0, 0, 1:3, 2:4] = 1  # G = {(1,2), (1,3), (2,2), (2,3)}; P = {(1,1), (1,2), (2,1)} → |P∩G| = 1
    mask[1, 0, 0:2, 0:3] = 1
    heat[1] = 10 + 5 * mask[1]  # offset and scale do not matter: P = G
    mask[2, 0, 0, 0] = 1  # has_mask False → skipped
    has_mask = torch.tensor([True, True, False, True])  # image 3: known but empty mask → skipped
    return heat, mask, has_mask


def test_binarize_is_min_max_normalised_and_constant_maps_are_empty():
    heat, _, _ = _segmentation_case()
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1, 1] = expected[1, 2] = expected[2, 1] = True  # 8, 9, 7 > 4.5
    assert torch.equal(binarize_map(heat)[0, 0], expected)
    assert not binarize_map(torch.full((1, 1, 4, 4), 3.0)).any()
    assert threshold_rule(0.5) == "map min-max normalised per image to [0, 1], foreground = value > 0.5"


def test_overlap_scores_by_hand():
    heat, mask, _ = _segmentation_case()
    iou, ior, dice = overlap_scores(heat[:2], mask[:2])
    assert iou.tolist() == pytest.approx([1 / 6, 1.0])  # |P∪G| = 3 + 4 − 1
    assert ior.tolist() == pytest.approx([1 / 4, 1.0])
    assert dice.tolist() == pytest.approx([2 / 7, 1.0])


def test_segmentation_scores_mean_over_annotated_images():
    metric = SegmentationScores()
    metric.update(*_segmentation_case())
    result = {k: float(v) for k, v in metric.compute().items()}
    assert result == pytest.approx({"iou": (1 / 6 + 1) / 2, "ior": (1 / 4 + 1) / 2, "dice": (2 / 7 + 1) / 2})


def test_threshold_accuracy_by_hand():
    metric = ThresholdAccuracy()
    metric.update(*_segmentation_case())
    result = {k: float(v) for k, v in metric.compute().items()}
    # IoUs 1/6 and 1: both pass T = 0.1, only the second passes 0.2 … 0.7 → (1 + 6 × 0.5) / 7.
    # IoRs 0.25 and 1: both pass 0.1 and 0.25 (equality counts), one passes 0.5, 0.75, 0.9 → (1 + 1 + 3 × 0.5) / 5.
    assert result == pytest.approx({"mean_tiou": 4 / 7, "mean_tior": 0.7})


def test_segmentation_without_annotations_is_nan():
    metric = SegmentationScores()
    metric.update(torch.rand(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.tensor([True, False]))
    assert all(math.isnan(v) for v in metric.compute().values())
