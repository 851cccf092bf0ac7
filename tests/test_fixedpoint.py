"""Fixed-Point GAN-specific behaviour (the registry battery in test_models.py / test_cli.py covers the shared contract).

Tiny networks on 64×32 images; hand-made generator residuals (a constant per domain code, or the exact fixed point)
and a hand-made linear critic for the loss values.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from bilatcf.errors import ConfigError, TrainingDivergedError
from bilatcf.models.cyclegan.network import from_tanh_range, to_tanh_range
from bilatcf.models.fixedpoint import FixedPointGAN
from bilatcf.models.fixedpoint.module import stacked_domains
from bilatcf.models.fixedpoint.network import (
    ABNORMAL,
    NORMAL,
    ResidualTranslator,
    StarGANCritic,
    domain_code,
    masked_gradient_penalty,
)
from tests.conftest import random_images
from tests.test_models import quiet_trainer

TINY = {"backbone": "test_resnet", "output_stride": 16, **FixedPointGAN.test_config}


def tiny(**flags) -> FixedPointGAN:
    pl.seed_everything(0, verbose=False)
    return FixedPointGAN(**{**TINY, **flags})


class ShiftPerDomain(nn.Module):
    """A hand-made residual G(x, c): ``abnormal`` where the code says abnormal, ``normal`` where it says normal."""

    def __init__(self, abnormal: float, normal: float) -> None:
        super().__init__()
        self.abnormal, self.normal = abnormal, normal

    def forward(self, x_and_code: torch.Tensor) -> torch.Tensor:
        code = x_and_code[:, 1:]
        return self.abnormal * code[:, ABNORMAL : ABNORMAL + 1] + self.normal * code[:, NORMAL : NORMAL + 1]


class FixedPointToNormal(nn.Module):
    """A hand-made residual that is the exact fixed point for the normal code (tanh(x + atanh(x) − x) = x) and a shift
    of 0.3 for the abnormal code."""

    def forward(self, x_and_code: torch.Tensor) -> torch.Tensor:
        x, code = x_and_code[:, :1], x_and_code[:, 1:]
        return code[:, NORMAL : NORMAL + 1] * (torch.atanh(x) - x) + code[:, ABNORMAL : ABNORMAL + 1] * 0.3


class LinearCritic(nn.Module):
    """A hand-made critic: D_src(x) = weight · x (a patch per pixel), D_cls = the same logits [0, log 3] for any x."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight * x, torch.tensor([0.0, math.log(3.0)]).expand(len(x), -1)

    def source_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[0]


# Cross-entropy of the logits [0, log 3]: softmax (1/4, 3/4).
CE_ABNORMAL, CE_NORMAL = math.log(4.0), math.log(4.0 / 3.0)


def test_stacked_domains_follow_cyclegan_and_mark_unknowns():
    batch = SimpleNamespace(target_abnormal=torch.tensor([1, 0, -1]), ref_abnormal=torch.tensor([0, 1, -1]))
    domains, known = stacked_domains(batch)
    #                          targets ...... references ...
    assert known.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    assert domains[known.bool()].tolist() == [ABNORMAL, NORMAL, NORMAL]


def test_domain_code_is_a_one_hot_broadcast_over_the_image():
    code = domain_code(torch.tensor([ABNORMAL, NORMAL]), torch.zeros(2, 1, 3, 2))
    assert code.shape == (2, 2, 3, 2)
    assert torch.equal(code[0, ABNORMAL], torch.ones(3, 2)) and torch.equal(code[0, NORMAL], torch.zeros(3, 2))
    assert torch.equal(code[1, NORMAL], torch.ones(3, 2)) and torch.equal(code[1, ABNORMAL], torch.zeros(3, 2))


def test_translation_is_tanh_of_the_input_plus_the_residual():
    translator = ResidualTranslator(channels=4, blocks=1)
    x = to_tanh_range(random_images(0))
    domains = torch.tensor([ABNORMAL, NORMAL])
    residual = translator.residual(torch.cat([x, domain_code(domains, x)], dim=1))
    translated = translator(x, domains)
    assert torch.allclose(translated, torch.tanh(x + residual), atol=1e-6)
    assert translated.abs().max() < 1  # in the tanh range
    translator.residual = ShiftPerDomain(abnormal=0.2, normal=-0.5)
    assert torch.allclose(translator(x, domains)[0], torch.tanh(x[0] + 0.2))
    assert torch.allclose(translator(x, domains)[1], torch.tanh(x[1] - 0.5))


def test_counterfactual_is_the_translation_to_normal_in_unit_range():
    model = tiny().eval()
    model.network.generator.residual = ShiftPerDomain(abnormal=0.2, normal=-0.5)
    target = random_images(1)
    out = model(target, target.flip(-1))
    expected = from_tanh_range(torch.tanh(to_tanh_range(target) - 0.5))
    assert torch.allclose(out.counterfactual, expected, atol=1e-6)
    assert torch.allclose(out.explanation, (target - expected).abs(), atol=1e-6)
    assert out.counterfactual.min() >= 0 and out.counterfactual.max() <= 1


def test_same_domain_translation_at_the_fixed_point_has_zero_identity_and_reconstruction_losses():
    model = tiny()
    model.network.generator.residual = FixedPointToNormal()
    images = 0.1 + 0.8 * random_images(2, size=4)  # away from 0 and 1, where atanh is finite
    real, domains, known = to_tanh_range(images), torch.full((4,), NORMAL), torch.ones(4)
    assert torch.allclose(model.network.generator(real, domains), real, atol=1e-5)
    losses = model.generator_losses(real, domains, known)
    assert losses["id"].item() == pytest.approx(0.0, abs=1e-5)
    assert losses["rec_id"].item() == pytest.approx(0.0, abs=1e-4)
    assert losses["rec"].item() > 0.1  # the cross-domain translation x → tanh(x + 0.3) does change the image
    # A normal image's counterfactual is the image itself: nothing to explain.
    out = model.eval()(images[:2], images[2:])
    assert out.explanation.max().item() < 1e-5


def test_generator_losses_on_a_hand_made_case():
    model = tiny(id_weight=0.1, rec_weight=10.0, cls_weight=1.0)
    net = model.network
    net.generator.residual = ShiftPerDomain(abnormal=0.2, normal=-0.5)
    net.critic = LinearCritic(weight=1.0)
    real = torch.zeros(4, 1, 2, 2)
    domains = torch.tensor([ABNORMAL, ABNORMAL, NORMAL, NORMAL])
    known = torch.tensor([1.0, 0.0, 1.0, 1.0])  # the second sample is in neither domain
    losses = model.generator_losses(real, domains, known)
    to_normal, to_abnormal = math.tanh(-0.5), math.tanh(0.2)
    # Known samples: one abnormal (its cross target is normal), two normal (cross target abnormal); divided by all 4.
    expected = {
        "adv": -(to_normal + 2 * to_abnormal) / 4,
        "domain": (CE_NORMAL + 2 * CE_ABNORMAL) / 4,
        "rec": 10 * (abs(math.tanh(to_normal + 0.2)) + 2 * abs(math.tanh(to_abnormal - 0.5))) / 4,
        "adv_id": -(to_abnormal + 2 * to_normal) / 4,
        "domain_id": (CE_ABNORMAL + 2 * CE_NORMAL) / 4,
        "rec_id": 10 * (abs(math.tanh(to_abnormal + 0.2)) + 2 * abs(math.tanh(to_normal - 0.5))) / 4,
        "id": 0.1 * (abs(to_abnormal) + 2 * abs(to_normal)) / 4,
    }
    assert losses.keys() == expected.keys()
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_critic_losses_on_a_hand_made_case():
    model = tiny(gp_weight=10.0, cls_weight=1.0)
    net = model.network
    net.generator.residual = ShiftPerDomain(abnormal=0.2, normal=-0.5)
    net.critic = LinearCritic(weight=1.5)
    values = [0.1, 0.9, -0.3, 0.5]
    real = torch.tensor(values).reshape(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    domains = torch.tensor([ABNORMAL, ABNORMAL, NORMAL, NORMAL])
    known = torch.tensor([1.0, 0.0, 1.0, 1.0])
    losses = model.critic_losses(real, domains, known, epsilon=torch.tensor([0.3, 0.6, 0.9, 0.1]))
    r0, _, r2, r3 = values
    # The fakes are the cross-domain translations: abnormal → normal (−0.5), normal → abnormal (+0.2).
    fakes = [math.tanh(r0 - 0.5), math.tanh(r2 + 0.2), math.tanh(r3 + 0.2)]
    # ∇ of Σ 1.5·x̂ over the 2×2 pixels: 1.5 everywhere, norm 1.5·2 = 3, penalty (3 − 1)² = 4 for any ε.
    expected = {
        "critic_real": -1.5 * (r0 + r2 + r3) / 4,
        "critic_fake": 1.5 * sum(fakes) / 4,
        "gp": 10 * 4 * 3 / 4,
        "critic_domain": (CE_ABNORMAL + 2 * CE_NORMAL) / 4,
    }
    assert losses.keys() == expected.keys()
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-5), name


def test_masked_gradient_penalty_divides_by_every_sample():
    critic, real, fake = LinearCritic(weight=1.5), torch.zeros(4, 1, 2, 2), torch.ones(4, 1, 2, 2)
    epsilon = torch.rand(4)
    assert masked_gradient_penalty(critic, real, fake, epsilon, torch.tensor([1.0, 0, 0, 1])).item() == pytest.approx(2)
    assert masked_gradient_penalty(critic, real, fake, epsilon, torch.zeros(4)).item() == 0.0


def test_critic_has_no_normalisation_and_two_heads():
    critic = StarGANCritic(base=4, num_layers=3)
    assert not any(isinstance(m, nn.modules.batchnorm._NormBase | nn.GroupNorm) for m in critic.modules())
    source, domain_logits = critic(torch.zeros(2, 1, 64, 32))
    assert source.shape == (2, 1, 8, 4) and domain_logits.shape == (2, 2)


def test_critic_too_deep_for_the_image_is_a_config_error_naming_the_flag():
    with pytest.raises(ConfigError, match="critic_layers=6"):
        StarGANCritic(base=4, num_layers=6)(torch.zeros(1, 1, 64, 32))


class _Counts(pl.Callback):
    """The step kit's counters after every training batch."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        steps = pl_module.steps
        self.rows.append((steps["critic"], steps["generator"], steps["classifier"]))


def test_generator_steps_after_every_fifth_critic_step_counted_by_the_step_kit(tiny_model_datamodule):
    model, counts = tiny(n_critic=5), _Counts()
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=5, callbacks=[counts])
    trainer.fit(model, datamodule=tiny_model_datamodule(FixedPointGAN))
    assert [row[0] for row in counts.rows] == list(range(1, 11))  # one critic step per batch
    assert [row[1] for row in counts.rows] == [0, 0, 0, 0, 1, 1, 1, 1, 1, 2]  # across the epoch boundary too
    assert [row[2] for row in counts.rows] == list(range(1, 11))  # the classifier steps on every batch
    # Lightning's global_step counts every optimizer step (10 + 2 + 10), which is why the schedule does not read it.
    assert trainer.global_step == 22


def test_optimizers_are_disjoint_cover_every_parameter_and_follow_the_paper():
    model = tiny()
    optimizers = model.build_optimizers()
    assert list(optimizers) == ["critic", "generator", "classifier"]
    ids = [id(p) for optimizer in optimizers.values() for g in optimizer.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    for name in ("critic", "generator"):
        group = optimizers[name].param_groups[0]
        assert isinstance(optimizers[name], torch.optim.Adam)
        assert (group["lr"], group["betas"]) == (1e-4, (0.5, 0.999))
    group = optimizers["classifier"].param_groups[0]
    assert isinstance(optimizers["classifier"], torch.optim.AdamW)
    assert (group["lr"], group["weight_decay"]) == (3e-4, 1e-4)


def test_classification_loss_never_reaches_the_generator_or_the_critic():
    model = tiny()
    target = random_images(3)
    model(target, target).logits.sum().backward()
    assert all(p.grad is None for p in model.network.generator.parameters())
    assert all(p.grad is None for p in model.network.critic.parameters())
    assert any(p.grad is not None for p in model.network.backbone.parameters())


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        ({"generator_channels": 0}, "generator_channels"),
        ({"generator_blocks": 0}, "generator_blocks"),
        ({"critic_channels": 0}, "critic_channels"),
        ({"critic_layers": 0}, "critic_layers"),
        ({"n_critic": 0}, "n_critic"),
        ({"gp_weight": -1.0}, "gp_weight"),
        ({"cls_weight": -1.0}, "cls_weight"),
        ({"rec_weight": -1.0}, "rec_weight"),
        ({"id_weight": -0.1}, "id_weight"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"lr": 0.0}, "lr"),
        ({"classifier_lr": -3e-4}, "classifier_lr"),
        ({"grad_clip": 0.0}, "grad_clip"),
    ],
)
def test_bad_flags_are_config_errors_naming_the_flag(flags, flag):
    with pytest.raises(ConfigError, match=rf"fixedpoint: {flag}="):
        tiny(**flags)


def test_nan_classification_loss_undoes_the_critic_step_of_its_batch(tiny_model_datamodule, monkeypatch):
    model = tiny()
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a: forward(*a).replace(logits=forward(*a).logits * float("nan")))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1)
    with pytest.raises(TrainingDivergedError, match="loss 'cls' became nan"):
        trainer.fit(model, datamodule=tiny_model_datamodule(FixedPointGAN))
    assert all(torch.equal(p.detach(), before[n]) for n, p in model.named_parameters())
