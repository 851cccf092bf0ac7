"""CAM, Grad-CAM and map post-processing on hand-computed cases."""

import math

import pytest
import torch
from torch import nn

from bilatcf.nn.cam import class_activation_map, grad_cam, normalize_map, spatial_softmax

# One sample, two channels, a 1×2 map: f0 = [1, 2], f1 = [3, −1].
FEATURES = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])


def test_binary_cam_is_signed_by_the_predicted_class():
    weight = torch.tensor([1.0, -2.0])  # w·f = [1 − 6, 2 + 2] = [−5, 4], mean −0.5 → class 0 predicted → −w·f
    assert class_activation_map(FEATURES, weight).tolist() == [[[5.0, -4.0]]]
    assert class_activation_map(FEATURES, weight, class_index=torch.tensor([1])).tolist() == [[[-5.0, 4.0]]]


def test_multiclass_cam_picks_the_class_row():
    weight = torch.tensor([[1.0, -2.0], [0.0, 1.0]])  # class 0: [−5, 4] (mean −0.5); class 1: [3, −1] (mean 1)
    assert class_activation_map(FEATURES, weight).tolist() == [[[3.0, -1.0]]]
    assert class_activation_map(FEATURES, weight, class_index=torch.tensor([0])).tolist() == [[[-5.0, 4.0]]]


def test_cam_mean_is_the_logit_without_bias():
    torch.manual_seed(0)
    features, head = torch.randn(3, 4, 2, 3), nn.Linear(4, 1)
    logits = head(features.mean(dim=(2, 3))).squeeze(1)
    cam = class_activation_map(features, head.weight[0], class_index=torch.ones(3, dtype=torch.long))
    torch.testing.assert_close(cam.mean(dim=(1, 2)), logits - head.bias)


def test_grad_cam_of_a_linear_head():
    # score = w·GAP(f): ∂score/∂f_c = w_c / (h·w) = w_c / 2, so Grad-CAM = ReLU([−5, 4] / 2) = [0, 2].
    features = FEATURES.repeat(2, 1, 1, 1).requires_grad_(True)
    score = features.mean(dim=(2, 3)) @ torch.tensor([1.0, -2.0])
    cam = grad_cam(features, score)
    assert cam.tolist() == [[[0.0, 2.0]], [[0.0, 2.0]]] and not cam.requires_grad
    score.sum().backward()  # the graph is kept for the caller


def test_grad_cam_needs_features_in_the_graph():
    with pytest.raises(ValueError, match="require grad"):
        grad_cam(FEATURES, FEATURES.sum(dim=(1, 2, 3)))


def test_normalize_map_min_max_per_image():
    cams = torch.stack([torch.tensor([[0.0, 1.0], [2.0, 3.0]]), torch.full((2, 2), 7.0)])
    out = normalize_map(cams, (2, 2))
    assert out.shape == (2, 1, 2, 2)
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 1 / 3], [2 / 3, 1.0]]))
    assert torch.equal(out[1], torch.zeros(1, 2, 2))  # a constant map has no location


def test_normalize_map_upsamples_bilinearly():
    # Output centres at x = −0.25, 0.25, 0.75, 1.25 in input pixels (align_corners=False), clamped at the borders.
    out = normalize_map(torch.tensor([[[[0.0, 1.0]]]]), (1, 4))
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 0.25, 0.75, 1.0]]]]))


def test_spatial_softmax_sums_to_one_per_map():
    torch.manual_seed(0)
    for cam in (torch.randn(3, 4, 5), torch.randn(3, 1, 4, 5)):
        omega = spatial_softmax(cam)
        assert omega.shape == cam.shape
        torch.testing.assert_close(omega.flatten(1).sum(dim=1), torch.ones(3))
    torch.testing.assert_close(spatial_softmax(torch.tensor([[[0.0, math.log(3)]]])), torch.tensor([[[0.25, 0.75]]]))
