"""AnoGAN-specific behaviour (the registry battery in test_models.py / test_cli.py covers the shared contract).

Tiny networks on 64×32 bilateral images; the toy preset run at the end uses 112×112 images. The domain helpers that
VA-GAN and f-AnoGAN share (``stacked_domains``, ``select``) are tested here too.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from bilatcf.data.datamodule import UnilateralDataModule
from bilatcf.data.types import BilateralBatch
from bilatcf.errors import ConfigError
from bilatcf.metrics.callbacks import EvaluationCallback
from bilatcf.models.anogan import AnoGAN
from bilatcf.models.anogan.module import select, stacked_domains
from bilatcf.models.anogan.network import mapping_loss
from bilatcf.models.cyclegan.network import to_tanh_range
from tests.conftest import TOY_DATA, random_images
from tests.test_models import first_batch, quiet_trainer


def tiny(**flags) -> AnoGAN:
    pl.seed_everything(0, verbose=False)
    return AnoGAN(**{**AnoGAN.test_config, **flags})


def uniform_codes(count: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, dim, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_mapping_loss_on_a_hand_made_case():
    images, generated = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    features, generated_features = torch.zeros(1, 3), torch.ones(1, 3)
    # L_R = Σ|x − G(z)| = 4 · 0.5 = 2; L_D = Σ|f(x) − f(G(z))| = 3; (1 − 0.1) · 2 + 0.1 · 3 = 2.1.
    loss = mapping_loss(images, generated, features, generated_features, 0.1)
    assert loss.shape == (1,) and loss.item() == pytest.approx(2.1)


def test_search_lowers_the_mapping_loss_and_treats_each_image_alone():
    model = tiny().eval()
    net, images, initial = model.network, to_tanh_range(random_images(0)), uniform_codes(2)
    searched = net.search(images, initial, steps=20, lr=0.05, weight=0.1)
    alone = net.search(images[1:], initial[1:], steps=20, lr=0.05, weight=0.1)
    assert torch.allclose(searched[1:], alone, atol=1e-6), "an image's search depends on the rest of its batch"
    with torch.no_grad():
        before = model.anomaly_score(images, net.generator(initial))
        after = model.anomaly_score(images, net.generator(searched))
    assert (after < before).all()
    assert all(p.grad is None for p in net.parameters()), "the search left gradients on the networks"


def test_zero_search_steps_keep_the_initial_code():
    model = tiny().eval()
    images, initial = to_tanh_range(random_images(1)), uniform_codes(2)
    assert torch.equal(model.network.search(images, initial, steps=0, lr=0.01, weight=0.1), initial)


def test_forward_scores_counterfactual_and_explanation_at_the_searched_code():
    model = tiny(val_search_steps=5).eval()
    target, initial = random_images(2), uniform_codes(2)
    out = model(target, target, initial)
    z = model.network.search(to_tanh_range(target), initial, 5, model.hparams.search_lr, 0.1)
    with torch.no_grad():
        generated = model.network.generator(z)
        expected = model.anomaly_score(to_tanh_range(target), generated)
    assert torch.allclose(out.logits, expected)
    assert torch.allclose(out.counterfactual, (generated + 1) / 2)
    assert torch.allclose(out.explanation, (target - out.counterfactual).abs())


def test_initial_codes_are_uniform_and_keyed_on_the_dataset_index(tiny_model_datamodule):
    model = tiny()
    batch = first_batch(tiny_model_datamodule(AnoGAN), "val")
    codes = model.initial_latent(batch)
    assert codes.shape == (len(batch), 8) and codes.min() >= -1 and codes.max() <= 1
    reordered = SimpleNamespace(meta=batch.meta[::-1], target=batch.target)
    assert torch.equal(model.initial_latent(reordered), codes.flip(0))


def test_validation_searches_fewer_steps_than_test(tiny_model_datamodule, monkeypatch):
    model, steps = tiny(val_search_steps=2, search_steps=5), []
    search = model.network.search
    monkeypatch.setattr(model.network, "search", lambda *args: steps.append(args[2]) or search(*args))
    datamodule = tiny_model_datamodule(AnoGAN)
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=1, limit_test_batches=1)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    trainer.test(model, datamodule=datamodule, verbose=False)
    assert steps == [2, 5]


def batch_of(
    target: torch.Tensor, reference: torch.Tensor, target_abnormal: list[int], ref_abnormal: list[int]
) -> BilateralBatch:
    """A hand-made batch: the given images and abnormal flags, dataset indices 0, 1, …, no masks."""
    size = len(target)
    labels, flags = torch.tensor(target_abnormal), torch.zeros(size, dtype=torch.bool)
    return BilateralBatch(
        target=target,
        reference=reference,
        label=labels,
        ref_label=torch.tensor(ref_abnormal),
        asym_label=labels,
        target_mask=torch.zeros_like(target),
        has_mask=flags,
        healthy=torch.zeros_like(target),
        has_healthy=flags,
        meta=[{"index": i} for i in range(size)],
        target_abnormal=labels,
        ref_abnormal=torch.tensor(ref_abnormal),
    )


def test_stacked_domains_count_a_reference_identical_to_its_target_once():
    images = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    # Pairs 0 and 2 repeat the target as its reference (the toy presets); pair 1 has another, lesion-free image.
    batch = batch_of(images, torch.stack([images[0], images[0], images[2]]), [0, 1, 0], [0, 0, 0])
    stacked, abnormal, normal = stacked_domains(batch)
    assert torch.equal(stacked, torch.cat([batch.target, batch.reference]))
    assert abnormal.tolist() == [0, 1, 0, 0, 0, 0]
    assert normal.tolist() == [1, 0, 1, 0, 1, 0]


def test_select_keeps_a_zero_weight_row_when_the_mask_is_empty():
    rows, weights = select(torch.tensor([0.0, 1.0, 1.0]))
    assert rows.tolist() == [1, 2] and weights.tolist() == [1.0, 1.0]
    rows, weights = select(torch.zeros(3))
    assert rows.tolist() == [0] and weights.tolist() == [0.0]


def test_training_reads_normal_images_only(tiny_model_datamodule):
    model = tiny()
    batch = first_batch(tiny_model_datamodule(AnoGAN))
    fake = model.network.generator(uniform_codes(1))
    real = to_tanh_range(batch.target[:1])
    # A batch without a normal image: every loss is 0 (a zero-weight placeholder row keeps the graph).
    zero = torch.zeros(1)
    losses = {**model.discriminator_losses(real, fake, zero, 8), **model.generator_losses(fake, zero, 8)}
    assert all(value.item() == 0 for value in losses.values())
    ones = torch.ones(1)
    assert model.discriminator_losses(real, fake, ones, 8)["d_real"].item() > 0


def test_a_wrong_image_size_names_the_flag(tiny_model_datamodule):
    model = tiny(image_size=[128, 64])
    with pytest.raises(ConfigError, match=r"64×32.*--model.image_size '\[64, 32\]'"):
        quiet_trainer(max_epochs=1, limit_train_batches=1).fit(model, datamodule=tiny_model_datamodule(AnoGAN))


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        ({"image_size": [62, 32]}, r"image_size=\[62, 32\] is not divisible by 2\^depth = 4 \(model.depth=2\)"),
        ({"image_size": [64]}, "image_size"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"generator_channels": 0}, "generator_channels"),
        ({"discriminator_channels": 0}, "discriminator_channels"),
        ({"depth": 0}, "depth"),
        ({"lr": 0.0}, "lr"),
        ({"search_steps": -1}, "search_steps"),
        ({"val_search_steps": -1}, "val_search_steps"),
        ({"search_lr": -0.1}, "search_lr"),
        ({"discrimination_weight": 1.5}, "discrimination_weight"),
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
        max_epochs=1, limit_train_batches=2, limit_test_batches=1, callbacks=[evaluation], default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=datamodule)
    assert model.steps["discriminator"] == model.steps["generator"] == 2
    trainer.test(model, datamodule=datamodule, verbose=False)
    assert evaluation.results["num_test_pairs"] > 0 and "test/expl_iou" in evaluation.results
