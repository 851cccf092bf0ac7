"""`bilatcf explain` on a tiny trained checkpoint: panels, an offline gallery, split and data options, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from matplotlib.image import imread

from bilatcf.cli import main
from tests.conftest import TINY_CONFIG

#: The template model makes every panel column: counterfactual image, true healthy image, explanation and CAM.
MODEL = ["--model", "_template", "--model.backbone", "test_resnet"]


@pytest.fixture(scope="module")
def run_root(tmp_path_factory) -> Path:
    """A run of one tiny epoch (tested after fit), its checkpoints under the returned root."""
    root = tmp_path_factory.mktemp("runs")
    args = ["fit", "--config", str(TINY_CONFIG), *MODEL, "--trainer.default_root_dir", str(root)]
    assert main(args + ["--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]) == 0
    return root


def explain(root: Path, out: Path, *extra: str) -> int:
    return main(["explain", "--ckpt_path", "best", "--trainer.default_root_dir", str(root), "--out", str(out), *extra])


def files(folder: Path) -> dict[Path, float]:
    return {path: path.stat().st_mtime for path in folder.rglob("*") if path.is_file()}


def gallery_links(out: Path) -> list[str]:
    page = (out / "index.html").read_text()
    return re.findall(r'<img src="([^"]+)"', page)


def test_the_test_run_draws_its_roc_curve(run_root):
    run_dir = next(run_root.rglob("metrics.json")).parent
    assert imread(run_dir / "roc.png").shape[0] >= 300


def test_explain_writes_one_panel_per_pair_and_an_offline_gallery(run_root, tmp_path, capsys):
    before = files(run_root)
    out = tmp_path / "explain"
    assert explain(run_root, out, "--num_pairs", "3") == 0
    assert sorted(p.name for p in out.glob("pair_*.png")) == ["pair_000.png", "pair_001.png", "pair_002.png"]
    page = (out / "index.html").read_text()
    links = gallery_links(out)
    assert links[0] == "roc.png" and links[1:] == ["pair_000.png", "pair_001.png", "pair_002.png"]
    assert all((out / link).is_file() for link in links)
    # Offline: no stylesheet, script, font or image from elsewhere.
    assert not re.search(r"<script|<link|@import|url\(|https?://", page)
    assert "_template" in page and "best-epoch=0.ckpt" in page and "num_patients=48" in page
    assert "pairs shown</td><td>3" in page and re.search(r"AUC</td><td>(\d\.\d{3}|not defined)", page)
    # One row of six columns (target, reference, counterfactual, true healthy, explanation, CAM), readable size.
    panel = imread(out / "pair_000.png")
    assert panel.shape[0] >= 360 and panel.shape[1] > 6 * panel.shape[0] / 2
    assert files(run_root) == before  # nothing written into the training run
    assert "explain: 3 pairs of the test split" in capsys.readouterr().out


def test_split_num_pairs_and_data_overrides(run_root, tmp_path):
    out = tmp_path / "explain"
    assert explain(run_root, out, "--num_pairs", "4", "--split", "all") == 0
    page = (out / "index.html").read_text()
    splits = set(re.findall(r"split (train|val|test)</div>", page))
    assert len(gallery_links(out)) - ("roc.png" in gallery_links(out)) == 4 and {"train", "test"} <= splits
    # A second gallery in the same folder replaces the first one's panels.
    assert explain(run_root, out, "--num_pairs", "2", "--split", "val", "--data.num_patients", "60") == 0
    page = (out / "index.html").read_text()
    assert sorted(p.name for p in out.glob("pair_*.png")) == ["pair_000.png", "pair_001.png"]
    assert set(re.findall(r"split (train|val|test)</div>", page)) == {"val"} and "num_patients=60" in page


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split", "val", "--data.num_patients", "3"], "--split val: the val split is empty"),
        (["--num_pairs", "0"], "--num_pairs 0 is not valid"),
        (["--split", "left"], "invalid value for --split"),
    ],
)
def test_bad_options_are_explained(run_root, tmp_path, capsys, extra, message):
    assert explain(run_root, tmp_path / "explain", *extra) == 2
    assert message in capsys.readouterr().err


def test_missing_checkpoint_and_bad_out_folder(tmp_path, capsys):
    assert main(["explain", "--out", str(tmp_path / "x")]) == 2
    assert "needs --ckpt_path" in capsys.readouterr().err
    assert main(["explain", "--ckpt_path", str(tmp_path / "missing.ckpt")]) == 2
    assert "needs --out" in capsys.readouterr().err
    assert explain(tmp_path / "no_runs", tmp_path / "x") == 2
    assert "no run under" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert main(["explain", "--ckpt_path", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "a_file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
