"""f-AnoGAN-specific behaviour (the registry battery in test_models.py / test_cli.py covers the shared contract).

Tiny networks on 64×32 bilateral images; a hand-made critic for the loss values; the toy preset run at the end uses
112×112 images.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from bilatcf.data.datamodule import UnilateralDataModule
from bilatcf.errors import ConfigError
from bilatcf.metrics.callbacks import EvaluationCallback
from bilatcf.models.cyclegan.network import to_tanh_range
from bilatcf.models.fanogan import FAnoGAN
from bilatcf.models.fanogan.network import izif_loss
from tests.conftest import TOY_DATA, random_images
from tests.test_models import quiet_trainer
from tests.test_vagan import ConstantCritic


def tiny(**flags) -> FAnoGAN:
    pl.seed_everything(0, verbose=False)
    return FAnoGAN(**{**FAnoGAN.test_config, **flags})


def test_izif_loss_on_a_hand_made_case():
    images, reconstruction = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    features, reconstruction_features = torch.zeros(1, 2, 1, 1), torch.tensor([[[[1.0]], [[3.0]]]])
    # (1/n)·‖x − G(E(x))‖² = 0.25; (1/n_d)·‖f(x) − f(G(E(x)))‖² = (1 + 9) / 2 = 5; κ = 1 → 5.25, κ = 0.5 → 2.75.
    assert izif_loss(images, reconstruction, features, reconstruction_features, 1.0).item() == pytest.approx(5.25)
    assert izif_loss(images, reconstruction, features, reconstruction_features, 0.5).item() == pytest.approx(2.75)


def test_forward_is_one_pass_through_encoder_and_generator():
    model = tiny().eval()
    target = random_images(0)
    out = model(target, target)
    images = to_tanh_range(target)
    with torch.no_grad():
        codes = model.network.encoder(images)
        generated = model.network.generator(codes)
        features = model.network.critic.features
        expected = izif_loss(images, generated, features(images), features(generated), 1.0)
    assert codes.abs().max() <= 1  # tanh: the latent range the generator was trained on
    assert torch.allclose(out.logits, expected)
    assert torch.allclose(out.counterfactual, (generated + 1) / 2)
    assert torch.allclose(out.explanation, (target - out.counterfactual).abs())


def test_critic_and_generator_losses_on_a_hand_made_case():
    model = tiny()
    model.network.critic = ConstantCritic(0.5)
    real, fake = torch.zeros(3, 1, 4, 4), torch.ones(3, 1, 4, 4)
    weights, epsilon = torch.ones(3), torch.full((3,), 0.5)
    # Three normal images of a stacked batch of 6: each term is Σ/6. D(G(z)) − D(x) + λ·GP with GP = (0 − 1)².
    losses = model.critic_losses(real, fake, epsilon, weights, 6)
    assert {k: round(v.item(), 4) for k, v in losses.items()} == {
        "critic_real": -0.25,
        "critic_fake": 0.25,
        "gp": 5.0,
    }
    assert model.generator_losses(fake, weights, 6)["g_adv"].item() == pytest.approx(-0.25)


class _ParametersPerEpoch(pl.Callback):
    """The names of the parameters that changed in each epoch, with the epoch's phase."""

    def on_train_epoch_start(self, trainer, pl_module):
        self.before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_epoch_end(self, trainer, pl_module):
        changed = [n for n, p in pl_module.named_parameters() if not torch.equal(p.detach(), self.before[n])]
        self.changed = [*getattr(self, "changed", []), (pl_module.phase.name, changed)]


def test_phases_train_the_wgan_then_the_encoder_with_generator_and_critic_frozen(tiny_model_datamodule, tmp_path):
    model = tiny(gan_epochs=2)
    record = _ParametersPerEpoch()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="val/auc", mode="max", filename="best-{epoch}")
    trainer = quiet_trainer(
        max_epochs=4,
        limit_train_batches=2,
        limit_val_batches=1,
        enable_checkpointing=True,
        callbacks=[record, checkpoint],
    )
    trainer.fit(model, datamodule=tiny_model_datamodule(FAnoGAN))
    assert [phase for phase, _ in record.changed] == ["gan", "gan", "encoder", "encoder"]
    for phase, changed in record.changed:
        parts = ("network.generator", "network.critic") if phase == "gan" else ("network.encoder",)
        assert changed and all(name.startswith(parts) for name in changed), (phase, changed[:3])
    assert (model.steps["critic"], model.steps["generator"], model.steps["encoder"]) == (4, 2, 4)
    # Only the encoder phase scores, so the best checkpoint is one of its epochs.
    assert checkpoint.best_model_path.endswith(("epoch=2.ckpt", "epoch=3.ckpt"))


def test_the_gan_phase_needs_fewer_epochs_than_the_trainer(tiny_model_datamodule):
    with pytest.raises(ConfigError, match="needs --trainer.max_epochs > 3"):
        quiet_trainer(max_epochs=3, limit_train_batches=1).fit(
            tiny(gan_epochs=3), datamodule=tiny_model_datamodule(FAnoGAN)
        )


def test_a_wrong_image_size_names_the_flag(tiny_model_datamodule):
    with pytest.raises(ConfigError, match=r"--model.image_size '\[64, 32\]'"):
        quiet_trainer(max_epochs=2, limit_train_batches=1).fit(
            tiny(image_size=[32, 32]), datamodule=tiny_model_datamodule(FAnoGAN)
        )


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        ({"image_size": [62, 32]}, "image_size"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"generator_channels": 0}, "generator_channels"),
        ({"critic_channels": 0}, "critic_channels"),
        ({"encoder_channels": 0}, "encoder_channels"),
        ({"depth": 0}, "depth"),
        ({"n_critic": 0}, "n_critic"),
        ({"gan_epochs": 0}, "gan_epochs"),
        ({"gp_weight": -1.0}, "gp_weight"),
        ({"feature_weight": -1.0}, "feature_weight"),
        ({"lr": 0.0}, "lr"),
        ({"encoder_lr": 0.0}, "encoder_lr"),
    ],
)
def test_bad_flags_are_config_errors_naming_the_flag(flags, flag):
    with pytest.raises(ConfigError, match=flag):
        tiny(**flags)


def test_trains_and_tests_on_the_toy_preset(tmp_path):
    datamodule = UnilateralDataModule(preset="vagan", **TOY_DATA)
    model = tiny(image_size=[112, 112], depth=4)
    evaluation = EvaluationCallback(num_bootstrap=10)
    trainer = quiet_trainer(
        max_epochs=2, limit_train_batches=2, limit_test_batches=1, callbacks=[evaluation], default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=datamodule)
    assert (model.steps["critic"], model.steps["generator"], model.steps["encoder"]) == (2, 1, 2)
    trainer.test(model, datamodule=datamodule, verbose=False)
    assert evaluation.results["num_test_pairs"] > 0 and "test/expl_iou" in evaluation.results
