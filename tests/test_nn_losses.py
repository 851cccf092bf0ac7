"""Losses on hand-computed cases."""

import math

import pytest
import torch

from bilatcf.errors import ConfigError
from bilatcf.nn.losses import (
    chamfer_distance,
    cycle_loss,
    feature_map_points,
    gan_loss,
    gradient_penalty,
    negative_embedding_loss,
    triplet_hinge,
    weighted_feature_distance,
)


@pytest.mark.parametrize(
    ("logits", "real", "mode", "expected"),
    [
        ([0.0, 0.0], True, "bce", math.log(2)),
        ([math.log(3)], True, "bce", math.log(4 / 3)),  # sigmoid(ln 3) = 3/4
        ([math.log(3)], False, "bce", math.log(4)),
        ([0.5, 2.0], True, "lsgan", (0.25 + 1) / 2),
        ([0.5, 2.0], False, "lsgan", (0.25 + 4) / 2),
        ([1.0, 3.0], True, "wgan", -2.0),
        ([1.0, 3.0], False, "wgan", 2.0),
    ],
)
def test_gan_loss(logits, real, mode, expected):
    assert gan_loss(torch.tensor(logits), real, mode).item() == pytest.approx(expected, rel=1e-6)


def test_gan_loss_averages_patch_maps():
    assert gan_loss(torch.zeros(2, 1, 3, 3), False, "lsgan").item() == 0


def _linear_critic(weight):
    return lambda x: (x * weight).flatten(1).sum(dim=1)


def test_gradient_penalty_of_linear_critic():
    # D(x) = <w, x>: ∇D = w for every sample, ‖w‖ = 2 for four ones → penalty (2 − 1)² = 1,
    # and ∂/∂w (‖w‖ − 1)² = 2(‖w‖ − 1) w / ‖w‖ = 1 per element (create_graph lets the penalty train the critic).
    weight = torch.ones(1, 1, 2, 2, requires_grad=True)
    real, fake = torch.rand(3, 1, 2, 2), torch.rand(3, 1, 2, 2, requires_grad=True)
    penalty = gradient_penalty(_linear_critic(weight), real, fake)
    assert penalty.item() == pytest.approx(1.0, rel=1e-6)
    penalty.backward()
    torch.testing.assert_close(weight.grad, torch.ones(1, 1, 2, 2))
    assert fake.grad is None  # the penalty never reaches the generator
    unit_norm = _linear_critic(torch.full((1, 1, 2, 2), 0.5))
    assert gradient_penalty(unit_norm, real, fake).item() == pytest.approx(0, abs=1e-6)


def test_gradient_penalty_flattens_per_sample():
    # D(x) = 3·x[channel 0] + 4·x[channel 1] at one pixel: per-sample norm 5 → (5 − 1)² = 16 (per channel: (4 + 9) / 2).
    weight = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    assert gradient_penalty(
        _linear_critic(weight), torch.rand(2, 2, 1, 1), torch.rand(2, 2, 1, 1)
    ).item() == pytest.approx(16.0, rel=1e-6)


def test_chamfer_distance_hand_computed():
    a = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])  # N = 2
    b = torch.tensor([[[0.0, 1.0]]])  # M = 1
    # a→b: 1 and 2; b→a: min(1, 2) = 1; sum 4, mean over the 3 points 4/3.
    assert chamfer_distance(a, b, reduction="sum").tolist() == pytest.approx([4.0])
    assert chamfer_distance(a, b).tolist() == pytest.approx([4 / 3])
    assert chamfer_distance(a, a).tolist() == pytest.approx([0.0], abs=1e-6)


def test_chamfer_distance_is_cgn_eq11_per_sample():
    torch.manual_seed(0)
    reference, counterfactual = torch.randn(2, 4, 3, 2), torch.randn(2, 4, 3, 2)
    r, c = feature_map_points(reference), feature_map_points(counterfactual)  # [B, hw, C]
    brute = [
        (
            sum(min(((r[k, i] - c[k, j]) ** 2).sum() for j in range(6)) for i in range(6))
            + sum(min(((c[k, i] - r[k, j]) ** 2).sum() for j in range(6)) for i in range(6))
        )
        / (2 * 3 * 2)
        for k in range(2)
    ]
    torch.testing.assert_close(chamfer_distance(r, c), torch.stack(brute), rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(chamfer_distance(r, c), torch.stack(brute), rtol=1e-5, atol=1e-5)


def test_weighted_feature_distance_hand_computed():
    target = torch.zeros(1, 2, 1, 2)
    counterfactual = torch.tensor([[[[1.0, 0.0]], [[2.0, 3.0]]]])  # squared distances per position: 5 and 9
    weight = torch.tensor([[[[0.5, 1.0]]]])
    assert weighted_feature_distance(target, counterfactual, weight).tolist() == pytest.approx([0.5 * 5 + 9])  # /(2−1)
    assert weighted_feature_distance(target, counterfactual).tolist() == pytest.approx([14.0])
    assert weighted_feature_distance(torch.zeros(2, 3, 2, 2), torch.ones(2, 3, 2, 2)).tolist() == [4.0, 4.0]  # 12/3
    assert weighted_feature_distance(torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)).tolist() == [3.0]  # 1×1: /1


def test_triplet_hinge():
    assert triplet_hinge(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]), 0.5).tolist() == [0.0, 1.5]


def test_negative_embedding_loss_is_stable():
    logits = torch.tensor([0.0, 2.0, -100.0, 100.0])
    loss = negative_embedding_loss(logits)
    assert loss[:2].tolist() == pytest.approx([math.log(2), math.log(1 + math.e**2)], rel=1e-6)
    assert loss[2].item() == pytest.approx(0, abs=1e-30) and loss[3].item() == pytest.approx(100)
    torch.testing.assert_close(loss[:2], -torch.log(1 - torch.sigmoid(logits[:2])))


def test_cycle_loss():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])
    assert cycle_loss(a, b, "l1").item() == 1.5 and cycle_loss(a, b, "mse").item() == 2.5


def test_unknown_modes_are_config_errors():
    with pytest.raises(ConfigError, match="hinge"):
        gan_loss(torch.zeros(1), True, "hinge")
    with pytest.raises(ConfigError, match="'l1' or 'mse'"):
        cycle_loss(torch.zeros(1), torch.zeros(1), "huber")
    with pytest.raises(ConfigError, match="'mean' or 'sum'"):
        chamfer_distance(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), reduction="none")


def test_feature_distances_accumulate_in_float32():
    target, counterfactual = (
        torch.zeros(1, 3, 16, 16, dtype=torch.bfloat16),
        torch.full((1, 3, 16, 16), 1.01, dtype=torch.bfloat16),
    )
    expected = 3 * 256 * counterfactual[0, 0, 0, 0].float().item() ** 2 / 255
    assert weighted_feature_distance(target, counterfactual).item() == pytest.approx(expected, rel=1e-6)
