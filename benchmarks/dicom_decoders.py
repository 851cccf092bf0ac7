"""DICOM decoders side by side: pydicom against dicomsdl on full-size compressed mammograms, same files, same run.

    python benchmarks/dicom_decoders.py                 # 4 patients (8 files of 4096 × 3328), 3 rounds
    python benchmarks/dicom_decoders.py --patients 2 --rounds 5

Writes the full-size 14-bit MG files of ``dicom_pipeline.py`` into a temporary folder, adds detector noise, re-saves
each one as RLE Lossless and as JPEG 2000 Lossless, then for each transfer syntax decodes every file's stored values
with pydicom (``pixel_array``) and with dicomsdl (``pixelData(storedvalue=True)``), alternating the two decoders
within each round so a change of machine load hits both, and checks that both give the same values. It also times
``read_dicom`` (what bilatcf uses: dicomsdl for RLE when installed). Results go to
``benchmarks/results/dicom_decoders.md`` and into ``docs/benchmarks.md`` between the
``<!-- dicom-decoders:start/end -->`` markers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from dicom_pipeline import FULL_SIZE, write_files  # noqa: E402
from speed import git_sha, update_docs  # noqa: E402


def recompress(paths: list[Path], folder: Path, syntax: str, noise: float) -> list[Path]:
    """Copies of ``paths`` in ``folder`` with detector noise (Gaussian, sd ``noise`` stored levels, on non-zero pixels),
    compressed to ``syntax`` (lossless) by pydicom. Without noise the upsampled synthetic breasts are far smoother than
    a detector's image and compress (and decode) unrealistically well."""
    import pydicom

    folder.mkdir()
    out = []
    rng = np.random.default_rng(0)
    for path in paths:
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array.astype(np.float64)
        limit = (1 << int(ds.BitsStored)) - 1
        stored[stored > 0] += rng.normal(0.0, noise, size=int((stored > 0).sum()))
        ds.PixelData = np.clip(np.rint(stored), 0, limit).astype(np.uint16).tobytes()
        ds.compress(syntax)
        target = folder / path.name
        ds.save_as(target, enforce_file_format=True)
        out.append(target)
    return out


def pydicom_decode(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import pixel_array

    return pixel_array(pydicom.dcmread(path), correct_unused_bits=False)


def dicomsdl_decode(path: Path) -> np.ndarray:
    import dicomsdl

    return dicomsdl.open(str(path)).pixelData(storedvalue=True)


def read_dicom(path: Path) -> np.ndarray:
    from bilatcf.data.dicom import read_dicom as read

    return read(path)


def measure(paths: list[Path], rounds: int) -> dict[str, float]:
    """Median per-file seconds of each decoder over ``rounds`` alternating rounds; raises if their values differ."""
    decoders = {"pydicom": pydicom_decode, "dicomsdl": dicomsdl_decode, "read_dicom": read_dicom}
    for path in paths[:1]:  # warm-up: imports, plugin discovery
        for decode in decoders.values():
            decode(path)
    for path in paths:
        if not np.array_equal(pydicom_decode(path), dicomsdl_decode(path)):
            raise SystemExit(f"{path}: pydicom and dicomsdl decode different values")
    times: dict[str, list[float]] = {name: [] for name in decoders}
    for index in range(rounds):
        order = list(decoders) if index % 2 == 0 else list(reversed(decoders))
        for name in order:
            start = time.perf_counter()
            for path in paths:
                decoders[name](path)
            times[name].append((time.perf_counter() - start) / len(paths))
    return {name: float(np.median(values)) for name, values in times.items()}


def main() -> None:
    import pydicom.uid as uids

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=4, help="synthetic patients (two full-size files each)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per decoder (the median is reported)")
    parser.add_argument("--noise", type=float, default=20.0, help="detector noise sd in stored levels (of 16383)")
    args = parser.parse_args()
    syntaxes = {"RLE Lossless": uids.RLELossless, "JPEG 2000 Lossless": uids.JPEG2000Lossless}
    results, sizes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BILATCF_CACHE"] = str(Path(tmp) / "cache")
        folder = Path(tmp) / "raw"
        folder.mkdir()
        raw = [Path(record.path) for record in write_files(folder, args.patients)]
        for name, syntax in syntaxes.items():
            paths = recompress(raw, Path(tmp) / name.replace(" ", "_"), syntax, args.noise)
            sizes[name] = sum(path.stat().st_size for path in paths) / 2**20
            results[name] = measure(paths, args.rounds)
    command = "python benchmarks/dicom_decoders.py " + " ".join(sys.argv[1:])
    lines = [
        f"Command: `{command.strip()}`  ",
        f"git {git_sha()}, {datetime.date.today().isoformat()}, {os.cpu_count()} CPU cores; {2 * args.patients} MG "
        f"files of {FULL_SIZE[0]} × {FULL_SIZE[1]}, 14 bits stored, detector noise sd {args.noise:g}; median of "
        f"{args.rounds} alternating rounds, per file. Both decoders gave the same stored values on every file.",
        "",
        "| transfer syntax | size | pydicom | dicomsdl | dicomsdl speed-up | `read_dicom` (bilatcf, whole reader) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, t in results.items():
        lines.append(
            f"| {name} | {sizes[name]:.0f} MiB | {t['pydicom']:.3f} s | {t['dicomsdl']:.3f} s | "
            f"{t['pydicom'] / t['dicomsdl']:.2f}× | {t['read_dicom']:.3f} s |"
        )
    markdown = "\n".join(lines) + "\n"
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dicom_decoders.md").write_text(markdown)
    update_docs(markdown, "dicom-decoders")
    print(markdown)


if __name__ == "__main__":
    main()
