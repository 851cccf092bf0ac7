"""`bilatcf data preview`: a quick figure from the first patients, generated in memory, never a cache file."""

from __future__ import annotations

import cv2
import numpy as np

from bilatcf.cli import main
from bilatcf.data import synthetic
from bilatcf.data.synthetic import SyntheticConfig, generate
from bilatcf.viz import synthetic_preview

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_preview_generates_a_prefix_in_memory_and_writes_no_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("BILATCF_CACHE", str(cache))
    generated = []

    def spy(config, **kwargs):
        generated.append(config)
        return generate(config, **kwargs)

    monkeypatch.setattr(synthetic, "generate", spy)
    out = tmp_path / "preview.png"
    assert main(["data", "preview", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    # 48 patients of the one view drawn, 96 images: not the default dataset's 4000 images and 1.3 GB cache file.
    assert [(c.num_patients, c.views, c.image_size) for c in generated] == [(48, ("CC",), (256, 128))]
    assert not list(cache.rglob("*.npz"))


def test_the_prefix_shows_the_pairs_the_full_dataset_would(tmp_path):
    out = tmp_path / "prefix.png"
    assert main(["data", "preview", "--out", str(out), "--image_size", "64", "32", "--view", "MLO"]) == 0
    full = synthetic_preview(
        generate(SyntheticConfig(num_patients=200, image_size=(64, 32))), tmp_path / "full.png", view="MLO"
    )
    assert np.array_equal(cv2.imread(str(out)), cv2.imread(str(full)))


def test_data_preview_command_takes_the_misalignment(tmp_path, capsys):
    out = tmp_path / "preview.png"
    args = ["data", "preview", "--out", str(out), "--num_patients", "4", "--image_size", "64", "32"]
    assert main([*args, "--misalignment", "0.1"]) == 0 and out.read_bytes()[:4] == b"\x89PNG"
    assert main([*args, "--misalignment", "0.5"]) != 0
    assert "SyntheticConfig.misalignment = 0.5" in capsys.readouterr().err
