"""Deep multi-instance networks (Zhu et al. 2017): each scheme's loss on hand-built instance maps equals its formula,
the image score is the top instance's, label assignment labels only the top k, the sparse penalty is μ‖r‖₁, a planted
instance moves the maps' peak, and the options are checked."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.mil import MIL
from bilatcf.models.mil.network import (
    InstanceClassifier,
    MILOutput,
    assigned_labels,
    image_logit,
    label_assignment_loss,
    sparsity_penalty,
)
from tests.conftest import random_images

VARIANTS = ["max", "label_assign", "sparse"]


def tiny(**flags) -> MIL:
    pl.seed_everything(0, verbose=False)
    return MIL(**{"backbone": "test_resnet", "output_stride": 16, **flags})


def hand_output(instance_logits: torch.Tensor) -> MILOutput:
    """The record forward makes from an instance-logit map z: logits max z, maps σ(z)."""
    probabilities = torch.sigmoid(instance_logits)
    return MILOutput(
        logits=image_logit(instance_logits),
        cam=probabilities,
        explanation=probabilities,
        instance_logits=instance_logits,
    )


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


# Two images, 2×2 bags. Image 0 (malignant): z = [[−1, 2], [0.5, −3]]; image 1 (benign): z = [[0, −2], [1.5, −0.5]].
Z = torch.tensor([[[[-1.0, 2.0], [0.5, -3.0]]], [[[0.0, -2.0], [1.5, -0.5]]]])
LABELS = torch.tensor([1, 0])


def test_two_class_softmax_instances_have_the_log_odds_of_their_malignant_probability():
    torch.manual_seed(0)
    head, features = InstanceClassifier(8, channels=16, classes=2), torch.randn(3, 8, 4, 2)
    softmax = head.layers(features).softmax(dim=1)[:, 1:]
    torch.testing.assert_close(torch.sigmoid(head(features)), softmax)


def test_image_logit_is_the_logit_of_the_most_malignant_instance():
    assert image_logit(Z).tolist() == [2.0, 1.5]
    probability = torch.sigmoid(Z).amax(dim=(1, 2, 3))
    torch.testing.assert_close(torch.sigmoid(image_logit(Z)), probability)
    # Computed on logits it stays finite where logit(max σ(z)) through the probability would not.
    assert torch.isfinite(image_logit(Z * 100)).all() and image_logit(Z * 100).tolist() == [200.0, 150.0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_models_image_score_is_the_max_over_positions(variant):
    model = tiny(variant=variant).eval()
    target = random_images(0)
    out = model(target, target)
    assert out.cam.shape == out.explanation.shape == (2, 1, 4, 2)
    torch.testing.assert_close(out.logits, out.instance_logits.amax(dim=(1, 2, 3)))
    torch.testing.assert_close(torch.sigmoid(out.logits), out.explanation.amax(dim=(1, 2, 3)))
    prediction = model.predict_step(_batch(target))
    torch.testing.assert_close(prediction.score, out.explanation.amax(dim=(1, 2, 3)))


def test_max_pooling_loss_is_the_cross_entropy_of_the_max_instance_probability():
    losses = tiny(variant="max").losses(hand_output(Z), LABELS)
    assert set(losses) == {"cls"}
    expected = (bce(sigmoid(2.0), 1) + bce(sigmoid(1.5), 0)) / 2
    assert losses["cls"].item() == pytest.approx(expected, rel=1e-6)


def test_unknown_labels_take_no_part_in_the_image_loss():
    losses = tiny(variant="max").losses(hand_output(Z), torch.tensor([1, -1]))
    assert losses["cls"].item() == pytest.approx(bce(sigmoid(2.0), 1), rel=1e-6)


def test_label_assignment_gives_the_label_to_the_top_k_instances_only():
    top1 = assigned_labels(Z, LABELS, top_k=1)
    assert top1.tolist() == [[[[0.0, 1.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]]
    top2 = assigned_labels(Z, LABELS, top_k=2)  # image 0's two best: 2 and 0.5; the benign image stays all 0
    assert top2.tolist() == [[[[0.0, 1.0], [1.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]]
    assert assigned_labels(Z, torch.tensor([1, 1]), top_k=3)[1].flatten().tolist() == [1.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("top_k", [1, 2])
def test_label_assignment_loss_is_the_mean_bce_over_every_instance(top_k):
    losses = tiny(variant="label_assign", top_k=top_k).losses(hand_output(Z), LABELS)
    assert set(losses) == {"instance"}
    malignant = {2.0: 1, 0.5: 1 if top_k == 2 else 0, -1.0: 0, -3.0: 0}
    terms = [bce(sigmoid(z), y) for z, y in malignant.items()]
    terms += [bce(sigmoid(z), 0) for z in (0.0, -2.0, 1.5, -0.5)]
    assert losses["instance"].item() == pytest.approx(sum(terms) / 8, rel=1e-6)


def test_label_assignment_reads_the_image_logit_for_the_top_instance():
    # Same value as the map's max, so the same loss; a non-finite image logit makes the loss non-finite (NaN guard).
    plain = label_assignment_loss(image_logit(Z), Z, LABELS, 1)
    torch.testing.assert_close(
        plain, torch.nn.functional.binary_cross_entropy_with_logits(Z, assigned_labels(Z, LABELS, 1))
    )
    assert torch.isnan(label_assignment_loss(image_logit(Z) * float("nan"), Z, LABELS, 1))


def test_sparse_loss_is_the_image_cross_entropy_plus_mu_times_the_l1_of_the_map():
    mu = 0.01
    losses = tiny(variant="sparse", sparsity_weight=mu).losses(hand_output(Z), LABELS)
    assert set(losses) == {"cls", "sparsity"}
    l1 = [sum(sigmoid(z) for z in image.flatten().tolist()) for image in Z]
    assert losses["sparsity"].item() == pytest.approx(mu * sum(l1) / 2, rel=1e-6)
    assert losses["cls"].item() == pytest.approx((bce(sigmoid(2.0), 1) + bce(sigmoid(1.5), 0)) / 2, rel=1e-6)
    assert sparsity_penalty(torch.sigmoid(Z)).item() == pytest.approx(sum(l1) / 2, rel=1e-6)


def test_top_k_larger_than_the_bag_is_a_config_error_naming_the_flag():
    with pytest.raises(ConfigError, match=r"model\.top_k=5 is larger than the bag: .* 2×2 = 4 positions"):
        tiny(variant="label_assign", top_k=5).losses(hand_output(Z), LABELS)


def _batch(target: torch.Tensor):
    size = target.shape[0]
    labels = torch.zeros(size, dtype=torch.long)
    return BilateralBatch(
        target=target,
        reference=target,
        label=labels,
        ref_label=labels,
        asym_label=labels,
        target_mask=torch.zeros_like(target),
        has_mask=torch.zeros(size, dtype=torch.bool),
        healthy=torch.zeros_like(target),
        has_healthy=torch.zeros(size, dtype=torch.bool),
        meta=[{} for _ in range(size)],
    )


def _monotone_head(model: MIL) -> None:
    """Make every instance logit increase with every feature (non-negative weights, zero biases)."""
    with torch.no_grad():
        for layer in model.head.layers:
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.abs_()
                layer.bias.zero_()
        last = model.head.layers[-1]
        if last.weight.shape[0] == 2:  # z = s¹ − s⁰: the benign score must not grow with the features
            last.weight[0].zero_()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("position", [(0, 0), (2, 1)])
@pytest.mark.parametrize("negative", [False, True], ids=["malignant", "benign"])
def test_a_planted_instance_moves_the_maps_peak_there_whatever_the_prediction(variant, position, negative, monkeypatch):
    model = tiny(variant=variant).eval()
    _monotone_head(model)
    features = torch.rand(2, model.backbone.out_channels, 4, 2, generator=torch.Generator().manual_seed(3))
    features[:, :, position[0], position[1]] += 5.0
    with torch.no_grad():  # the head is linear on non-negative features: scale them so that the top instance has z = 4
        features *= 4 / model.head(features).amax()
    monkeypatch.setattr(model.backbone, "forward", lambda images: features)
    if negative:  # shift every instance below 0.5 (the top one to z = −1): the image is predicted benign
        with torch.no_grad():
            top = model.head(features).amax()
            model.head.layers[-1].bias[-1] -= top + 1
    target = random_images(4)
    out, prediction = model(target, target), model.predict_step(_batch(target))
    assert prediction.pred.tolist() == ([0, 0] if negative else [1, 1])
    for image in range(2):
        peak = divmod(int(out.explanation[image, 0].argmax()), 2)
        assert peak == position, f"explanation peak {peak}, planted at {position}"
    # At image size (16 px per instance), both maps peak inside the planted instance's patch.
    rows, cols = slice(16 * position[0], 16 * position[0] + 16), slice(16 * position[1], 16 * position[1] + 16)
    for name in ("explanation", "cam"):
        image_map = getattr(prediction, name)
        assert image_map.shape == target.shape
        assert torch.equal(image_map[:, 0, rows, cols].amax(dim=(1, 2)), image_map.amax(dim=(1, 2, 3))), name
    assert prediction.cam.amax().item() == 1.0 and prediction.cam.amin().item() == 0.0  # min–max normalised
    assert 0 < prediction.explanation.amax().item() < (0.5 if negative else 1.0)  # the raw probabilities


def test_weight_decay_defaults_to_the_authors_value_of_each_variant():
    assert [tiny(variant=v).l2_weight for v in VARIANTS] == [1e-5, 1e-5, 5e-6]
    assert tiny(variant="sparse", weight_decay=1e-3).l2_weight == 1e-3
    (optimizer,) = tiny(variant="sparse").build_optimizers().values()
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["weight_decay"] == 5e-6


def test_only_the_max_variant_has_a_two_class_instance_classifier():
    assert [tiny(variant=v).head.layers[-1].out_channels for v in VARIANTS] == [2, 1, 1]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"variant": "mean"}, r"model\.variant='mean' is not one of max, label_assign, sparse"),
        ({"top_k": 0}, r"model\.top_k=0 must be a whole number ≥ 1"),
        ({"sparsity_weight": -1.0}, r"model\.sparsity_weight=-1.0 must be ≥ 0"),
        ({"weight_decay": -1e-5}, r"model\.weight_decay=-1e-05 must be ≥ 0"),
        ({"head_channels": 0}, r"model\.head_channels=0 must be ≥ 1"),
    ],
)
def test_bad_options_are_config_errors_naming_the_flag(flags, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**flags)
