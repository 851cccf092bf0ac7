"""Wu et al.'s view-wise model: ResNet-22's shape, the [target, reference] concatenation, Grad-CAM on a planted case and
in every evaluation context, the training-only input noise, the reference head's labels, and the four-view branches
(the battery trains the four-view YAML on two-view data; the four-view data are checked here)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.models.wu import Wu
from bilatcf.models.wu.network import (
    STAGE_WIDTHS,
    PreActBlock,
    ViewWiseBranch,
    WuResNet22,
    average_views,
    standardize,
    target_grad_cam,
)
from bilatcf.nn.backbones import Backbone
from tests.conftest import random_images
from tests.test_models import quiet_trainer

REPO = Path(__file__).resolve().parents[1]


def tiny(**flags) -> Wu:
    pl.seed_everything(0, verbose=False)
    return Wu(**{"backbone": "test_resnet", "output_stride": 16, **flags})


def batch_of(target, reference, views=("CC", "MLO"), others=None, label=(1, 0), ref_label=(0, 0)) -> BilateralBatch:
    """A hand-made batch of len(views) pairs: the given images, views and labels, dataset indices 0, 1, …"""
    size = len(target)
    flags = torch.zeros(size, dtype=torch.bool)
    return BilateralBatch(
        target=target,
        reference=reference,
        label=torch.tensor(label),
        ref_label=torch.tensor(ref_label),
        asym_label=torch.tensor(label),
        target_mask=torch.zeros_like(target),
        has_mask=flags,
        healthy=torch.zeros_like(target),
        has_healthy=flags,
        meta=[{"index": i, "view": view} for i, view in enumerate(views)],
        target_other=None if others is None else others[0],
        reference_other=None if others is None else others[1],
    )


# ---------------------------------------------------------------------------------------------------- ResNet-22
def test_resnet22_has_the_papers_stem_stages_widths_and_stride():
    network = WuResNet22()
    stem_conv, pool = network.stem
    assert (stem_conv.in_channels, stem_conv.out_channels, stem_conv.kernel_size, stem_conv.stride) == (
        1,
        16,
        (7, 7),
        (2, 2),
    )
    assert isinstance(pool, nn.MaxPool2d) and pool.stride == 2
    assert len(network.stages) == 5 and all(len(stage) == 2 for stage in network.stages)
    assert all(isinstance(block, PreActBlock) for stage in network.stages for block in stage)
    assert [stage[-1].conv2.out_channels for stage in network.stages] == list(STAGE_WIDTHS) == [16, 32, 64, 128, 256]
    main_path = [m for m in network.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    assert len(main_path) == 21, "7×7 stem + 5 stages × 2 blocks × 2 convs; the classifier is the 22nd layer"
    features = network(torch.rand(1, 1, 256, 128))
    assert features.shape == (1, 256, 4, 2) and network.stride == 64 and network.out_channels == 256
    assert (features >= 0).all(), "a pre-activation network ends on BN + ReLU"


def test_resnet22_blocks_are_pre_activation():
    block = PreActBlock(16, 16).eval()
    for conv in (block.conv1, block.conv2):
        nn.init.zeros_(conv.weight)
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(block(x), x, msg="no activation after the sum: the identity shortcut passes x as is")
    projected = PreActBlock(16, 32, stride=2)
    assert projected.shortcut.stride == (2, 2) and projected(x).shape == (2, 32, 4, 4)


@pytest.mark.parametrize(("output_stride", "size"), [(16, (16, 8)), (32, (8, 4)), (8, (32, 16))])
def test_resnet22_output_stride_by_dilation(output_stride, size):
    network = WuResNet22(output_stride=output_stride)
    assert network(torch.rand(1, 1, 256, 128)).shape == (1, 256, *size) and network.stride == output_stride


def test_resnet22_is_the_models_backbone_option():
    model = tiny(backbone="wu_resnet22", output_stride=None).eval()
    backbone = model.branches["shared"].backbone
    assert isinstance(backbone.model, WuResNet22) and backbone.stride == 64
    out = model(torch.rand(2, 1, 128, 64), torch.rand(2, 1, 128, 64))
    assert out.cam.shape == (2, 1, 2, 1) and torch.isfinite(out.logits).all()


def test_resnet22_options_are_checked():
    with pytest.raises(ConfigError, match="supports output_stride 8, 16, 32, 64"):
        WuResNet22(output_stride=4)
    with pytest.raises(ConfigError, match="trains from scratch"):
        tiny(backbone="wu_resnet22", weights="resnet.pth")


# ---------------------------------------------------------------------------------------------------- the branch
def test_features_are_pooled_and_concatenated_in_the_order_target_then_reference():
    model = tiny().eval()
    branch, seen = model.branches["shared"], {}
    branch.fc[0].register_forward_hook(lambda module, args, out: seen.update(fc_input=args[0]))
    target, reference = random_images(0), random_images(1)
    model(target, reference)
    pooled = [branch.backbone(standardize(x)).mean(dim=(2, 3)) for x in (target, reference)]
    torch.testing.assert_close(seen["fc_input"], torch.cat(pooled, dim=1))
    assert branch.fc[0].out_features == 512 and isinstance(branch.fc[1], nn.ReLU)


def test_both_sides_go_through_one_shared_backbone_and_no_image_is_flipped():
    # The pipeline has already mirrored the reference to face the same way as the target: flipping it again would
    # undo that, so the backbone must receive both images as given (standardised).
    model = tiny().eval()
    branch, seen = model.branches["shared"], {}
    branch.backbone.register_forward_pre_hook(lambda module, args: seen.update(images=args[0]))
    target, reference = random_images(2), random_images(3)
    model(target, reference)
    torch.testing.assert_close(seen["images"], torch.cat([standardize(target), standardize(reference)]))
    assert len(model.branches) == 1 and set(model.branches) == {"shared"}


# ---------------------------------------------------------------------------------------------------- Grad-CAM
def planted_branch() -> ViewWiseBranch:
    """Identity backbone on 2-channel 'features'; target logit = ReLU(pooled channel 0) − ReLU(pooled channel 1)."""
    branch = ViewWiseBranch(Backbone(nn.Identity(), "identity", out_channels=2, stride=1), hidden=2)
    with torch.no_grad():
        branch.fc[0].weight.zero_()
        branch.fc[0].weight[0, 0] = 1.0  # hidden 0 ← the target's channel 0 (the lesion channel)
        branch.fc[0].weight[1, 1] = 1.0  # hidden 1 ← the target's channel 1 (a distractor channel)
        branch.fc[0].bias.zero_()
        branch.side_logits.weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 0.0]]))
        branch.side_logits.bias.zero_()
    return branch


def test_grad_cam_is_high_at_the_planted_discriminative_position():
    features = torch.zeros(1, 2, 6, 4)
    features[0, 0, 4, 1] = 5.0  # evidence for the positive class
    features[0, 1, 1, 2] = 2.0  # evidence against it
    cam = target_grad_cam(planted_branch(), features, torch.zeros(1, 2, 6, 4))
    assert cam.shape == (1, 6, 4)
    assert divmod(int(cam.flatten().argmax()), 4) == (4, 1)
    # α = ∂z/∂f = (1, −1) / (h·w): the map is ReLU((f0 − f1) / 24), zero on the distractor.
    assert cam[0, 4, 1].item() == pytest.approx(5.0 / 24) and cam[0, 1, 2].item() == 0.0


def test_grad_cam_explains_the_predicted_class():
    features = torch.zeros(1, 2, 6, 4)
    features[0, 1, 1, 2] = 2.0  # only evidence against: a negative prediction, explained by its own evidence
    cam = target_grad_cam(planted_branch(), features, torch.zeros(1, 2, 6, 4))
    assert divmod(int(cam.flatten().argmax()), 4) == (1, 2) and cam[0, 1, 2].item() == pytest.approx(2.0 / 24)


@pytest.mark.parametrize(
    "context", [torch.no_grad, torch.inference_mode, torch.enable_grad], ids=["no_grad", "inference", "grad"]
)
def test_grad_cam_works_in_every_evaluation_context(context):
    model = tiny().eval()
    target, reference = random_images(3), random_images(4)
    with context():
        cam = model(target, reference).cam
    branch = model.branches["shared"]
    features = [branch.backbone(standardize(x)) for x in (target, reference)]
    assert cam.shape == (2, 1, 4, 2)
    torch.testing.assert_close(cam[:, 0], target_grad_cam(branch, *features))
    assert all(p.grad is None for p in model.parameters()), "Grad-CAM never touches the parameters' gradients"
    prediction = model.predict_step(batch_of(target, reference))
    assert prediction.cam.shape == target.shape and prediction.cam.min() >= 0 and prediction.cam.max() <= 1


# ---------------------------------------------------------------------------------------------------- training
def captured_forward_noise(model: Wu, batch: BilateralBatch) -> dict[str, torch.Tensor | None]:
    """The ``noise`` argument forward receives in a training step and in a prediction."""
    seen, forward = {}, model.forward
    model.forward = lambda *args, noise=None, **kwargs: (
        seen.update({model.training: noise}) or forward(*args, noise=noise, **kwargs)
    )
    model.log_losses = lambda losses: sum(losses.values())
    model.train().training_step(batch, 0)
    model.eval().predict_step(batch)
    return seen


def test_input_noise_is_added_in_training_only():
    batch = batch_of(random_images(5), random_images(6))
    seen = captured_forward_noise(tiny(input_noise=0.01), batch)
    assert seen[False] is None, "evaluation sees the images as they are"
    assert seen[True].shape == (2, 2, 1, 64, 32) and 0.9 < seen[True].std().item() < 1.1
    assert captured_forward_noise(tiny(input_noise=0.0), batch)[True] is None
    model = tiny(input_noise=0.01)
    image, noise = random_images(7), torch.randn(2, 2, 1, 64, 32)
    torch.testing.assert_close(model._inputs([image], noise)[0], standardize(image) + 0.01 * noise[:, 0])


def test_input_noise_is_keyed_on_the_pair_and_the_iteration():
    model, batch = tiny(), batch_of(random_images(5), random_images(6))
    first = model.input_noise_draws(batch)
    torch.testing.assert_close(first, model.input_noise_draws(batch))
    swapped = batch_of(random_images(5), random_images(6))
    swapped.meta = list(reversed(batch.meta))
    torch.testing.assert_close(model.input_noise_draws(swapped), first.flip(0), msg="row i follows pair i")
    model.iteration += 1
    assert not torch.allclose(model.input_noise_draws(batch), first)


def training_losses(model: Wu, batch: BilateralBatch) -> dict[str, float]:
    losses = {}
    model.log_losses = lambda values: losses.update({k: float(v) for k, v in values.items()}) or sum(values.values())
    model.train().training_step(batch, 0)
    return losses


def test_reference_head_is_trained_on_the_known_reference_labels():
    model = tiny(input_noise=0.0)
    batch = batch_of(random_images(8), random_images(9), label=(1, 0), ref_label=(0, -1))
    model.train()
    out = model.forward_batch(batch)
    expected = F.binary_cross_entropy_with_logits(out.heads["reference"][:1], torch.tensor([0.0]))
    losses = training_losses(model, batch)
    assert losses["reference_cls"] == pytest.approx(float(expected), rel=1e-5), "the unknown reference is ignored"
    assert losses["cls"] == pytest.approx(float(model.classification_loss(out.logits, batch.label)), rel=1e-5)
    assert set(training_losses(tiny(reference_weight=0.0, input_noise=0.0), batch)) == {"cls"}
    assert model.eval().forward_batch(batch).heads == {}, "evaluation reads the target head alone"


# ---------------------------------------------------------------------------------------------------- four views
def test_average_views_is_the_logit_of_the_mean_probability():
    logits = torch.tensor([[0.0, 2.0, 300.0], [math.log(3.0), -7.0, 300.0]])
    both = torch.ones(2, 3, dtype=torch.bool)
    averaged = average_views(logits, both)
    assert averaged[0].item() == pytest.approx(math.log(0.625 / 0.375))  # mean of 0.5 and 0.75
    expected = torch.logit(torch.sigmoid(logits[:, 1].double()).mean())
    assert averaged[1].item() == pytest.approx(float(expected))
    assert torch.isfinite(averaged).all(), "log-sum-exp keeps saturated logits finite"
    one = torch.tensor([[True, False, True], [False, True, False]])
    torch.testing.assert_close(average_views(logits, one), torch.tensor([0.0, -7.0, 300.0]))


def test_four_view_has_a_backbone_per_view_and_averages_a_pairs_views():
    model = tiny(four_view=True).eval()
    cc, mlo = model.branches["cc"], model.branches["mlo"]
    assert not {id(p) for p in cc.parameters()} & {id(p) for p in mlo.parameters()}
    target, reference = random_images(10), random_images(11)
    target_other, reference_other = random_images(12), random_images(13)
    reference_other[1] = 0.0
    target_other[1] = 0.0  # pair 1's study has no other view: the pipeline fills zeros
    out = model.forward_batch(batch_of(target, reference, ("CC", "MLO"), (target_other, reference_other)))

    def logit(branch, t, r):
        return branch(standardize(t), standardize(r))[0]

    own_cc = logit(cc, target[:1], reference[:1])
    other_mlo = logit(mlo, target_other[:1], reference_other[:1])
    expected_0 = average_views(torch.stack([own_cc, other_mlo]), torch.ones(2, 1, dtype=torch.bool))
    torch.testing.assert_close(out.logits[:1], expected_0)
    torch.testing.assert_close(out.logits[1:], logit(mlo, target[1:], reference[1:]), msg="its own view alone")
    cam_0 = target_grad_cam(cc, cc.backbone(standardize(target[:1])), cc.backbone(standardize(reference[:1])))
    torch.testing.assert_close(out.cam[:1, 0], cam_0, msg="the map is the target view's")


def test_four_view_without_other_views_scores_each_pair_with_its_own_view():
    model = tiny(four_view=True).eval()
    target, reference = random_images(14), random_images(15)
    out = model.forward_batch(batch_of(target, reference, ("MLO", "CC")))
    mlo = model.branches["mlo"](standardize(target[:1]), standardize(reference[:1]))[0]
    cc = model.branches["cc"](standardize(target[1:]), standardize(reference[1:]))[0]
    torch.testing.assert_close(out.logits, torch.cat([mlo, cc]))
    with pytest.raises(ConfigError, match="needs each pair's view"):
        model(target, reference)


def test_a_branch_without_images_gets_a_zero_gradient_also_under_bf16():
    # Only CC pairs and no other views: the MLO branch scores nothing, but DDP needs a gradient for it.
    model = tiny(four_view=True)
    batch = batch_of(random_images(16), random_images(17), ("CC", "CC"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_batch(batch)
    model.classification_loss(out.logits, batch.label).backward()
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.logits).all()
    assert all(p.grad is not None and not p.grad.any() for p in model.branches["mlo"].parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.branches["cc"].parameters())


def test_four_view_trains_both_branches_on_four_view_data(tiny_datamodule_factory):
    datamodule = tiny_datamodule_factory({"four_view": True})
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.target_other is not None
    model = tiny(four_view=True)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    quiet_trainer(max_epochs=1, limit_train_batches=2).fit(model, datamodule=datamodule)
    for name in ("cc", "mlo"):
        moved = [
            n for n, p in model.branches[name].named_parameters() if not torch.equal(p, before[f"branches.{name}.{n}"])
        ]
        assert len(moved) == len(list(model.branches[name].parameters())), name


def test_four_view_on_two_view_data_trains_with_a_warning(tiny_datamodule_factory):
    with pytest.warns(UserWarning, match=r"no other views \(--data.four_view false\)"):
        quiet_trainer(max_epochs=1, limit_train_batches=1).fit(
            tiny(four_view=True), datamodule=tiny_datamodule_factory()
        )


def test_four_view_yaml_sets_the_model_flag_and_the_data_option():
    config = yaml.safe_load((REPO / "configs" / "ablations" / "wu" / "four_view.yaml").read_text())
    assert config["model"]["init_args"] == {"four_view": True}
    assert config["data"]["init_args"] == {"four_view": True}


@pytest.mark.parametrize(
    ("flags", "message"),
    [({"hidden": 0}, "hidden=0"), ({"input_noise": -0.1}, "input_noise=-0.1"), ({"reference_weight": -1}, "reference")],
)
def test_options_are_checked(flags, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**flags)
