"""Backbones: shapes, strides and local weights loading (never a download)."""

from pathlib import Path

import pytest
import timm
import torch
import torchvision

from bilatcf.errors import ConfigError
from bilatcf.nn.backbones import create_backbone

IMAGE = torch.rand(2, 1, 64, 32)


@pytest.mark.parametrize(
    ("name", "output_stride", "channels", "stride", "size"),
    [
        ("test_resnet", None, 96, 32, (2, 1)),
        ("test_resnet", 8, 96, 8, (8, 4)),
        # AlexNet: 11×11/4 conv (64→15, 32→7), two unpadded 3×3/2 max-pools (15→7→3, 7→3→1):
        # nominal stride 16, floored map.
        ("tv_alexnet", None, 256, 16, (3, 1)),
    ],
)
def test_backbone_reports_channels_and_stride(name, output_stride, channels, stride, size):
    backbone = create_backbone(name, in_chans=1, output_stride=output_stride)
    features = backbone(IMAGE)
    assert (backbone.out_channels, backbone.stride, backbone.name) == (channels, stride, name)
    assert features.shape == (2, channels, *size)


def test_weights_round_trip_reproduces_outputs(tmp_path: Path):
    source = create_backbone("test_resnet").eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "b.ckpt")
    loaded = create_backbone("test_resnet", weights=str(tmp_path / "b.ckpt")).eval()
    assert torch.equal(loaded(IMAGE), source(IMAGE))


def test_rgb_timm_checkpoint_sums_first_conv(tmp_path: Path):
    rgb = timm.create_model("test_resnet").eval()  # full model: classifier included, 3 input channels
    torch.save(rgb.state_dict(), tmp_path / "rgb.pth")
    gray = create_backbone("test_resnet", weights=str(tmp_path / "rgb.pth")).eval()
    torch.testing.assert_close(gray(IMAGE), rgb.forward_features(IMAGE.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-5)


def test_renamed_timm_feature_model_loads_full_checkpoint(tmp_path: Path):
    # timm's ConvNeXt feature extractor renames stages.0 -> stages_0: the full-model layout must still load.
    rgb = timm.create_model("test_convnext").eval()
    torch.save(rgb.state_dict(), tmp_path / "convnext.pth")
    gray = create_backbone("test_convnext", weights=str(tmp_path / "convnext.pth")).eval()
    expected = rgb.forward_intermediates(IMAGE.repeat(1, 3, 1, 1), intermediates_only=True)[-1]
    torch.testing.assert_close(gray(IMAGE), expected, rtol=1e-4, atol=1e-5)


def test_torchvision_alexnet_checkpoint_loads(tmp_path: Path):
    alexnet = torchvision.models.alexnet().eval()
    torch.save(alexnet.state_dict(), tmp_path / "alexnet.pth")
    gray = create_backbone("tv_alexnet", weights=str(tmp_path / "alexnet.pth")).eval()
    torch.testing.assert_close(gray(IMAGE), alexnet.features[:-1](IMAGE.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-5)


def test_safetensors_weights_load(tmp_path: Path):
    safetensors = pytest.importorskip("safetensors.torch")
    source = create_backbone("tv_alexnet").eval()
    safetensors.save_file(source.state_dict(), str(tmp_path / "b.safetensors"))
    loaded = create_backbone("tv_alexnet", weights=str(tmp_path / "b.safetensors")).eval()
    assert torch.equal(loaded(IMAGE), source(IMAGE))


def test_mismatched_weights_name_file_backbone_and_keys(tmp_path: Path):
    torch.save(create_backbone("tv_alexnet").state_dict(), tmp_path / "alexnet.pth")
    with pytest.raises(ConfigError, match=r"alexnet\.pth.*'test_resnet'.*missing.*conv1"):
        create_backbone("test_resnet", weights=str(tmp_path / "alexnet.pth"))


def test_shape_mismatch_is_reported(tmp_path: Path):
    torch.save(create_backbone("tv_alexnet", in_chans=2).state_dict(), tmp_path / "two.pth")
    with pytest.raises(ConfigError, match=r"shape mismatch \(1\): features\.0\.weight \(64, 2, 11, 11\)"):
        create_backbone("tv_alexnet", in_chans=1, weights=str(tmp_path / "two.pth"))


def test_file_without_state_dict_is_rejected(tmp_path: Path):
    torch.save({"epoch": 3}, tmp_path / "x.pt")
    with pytest.raises(ConfigError, match="does not hold a state dict"):
        create_backbone("tv_alexnet", weights=str(tmp_path / "x.pt"))


@pytest.mark.parametrize("weights", ["imagenet", "IMAGENET", "true", "hf-hub:timm/resnet18.a1_in1k", "timm/resnet18"])
def test_download_weights_are_refused(weights):
    with pytest.raises(ConfigError, match="local file path"):
        create_backbone("test_resnet", weights=weights)


def test_missing_weights_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        create_backbone("test_resnet", weights=str(tmp_path / "nope.pth"))


def test_unknown_name_suggests_close_names():
    with pytest.raises(ConfigError, match=r"Close names: resnet50\b"):
        create_backbone("resnet5")
    with pytest.raises(ConfigError, match="Close names: tv_alexnet"):
        create_backbone("alexnet")


def test_alexnet_stride_is_fixed():
    assert create_backbone("tv_alexnet", output_stride=16).stride == 16
    with pytest.raises(ConfigError, match="fixed output stride of 16"):
        create_backbone("tv_alexnet", output_stride=8)


def test_unsupported_output_stride_is_a_config_error():
    with pytest.raises(ConfigError, match="output_stride"):
        create_backbone("test_vit", output_stride=8)


@pytest.mark.parametrize(("name", "output_stride"), [("test_resnet", 16), ("test_resnet", None), ("tv_alexnet", None)])
def test_trunk_then_last_stage_equals_the_whole_backbone(name, output_stride):
    backbone = create_backbone(name, output_stride=output_stride).eval()
    images = torch.rand(2, 1, 64, 32, generator=torch.Generator().manual_seed(0))
    trunk = backbone.forward_trunk(images)
    assert trunk.shape[1] == backbone.trunk_channels
    assert torch.equal(backbone.forward_last(trunk), backbone(images))
    assert set(backbone.state_dict()) == {
        f"model.{key}" for key in backbone.model.state_dict()
    }  # nothing re-registered


def test_a_backbone_that_cannot_be_split_says_which_can():
    backbone = create_backbone("efficientnet_b0")
    with pytest.raises(ConfigError, match="cannot be split before its last stage"):
        backbone.forward_trunk(torch.rand(1, 1, 64, 32))
