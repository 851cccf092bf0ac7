"""Manifest CSV: round trip, normalisation, and one precise message per problem."""

import csv
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bilatcf.data.manifest import MANIFEST_COLUMNS, check_manifest, read_manifest, validate_records, write_manifest
from bilatcf.data.types import ImageRecord
from bilatcf.errors import DataError


def _record(image_id: str, laterality: str = "L", **changes) -> ImageRecord:
    fields = dict(
        dataset="toy",
        patient_id="p1",
        study_id="s1",
        image_id=image_id,
        path=f"images/{image_id}.png",
        laterality=laterality,
        view="CC",
        abnormal=1,
        malignant=0,
        birads="3",
        density="B",
        split="train",
        boxes=((10.0, 20.0, 30.0, 45.5),),
        mask_path=f"masks/{image_id}.png",
    )
    return ImageRecord(**{**fields, **changes})


def _touch(root: Path, *relative: str) -> None:
    for name in relative:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def _write_rows(path: Path, rows: list[dict[str, str]], header=MANIFEST_COLUMNS) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def _good_row(image_id: str, **changes) -> dict[str, str]:
    row = dict(
        dataset="toy",
        patient_id="p1",
        study_id="s1",
        image_id=image_id,
        path=f"{image_id}.png",
        laterality="L",
        view="CC",
        abnormal="1",
        malignant="0",
        birads="",
        density="",
        split="",
        boxes="",
        mask_path="",
    )
    return {**row, **changes}


def test_round_trip_resolves_relative_paths_against_the_csv_folder(tmp_path):
    records = [_record("a", "L"), _record("b", "R", boxes=(), mask_path="", abnormal=-1, malignant=-1, split="")]
    _touch(tmp_path, "images/a.png", "images/b.png", "masks/a.png")
    write_manifest(records, tmp_path / "manifest.csv")
    loaded = read_manifest(tmp_path / "manifest.csv")
    expected = [
        replace(records[0], path=str(tmp_path / "images/a.png"), mask_path=str(tmp_path / "masks/a.png")),
        replace(records[1], path=str(tmp_path / "images/b.png")),
    ]
    assert loaded == expected


def test_write_uses_the_canonical_column_order_and_leaves_no_temporary_file(tmp_path):
    write_manifest([_record("a", boxes=((np.float32(1.5), 2, 3, 4),))], tmp_path / "out" / "m.csv")
    assert os.listdir(tmp_path / "out") == ["m.csv"]
    with (tmp_path / "out" / "m.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    assert rows[1][MANIFEST_COLUMNS.index("boxes")] == "[[1.5, 2.0, 3.0, 4.0]]"


def test_root_argument_overrides_the_csv_folder(tmp_path):
    _touch(tmp_path / "data", "a.png")
    _write_rows(tmp_path / "m.csv", [_good_row("a")])
    assert read_manifest(tmp_path / "m.csv", root=tmp_path / "data")[0].path == str(tmp_path / "data" / "a.png")


def test_values_are_normalised(tmp_path):
    row = _good_row(
        "a",
        laterality=" right ",
        view="mlo",
        abnormal="",
        malignant=" -1",
        density="c",
        split="Test",
        boxes=" [[0, 0, 5, 6]] ",
    )
    _write_rows(tmp_path / "m.csv", [row])
    record = read_manifest(tmp_path / "m.csv", check_files=False)[0]
    assert (record.laterality, record.view, record.abnormal, record.malignant) == ("R", "MLO", -1, -1)
    assert (record.density, record.split, record.boxes) == ("C", "test", ((0.0, 0.0, 5.0, 6.0),))


def test_every_problem_is_reported_with_row_and_column(tmp_path):
    _touch(tmp_path, "ok.png", "dup.png")
    rows = [
        _good_row("ok"),  # row 2
        _good_row("x1", laterality="X"),  # row 3
        _good_row("x2", view="AP"),  # row 4
        _good_row("x3", abnormal="yes"),  # row 5
        _good_row("x4", boxes="[[1, 2, 3]"),  # row 6: malformed JSON
        _good_row("x5", boxes="[[5, 2, 3, 4]]"),  # row 7: x0 >= x1
        _good_row("x6", split="holdout"),  # row 8
        _good_row("missing"),  # row 9: image file does not exist
        _good_row("dup", path="dup.png", mask_path="nomask.png"),  # row 10: mask file does not exist
        _good_row("dup", path="dup.png"),  # row 11: duplicate image_id
    ]
    _write_rows(tmp_path / "manifest.csv", rows)
    with pytest.raises(DataError) as error:
        read_manifest(tmp_path / "manifest.csv")
    message = str(error.value)
    for expected in (
        "row 3, column 'laterality': 'X' is not L or R",
        "row 4, column 'view': 'AP'",
        "row 5, column 'abnormal': 'yes'",
        "row 6, column 'boxes'",
        "row 7, column 'boxes': box [5, 2, 3, 4]",
        "row 8, column 'split': 'holdout'",
        "row 9, column 'path'",
        "row 10, column 'mask_path'",
        "row 10, column 'image_id': 'dup' of dataset 'toy' also appears in manifest.csv row 11",
    ):
        assert expected in message
    assert "row 2," not in message
    assert "9 problem(s)" in message and "more" not in message  # rows that fail to parse are not checked for files


def test_more_than_ten_problems_are_truncated(tmp_path):
    _write_rows(tmp_path / "m.csv", [_good_row(f"i{i}", laterality="?") for i in range(13)])
    with pytest.raises(DataError, match=r"13 problem\(s\)(.|\n)*and 3 more"):
        read_manifest(tmp_path / "m.csv", check_files=False)


def test_same_image_id_in_two_datasets_is_allowed(tmp_path):
    _write_rows(tmp_path / "m.csv", [_good_row("a"), _good_row("a", dataset="other")])
    assert len(read_manifest(tmp_path / "m.csv", check_files=False)) == 2


def test_header_problems(tmp_path):
    header = [c for c in MANIFEST_COLUMNS if c != "view"] + ["notes"]
    _write_rows(tmp_path / "m.csv", [{k: v for k, v in _good_row("a").items() if k != "view"} | {"notes": ""}], header)
    with pytest.raises(DataError, match=r"missing column\(s\) \['view'\](.|\n)*unknown column\(s\) \['notes'\]"):
        read_manifest(tmp_path / "m.csv", check_files=False)


def test_row_with_more_cells_than_the_header(tmp_path):
    text = ",".join(MANIFEST_COLUMNS) + "\ntoy,p1,s1,a,a.png,L,CC,1,0,,,,[[1,2,3,4]],,\n"
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DataError, match="row 2: 3 cell"):
        read_manifest(tmp_path / "m.csv", check_files=False)


def test_missing_and_empty_manifests(tmp_path):
    with pytest.raises(DataError, match="not found") as error:
        read_manifest(tmp_path / "nope.csv")
    assert "docs/data.md" in str(error.value) and "bilatcf data synth" in str(error.value)
    assert "bilatcf data index --dataset NAME" in str(error.value)
    _write_rows(tmp_path / "m.csv", [])
    with pytest.raises(DataError, match="no rows"):
        read_manifest(tmp_path / "m.csv")


def test_check_manifest_lists_every_problem_and_keeps_the_valid_rows(tmp_path):
    rows = [_good_row(f"bad{i}", laterality="X") for i in range(12)] + [_good_row("ok")]
    _write_rows(tmp_path / "m.csv", rows)
    with pytest.raises(DataError, match=r"\.\.\. and 2 more \(`bilatcf data check` lists them all\)"):
        read_manifest(tmp_path / "m.csv", check_files=False)
    report = check_manifest(tmp_path / "m.csv", check_files=False)
    assert len(report.problems) == 12 and report.problems[11].startswith("m.csv row 13, column 'laterality'")
    assert [r.image_id for r in report.records] == ["ok"] and report.rows == [14]


def test_reading_never_modifies_the_file(tmp_path):
    path = tmp_path / "m.csv"
    _write_rows(path, [_good_row("a", laterality="left")])
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    read_manifest(path, check_files=False)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert sorted(os.listdir(tmp_path)) == ["m.csv"]


def test_validate_records(tmp_path):
    assert validate_records([_record("a"), _record("b", "R")], check_files=False) == []
    problems = validate_records(
        [_record("a", laterality="X"), _record("b", boxes=((1, 1, 1, 2),)), _record("b")], check_files=False
    )
    assert len(problems) == 3
    assert problems[0].startswith("record 0 (image_id 'a'), column 'laterality'")
    assert problems[1].startswith("record 1 (image_id 'b'), column 'boxes'")
    assert "also appears in record 2" in problems[2]
    _touch(tmp_path, "a.png")
    missing = validate_records([_record("a", path=str(tmp_path / "a.png"), mask_path=str(tmp_path / "m.png"))])
    assert len(missing) == 1 and "column 'mask_path'" in missing[0]
