"""Patient-wise train/val/test splits and k-fold cross-validation (DESIGN §2).

All images of a patient go to one split: the two breasts of a woman share anatomy (the very prior the bilateral methods
exploit), so an image-level split would leak the reference of a test pair into training. Splits are seeded and
stratified by dataset and by the patient's worst finding (malignant > abnormal > normal), so small test sets still
contain cancers.

How patients are dealt out: patients are sorted by stratum and shuffled within it, then dealt in that order by a
largest-deficit sequence (each patient goes to the split furthest below its share so far). Every stratum is thus
spread over the splits in proportion, and the split sizes match the ratios to within one patient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from bilatcf.data.manifest import SPLITS
from bilatcf.data.types import ImageRecord
from bilatcf.errors import ConfigError, DataError

Patient = tuple[str, str]  # (dataset, patient_id)


def assign_splits(
    records: Sequence[ImageRecord],
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    fold: int | None = None,
    num_folds: int = 5,
    respect_existing: bool = True,
) -> list[ImageRecord]:
    """Give every record a split, patient-wise.

    Args:
        records: manifest records.
        ratios: train/val/test shares of the patients (normalised to sum 1). Ignored in k-fold mode.
        seed: the shuffle seed; the same seed and records give the same splits.
        fold: k-fold mode when set: the patients of fold ``fold`` are "test", those of fold ``(fold + 1) % num_folds``
            are "val" and the rest "train"; existing split values are ignored, since cross-validation covers all
            patients.
        num_folds: number of folds (at least 3, so that train is not empty).
        respect_existing: ratio mode: patients whose records carry a split keep it (e.g. VinDr's official split) and
            only the others are dealt out. If the kept splits have no "val", val patients are carved from the kept
            "train" patients at the share ``val / (train + val)``.

    Returns:
        New records (``dataclasses.replace``) in the input order.

    Raises:
        ConfigError: bad ratios, fold or num_folds.
        DataError: a patient already carries two different splits, or k-fold has fewer patients than folds.
    """
    patients = _patients(records)
    rng = np.random.default_rng(seed)
    if fold is not None:
        split_of = _kfold_splits(patients, fold, num_folds, rng)
    else:
        split_of = _ratio_splits(patients, _check_ratios(ratios), respect_existing, rng)
    return [replace(record, split=split_of[(record.dataset, record.patient_id)]) for record in records]


def _patients(records: Sequence[ImageRecord]) -> dict[Patient, list[ImageRecord]]:
    patients: dict[Patient, list[ImageRecord]] = {}
    for record in records:
        patients.setdefault((record.dataset, record.patient_id), []).append(record)
    return patients


def _stratum(patient: Patient, records: list[ImageRecord]) -> tuple[str, int]:
    """Dataset and worst finding: 2 = any malignant image, 1 = any abnormal image, 0 = neither (or unknown)."""
    finding = 2 if any(r.malignant == 1 for r in records) else int(any(r.abnormal == 1 for r in records))
    return patient[0], finding


def _deal(
    patients: dict[Patient, list[ImageRecord]], shares: Sequence[float], rng: np.random.Generator
) -> dict[Patient, int]:
    """Stratified, seeded assignment of patients to ``len(shares)`` groups (see the module docstring)."""
    strata: dict[tuple[str, int], list[Patient]] = {}
    for patient in sorted(patients):
        strata.setdefault(_stratum(patient, patients[patient]), []).append(patient)
    order: list[Patient] = []
    for stratum in sorted(strata):
        members = strata[stratum]
        order += [members[i] for i in rng.permutation(len(members))]
    shares = np.asarray(shares, dtype=float) / sum(shares)
    counts = np.zeros(len(shares))
    groups = {}
    for position, patient in enumerate(order):
        group = int(np.argmax(shares * (position + 1) - counts))
        counts[group] += 1
        groups[patient] = group
    return groups


def _kfold_splits(
    patients: dict[Patient, list[ImageRecord]], fold: int, num_folds: int, rng: np.random.Generator
) -> dict[Patient, str]:
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 3:
        raise ConfigError(
            f"num_folds={num_folds!r}: k-fold needs an integer of at least 3 (test fold, val fold and "
            "at least one train fold)."
        )
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < num_folds:
        raise ConfigError(
            f"fold={fold!r} is out of range: use an integer in [0, {num_folds}) or leave fold unset for a ratio split."
        )
    if len(patients) < num_folds:
        raise DataError(
            f"{num_folds}-fold cross-validation needs at least {num_folds} patients, the records have "
            f"{len(patients)}; use fewer folds or a ratio split."
        )
    folds = _deal(patients, [1.0] * num_folds, rng)
    val_fold = (fold + 1) % num_folds
    return {p: "test" if f == fold else "val" if f == val_fold else "train" for p, f in folds.items()}


def _ratio_splits(
    patients: dict[Patient, list[ImageRecord]],
    ratios: tuple[float, float, float],
    respect_existing: bool,
    rng: np.random.Generator,
) -> dict[Patient, str]:
    kept = _existing_splits(patients) if respect_existing else {}
    free = {p: records for p, records in patients.items() if p not in kept}
    split_of = {p: SPLITS[group] for p, group in _deal(free, ratios, rng).items()}
    if kept and "val" not in kept.values() and ratios[1] > 0:
        train = {p: patients[p] for p, split in kept.items() if split == "train"}
        kept |= {p: ("train", "val")[group] for p, group in _deal(train, ratios[:2], rng).items()}
    return kept | split_of


def _existing_splits(patients: dict[Patient, list[ImageRecord]]) -> dict[Patient, str]:
    existing = {}
    for patient, records in patients.items():
        splits = sorted({r.split for r in records if r.split})
        if len(splits) > 1:
            raise DataError(
                f"patient {patient[1]!r} of dataset {patient[0]!r} has images in splits {splits}: a "
                "patient must stay in one split (the other breast would leak into training). Fix the "
                "manifest's split column or pass respect_existing=False to re-split patient-wise."
            )
        if splits:
            existing[patient] = splits[0]
    return existing


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
        raise ConfigError(
            f"ratios={tuple(ratios)!r}: give three non-negative train/val/test shares with a positive "
            "sum, e.g. (0.8, 0.1, 0.1)."
        )
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total
