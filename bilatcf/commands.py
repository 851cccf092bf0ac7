"""The ``bilatcf`` commands that are not Lightning stages: ``list`` and ``data``."""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from bilatcf.errors import ConfigError, DataError

PREVIEW_PATIENTS = 48  # patients `bilatcf data preview` chooses its pairs from
INDEX_PROBLEMS_SHOWN = 20  # problems `bilatcf data index` prints; all of them go to the problems file


def run_list(args: list[str]) -> int:
    """``bilatcf list``: every registered model with its one-line description and paper."""
    from bilatcf.registry import get_model_class, list_models

    parser = argparse.ArgumentParser(prog="bilatcf list", description="List the registered models.")
    parser.parse_args(args)
    names = list_models()
    width = max(len(n) for n in names)
    for name in names:
        cls = get_model_class(name)
        print(f"{name.ljust(width)}  {cls.description}  [{cls.paper}]")
    return 0


def run_data(args: list[str]) -> int:
    """``bilatcf data synth|preview|index|check|cache``."""
    parser = argparse.ArgumentParser(
        prog="bilatcf data", description="Synthetic data, dataset manifests and the image cache."
    )
    sub = parser.add_subparsers(dest="action", required=True)

    synth = sub.add_parser("synth", help="write the synthetic dataset as image files + a canonical manifest.csv")
    _add_synthetic_options(synth)
    synth.add_argument("--out", required=True, help="output folder (must be empty or new)")
    synth.add_argument(
        "--format",
        choices=("png", "npy", "dicom"),
        default="png",
        help="png: 16-bit PNG; npy: float32; dicom: MG DICOM, 14-bit, MONOCHROME1 or 2 and LINEAR or SIGMOID windows "
        "by patient. Right breasts are stored as acquired, facing the other way, in every format.",
    )

    preview = sub.add_parser("preview", help="write a PNG grid of synthetic pairs with lesions and distractors marked")
    _add_synthetic_options(preview)
    preview.add_argument("--out", default="synthetic_preview.png")
    preview.add_argument("--view", default="CC", choices=("CC", "MLO"))

    index = sub.add_parser(
        "index", help="read a public dataset as downloaded (nothing is written into it) and write its manifest"
    )
    index.add_argument(
        "--dataset",
        required=True,
        help="inbreast, cbis (or cbis_ddsm), vindr, rsna, cmmd, or folder (any folder of MG DICOMs)",
    )
    index.add_argument("--root", required=True, help="the dataset folder as downloaded (read only)")
    index.add_argument("--out", required=True, help="the manifest CSV to write")
    index.add_argument("--masks_dir", default=None, help="inbreast: folder for the lesion masks rasterised from AllXML")
    index.add_argument("--labels", default=None, help="cmmd: the clinical sheet (.xlsx/.csv); folder: a labels CSV")
    index.add_argument(
        "--no_official_split",
        action="store_true",
        help="leave the split column empty (bilatcf then deals out a patient-wise 8:1:1 split) instead of keeping "
        "the dataset's own train/test split",
    )
    index.add_argument("--force", action="store_true", help="overwrite an existing manifest and masks")

    check = sub.add_parser(
        "check", help="validate a manifest, decode every image and mask once, report pairing (the data is not touched)"
    )
    check.add_argument("manifest")
    check.add_argument("--root", default=None, help="folder relative paths are resolved against (default: the CSV's)")
    check.add_argument("--task", default="malignancy", choices=("malignancy", "abnormality"))
    check.add_argument(
        "--image_size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="the model's input size: smaller images are reported (default: the DataModule's, 128 64)",
    )
    check.add_argument("--workers", type=int, default=None, help="decoding threads (default: the CPUs, at most 8)")
    check.add_argument(
        "--recheck", action="store_true", help="decode every file again, even unchanged ones already checked"
    )
    check.add_argument(
        "--dicom_for_processing",
        choices=("refuse", "warn"),
        default="refuse",
        help="DICOM images marked FOR PROCESSING (raw detector signal): report them as unusable, or warn and read them",
    )

    cache = sub.add_parser(
        "cache",
        help="show or clear the cache folder ($BILATCF_CACHE or ~/.cache/bilatcf), or fill it ahead of training",
    )
    cache.add_argument("--clear", action="store_true", help="delete the whole cache folder")
    cache.add_argument(
        "--build",
        metavar="DATA_YAML",
        help="decode and preprocess every image of this data config (the --data file of `bilatcf fit`, e.g. "
        "configs/data/inbreast.yaml) into the cache, with a progress bar",
    )
    cache.add_argument("--manifest", help="with --build: the manifest CSV (overrides the config's `manifest`)")
    cache.add_argument(
        "--image_size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="with --build: the model input size (overrides the config's `image_size`; entries are per size)",
    )

    ns = parser.parse_args(args)
    actions = {"synth": _synth, "preview": _preview, "index": _index, "check": _check, "cache": _cache}
    return actions[ns.action](ns)


def _add_synthetic_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num_patients", type=int, default=1000)
    parser.add_argument("--image_size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--misalignment",
        type=float,
        default=0.0,
        help="positioning/compression difference between the two breasts, as a fraction of the height (0 to 0.25)",
    )


def _synthetic(ns: argparse.Namespace):
    from bilatcf.data.synthetic import SyntheticConfig, load_or_generate

    config = SyntheticConfig(
        num_patients=ns.num_patients, image_size=tuple(ns.image_size), seed=ns.seed, misalignment=ns.misalignment
    )
    return load_or_generate(config, progress=True)


def _synth(ns: argparse.Namespace) -> int:
    import cv2

    from bilatcf.data.manifest import write_manifest

    out = Path(ns.out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} is not empty; choose a new folder so no existing file is overwritten.")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    dataset = _synthetic(ns)
    write_image = _image_writer(ns.format, out)
    patients: dict[str, int] = {}
    records = []
    for i, record in enumerate(dataset.records):
        # Right breasts are stored as acquired (mirrored back), so reading them exercises orientation handling.
        flip = record.laterality == "R"
        image = dataset.images[i][:, ::-1] if flip else dataset.images[i]
        mask = dataset.masks[i][:, ::-1] if flip else dataset.masks[i]
        width = image.shape[1]
        boxes = tuple((width - x1, y0, width - x0, y1) if flip else (x0, y0, x1, y1) for x0, y0, x1, y1 in record.boxes)
        patient = patients.setdefault(record.patient_id, len(patients))
        path = write_image(image, record, patient, i)
        mask_path = ""
        if mask.any():
            mask_path = f"masks/{record.image_id}.png"
            cv2.imwrite(str(out / mask_path), mask.astype(np.uint8) * 255)
        records.append(replace(record, path=path, mask_path=mask_path, boxes=boxes))
    write_manifest(records, out / "manifest.csv")
    print(f"wrote {len(records)} images and {out / 'manifest.csv'}")
    return 0


def _image_writer(file_format: str, out: Path):
    """``write(image, record, patient index, image index) -> path relative to out`` for one ``--format``."""
    import cv2

    def png(image, record, patient, index):
        path = f"images/{record.image_id}.png"
        cv2.imwrite(str(out / path), np.round(image * 65535).astype(np.uint16))
        return path

    def npy(image, record, patient, index):
        path = f"images/{record.image_id}.npy"
        np.save(out / path, np.ascontiguousarray(image, dtype=np.float32))
        return path

    def dicom(image, record, patient, index):
        from bilatcf.data.synthetic.dicom_files import file_style, write_mammogram

        path = f"images/{record.image_id}.dcm"
        write_mammogram(out / path, image, record, file_style(patient), instance_number=index + 1)
        return path

    return {"png": png, "npy": npy, "dicom": dicom}[file_format]


def _preview(ns: argparse.Namespace) -> int:
    """Draw the pairs from the first patients of the one view shown, generated in memory and never cached.

    Patients are seeded independently, so the first :data:`PREVIEW_PATIENTS` are exactly those of the full dataset,
    and they hold every kind of pair the preview shows; the full default dataset would cost a 1.3 GB cache file for
    6 pairs.
    """
    from bilatcf.data.synthetic import SyntheticConfig, generate
    from bilatcf.viz import synthetic_preview

    config = SyntheticConfig(
        num_patients=min(ns.num_patients, PREVIEW_PATIENTS),
        image_size=tuple(ns.image_size),
        views=(ns.view,),
        seed=ns.seed,
        misalignment=ns.misalignment,
    )
    path = synthetic_preview(generate(config), ns.out, view=ns.view)
    print(f"wrote {path}")
    return 0


def _index(ns: argparse.Namespace) -> int:
    """Index a dataset folder into a manifest; print the counts and the problems, write them all next to it."""
    import csv
    import io

    from bilatcf.data.adapters import IndexOptions, get_adapter, index_dataset
    from bilatcf.data.adapters.base import check_output_folder
    from bilatcf.data.io import atomic_write
    from bilatcf.data.manifest import write_manifest

    adapter = get_adapter(ns.dataset)
    out, root = Path(ns.out), Path(ns.root)
    masks = Path(ns.masks_dir) if ns.masks_dir else None
    check_output_folder(out, root, "--out")
    if out.exists() and not ns.force:
        raise DataError(f"{out} already exists; pass --force to overwrite it, or choose another --out.")
    if masks is not None and masks.is_dir() and any(masks.iterdir()) and not ns.force:
        raise DataError(
            f"--masks_dir {masks} is not empty; pass --force to overwrite its masks, or choose a new folder."
        )
    options = IndexOptions(
        root=root,
        masks_dir=masks,
        labels=Path(ns.labels) if ns.labels else None,
        official_split=not ns.no_official_split,
    )
    result = index_dataset(adapter.name, options)
    problems_file = out.with_name(f"{out.stem}.problems.csv")
    if not result.records:
        shown = "\n".join(f"  - {problem}" for problem in result.problems[:INDEX_PROBLEMS_SHOWN])
        raise DataError(
            f"no usable image found in {root} by the {adapter.name} adapter ({len(result.problems)} problem(s)):\n"
            f"{shown}\nCheck --root and --dataset (docs/data.md, 'Real datasets', shows each layout)."
        )
    write_manifest(result.records, out)
    if result.problems:
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(("where", "reason", "kept"))
        writer.writerows((problem.where, problem.reason, int(problem.kept)) for problem in result.problems)
        atomic_write(problems_file, text.getvalue().encode("utf-8"))
    else:
        problems_file.unlink(missing_ok=True)  # the one of the manifest just replaced
    for problem in result.problems[:INDEX_PROBLEMS_SHOWN]:
        print(f"  - {problem}")
    if len(result.problems) > INDEX_PROBLEMS_SHOWN:
        print(f"  ... and {len(result.problems) - INDEX_PROBLEMS_SHOWN} more")
    print(f"{adapter.name}: {result.summary()}")
    print(f"wrote {out}" + (f"; every problem is listed in {problems_file}" if result.problems else ""))
    return 0


def _check(ns: argparse.Namespace) -> int:
    """Report every problem of a manifest and of its files at once; exit code 1 when there is any."""
    import inspect

    from bilatcf.data.datamodule import MIN_IMAGE_SIZE, BilateralDataModule
    from bilatcf.data.manifest import check_manifest
    from bilatcf.data.pairing import make_pairs
    from bilatcf.data.splits import assign_splits
    from bilatcf.data.validate import check_images, describe, manifest_cache_name
    from bilatcf.errors import ConfigError

    image_size = tuple(ns.image_size or inspect.signature(BilateralDataModule).parameters["image_size"].default)
    if image_size[0] < MIN_IMAGE_SIZE[0] or image_size[1] < MIN_IMAGE_SIZE[1]:
        raise ConfigError(
            f"--image_size {image_size[0]} {image_size[1]}: the models take at least {MIN_IMAGE_SIZE[0]} x "
            f"{MIN_IMAGE_SIZE[1]} pixels (H W); give the --data.image_size you will train with."
        )
    if ns.workers is not None and ns.workers < 1:
        raise ConfigError(f"--workers {ns.workers}: give at least 1 decoding thread, or leave it out.")
    from bilatcf.data.dicom import set_for_processing_policy

    set_for_processing_policy(ns.dicom_for_processing)
    report = check_manifest(ns.manifest, root=ns.root, check_files=False)
    for problem in report.problems:
        print(problem)
    records = report.records
    name = Path(ns.manifest).name
    problems = check_images(
        records,
        image_size,
        cache_name=manifest_cache_name(ns.manifest, ns.dicom_for_processing),
        workers=ns.workers,
        recheck=ns.recheck,
    )
    if problems:
        print(describe(problems, lambda index: f"{name} row {report.rows[index]}", limit=None))
    unusable = {problem.index for problem in problems}
    usable = [record for index, record in enumerate(records) if index not in unusable]
    failed = bool(report.problems or problems)
    try:
        pairs, pairing = make_pairs(assign_splits(usable), task=ns.task) if usable else ([], None)
    except DataError as exc:
        print(f"pairing: {exc}")
        failed = True
    else:
        without = f" of the {len(usable)} usable images" if unusable else ""
        print(f"pairing ({ns.task}){without}: {pairing.summary() if pairing else 'no usable image'}")
        counts = {split: sum(pair.target.split == split for pair in pairs) for split in ("train", "val", "test")}
        empty = [split for split, count in counts.items() if not count]
        print(
            "pairs per split (empty split cells assigned as by fit with --data.split_seed 0): "
            + ", ".join(f"{split} {count}" for split, count in counts.items())
            + (f"; no {' or '.join(empty)} pairs, so the stages that need them would stop" if empty else "")
        )
    print(
        f"{len(records)} images checked, {len(report.problems)} manifest problem(s), {len(problems)} file "
        f"problem(s) in {len(unusable)} image(s)"
    )
    return 1 if failed else 0


def _cache(ns: argparse.Namespace) -> int:
    from bilatcf.data.cache import cache_dir

    folder = cache_dir()
    if ns.build and ns.clear:
        raise ConfigError("bilatcf data cache: give --build or --clear, not both.")
    if ns.build:
        return _build_cache(ns)
    if ns.manifest or ns.image_size:
        raise ConfigError("bilatcf data cache: --manifest and --image_size go with --build DATA_YAML.")
    if ns.clear:
        shutil.rmtree(folder, ignore_errors=True)
        print(f"cleared {folder}")
    else:
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        print(f"{folder}: {size / 2**20:.1f} MiB")
    return 0


def _build_cache(ns: argparse.Namespace) -> int:
    """``data cache --build``: the data config's DataModule fills the cache (``BilateralDataModule.build_cache``)."""
    import yaml

    from bilatcf.cli_checks import import_class
    from bilatcf.data.cache import cache_dir
    from bilatcf.data.datamodule import BilateralDataModule

    path = Path(ns.build)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"--build {path}: cannot read it as a YAML data config ({error}).") from error
    if not isinstance(config, dict) or "class_path" not in config:
        raise ConfigError(
            f"--build {path}: a data config has `class_path` and `init_args` at the top level (like "
            "configs/data/inbreast.yaml, the value of `bilatcf fit --data`)."
        )
    cls = import_class(config["class_path"])
    if not (isinstance(cls, type) and issubclass(cls, BilateralDataModule)):
        raise ConfigError(f"--build {path}: class_path {config['class_path']} is not a BilateralDataModule.")
    init_args = dict(config.get("init_args") or {})
    if ns.manifest:
        init_args["manifest"] = ns.manifest
    if ns.image_size:
        init_args["image_size"] = list(ns.image_size)
    manifest = init_args.get("manifest")
    if manifest and not Path(manifest).is_file():
        raise ConfigError(
            f"--build {path}: manifest {manifest} does not exist; write it with `bilatcf data index` or pass "
            "--manifest PATH."
        )
    datamodule = cls(**init_args)
    cached, unusable = datamodule.build_cache()
    also = f"; {unusable} image(s) cannot be used (`bilatcf data check {manifest}` lists why)" if unusable else ""
    print(f"{cached} image(s) at {tuple(datamodule.hparams.image_size)} in {cache_dir()}{also}")
    return 0
