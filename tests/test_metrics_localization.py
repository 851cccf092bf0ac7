"""Localization metrics on hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from bilatcf.metrics import (
    POINTING_TOLERANCE,
    MapAveragePrecision,
    PointingGame,
    SegmentationScores,
    ThresholdAccuracy,
    TopOneLocError,
    binarize_map,
    box_iou,
    box_pixels,
    heatmap_to_box,
    overlap_scores,
    pointing_hit,
    pointing_rule,
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


def test_map_average_precision_by_hand():
    metric = MapAveragePrecision()
    metric.update(*_segmentation_case())
    # Image 0 ranks its pixels 9 (lesion), 8, 7, 2 (lesion), then twelve tied 0s holding the other two lesion pixels:
    # AP = ΔR·P summed = 1/4 · 1 + 1/4 · 2/4 + 2/4 · 4/16 = 0.5. Image 1's map is its mask (AP 1); 2 and 3 are skipped.
    assert float(metric.compute()) == pytest.approx((0.5 + 1.0) / 2)


def test_map_average_precision_of_a_constant_map_is_the_lesion_share_and_needs_annotations():
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, :1] = 1  # 4 of 16 pixels
    metric = MapAveragePrecision()
    metric.update(torch.full((1, 1, 4, 4), 3.0), mask, torch.tensor([True]))
    assert float(metric.compute()) == pytest.approx(0.25)
    empty = MapAveragePrecision()
    empty.update(torch.rand(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.tensor([True, False]))
    assert math.isnan(float(empty.compute()))


# ------------------------------------------------------------------------------------------------ pointing game
# 32 x 16 images; the lesion is the 3 x 3 square of rows 10–12, columns 4–6; tolerance 0.125 x 32 = 4 px.
POINT_SIZE, POINT_TOLERANCE = (32, 16), 0.125


def _lesion() -> torch.Tensor:
    mask = torch.zeros(POINT_SIZE)
    mask[10:13, 4:7] = 1.0
    return mask


def _peak_at(row: int, col: int) -> torch.Tensor:
    """Noise in [0, 0.5) with a single maximum 1 at (row, col)."""
    heat = torch.rand(POINT_SIZE, generator=torch.Generator().manual_seed(row * 100 + col)) * 0.5
    heat[row, col] = 1.0
    return heat


@pytest.mark.parametrize(
    ("row", "col", "credit"),
    [
        (11, 5, 1.0),  # on the lesion
        (12, 4, 1.0),  # on its corner pixel
        (11, 10, 1.0),  # 4 px right of column 6: the tolerance is inclusive
        (11, 11, 0.0),  # 5 px right
        (15, 8, 1.0),  # 3 px below and 2 px right of the corner (12, 6): sqrt(13) <= 4
        (15, 9, 0.0),  # 3 px below and 3 px right: sqrt(18) > 4
        (0, 0, 0.0),  # far away
    ],
)
def test_pointing_hit_is_the_peak_within_the_tolerance_of_a_lesion_pixel(row, col, credit):
    assert pointing_hit(_peak_at(row, col), _lesion() > 0.5, tolerance_px=4.0) == credit


def test_pointing_ties_share_the_credit_and_a_constant_map_misses():
    heat = torch.zeros(POINT_SIZE)
    heat[11, 5] = heat[0, 0] = 1.0  # one maximum on the lesion, one far away
    assert pointing_hit(heat, _lesion() > 0.5, 4.0) == 0.5
    assert pointing_hit(torch.full(POINT_SIZE, 3.0), _lesion() > 0.5, 4.0) == 0.0
    assert pointing_hit(torch.full(POINT_SIZE, float("nan")), _lesion() > 0.5, 4.0) == 0.0


def test_box_pixels_are_those_whose_centre_is_inside():
    region = box_pixels([[2.0, 1.0, 5.0, 3.0], [10.2, 20.6, 10.4, 20.9]], POINT_SIZE)
    expected = torch.zeros(POINT_SIZE, dtype=torch.bool)
    expected[1:3, 2:5] = True  # columns 2..4, rows 1..2
    expected[20, 10] = True  # a box too thin to hold a pixel centre keeps the pixel around its centre
    assert torch.equal(region, expected)
    assert not box_pixels([], POINT_SIZE).any()


def test_pointing_game_counts_positive_targets_with_a_gt_and_reads_boxes_without_a_mask():
    lesion, empty = _lesion(), torch.zeros(POINT_SIZE)
    box = [4.0, 10.0, 7.0, 13.0]  # the same 3 x 3 square as a box
    rows = [
        # (map, label, mask, has_mask, boxes)
        (_peak_at(11, 5), 1, lesion, True, [box]),  # hit
        (_peak_at(0, 0), 1, lesion, True, [box]),  # miss
        (_peak_at(11, 10), 1, empty, False, [box]),  # box only: 4 px right of the box's last column → hit
        (_peak_at(11, 11), 1, empty, False, [box]),  # box only: 5 px → miss
        (_peak_at(25, 12), 1, lesion, True, [[12.0, 25.0, 13.0, 26.0]]),  # the mask wins over a box elsewhere → miss
        (_peak_at(11, 5), 0, lesion, True, [box]),  # negative: not counted
        (_peak_at(11, 5), -1, lesion, True, [box]),  # unknown label: not counted
        (_peak_at(11, 5), 1, empty, False, []),  # positive without any GT: not counted
        (_peak_at(11, 5), 1, empty, True, []),  # known but empty mask, no box: not counted
    ]
    maps, labels, masks, has_mask, boxes = zip(*rows, strict=True)
    metric = PointingGame(tolerance=POINT_TOLERANCE)
    metric.update(
        torch.stack(maps)[:, None], torch.tensor(labels), torch.stack(masks)[:, None], torch.tensor(has_mask), boxes
    )
    assert float(metric.count) == 5 and float(metric.compute()) == pytest.approx(2 / 5)


def test_pointing_game_upsamples_a_coarse_map_to_the_image():
    cam = torch.zeros(1, 1, 4, 2)
    cam[0, 0, 1, 0] = 1.0  # the cell of rows 8–15, columns 0–7: bilinear upsampling peaks at its centre
    metric = PointingGame(tolerance=POINT_TOLERANCE)
    metric.update(cam, torch.tensor([1]), _lesion()[None, None], torch.tensor([True]), [[]])
    assert float(metric.compute()) == 1.0
    far = PointingGame(tolerance=POINT_TOLERANCE)
    far.update(cam.flip(2), torch.tensor([1]), _lesion()[None, None], torch.tensor([True]), [[]])
    assert float(far.compute()) == 0.0


def test_pointing_game_without_counted_targets_is_nan_and_its_rule_names_the_tolerance():
    metric = PointingGame()
    metric.update(torch.rand(1, 1, 8, 8), torch.tensor([0]), torch.ones(1, 1, 8, 8), torch.tensor([True]), [[]])
    assert math.isnan(metric.compute())
    assert metric.tolerance == POINTING_TOLERANCE == 1 / 32
    assert "0.03125 x image height" in pointing_rule(POINTING_TOLERANCE)
