"""Generator/discriminator blocks: output shapes, AdaIN statistics, small-input adaptation, init and freezing."""

import pytest
import torch
from torch import nn

from bilatcf.errors import ConfigError
from bilatcf.nn.blocks import (
    ConvNormAct,
    FeatureDiscriminator,
    PatchDiscriminator,
    ResBlock,
    ResnetGenerator,
    UNet,
    WGANCritic,
    adain,
    init_weights,
    set_requires_grad,
)

IMAGE = torch.rand(2, 1, 64, 32)


def test_adain_gives_content_the_style_statistics():
    torch.manual_seed(0)
    content, style = torch.randn(2, 3, 4, 5), 3 * torch.randn(2, 3, 6, 2) + 7  # spatial sizes may differ
    out = adain(content, style)
    torch.testing.assert_close(out.mean(dim=(2, 3)), style.mean(dim=(2, 3)), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        out.std(dim=(2, 3), correction=0), style.std(dim=(2, 3), correction=0), atol=1e-3, rtol=1e-4
    )
    normalized = (content - content.mean(dim=(2, 3), keepdim=True)) / content.std(
        dim=(2, 3), keepdim=True, correction=0
    )
    torch.testing.assert_close(
        (out - out.mean(dim=(2, 3), keepdim=True)) / out.std(dim=(2, 3), keepdim=True, correction=0),
        normalized,
        atol=1e-4,
        rtol=1e-4,
    )  # the content's pattern is kept


def test_adain_keeps_bf16_dtype():
    assert adain(torch.randn(1, 2, 3, 3, dtype=torch.bfloat16), torch.randn(1, 2, 3, 3)).dtype == torch.bfloat16


def test_conv_norm_act_and_resblock_keep_shape_and_drop_cancelled_bias():
    block = ConvNormAct(3, 8, kernel_size=4, stride=2, norm="batch", act="leaky_relu")
    assert block(torch.rand(2, 3, 16, 8)).shape == (2, 8, 8, 4)
    assert block[0].bias is None and ConvNormAct(3, 8, norm="none")[0].bias is not None
    resblock = ResBlock(8, norm="instance", padding="reflect")
    x = torch.rand(2, 8, 6, 4)
    assert resblock(x).shape == x.shape
    nn.init.zeros_(resblock.body[1][0].weight)  # a residual block whose branch outputs 0 is the identity
    assert torch.equal(resblock(x), x)


@pytest.mark.parametrize("out_activation", [None, "tanh", "sigmoid"])
def test_unet_shape_and_output_range(out_activation):
    out = UNet(1, 2, base=4, depth=4, out_activation=out_activation)(IMAGE)
    assert out.shape == (2, 2, 64, 32)
    if out_activation == "sigmoid":
        assert out.min() >= 0 and out.max() <= 1


def test_unet_needs_divisible_size():
    with pytest.raises(ConfigError, match="divisible by 8; got 36×32"):
        UNet(1, 1, base=4, depth=3)(torch.rand(1, 1, 36, 32))


def test_resnet_generator_shape_and_range():
    out = ResnetGenerator(3, 1, base=4, num_blocks=2, num_down=2)(torch.rand(2, 3, 64, 32))
    assert out.shape == (2, 1, 64, 32) and out.abs().max() <= 1
    with pytest.raises(ConfigError, match="divisible by 4"):
        ResnetGenerator(1, 1, base=4, num_blocks=1)(torch.rand(1, 1, 30, 32))


@pytest.mark.parametrize(
    ("size", "patches"),
    [
        ((256, 256), (30, 30)),  # the pix2pix 70×70 PatchGAN: 256 → 128 → 64 → 32 → 31 → 30
        ((64, 32), (6, 2)),  # 64 → 8 → 6; 32 → 4 → 2
        ((32, 16), (2, 2)),  # 16 → 8 → 4 → (halving would give 2 < 3: kept) 4 → 2
        ((8, 4), (2, 2)),  # every stride-2 layer keeps size 4 on both axes
    ],
)
def test_patch_discriminator_adapts_to_small_inputs(size, patches):
    discriminator = PatchDiscriminator(1, base=4, num_layers=3, norm="batch")
    assert discriminator(torch.rand(2, 1, *size)).shape == (2, 1, *patches)


def test_feature_discriminator_gives_one_logit_per_position():
    assert FeatureDiscriminator(96, hidden=8, num_layers=2)(torch.rand(2, 96, 2, 1)).shape == (2, 1, 2, 1)


def test_wgan_critic_scores_and_features():
    critic = WGANCritic(1, base=4, num_down=4)
    assert critic(IMAGE).shape == (2,)
    assert critic.features(IMAGE).shape == (2, 32, 4, 2)
    assert critic.features(torch.rand(1, 1, 8, 4)).shape == (1, 32, 1, 1)  # 1-px axes keep their size
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules())


def test_init_weights_follows_gan_convention():
    torch.manual_seed(0)
    net = init_weights(nn.Sequential(nn.Conv2d(16, 64, 3), nn.BatchNorm2d(64), nn.Linear(64, 64)), gain=0.02)
    conv, norm, linear = net
    assert abs(conv.weight.std().item() - 0.02) < 0.002 and abs(conv.weight.mean().item()) < 0.002
    assert abs(norm.weight.mean().item() - 1) < 0.01 and abs(norm.weight.std().item() - 0.02) < 0.01
    assert torch.equal(conv.bias, torch.zeros(64)) and torch.equal(norm.bias, torch.zeros(64))
    assert torch.equal(linear.bias, torch.zeros(64))


def test_set_requires_grad_freezes_and_unfreezes():
    first, second = nn.Linear(2, 2), nn.Conv2d(1, 1, 1)
    set_requires_grad([first, second], False)
    assert not any(p.requires_grad for p in [*first.parameters(), *second.parameters()])
    set_requires_grad(first, True)
    assert all(p.requires_grad for p in first.parameters()) and not second.weight.requires_grad


def test_unknown_options_are_config_errors():
    with pytest.raises(ConfigError, match="Unknown norm 'group'"):
        ResBlock(4, norm="group")
    with pytest.raises(ConfigError, match="Unknown padding"):
        ResBlock(4, padding="circular")
    with pytest.raises(ConfigError, match="Unknown out_activation"):
        UNet(1, 1, out_activation="relu")


@pytest.mark.parametrize(
    "network",
    [
        lambda: UNet(1, 1, base=4, depth=3),
        lambda: ResnetGenerator(1, 1, base=4, num_blocks=1),
        lambda: PatchDiscriminator(1, base=4),
        lambda: WGANCritic(1, base=4),
    ],
)
def test_every_parameter_receives_a_gradient(network):
    net = network()
    net(IMAGE).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
