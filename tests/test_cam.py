"""The CAM / Grad-CAM baseline: the maps on hand-computed and random cases, Grad-CAM in every evaluation context, the
explanation through the Trainer, and the option check."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from bilatcf.errors import ConfigError
from bilatcf.metrics.callbacks import EvaluationCallback
from bilatcf.models.cam import CAM
from bilatcf.models.cam.network import explanation_map, positive_class_map
from bilatcf.nn.heads import LinearCAMHead
from tests.conftest import random_images


def tiny(**flags) -> CAM:
    pl.seed_everything(0, verbose=False)
    return CAM(**{"backbone": "test_resnet", "output_stride": 16, **flags})


def head_with(weight: list[float], bias: float = 0.0) -> LinearCAMHead:
    head = LinearCAMHead(len(weight))
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([weight]))
        head.linear.bias.fill_(bias)
    return head


# One sample, two channels, a 1×2 map: f0 = [1, 2], f1 = [3, −1]; w = [1, −2] → w·f = [−5, 4].
FEATURES = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])


def test_cam_is_the_positive_class_map_whatever_the_prediction():
    head = head_with([1.0, -2.0], bias=-10.0)  # the logit is −10.5: class 0 predicted
    assert positive_class_map(FEATURES, head, "cam").tolist() == [[[-5.0, 4.0]]]
    logits, predicted_class_map = head(FEATURES)
    assert logits.item() < 0 and predicted_class_map.flatten().tolist() == [5.0, -4.0], "`cam` stays the predicted's"


def test_grad_cam_of_a_gap_linear_head_on_a_hand_computed_case():
    # ∂z/∂f_c = w_c / (h·w) = w_c / 2 at every position → ReLU(Σ_c w_c / 2 · f_c) = ReLU([−5, 4] / 2) = [0, 2].
    assert positive_class_map(FEATURES, head_with([1.0, -2.0]), "gradcam").tolist() == [[[0.0, 2.0]]]


def test_grad_cam_is_relu_cam_over_the_map_size_for_a_gap_linear_head():
    torch.manual_seed(0)
    features, head = torch.randn(3, 8, 4, 2), LinearCAMHead(8)
    cam = positive_class_map(features, head, "cam")
    gradcam = positive_class_map(features, head, "gradcam")
    torch.testing.assert_close(gradcam * 4 * 2, cam.clamp_min(0))
    # Where the CAM is positive everywhere the ReLU changes nothing: the two explanations are the same map.
    positive = features.abs()
    head = head_with([abs(w) for w in head.linear.weight[0].tolist()])
    torch.testing.assert_close(
        explanation_map(positive, head, "gradcam", (16, 8)), explanation_map(positive, head, "cam", (16, 8))
    )


@pytest.mark.parametrize(
    "context", [torch.no_grad, torch.inference_mode, torch.enable_grad], ids=["no_grad", "inference", "grad"]
)
def test_grad_cam_works_in_every_evaluation_context(context):
    model = tiny(map="gradcam").eval()
    target = random_images(0)
    with context():
        expected = model(target, target).explanation
    features = model.backbone(target)
    assert not any(p.grad is not None for p in model.parameters()), "Grad-CAM never touches parameter gradients"
    torch.testing.assert_close(expected, explanation_map(features, model.head, "gradcam", (64, 32)))


@pytest.mark.parametrize("kind", ["cam", "gradcam"])
def test_explanation_is_a_normalised_map_at_image_size_computed_in_evaluation(kind):
    model = tiny(map=kind)
    target = random_images(1)
    assert model.train()(target, target).explanation is None, "training reads the logits alone"
    out = model.eval()(target, target)
    assert out.explanation.shape == target.shape
    assert out.explanation.amin(dim=(1, 2, 3)).tolist() == [0.0, 0.0]
    assert out.explanation.amax(dim=(1, 2, 3)).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("kind", ["cam", "gradcam"])
def test_maps_on_torchvisions_alexnet(kind):
    model = tiny(backbone="tv_alexnet", output_stride=None, map=kind).eval()
    target = torch.rand(2, 1, 128, 64, generator=torch.Generator().manual_seed(2))
    out = model(target, target)
    assert out.explanation.shape == target.shape and torch.isfinite(out.explanation).all()


def test_gradcam_explanation_is_scored_through_the_trainer(tiny_model_datamodule, tmp_path):
    model, evaluation = tiny(map="gradcam"), EvaluationCallback(num_bootstrap=20)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=0,
        limit_test_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[evaluation],
        default_root_dir=tmp_path,
    )
    datamodule = tiny_model_datamodule(CAM)
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)  # Lightning evaluates under torch.inference_mode
    for key in ("test/expl_iou", "test/expl_dice", "test/expl_loc_error"):
        assert key in evaluation.results, key


def test_unknown_map_is_a_config_error_naming_the_flag():
    with pytest.raises(ConfigError, match=r"model\.map='lrp' is not one of cam, gradcam"):
        tiny(map="lrp")
