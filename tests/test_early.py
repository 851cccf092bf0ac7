"""Early fusion: the backbone's input is exactly [target, reference, target − reference] (nothing flipped), the
reference changes the prediction, and the CAM is the linear head's map on the fused features."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from bilatcf.models.early import EarlyFusion
from bilatcf.models.early.network import CHANNELS, bilateral_channels
from bilatcf.nn.cam import class_activation_map
from tests.conftest import random_images


def tiny(**flags) -> EarlyFusion:
    pl.seed_everything(0, verbose=False)
    return EarlyFusion(**{"backbone": "test_resnet", "output_stride": 16, **flags})


def test_channels_are_target_reference_and_their_difference_on_a_hand_made_pair():
    target = torch.tensor([[[[0.2, 0.9], [0.5, 0.0]]]])
    reference = torch.tensor([[[[0.4, 0.1], [0.5, 1.0]]]])
    channels = bilateral_channels(target, reference)
    assert CHANNELS == ("target", "reference", "target - reference")
    assert channels.shape == (1, 3, 2, 2)
    torch.testing.assert_close(channels[0, 0], target[0, 0])
    torch.testing.assert_close(channels[0, 1], reference[0, 0], msg="the pipeline's mirrored reference, as given")
    torch.testing.assert_close(channels[0, 2], torch.tensor([[-0.2, 0.8], [0.0, -1.0]]))


def test_the_backbone_sees_exactly_the_three_channels():
    model = tiny().eval()
    seen = {}
    model.backbone.register_forward_pre_hook(lambda module, args: seen.update(images=args[0]))
    target, reference = random_images(0), random_images(1)
    model(target, reference)
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 3
    torch.testing.assert_close(seen["images"], torch.cat([target, reference, target - reference], dim=1))


def test_changing_the_reference_changes_the_prediction():
    model = tiny().eval()
    target, reference = random_images(2), random_images(3)
    assert not torch.allclose(model(target, reference).logits, model(target, random_images(4)).logits)
    # With the target as its own reference the difference channel is empty: the model sees no asymmetry there.
    seen = {}
    model.backbone.register_forward_pre_hook(lambda module, args: seen.update(images=args[0]))
    model(target, target)
    assert seen["images"][:, 2].abs().max() == 0


def test_cam_is_the_heads_map_of_the_predicted_class_on_the_fused_features():
    model = tiny().eval()
    target, reference = random_images(5), random_images(6)
    out = model(target, reference)
    features = model.backbone(bilateral_channels(target, reference))
    assert out.cam.shape == (2, 1, 4, 2) and out.logits.shape == (2,)
    expected = class_activation_map(features, model.head.linear.weight[0], class_index=(out.logits >= 0).long())
    torch.testing.assert_close(out.cam[:, 0], expected)


def test_one_backbone_pass_per_pair():
    model, calls = tiny().eval(), []
    model.backbone.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    model(random_images(7), random_images(8))
    assert calls == [2], "one 3-channel pass for the batch of 2 pairs (SBF makes two 1-channel passes)"
