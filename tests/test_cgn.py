"""CGN-specific behaviour (the registry battery in test_models.py / test_cli.py covers the shared contract).

Tiny everything: test_resnet at output stride 16 on 64×32 images (4×2 feature maps), hand-made maps for the losses.
"""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
import yaml

from bilatcf.errors import ConfigError
from bilatcf.models.cgn import CGN
from bilatcf.models.cgn.network import ADAIN_EPS, generator_input, lesion_estimate
from bilatcf.models.outputs import BilateralOutput
from bilatcf.nn.losses import gan_loss
from tests.conftest import REPO, random_images

TINY = {"backbone": "test_resnet", "output_stride": 16}


def tiny(**flags) -> CGN:
    pl.seed_everything(0, verbose=False)
    return CGN(**TINY, **flags)


images = random_images


def column(values: list[float]) -> torch.Tensor:
    """A [1, 1, n, 1] map: one sample, one channel, n positions."""
    return torch.tensor(values).view(1, 1, -1, 1)


# ---------------------------------------------------------------------------------------------------- Eq. 6–7


def test_adain_generator_input_matches_hand_computation():
    target, reference = column([1.0, 2.0, 3.0, 4.0]), column([10.0, 10.0, 20.0, 20.0])
    # AdaIN: σ(H_R)·(H_T − μ(H_T))/σ(H_T) + μ(H_R), biased σ: μ_T = 2.5, var_T = 1.25, μ_R = 15, var_R = 25.
    normalised = [(x - 2.5) / math.sqrt(1.25 + ADAIN_EPS) for x in (1.0, 2.0, 3.0, 4.0)]
    styled = [math.sqrt(25 + ADAIN_EPS) * n + 15 for n in normalised]
    expected = column([0.7 * x + 0.3 * s for x, s in zip([1.0, 2.0, 3.0, 4.0], styled)])
    actual = generator_input(target, reference, "adain-gan", alpha=0.3)
    torch.testing.assert_close(actual, expected)
    full = generator_input(target, reference, "adain-gan", alpha=1.0)
    assert full.mean().item() == pytest.approx(15.0, abs=1e-5)  # α = 1: the reference's statistics
    expected_std = math.sqrt(25 + ADAIN_EPS) * math.sqrt(1.25 / (1.25 + ADAIN_EPS))  # σ(H_R) = 5 up to ε
    assert full.std(unbiased=False).item() == pytest.approx(expected_std)


def test_generator_inputs_of_the_table_iii_rows():
    target, reference = torch.randn(2, 3, 4, 2), torch.randn(2, 3, 4, 2)
    torch.testing.assert_close(
        generator_input(target, reference, "adain-gan", alpha=0.0),
        generator_input(target, reference, "tf-gan", alpha=0.5),
    )
    torch.testing.assert_close(generator_input(target, reference, "bf-gan", alpha=0.5), (target + reference) / 2)
    assert torch.equal(generator_input(target, reference, "tf-gan", alpha=0.5), target)
    assert torch.equal(generator_input(target, reference, "none", alpha=0.5), target)


# ---------------------------------------------------------------------------------------------------- Eq. 10–12, 20


def hand_made_triplet_case() -> tuple[torch.Tensor, ...]:
    """Two samples of 2×1 one-channel maps (H_T, H_R, H_C, Ω).

    Sample 1: H_T = (0, 0), H_C = (1, 0), H_R = (3, 0), Ω = (0.75, 0.25).
      d_tc = ((1 − 0.75)·1² + (1 − 0.25)·0) / (2 − 1) = 0.25
      d_rc = (min(3→{1,0}) = 4, min(0→·) = 0, min(1→{3,0}) = 1, min(0→·) = 0) → 5 / (2·2) = 1.25
    Sample 2: H_T = H_C = (0, 0), H_R = (2, 2), Ω = (0.5, 0.5): d_tc = 0, d_rc = (4 + 4 + 4 + 4) / 4 = 4.
    """
    target = torch.zeros(2, 1, 2, 1)
    counterfactual = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(2, 1, 2, 1)
    reference = torch.tensor([[3.0, 0.0], [2.0, 2.0]]).view(2, 1, 2, 1)
    omega = torch.tensor([[0.75, 0.25], [0.5, 0.5]]).view(2, 1, 2, 1)
    return target, reference, counterfactual, omega


def test_feedback_triplet_loss_on_a_hand_made_case():
    # β = 1.5: sample 1 gives max(0, 0.25 + 1.5 − 1.25) = 0.5, sample 2 gives max(0, 0 + 1.5 − 4) = 0; mean 0.25.
    # (A hinge on the batch means would give max(0, 0.125 + 1.5 − 2.625) = 0: the hinge must be per sample.)
    losses = tiny(margin=1.5).triplet_losses(*hand_made_triplet_case())
    assert losses.keys() == {"ft"}
    assert losses["ft"].item() == pytest.approx(0.25)


def test_adaptive_reference_keeps_the_value_and_drops_the_gradient_of_d_rc():
    target, reference, counterfactual, omega = hand_made_triplet_case()
    counterfactual.requires_grad_()
    for adaptive, pushes_from_reference in ((False, True), (True, False)):
        counterfactual.grad = None
        losses = tiny(margin=1.5, adaptive_reference=adaptive).triplet_losses(target, reference, counterfactual, omega)
        assert losses["ft"].item() == pytest.approx(0.25)
        losses["ft"].backward()
        # Sample 1, position 0 (H_C = 1, H_T = 0, H_R = (3, 0)), loss averaged over 2 samples:
        # ∂d_tc/∂H_C = 2·0.25·1 = 0.5; ∂d_rc/∂H_C = (−2·(3 − 1) + 2·(1 − 0)) / 4 = −0.5, so −d_rc adds +0.5 when
        # d_rc is trained (H_C is pushed away from the reference's 3) and nothing when it is the adaptive reference.
        grad = counterfactual.grad[0, 0, 0, 0].item()
        assert grad == pytest.approx((0.5 + (0.5 if pushes_from_reference else 0.0)) / 2)


def test_fc_variant_uses_d_tc_alone():
    losses = tiny(variant="fc", margin=1.5).triplet_losses(*hand_made_triplet_case())
    assert losses.keys() == {"fc"}
    assert losses["fc"].item() == pytest.approx((0.25 + 0.0) / 2)


def test_triplet_weight_scales_the_loss():
    losses = tiny(margin=1.5, triplet_weight=4.0).triplet_losses(*hand_made_triplet_case())
    assert losses["ft"].item() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------- Ω, Eq. 16–18


def test_omega_is_a_distribution_over_positions_for_both_estimates():
    model = tiny(triplet="feedback")
    out = model(images(0), images(1))
    for feedback in (True, False):
        omega = lesion_estimate(out, feedback=feedback)
        assert omega.shape == out.cam.shape
        assert not omega.requires_grad
        torch.testing.assert_close(omega.flatten(1).sum(1), torch.ones(2))


def test_feedback_omega_is_the_softmax_of_the_cam_and_non_feedback_follows_the_distance():
    cam = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 2, 1)
    target = torch.zeros(1, 2, 2, 1)
    counterfactual = torch.tensor([[3.0, 0.0], [0.0, 0.0]]).view(1, 2, 2, 1)  # position 0 differs by ‖(3, 0)‖² = 9
    out = BilateralOutput(logits=torch.tensor([1.0]), cam=cam, target_features=target, cf_features=counterfactual)
    torch.testing.assert_close(lesion_estimate(out, feedback=True), column([0.25, 0.75]))
    weight = math.exp(9.0) / (math.exp(9.0) + 1.0)
    torch.testing.assert_close(lesion_estimate(out, feedback=False), column([weight, 1 - weight]))
    # Predicted benign (logit < 0): the head returned −w·f; the malignant-class Ω softmaxes w·f instead.
    out = out.replace(logits=torch.tensor([-1.0]))
    torch.testing.assert_close(lesion_estimate(out, True, class_map="malignant"), column([0.75, 0.25]))
    torch.testing.assert_close(lesion_estimate(out, True, class_map="predicted"), column([0.25, 0.75]))


def test_masked_adversarial_loss_only_counts_the_lesion_patches():
    logits = column([2.0, -3.0])
    softplus = torch.nn.functional.softplus
    plain = (softplus(torch.tensor(-2.0)) + softplus(torch.tensor(3.0))) / 2  # BCE against "real" = softplus(−z)
    assert gan_loss(logits, True).item() == pytest.approx(plain.item())
    assert gan_loss(logits, True, weight=column([1.0, 0.0])).item() == pytest.approx(math.log1p(math.exp(-2.0)))
    assert gan_loss(logits, False, weight=column([0.0, 1.0])).item() == pytest.approx(math.log1p(math.exp(-3.0)))


# ---------------------------------------------------------------------------------------------------- the flags


def test_tf_gan_generator_ignores_the_reference_and_adain_gan_reads_it():
    target, first, second = images(0), images(1), images(2)
    tf_gan = tiny(bilateral="tf-gan", use_ne=False, triplet="none").eval()
    torch.testing.assert_close(tf_gan(target, first).cf_features, tf_gan(target, second).cf_features)
    adain_gan = tiny().eval()
    assert not torch.allclose(adain_gan(target, first).cf_features, adain_gan(target, second).cf_features)


def test_vanilla_never_reads_the_reference_and_sbf_does():
    target, first, second = images(0), images(1), images(2)
    vanilla = tiny(bilateral="none", use_ne=False, triplet="none")
    out = vanilla(target, first)
    assert out.reference_features is None and out.cf_features is None
    torch.testing.assert_close(out.logits, vanilla(target, second).logits)
    sbf = tiny(bilateral="sbf", use_ne=False, triplet="none").eval()
    assert not torch.allclose(sbf(target, first).logits, sbf(target, second).logits)


def test_networks_built_for_each_row():
    vanilla = tiny(bilateral="none", use_ne=False, triplet="none").network
    assert vanilla.generator is None and vanilla.discriminator is None
    row8 = tiny(bilateral="none", use_ne=True, triplet="feedback").network  # Table III row 8: no GAN
    assert row8.generator is not None and row8.discriminator is None
    full = tiny().network
    assert full.generator is not None and full.discriminator is not None


def test_classifier_input_is_residual_and_target():
    model = tiny().eval()
    out = model(images(0), images(1))
    residual = out.target_features - out.cf_features
    expected_logits, expected_cam = model.network.classifier(torch.cat([residual, out.target_features], dim=1))
    torch.testing.assert_close(out.logits, expected_logits)
    torch.testing.assert_close(out.cam, expected_cam)
    torch.testing.assert_close(out.explanation, residual.abs().amax(dim=1, keepdim=True))


def loss_gradients(model: CGN, name: str) -> dict[str, bool]:
    """Which parts of the network the generator-side loss ``name`` reaches (one tiny forward in train mode)."""
    out = model(images(0), images(1))
    omega = model.lesion_area(out)
    batch = type("Batch", (), {"label": torch.tensor([1, 0])})()
    model.generator_losses(out, omega, batch)[name].backward()
    parts = {
        "backbone": model.network.backbone,
        "generator": model.network.generator,
        "classifier": model.network.classifier,
    }
    return {
        part: any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
        for part, module in parts.items()
    }


def test_negative_embedding_trains_the_generator_and_only_optionally_the_classifier():
    assert loss_gradients(tiny(), "ne") == {"backbone": False, "generator": True, "classifier": False}
    assert loss_gradients(tiny(ne_trains_classifier=True), "ne")["classifier"]


def test_detach_features_keeps_counterfactual_losses_off_the_backbone():
    assert loss_gradients(tiny(margin=100.0), "ft") == {"backbone": False, "generator": True, "classifier": False}
    assert loss_gradients(tiny(margin=100.0, detach_features=False), "ft")["backbone"]
    assert loss_gradients(tiny(), "cls") == {"backbone": True, "generator": True, "classifier": True}


def test_classification_loss_trains_the_backbone_on_the_reference_through_the_counterfactual():
    model = tiny()
    reference = images(1).requires_grad_()
    out = model(images(0), reference)
    with torch.no_grad():  # one G pass without gradients, two copies with: the same values
        torch.testing.assert_close(out.logits, model(images(0), reference).logits)
    out.logits.sum().backward()
    assert reference.grad.abs().sum() > 0  # H_R reaches L_CLS only through AdaIN and G


def test_negative_embedding_does_not_touch_batch_norm_statistics():
    model = tiny()
    out = model(images(0), images(1))
    before = {k: v.clone() for k, v in model.network.classifier.state_dict().items()}
    model.network.counterfactual_logits(out.cf_features, train_classifier=False)
    after = model.network.classifier.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.network.classifier.training


@pytest.mark.parametrize(
    "flags",
    [
        {"bilateral": "sbf"},  # use_ne and the triplet need a generator
        {"variant": "fc", "triplet": "none"},
        {"bilateral": "sbf", "use_ne": False, "triplet": "none", "level": "image"},
        {"bilateral": "none", "use_ne": False, "triplet": "none", "variant": "masked-d"},
        {"alpha": 1.5},
        {"bilateral": "adain"},
        {"feedback_map": "benign"},
    ],
)
def test_undefined_flag_combinations_are_config_errors(flags):
    with pytest.raises(ConfigError, match="CGN: "):
        CGN(**TINY, **flags)


# ---------------------------------------------------------------------------------------------------- training


def test_one_training_step_updates_both_optimizers_and_counts_one_iteration(tiny_datamodule_factory):
    model = tiny()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=tiny_datamodule_factory())
    assert int(model.iteration) == 1
    assert trainer.global_step == 2  # one G and one D optimizer step: why the model keeps its own counter
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    generator_optimizer, discriminator_optimizer = trainer.optimizers
    names = {id(p): n for n, p in model.named_parameters()}
    for optimizer in (generator_optimizer, discriminator_optimizer):
        assert any(names[id(p)] in changed for group in optimizer.param_groups for p in group["params"])
    assert all(
        n.startswith("network.discriminator.")
        for n in (names[id(p)] for g in discriminator_optimizer.param_groups for p in g["params"])
    )
    assert {
        "train/generator",
        "train/discriminator",
        "train/cls",
        "train/adv",
        "train/ne",
        "train/ft",
        "diag/d_tc",
        "diag/d_rc",
    } <= set(trainer.callback_metrics)


def test_image_level_outputs_a_counterfactual_image_in_unit_range():
    model = tiny(level="image")
    target = images(0)
    out = model(target, images(1))
    assert out.counterfactual.shape == target.shape
    assert out.counterfactual.min() >= 0 and out.counterfactual.max() <= 1
    torch.testing.assert_close(out.explanation, (target - out.counterfactual).abs())
    assert out.cf_features.shape == out.target_features.shape


# ---------------------------------------------------------------------------------------------------- configs


def test_model_yaml_spells_out_the_constructor_defaults():
    import inspect

    init_args = yaml.safe_load((REPO / "configs" / "models" / "cgn.yaml").read_text())["model"]["init_args"]
    defaults = {k: p.default for k, p in inspect.signature(CGN.__init__).parameters.items() if k != "self"}
    assert init_args == defaults


def test_ablation_yamls_cover_tables_iii_and_iv():
    rows = {
        path.stem: yaml.safe_load(path.read_text())["model"]["init_args"]
        for path in (REPO / "configs" / "ablations" / "cgn").glob("*.yaml")
    }
    settings = {
        (
            r.get("bilateral", "adain-gan"),
            r.get("use_ne", True),
            r.get("triplet", "feedback"),
            r.get("variant", "none"),
            r.get("level", "feature"),
        )
        for r in rows.values()
    }
    table_iii = {
        ("none", False, "none"),
        ("sbf", False, "none"),
        ("tf-gan", False, "none"),
        ("bf-gan", False, "none"),
        ("adain-gan", False, "none"),
        ("adain-gan", True, "none"),
        ("adain-gan", True, "non-feedback"),
        ("none", True, "feedback"),
        ("adain-gan", False, "feedback"),
        ("adain-gan", True, "feedback"),
    }
    assert table_iii <= {s[:3] for s in settings if s[3:] == ("none", "feature")}
    assert {("masked-d", "feature"), ("fc", "feature"), ("none", "image")} <= {s[3:] for s in settings}
