"""Patient-wise splits: no leakage, ratios, stratification, existing splits and k-fold."""

from collections import Counter
from dataclasses import replace

import pytest

from bilatcf.data.splits import assign_splits
from bilatcf.data.types import ImageRecord
from bilatcf.errors import ConfigError, DataError


def _cohort(
    num_patients: int = 50, num_malignant: int = 20, split: str = "", dataset: str = "toy"
) -> list[ImageRecord]:
    """Four images per patient; the first ``num_malignant`` patients have a malignant lesion on the left."""
    return [
        ImageRecord(
            dataset=dataset,
            patient_id=f"p{i:03d}",
            study_id="s",
            image_id=f"{i}_{side}_{view}",
            path="x.png",
            laterality=side,
            view=view,
            abnormal=int(i < num_malignant and side == "L"),
            malignant=int(i < num_malignant and side == "L"),
            split=split,
        )
        for i in range(num_patients)
        for side in "LR"
        for view in ("CC", "MLO")
    ]


def _split_of_patient(records: list[ImageRecord]) -> dict[str, str]:
    """Patient -> split, asserting that every patient sits in exactly one split."""
    splits: dict[str, set[str]] = {}
    for record in records:
        splits.setdefault(record.patient_id, set()).add(record.split)
    assert all(len(s) == 1 for s in splits.values()), "a patient appears in two splits"
    return {patient: s.pop() for patient, s in splits.items()}


def test_ratio_split_is_patient_wise_sized_and_stratified():
    records = _cohort()
    split = _split_of_patient(assign_splits(records, ratios=(0.8, 0.1, 0.1), seed=3))
    assert Counter(split.values()) == {"train": 40, "val": 5, "test": 5}
    malignant = Counter(s for patient, s in split.items() if int(patient[1:]) < 20)
    assert malignant == {"train": 16, "val": 2, "test": 2}


def test_ratios_are_normalised_and_splits_can_be_empty():
    split = _split_of_patient(assign_splits(_cohort(10, 0), ratios=(3, 0, 1)))
    assert Counter(split.values()) == {"train": 8, "test": 2}  # shares of 7.5 and 2.5 patients


def test_seed_makes_splits_reproducible_and_different_seeds_differ():
    records = _cohort()
    assert assign_splits(records, seed=1) == assign_splits(records, seed=1)
    assert _split_of_patient(assign_splits(records, seed=1)) != _split_of_patient(assign_splits(records, seed=2))


def test_returns_new_records_in_the_input_order():
    records = _cohort(10)
    result = assign_splits(records)
    assert [r.image_id for r in result] == [r.image_id for r in records]
    assert all(r.split == "" for r in records) and all(r.split in ("train", "val", "test") for r in result)


def test_same_patient_id_in_two_datasets_is_two_patients():
    records = _cohort(20, 0, dataset="a") + _cohort(20, 0, dataset="b")
    result = assign_splits(records)
    per_dataset = Counter((r.dataset, r.split) for r in result if r.laterality == "L" and r.view == "CC")
    assert per_dataset == {
        ("a", "train"): 16,
        ("a", "val"): 2,
        ("a", "test"): 2,
        ("b", "train"): 16,
        ("b", "val"): 2,
        ("b", "test"): 2,
    }


@pytest.mark.parametrize("num_folds", [3, 5])
def test_every_fold_is_leak_free_and_test_folds_partition_the_patients(num_folds):
    records = _cohort(23, 7)
    tests, vals = [], []
    for fold in range(num_folds):
        split = _split_of_patient(assign_splits(records, fold=fold, num_folds=num_folds, seed=4))
        tests.append({p for p, s in split.items() if s == "test"})
        vals.append({p for p, s in split.items() if s == "val"})
        assert max(len(tests[-1]), len(vals[-1])) - min(len(tests[-1]), len(vals[-1])) <= 1
    assert sum(len(t) for t in tests) == 23 and set().union(*tests) == {f"p{i:03d}" for i in range(23)}
    assert all(vals[fold] == tests[(fold + 1) % num_folds] for fold in range(num_folds))
    malignant_per_fold = [sum(int(p[1:]) < 7 for p in t) for t in tests]
    assert max(malignant_per_fold) - min(malignant_per_fold) <= 1


def test_kfold_ignores_existing_splits():
    split = _split_of_patient(assign_splits(_cohort(10, split="train"), fold=0, num_folds=5))
    assert Counter(split.values()) == {"train": 6, "val": 2, "test": 2}


def test_existing_splits_are_kept_and_the_rest_is_dealt_out():
    records = _cohort(30, 10)
    records = [replace(r, split="test") if r.patient_id < "p005" else r for r in records]
    records[-1] = replace(records[-1], split="val")  # one image of p029 only
    split = _split_of_patient(assign_splits(records, ratios=(0.8, 0.1, 0.1)))
    assert all(split[f"p{i:03d}"] == "test" for i in range(5)) and split["p029"] == "val"
    assert Counter(split[f"p{i:03d}"] for i in range(5, 29)) == {"train": 19, "val": 3, "test": 2}
    resplit = _split_of_patient(assign_splits(records, respect_existing=False))
    assert Counter(resplit.values()) == {"train": 24, "val": 3, "test": 3}


def test_val_is_carved_from_an_official_train_split_without_val():
    official = [replace(r, split="test" if r.patient_id >= "p040" else "train") for r in _cohort(50, 20)]
    split = _split_of_patient(assign_splits(official, ratios=(0.8, 0.1, 0.1)))
    assert all(split[f"p{i:03d}"] == "test" for i in range(40, 50))
    assert Counter(split[f"p{i:03d}"] for i in range(40)) == {"train": 36, "val": 4}  # 0.1 / 0.9 of 40 patients


def test_a_patient_in_two_existing_splits_is_an_error():
    records = _cohort(3)
    records[0] = replace(records[0], split="train")
    records[1] = replace(records[1], split="test")
    with pytest.raises(DataError, match="patient 'p000' of dataset 'toy' has images in splits \\['test', 'train'\\]"):
        assign_splits(records)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fold": 5},
        {"fold": -1},
        {"fold": 0, "num_folds": 2},
        {"fold": 1.0},
        {"ratios": (0.5, 0.5)},
        {"ratios": (1, -0.1, 0.1)},
        {"ratios": (0, 0, 0)},
    ],
)
def test_bad_options_raise_config_errors(kwargs):
    with pytest.raises(ConfigError):
        assign_splits(_cohort(10), **kwargs)


def test_kfold_needs_as_many_patients_as_folds():
    with pytest.raises(DataError, match="at least 5 patients"):
        assign_splits(_cohort(4), fold=0, num_folds=5)
