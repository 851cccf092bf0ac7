"""Bilateral pairs: each target image with its contralateral reference, under a task's label policy (DESIGN §2).

Images of one ``(dataset, patient_id, study_id, view)`` key are partners when their lateralities differ. Every image
that carries the task's label is a target, so when both sides carry it both directions are pairs (CGN §IV-B counts
"A with B" and "B with A" as two pairs). Images that cannot be used are never dropped silently: the
:class:`PairingReport` counts them by reason, and BilateralDataModule prints its one-line summary at setup.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bilatcf.data.types import ImageRecord, Pair
from bilatcf.errors import ConfigError, DataError

TASKS = ("malignancy", "abnormality")
MISSING_PARTNER_POLICIES = ("drop", "mirror-self")
NO_PARTNER = "no contralateral image"
DUPLICATE_VIEW = "duplicate view"
UNKNOWN_LATERALITY = "unknown laterality"
NO_FOUR_VIEW = "no four-view partner"
_OTHER_SIDE = {"L": "R", "R": "L"}
_OTHER_VIEW = {"CC": "MLO", "MLO": "CC"}

Slot = tuple[tuple[str, str, str, str], str]  # (pair key, laterality)


@dataclass
class PairingReport:
    """What pairing did with the images: how many pairs it made and, per reason, how many images it could not use.

    ``dropped[NO_FOUR_VIEW]`` (four-view mode) counts pairs that were kept with ``target_other`` and
    ``reference_other`` set to None, not images that were removed.
    """

    num_images: int
    num_pairs: int
    dropped: dict[str, int]

    def summary(self) -> str:
        """One line for logs, e.g. ``1600 images -> 812 pairs; dropped 40 (no contralateral image: 36, ...)``."""
        removed = {reason: count for reason, count in self.dropped.items() if reason != NO_FOUR_VIEW and count}
        text = f"{self.num_images} images -> {self.num_pairs} pairs; dropped {sum(removed.values())}"
        if removed:
            text += " (" + ", ".join(f"{reason}: {count}" for reason, count in sorted(removed.items())) + ")"
        if self.dropped.get(NO_FOUR_VIEW):
            text += f"; {self.dropped[NO_FOUR_VIEW]} pairs without a four-view partner"
        return text


def make_pairs(
    records: Sequence[ImageRecord],
    task: str = "malignancy",
    missing_partner: str = "drop",
    four_view: bool = False,
    every_image: bool = False,
) -> tuple[list[Pair], PairingReport]:
    """Pair every target image with its contralateral image.

    Args:
        records: manifest records (all splits; a pair belongs to its target's split).
        task: ``malignancy`` — targets are images with a lesion (abnormal == 1) and a known malignant label;
            label = target malignant, ref_label = reference malignant if the reference has a lesion, else 0.
            ``abnormality`` — targets are images with a known abnormal label; label / ref_label = abnormal.
            For both, asym_label = target abnormal OR reference abnormal (DisAsymNet §2); -1 where unknown.
        missing_partner: ``drop`` (the seeds' protocol) or ``mirror-self`` (the target is its own reference,
            ``reference_is_self=True``, ref_label = -1), for unilateral datasets such as CBIS-DDSM.
        four_view: also attach the ipsilateral other view (CC <-> MLO) of the target and of the reference.
        every_image: every image is a target, labelled or not (prediction on new exams); the task's label policy
            still fills the labels, which are -1 where unknown.

    Returns:
        The pairs sorted by (pair key, target laterality), and the report.

    Raises:
        ConfigError: unknown task or policy.
        DataError: ``drop`` left no pair because no target has a contralateral image.
    """
    _check_choice("task", task, TASKS)
    _check_choice("missing_partner", missing_partner, MISSING_PARTNER_POLICIES)
    dropped: Counter[str] = Counter()
    slots = _one_image_per_slot(records, dropped)
    pairs = []
    for (key, side), target in sorted(slots.items()):
        if not every_image and not _is_target(target, task):
            continue
        reference = slots.get((key, _OTHER_SIDE[side]))
        if reference is None and missing_partner == "drop":
            dropped[NO_PARTNER] += 1
            continue
        pair = _make_pair(target, reference, task)
        if four_view:
            pair = _attach_other_views(pair, slots, dropped)
        pairs.append(pair)
    if not pairs and dropped[NO_PARTNER]:
        raise DataError(
            f"none of the {dropped[NO_PARTNER]} images with a {task} label has a contralateral image (same dataset, "
            "patient_id, study_id and view, other laterality), so missing_partner='drop' leaves no pair. The dataset "
            "may be unilateral (e.g. CBIS-DDSM): use missing_partner='mirror-self'; otherwise check that patient_id, "
            "study_id and view are written identically for left and right images."
        )
    return pairs, PairingReport(num_images=len(records), num_pairs=len(pairs), dropped=dict(dropped))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; valid values: {', '.join(choices)}.")


def _one_image_per_slot(records: Sequence[ImageRecord], dropped: Counter[str]) -> dict[Slot, ImageRecord]:
    """Keep the first image (by image_id) of each side of each key, so pairs do not depend on the manifest order."""
    slots: dict[Slot, ImageRecord] = {}
    for record in sorted(records, key=lambda r: (r.image_id, r.dataset)):
        slot = (record.pair_key, record.laterality)
        if record.laterality not in _OTHER_SIDE:
            dropped[UNKNOWN_LATERALITY] += 1
        elif slot in slots:
            dropped[DUPLICATE_VIEW] += 1
        else:
            slots[slot] = record
    return slots


def _is_target(record: ImageRecord, task: str) -> bool:
    if task == "malignancy":
        return record.abnormal == 1 and record.malignant in (0, 1)
    return record.abnormal in (0, 1)


def _either(first: int, second: int) -> int:
    """Three-valued OR (1, 0, -1 = unknown): one known positive side decides, two known negatives give 0."""
    if first == 1 or second == 1:
        return 1
    return 0 if first == 0 and second == 0 else -1


def _make_pair(target: ImageRecord, reference: ImageRecord | None, task: str) -> Pair:
    """Apply the task's label policy; ``reference=None`` makes a mirror-self pair whose reference labels are unknown."""
    is_self = reference is None
    reference = target if is_self else reference
    reference_abnormal = -1 if is_self else reference.abnormal
    if task == "malignancy":
        label = target.malignant
        ref_label = reference.malignant if reference_abnormal == 1 else (0 if reference_abnormal == 0 else -1)
    else:
        label, ref_label = target.abnormal, reference_abnormal
    return Pair(
        target=target,
        reference=reference,
        label=label,
        ref_label=ref_label,
        asym_label=_either(target.abnormal, reference_abnormal),
        reference_is_self=is_self,
    )


def _attach_other_views(pair: Pair, slots: dict[Slot, ImageRecord], dropped: Counter[str]) -> Pair:
    """Four-view mode: attach both other views or neither, so a batch never mixes three- and four-view samples.

    For a mirror-self pair the reference's other view is the target's other view, as its reference is the target.
    """
    dataset, patient_id, study_id, view = pair.target.pair_key
    if view in _OTHER_VIEW:
        key = (dataset, patient_id, study_id, _OTHER_VIEW[view])
        target_other = slots.get((key, pair.target.laterality))
        reference_other = target_other if pair.reference_is_self else slots.get((key, pair.reference.laterality))
        if target_other is not None and reference_other is not None:
            return replace(pair, target_other=target_other, reference_other=reference_other)
    dropped[NO_FOUR_VIEW] += 1
    return pair
