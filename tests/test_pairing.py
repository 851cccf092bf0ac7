"""Pairing: partners, both directions, label policies, missing partners, duplicates and four-view extras."""

import random

import pytest

from bilatcf.data.pairing import PairingReport, make_pairs
from bilatcf.data.types import ImageRecord
from bilatcf.errors import ConfigError, DataError


def _image(
    patient: str,
    side: str,
    abnormal: int,
    malignant: int = -1,
    view: str = "CC",
    study: str = "s",
    image_id: str | None = None,
) -> ImageRecord:
    return ImageRecord(
        dataset="toy",
        patient_id=patient,
        study_id=study,
        image_id=image_id or f"{patient}_{study}_{side}_{view}",
        path="x.png",
        laterality=side,
        view=view,
        abnormal=abnormal,
        malignant=malignant,
    )


def _labels(pairs) -> list[tuple[str, int, int, int]]:
    return [(p.target.image_id, p.label, p.ref_label, p.asym_label) for p in pairs]


def test_malignancy_targets_are_lesions_with_known_malignancy_in_both_directions():
    records = [
        _image("p1", "L", 1, 1),
        _image("p1", "R", 0, 0),  # one lesion side: one pair
        _image("p2", "L", 1, 0),
        _image("p2", "R", 1, 1),  # lesions on both sides: both directions
        _image("p3", "L", 1, -1),
        _image("p3", "R", 1, 1),  # L lesion of unknown malignancy is not a target
        _image("p4", "L", 1, 0),
        _image("p4", "R", -1, -1),  # reference of unknown status
    ]
    pairs, report = make_pairs(records, task="malignancy")
    assert _labels(pairs) == [
        ("p1_s_L_CC", 1, 0, 1),
        ("p2_s_L_CC", 0, 1, 1),
        ("p2_s_R_CC", 1, 0, 1),
        ("p3_s_R_CC", 1, -1, 1),  # the reference has a lesion of unknown malignancy
        ("p4_s_L_CC", 0, -1, 1),
    ]
    assert all(p.reference.laterality != p.target.laterality and not p.reference_is_self for p in pairs)
    assert (report.num_images, report.num_pairs, report.dropped) == (8, 5, {})


def test_abnormality_labels_and_three_valued_asymmetry():
    records = [
        _image("p1", "L", 1),
        _image("p1", "R", 0),
        _image("p2", "L", 0),
        _image("p2", "R", 0),
        _image("p3", "L", 0),
        _image("p3", "R", -1),
    ]
    pairs, _ = make_pairs(records, task="abnormality")
    assert _labels(pairs) == [
        ("p1_s_L_CC", 1, 0, 1),
        ("p1_s_R_CC", 0, 1, 1),
        ("p2_s_L_CC", 0, 0, 0),
        ("p2_s_R_CC", 0, 0, 0),
        ("p3_s_L_CC", 0, -1, -1),
    ]


def test_partners_share_dataset_patient_study_and_view():
    records = [
        _image("p1", "L", 1, 1, view="CC"),
        _image("p1", "R", 0, view="MLO"),
        _image("p1", "R", 0, study="other"),
        _image("p1", "L", 1, 1, view="MLO"),
        _image("p1", "R", 0),
    ]
    pairs, report = make_pairs(records)
    assert [(p.target.image_id, p.reference.image_id) for p in pairs] == [
        ("p1_s_L_CC", "p1_s_R_CC"),
        ("p1_s_L_MLO", "p1_s_R_MLO"),
    ]
    assert report.dropped == {}


def test_drop_reports_targets_without_partner():
    records = [_image("p1", "L", 1, 1), _image("p1", "R", 0), _image("p2", "L", 1, 0), _image("p3", "R", 1, 1)]
    pairs, report = make_pairs(records, missing_partner="drop")
    assert [p.target.image_id for p in pairs] == ["p1_s_L_CC"]
    assert report == PairingReport(num_images=4, num_pairs=1, dropped={"no contralateral image": 2})
    assert report.summary() == "4 images -> 1 pairs; dropped 2 (no contralateral image: 2)"


def test_drop_on_a_unilateral_dataset_explains_mirror_self():
    with pytest.raises(DataError, match="none of the 2 images.*mirror-self"):
        make_pairs([_image("p1", "L", 1, 1), _image("p2", "R", 1, 0)])


def test_mirror_self_uses_the_target_as_its_own_reference():
    records = [_image("p1", "L", 1, 1), _image("p2", "R", 0), _image("p3", "L", 1, 0), _image("p3", "R", 0)]
    pairs, report = make_pairs(records, task="abnormality", missing_partner="mirror-self")
    by_target = {p.target.image_id: p for p in pairs}
    alone = by_target["p1_s_L_CC"]
    assert alone.reference is alone.target and alone.reference_is_self
    assert (alone.label, alone.ref_label, alone.asym_label) == (1, -1, 1)
    assert (by_target["p2_s_R_CC"].label, by_target["p2_s_R_CC"].asym_label) == (0, -1)  # other side unknown
    assert not by_target["p3_s_L_CC"].reference_is_self and by_target["p3_s_L_CC"].reference.laterality == "R"
    assert report.num_pairs == 4 and report.dropped == {}


def test_duplicate_views_keep_the_first_image_id():
    records = [
        _image("p1", "L", 1, 1, image_id="b"),
        _image("p1", "L", 1, 0, image_id="a"),
        _image("p1", "R", 0, image_id="c"),
        _image("p1", "R", 0, image_id="d"),
    ]
    pairs, report = make_pairs(records)
    assert [(p.target.image_id, p.reference.image_id, p.label) for p in pairs] == [("a", "c", 0)]
    assert report.dropped == {"duplicate view": 2}


def test_unknown_laterality_is_reported():
    _, report = make_pairs([_image("p1", "L", 1, 1), _image("p1", "R", 0), _image("p1", "?", 1, 1)])
    assert report.dropped == {"unknown laterality": 1}


@pytest.mark.parametrize(
    "kwargs, valid",
    [({"task": "density"}, "malignancy, abnormality"), ({"missing_partner": "zero"}, "drop, mirror-self")],
)
def test_bad_options_list_the_valid_values(kwargs, valid):
    with pytest.raises(ConfigError, match=valid):
        make_pairs([_image("p1", "L", 1, 1)], **kwargs)


def test_four_view_attaches_the_ipsilateral_other_views():
    full = [
        _image("p1", side, 1 if side == "L" else 0, 1 if side == "L" else 0, view=view)
        for side in "LR"
        for view in ("CC", "MLO")
    ]
    no_right_mlo = [_image("p2", "L", 1, 0), _image("p2", "R", 0), _image("p2", "L", 1, 0, view="MLO")]
    pairs, report = make_pairs(full + no_right_mlo, task="abnormality", four_view=True)
    by_target = {p.target.image_id: p for p in pairs}
    left_cc = by_target["p1_s_L_CC"]
    assert (left_cc.target_other.image_id, left_cc.reference_other.image_id) == ("p1_s_L_MLO", "p1_s_R_MLO")
    right_mlo = by_target["p1_s_R_MLO"]
    assert (right_mlo.target_other.image_id, right_mlo.reference_other.image_id) == ("p1_s_R_CC", "p1_s_L_CC")
    incomplete = [p for p in pairs if p.target.patient_id == "p2"]
    assert len(incomplete) == 2 and all(p.target_other is None and p.reference_other is None for p in incomplete)
    assert report.dropped == {"no four-view partner": 2, "no contralateral image": 1}
    assert report.summary() == (
        "7 images -> 6 pairs; dropped 1 (no contralateral image: 1); 2 pairs without a four-view partner"
    )


def test_four_view_mirror_self_reuses_the_target_other_view():
    records = [_image("p1", "L", 1, 1), _image("p1", "L", 0, 0, view="MLO")]
    pairs, _ = make_pairs(records, missing_partner="mirror-self", four_view=True)
    assert pairs[0].target_other is pairs[0].reference_other and pairs[0].target_other.view == "MLO"


def test_order_is_deterministic_and_sorted_by_key():
    records = [_image(f"p{i}", side, 1, i % 2, view=view) for i in range(5) for side in "LR" for view in ("CC", "MLO")]
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    pairs, _ = make_pairs(records)
    assert pairs == make_pairs(shuffled)[0]
    keys = [(p.target.pair_key, p.target.laterality) for p in pairs]
    assert keys == sorted(keys) and len(keys) == 20
