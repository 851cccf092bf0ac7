"""ABN: the attention map's range and size, the perception input g·M + g, the loss as the sum of two CEs, the attention
branch's own weights at the trunk's stride, the two maps, and the option checks.

Tiny everything: test_resnet on 64×32 images (trunk map 4×2), tv_alexnet at 128×64.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from torch import nn

from bilatcf.errors import ConfigError
from bilatcf.models.abn import ABN
from bilatcf.models.abn.network import ABNParts, abn_loss, binary_logit, predicted_class_map, stride_one
from tests.conftest import random_images


def tiny(**flags) -> ABN:
    pl.seed_everything(0, verbose=False)
    return ABN(**{"backbone": "test_resnet", "output_stride": 16, **flags})


@pytest.mark.parametrize("output_stride", [16, None])
def test_attention_map_is_in_the_open_unit_interval_at_the_trunks_size(output_stride):
    model = tiny(output_stride=output_stride).eval()
    images = random_images(0)
    parts = model.network(images)
    trunk = model.network.backbone.forward_trunk(images)
    assert parts.attention_map.shape == (2, 1, *trunk.shape[-2:])
    assert parts.class_maps.shape == (2, 2, *trunk.shape[-2:])
    assert (parts.attention_map > 0).all() and (parts.attention_map < 1).all()
    out = model(images, images)
    assert torch.equal(out.explanation, parts.attention_map) and torch.equal(out.cam, parts.attention_map)


def test_perception_input_is_g_times_m_plus_g():
    model = tiny().eval()
    images, seen = random_images(1), []
    backbone = model.network.backbone
    forward_last = backbone.forward_last
    backbone.forward_last = lambda x: seen.append(x) or forward_last(x)
    parts = model.network(images)
    trunk = backbone.forward_trunk(images)
    torch.testing.assert_close(seen[0], trunk * parts.attention_map + trunk, rtol=0, atol=0)


def test_a_zero_attention_map_gives_the_plain_backbone_path():
    network = tiny().eval().network
    images = random_images(2)
    trunk = network.backbone.forward_trunk(images)
    logits, features = network.perceive(trunk, torch.zeros_like(trunk[:, :1]))
    plain = network.backbone(images)
    assert torch.equal(features, plain)
    torch.testing.assert_close(logits, network.fc(plain.mean(dim=(2, 3))))


def test_logit_is_z1_minus_z0_and_its_sigmoid_the_softmax_probability():
    model = tiny().eval()
    images = random_images(3)
    parts, out = model.network(images), model(images, images)
    assert torch.equal(out.logits, parts.perception_logits[:, 1] - parts.perception_logits[:, 0])
    assert torch.equal(out.heads["attention"], parts.attention_logits[:, 1] - parts.attention_logits[:, 0])
    torch.testing.assert_close(torch.sigmoid(out.logits), parts.perception_logits.softmax(dim=1)[:, 1])


def test_loss_is_the_sum_of_the_two_cross_entropies_on_known_labels():
    attention = torch.tensor([[0.5, -1.0], [2.0, 0.0], [0.3, 0.3]])
    perception = torch.tensor([[1.0, 1.5], [-0.5, 0.5], [4.0, -4.0]])
    labels = torch.tensor([1, 0, -1])  # the third pair's label is unknown: ignored
    losses = abn_loss(binary_logit(attention), binary_logit(perception), labels)
    torch.testing.assert_close(losses["attention"], F.cross_entropy(attention[:2], labels[:2]))
    torch.testing.assert_close(losses["perception"], F.cross_entropy(perception[:2], labels[:2]))
    unknown = abn_loss(binary_logit(attention), binary_logit(perception), torch.full((3,), -1))
    assert unknown["attention"].item() == 0.0 and unknown["perception"].item() == 0.0


def test_training_step_minimises_both_cross_entropies(tiny_model_datamodule, monkeypatch):
    model = tiny().train()
    batch = next(iter(tiny_model_datamodule(ABN).train_dataloader()))
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)
    loss = model.training_step(batch, 0)
    parts = model.network(batch.target)  # training-mode batch norm reads the batch alone: the same outputs
    expected = F.cross_entropy(parts.attention_logits, batch.label) + F.cross_entropy(
        parts.perception_logits, batch.label
    )
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("output_stride", [16, None])
def test_attention_branch_has_its_own_weights_and_the_last_stages_structure(output_stride):
    network = tiny(output_stride=output_stride).network
    branch, last = network.attention.stage, network.backbone.last_stage
    own = {p.data_ptr() for p in branch.parameters()}
    assert own.isdisjoint(p.data_ptr() for p in network.backbone.parameters())
    assert [p.shape for p in branch.parameters()] == [p.shape for p in last.parameters()]
    assert not any(
        torch.equal(a, b) for a, b in zip(branch.parameters(), last.parameters(), strict=True) if a.dim() > 1
    )


def test_attention_branch_is_not_loaded_from_the_weights_file(tmp_path):
    path = tmp_path / "backbone.pth"
    torch.save(tiny().network.backbone.state_dict(), path)
    loaded = tiny(weights=str(path)).network
    branch_weights = [p for p in loaded.attention.stage.parameters() if p.dim() > 1]
    file_weights = [p for p in loaded.backbone.last_stage.parameters() if p.dim() > 1]
    assert not any(torch.equal(a, b) for a, b in zip(branch_weights, file_weights, strict=True))


@pytest.mark.parametrize(
    ("backbone", "output_stride"),
    [
        ("test_resnet", 16),
        ("test_resnet", None),
        ("tv_alexnet", None),
        pytest.param("convnext_atto", None, marks=pytest.mark.slow),  # its even-kernel patch conv, zero-padded
    ],
)
def test_attention_branch_keeps_the_trunks_resolution(backbone, output_stride):
    network = tiny(backbone=backbone, output_stride=output_stride).eval().network
    images = torch.rand(1, 1, 128, 64, generator=torch.Generator().manual_seed(4))
    trunk = network.backbone.forward_trunk(images)
    assert network.attention.stage(trunk).shape[-2:] == trunk.shape[-2:]
    assert network(images).attention_map.shape[-2:] == trunk.shape[-2:]


def test_stride_one_keeps_the_size_of_every_strided_layer_kind():
    stage = nn.Sequential(
        nn.Conv2d(4, 4, 3, stride=2, padding=1),  # ResNet's first conv: stride 1, padding kept
        nn.Conv2d(4, 4, 2, stride=2),  # ConvNeXt's patch conv: even kernel, zero-padded
        nn.AvgPool2d(2, stride=2),  # ResNet-D's shortcut pool: an identity at stride 1
        nn.MaxPool2d(3, stride=2, padding=1),  # a size-keeping window: stride 1
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),  # already stride 1: untouched
        Conv2dSame(4, 4, 2, stride=2),  # timm's self-padding conv: stride 1, no extra padding
    )
    stride_one(stage)
    assert isinstance(stage[2], nn.Identity) and stage[3].stride == (1, 1) and stage[4].padding == (2, 2)
    assert isinstance(stage[5], Conv2dSame) and stage[5].stride == (1, 1)
    features = torch.rand(1, 4, 7, 5)
    assert stage(features).shape == features.shape


def test_class_map_is_the_predicted_classs_channel():
    class_maps = torch.arange(16.0).view(2, 2, 2, 2)
    parts = ABNParts(
        perception_logits=torch.tensor([[0.0, 1.0], [1.0, 0.0]]),  # class 1, then class 0
        attention_logits=torch.zeros(2, 2),
        attention_map=torch.zeros(2, 1, 2, 2),
        class_maps=class_maps,
        features=torch.zeros(2, 1, 1, 1),
    )
    assert torch.equal(predicted_class_map(parts), torch.stack([class_maps[0, 1:], class_maps[1, :1]]))
    model = tiny(map="class").eval()
    images = random_images(5)
    out, parts = model(images, images), model.network(images)
    assert torch.equal(out.cam, predicted_class_map(parts)) and torch.equal(out.explanation, parts.attention_map)
    # Channel k's spatial mean is the attention branch's logit of class k (the map the attention output pools).
    torch.testing.assert_close(parts.class_maps.mean(dim=(2, 3)), parts.attention_logits)


@pytest.mark.parametrize("kernel", [1, 3])
def test_map_kernel_sets_the_attention_map_conv(kernel):
    conv = tiny(map_kernel=kernel).network.attention.to_map[0]
    assert conv.kernel_size == (kernel, kernel) and conv.in_channels == 2 and conv.out_channels == 1


def test_alexnet_trains_and_attends_after_conv4():
    model = tiny(backbone="tv_alexnet", output_stride=None).train()
    images = torch.rand(2, 1, 128, 64, generator=torch.Generator().manual_seed(6))
    parts = model.network(images)
    assert parts.attention_map.shape[1] == 1 and parts.features.shape[1] == 256
    losses = abn_loss(binary_logit(parts.attention_logits), binary_logit(parts.perception_logits), torch.tensor([0, 1]))
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"map": "gradcam"}, r"model\.map='gradcam' is not one of attention, class"),
        ({"map_kernel": 2}, r"model\.map_kernel=2 must be an odd positive integer"),
        ({"backbone": "efficientnet_b0"}, "cannot be split before its last stage"),
    ],
)
def test_bad_options_are_config_errors(flags, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**flags)
