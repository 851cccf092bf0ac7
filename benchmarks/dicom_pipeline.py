"""Real-data pipeline speed: full-size 14-bit DICOM → model-ready tensor, the preprocessed cache, and DataLoader wait.

    python benchmarks/dicom_pipeline.py                      # 24 patients (48 files of 4096 × 3328), 256 × 128
    python benchmarks/dicom_pipeline.py --patients 8 --steps 10

Writes full-size MG DICOM files (14 bits stored, MONOCHROME1 on half the patients, LINEAR and SIGMOID windows; the
synthetic breasts upscaled to 4096 rows and placed on a 3328-column detector with a burned-in label in the far corner)
into a temporary folder, then measures in one run, on the same files:

1. bilatcf's reader + preprocessing (``read_image`` → ``preprocess`` → tensor), against
2. a plain pydicom + OpenCV loop doing the same steps (``pixel_array``, modality LUT, VOI window, MONOCHROME1
   inversion, Otsu threshold + largest connected component crop, flip of right breasts, area resize keeping the
   aspect ratio, zero padding, tensor);
3. a first (decoding) epoch through ``FileSource.load`` on an empty cache, against a cached epoch of the same files;
4. the DataLoader wait of ``sbf`` training steps at the model size with a cache filled by ``BilateralDataModule``
   (time blocked in ``next(loader)`` ÷ time of the whole step).

Results go to ``benchmarks/results/dicom_pipeline.md`` and into ``docs/benchmarks.md`` between the
``<!-- dicom-pipeline:start/end -->`` markers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from speed import git_sha, update_docs  # noqa: E402

FULL_SIZE = (4096, 3328)  # rows × columns of a common FFDM detector


def write_files(folder: Path, patients: int) -> list:
    """Full-size MG DICOM files of ``patients`` synthetic CC pairs and a manifest; returns the records."""
    import cv2

    from bilatcf.data.manifest import write_manifest
    from bilatcf.data.synthetic import SyntheticConfig, generate
    from bilatcf.data.synthetic.dicom_files import file_style, write_mammogram

    dataset = generate(SyntheticConfig(num_patients=patients, image_size=(256, 128), views=("CC",), seed=3))
    height, width = FULL_SIZE
    records, index = [], {}
    for i, record in enumerate(dataset.records):
        breast = cv2.resize(dataset.images[i], (height // 2, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
        detector = np.zeros(FULL_SIZE, dtype=np.float32)
        detector[:, : breast.shape[1]] = breast
        detector[80:200, width - 600 : width - 120] = 1.0  # a burned-in label the crop must drop
        if record.laterality == "R":
            detector = detector[:, ::-1]  # right breasts as acquired: chest wall on the right
        patient = index.setdefault(record.patient_id, len(index))
        path = folder / f"{record.image_id}.dcm"
        write_mammogram(path, np.ascontiguousarray(detector), record, file_style(patient), instance_number=i + 1)
        records.append(replace(record, path=str(path), mask_path="", boxes=()))
    write_manifest(records, folder / "manifest.csv")
    return records


def plain_loop(path: str, laterality: str, size: tuple[int, int]):
    """The same steps with pydicom and OpenCV only: what a researcher would write by hand."""
    import cv2
    import pydicom
    import torch
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=0).astype(np.float32)
    image = values / float(2 ** int(ds.BitsStored) - 1)  # pydicom's windows output the stored range
    if ds.PhotometricInterpretation == "MONOCHROME1":
        image = 1.0 - image
    eight = np.round(image * 255).astype(np.uint8)
    _, mask = cv2.threshold(eight, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count > 1:
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        x, y, w, h = stats[largest, :4]
        image = image[y : y + h, x : x + w]
    if laterality == "R":
        image = image[:, ::-1]
    scale = min(size[0] / image.shape[0], size[1] / image.shape[1])
    h, w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    resized = cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=cv2.INTER_AREA)
    out = np.zeros(size, dtype=np.float32)
    out[:h, :w] = resized
    return torch.from_numpy(out)


def bilatcf_loop(path: str, laterality: str, size: tuple[int, int]):
    import torch

    from bilatcf.data.io import read_image
    from bilatcf.data.preprocess import PreprocessConfig, preprocess

    image, _ = preprocess(read_image(path), laterality, PreprocessConfig(image_size=size))
    return torch.from_numpy(image)


def timed(fn, records, size) -> float:
    start = time.perf_counter()
    for record in records:
        fn(record.path, record.laterality, size)
    return time.perf_counter() - start


def epochs(records, size: tuple[int, int]) -> tuple[float, float]:
    """Seconds of a first epoch through ``FileSource.load`` on an empty cache, then of a cached epoch."""
    from bilatcf.data.datamodule import FileSource
    from bilatcf.data.preprocess import PreprocessConfig

    source = FileSource(PreprocessConfig(image_size=size))
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for record in records:
            source.load(record)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def loader_wait(
    manifest: Path, size: tuple[int, int], steps: int, batch_size: int, workers: int
) -> tuple[float, float]:
    """(mean seconds blocked in next(loader), mean seconds of the whole step) for ``sbf`` on cached images."""
    import torch

    from bilatcf.data.datamodule import BilateralDataModule
    from bilatcf.models.sbf import SBF

    datamodule = BilateralDataModule(
        source="manifest",
        manifest=str(manifest),
        task="abnormality",
        image_size=size,
        batch_size=batch_size,
        num_workers=workers,
    )
    datamodule.build_cache(progress=False)
    datamodule.setup("fit")
    model = SBF()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    waits, totals, done = [], [], 0
    while done < steps + 1:  # the first step (allocation, worker start) is not counted
        iterator = iter(datamodule.train_dataloader())
        while done < steps + 1:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            fetched = time.perf_counter()
            loss = model.classification_loss(model.forward_batch(batch).logits, batch.label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if done:
                waits.append(fetched - start)
                totals.append(time.perf_counter() - start)
            done += 1
    return float(np.mean(waits)), float(np.mean(totals))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=24, help="synthetic patients (two full-size files each)")
    parser.add_argument("--image_size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"))
    parser.add_argument("--steps", type=int, default=20, help="sbf training steps timed for the DataLoader wait")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the wait measurement")
    args = parser.parse_args()
    size = tuple(args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BILATCF_CACHE"] = str(Path(tmp) / "cache")  # an empty cache, removed afterwards
        folder = Path(tmp) / "dicom"
        folder.mkdir()
        start = time.perf_counter()
        records = write_files(folder, args.patients)
        written = time.perf_counter() - start
        mib = sum(Path(r.path).stat().st_size for r in records) / 2**20
        for fn in (bilatcf_loop, plain_loop):  # warm-up: imports, LUT code paths
            fn(records[0].path, records[0].laterality, size)
        # Alternate the two loops so that a change of machine load hits both.
        ours, plain = 0.0, 0.0
        half = len(records) // 2
        for chunk in (records[:half], records[half:]):
            ours += timed(bilatcf_loop, chunk, size)
            plain += timed(plain_loop, chunk, size)
        first, cached = epochs(records, size)
        wait, step = loader_wait(folder / "manifest.csv", size, args.steps, args.batch_size, args.workers)
    n = len(records)
    command = "python benchmarks/dicom_pipeline.py " + " ".join(sys.argv[1:])
    lines = [
        f"Command: `{command.strip()}`  ",
        f"git {git_sha()}, {datetime.date.today().isoformat()}, {os.cpu_count()} CPU cores; {n} MG DICOM files of "
        f"{FULL_SIZE[0]} × {FULL_SIZE[1]}, 14 bits stored ({mib:.0f} MiB, written in {written:.1f} s), to "
        f"{size[0]} × {size[1]}.",
        "",
        "| what | total | per image | ratio |",
        "|---|---:|---:|---:|",
        f"| bilatcf: `read_image` → `preprocess` → tensor | {ours:.2f} s | {1000 * ours / n:.0f} ms | "
        f"{plain / ours:.2f}× the plain loop's speed |",
        f"| plain pydicom + OpenCV loop, same steps | {plain:.2f} s | {1000 * plain / n:.0f} ms | 1 |",
        f"| first epoch, `FileSource.load`, empty cache (decode + preprocess + store) | {first:.2f} s | "
        f"{1000 * first / n:.0f} ms | |",
        f"| cached epoch, `FileSource.load` | {cached:.3f} s | {1000 * cached / n:.1f} ms | "
        f"{first / cached:.0f}× faster than the first |",
        f"| `sbf` training step at {size[0]} × {size[1]}, batch {args.batch_size}, {args.workers} workers, cached "
        f"images (mean of {args.steps}) | {step:.3f} s | | DataLoader wait {wait:.4f} s = {100 * wait / step:.2f}% |",
    ]
    markdown = "\n".join(lines) + "\n"
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "dicom_pipeline.md").write_text(markdown)
    update_docs(markdown, "dicom-pipeline")
    print(markdown)


if __name__ == "__main__":
    main()
