"""Counterfactual and explanation metrics on hand-computed cases."""

import math

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from bilatcf.metrics import (
    EXPL_THRESHOLD_RULE,
    ExplanationNCC,
    FeatureFidelityRatio,
    FeatureFrechetDistance,
    MaskedImageComparison,
    frechet_distance,
    lesion_positions,
    normalized_cross_correlation,
)


def _maps(*rows):
    return torch.tensor(rows, dtype=torch.float32).view(len(rows), 1, 2, 2)


def test_ncc_by_hand():
    masks = _maps([0, 0, 0, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1])
    maps = _maps([0, 1, 0, 1], [0, 0, 2, 2], [1, 1, 0, 0], [3, 3, 3, 3])
    # Row 0: a−μa = (−¼, −¼, −¼, ¾), b−μb = (−½, ½, −½, ½): Σ = ½, Σa² = ¾, Σb² = 1 → ½ / √¾ = 1/√3.
    expected = [1 / math.sqrt(3), 1.0, -1.0, 0.0]  # row 3: a constant map correlates with nothing
    assert normalized_cross_correlation(masks, maps).tolist() == pytest.approx(expected)


def test_explanation_ncc_mean_std_over_annotated_images():
    metric = ExplanationNCC()
    masks = _maps([0, 0, 0, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 1, 1, 1])
    maps = _maps([0, -1, 0, -1], [0, 0, 2, 2], [1, 0, 0, 0], [9, 9, 9, 9])  # absolute value is taken
    metric.update(maps, masks, torch.tensor([True, True, True, False]))  # row 2: empty mask; row 3: unknown mask
    result = {k: float(v) for k, v in metric.compute().items()}
    values = [1 / math.sqrt(3), 1.0]
    assert result["ncc"] == pytest.approx(sum(values) / 2)
    assert result["ncc_std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))  # sample std of two values
    assert EXPL_THRESHOLD_RULE.startswith("|map| min-max normalised")


def test_masked_image_comparison_by_hand():
    torch.manual_seed(0)
    a = torch.rand(3, 1, 16, 16) * 0.5
    b = a.clone()
    mask = torch.zeros(3, 1, 16, 16)
    mask[0, 0, 4:6, 4:6] = 1
    b[0, 0, 4:6, 4:6] += 0.5  # image 0: changed only inside its lesion → MAE_in 0.5, outside identical
    b[1] = (a[1] + 0.1).clamp(max=1.0)  # image 1: no lesion, everything moved by 0.1
    b[2] = 1.0  # image 2: not valid → ignored
    metric = MaskedImageComparison()
    metric.update(a, b, mask, torch.tensor([True, True, False]))
    result = {k: float(v) for k, v in metric.compute().items()}
    ssim_1 = float(structural_similarity_index_measure(b[1:2], a[1:2], data_range=1.0))
    assert result["mae_in"] == pytest.approx(0.5)
    assert result["mae_out"] == pytest.approx((0.0 + 0.1) / 2, abs=1e-6)
    assert result["ssim_out"] == pytest.approx((1.0 + ssim_1) / 2, abs=1e-6)  # lesion zeroed in both → SSIM 1


def test_lesion_positions_mark_any_touched_cell():
    mask = torch.zeros(1, 1, 8, 8)
    mask[0, 0, 5, 6] = 1
    assert lesion_positions(mask, (2, 2))[0, 0].tolist() == [[False, False], [False, True]]
    assert lesion_positions(mask, (4, 4)).nonzero().tolist() == [[0, 0, 2, 3]]


def test_frechet_distance_diagonal_and_non_commuting_cases():
    # Diagonal: Σ (√σ1 − √σ2)² + ‖Δμ‖² = (1−2)² + (2−3)² + 1 + 1.
    fd = frechet_distance(
        torch.zeros(2), torch.diag(torch.tensor([1.0, 4.0])), torch.ones(2), torch.diag(torch.tensor([4.0, 9.0]))
    )
    assert float(fd) == pytest.approx(4.0)
    # Non-commuting: Σ1Σ2 = [[2, 3], [1, 6]]; for a 2×2 matrix Tr √M = √(Tr M + 2√det M) = √(8 + 2·3).
    cov1, cov2 = torch.tensor([[2.0, 1.0], [1.0, 2.0]]), torch.diag(torch.tensor([1.0, 3.0]))
    fd = frechet_distance(torch.zeros(2), cov1, torch.zeros(2), cov2)
    assert float(fd) == pytest.approx(4 + 4 - 2 * math.sqrt(14))


def _fid(a, b, keep=None):
    metric = FeatureFrechetDistance()
    metric.update(a, b, keep)
    return float(metric.compute())


def test_feature_fid_identical_sets_is_zero_and_shift_is_squared_shift():
    torch.manual_seed(0)
    features = torch.randn(4, 3, 2, 2, dtype=torch.float64)  # float64 so that features + shift is exact enough
    shift = torch.tensor([1.0, 2.0, -2.0], dtype=torch.float64).view(1, 3, 1, 1)
    assert _fid(features, features) == pytest.approx(0.0, abs=1e-9)
    assert _fid(features, features + shift) == pytest.approx(9.0, abs=1e-9)  # same covariance: ‖Δμ‖² = 1 + 4 + 4
    assert _fid(features.float(), features.float() + shift.float()) == pytest.approx(9.0, abs=1e-6)


def test_feature_fid_one_dimensional_by_hand_and_position_selection():
    # Sets {−1, 1} and {−2, 2}: unbiased variances 2 and 8 → 2 + 8 − 2√16 = 2. The third position is dropped.
    a = torch.tensor([-1.0, 1.0, 100.0]).view(1, 1, 1, 3)
    b = torch.tensor([-2.0, 2.0, -50.0]).view(1, 1, 1, 3)
    keep = torch.tensor([True, True, False]).view(1, 1, 1, 3)
    assert _fid(a, b, keep) == pytest.approx(2.0)
    assert _fid(a[..., :2].reshape(2, 1, 1, 1), b[..., :2].reshape(2, 1, 1, 1)) == pytest.approx(2.0)


def test_feature_fid_accumulates_across_updates_and_is_nan_when_empty():
    torch.manual_seed(1)
    a, b = torch.randn(6, 4, 3, 3), torch.randn(6, 4, 3, 3) + 1
    metric = FeatureFrechetDistance()
    metric.update(a[:2], b[:2])
    metric.update(a[2:], b[2:])
    assert float(metric.compute()) == pytest.approx(_fid(a, b), rel=1e-9)
    assert math.isnan(FeatureFrechetDistance().compute())


def test_feature_fidelity_ratio_by_hand():
    lesion = torch.zeros(3, 1, 2, 2, dtype=torch.bool)
    lesion[:2, 0, 0, 0] = True
    target = torch.tensor([[[2.0, 1.0], [1.0, 1.0]], [[2.0, 2.0], [2.0, 2.0]], [[50.0, 50.0], [50.0, 50.0]]])
    cf = torch.tensor([[[1.0, 1.0], [1.0, 2.0]], [[9.0, 2.0], [2.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    healthy = torch.zeros(3, 2, 2)
    healthy[1] = float("nan")  # no true healthy image for row 1: must not be read
    metric = FeatureFidelityRatio()
    metric.update(
        target[:, None],
        cf[:, None],
        lesion,
        has_mask=torch.tensor([True, True, False]),
        healthy_features=healthy[:, None],
        has_healthy=torch.tensor([True, False, True]),
    )
    result = {k: float(v) for k, v in metric.compute().items()}
    # Inside (row 0 only): ‖H_C − H_true‖ = 1, ‖H_T − H_true‖ = 2.
    # Outside (rows 0, 1; 3 positions each): ‖H_C − H_T‖² = 1 (row 0, pos (1,1)), ‖H_T‖² = 3 + 12.
    assert result == pytest.approx({"ratio_in": 0.5, "ratio_out": math.sqrt(1 / 15)})


def test_feature_fidelity_ratio_without_healthy_features():
    metric = FeatureFidelityRatio()
    features = torch.ones(1, 2, 2, 2)
    metric.update(features, features * 2, torch.zeros(1, 1, 2, 2, dtype=torch.bool), torch.tensor([True]))
    result = metric.compute()
    assert math.isnan(result["ratio_in"]) and float(result["ratio_out"]) == pytest.approx(1.0)
