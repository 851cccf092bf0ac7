"""`bilatcf predict` on new exams: a folder of DICOM files without labels, every image with its contralateral image,
heatmaps written in the files' own geometry."""

from __future__ import annotations

import csv

import numpy as np

from bilatcf.cli import main
from bilatcf.data.dicom import read_dicom
from bilatcf.data.pairing import make_pairs
from bilatcf.data.types import ImageRecord
from tests.conftest import TINY_CONFIG


def _record(image_id: str, laterality: str, abnormal: int) -> ImageRecord:
    return ImageRecord(
        dataset="d", patient_id="p", study_id="s", image_id=image_id, path="", laterality=laterality, view="CC",
        abnormal=abnormal,
    )  # fmt: skip


def test_every_image_pairs_unlabelled_images_too():
    records = [_record("l", "L", -1), _record("r", "R", 1)]
    labelled, _ = make_pairs(records, task="abnormality")
    everything, _ = make_pairs(records, task="abnormality", every_image=True)
    assert [p.target.image_id for p in labelled] == ["r"]
    assert sorted((p.target.image_id, p.label) for p in everything) == [("l", -1), ("r", 1)]


def test_predict_on_a_dicom_folder_writes_every_breast_and_maps_in_the_files_geometry(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BILATCF_CACHE", str(tmp_path / "cache"))
    train = ["fit", "--config", str(TINY_CONFIG), "--model", "sbf", "--model.backbone", "test_resnet"]
    assert main([*train, "--trainer.default_root_dir", str(tmp_path / "run")]) == 0
    checkpoint = sorted((tmp_path / "run").rglob("best-*.ckpt"))[0]
    exams = tmp_path / "exams"
    synth = ["data", "synth", "--format", "dicom", "--num_patients", "3", "--image_size", "64", "32"]
    assert main([*synth, "--out", str(exams)]) == 0
    (exams / "manifest.csv").unlink()  # new exams come as files, without a manifest or labels
    capsys.readouterr()
    predict = [
        "predict",
        "--config",
        str(TINY_CONFIG),
        "--ckpt_path",
        str(checkpoint),
        "--trainer.limit_predict_batches",
        "1.0",
    ]
    data = ["--data.source", "manifest", "--data.manifest", str(exams / "images"), "--data.predict_split", "all"]
    assert main([*predict, *data, "--trainer.default_root_dir", str(tmp_path / "predict")]) == 0
    rows = list(csv.DictReader(next((tmp_path / "predict").rglob("predictions.csv")).open()))
    files = sorted((exams / "images").glob("*.dcm"))
    assert len(rows) == len(files) == 12, "every breast of every exam, with its contralateral image"
    assert {row["label"] for row in rows} == {"-1"} and {row["laterality"] for row in rows} == {"L", "R"}
    heatmaps = next((tmp_path / "predict").rglob("heatmaps"))
    for row in rows:
        original = np.load(heatmaps / f"{row['image_id']}_cam_original.npy")
        source = next(f for f in files if read_dicom(f).shape == original.shape)
        assert original.shape == read_dicom(source).shape
        assert (heatmaps / f"{row['image_id']}_cam_original.png").is_file()
