"""DisAsymNet-specific behaviour, and its two configurations latefusion and wang22 (the registry battery in
test_models.py / test_cli.py covers the shared contract).

Tiny everything: test_resnet at output stride 16 on 64×32 images (4×2 token maps), one transformer block, hand-made
tensors for the losses and the blending.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import yaml

from bilatcf.data.types import BilateralBatch, TrainingImage
from bilatcf.errors import ConfigError
from bilatcf.models.disasymnet import DisAsymNet
from bilatcf.models.disasymnet.network import AsyC, AsyD, reconstruction_loss, stage_modules, synthesis_loss
from bilatcf.models.disasymnet.synthesis import (
    BREAST_THRESHOLD,
    TumourBank,
    blend,
    cut_tumours,
    insert_tumours,
)
from bilatcf.models.latefusion import LateFusion
from bilatcf.models.wang22 import Wang22
from bilatcf.nn.backbones import create_backbone
from tests.conftest import REPO, random_images
from tests.test_models import quiet_trainer

TINY = {"backbone": "test_resnet", "output_stride": 16, "transformer_depth": 1}
ABLATIONS = REPO / "configs" / "ablations" / "disasymnet"


def tiny(**flags) -> DisAsymNet:
    pl.seed_everything(0, verbose=False)
    return DisAsymNet(**{**TINY, **flags})


@pytest.fixture(scope="module")
def datamodule(tiny_datamodule_factory):
    return tiny_datamodule_factory({"task": "abnormality"})


def batch_of(datamodule) -> BilateralBatch:
    return next(iter(datamodule.train_dataloader()))


def breast_image(value: float = 0.5, height: int = 16, width: int = 8) -> torch.Tensor:
    """An [H, W] image: breast (``value``) on the left half of the columns, zero background on the right."""
    image = torch.zeros(height, width)
    image[:, : width // 2] = value
    return image


# ---------------------------------------------------------------------------------------------------- AsyC


def _features_of_the_target(asyc: AsyC, target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return asyc(target, reference).features[: len(target)]


@pytest.mark.parametrize("transformer", [True, False])
def test_the_target_reads_its_reference_only_through_cross_attention(transformer):
    model = tiny(transformer=transformer, decoder=False, synthesis=False).eval()  # eval: no batch-norm coupling
    asyc = model.network.asyc
    if transformer:
        torch.nn.init.normal_(asyc.transformer.blocks[0].fuse[-1].weight, std=0.5)  # blocks start as the identity
    target, first, second = random_images(0), random_images(1), random_images(2)
    with torch.no_grad():
        changed = not torch.allclose(
            _features_of_the_target(asyc, target, first), _features_of_the_target(asyc, target, second)
        )
    assert changed == transformer


def test_transformer_blocks_start_as_the_identity():
    asyc = tiny(decoder=False, synthesis=False).eval().network.asyc
    target, reference = random_images(0), random_images(1)
    with torch.no_grad():
        features = asyc.encoder(torch.cat([target, reference]))
        torch.testing.assert_close(asyc(target, reference).features, features)


def test_heads_cam_and_asymmetry_input():
    asyc = tiny(decoder=False, synthesis=False).eval().network.asyc
    torch.nn.init.normal_(asyc.transformer.blocks[0].fuse[-1].weight, std=0.5)
    target, reference = random_images(0), random_images(1)
    with torch.no_grad():
        result = asyc(target, reference)
        pooled = (result.features[:2] - result.features[2:]).abs().mean(dim=(2, 3))
        torch.testing.assert_close(result.asym_logits, asyc.asymmetry_head(pooled).squeeze(1))
        # CAM of the abnormal head: its mean over positions plus the bias is the side's logit.
        logits = result.class_maps.mean(dim=(1, 2, 3)) + asyc.abnormal_head.bias
        torch.testing.assert_close(logits, result.side_logits)
    assert result.side_logits.shape == (4,) and result.class_maps.shape == (4, 1, 4, 2)


def test_without_the_transformer_the_asymmetry_head_reads_the_concatenated_pooled_features():
    asyc = tiny(transformer=False, decoder=False, synthesis=False).eval().network.asyc
    target, reference = random_images(0), random_images(1)
    with torch.no_grad():
        result = asyc(target, reference)
        pooled = result.features.mean(dim=(2, 3))
        expected = asyc.asymmetry_head(torch.cat([pooled[:2], pooled[2:]], dim=1)).squeeze(1)
    torch.testing.assert_close(result.asym_logits, expected)
    assert asyc.transformer is None and asyc.asymmetry_head.in_features == 2 * asyc.encoder.out_channels


def test_heads_must_divide_the_encoder_width():
    with pytest.raises(ConfigError, match="transformer_heads=5 does not divide the encoder's 96 channels"):
        tiny(transformer_heads=5)


# ---------------------------------------------------------------------------------------------------- AsyD


def test_decoder_skips_are_the_encoder_stages():
    model = tiny(synthesis=False).eval()
    assert model.network.taps.channels == [c for _, c in stage_modules(model.network.asyc.encoder)] == [32, 32, 48, 192]
    target, reference = random_images(0), random_images(1)
    with torch.no_grad():
        result = model.network.classify(target, reference, stages=True)
        assert [s.shape[-2:] for s in result.stages] == [(32, 16), (16, 8), (8, 4), (4, 2)]
        assert model.network.classify(target, reference).stages == []  # recorded only when asked
        out = model(target, reference)
    assert out.counterfactual.shape == out.explanation.shape == target.shape
    assert 0 <= float(out.counterfactual.min()) and float(out.counterfactual.max()) <= 1


def test_decoder_without_skips_for_alexnet():
    backbone = create_backbone("tv_alexnet", in_chans=1)
    assert stage_modules(backbone) == []
    decoder = AsyD(backbone.out_channels, [], backbone.stride, width=8).eval()
    with torch.no_grad():
        normal, abnormal = decoder(backbone(random_images(0)), [], (64, 32))
    assert normal.shape == abnormal.shape == (2, 1, 64, 32)


def test_reconstruction_loss_matches_the_formula():
    x = torch.tensor([0.2, 0.8, 0.5, 0.0]).view(1, 1, 2, 2)
    x_n = torch.tensor([0.3, 0.1, 0.5, 0.4]).view(1, 1, 2, 2)
    x_ab = torch.tensor([0.0, 0.6, 0.1, 0.0]).view(1, 1, 2, 2)
    m = torch.tensor([0.0, 1.0, 0.5, 0.25]).view(1, 1, 2, 2)
    # L1((1 − M)x, (1 − M)x_n): |0.2 − 0.3|·1, 0, 0, |0 − 0.4|·0.75 → mean (0.1 + 0.3) / 4.
    # L1(Mx, x_ab): |0 − 0|, |0.8 − 0.6|, |0.25 − 0.1|, |0 − 0| → mean (0.2 + 0.15) / 4.
    expected = (0.1 + 0.3) / 4 + (0.2 + 0.15) / 4
    assert float(reconstruction_loss(x, x_n, x_ab, m)) == pytest.approx(expected)


def test_synthesis_loss_sums_over_synthetic_pairs_over_the_batch():
    real = torch.stack([torch.full((1, 2, 2), v) for v in (0.5, 0.5, 0.2, 0.2)])  # 2 pairs: targets, references
    normal = torch.stack([torch.full((1, 2, 2), v) for v in (0.4, 0.5, 0.2, 0.5)])
    # Per side |Δ|: 0.1, 0, 0, 0.3 → per pair (0.1 + 0)/2 and (0 + 0.3)/2 (pair 0 = rows 0, 2; pair 1 = rows 1, 3),
    # summed and divided by the batch's 4 pairs.
    assert float(synthesis_loss(real, normal, pairs=4)) == pytest.approx((0.05 + 0.15) / 4)


def test_discrimination_trains_the_decoder_only(datamodule):
    model = tiny(synthesis=False)
    batch = batch_of(datamodule)
    network = model.network
    network.sync_discriminator()
    result = network.classify(batch.target, batch.reference, stages=True)
    normal, _ = network.decode(result.features, result.stages, batch.target.shape[-2:])
    model.disc_loss(normal).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.decoder.out.parameters())
    assert all(p.grad is None for p in network.asyc.parameters())
    assert all(p.grad is None and not p.requires_grad for p in network.discriminator.parameters())


# ---------------------------------------------------------------------------------------------------- ψ_d


class _AsyCAtBatchStart(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.asyc = {k: v.detach().clone() for k, v in pl_module.network.asyc.state_dict().items()}


def test_discriminator_is_a_frozen_in_place_copy_of_asyc(datamodule):
    model = tiny(synthesis=False)
    discriminator = model.network.discriminator
    pointers = [t.data_ptr() for t in [*discriminator.parameters(), *discriminator.buffers()]]
    assert not any(name.startswith("network._discriminator") for name in model.state_dict())
    assert {id(p) for p in discriminator.parameters()}.isdisjoint({id(p) for p in model.parameters()})
    start = _AsyCAtBatchStart()
    quiet_trainer(max_epochs=1, limit_train_batches=2, callbacks=[start]).fit(model, datamodule=datamodule)
    assert [t.data_ptr() for t in [*discriminator.parameters(), *discriminator.buffers()]] == pointers
    assert not discriminator.training and not any(p.requires_grad for p in discriminator.parameters())
    # ψ_d holds AsyC as it was when the last batch started (both steps have updated AsyC since).
    copied = discriminator.state_dict()
    assert all(torch.equal(copied[k], v) for k, v in start.asyc.items())
    assert not all(torch.equal(copied[k], v) for k, v in model.network.asyc.state_dict().items())
    model.network.sync_discriminator()
    assert all(torch.equal(discriminator.state_dict()[k], v) for k, v in model.network.asyc.state_dict().items())


# ---------------------------------------------------------------------------------------------------- synthesis


def test_alpha_is_a_gaussian_set_by_the_tumour_size():
    image, mask = torch.rand(40, 40) * 0.5 + 0.5, torch.zeros(40, 40)  # all breast
    mask[10:18, 12:16] = 1.0  # a lesion of 8 rows × 4 columns, centred at (13.5, 13.5)
    (tumour,) = cut_tumours(image, mask)
    # σ = extent / 4 = (2, 1); the patch reaches 3σ from the centre: rows 7..20, columns 10..17.
    torch.testing.assert_close(tumour.patch, image[7:21, 10:18])
    rows, cols = torch.arange(14.0)[:, None], torch.arange(8.0)[None, :]
    expected = torch.exp(-0.5 * (((rows - 6.5) / 2) ** 2 + ((cols - 3.5) / 1) ** 2))
    torch.testing.assert_close(tumour.alpha, expected)
    assert tumour.centre == (round(6.5), round(3.5))


def test_alpha_never_pastes_the_source_background():
    image, mask = breast_image(0.6, 20, 20), torch.zeros(20, 20)
    mask[8:12, 7:11] = 1.0  # straddles the breast edge at column 10
    (tumour,) = cut_tumours(image, mask)
    assert tumour.alpha[tumour.patch <= BREAST_THRESHOLD].eq(0).all() and tumour.alpha.max() > 0.5


def test_blending_matches_the_formula():
    x = torch.tensor([[0.5, 0.4]])
    tumours = [torch.tensor([[0.9, 0.0]]), torch.tensor([[0.7, 0.8]])]
    alphas = [torch.tensor([[0.5, 0.0]]), torch.tensor([[0.2, 1.0]])]
    # x·(1 − α1)(1 − α2) + t1·α1 + t2·α2
    expected = torch.tensor([[0.5 * 0.5 * 0.8 + 0.9 * 0.5 + 0.7 * 0.2, 0.4 * 1.0 * 0.0 + 0.8]])
    torch.testing.assert_close(blend(x, tumours, alphas), expected)


def test_tumours_land_inside_the_breast_only():
    bank = TumourBank(8)
    source, mask = torch.full((16, 16), 0.9), torch.zeros(16, 16)
    mask[6:10, 6:10] = 1.0
    bank.fill([TrainingImage(source, mask, 1, 1, "a")])
    image = breast_image(0.3, 16, 16)
    for seed in range(20):
        draws = torch.rand(1 + 2 * 3, generator=torch.Generator().manual_seed(seed))
        fake = insert_tumours(image, bank, draws, max_tumours=3)
        changed = fake != image
        assert changed.any()
        assert not changed[image <= BREAST_THRESHOLD].any()


def _batch_with(datamodule, asym: list[int]) -> BilateralBatch:
    batch = batch_of(datamodule)
    batch.asym_label = torch.tensor(asym)
    return batch


def test_synthesis_touches_only_the_normal_pairs(datamodule):
    model = tiny()
    model.build_training_state(datamodule)
    batch = _batch_with(datamodule, [0, 1, 0, 1])
    fake = model.synthesize(batch)
    assert fake.rows.tolist() == [0, 2]
    for k, row in enumerate(fake.rows.tolist()):
        for fake_side, real in ((fake.target[k], batch.target[row]), (fake.reference[k], batch.reference[row])):
            assert not (fake_side != real)[real <= model.breast_threshold].any()
        assert not (
            torch.equal(fake.target[k], batch.target[row]) and torch.equal(fake.reference[k], batch.reference[row])
        )
    assert model.synthesize(_batch_with(datamodule, [1, 1, 1, 1])) is None


def test_synthesis_depends_on_the_pair_not_on_its_place_in_the_batch(datamodule):
    model = tiny()
    model.build_training_state(datamodule)
    batch = _batch_with(datamodule, [0, 0, 0, 0])
    order = [2, 0, 3, 1]
    shuffled = BilateralBatch(
        **{
            **{f: getattr(batch, f) for f in batch.__dataclass_fields__},
            "target": batch.target[order],
            "reference": batch.reference[order],
            "asym_label": batch.asym_label[order],
            "meta": [batch.meta[i] for i in order],
        }
    )
    first, second = model.synthesize(batch), model.synthesize(shuffled)
    torch.testing.assert_close(second.target, first.target[order])
    torch.testing.assert_close(second.reference, first.reference[order])
    model.iteration += 1  # the next step draws anew
    assert not torch.equal(model.synthesize(batch).target, first.target)


def test_the_bank_is_cut_from_the_training_masks_only(datamodule):
    model = tiny()
    model.build_training_state(datamodule)
    training = {item.image_id: item for item in datamodule.training_images(lesion_free=False)}
    held_out = {record.image_id for record in datamodule.records if record.split != "train"}
    assert len(model.bank) > 0 and set(model.bank.sources) <= set(training)
    assert held_out.isdisjoint(model.bank.sources)
    for tumour, source in zip(model.bank.tumours, model.bank.sources, strict=True):
        item = training[source]
        # Each tumour is a crop of its source image, centred on lesion pixels of its mask.
        windows = item.image.unfold(0, tumour.patch.shape[0], 1).unfold(1, tumour.patch.shape[1], 1)
        matches = (windows == tumour.patch).flatten(2).all(dim=2).nonzero()
        assert len(matches) > 0
        top, left = matches[0].tolist()
        assert item.mask[top : top + tumour.patch.shape[0], left : left + tumour.patch.shape[1]].sum() > 0


def test_bank_capacity_and_checkpoint_state():
    bank = TumourBank(3)
    images = []
    for k in range(5):
        image, mask = torch.full((12, 12), 0.2 + 0.1 * k), torch.zeros(12, 12)
        mask[2 + k : 5 + k, 3:6] = 1.0
        images.append(TrainingImage(image, mask, 1, 1, f"img{k}"))
    assert bank.fill(images) == (5, 0)
    assert bank.sources == ["img0", "img2", "img4"]  # evenly spaced over the 5 lesions
    restored = TumourBank(3)
    restored.set_extra_state(bank.get_extra_state())
    for a, b in zip(bank.tumours, restored.tumours, strict=True):
        assert torch.equal(a.patch, b.patch) and torch.equal(a.alpha, b.alpha) and a.centre == b.centre


class _NoMasks:
    def training_images(self, lesion_free=None):
        return iter([TrainingImage(torch.rand(64, 32), None, 1, 1, "x")])


def test_synthesis_without_masks_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"synthesis needs lesion masks.*0 with a mask, 1 without.*synthesis false"):
        tiny().build_training_state(_NoMasks())
    tiny(synthesis=False).build_training_state(_NoMasks())  # nothing to build


# ---------------------------------------------------------------------------------------------------- flags


def _init_args(path) -> dict:
    return yaml.safe_load(path.read_text())["model"]["init_args"] or {}


@pytest.mark.parametrize(
    ("config", "transformer", "decoder", "synthesis"),
    [
        (REPO / "configs" / "models" / "disasymnet.yaml", True, True, True),
        (ABLATIONS / "asyc.yaml", True, False, False),
        (ABLATIONS / "asyd.yaml", False, True, False),
        (ABLATIONS / "asyd_syn.yaml", False, True, True),
        (ABLATIONS / "asyc_asyd.yaml", True, True, False),
    ],
    ids=lambda v: v.stem if hasattr(v, "stem") else None,
)
def test_ablation_flags_remove_the_parts_they_name(config, transformer, decoder, synthesis):
    args = {**_init_args(config), **TINY}
    model = DisAsymNet(**args)
    network = model.network
    assert (network.asyc.transformer is not None) == transformer
    assert (network.decoder is not None) == decoder == (network.discriminator is not None)
    assert (model.bank is not None) == synthesis
    assert list(model.build_optimizers()) == (["model", "refine"] if decoder else ["model"])
    out = model.eval()(random_images(0), random_images(1))
    assert (out.counterfactual is not None) == (out.explanation is not None) == decoder


def test_synthesis_needs_the_decoder():
    with pytest.raises(ConfigError, match="synthesis supervises the decoder"):
        tiny(decoder=False, synthesis=True)


def test_one_step_trains_the_terms_of_its_configuration(datamodule):
    full = tiny()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1)
    trainer.fit(full, datamodule=datamodule)
    logged = {k.split("/")[1] for k in trainer.callback_metrics if k.startswith("train/")}
    assert logged == {"diag", "rec", "disc", "syn", "model", "refine"}
    assert full.steps["model"] == full.steps["refine"] == 1
    alone = tiny(decoder=False, synthesis=False)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1)
    trainer.fit(alone, datamodule=datamodule)
    assert {k.split("/")[1] for k in trainer.callback_metrics if k.startswith("train/")} == {"diag", "model"}


def test_learning_rate_decays_by_gamma_every_step_epochs():
    specs = tiny(lr=1e-3, lr_step_epochs=2, lr_gamma=0.5).build_optimizers()
    for spec in specs.values():
        rates = []
        for _ in range(5):
            rates.append(spec.optimizer.param_groups[0]["lr"])
            spec.optimizer.step()
            spec.scheduler.step()
        assert rates == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]) and spec.interval == "epoch"


def test_latefusion_and_wang22_are_disasymnet_configurations():
    late = LateFusion(backbone="test_resnet", output_stride=16)
    assert late.network.asyc.transformer is None and late.network.decoder is None and late.bank is None
    wang = Wang22(backbone="test_resnet", output_stride=16, transformer_depth=2)
    assert len(wang.network.asyc.transformer.blocks) == 2 and wang.network.decoder is None and wang.bank is None
    assert late.extra_heads == wang.extra_heads == {"asymmetry": "asym_label"}
    assert late.data_options == wang.data_options == {"task": "abnormality"}
