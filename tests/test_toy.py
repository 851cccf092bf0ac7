"""Unilateral toy presets: geometry of the effects, balance, ranges and splits."""

import numpy as np
import pytest

from bilatcf.data import toy as toy_module
from bilatcf.data.toy import carve_validation, make_toy
from bilatcf.errors import ConfigError


def test_vagan_preset_boxes_and_split():
    toy = make_toy("vagan", num_images=200, seed=1)
    assert toy.images.shape == (200, 112, 112) and toy.images.dtype == np.float32
    assert toy.images.min() == pytest.approx(-1) and toy.images.max() == pytest.approx(1)
    assert (toy.labels == 1).sum() == 100
    positives = np.flatnonzero(toy.labels)
    assert (toy.masks[toy.labels == 0] == 0).all()
    for i in positives:
        assert toy.masks[i, 46:66, 46:66].all(), "the central box is always there"
        assert toy.masks[i].sum() == 800, "two disjoint 20×20 boxes"
        ys, xs = np.nonzero(toy.masks[i])
        second_top = ys.max() - 19 if toy.subtypes[i] == 1 else ys.min()
        assert abs(second_top - (46 + (32 if toy.subtypes[i] == 1 else -32))) <= 5
        assert toy.images[i][toy.masks[i] == 1].mean() > toy.images[i][toy.masks[i] == 0].mean()
    counts = {s: (toy.splits == s).sum() for s in ("train", "val", "test")}
    assert counts == {"train": 128, "val": 32, "test": 40}
    assert (toy.labels[toy.splits == "test"] == 1).sum() == 20, "stratified"


def test_cxgan_preset_disc_positions():
    toy = make_toy("cxgan", num_images=100, seed=0)
    assert toy.images.shape == (100, 128, 128)
    for i in np.flatnonzero(toy.labels):
        ys, xs = np.nonzero(toy.masks[i])
        centre = 104 if toy.subtypes[i] == 1 else 24
        assert abs(ys.mean() - centre) <= 5.5 and abs(xs.mean() - centre) <= 5.5
        assert toy.masks[i].sum() == pytest.approx(np.pi * 64, rel=0.1)


def test_toy_is_seeded_and_unknown_presets_are_refused():
    assert np.array_equal(make_toy("cxgan", 20, seed=2).images, make_toy("cxgan", 20, seed=2).images)
    with pytest.raises(ConfigError, match="vagan, cxgan"):
        make_toy("brats")


def test_cxgan_preset_validates_on_training_images_and_keeps_the_papers_test_split(monkeypatch):
    toy = make_toy("cxgan", num_images=100, seed=0)
    counts = {s: (toy.splits == s).sum() for s in ("train", "val", "test")}
    assert counts == {"train": 64, "val": 16, "test": 20}
    for split, per_class in (("val", 8), ("test", 10)):
        assert (toy.labels[toy.splits == split] == 1).sum() == per_class, f"{split} is stratified"
    # Without the carving, the generator gives the paper's 80/20 split: the same test images, val taken from train.
    monkeypatch.setattr(toy_module, "carve_validation", lambda rng, labels, splits: splits)
    paper = make_toy("cxgan", num_images=100, seed=0)
    assert np.array_equal(paper.images, toy.images) and set(np.unique(paper.splits)) == {"train", "test"}
    assert np.array_equal(paper.splits == "test", toy.splits == "test")
    assert (paper.splits[toy.splits == "val"] == "train").all()


def test_carve_validation_moves_a_seeded_stratified_fifth_of_train_only():
    labels = np.array([0] * 10 + [1] * 10)
    splits = np.array((["train"] * 8 + ["test"] * 2) * 2)
    carved = carve_validation(np.random.default_rng(0), labels, splits)
    assert np.array_equal(carved == "test", splits == "test")
    assert ((carved == "val") <= (splits == "train")).all()
    assert [(labels[carved == "val"] == c).sum() for c in (0, 1)] == [2, 2]
    assert np.array_equal(carved, carve_validation(np.random.default_rng(0), labels, splits))
