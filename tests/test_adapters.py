"""Dataset adapters and DICOM header reading, on tiny copies of each dataset in its real layout.

Each test builds its dataset (``tests/adapter_fixtures.py``) in ``tmp_path``, indexes it, and checks the records
field by field and the problems reported for every bad row or file the fixture contains.
"""

from __future__ import annotations

import csv
import hashlib
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from bilatcf.cli import main
from bilatcf.data.adapters import ADAPTERS, ALIASES, IndexOptions, get_adapter, index_dataset
from bilatcf.data.dicom_tags import NotDicomError, read_header, side_from_text, unusable_reason, view_from_text
from bilatcf.data.manifest import MANIFEST_COLUMNS, OPTIONAL_COLUMNS, check_manifest, read_manifest, write_manifest
from bilatcf.data.pairing import make_pairs
from bilatcf.errors import ConfigError, DataError
from tests import adapter_fixtures as fx


def _by_id(result):
    return {record.image_id: record for record in result.records}


def _reasons(result, skipped: bool | None = None) -> list[str]:
    """Every problem as ``<file name or 'row N'>: <reason>``, to assert on without the tmp_path prefix."""
    out = []
    for problem in result.problems:
        if skipped is not None and problem.kept == skipped:
            continue
        where = Path(problem.where).name
        out.append(f"{where}: {problem.reason}")
    return out


def _has(reasons: list[str], *fragments: str) -> bool:
    return any(all(fragment in reason for fragment in fragments) for reason in reasons)


# ------------------------------------------------------------------------------------------------ DICOM header reading
@pytest.mark.parametrize(
    ("tags", "name", "expected", "provenance"),
    [
        ({"image_laterality": "R", "view_position": "MLO"}, "1.dcm", ("R", "MLO"), ()),
        ({"laterality": "L", "view_position": "CC"}, "1.dcm", ("L", "CC"), (("laterality", "Laterality"),)),
        (
            {"image_laterality": "L", "view_code": ("399368009", "medio-lateral oblique")},
            "1.dcm",
            ("L", "MLO"),
            (("view", "ViewCodeSequence"),),
        ),
        (
            {"image_laterality": "R", "view_code": ("", "cranio-caudal exaggerated laterally")},
            "1.dcm",
            ("R", "XCCL"),
            (("view", "ViewCodeSequence"),),
        ),
        (
            {"series_description": "R MLO"},
            "1.dcm",
            ("R", "MLO"),
            (("laterality", "SeriesDescription"), ("view", "SeriesDescription")),
        ),
        (
            {"patient_id": "Mass-Test_P_00173_LEFT_CC"},
            "1-1.dcm",
            ("L", "CC"),
            (("laterality", "PatientID"), ("view", "PatientID")),
        ),
        (
            {},
            "20586908_6c613a14b80a8591_MG_R_CC_ANON.dcm",
            ("R", "CC"),
            (("laterality", "filename"), ("view", "filename")),
        ),
        ({"image_laterality": "L"}, "scan_LMLO.dcm", ("L", "MLO"), (("view", "filename"),)),
    ],
)
def test_laterality_and_view_come_from_the_first_source_that_has_them(tmp_path, tags, name, expected, provenance):
    header = read_header(fx.write_dicom(tmp_path / name, **tags))
    assert (header.laterality, header.view) == expected
    assert header.provenance == provenance
    assert header.conflicts == () and unusable_reason(header) == ""
    assert (header.rows, header.columns) == (fx.ROWS, fx.COLUMNS)


@pytest.mark.parametrize(
    ("text", "side", "view"),
    [
        ("Mass-Training_P_00001_LEFT_MLO", "L", "MLO"),
        ("22678622_6c613a14b80a8591_MG_R_CC_ANON.dcm", "R", "CC"),
        ("RCC", "R", "CC"),
        ("L XCCL", "L", "XCCL"),
        ("right", "R", ""),
        ("L_R CC MLO", "", ""),  # both sides, two views: ambiguous, so nothing
        ("1-1.dcm", "", ""),
        ("clinic at 10 am", "", ""),  # "AT" is not read from free text
    ],
)
def test_text_fallbacks_read_whole_tokens_only(text, side, view):
    assert (side_from_text(text), view_from_text(text)) == (side, view)


def test_contradictory_sources_are_reported_not_resolved(tmp_path):
    tags = read_header(fx.write_dicom(tmp_path / "a.dcm", image_laterality="L", laterality="R", view_position="CC"))
    assert tags.laterality == "" and tags.conflicts == (
        "contradictory laterality: ImageLaterality says L, Laterality says R",
    )
    name = read_header(fx.write_dicom(tmp_path / "b_MLO.dcm", image_laterality="L", view_position="CC"))
    assert "contradictory view: ViewPosition says CC, filename says MLO" in unusable_reason(name)


def test_headers_are_read_without_pixels(tmp_path, monkeypatch):
    import pydicom

    calls = []
    real = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: calls.append(k) or real(*a, **k))
    read_header(fx.write_dicom(tmp_path / "a.dcm", image_laterality="L", view_position="CC"))
    assert calls == [{"stop_before_pixels": True}]


def test_files_that_are_not_dicom_or_are_damaged(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(NotDicomError, match="not a DICOM file"):
        read_header(tmp_path / "notes.txt")
    good = fx.write_dicom(tmp_path / "a.dcm", image_laterality="L", view_position="CC").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(good[:300])  # cut before laterality and view: read, but not usable
    assert unusable_reason(read_header(tmp_path / "cut.dcm")).startswith("no laterality")
    meta_end = 132 + 12 + int.from_bytes(good[140:144], "little")  # preamble, DICM, group length, file meta
    sequence = b"\x54\x00\x20\x02SQ\x00\x00\xff\xff\xff\xff"  # ViewCodeSequence, undefined length
    (tmp_path / "garbage.dcm").write_bytes(good[:meta_end] + sequence + b"\x12\x34\x56\x78" + bytes(20))
    with pytest.raises(DataError, match="garbage.dcm: damaged DICOM header"):
        read_header(tmp_path / "garbage.dcm")


# ------------------------------------------------------------------------------------------ manifest provenance column
def test_provenance_round_trips_and_old_manifests_without_it_stay_readable(tmp_path):
    result = index_dataset("folder", IndexOptions(root=fx.folder(tmp_path / "raw")))
    write_manifest(result.records, tmp_path / "m.csv")
    assert read_manifest(tmp_path / "m.csv") == result.records
    with (tmp_path / "m.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    old = [column for column in MANIFEST_COLUMNS if column not in OPTIONAL_COLUMNS]
    with (tmp_path / "old.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=old, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    assert [r.provenance for r in read_manifest(tmp_path / "old.csv")] == [""] * len(rows)
    rows[0]["provenance"] = "laterality"
    with (tmp_path / "bad.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    assert any(
        "column 'provenance': 'laterality' is not column=source" in p
        for p in check_manifest(tmp_path / "bad.csv").problems
    )


# ---------------------------------------------------------------------------------------------------------- INbreast
def test_inbreast(tmp_path):
    masks = tmp_path / "masks"
    result = index_dataset("inbreast", IndexOptions(root=fx.inbreast(tmp_path / "raw"), masks_dir=masks))
    records = _by_id(result)
    assert sorted(records) == ["22678622", "22678646", "22678694", "22678720", "30011674", "30011700", "50994300"]
    normal, lesion, mastectomy = records["22678622"], records["22678694"], records["30011674"]
    assert (normal.patient_id, normal.study_id, normal.laterality, normal.view) == (
        fx.INBREAST_PATIENT,
        "201001",
        "R",
        "CC",
    )
    assert (normal.abnormal, normal.malignant, normal.birads, normal.density) == (0, 0, "1", "D")
    assert (lesion.abnormal, lesion.malignant, lesion.birads) == (1, 1, "4c")
    assert (records["22678720"].abnormal, records["22678720"].malignant) == (1, 1)  # 4a counts as malignant
    assert (mastectomy.abnormal, mastectomy.malignant, mastectomy.density) == (1, 0, "")  # BI-RADS 3, blank ACR
    assert records["30011700"].density == "B" and records["50994300"].view == "FB"
    assert all(r.dataset == "inbreast" and r.split == "" and r.provenance == "" for r in result.records)
    # The polygon covers columns 2-8 and rows 3-9; the calcification is a radius-3 disk at (10, 12), cut by the edge.
    assert lesion.boxes == ((2.0, 3.0, 9.0, 10.0), (7.0, 9.0, 12.0, 16.0))
    mask = cv2.imread(lesion.mask_path, cv2.IMREAD_UNCHANGED)
    assert Path(lesion.mask_path).parent == masks and mask.shape == (fx.ROWS, fx.COLUMNS)
    assert set(np.unique(mask)) == {0, 255} and mask[3:10, 2:9].all() and not mask[:3].any()
    assert [r.image_id for r in result.records if r.mask_path] == ["22678694"]
    reasons = _reasons(result)
    assert _has(reasons, "row 9", "contradictory laterality: the CSV says 'L'", "says 'R'")
    assert _has(reasons, "row 10", "File Name '40000002': no AllDICOMs/40000002_*.dcm")
    assert _has(reasons, "40000003_", "not listed in INbreast.csv")
    assert _has(reasons, "40000004.dcm", "no patient id")
    assert _has(reasons, "30011700.xml", "not a readable OsiriX plist", "kept without boxes")
    assert _has(reasons, "22678694.xml", "ROI 'Cluster' has no readable Point_px list", "ROI ignored")
    assert _has(reasons, "1 of 2 patients have images of one breast only", fx.INBREAST_MASTECTOMY)
    pairs, report = make_pairs(result.records, task="malignancy")
    assert [(p.target.image_id, p.reference.image_id, p.label) for p in pairs] == [
        ("22678694", "22678622", 1),
        ("22678720", "22678646", 1),
    ]
    assert report.dropped == {"no contralateral image": 2}


def test_inbreast_without_masks_dir_gives_boxes_and_writes_nothing(tmp_path):
    result = index_dataset("inbreast", IndexOptions(root=fx.inbreast(tmp_path / "raw")))
    lesion = _by_id(result)["22678694"]
    assert lesion.boxes == ((2.0, 3.0, 9.0, 10.0), (7.0, 9.0, 12.0, 16.0)) and lesion.mask_path == ""


# --------------------------------------------------------------------------------------------------------- CBIS-DDSM
@pytest.mark.parametrize("layout", ["classic", "descriptive"])
def test_cbis_ddsm(tmp_path, layout):
    result = index_dataset("cbis", IndexOptions(root=fx.cbis(tmp_path / "raw", layout)))
    records = _by_id(result)
    assert sorted(records) == [
        "P_00001_LEFT_CC", "P_00001_LEFT_MLO", "P_00001_RIGHT_CC", "P_00004_LEFT_CC", "P_00007_LEFT_CC",
        "P_00007_LEFT_MLO", "P_00011_LEFT_CC",
    ]  # fmt: skip
    assert all(r.dataset == "cbis_ddsm" and r.abnormal == 1 and r.study_id == "" for r in result.records)
    left, right = records["P_00001_LEFT_CC"], records["P_00001_RIGHT_CC"]
    assert (left.laterality, left.view, left.malignant, left.birads, left.density, left.split) == (
        "L",
        "CC",
        1,
        "4",
        "C",
        "train",
    )
    assert (right.malignant, right.density) == (0, "C")  # BENIGN_WITHOUT_CALLBACK is benign; "breast density" column
    merged = records["P_00004_LEFT_CC"]  # two masses + the same mammogram in the calc table (MALIGNANT)
    assert (merged.malignant, merged.birads, merged.mask_path) == (1, "4", "")
    assert records["P_00007_LEFT_CC"].split == records["P_00007_LEFT_MLO"].split == "test"
    assert records["P_00011_LEFT_CC"].mask_path == ""  # its mask has another size than the image
    # The mask is the same-size file, whichever column names it; the crop (5 × 4) never passes as a mask.
    for record in (left, right, records["P_00001_LEFT_MLO"]):
        assert (
            read_header(record.mask_path).rows == fx.ROWS
            and "ROI mask" in read_header(record.mask_path).series_description
        )
        assert "full mammogram" in read_header(record.path).series_description
    if layout == "classic":
        assert left.provenance == "mask_path=cropped image file path"
        assert records["P_00001_LEFT_MLO"].provenance == "path=series folder"  # 1-1.dcm where the CSV says 000000
        assert right.provenance == ""
    else:
        assert left.provenance == "path=subject folder;mask_path=subject folder"
    assert "split=the patient's test rows" in records["P_00007_LEFT_CC"].provenance
    reasons = _reasons(result)
    assert _has(reasons, "mass_case_description_test_set.csv", "Mass-Test_P_00009_RIGHT_MLO not found")
    assert _has(reasons, "contradictory row", "P_00010 LEFT CC", "Mass-Test_P_00010_RIGHT_CC")
    assert _has(reasons, "no ROI mask of the full image's size 12×16 (found 8×8, 4×5)")
    assert _has(reasons, "1 patients have rows in both the official train and test tables (P_00007)")
    assert _has(reasons, "1 images are listed in both the mass and the calc tables")
    assert _has(reasons, "1 images have several abnormalities and get no mask_path")
    assert len(result.skipped) == 2


def test_cbis_without_the_official_split(tmp_path):
    options = IndexOptions(root=fx.cbis(tmp_path / "raw"), official_split=False)
    assert {r.split for r in index_dataset("cbis_ddsm", options).records} == {""}


# ------------------------------------------------------------------------------------------------------- VinDr-Mammo
def test_vindr(tmp_path):
    result = index_dataset("vindr", IndexOptions(root=fx.vindr(tmp_path / "raw")))
    records = _by_id(result)
    assert sorted(records) == ["img_lcc", "img_lmlo", "img_rcc", "img_rmlo", "img_t_lcc", "img_t_rcc"]
    lcc, rcc, test_lcc = records["img_lcc"], records["img_rcc"], records["img_t_lcc"]
    assert (lcc.patient_id, lcc.study_id) == (fx.VINDR_STUDY, fx.VINDR_STUDY)
    assert (lcc.abnormal, lcc.malignant, lcc.birads, lcc.density, lcc.split) == (1, 1, "4", "C", "train")
    assert (rcc.abnormal, rcc.malignant, rcc.boxes) == (0, 0, ())
    assert lcc.boxes == ((0.0, 2.5, 8.0, 10.0),)  # xmin -5.16 clipped to the image
    assert records["img_lmlo"].boxes == ((1.0, 1.0, 12.0, 16.0),)  # clipped to 12 × 16
    assert (test_lcc.abnormal, test_lcc.malignant, test_lcc.split, test_lcc.boxes) == (1, 0, "test", ())
    assert lcc.path.endswith(f"images/{fx.VINDR_STUDY}/img_lcc.dicom")
    reasons = _reasons(result)
    assert _has(reasons, "breast-level_annotations.csv row 8", "img_t_lmlo.dicom not found")
    assert _has(reasons, "finding_annotations.csv row 6", "only some coordinates", "box dropped")
    assert _has(reasons, "finding_annotations.csv row 7", "'img_unknown' is not in breast-level_annotations.csv")
    assert _has(reasons, "2 boxes reached outside their image and were clipped")


# -------------------------------------------------------------------------------------------------------------- RSNA
def test_rsna(tmp_path):
    result = index_dataset("rsna", IndexOptions(root=fx.rsna(tmp_path / "raw")))
    records = _by_id(result)
    assert len(records) == 10 and all(r.study_id == "" and r.split == "" for r in result.records)
    assert (records["462822612"].abnormal, records["462822612"].malignant) == (1, 1)  # cancer
    assert (records["220375232"].abnormal, records["220375232"].malignant) == (1, 0)  # biopsied, benign
    assert (records["1874946579"].abnormal, records["1874946579"].malignant) == (0, 0)  # screening negative
    assert (records["541722628"].abnormal, records["541722628"].birads) == (-1, "0")  # recalled, never biopsied
    assert records["1874946580"].view == "AT" and records["462822612"].density == "B"
    assert records["462822612"].path.endswith("train_images/10006/462822612.dcm")
    reasons = _reasons(result)
    assert _has(reasons, "train.csv row 12", "'462822612' listed twice")
    assert _has(reasons, "train.csv row 13", "unknown view 'XX'")
    assert _has(reasons, "train.csv row 14", "98.dcm not found")
    assert _has(reasons, "1 images repeat a breast and view")
    pairs, report = make_pairs(result.records, task="malignancy")
    assert report.dropped == {"duplicate view": 1}
    assert sorted((p.target.image_id, p.reference.image_id) for p in pairs) == [
        ("1459541791", "1864590858"), ("220375232", "541722628"), ("270344397", "1031443799"),
        ("462822612", "1874946579"),
    ]  # fmt: skip


# -------------------------------------------------------------------------------------------------------------- CMMD
@pytest.mark.parametrize("sheet", ["xlsx", "csv"])
def test_cmmd(tmp_path, sheet):
    result = index_dataset("cmmd", IndexOptions(root=fx.cmmd(tmp_path / "raw", sheet)))
    by_file = {(r.patient_id, Path(r.path).name): r for r in result.records}
    assert len(by_file) == 9 and all(r.provenance == "view=ViewCodeSequence" for r in result.records)
    right, left = by_file[("D1-0001", "1-1.dcm")], by_file[("D1-0001", "1-4.dcm")]
    assert (right.laterality, right.view, right.abnormal, right.malignant) == ("R", "CC", 1, 0)
    assert (left.laterality, left.view, left.abnormal, left.malignant) == ("L", "MLO", 0, 0)  # code meaning only
    assert (by_file[("D1-0002", "1-2.dcm")].abnormal, by_file[("D1-0002", "1-2.dcm")].malignant) == (1, 1)
    assert by_file[("D2-0003", "1-1.dcm")].abnormal == 0  # the sheet's row is for the other breast
    assert by_file[("D2-0004", "1-1.dcm")].malignant == -1  # no row at all
    assert right.study_id == left.study_id and right.image_id == read_header(right.path).sop_uid
    reasons = _reasons(result)
    assert _has(reasons, "1-3.dcm: no laterality")
    assert _has(reasons, "1-2.dcm: unknown view (found ViewCodeSequence 127457009 'tissue specimen from breast')")
    assert _has(reasons, f"CMMD_clinicaldata_revision.{sheet} row 4", "no image of D2-0003 R")
    assert _has(reasons, "1 patients have images but no row (D2-0004)")
    assert _has(reasons, "3 of 4 patients have images of one breast only")


# ------------------------------------------------------------------------------------------------------------ folder
def test_folder_takes_everything_from_the_headers_and_lists_every_unusable_file(tmp_path):
    root = fx.folder(tmp_path / "raw")
    result = index_dataset("folder", IndexOptions(root=root, labels=fx.folder_labels(tmp_path / "labels.csv")))
    records = _by_id(result)
    assert sorted(records) == ["1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3", "1.2.3.1.4", "1.2.3.2.1", "1.2.3.2.2"]
    expected = {
        "1.2.3.1.1": ("L", "CC", "", 1, 1),
        "1.2.3.1.2": ("R", "CC", "laterality=Laterality", 0, 0),
        "1.2.3.1.3": ("L", "MLO", "laterality=SeriesDescription;view=SeriesDescription", 1, 1),
        "1.2.3.1.4": ("R", "MLO", "laterality=filename;view=filename", -1, -1),
        "1.2.3.2.1": ("L", "CC", "", 0, 0),
        "1.2.3.2.2": ("L", "MLO", "", -1, -1),
    }
    for image_id, (side, view, provenance, abnormal, malignant) in expected.items():
        record = records[image_id]
        assert (record.laterality, record.view, record.provenance) == (side, view, provenance), image_id
        assert (record.abnormal, record.malignant) == (abnormal, malignant), image_id
    assert records["1.2.3.1.2"].density == "B" and records["1.2.3.2.1"].density == "A"
    assert (records["1.2.3.1.1"].patient_id, records["1.2.3.1.1"].study_id) == ("p1", "1.2.3.1")
    skipped = _reasons(result, skipped=True)
    for fragment in (
        "notes.txt: not a DICOM file",
        "ct.dcm: modality CT, not a mammogram",
        "raw.dcm: a FOR PROCESSING",
        "spot.dcm: a work-up view (spot compression)",
        "x_R_CC.dcm: contradictory laterality: ImageLaterality says L, filename says R",
        "image3.dcm: no laterality",
        "ap.dcm: unknown view (found ViewPosition 'AP')",
        "a.dcm: duplicate image: same image_id as image '1.2.3.1.1'",
        "labels.csv: breast p9 R matches no indexed image",
        "labels.csv: abnormal 'yes' is not 1, 0 or -1",
    ):
        assert _has(skipped, *fragment.split(": ", 1)), fragment
    assert len(skipped) == 10
    assert _has(_reasons(result, skipped=False), "1 of 2 patients have images of one breast only (p2)")


def test_folder_without_labels_leaves_them_unknown(tmp_path):
    result = index_dataset("folder", IndexOptions(root=fx.folder(tmp_path / "raw")))
    assert {(r.abnormal, r.malignant) for r in result.records} == {(-1, -1)}


# -------------------------------------------------------------------------------------------- registry, safety, CLI
def test_registry_and_option_checks(tmp_path):
    assert list(ADAPTERS) == ["inbreast", "cbis", "vindr", "rsna", "cmmd", "folder"]
    assert get_adapter("cbis_ddsm") is ADAPTERS["cbis"]
    root = fx.vindr(tmp_path / "raw")
    with pytest.raises(ConfigError, match="unknown dataset 'ddsm'"):
        get_adapter("ddsm")
    with pytest.raises(ConfigError, match="--labels is not used by the vindr adapter"):
        index_dataset("vindr", IndexOptions(root=root, labels=tmp_path / "x.csv"))
    with pytest.raises(ConfigError, match="--labels .*missing.csv is not a file"):
        index_dataset("folder", IndexOptions(root=root, labels=tmp_path / "missing.csv"))
    inbreast = fx.inbreast(tmp_path / "inbreast")
    with pytest.raises(ConfigError, match="inside the dataset folder"):
        index_dataset("inbreast", IndexOptions(root=inbreast, masks_dir=inbreast / "masks"))
    with pytest.raises(DataError, match="no INbreast table"):
        index_dataset("inbreast", IndexOptions(root=root))
    (tmp_path / "bad").mkdir()
    fx.write_csv(tmp_path / "bad" / "train.csv", ["patient_id", "image_id"], [["1", "2"]])
    with pytest.raises(DataError, match=r"missing column\(s\) \['laterality', 'view', 'cancer'\]"):
        index_dataset("rsna", IndexOptions(root=tmp_path / "bad"))


def _digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        os.chmod(path, (mode | stat.S_IWUSR) if writable else (mode & ~bits))


@pytest.mark.parametrize("name", ["inbreast", "cbis", "cmmd", "folder"])
def test_the_dataset_folder_is_only_read(tmp_path, name):
    build = {"inbreast": fx.inbreast, "cbis": fx.cbis, "cmmd": fx.cmmd, "folder": fx.folder}[name]
    root = build(tmp_path / "raw")
    before = _digest(root)
    _set_writable(root, False)
    try:
        masks = tmp_path / "masks" if name == "inbreast" else None
        result = index_dataset(name, IndexOptions(root=root, masks_dir=masks))
    finally:
        _set_writable(root, True)
    assert result.records and _digest(root) == before


def test_cli_index_then_check(tmp_path, capsys):
    root = fx.inbreast(tmp_path / "raw")
    out, masks = tmp_path / "out" / "manifest.csv", tmp_path / "out" / "masks"
    args = ["data", "index", "--dataset", "inbreast", "--root", str(root), "--out", str(out), "--masks_dir", str(masks)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "inbreast: 7 images of 2 patients" in printed and "problems: 7 (4 skipped, 3 notes)" in printed
    assert "contradictory laterality" in printed and f"wrote {out}" in printed
    with (tmp_path / "out" / "manifest.problems.csv").open() as handle:
        problems = list(csv.DictReader(handle))
    assert len(problems) == 7 and {p["kept"] for p in problems} == {"0", "1"}
    assert len(read_manifest(out)) == 7
    # The images are 16 × 12 DICOMs, smaller than any model input (32 × 16): every file decodes, and the check
    # reports each as too small (exit 1); the manifest itself has no problem.
    assert main(["data", "check", str(out), "--image_size", "32", "16"]) == 1
    printed = capsys.readouterr().out
    assert "7 images checked, 0 manifest problem(s)" in printed and "smaller than" in printed
    assert main(args) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert main([*args[:-2], "--force", "--out", str(root / "m.csv")]) == 2
    assert "inside the dataset folder" in capsys.readouterr().err


def test_cli_index_refuses_a_folder_without_any_usable_image(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "readme.txt").write_text("nothing here")
    assert (
        main(
            ["data", "index", "--dataset", "folder", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "m.csv")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "no usable image found" in err and "readme.txt: not a DICOM file" in err
    assert not (tmp_path / "m.csv").exists()


def test_every_adapter_has_a_data_config_the_datamodule_accepts():
    import yaml

    from bilatcf.data.datamodule import BilateralDataModule

    config_name = {adapter: alias for alias, adapter in ALIASES.items()}
    for name in ADAPTERS:
        path = Path(__file__).resolve().parents[1] / "configs" / "data" / f"{config_name.get(name, name)}.yaml"
        config = yaml.safe_load(path.read_text())
        assert config["class_path"] == "bilatcf.data.datamodule.BilateralDataModule", path
        assert config["init_args"]["source"] == "manifest" and config["init_args"]["manifest"], path
        BilateralDataModule(**config["init_args"])  # every option is checked here, before any data is read


@pytest.mark.parametrize(
    ("category", "seeds", "from_4b"),
    [
        ("1", (0, 0), (0, 0)),
        ("BI-RADS 2", (1, 0), (1, 0)),
        ("3.0", (1, 0), (1, 0)),
        ("4a", (1, 1), (1, 0)),
        ("4B", (1, 1), (1, 1)),
        ("5", (1, 1), (1, 1)),
        ("6", (1, 1), (1, 1)),
        ("0", (-1, -1), (-1, -1)),
        ("", (-1, -1), (-1, -1)),
    ],
)
def test_birads_policy(category, seeds, from_4b):
    from bilatcf.data.adapters.base import birads_labels

    assert birads_labels(category) == seeds and birads_labels(category, malignant_from="4b") == from_4b
