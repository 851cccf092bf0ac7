"""Training and inference throughput (pairs/s) and peak memory of every registered model, with each model's cost ratio
to ``sbf`` (two backbone passes: the floor of any bilateral method) measured in the same run.

Each model runs in its own process (clean peak-memory reading), on the same fixed synthetic batch repeated, so data
loading is excluded: this measures the method. Results go to ``benchmarks/results/speed.{csv,md}`` and into
``docs/benchmarks.md`` between the ``speed`` markers.

    python benchmarks/speed.py                       # every model, resnet18, 128×64, batch 16
    python benchmarks/speed.py --models sbf cgn --backbone test_resnet --steps 5
    python benchmarks/speed.py --name speed-image --models cyclegan fixedpoint --steps 2 --warmup 1   # own table
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def measure(
    name: str, init_args: dict, backbone: str, image_size: tuple[int, int], batch_size: int, steps: int, warmup: int
) -> dict:
    """Time `steps` training steps and `steps` inference batches of one model (in this process)."""
    import inspect

    from torch.utils.data import DataLoader

    from bilatcf.data.datamodule import BilateralDataModule
    from bilatcf.registry import get_model_class

    pl.seed_everything(0, verbose=False)
    cls = get_model_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {**init_args, **({"backbone": backbone} if "backbone" in accepted else {})}
    model = cls(**kwargs)
    datamodule = BilateralDataModule(
        num_patients=200, image_size=image_size, batch_size=batch_size, augment=False, **cls.data_options
    )
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    model.build_training_state(datamodule)  # what fit builds from the training split (e.g. a tumour bank)
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=-1,
        max_epochs=1,
        limit_train_batches=warmup + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, train_dataloaders=DataLoader([batch] * (warmup + steps), batch_size=None))
    model.eval()
    for _ in range(warmup):
        model.predict_step(batch)
    start = time.perf_counter()
    for _ in range(steps):
        model.predict_step(batch)
    infer_seconds = time.perf_counter() - start
    return {
        "model": name,
        "train_pairs_per_s": batch_size * steps / timer.seconds,
        "infer_pairs_per_s": batch_size * steps / infer_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


class StepTimer(pl.Callback):
    """Sums the wall time of training steps after ``warmup`` steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.seconds = warmup, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.seconds += time.perf_counter() - self.start


def git_sha() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cases(models: list[str] | None) -> list[tuple[str, str, dict]]:
    """(label, registry name, init_args) for the requested models, plus `name:key=value,...` variants."""
    from bilatcf.registry import list_models

    result = []
    for spec in models or list_models():
        name, _, options = spec.partition(":")
        init_args = {}
        for item in filter(None, options.split(",")):
            key, _, value = item.partition("=")
            init_args[key] = yaml.safe_load(value)
        result.append((spec, name, init_args))
    if not any(name == "sbf" and not init for _, name, init in result):
        result.insert(0, ("sbf", "sbf", {}))
    return result


def render_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Command: `{meta['command']}`  ",
        f"git {meta['git']}, {meta['date']}, {meta['machine']}, torch {meta['torch']}, {meta['threads']} threads; "
        f"backbone {meta['backbone']}, image {meta['image_size'][0]}×{meta['image_size'][1]}, batch "
        f"{meta['batch_size']}, {meta['steps']} timed steps after {meta['warmup']} warm-up steps.",
        "",
        "| model | train pairs/s | train cost ÷ sbf | inference pairs/s | peak RSS (MB) | params (M) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['train_pairs_per_s']:.1f} | {row['cost_ratio_to_sbf']:.2f} | "
            f"{row['infer_pairs_per_s']:.1f} | {row['peak_rss_mb']:.0f} | {row['params_m']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def update_docs(markdown: str, name: str = "speed") -> None:
    docs = REPO / "docs" / "benchmarks.md"
    text = docs.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        docs.write_text(f"{head}{start}\n{markdown}{end}{rest.split(end, 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="registry names, optionally with options: cgn:level=image")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image_size", type=int, nargs=2, default=(128, 64))
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--name", default="speed", help="results name: benchmarks/results/<name>.{csv,md} and the docs markers"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one case in this process
    args = parser.parse_args()
    if args.one:
        label, name, init_args = json.loads(args.one)
        row = measure(name, init_args, args.backbone, tuple(args.image_size), args.batch_size, args.steps, args.warmup)
        print("RESULT " + json.dumps({**row, "model": label}))
        return
    rows = []
    for case in cases(args.models):
        command = [
            sys.executable,
            __file__,
            "--one",
            json.dumps(case),
            "--backbone",
            args.backbone,
            "--image_size",
            *map(str, args.image_size),
            "--batch_size",
            str(args.batch_size),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
        ]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        line = next((ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{case[0]}: failed\n{result.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(line[len("RESULT ") :]))
        print(f"{rows[-1]['model']}: {rows[-1]['train_pairs_per_s']:.1f} train pairs/s", flush=True)
    sbf = next(r for r in rows if r["model"] == "sbf")
    for row in rows:
        row["cost_ratio_to_sbf"] = sbf["train_pairs_per_s"] / row["train_pairs_per_s"]
    meta = {
        "command": "python benchmarks/speed.py " + " ".join(sys.argv[1:]),
        "git": git_sha(),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "backbone": args.backbone,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{args.name}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0].keys(), "git", "date"])
        writer.writeheader()
        writer.writerows({**row, "git": meta["git"], "date": meta["date"]} for row in rows)
    markdown = render_markdown(rows, meta)
    (RESULTS / f"{args.name}.md").write_text(markdown)
    update_docs(markdown, args.name)
    print(markdown)


if __name__ == "__main__":
    main()
