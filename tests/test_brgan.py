"""BR-GAN-specific behaviour (the registry battery in test_models.py / test_cli.py covers the shared contract).

Tiny everything: test_resnet at output stride 16 on 64×32 images (4×2 feature maps), hand-made maps for Eq. 2–3.
"""

from __future__ import annotations

import inspect
import math

import pytest
import pytorch_lightning as pl
import torch
import yaml

from bilatcf.errors import ConfigError
from bilatcf.models.brgan import BRGAN
from bilatcf.models.brgan.network import preserved_features, residual_embedding_loss
from tests.conftest import REPO, random_images

TINY = {"backbone": "test_resnet", "output_stride": 16}


def tiny(**flags) -> BRGAN:
    pl.seed_everything(0, verbose=False)
    return BRGAN(**TINY, **flags)


images = random_images


# ---------------------------------------------------------------------------------------------------- Eq. 2


def test_preserved_features_softmax_runs_over_positions_per_channel():
    # One sample, two channels, two positions. Residuals: channel 0 (ln 3, 0) → softmax (3/4, 1/4);
    # channel 1 (0, 0) → (1/2, 1/2). A softmax over channels would instead give (1/2… ) per position.
    target = torch.tensor([[[[2.0, 4.0]], [[6.0, 8.0]]]])  # [1, 2, 1, 2]
    healthy = target - torch.tensor([[[[math.log(3.0), 0.0]], [[0.0, 0.0]]]])
    literal = preserved_features(target, healthy, use_mask=True, rescale=False)
    expected = torch.tensor([[[[2.0 * 0.75, 4.0 * 0.25]], [[6.0 * 0.5, 8.0 * 0.5]]]])
    torch.testing.assert_close(literal, expected)
    torch.testing.assert_close(preserved_features(target, healthy, rescale=True), 2 * expected)  # × h·w = 2


def test_uniform_residual_keeps_the_target_and_no_mask_is_the_residual():
    target, healthy = torch.randn(2, 3, 4, 2), torch.randn(2, 3, 4, 2)
    torch.testing.assert_close(preserved_features(target, target - 1.0), target)  # uniform residual, rescaled
    torch.testing.assert_close(preserved_features(target, healthy, use_mask=False), target - healthy)


# ---------------------------------------------------------------------------------------------------- Eq. 3


def test_residual_embedding_is_bce_to_the_detached_target_probability():
    preserved, target = torch.tensor([0.0, 2.0]), torch.tensor([math.log(3.0), 0.0], requires_grad=True)
    # targets p = (3/4, 1/2); predictions q = (1/2, σ(2)).
    q = torch.sigmoid(torch.tensor(2.0)).item()
    expected = (-(0.75 * math.log(0.5) + 0.25 * math.log(0.5)) - (0.5 * math.log(q) + 0.5 * math.log(1 - q))) / 2
    loss = residual_embedding_loss(preserved, target)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert not loss.requires_grad  # the target side carries no gradient


# ---------------------------------------------------------------------------------------------------- rows


def test_networks_built_for_each_row():
    vanilla = tiny(bilateral="none", cycle="none", use_re=False, use_mask=False).network
    assert vanilla.g_t2c is None and vanilla.g_c2t is None and not vanilla.discriminators()
    gan = tiny(cycle="none", use_re=False, use_mask=False).network
    assert gan.g_t2c is not None and gan.g_c2t is None and gan.d_c is not None and gan.d_t is None
    full = tiny().network
    assert full.g_c2t is not None and full.d_t is not None
    assert full.g_c2t.project_in.in_channels == 2 * full.backbone.out_channels


def test_vanilla_never_reads_the_reference_and_sbf_does():
    target, first, second = images(0), images(1), images(2)
    vanilla = tiny(bilateral="none", cycle="none", use_re=False, use_mask=False)
    out = vanilla(target, first)
    assert out.reference_features is None and out.cf_features is None
    torch.testing.assert_close(out.logits, vanilla(target, second).logits)
    sbf = tiny(bilateral="sbf", cycle="none", use_re=False, use_mask=False).eval()
    assert not torch.allclose(sbf(target, first).logits, sbf(target, second).logits)


def test_the_full_model_scores_a_target_without_its_reference():
    # Eq. 2: f_H = G_T2C(f_T). The contralateral shapes G_T2C in training (D_C's real samples) but is not an input
    # at evaluation, so the score is a function of the target alone, as vanilla's is (docs/models/brgan.md, Results).
    model = tiny().eval()
    target = images(0)
    torch.testing.assert_close(model(target, images(1)).logits, model(target, images(2)).logits)


def test_classifier_input_is_residual_and_target():
    model = tiny().eval()
    out = model(images(0), images(1))
    residual = out.target_features - out.cf_features
    expected_logits, expected_cam = model.network.classifier(torch.cat([residual, out.target_features], dim=1))
    torch.testing.assert_close(out.logits, expected_logits)
    torch.testing.assert_close(out.cam, expected_cam)
    torch.testing.assert_close(out.explanation, residual.abs().amax(dim=1, keepdim=True))


def test_generator_inputs_of_each_row():
    """G_C2T reads [f_H, f_P] and [f_C, f_P]; the second cycle runs G_T2C on G_C2T([f_C, f_P]) only with double."""
    for cycle, use_mask in (("single", True), ("double", True), ("double", False)):
        model = tiny(cycle=cycle, use_mask=use_mask).eval()
        net = model.network
        with torch.no_grad():
            out = model(images(0), images(1))
            t, c, h = net.loss_features(out)
            moved = net.translations(t, c, h, with_preserved=True)
            preserved = preserved_features(t, h, use_mask=use_mask)
            torch.testing.assert_close(moved["preserved"], preserved)
            torch.testing.assert_close(moved["target_cycle"], net.g_c2t(torch.cat([h, preserved], 1)))
            torch.testing.assert_close(moved["target_fake"], net.g_c2t(torch.cat([c, preserved], 1)))
            assert ("reference_cycle" in moved) == (cycle == "double")
            if cycle == "double":
                torch.testing.assert_close(moved["reference_cycle"], net.g_t2c(moved["target_fake"]))
    gan = tiny(cycle="none", use_re=False, use_mask=False).network
    out = gan(images(0), images(1))
    assert gan.translations(out["target_features"], out["reference_features"], out["cf_features"], False) == {}


# ---------------------------------------------------------------------------------------------------- losses


def loss_gradients(model: BRGAN, name: str) -> dict[str, bool]:
    """Which parts of the network the generator-side loss ``name`` reaches (one tiny forward in train mode).

    The generators start as the identity (zero last projection), which would hide the paths through their inputs
    other than the skip (e.g. f_P into G_C2T): the projections are perturbed first.
    """
    net = model.network
    for generator in (net.g_t2c, net.g_c2t):
        torch.nn.init.normal_(generator.project_out.weight, std=0.02, generator=torch.Generator().manual_seed(3))
    out = model(images(0), images(1))
    moved = net.translations(*net.loss_features(out), with_preserved=model.hparams.use_re)
    model.generator_losses(out, torch.tensor([1, 0]), moved)[name].backward()
    parts = {"backbone": net.backbone, "g_t2c": net.g_t2c, "g_c2t": net.g_c2t, "classifier": net.classifier}
    return {
        part: any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
        for part, module in parts.items()
    }


def test_which_parts_each_loss_reaches():
    off = {"backbone": False, "classifier": False}
    assert loss_gradients(tiny(), "adv_c") == {**off, "g_t2c": True, "g_c2t": False}
    assert loss_gradients(tiny(), "adv_t") == {**off, "g_t2c": True, "g_c2t": True}  # G_T2C through f_P
    assert loss_gradients(tiny(), "cycle_t") == {**off, "g_t2c": True, "g_c2t": True}
    assert loss_gradients(tiny(), "cycle_c") == {**off, "g_t2c": True, "g_c2t": True}
    assert loss_gradients(tiny(), "re") == {**off, "g_t2c": True, "g_c2t": False}
    assert loss_gradients(tiny(), "cls") == {"backbone": True, "g_t2c": True, "g_c2t": False, "classifier": True}
    assert loss_gradients(tiny(detach_features=False), "cycle_t")["backbone"]


def test_residual_embedding_does_not_touch_batch_norm_statistics():
    model = tiny()
    before = {k: v.clone() for k, v in model.network.classifier.state_dict().items()}
    model.network.preserved_logits(torch.randn(2, model.network.backbone.out_channels, 4, 2))
    after = model.network.classifier.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.network.classifier.training


def test_logged_terms_of_each_row():
    def terms(**flags):
        model = tiny(**flags)
        out = model(images(0), images(1))
        moved = model.network.translations(*model.network.loss_features(out), with_preserved=model.hparams.use_re)
        return set(model.generator_losses(out, torch.tensor([1, 0]), moved))

    assert terms(cycle="none", use_re=False, use_mask=False) == {"cls", "adv_c"}
    assert terms(cycle="single", use_re=False) == {"cls", "adv_c", "adv_t", "cycle_t"}
    assert terms(use_re=False) == {"cls", "adv_c", "adv_t", "cycle_t", "cycle_c"}
    assert terms() == {"cls", "adv_c", "adv_t", "cycle_t", "cycle_c", "re"}


# ---------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        ({"bilateral": "sbf"}, "cycle"),
        ({"bilateral": "none", "cycle": "none"}, "use_re"),
        ({"bilateral": "sbf", "cycle": "none", "use_re": False}, "use_mask"),
        ({"cycle": "none", "use_re": False}, "use_mask"),
        ({"cycle": "triple"}, "cycle"),
        ({"bilateral": "adain"}, "bilateral"),
    ],
)
def test_undefined_flag_combinations_are_config_errors(flags, flag):
    with pytest.raises(ConfigError, match=f"BR-GAN: .*model.{flag}"):
        BRGAN(**TINY, **flags)


def test_model_yaml_spells_out_the_constructor_defaults():
    init_args = yaml.safe_load((REPO / "configs" / "models" / "brgan.yaml").read_text())["model"]["init_args"]
    defaults = {k: p.default for k, p in inspect.signature(BRGAN.__init__).parameters.items() if k != "self"}
    assert init_args == defaults


def test_ablation_yamls_cover_table_3():
    rows = [
        yaml.safe_load(path.read_text())["model"]["init_args"]
        for path in (REPO / "configs" / "ablations" / "brgan").glob("*.yaml")
    ]
    settings = {
        (r.get("bilateral", "gan"), r.get("cycle", "double"), r.get("use_re", True), r.get("use_mask", True))
        for r in rows
    }
    assert settings >= {
        ("none", "none", False, False),
        ("sbf", "none", False, False),
        ("gan", "none", False, False),
        ("gan", "single", False, True),
        ("gan", "double", False, True),
        ("gan", "double", True, False),
    }
