"""Data-pipeline throughput: synthetic generation (images/s) and the BilateralDataModule's batches (pairs/s).

    python benchmarks/data_pipeline.py                  # both
    python benchmarks/data_pipeline.py --what synth --num_patients 500 --image_size 256 128

Results go to ``benchmarks/results/data_pipeline.md`` and into ``docs/benchmarks.md`` between the ``data`` markers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from speed import git_sha, update_docs  # noqa: E402


def bench_synth(num_patients: int, image_size: tuple[int, int]) -> list[str]:
    from bilatcf.data.synthetic import SyntheticConfig, generate

    generate(SyntheticConfig(num_patients=4, image_size=image_size))  # warm-up (FFT plans, imports)
    start = time.perf_counter()
    dataset = generate(SyntheticConfig(num_patients=num_patients, image_size=image_size, seed=1))
    seconds = time.perf_counter() - start
    return [
        f"| synthetic generation, {image_size[0]}×{image_size[1]} | {len(dataset)} images | {seconds:.2f} s | "
        f"{len(dataset) / seconds:.0f} images/s |"
    ]


def bench_loader(num_patients: int, image_size: tuple[int, int], batch_size: int) -> list[str]:
    from bilatcf.data.datamodule import BilateralDataModule

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["BILATCF_CACHE"] = cache
        start = time.perf_counter()
        datamodule = BilateralDataModule(num_patients=num_patients, image_size=image_size, batch_size=batch_size)
        datamodule.setup("fit")
        rows.append(
            f"| first setup (generate + cache + split + pair), {num_patients} patients | "
            f"{datamodule.num_pairs['train']} train pairs | {time.perf_counter() - start:.2f} s | |"
        )
        start = time.perf_counter()
        cached = BilateralDataModule(num_patients=num_patients, image_size=image_size, batch_size=batch_size)
        cached.setup("fit")
        rows.append(f"| cached setup (load from cache) | | {time.perf_counter() - start:.2f} s | |")
        start = time.perf_counter()
        pairs = sum(len(batch) for batch in cached.train_dataloader())
        seconds = time.perf_counter() - start
        rows.append(
            f"| one training epoch of batches (augmented, 0 workers) | {pairs} pairs | {seconds:.2f} s | "
            f"{pairs / seconds:.0f} pairs/s |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", choices=("synth", "loader", "all"), default="all")
    parser.add_argument("--num_patients", type=int, default=500)
    parser.add_argument("--image_size", type=int, nargs=2, default=(256, 128))
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args()
    size = tuple(args.image_size)
    rows = []
    if args.what in ("synth", "all"):
        rows += bench_synth(args.num_patients, size)
    if args.what in ("loader", "all"):
        rows += bench_loader(args.num_patients, size, args.batch_size)
    import torch

    markdown = (
        "\n".join(
            [
                f"Command: `python benchmarks/data_pipeline.py {' '.join(sys.argv[1:])}`  ",
                f"git {git_sha()}, {datetime.date.today().isoformat()}, {os.cpu_count()} CPU cores, torch threads "
                f"{torch.get_num_threads()}.",
                "",
                "| what | size | time | throughput |",
                "|---|---:|---:|---:|",
                *rows,
            ]
        )
        + "\n"
    )
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "data_pipeline.md").write_text(markdown)
    update_docs(markdown, "data")
    print(markdown)


if __name__ == "__main__":
    main()
