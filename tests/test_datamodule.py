"""BilateralDataModule and UnilateralDataModule: the contract of DESIGN §2 on real batches, and bad input."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bilatcf.data.datamodule import BilateralDataModule, UnilateralDataModule
from bilatcf.data.types import BilateralBatch, check_batch
from bilatcf.errors import ConfigError, DataError


def test_synthetic_batch_meets_the_contract(tiny_datamodule_factory):
    datamodule = tiny_datamodule_factory()
    batch = next(iter(datamodule.train_dataloader()))
    assert isinstance(batch, BilateralBatch)
    check_batch(batch)
    size = len(batch)
    assert batch.target.shape == (size, 1, 64, 32) and batch.target.dtype == torch.float32
    assert batch.has_healthy.all(), "synthetic pairs carry the true counterfactual"
    assert set(batch.label.tolist()) <= {0, 1}
    for meta in batch.meta:
        assert {"image_id", "reference_id", "laterality", "view", "boxes", "flipped"} <= set(meta)
        assert meta["image_id"] != meta["reference_id"]


def test_malignancy_pairs_are_lesion_targets_and_healthy_matches_outside_mask(tiny_datamodule_factory):
    datamodule = tiny_datamodule_factory(augment=False)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.has_mask.all() and (batch.target_mask.flatten(1).amax(1) == 1).all(), "malignancy targets have lesions"
    outside = batch.target_mask == 0
    assert torch.allclose(batch.target[outside], batch.healthy[outside])


def test_synthetic_knobs_reach_the_generator(tiny_datamodule_factory):
    aligned = tiny_datamodule_factory(augment=False)
    misaligned = tiny_datamodule_factory(augment=False, misalignment=0.2)
    assert misaligned.image_source.dataset.config.misalignment == 0.2
    assert aligned.image_source.dataset.config.misalignment == 0.0
    first = [next(iter(dm.train_dataloader())) for dm in (aligned, misaligned)]
    assert [m["image_id"] for m in first[0].meta] == [m["image_id"] for m in first[1].meta]
    assert not torch.equal(first[0].reference, first[1].reference)


def test_abnormality_task_has_normal_targets(tiny_datamodule_factory):
    datamodule = tiny_datamodule_factory(task="abnormality")
    labels = torch.tensor([p.label for p in datamodule.pairs["train"]])
    assert (labels == 0).any() and (labels == 1).any()
    assert all(p.asym_label == int(p.label == 1 or p.ref_label == 1) for p in datamodule.pairs["train"])


def test_no_patient_in_two_splits(tiny_datamodule_factory):
    datamodule = tiny_datamodule_factory(task="abnormality")
    patients = {split: {p.target.patient_id for p in datamodule.pairs[split]} for split in ("train", "val", "test")}
    assert not patients["train"] & patients["val"] and not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]


def test_training_order_and_augmentation_depend_only_on_seed_and_epoch(tiny_datamodule_factory):
    first = [b.target for b in tiny_datamodule_factory().train_dataloader()]
    second = [b.target for b in tiny_datamodule_factory().train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    loader = tiny_datamodule_factory().train_dataloader()
    loader.sampler.set_epoch(1)
    assert not torch.equal(next(iter(loader)).target, first[0])


def test_four_view_batches_carry_the_other_views(tiny_datamodule_factory):
    batch = next(iter(tiny_datamodule_factory(four_view=True).train_dataloader()))
    assert batch.target_other.shape == batch.target.shape and batch.reference_other.shape == batch.target.shape


def test_manifest_source_needs_a_manifest():
    with pytest.raises(ConfigError, match="--data.manifest") as error:
        BilateralDataModule(source="manifest")
    assert "docs/data.md" in str(error.value) and "bilatcf data synth" in str(error.value)
    assert "bilatcf data index --dataset NAME" in str(error.value)


def test_manifest_source_reads_image_files(tmp_path):
    from bilatcf.cli import main

    assert (
        main(
            [
                "data",
                "synth",
                "--out",
                str(tmp_path / "synth"),
                "--num_patients",
                "16",
                "--image_size",
                "64",
                "32",
                "--format",
                "png",
            ]
        )
        == 0
    )
    datamodule = BilateralDataModule(
        source="manifest", manifest=str(tmp_path / "synth" / "manifest.csv"), image_size=(64, 32), batch_size=2
    )
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    check_batch(batch)
    assert batch.has_mask.all() and not batch.has_healthy.any()
    assert all(meta["flipped"] == (meta["laterality"] == "R") for meta in batch.meta), "right breasts are mirrored"
    assert not any((tmp_path / "synth").rglob("*.npy")), "nothing is written into the data folder"


def test_wrong_image_range_is_reported(tiny_datamodule_factory):
    batch = next(iter(tiny_datamodule_factory().train_dataloader()))
    batch.target = batch.target * 255
    with pytest.raises(DataError, match="'target' has values in"):
        check_batch(batch)


def test_unilateral_toy_batches(tmp_path):
    datamodule = UnilateralDataModule(preset="vagan", num_images=40, batch_size=8)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    check_batch(batch)
    assert torch.equal(batch.target, batch.reference)
    positives = batch.label == 1
    assert np.all(batch.has_mask[positives].numpy())


# ---------------------------------------------------------------- manifests: files decoded and checked in setup
@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory):
    """A small synthetic dataset written as PNG files with its manifest (copied by the tests that damage it)."""
    from bilatcf.cli import main

    out = tmp_path_factory.mktemp("data") / "synth"
    args = ["data", "synth", "--out", str(out), "--num_patients", "20", "--image_size", "64", "32"]
    assert main(args) == 0
    return out


def _copy(folder, tmp_path):
    import shutil

    return Path(shutil.copytree(folder, tmp_path / "synth"))


def _manifest_module(folder, **options) -> BilateralDataModule:
    kwargs = {"source": "manifest", "manifest": str(folder / "manifest.csv"), "image_size": (64, 32), **options}
    return BilateralDataModule(task="abnormality", batch_size=2, **kwargs)


def _damage(folder, count: int = 1) -> list[str]:
    """Truncate the first ``count`` images of the manifest; return their paths."""
    with (folder / "manifest.csv").open() as handle:
        paths = [str(folder / row["path"]) for row in csv.DictReader(handle)][:count]
    for path in paths:
        Path(path).write_bytes(Path(path).read_bytes()[:100])
    return paths


def test_bad_images_stop_setup_with_file_reason_and_fix(synth_folder, tmp_path):
    folder = _copy(synth_folder, tmp_path)
    bad = _damage(folder, count=12)
    with pytest.raises(DataError) as error:
        _manifest_module(folder).setup("fit")
    message = str(error.value)
    assert "12 of the 80 images" in message and f"manifest.csv row 2: {bad[0]}: " in message
    assert "truncated or corrupt" in message and "... and 2 more" in message, "ten listed, then a count"
    assert "bilatcf data check" in message and "--data.skip_bad_images true" in message
    assert Path(bad[0]).stat().st_size == 100, "the data folder is left as it was"


def test_skip_bad_images_drops_and_prints_them(synth_folder, tmp_path, capsys):
    folder = _copy(synth_folder, tmp_path)
    bad = _damage(folder, count=2)
    datamodule = _manifest_module(folder, skip_bad_images=True)
    datamodule.setup("fit")
    out = capsys.readouterr().out
    assert "skipping 2 of the 80 images" in out and bad[0] in out and bad[1] in out
    assert len(datamodule.records) == 78 and not {r.path for r in datamodule.records} & set(bad)
    used = {p.target.path for pairs in datamodule.pairs.values() for p in pairs}
    assert not used & set(bad)


def test_the_second_setup_finds_every_check_in_the_cache(synth_folder, tmp_path, monkeypatch):
    from bilatcf.data import validate

    folder = _copy(synth_folder, tmp_path)
    decoded = []
    real = validate.read_image
    monkeypatch.setattr(validate, "read_image", lambda path: decoded.append(path) or real(path))
    _manifest_module(folder).setup("fit")
    assert len(decoded) == 80
    decoded.clear()
    second = _manifest_module(folder)
    second.setup("fit")
    assert decoded == [], "nothing is decoded twice"
    check_batch(next(iter(second.train_dataloader())))


def test_prepare_data_fills_the_cache_and_never_raises(synth_folder, tmp_path, monkeypatch):
    from bilatcf.data import validate

    folder = _copy(synth_folder, tmp_path)
    _damage(folder)
    datamodule = _manifest_module(folder)
    datamodule.prepare_data()
    decoded = []
    monkeypatch.setattr(validate, "read_image", lambda path: decoded.append(path))
    with pytest.raises(DataError, match="1 of the 80 images"):
        datamodule.setup("fit")
    assert decoded == []


def _rewrite_splits(folder, split: str) -> None:
    with (folder / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["split"] = split
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_an_empty_split_of_a_manifest_is_found_in_setup_with_a_manifest_fix(synth_folder, tmp_path):
    folder = _copy(synth_folder, tmp_path)
    _rewrite_splits(folder, "train")  # val is carved from the train patients, test stays empty
    datamodule = _manifest_module(folder)
    datamodule.setup("fit")
    for stage, split in (("test", "test"), ("predict", "predict")):
        with pytest.raises(DataError) as error:
            datamodule.setup(stage)
        message = str(error.value)
        assert re.match(f"the {split} split.* is empty: `{stage}` needs it, but no image is in it", message)
        assert "split column" in message and "--data.split_seed" in message
        assert "--data.num_patients" not in message
    _rewrite_splits(folder, "test")
    for stage, split in (("fit", "train"), ("validate", "val")):
        with pytest.raises(DataError, match=f"the {split} split is empty: `{stage}` needs it") as error:
            _manifest_module(folder).setup(stage)
        assert "--data.num_patients" not in str(error.value)


def test_fit_without_validation_needs_no_val_split():
    from types import SimpleNamespace

    datamodule = BilateralDataModule(num_patients=3, image_size=(64, 32), task="abnormality")
    with pytest.raises(DataError, match="the val split is empty.*--trainer.limit_val_batches 0"):
        datamodule.setup("fit")
    datamodule.trainer = SimpleNamespace(limit_val_batches=0)
    datamodule.setup("fit")
    assert datamodule.num_pairs["train"] == 12 and datamodule.num_pairs["val"] == 0


def test_too_few_synthetic_patients_is_found_in_setup_with_a_synthetic_fix():
    datamodule = BilateralDataModule(num_patients=2, image_size=(64, 32))
    with pytest.raises(DataError, match="split is empty") as error:
        datamodule.setup("fit")
    assert "--data.num_patients (now 2" in str(error.value) and "split column" not in str(error.value)


def test_pairing_is_printed_once_at_setup(tiny_datamodule_factory, capsys):
    datamodule = tiny_datamodule_factory(task="abnormality")
    out = capsys.readouterr().out
    assert out.count("pairing: ") == 1 and datamodule.report.summary() in out
    datamodule.setup("test")
    assert "pairing" not in capsys.readouterr().out


def test_pairing_is_not_printed_by_other_processes(tiny_datamodule_factory, capsys, monkeypatch):
    from pytorch_lightning.utilities import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    tiny_datamodule_factory()
    assert "pairing" not in capsys.readouterr().out


# ---------------------------------------------------------------- options checked where they enter
BAD_OPTIONS = [
    ({"batch_size": 0}, "--data.batch_size = 0", "at least 1"),
    ({"batch_size": 2.5}, "--data.batch_size = 2.5", "integer"),
    ({"image_size": (16, 8)}, "--data.image_size = (16, 8)", "H >= 32 and W >= 16"),
    ({"image_size": (64,)}, "--data.image_size", "two integers"),
    ({"image_size": (64.0, 32)}, "--data.image_size", "two integers"),
    ({"num_workers": -1}, "--data.num_workers = -1", "at least 0"),
    ({"fold": 5}, "--data.fold = 5", "in [0, 5)"),
    ({"fold": -1, "num_folds": 4}, "--data.fold = -1", "in [0, 4)"),
    ({"num_folds": 2}, "--data.num_folds = 2", "at least 3"),
    ({"num_patients": 0}, "--data.num_patients = 0", "at least 1"),
    ({"split_seed": -1}, "--data.split_seed = -1", "at least 0"),
    ({"seed": -3}, "--data.seed = -3", "at least 0"),
    ({"synthetic_seed": True}, "--data.synthetic_seed = True", "integer"),
    ({"lesion_contrast": 0.0}, "--data.lesion_contrast = 0.0", "(0, 1]"),
    ({"lesion_contrast": 1.5}, "--data.lesion_contrast = 1.5", "(0, 1]"),
    ({"distractor_rate": -0.1}, "--data.distractor_rate = -0.1", "[0, 1]"),
    ({"misalignment": 0.5}, "--data.misalignment = 0.5", "[0, 0.25]"),
    ({"misalignment": "x"}, "--data.misalignment = 'x'", "not a valid value"),
    ({"views": ("CC", "XX")}, "--data.views", "distinct views"),
    ({"source": "folder"}, "--data.source = 'folder'", "synthetic, manifest"),
]


@pytest.mark.parametrize(("options", "name", "allowed"), BAD_OPTIONS, ids=[str(o) for o, _, _ in BAD_OPTIONS])
def test_bad_bilateral_options_fail_in_init_naming_the_option(options, name, allowed):
    with pytest.raises(ConfigError) as error:
        BilateralDataModule(**options)
    message = str(error.value)
    assert message.startswith(name) and allowed in message and "\n" not in message


BAD_TOY_OPTIONS = [
    ({"num_images": 1}, "--data.num_images = 1", "at least 2"),
    ({"batch_size": 0}, "--data.batch_size = 0", "at least 1"),
    ({"num_workers": -2}, "--data.num_workers = -2", "at least 0"),
    ({"seed": -1}, "--data.seed = -1", "at least 0"),
    ({"preset": "brats"}, "--data.preset = 'brats'", "vagan, cxgan"),
]


@pytest.mark.parametrize(("options", "name", "allowed"), BAD_TOY_OPTIONS, ids=[str(o) for o, _, _ in BAD_TOY_OPTIONS])
def test_bad_toy_options_fail_in_init_naming_the_option(options, name, allowed):
    with pytest.raises(ConfigError) as error:
        UnilateralDataModule(**options)
    assert str(error.value).startswith(name) and allowed in str(error.value)


def test_too_few_toy_images_is_found_in_setup():
    with pytest.raises(DataError, match=r"the test split of toy preset 'vagan' is empty.*--data.num_images"):
        UnilateralDataModule(num_images=8).setup("test")


# ---------------------------------------------------------------- batch fields and the training-split hook
def test_batches_carry_each_images_own_abnormal(tiny_datamodule_factory):
    datamodule = tiny_datamodule_factory(augment=False, num_patients=200)
    batch = next(iter(datamodule.train_dataloader()))
    pairs = {p.target.image_id: p for p in datamodule.pairs["train"]}
    for row, meta in enumerate(batch.meta):
        pair = pairs[meta["image_id"]]
        assert int(batch.target_abnormal[row]) == pair.target.abnormal == 1, "malignancy targets have lesions"
        assert int(batch.ref_abnormal[row]) == pair.reference.abnormal
    benign_lesion = [p for p in datamodule.pairs["train"] if p.reference.abnormal == 1 and p.ref_label == 0]
    assert benign_lesion, "a benign reference lesion has ref_label 0 but ref_abnormal 1"


def test_check_batch_checks_the_abnormal_fields(tiny_datamodule_factory):
    batch = next(iter(tiny_datamodule_factory().train_dataloader()))
    batch.ref_abnormal = batch.ref_abnormal + 2
    with pytest.raises(DataError, match="'ref_abnormal' has value"):
        check_batch(batch)
    batch.ref_abnormal = batch.target_abnormal[:1]
    with pytest.raises(DataError, match=r"'ref_abnormal' has shape \(1,\)"):
        check_batch(batch)


def test_collate_marks_missing_abnormal_fields_unknown(tiny_datamodule_factory):
    dataset = tiny_datamodule_factory()._dataset("train")
    samples = [dataset[i] for i in range(2)]
    for sample in samples:
        del sample["target_abnormal"], sample["ref_abnormal"]
    batch = BilateralBatch.collate(samples)
    assert batch.target_abnormal.tolist() == [-1, -1] and batch.ref_abnormal.dtype == torch.long


def test_training_images_yield_each_training_image_once(tiny_datamodule_factory):
    datamodule = tiny_datamodule_factory()
    train = [r for r in datamodule.records if r.split == "train"]
    images = list(datamodule.training_images())
    assert [i.image_id for i in images] == [r.image_id for r in train]
    assert len(images) > 2 * len(datamodule.pairs["train"]), "all training images, not only the task's pairs"
    assert len({i.image_id for i in images}) == len(images)
    for item in images:
        assert item.image.shape == (64, 32) and item.image.dtype == torch.float32
        assert 0 <= float(item.image.min()) and float(item.image.max()) <= 1
        assert set(item.mask.unique().tolist()) <= {0.0, 1.0}
    normal = list(datamodule.training_images(lesion_free=True))
    lesions = list(datamodule.training_images(lesion_free=False))
    assert len(normal) + len(lesions) == len(images) and normal and lesions
    assert all(i.abnormal == 0 and not i.mask.any() for i in normal)
    assert all(i.abnormal == 1 and i.mask.any() for i in lesions)
    pair = datamodule.pairs["train"][0]
    first = next(i for i in images if i.image_id == pair.target.image_id)
    assert torch.equal(first.image, torch.from_numpy(datamodule.image_source.load(pair.target)[0]))


def test_training_images_need_setup():
    with pytest.raises(RuntimeError, match=r"call datamodule.setup\('fit'\) first"):
        BilateralDataModule().training_images()
    with pytest.raises(RuntimeError, match="setup"):
        UnilateralDataModule().training_images()


def test_manifest_training_images_give_lesion_free_images_an_empty_mask(synth_folder):
    datamodule = _manifest_module(synth_folder)
    datamodule.setup("fit")
    normal = list(datamodule.training_images(lesion_free=True))
    assert normal and all(i.mask is not None and not i.mask.any() for i in normal), "no mask file, known empty"
    lesions = list(datamodule.training_images(lesion_free=False))
    assert lesions and all(i.mask.any() for i in lesions)
    batch = BilateralBatch.collate([datamodule._dataset("train")[i] for i in range(len(datamodule.pairs["train"]))])
    assert (batch.target_abnormal == 0).any() and batch.has_mask.all(), "a lesion-free target's mask is known"


def test_toy_masks_are_known_for_every_image():
    datamodule = UnilateralDataModule(preset="vagan", num_images=40, batch_size=40)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    check_batch(batch)
    assert batch.has_mask.all(), "class-0 masks are known to be empty"
    normal = batch.label == 0
    assert normal.any() and not batch.target_mask[normal].any()
    assert torch.equal(batch.target_abnormal, batch.label) and torch.equal(batch.ref_abnormal, batch.label)


@pytest.mark.parametrize("preset", ["vagan", "cxgan"])
def test_toy_validation_never_uses_test_images(preset):
    datamodule = UnilateralDataModule(preset=preset, num_images=100)
    datamodule.setup("fit")
    splits = {name: set(datamodule.splits[name]) for name in ("train", "val", "test")}
    assert splits["val"] and splits["test"]
    assert not splits["val"] & splits["test"] and not splits["val"] & splits["train"]
    assert not splits["train"] & splits["test"] and set(datamodule.splits["predict"]) == splits["test"]


def test_toy_training_images():
    datamodule = UnilateralDataModule(preset="cxgan", num_images=40)
    datamodule.setup("fit")
    images = list(datamodule.training_images())
    assert len(images) == len(datamodule.splits["train"]) == 26  # 32 of the paper's 80/20 split, 6 carved for val
    normal = list(datamodule.training_images(lesion_free=True))
    assert len(normal) == 13 and all(i.abnormal == 0 and not i.mask.any() for i in normal)
    assert all(i.mask.any() and i.malignant == -1 for i in datamodule.training_images(lesion_free=False))
    assert (
        images[0].image.shape == (128, 128) and 0 <= float(images[0].image.min()) <= float(images[0].image.max()) <= 1
    )


def test_data_cache_build_fills_the_cache_so_training_decodes_nothing(synth_folder, tmp_path, monkeypatch, capsys):
    import yaml

    from bilatcf.cli import main
    from bilatcf.data import datamodule as datamodule_module
    from bilatcf.data import validate

    monkeypatch.setenv("BILATCF_CACHE", str(tmp_path / "cache"))
    folder = _copy(synth_folder, tmp_path)
    config = tmp_path / "data.yaml"
    init_args = {"source": "manifest", "manifest": "placeholder.csv", "task": "abnormality", "batch_size": 2}
    config.write_text(
        yaml.safe_dump({"class_path": "bilatcf.data.datamodule.BilateralDataModule", "init_args": init_args})
    )
    args = ["data", "cache", "--build", str(config), "--manifest", str(folder / "manifest.csv")]
    assert main([*args, "--image_size", "64", "32"]) == 0
    assert "80 image(s) at (64, 32)" in capsys.readouterr().out
    decoded = []
    monkeypatch.setattr(validate, "read_image", lambda path: decoded.append(path))
    monkeypatch.setattr(datamodule_module.FileSource, "_read", lambda self, record: decoded.append(record.path))
    assert main([*args, "--image_size", "64", "32"]) == 0, "a second build only looks entries up"
    datamodule = _manifest_module(folder)
    datamodule.setup("fit")
    for split in ("train", "val"):
        for batch in getattr(datamodule, f"{split}_dataloader")():
            check_batch(batch)
    assert decoded == [], "no image is decoded after the build (masks are small files, read as needed)"


def test_data_cache_build_explains_a_bad_config(tmp_path, capsys):
    from bilatcf.cli import main

    config = tmp_path / "model.yaml"
    config.write_text("model:\n  class_path: bilatcf.models.sbf.SBF\n")
    assert main(["data", "cache", "--build", str(config)]) == 2
    assert "class_path` and `init_args` at the top level" in capsys.readouterr().err
    assert main(["data", "cache", "--image_size", "64", "32"]) == 2
