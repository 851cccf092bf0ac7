"""BilateralDataModule and UnilateralDataModule: the contract of DESIGN §2 on real batches, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bilatcf.data.datamodule import BilateralDataModule, UnilateralDataModule
from bilatcf.data.types import BilateralBatch, check_batch
from bilatcf.errors import DataError


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
    with pytest.raises(DataError, match="--data.manifest"):
        BilateralDataModule(source="manifest")


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
