"""The embedded synthetic bilateral dataset: determinism and the consistency of its ground truth."""

from __future__ import annotations

import hashlib
import shutil
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bilatcf.data.synthetic import SyntheticConfig, SyntheticDataset, generate, load_or_generate
from bilatcf.data.synthetic import config as config_module
from bilatcf.errors import ConfigError, DataError
from bilatcf.viz import synthetic_preview

CONFIG = SyntheticConfig(num_patients=16, image_size=(64, 32), seed=3, distractor_rate=0.6, lesion_rate=0.7)
MISALIGNED = replace(CONFIG, misalignment=0.2)


@pytest.fixture(scope="module", params=[CONFIG, MISALIGNED], ids=["aligned", "misaligned"])
def config(request) -> SyntheticConfig:
    """Every ground-truth invariant must hold with and without positioning differences between the sides."""
    return request.param


@pytest.fixture(scope="module")
def dataset(config) -> SyntheticDataset:
    return generate(config)


def by_patient_view(dataset):
    groups = defaultdict(dict)
    for i, record in enumerate(dataset.records):
        groups[(record.patient_id, record.view)][record.laterality] = i
    return groups


def test_same_knobs_give_identical_data_and_another_seed_does_not(config, dataset):
    again = generate(config)
    assert np.array_equal(dataset.images, again.images) and np.array_equal(dataset.masks, again.masks)
    assert dataset.records == again.records
    other = generate(replace(config, seed=4))
    assert not np.array_equal(dataset.images, other.images)


def test_shapes_ranges_and_record_ids(dataset):
    assert len(dataset) == 16 * 2 * 2
    assert dataset.images.shape == (64, 64, 32) and dataset.images.dtype == np.float32
    assert dataset.images.min() >= 0 and dataset.images.max() <= 1
    assert len({r.image_id for r in dataset.records}) == len(dataset)
    assert {r.view for r in dataset.records} == {"CC", "MLO"} and {r.laterality for r in dataset.records} == {"L", "R"}


def test_healthy_equals_image_outside_the_lesion_mask(dataset):
    outside = dataset.masks == 0
    assert np.array_equal(dataset.images[outside], dataset.healthy[outside])
    changed = np.abs(dataset.images - dataset.healthy) > 0
    assert not (changed & outside).any()
    for i in range(len(dataset)):
        if dataset.masks[i].any():
            assert changed[i][dataset.masks[i] == 1].any(), "a lesion mask must cover a changed region"


def test_labels_are_consistent_with_the_masks(dataset):
    for i, record in enumerate(dataset.records):
        assert record.abnormal == int(dataset.masks[i].any())
        assert record.malignant in (0, 1) and (record.malignant == 0 or record.abnormal == 1)
        birads_high = record.birads[0] in "456"
        assert birads_high == (record.malignant == 1), (record.birads, record.malignant)
        assert (record.birads == "1") == (record.abnormal == 0)
        assert bool(dataset.lesion_types[i]) == bool(record.abnormal)


def test_boxes_enclose_every_lesion_pixel(dataset):
    for i, record in enumerate(dataset.records):
        ys, xs = np.nonzero(dataset.masks[i])
        if not len(ys):
            assert record.boxes == ()
            continue
        inside = np.zeros(len(ys), dtype=bool)
        for x0, y0, x1, y1 in record.boxes:
            inside |= (xs >= np.floor(x0)) & (xs < np.ceil(x1)) & (ys >= np.floor(y0)) & (ys < np.ceil(y1))
        assert inside.all()


def test_lesions_are_one_sided_and_never_at_the_mirrored_position(dataset):
    groups = by_patient_view(dataset)
    one_sided = 0
    for pair in groups.values():
        left, right = dataset.masks[pair["L"]], dataset.masks[pair["R"]]
        one_sided += left.any() != right.any()
        assert not (left.astype(bool) & right.astype(bool)).any(), "lesions on both sides never overlap"
    assert one_sided > 0


def distractor_offsets(dataset) -> list[float]:
    """Distance between the centroids of the left and right distractor masks of each view, in image heights."""
    offsets = []
    for pair in by_patient_view(dataset).values():
        left, right = (dataset.distractor_masks[pair[s]] for s in ("L", "R"))
        if left.any() and right.any():
            centroids = [np.array(np.nonzero(mask)).mean(axis=1) for mask in (left, right)]
            offsets.append(float(np.linalg.norm(centroids[0] - centroids[1])) / left.shape[0])
    return offsets


def test_misalignment_moves_the_sides_apart_and_zero_changes_nothing():
    aligned = generate(CONFIG)
    assert np.array_equal(generate(replace(CONFIG, misalignment=0.0)).images, aligned.images)
    misaligned = generate(MISALIGNED)
    # Same patients, anatomy and findings; only where each side's breast sits differs.
    assert [(r.abnormal, r.malignant, r.birads) for r in misaligned.records] == [
        (r.abnormal, r.malignant, r.birads) for r in aligned.records
    ]
    near, far = np.mean(distractor_offsets(aligned)), np.mean(distractor_offsets(misaligned))
    assert near < 0.05 and far > 2 * near, (near, far)
    with pytest.raises(ConfigError, match="misalignment"):
        SyntheticConfig(misalignment=-0.1)
    with pytest.raises(ConfigError, match="misalignment"):
        SyntheticConfig(misalignment=0.3)


def test_distractors_sit_at_the_same_canonical_position_on_both_sides():
    dataset = generate(CONFIG)
    groups = by_patient_view(dataset)
    with_distractors = 0
    for pair in groups.values():
        left, right = (dataset.distractor_masks[pair[s]].astype(bool) for s in ("L", "R"))
        assert left.any() == right.any()
        if left.any():
            with_distractors += 1
            overlap = (left & right).sum() / min(left.sum(), right.sum())
            assert overlap > 0.3, "a distractor is mirrored: the two sides agree up to the elastic warp"
    assert with_distractors > 0


def test_both_views_of_a_breast_carry_the_same_finding(dataset):
    finding = defaultdict(set)
    for i, record in enumerate(dataset.records):
        finding[(record.patient_id, record.laterality)].add(
            (record.abnormal, record.malignant, dataset.lesion_types[i])
        )
    assert all(len(values) == 1 for values in finding.values())


def test_save_load_round_trip_and_cache(config, dataset, tmp_path):
    dataset.save(tmp_path / "d.npz")
    loaded = SyntheticDataset.load(tmp_path / "d.npz")
    assert np.array_equal(loaded.images, dataset.images) and loaded.records == dataset.records
    assert loaded.config == config
    first = load_or_generate(config, cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / "synthetic" / f"{config.key()}.npz").is_file()
    second = load_or_generate(config, cache_dir=tmp_path / "cache")
    assert np.array_equal(first.images, second.images) and first.records == second.records


PACKAGE = Path(config_module.__file__).parent
#: The package modules that do not decide pixels or records: editing them must keep every cache valid.
NOT_PIXEL_MODULES = {"__init__", "cache", "dataset", "dicom_files"}  # dicom_files writes them out as DICOM


def edited_copy(tmp_path: Path, module: str | None) -> Path:
    """A copy of the synthetic package with one module edited (a comment appended), or none."""
    copy = tmp_path / "synthetic"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    if module is not None:
        with open(copy / f"{module}.py", "a") as handle:
            handle.write("# edited\n")
    return copy


def test_every_module_of_the_package_is_either_pixel_code_or_not():
    # A new module must be classified, or editing it could serve stale pixels from the cache.
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    assert modules == set(config_module.PIXEL_MODULES) | NOT_PIXEL_MODULES
    assert not set(config_module.PIXEL_MODULES) & NOT_PIXEL_MODULES


@pytest.mark.parametrize("module", config_module.PIXEL_MODULES)
def test_an_edited_generator_never_reads_the_old_cache(module, tmp_path, monkeypatch):
    before = CONFIG.key()
    assert config_module.source_digest(edited_copy(tmp_path / "as is", None)) == config_module._source_digest()
    edited = config_module.source_digest(edited_copy(tmp_path, module))
    monkeypatch.setattr(config_module, "_source_digest", lambda: edited)
    assert CONFIG.key() != before


@pytest.mark.parametrize("module", sorted(NOT_PIXEL_MODULES))
def test_editing_saving_caching_or_glue_keeps_the_cache(module, tmp_path, monkeypatch):
    before = CONFIG.key()
    edited = config_module.source_digest(edited_copy(tmp_path, module))
    monkeypatch.setattr(config_module, "_source_digest", lambda: edited)
    assert CONFIG.key() == before


def test_the_preview_figure_is_outside_the_digested_package():
    # Its code lives in bilatcf/viz.py, so a restyled preview never invalidates a cached dataset.
    assert not Path(synthetic_preview.__code__.co_filename).is_relative_to(PACKAGE)


def test_damaged_file_and_bad_knobs_are_reported(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz"):
        SyntheticDataset.load(tmp_path / "bad.npz")
    with pytest.raises(ConfigError, match="lesion_contrast"):
        SyntheticConfig(lesion_contrast=2.0)


def test_preview_writes_a_png(dataset, tmp_path):
    path = synthetic_preview(dataset, tmp_path / "preview.png", num_patients=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="view"):
        synthetic_preview(
            replace(dataset, config=replace(dataset.config, views=("CC",))), tmp_path / "p.png", view="MLO"
        )


def test_a_patient_does_not_depend_on_how_many_are_generated(config, dataset):
    # Per-patient generators: 4 patients are the first quarter of the 16-patient run, so chunked generation is exact.
    small = generate(replace(config, num_patients=4))
    assert np.array_equal(small.images, dataset.images[: len(small)])
    assert np.array_equal(small.healthy, dataset.healthy[: len(small)])
    assert small.records == dataset.records[: len(small)]


def test_views_are_validated_and_lists_are_accepted():
    assert SyntheticConfig(views=["MLO"], image_size=[64, 32]).views == ("MLO",)
    with pytest.raises(ConfigError, match="views"):
        SyntheticConfig(views=("CC", "ML"))


#: What these configs generate, for the check that the pixels never change by accident. The discrete arrays and
#: ``repr(records)`` are pinned by sha256 (the records' digests were updated when ImageRecord gained its empty
#: ``provenance`` field; without it in the repr they give the earlier digests). The float images are pinned by
#: :func:`fingerprint` within :data:`FINGERPRINT_TOLERANCE`, not by a digest: OpenCV and numpy pick their SIMD
#: kernels by CPU, so the pixels differ slightly between machines (with and without OpenCV's AVX2 kernels: in 5 % of
#: the pixels, by up to 6e-8 on aligned pairs and 1e-6 where misalignment resamples them).
# fmt: off
PINNED = {
    SyntheticConfig(num_patients=6, image_size=(64, 32)): {
        "images": (
            0.200649792, 0.232672567, -0.050781358, 0.228820882, -0.008383643,
            0.004630999, -0.036145549, -0.086647836, -0.101800729, -0.335430767,
        ),
        "healthy": (
            0.200275557, 0.232052113, -0.045196456, 0.225598488, -0.012118160,
            0.012751766, -0.035692703, -0.085051978, -0.109560742, -0.323995558,
        ),
        "masks": "06dae1ea68b0794f9e7e767d9a896ec2647ad0477ac1653becb3da4c9781ef39",
        "distractor_masks": "707e160aa70060a3c361364d8f574aeb3d3ced2c5860905856d000164522e3e9",
        "records": "16525154a7b9da38097a14ba3b1b9b2a8680da4a412032b4b6a9562573b93941",
    },
    SyntheticConfig(num_patients=6, image_size=(64, 32), misalignment=0.1): {
        "images": (
            0.198221408, 0.231557195, -0.055357199, 0.122502227, 0.005878660,
            0.002096294, -0.111362621, -0.029990383, -0.127473293, -0.433678566,
        ),
        "healthy": (
            0.197847173, 0.231036086, -0.059278101, 0.119011708, 0.007175876,
            -0.002936041, -0.113451251, -0.039966306, -0.133576840, -0.431167470,
        ),
        "masks": "fa5f1c11348786f77c7f1c9b73b5189382d6ed581d69bd9d6dcb492d58e17237",
        "distractor_masks": "d8c6c7997d8f5051f31a8d91713afc7e86f8d24981fb25c46b0c8bb96bdce446",
        "records": "32835bfc45d058befe05d1638f82454dbd4d1b5c628e2b973569ad79edc43acf",
    },
    SyntheticConfig(num_patients=6, image_size=(128, 64), views=("CC",)): {
        "images": (
            0.163546260, 0.209574115, -0.289152073, -0.369859596, 0.212400540,
            -0.400593819, 0.300273759, 0.311788819, 0.318717936, -0.108978474,
        ),
        "healthy": (
            0.163110190, 0.208638802, -0.274118692, -0.364574238, 0.227705134,
            -0.393656236, 0.299621864, 0.306691456, 0.320900056, -0.096559481,
        ),
        "masks": "3daf012a0c7913bec409d159d4a89545d25b8f6e94f965c6c8cc5b750f5ef030",
        "distractor_masks": "aaae6e83b74715974d44808f5fe900a016b02b3a3965681c5ac24b21827b08ec",
        "records": "8481565d51f4308bd563f6dedcbed8f24d568d17429307d173f51f57829afc55",
    },
}
# fmt: on

#: The CPU-to-CPU spread above moves a fingerprint by 2e-8; one pixel moved by 1e-3 moves it by 5e-6, and a 1 %
#: change of ``lesion_contrast`` by 2e-4.
FINGERPRINT_TOLERANCE = 1e-6


def fingerprint(array: np.ndarray) -> np.ndarray:
    """Mean, sd and 8 fixed random projections of ``array``: stable under ulp noise, moved by any visible change."""
    flat = array.astype(np.float64).ravel()
    weights = np.random.default_rng(0).standard_normal((8, flat.size)) / np.sqrt(flat.size)
    return np.concatenate([[flat.mean(), flat.std()], weights @ flat])


def pinned(dataset: SyntheticDataset) -> dict:
    digests = {
        name: hashlib.sha256(getattr(dataset, name).tobytes()).hexdigest() for name in ("masks", "distractor_masks")
    }
    digests["records"] = hashlib.sha256(repr(dataset.records).encode()).hexdigest()
    return digests


@pytest.mark.parametrize("config", PINNED, ids=["aligned", "misaligned", "cc_128x64"])
def test_the_default_pixels_do_not_change(config):
    # Cached datasets and published results rest on these pixels; a change here must be deliberate.
    dataset, expected = generate(config), PINNED[config]
    changed = "the generated data changed: if that is intended, bump GENERATOR_VERSION and update PINNED"
    for name in ("images", "healthy"):
        np.testing.assert_allclose(
            fingerprint(getattr(dataset, name)),
            expected[name],
            rtol=0,
            atol=FINGERPRINT_TOLERANCE,
            err_msg=f"{name}: {changed}",
        )
    assert pinned(dataset) == {name: expected[name] for name in ("masks", "distractor_masks", "records")}, changed


def test_the_pixel_fingerprint_sees_a_small_change():
    config = next(iter(PINNED))
    nudged = generate(replace(config, lesion_contrast=config.lesion_contrast * 1.01)).images
    moved = np.abs(fingerprint(nudged) - np.asarray(PINNED[config]["images"])).max()
    assert moved > 50 * FINGERPRINT_TOLERANCE
