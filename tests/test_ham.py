"""HAM: LSE pooling against its formula and limits, the identity attention at initialisation, the sharpening, the
bound / union / box losses on hand-built maps, the per-type labels, and the option checks."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from bilatcf.errors import ConfigError
from bilatcf.models.ham import HAM
from bilatcf.models.ham.network import (
    ForegroundAttention,
    bound_loss,
    box_loss,
    lesion_type_labels,
    lse_pool,
    refined_maps,
    sharpen,
    type_bce,
    union_loss,
)
from tests.conftest import random_images


def tiny(**flags) -> HAM:
    pl.seed_everything(0, verbose=False)
    return HAM(**{"backbone": "test_resnet", "output_stride": 16, "hidden": 16, **flags})


def test_lse_pooling_equals_its_formula():
    features = torch.tensor([[[[0.0, 1.0], [2.0, -1.0]]]])  # one channel, 2×2
    r = 6.0
    expected = math.log(sum(math.exp(r * v) for v in (0.0, 1.0, 2.0, -1.0)) / 4) / r
    assert lse_pool(features, r).item() == pytest.approx(expected, rel=1e-6)


def test_lse_pooling_tends_to_the_max_and_the_mean():
    torch.manual_seed(0)
    features = torch.randn(3, 5, 4, 2, dtype=torch.float64)  # small r cancels digits: float64
    flat = features.flatten(2)
    torch.testing.assert_close(lse_pool(features, 1e4), flat.amax(2), atol=1e-3, rtol=0)
    torch.testing.assert_close(lse_pool(features, 1e-6), flat.mean(2), atol=1e-5, rtol=0)
    assert (lse_pool(features, 6.0) > flat.mean(2)).all() and (lse_pool(features, 6.0) < flat.amax(2)).all()
    assert torch.isfinite(lse_pool(features * 1e3, 6.0)).all(), "large r·f must not overflow"


def test_attention_is_the_identity_at_initialisation_and_not_after_gamma_moves():
    torch.manual_seed(0)
    attention = ForegroundAttention(32, reduction=8)
    x = torch.rand(2, 32, 4, 3)
    assert attention.gamma.item() == 0.0
    torch.testing.assert_close(attention(x), x, rtol=0, atol=0)
    with torch.no_grad():
        attention.gamma.fill_(1.0)
    assert not torch.allclose(attention(x), x)


def test_sharpening_is_a_steep_sigmoid_at_0_4():
    values = torch.tensor([0.0, 0.3, 0.4, 0.5, 1.0])
    torch.testing.assert_close(sharpen(values), torch.sigmoid(100 * (values - 0.4)))
    assert sharpen(values)[2].item() == 0.5
    assert sharpen(values)[0].item() < 1e-17 and sharpen(values)[-1].item() > 1 - 1e-6


def test_refined_maps_are_min_max_normalised_sharpened_cams_with_detached_weights():
    features = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]]])  # C=2, 2×2
    weight = torch.tensor([[1.0, 0.0], [-1.0, 0.5]], requires_grad=True)  # K=2
    maps = refined_maps(features, weight, (2, 2))
    # Map 0 = f0 → min–max [0, .25, .5, 1]; map 1 = −f0 + .5 → [1, .75, .5, 0].
    torch.testing.assert_close(maps[0, 0].flatten(), sharpen(torch.tensor([0.0, 0.25, 0.5, 1.0])))
    torch.testing.assert_close(maps[0, 1].flatten(), sharpen(torch.tensor([1.0, 0.75, 0.5, 0.0])))
    assert maps.shape == (1, 2, 2, 2) and not maps.requires_grad, "the head weights are detached"
    assert refined_maps(torch.rand(2, 2, 3, 2), weight, (12, 8)).shape == (2, 2, 12, 8)


def hand_maps():
    """One sample, a 1×4 image, types (mass, calcification, distortion) with mass and calcification present."""
    abnormal = torch.tensor([[[[1.0, 1.0, 1.0, 0.0]]]])
    types = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0, 0.0]], [[0.0, 0.0, 0.0, 1.0]]]])
    present = torch.tensor([[True, True, False]])
    return abnormal, types, present, torch.tensor([True])


def test_bound_and_union_are_zero_when_the_hierarchy_holds():
    abnormal, types, present, eligible = hand_maps()
    # Mass and calcification lie inside the abnormal map and together cover it; the absent distortion type is
    # outside it, and that does not count.
    assert bound_loss(types, abnormal, present, eligible).item() == 0.0
    assert union_loss(types, abnormal, present, eligible).item() == 0.0


def test_bound_is_positive_when_a_present_type_leaves_the_abnormal_map():
    abnormal, types, present, eligible = hand_maps()
    types[0, 1] = torch.tensor([[0.0, 0.0, 1.0, 1.0]])  # calcification spills onto the last pixel (abnormal 0)
    # Excess: mass 0, calcification 1/4 → mean over the two present types 1/8.
    assert bound_loss(types, abnormal, present, eligible).item() == pytest.approx(1 / 8)
    assert union_loss(types, abnormal, present, eligible).item() == 0.0


def test_union_is_positive_when_the_abnormal_map_is_not_covered():
    abnormal, types, present, eligible = hand_maps()
    types[0, 1] = 0.0  # calcification gone: pixel 2 of the abnormal map is uncovered
    assert union_loss(types, abnormal, present, eligible).item() == pytest.approx(1 / 4)
    present[0, 2] = True  # the distortion map does not cover pixel 2 either; it only adds its own bound violation
    assert union_loss(types, abnormal, present, eligible).item() == pytest.approx(1 / 4)
    assert bound_loss(types, abnormal, present, eligible).item() == pytest.approx((0 + 0 + 1 / 4) / 3)


def test_map_losses_skip_ineligible_samples_and_divide_by_the_batch():
    abnormal, types, present, _ = hand_maps()
    types[0, 1] = 0.0
    batch = (torch.cat([types, types]), torch.cat([abnormal, abnormal]), torch.cat([present, present]))
    assert union_loss(*batch, torch.tensor([True, False])).item() == pytest.approx(1 / 8)
    assert union_loss(*batch, torch.tensor([False, False])).item() == 0.0


def test_box_loss_is_the_mse_on_annotated_samples_only():
    maps = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 1.0]]]])
    masks = torch.tensor([[[[1.0, 1.0]]], [[[0.0, 0.0]]]])
    # Sample 0: MSE 1/2; sample 1 (no mask) would be 1 but is skipped; divided by the batch size 2.
    assert box_loss(maps, masks, torch.tensor([True, False])).item() == pytest.approx(1 / 4)
    assert box_loss(maps, masks, torch.tensor([False, False])).item() == 0.0


def test_box_term_reads_only_pairs_with_a_mask(tiny_datamodule_factory):
    batch = next(iter(tiny_datamodule_factory(task="abnormality").train_dataloader()))
    model = tiny(box_supervision=True).eval()
    out = model.forward_batch(batch)
    positive = batch.label == 1
    assert positive.any()
    with_mask = model.losses(batch, out)["box"]
    assert with_mask.item() > 0
    batch.has_mask[:] = False
    assert model.losses(batch, out)["box"].item() == 0.0, "no mask, no box loss"
    assert "box" not in tiny().eval().losses(batch, out), "off by default"


def test_type_labels_from_the_finding_kinds():
    kinds = [["malignant_mass", "benign_calcification"], [], ["architectural_distortion"], None, None, ["asymmetry"]]
    abnormal = torch.tensor([1, 0, 1, 0, 1, 1])
    expected = [[1, 1, 0], [0, 0, 0], [0, 0, 1], [0, 0, 0], [-1, -1, -1], [-1, -1, -1]]
    assert lesion_type_labels(kinds, abnormal).tolist() == expected


def test_type_bce_skips_unknown_entries():
    logits = torch.tensor([[0.0, 0.0], [5.0, -5.0]])
    labels = torch.tensor([[1, 0], [-1, -1]])
    assert type_bce(logits, labels).item() == pytest.approx(2 * math.log(2) / 4)


def test_synthetic_batches_carry_lesion_types(tiny_datamodule_factory):
    batch = next(iter(tiny_datamodule_factory(task="abnormality").train_dataloader()))
    types = lesion_type_labels([m["lesion_types"] for m in batch.meta], batch.target_abnormal)
    assert (types >= 0).all(), "synthetic data knows every image's types"
    assert ((types.sum(1) > 0) == (batch.target_abnormal == 1)).all(), "a type for every lesion, none without"


def test_outputs_are_the_refined_abnormal_map_at_image_size():
    model = tiny().eval()
    target = random_images(0)
    out = model(target, target)
    assert out.cam.shape == target.shape and out.explanation is out.cam
    assert out.cam.min() >= 0 and out.cam.max() <= 1
    torch.testing.assert_close(out.cam, model.network.abnormal_map(model.network(target), (64, 32)))
    assert model.network.type_logits(out.target_features).shape == (2, 3)


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        ({"dropout": 1.0}, "dropout"),
        ({"lse_r": 0.0}, "lse_r"),
        ({"bound_weight": -1.0}, "bound_weight"),
        ({"hidden": 0}, "hidden"),
    ],
)
def test_bad_options_are_config_errors(flags, match):
    with pytest.raises(ConfigError, match=match):
        tiny(**flags)
