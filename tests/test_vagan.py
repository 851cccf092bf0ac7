"""VA-GAN-specific behaviour (the registry battery in test_models.py / test_cli.py covers the shared contract).

Tiny networks on 64×32 bilateral images; hand-made maps and critics for the loss values; the toy preset run at the
end uses 112×112 images.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from bilatcf.data.datamodule import UnilateralDataModule
from bilatcf.errors import ConfigError
from bilatcf.metrics.callbacks import EvaluationCallback
from bilatcf.models.cyclegan.network import to_tanh_range
from bilatcf.models.kit import NCritic
from bilatcf.models.vagan import VAGAN
from bilatcf.models.vagan.module import CriticBatch
from bilatcf.models.vagan.network import map_l1
from tests.conftest import TOY_DATA, random_images
from tests.test_anogan import batch_of
from tests.test_models import first_batch, quiet_trainer


def tiny(**flags) -> VAGAN:
    pl.seed_everything(0, verbose=False)
    return VAGAN(**{**VAGAN.test_config, **flags})


class ConstantMap(nn.Module):
    """A hand-made map generator: M(x) = ``value`` everywhere."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.value)


class ConstantCritic(nn.Module):
    """A hand-made critic: every image scores ``value`` (its gradient is 0, so the penalty is (0 − 1)² = 1)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value + self.weight * 0 * x.flatten(1).sum(dim=1)


def test_zero_map_gives_tanh_of_the_input_and_a_zero_score():
    model = tiny().eval()
    model.network.generator = ConstantMap(0.0)
    target = random_images(0)
    out = model(target, target)
    assert torch.equal(out.logits, torch.zeros(2)) and torch.equal(out.explanation, torch.zeros_like(target))
    assert torch.allclose(out.counterfactual, (torch.tanh(2 * target - 1) + 1) / 2)
    model.network.tanh_output = False  # y = x + M: the zero map reproduces the input
    assert torch.allclose(model(target, target).counterfactual, target, atol=1e-6)


def test_the_map_is_the_explanation_and_its_mean_magnitude_the_score():
    model = tiny().eval()
    model.network.generator = ConstantMap(-0.2)
    model.network.tanh_output = False
    target = torch.full((1, 1, 64, 32), 0.5)
    out = model(target, target)
    assert torch.allclose(out.explanation, torch.full_like(target, -0.2))
    assert out.logits.item() == pytest.approx(0.2)
    assert torch.allclose(out.counterfactual, torch.full_like(target, 0.4))  # (2·0.5 − 1 − 0.2 + 1) / 2
    assert map_l1(torch.tensor([[[[1.0, -3.0]]]])).tolist() == [2.0]


def hand_made_batch(normal: int, abnormal: int) -> CriticBatch:
    """``normal`` real images and ``abnormal`` sources, all weights 1, counts as given (one process)."""
    image = torch.zeros(1, 1, 4, 4)
    return CriticBatch(
        real=image.expand(max(normal, 1), -1, -1, -1),
        real_weights=torch.ones(normal) if normal else torch.zeros(1),
        source=image.expand(abnormal, -1, -1, -1),
        source_weights=torch.ones(abnormal),
        partners=image.expand(abnormal, -1, -1, -1),
        penalty_weights=torch.ones(abnormal),
        epsilon=torch.full((abnormal,), 0.5),
        normal_count=torch.tensor(float(normal)),
        abnormal_count=torch.tensor(float(abnormal)),
    )


def test_critic_and_generator_losses_on_a_hand_made_case():
    model = tiny()
    model.network.critic = ConstantCritic(0.5)
    data = hand_made_batch(normal=3, abnormal=2)
    generated = torch.zeros(2, 1, 4, 4)
    # D(x_normal) − D(y) + λ_gp·GP: 0.5 − 0.5 + 10·(0 − 1)²; each term a mean over its own domain.
    critic = model.critic_losses(data, generated)
    assert {k: round(v.item(), 4) for k, v in critic.items()} == {  # the penalty's norm has a 1e-12 floor
        "critic_normal": 0.5,
        "critic_generated": -0.5,
        "gp": 10.0,
    }
    # D(y) + λ·‖M‖₁ with |M| = 0.1 everywhere and λ = 100.
    generator = model.generator_losses(data, torch.full((2, 1, 4, 4), -0.1), generated)
    assert {k: round(v.item(), 4) for k, v in generator.items()} == {"adv": 0.5, "map": 10.0}


def test_a_batch_without_normal_images_gives_the_critic_no_real_term():
    model = tiny()
    model.network.critic = ConstantCritic(0.5)
    losses = model.critic_losses(hand_made_batch(normal=0, abnormal=2), torch.zeros(2, 1, 4, 4))
    assert losses["critic_normal"].item() == 0.0


def test_domain_means_divide_by_the_global_domain_count():
    model = tiny()
    values, weights = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 1.0, 0.0])
    assert model.domain_mean(values, weights, torch.tensor(2.0)).item() == 1.5
    assert model.domain_mean(values, weights, torch.tensor(6.0)).item() == 0.5  # other processes hold 4 more
    assert model.domain_mean(values, torch.zeros(3), torch.tensor(0.0)).item() == 0.0


def test_the_generator_reads_abnormal_targets_and_the_penalty_pairs_them_with_normal_images():
    images = torch.rand(4, 1, 64, 32, generator=torch.Generator().manual_seed(0))
    references = torch.rand(4, 1, 64, 32, generator=torch.Generator().manual_seed(1))
    batch = batch_of(images, references, [1, 0, 1, -1], [0, 1, 1, 0])
    data = tiny().critic_batch(batch)
    stacked = to_tanh_range(torch.cat([images, references]))
    assert torch.equal(data.source, stacked[[0, 2]])
    normal_rows = [1, 4, 7]  # target 1, references 0 and 3 (benign and unknown targets are neither domain)
    assert torch.equal(data.real, stacked[normal_rows])
    assert all(any(torch.equal(p, stacked[r]) for r in normal_rows) for p in data.partners)
    assert (data.normal_count.item(), data.abnormal_count.item()) == (3, 2)
    assert data.epsilon.shape == (2,) and ((data.epsilon >= 0) & (data.epsilon <= 1)).all()


def test_a_batch_without_abnormal_targets_trains_nothing():
    images = torch.rand(2, 1, 64, 32, generator=torch.Generator().manual_seed(2))
    data = tiny().critic_batch(batch_of(images, images.flip(-1), [0, 0], [0, 0]))
    assert data.source_weights.tolist() == [0.0] and data.penalty_weights.tolist() == [0.0]


def test_default_schedule_is_vagan_s_warm_up():
    assert VAGAN().n_critic == NCritic(n=5, warmup_n=100, warmup_generator_steps=25, warmup_every=100)


def test_generator_steps_follow_the_warm_up_schedule_on_the_step_counters(tiny_model_datamodule):
    # 3 critic steps before generator step 0 (warm-up), 2 before step 1, 3 before step 2 (every 2nd is a warm-up).
    model = tiny(n_critic=2, warmup_critic_steps=3, warmup_generator_steps=1, warmup_every=2)
    quiet_trainer(max_epochs=1, limit_train_batches=8).fit(model, datamodule=tiny_model_datamodule(VAGAN))
    assert (model.steps["critic"], model.steps["generator"]) == (8, 3)
    assert model.trainer.global_step == 8 + 3  # Lightning counts optimizer steps, hence the model's own counters


def test_counterfactual_is_in_unit_range_and_scores_are_finite(tiny_model_datamodule):
    model = tiny().eval()
    batch = first_batch(tiny_model_datamodule(VAGAN), "val")
    prediction = model.predict_step(batch)
    assert prediction.counterfactual.min() >= 0 and prediction.counterfactual.max() <= 1
    assert torch.isfinite(prediction.score).all() and (prediction.score >= 0).all()


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        ({"generator_norm": "group"}, "generator_norm"),
        ({"generator_channels": 0}, "generator_channels"),
        ({"generator_depth": 0}, "generator_depth"),
        ({"critic_channels": 0}, "critic_channels"),
        ({"critic_depth": 0}, "critic_depth"),
        ({"n_critic": 0}, "n_critic"),
        ({"warmup_critic_steps": 0}, "warmup_critic_steps"),
        ({"warmup_generator_steps": -1}, "warmup_generator_steps"),
        ({"warmup_every": -1}, "warmup_every"),
        ({"gp_weight": -1.0}, "gp_weight"),
        ({"map_weight": -1.0}, "map_weight"),
        ({"lr": 0.0}, "lr"),
    ],
)
def test_bad_flags_are_config_errors_naming_the_flag(flags, flag):
    with pytest.raises(ConfigError, match=flag):
        tiny(**flags)


def test_trains_and_tests_on_the_toy_preset(tmp_path):
    datamodule = UnilateralDataModule(preset="vagan", **TOY_DATA)
    model = tiny()
    evaluation = EvaluationCallback(num_bootstrap=10)
    trainer = quiet_trainer(
        max_epochs=1, limit_train_batches=2, limit_test_batches=1, callbacks=[evaluation], default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=datamodule)
    assert (model.steps["critic"], model.steps["generator"]) == (2, 1)
    trainer.test(model, datamodule=datamodule, verbose=False)
    assert evaluation.results["num_test_pairs"] > 0 and "test/expl_iou" in evaluation.results
