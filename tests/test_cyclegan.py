"""CycleGAN-specific behaviour (the registry battery in test_models.py / test_cli.py covers the shared contract).

Tiny networks on 64×32 images (4×2 feature maps); hand-made generators and discriminators (constant shifts, constant
patch scores) for the loss values. The feature level (``level: feature``) is tested at the end.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import yaml
from torch import nn

from bilatcf.errors import ConfigError
from bilatcf.models.brgan import BRGAN
from bilatcf.models.cgn.network import FeatureGenerator
from bilatcf.models.cyclegan import CycleGAN
from bilatcf.models.cyclegan.module import decay_schedule, domain_masks, query_pool
from bilatcf.models.cyclegan.network import from_tanh_range, masked_mean, per_sample_l1, to_tanh_range
from bilatcf.nn.blocks import FeatureDiscriminator
from bilatcf.nn.pool import HistoryPool
from tests.conftest import random_images
from tests.test_models import quiet_trainer

REPO = Path(__file__).resolve().parents[1]
TINY = {"backbone": "test_resnet", "output_stride": 16, **CycleGAN.test_config}


def tiny(**flags) -> CycleGAN:
    pl.seed_everything(0, verbose=False)
    return CycleGAN(**{**TINY, **flags})


class Shift(nn.Module):
    """A hand-made generator: x + shift."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


class Constant(nn.Module):
    """A hand-made discriminator: every patch scores ``value`` (a 2×2 patch map)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, 2, 2), self.value)


def test_domain_masks_keep_benign_references_and_unknowns_out_of_the_normal_domain():
    batch = SimpleNamespace(target_abnormal=torch.tensor([1, 0, -1, 1]), ref_abnormal=torch.tensor([0, 1, 0, -1]))
    abnormal, normal = domain_masks(batch)
    #                                 targets ............ references ........
    assert abnormal.tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert normal.tolist() == [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]


def test_domain_masks_need_the_abnormal_fields():
    with pytest.raises(ConfigError, match="target_abnormal"):
        domain_masks(SimpleNamespace(target_abnormal=None, ref_abnormal=None))


def test_masked_mean_divides_by_the_whole_batch():
    assert masked_mean(torch.tensor([2.0, 4.0, 6.0, 8.0]), torch.tensor([1.0, 0.0, 1.0, 0.0])).item() == 2.0


def test_unit_range_and_tanh_range_map_into_each_other():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert to_tanh_range(x).tolist() == [-1.0, -0.5, 0.0, 1.0]
    assert torch.equal(from_tanh_range(to_tanh_range(x)), x)


def test_identity_generator_gives_the_input_as_counterfactual_and_a_zero_explanation():
    model = tiny().eval()
    model.network.g_a2n = nn.Identity()
    target = torch.rand(2, 1, 64, 32, generator=torch.Generator().manual_seed(0))
    out = model(target, target.flip(-1))
    assert torch.allclose(out.counterfactual, target, atol=1e-6)
    assert out.explanation.abs().max().item() < 1e-6


def test_counterfactual_is_in_unit_range():
    model = tiny().eval()
    target = torch.rand(2, 1, 64, 32, generator=torch.Generator().manual_seed(1))
    out = model(target, target)
    assert out.counterfactual.min() >= 0 and out.counterfactual.max() <= 1


def test_cycle_identity_and_adversarial_losses_on_a_hand_made_case():
    model = tiny()
    net = model.network
    net.g_a2n, net.g_n2a = Shift(0.1), Shift(-0.3)
    net.d_n, net.d_a = Constant(0.5), Constant(0.5)
    real = torch.zeros(2, 1, 4, 4)  # stacked [target; reference] of one pair: target abnormal, reference normal
    abnormal, normal = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    losses = model.generator_losses(real, net.g_a2n(real), net.g_n2a(real), abnormal, normal)
    # cycles: |0.1 − 0.3| = 0.2 on one of two images, λ = 10 → 1.0; identities: 0.5·λ · 0.1 / 2 and 0.5·λ · 0.3 / 2.
    expected = {
        "cycle_a": 1.0,
        "cycle_n": 1.0,
        "identity_n": 0.25,
        "identity_a": 0.75,
        "adv_a2n": 0.125,  # (0.5 − 1)² on one of two images
        "adv_n2a": 0.125,
    }
    assert {k: round(v.item(), 6) for k, v in losses.items()} == expected


def test_discriminator_loss_on_a_hand_made_case():
    model = tiny()
    net = model.network
    net.d_n, net.d_a = Constant(0.5), Constant(0.5)
    real = torch.zeros(2, 1, 4, 4)
    abnormal, normal = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # D_N: real (0.5 − 1)² on the normal image /2 + fake 0.5² on the one pooled fake /2; D_A the same; halved.
    loss = model.discriminator_loss(real, real[:1], real[1:], abnormal, normal)
    assert loss.item() == pytest.approx(0.5 * 2 * (0.125 + 0.125))
    # A batch without fakes of a domain contributes no fake term.
    empty = real[:0]
    assert model.discriminator_loss(real, empty, empty, abnormal, normal).item() == pytest.approx(0.5 * 2 * 0.125)


@pytest.mark.parametrize("size", [0, 2])
def test_pool_answers_are_detached_even_with_the_pool_off(size):
    fakes = torch.ones(2, 1, 4, 4, requires_grad=True) * 2
    answer = query_pool(HistoryPool(size), fakes, [torch.Generator().manual_seed(i) for i in range(2)])
    assert not answer.requires_grad and torch.equal(answer, fakes.detach())


def test_per_sample_l1():
    assert per_sample_l1(torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)).tolist() == [1.0, 1.0]


def test_linear_decay_over_the_second_half():
    assert decay_schedule(200, None) == (200, 100)
    scheduler = tiny(epochs=4).build_optimizers()["generator"].scheduler
    optimizer = scheduler.optimizer
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(4):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert [round(r / 2e-4, 6) for r in rates] == [1.0, 1.0, 1.0, 0.5, 0.0]


def test_optimizers_are_disjoint_and_cover_every_parameter():
    optimizers = tiny(epochs=2).build_optimizers()
    assert list(optimizers) == ["generator", "discriminator", "classifier"]
    ids = [
        id(p)
        for spec in optimizers.values()
        for g in getattr(spec, "optimizer", spec).param_groups
        for p in g["params"]
    ]
    assert len(ids) == len(set(ids)) == len(list(tiny().parameters()))


def test_classification_loss_never_reaches_the_generators():
    model = tiny()
    target = torch.rand(2, 1, 64, 32, generator=torch.Generator().manual_seed(2))
    model(target, target).logits.sum().backward()
    assert all(p.grad is None for p in model.network.g_a2n.parameters())
    assert any(p.grad is not None for p in model.network.backbone.parameters())


def test_no_epoch_count_is_a_config_error_naming_the_flag():
    with pytest.raises(ConfigError, match="model.epochs"):
        tiny().build_optimizers()


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        ({"generator_blocks": 0}, "generator_blocks"),
        ({"generator_channels": 0}, "generator_channels"),
        ({"discriminator_channels": 0}, "discriminator_channels"),
        ({"cycle_weight": -1.0}, "cycle_weight"),
        ({"identity_weight": -0.5}, "identity_weight"),
        ({"epochs": 4, "decay_epochs": 5}, "decay_epochs"),
        ({"epochs": 0}, "epochs"),
        ({"decay_epochs": -1}, "decay_epochs"),
    ],
)
def test_bad_flags_are_config_errors_naming_the_flag(flags, flag):
    with pytest.raises(ConfigError, match=flag):
        tiny(**flags)


def test_model_yaml_spells_out_the_constructor_defaults():
    config = yaml.safe_load((REPO / "configs" / "models" / "cyclegan.yaml").read_text())["model"]
    assert config["class_path"] == "bilatcf.models.cyclegan.CycleGAN"
    defaults = {
        name: p.default for name, p in inspect.signature(CycleGAN.__init__).parameters.items() if name != "self"
    }
    assert config["init_args"] == defaults


# ---------------------------------------------------------------------------------------------------- feature level


def feature_batch(tiny_model_datamodule):
    return next(iter(tiny_model_datamodule(CycleGAN).train_dataloader()))


def test_feature_level_reuses_the_feature_generator_and_discriminator():
    net = tiny(level="feature").network
    for generator in (net.g_a2n, net.g_n2a):
        assert isinstance(generator, FeatureGenerator) and len(generator.blocks) == TINY["generator_blocks"]
    assert isinstance(net.d_n, FeatureDiscriminator) and isinstance(net.d_a, FeatureDiscriminator)


def test_feature_yaml_builds_brgan_s_generators_and_discriminators():
    config = yaml.safe_load((REPO / "configs" / "ablations" / "cyclegan" / "feature.yaml").read_text())["model"]
    assert config["class_path"] == "bilatcf.models.cyclegan.CycleGAN"
    pl.seed_everything(0, verbose=False)
    net = CycleGAN(backbone="test_resnet", output_stride=16, **config["init_args"]).network
    pl.seed_everything(0, verbose=False)
    brgan = BRGAN(backbone="test_resnet", output_stride=16).network
    assert net.level == "feature"
    assert repr(net.g_a2n) == repr(net.g_n2a) == repr(brgan.g_t2c)
    assert repr(net.d_n) == repr(net.d_a) == repr(brgan.d_c)


def test_feature_level_outputs_features_and_no_image_counterfactual():
    model = tiny(level="feature").eval()
    target, reference = random_images(3), random_images(4)
    out = model(target, reference)
    features = model.extract_features(torch.cat([target, reference]))
    assert out.counterfactual is None
    channels = model.network.backbone.out_channels
    assert out.target_features.shape == out.reference_features.shape == out.cf_features.shape == (2, channels, 4, 2)
    torch.testing.assert_close(torch.cat([out.target_features, out.reference_features]), features)
    torch.testing.assert_close(out.cf_features, model.network.g_a2n(out.target_features))
    residual = (out.target_features - out.cf_features).abs().amax(dim=1, keepdim=True)  # BR-GAN's feature residual
    torch.testing.assert_close(out.explanation, residual)


def test_feature_generators_start_as_the_identity():
    model = tiny(level="feature").eval()
    out = model(random_images(5), random_images(6))
    torch.testing.assert_close(out.cf_features, out.target_features)
    assert out.explanation.abs().max().item() == 0.0


def test_feature_level_prediction_upsamples_the_residual_and_fills_the_feature_fields(tiny_model_datamodule):
    model = tiny(level="feature").eval()
    batch = feature_batch(tiny_model_datamodule)
    prediction = model.predict_step(batch)
    assert prediction.counterfactual is None
    assert prediction.explanation.shape == batch.target.shape
    for name in ("target_features", "reference_features", "cf_features"):
        assert getattr(prediction, name) is not None, name
    assert batch.has_healthy.any() and prediction.healthy_features.shape == prediction.target_features.shape


def test_feature_level_losses_read_detached_features_and_train_the_gan_only(tiny_model_datamodule):
    model = tiny(level="feature")
    net, batch = model.network, feature_batch(tiny_model_datamodule)
    abnormal, normal = domain_masks(batch)
    out = model.forward_batch(batch)
    real, fake_n = model.real_and_translated(batch, out)
    # The losses' samples are the 2B stacked backbone features, constants for the backbone.
    assert not real.requires_grad
    torch.testing.assert_close(real, torch.cat([out.target_features, out.reference_features]).detach())
    assert fake_n.shape == real.shape and torch.equal(fake_n[: len(batch)], out.cf_features)
    fake_a = net.g_n2a(real)
    losses = model.generator_losses(real, fake_n, fake_a, abnormal, normal)
    discriminator = model.discriminator_loss(real, fake_n[abnormal.bool()].detach(), fake_a.detach(), abnormal, normal)
    (sum(losses.values()) + discriminator).backward()
    assert all(p.grad is None for p in [*net.backbone.parameters(), *net.head.parameters()])
    assert any(p.grad is not None for p in net.g_a2n.parameters())
    assert any(p.grad is not None for p in net.d_n.parameters())


def test_feature_level_classification_loss_trains_the_backbone_never_the_generators():
    model = tiny(level="feature")
    model(random_images(7), random_images(8)).logits.sum().backward()
    assert all(p.grad is None for p in [*model.network.g_a2n.parameters(), *model.network.g_n2a.parameters()])
    assert any(p.grad is not None for p in model.network.backbone.parameters())


def test_feature_level_trains_through_the_trainer_with_feature_pools(tiny_model_datamodule):
    model = tiny(level="feature")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2)
    trainer.fit(model, datamodule=tiny_model_datamodule(CycleGAN))
    assert int(model.iteration) == 2 and trainer.global_step == 6  # three optimizers step on each batch
    changed = {n.split(".")[1] for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert {"backbone", "head", "g_a2n", "g_n2a", "d_n", "d_a"} <= changed
    terms = ("adv_a2n", "adv_n2a", "cycle_a", "cycle_n", "identity_n", "identity_a", "cls")
    assert {f"train/{t}" for t in (*terms, "generator", "discriminator", "classifier")} <= set(trainer.callback_metrics)
    # The pools hold translated features [C, h, w], and they travel in the state dict (checkpoints).
    channels = model.network.backbone.out_channels
    for pool in (model.pool_n, model.pool_a):
        assert pool.num_stored > 0 and all(item.shape == (channels, 4, 2) for item in pool.items)
    restored = tiny(level="feature")
    restored.load_state_dict(model.state_dict())
    assert torch.equal(torch.stack(restored.pool_a.items), torch.stack(model.pool_a.items))


def test_bad_level_is_a_config_error_naming_the_flag_and_the_choices():
    with pytest.raises(ConfigError, match=r"model\.level='pixel' is not one of image, feature"):
        tiny(level="pixel")
