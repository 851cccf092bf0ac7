"""CX-GAN-specific behaviour (the registry battery in test_models.py / test_cli.py covers the shared contract).

Tiny networks on 64×32 images; hand-made generators and discriminators (constant maps, constant patch scores) for the
loss values; the cascaded model's two phases in one fit; the unilateral toy presets.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from torch import nn

from bilatcf.data.datamodule import UnilateralDataModule
from bilatcf.errors import ConfigError
from bilatcf.models.cxgan import CXGAN
from bilatcf.models.cxgan.network import MAP_SCALE, MapGenerator, PatchCritic, SkipUNet
from bilatcf.models.cyclegan import CycleGAN
from bilatcf.models.cyclegan.network import to_tanh_range
from tests.conftest import random_images
from tests.test_models import quiet_trainer

REPO = Path(__file__).resolve().parents[1]
TINY = {"backbone": "test_resnet", "output_stride": 16, **CXGAN.test_config}
PHASE_1 = ("g_a2n", "g_n2a", "d_n", "d_a")
PHASE_2 = ("map_generator", "d_r", "backbone", "head")


def tiny(**flags) -> CXGAN:
    pl.seed_everything(0, verbose=False)
    return CXGAN(**{**TINY, **flags})


class Constant(nn.Module):
    """A hand-made network: every output pixel is ``value`` (a U-Net body, or a discriminator's 2×2 patch map)."""

    def __init__(self, value: float, size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.value, self.size = value, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], 1, *(self.size or x.shape[-2:]))
        return torch.full(shape, self.value)


class Shift(nn.Module):
    """A hand-made translator: x + shift."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def constant_map_generator(value: float) -> MapGenerator:
    """A map generator whose U-Net outputs ``value`` everywhere, so M = MAP_SCALE · value."""
    generator = MapGenerator(base=4)
    generator.unet = Constant(value)
    return generator


# ---------------------------------------------------------------------------------------------------- networks
def test_cxgan_is_a_cyclegan_with_its_own_networks():
    model = tiny()
    assert isinstance(model, CycleGAN)
    net = model.network
    assert isinstance(net.g_a2n, MapGenerator) and isinstance(net.g_n2a, SkipUNet)
    assert isinstance(net.d_n, PatchCritic) and isinstance(net.d_a, PatchCritic)
    assert not hasattr(net, "map_generator") and not hasattr(model, "pool_r")
    cascaded = tiny(variant="cascaded").network
    assert isinstance(cascaded.g_a2n, SkipUNet) and isinstance(cascaded.map_generator, MapGenerator)
    assert isinstance(cascaded.d_r, PatchCritic)


def test_unet_keeps_the_size_and_ends_in_tanh():
    unet = SkipUNet(base=4)
    out = unet(torch.randn(2, 1, 64, 32) * 10)
    assert out.shape == (2, 1, 64, 32) and out.abs().max() <= 1
    assert len(unet.down) == 4 and len(unet.up) == 3  # the notebooks' four stride-2 convs and three skip blocks
    with pytest.raises(ConfigError, match="divisible by 16"):
        unet(torch.zeros(1, 1, 40, 32))


@pytest.mark.parametrize(("size", "layers", "patches"), [(256, 4, 16), (128, 4, 8), (128, 3, 16), (64, 4, 4)])
def test_patch_critic_gives_one_logit_per_patch_of_a_sixteenth(size, layers, patches):
    critic = PatchCritic(base=4, layers=layers)
    assert critic(torch.zeros(1, 1, size, size)).shape == (1, 1, patches, patches)


def test_map_generator_translates_by_adding_its_map():
    generator = constant_map_generator(0.3)
    x = torch.zeros(1, 1, 16, 16)
    torch.testing.assert_close(generator.map(x), torch.full_like(x, 0.3 * MAP_SCALE))
    torch.testing.assert_close(generator(x), x + generator.map(x))
    fresh, x = MapGenerator(base=4), torch.rand(2, 1, 32, 32) * 2 - 1
    assert fresh.map(x).abs().max() == 0 and torch.equal(fresh(x), x), "M starts at 0: the translation at the identity"


def test_fake_normal_is_target_plus_map_and_the_counterfactual_is_its_clip(tiny_model_datamodule):
    model = tiny().eval()
    model.network.g_a2n = constant_map_generator(0.45)  # M = 0.9 in [−1, 1], 0.45 in image units
    batch = next(iter(tiny_model_datamodule(CXGAN).train_dataloader()))
    out = model.forward_batch(batch)
    torch.testing.assert_close(out.explanation, torch.full_like(batch.target, 0.45))
    torch.testing.assert_close(out.counterfactual, (batch.target + 0.45).clamp(0, 1))
    assert out.counterfactual.max() == 1.0, "some pixels leave [0, 1]: the output image is clipped"
    # The losses read x + M(x) in [−1, 1] unclamped (a clamp has no gradient outside the range).
    real, fake_n = model.real_and_translated(batch, out)
    torch.testing.assert_close(real, to_tanh_range(torch.cat([batch.target, batch.reference])))
    torch.testing.assert_close(fake_n, real + 0.9)
    assert fake_n.max() > 1


def test_cascaded_explanation_comes_from_phase_2s_map_generator():
    model = tiny(variant="cascaded").eval()
    model.network.map_generator = constant_map_generator(-0.25)
    model.network.g_a2n = Shift(5.0)  # phase 1's translator takes no part in the output
    target = random_images(1)
    out = model(target, target)
    torch.testing.assert_close(out.explanation, torch.full_like(target, -0.25))
    torch.testing.assert_close(out.counterfactual, (target - 0.25).clamp(0, 1))


def test_classification_loss_never_reaches_the_generators():
    model = tiny()
    target = random_images(2)
    model(target, target).logits.sum().backward()
    assert all(p.grad is None for p in model.network.g_a2n.parameters())
    assert any(p.grad is not None for p in model.network.backbone.parameters())


# ---------------------------------------------------------------------------------------------------- losses
def test_integrated_losses_are_cyclegans_with_x_plus_m_on_a_hand_made_case():
    model = tiny()
    net = model.network
    net.g_a2n, net.g_n2a = constant_map_generator(0.05), Shift(-0.3)  # M = 0.1; G_N2A(x) = x − 0.3
    net.d_n, net.d_a = Constant(0.5, (2, 2)), Constant(0.5, (2, 2))
    real = torch.zeros(2, 1, 4, 4)  # stacked [target; reference]: target abnormal, reference normal
    abnormal, normal = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    losses = model.generator_losses(real, net.g_a2n(real), net.g_n2a(real), abnormal, normal)
    # Eq. 9, first term: G_N2A(x + M) = 0.1 − 0.3 → |−0.2|, λ = 10, one image of two → 1.0. Second term (with the
    # forward mapping y + M(y) at y = G_N2A(x⁻)): −0.3 + 0.1 → 1.0. Identities at 0.1·λ = 1: |M(x⁻)| = 0.1 → 0.05,
    # |G_N2A(x⁺) − x⁺| = 0.3 → 0.15. Eq. 8 (LSGAN): (0.5 − 1)² on one image of two → 0.125.
    expected = {
        "cycle_a": 1.0,
        "cycle_n": 1.0,
        "identity_n": 0.05,
        "identity_a": 0.15,
        "adv_a2n": 0.125,
        "adv_n2a": 0.125,
    }
    assert {k: round(v.item(), 6) for k, v in losses.items()} == expected


def test_residual_losses_on_a_hand_made_case():
    model = tiny(variant="cascaded")
    model.network.d_r = Constant(0.5, (2, 2))
    instance = torch.zeros(4, 1, 4, 4)  # x⁻ of four targets, two of them abnormal
    fake = torch.full((4, 1, 4, 4), 0.2)  # x⁺ + M
    abnormal = torch.tensor([1.0, 0.0, 1.0, 0.0])
    losses = model.residual_losses(instance, fake, abnormal)
    # Eq. 5 at λ_r = 100: |0.2| on two of four → 10; Eq. 6 (LSGAN, G's term): (0.5 − 1)² · 2/4 → 0.125.
    assert {k: round(v.item(), 5) for k, v in losses.items()} == {"adv_r": 0.125, "l1_r": 10.0}
    # D_R: ½ [(0.5 − 1)² · 2/4 + 0.5² · 2 pooled / 4] = ½ (0.125 + 0.125).
    loss = model.residual_discriminator_loss(instance, fake[:2], abnormal)
    assert loss.item() == pytest.approx(0.125)
    assert model.residual_discriminator_loss(instance, fake[:0], abnormal).item() == pytest.approx(0.0625)


# ---------------------------------------------------------------------------------------------------- optimizers
def test_optimizers_are_disjoint_cover_every_parameter_and_keep_a_constant_rate():
    for variant, names in (
        ("integrated", ["generator", "discriminator", "classifier"]),
        ("cascaded", ["generator", "discriminator", "residual_discriminator", "map_generator", "classifier"]),
    ):
        model = tiny(variant=variant)
        optimizers = model.build_optimizers()
        assert list(optimizers) == names
        ids = [
            id(p)
            for spec in optimizers.values()
            for g in getattr(spec, "optimizer", spec).param_groups
            for p in g["params"]
        ]
        assert len(ids) == len(set(ids)) == len(list(model.parameters())), variant
        gans = [spec for name, spec in optimizers.items() if name != "classifier"]
        assert all(spec.scheduler is None for spec in gans), "no LR schedule (neither paper nor notebooks decay it)"
        assert all(spec.optimizer.param_groups[0]["betas"] == (0.5, 0.9) for spec in gans), "the paper's betas"
        assert all(spec.optimizer.param_groups[0]["lr"] == 2e-4 for spec in gans)


def test_notebook_yaml_sets_the_notebooks_betas_and_no_pool():
    config = yaml.safe_load((REPO / "configs" / "ablations" / "cxgan" / "notebook.yaml").read_text())["model"]
    model = tiny(**config["init_args"])
    assert model.hparams.variant == "integrated" and model.pool_n.size == model.pool_a.size == 0
    generator = model.build_optimizers()["generator"].optimizer
    assert generator.param_groups[0]["betas"] == (0.5, 0.999)


# ---------------------------------------------------------------------------------------------------- training
class _PhaseRecorder(pl.Callback):
    """Per epoch: the phase, which sub-networks changed, which were frozen, and the logged val/auc."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.before = {n: p.detach().clone() for n, p in pl_module.network.named_parameters()}
        self.epochs.append({"phase": pl_module.phase.name})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:  # after the module's own epoch-start hook has frozen the phase's networks
            net, names = pl_module.network, (*PHASE_1, *PHASE_2)
            self.epochs[-1]["frozen"] = {
                n for n in names if not any(p.requires_grad for p in getattr(net, n).parameters())
            }
            self.epochs[-1]["eval"] = {n for n in names if not getattr(net, n).training}

    def on_train_epoch_end(self, trainer, pl_module):  # after the epoch's validation
        after = dict(pl_module.network.named_parameters())
        changed = {n.split(".")[0] for n, p in self.before.items() if not torch.equal(p, after[n].detach())}
        self.epochs[-1].update(changed=changed, val_auc=float(trainer.callback_metrics["val/auc"]))


def test_cascaded_trains_both_phases_in_one_fit_with_phase_1_frozen_in_phase_2(tiny_model_datamodule):
    model, recorder = tiny(variant="cascaded", cycle_epochs=1), _PhaseRecorder()
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, callbacks=[recorder])
    trainer.fit(model, datamodule=tiny_model_datamodule(CXGAN))
    first, second = recorder.epochs
    assert first["phase"] == "cycle" and second["phase"] == "residual"
    assert first["changed"] == set(PHASE_1) and first["frozen"] == first["eval"] == set(PHASE_2)
    assert second["changed"] == set(PHASE_2) and second["frozen"] == second["eval"] == set(PHASE_1)
    assert first["val_auc"] == -math.inf, "phase 1 does not score: checkpoint selection skips it"
    assert math.isfinite(second["val_auc"])
    assert model.steps.counts == {
        "discriminator": 2,
        "generator": 2,
        "residual_discriminator": 2,
        "map_generator": 2,
        "classifier": 2,
    }
    terms = ("adv_a2n", "cycle_a", "identity_n", "adv_r", "l1_r", "cls", "map_generator", "residual_discriminator")
    assert {f"train/{t}" for t in terms} <= set(trainer.callback_metrics)
    # The pools, phase 2's included, travel in the state dict (checkpoints).
    assert model.pool_r.num_stored > 0 and model.pool_n.num_stored > 0
    restored = tiny(variant="cascaded", cycle_epochs=1)
    restored.load_state_dict(model.state_dict())
    assert torch.equal(torch.stack(restored.pool_r.items), torch.stack(model.pool_r.items))


def test_cascaded_run_too_short_for_phase_2_is_a_config_error_naming_the_flag(tiny_model_datamodule):
    with pytest.raises(ConfigError, match=r"--trainer.max_epochs > 3"):
        quiet_trainer(max_epochs=3).fit(
            tiny(variant="cascaded", cycle_epochs=3), datamodule=tiny_model_datamodule(CXGAN)
        )


@pytest.mark.parametrize(("preset", "size"), [("cxgan", 128), ("vagan", 112)])
@pytest.mark.parametrize("variant", ["integrated", "cascaded"])
def test_trains_on_the_unilateral_toy_presets(preset, size, variant):
    datamodule = UnilateralDataModule(preset=preset, num_images=40, batch_size=4)
    model = tiny(variant=variant, cycle_epochs=1)
    quiet_trainer(max_epochs=2 if variant == "cascaded" else 1, limit_train_batches=1).fit(model, datamodule=datamodule)
    assert model.steps["generator"] == 1 and model.steps["classifier"] == 1
    batch = next(iter(datamodule.test_dataloader()))
    prediction = model.eval().predict_step(batch)
    assert prediction.explanation.shape == prediction.counterfactual.shape == (4, 1, size, size)
    torch.testing.assert_close(prediction.counterfactual, (batch.target + prediction.explanation).clamp(0, 1))


# ---------------------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        ({"variant": "joint"}, r"model\.variant='joint' is not one of integrated, cascaded"),
        ({"generator_channels": 0}, "generator_channels"),
        ({"discriminator_channels": 0}, "discriminator_channels"),
        ({"discriminator_layers": 0}, "discriminator_layers"),
        ({"cycle_epochs": 0}, "cycle_epochs"),
        ({"pool_size": -1}, "pool_size"),
        ({"cycle_weight": -1.0}, "cycle_weight"),
        ({"identity_weight": -0.1}, "identity_weight"),
        ({"residual_weight": -1.0}, "residual_weight"),
        ({"betas": (1.0, 0.9)}, r"model\.betas"),
        ({"betas": (0.5,)}, r"model\.betas"),
    ],
)
def test_bad_flags_are_config_errors_naming_the_flag(flags, flag):
    with pytest.raises(ConfigError, match=flag):
        tiny(**flags)


def test_cascaded_yaml_runs_phase_1_for_its_epochs():
    config = yaml.safe_load((REPO / "configs" / "ablations" / "cxgan" / "cascaded.yaml").read_text())["model"]
    assert config["class_path"] == "bilatcf.models.cxgan.CXGAN"
    model = tiny(**config["init_args"])
    phases = model.training_phases()
    assert [p.name for p in phases] == ["cycle", "residual"] and phases[0].epochs == 5 and not phases[0].scores
