"""Classification metrics on hand-computed cases."""

import math

import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from bilatcf.metrics import BootstrapAUROC, ClassificationRates, resampled_aucs

# Positives score 0.35 and 0.8, negatives 0.1 and 0.4: of the 4 (pos, neg) pairs only (0.35, 0.4) is misordered → 3/4.
PREDS = torch.tensor([0.1, 0.4, 0.35, 0.8])
LABELS = torch.tensor([0, 0, 1, 1])


def _auc(preds, labels, **kwargs):
    metric = BootstrapAUROC(**kwargs)
    metric.update(torch.as_tensor(preds), torch.as_tensor(labels))
    return {k: float(v) for k, v in metric.compute().items()}


def test_auc_point_estimate_by_hand_and_unknown_labels_ignored():
    result = _auc(torch.cat([PREDS, torch.tensor([0.99, 0.0])]), torch.cat([LABELS, torch.tensor([-1, -1])]))
    assert result["auc"] == pytest.approx(0.75)
    assert result["auc_ci_low"] <= result["auc"] <= result["auc_ci_high"]


def test_auc_ties_count_half():
    # One positive and one negative with the same score: the pair is a tie → AUC 0.5.
    assert _auc([0.5, 0.5], [0, 1])["auc"] == pytest.approx(0.5)


def test_auc_with_one_class_is_nan():
    result = _auc([0.2, 0.7, 0.9], [1, 1, -1])
    assert all(math.isnan(v) for v in result.values())
    assert all(math.isnan(v) for v in BootstrapAUROC().compute().values())


def test_bootstrap_is_seeded_repeatable_and_order_free():
    generator = torch.Generator().manual_seed(1)
    preds = torch.rand(60, generator=generator)
    labels = (torch.rand(60, generator=generator) < preds).long()
    first = _auc(preds, labels, num_bootstrap=200, seed=3)
    again = _auc(preds, labels, num_bootstrap=200, seed=3)
    shuffled = torch.randperm(60, generator=generator)
    reordered = _auc(preds[shuffled], labels[shuffled], num_bootstrap=200, seed=3)  # as after a DDP gather
    other_seed = _auc(preds, labels, num_bootstrap=200, seed=4)
    assert first == again == reordered
    assert first["auc"] == pytest.approx(float(binary_auroc(preds, labels)))
    assert first["auc_ci_low"] < first["auc"] < first["auc_ci_high"]
    assert (other_seed["auc_ci_low"], other_seed["auc_ci_high"]) != (first["auc_ci_low"], first["auc_ci_high"])


def test_split_updates_equal_one_update():
    metric = BootstrapAUROC(num_bootstrap=50)
    metric.update(PREDS[:2], LABELS[:2])
    metric.update(PREDS[2:], LABELS[2:])
    assert {k: float(v) for k, v in metric.compute().items()} == _auc(PREDS, LABELS, num_bootstrap=50)


def test_resampled_aucs_equal_binary_auroc_per_resample():
    preds = torch.tensor([0.1, 0.4, 0.4, 0.8, 0.3, 0.6])  # includes a tie across classes
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    indices = torch.tensor([[0, 1, 2, 3, 4, 5], [2, 2, 1, 1, 0, 3], [0, 0, 4, 1, 1, 4], [5, 5, 3, 0, 2, 1]])
    aucs = resampled_aucs(preds, labels, indices)
    assert math.isnan(aucs[2])  # only negatives drawn
    for row in (0, 1, 3):
        expected = float(binary_auroc(preds[indices[row]], labels[indices[row]]))
        assert float(aucs[row]) == pytest.approx(expected)
    # Row 1 by hand: positives {0.4 (idx 2) ×2, 0.8}, negatives {0.4 ×2, 0.1}; pos 0.4 vs neg 0.4 are ties:
    # each 0.4-positive: 2 ties (1.0) + 1 win = 2.0, the 0.8-positive wins all 3 → (2+2+3) / 9.
    assert float(aucs[1]) == pytest.approx(7 / 9)


def test_percentile_interval_of_a_perfect_separation_is_one():
    result = _auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], num_bootstrap=100)
    assert result == {"auc": 1.0, "auc_ci_low": 1.0, "auc_ci_high": 1.0}


def test_classification_rates_by_hand():
    metric = ClassificationRates()
    # prob >= 0.5: predicted [1, 0, 1, 0, 1, 0(unknown)]; labels [1, 1, 0, 0, 1, -1]
    metric.update(torch.tensor([0.9, 0.2, 0.5, 0.1, 0.7, 0.6]), torch.tensor([1, 1, 0, 0, 1, -1]))
    result = {k: float(v) for k, v in metric.compute().items()}
    # TP = 2, FN = 1, FP = 1, TN = 1
    assert result == pytest.approx({"acc": 3 / 5, "sensitivity": 2 / 3, "specificity": 1 / 2})


def test_classification_rates_undefined_without_negatives():
    metric = ClassificationRates()
    metric.update(torch.tensor([0.9, 0.2]), torch.tensor([1, 1]))
    result = metric.compute()
    assert float(result["sensitivity"]) == 0.5 and math.isnan(result["specificity"])
