"""Does a trained model use the other breast? Its test AUC with the true reference and with the reference taken away.

For each checkpoint, the test split of the data it was trained on is scored three times:

* ``true``: the pairs as they are;
* ``self``: the reference replaced by the target itself, so every pair is perfectly symmetric and the other breast says
  nothing (a model that compares the two sides loses what the comparison gave);
* ``other``: the reference replaced by that of another pair of the batch (rolled by half the batch), a real breast of
  another patient: the two sides no longer belong together.

A model that reads only the target (``vanilla``) scores the same three times; the drop from ``true`` is what the
reference contributes to the ranking. The batch's second views (``target_other``, ``reference_other``, four-view
models) are left as they are.

    python benchmarks/reference_ablation.py runs/benchmark/NAME/*/lightning_logs/*/checkpoints/best-*.ckpt
    python benchmarks/reference_ablation.py CKPT [CKPT ...] --name reference-ablation   # benchmarks/results/<name>.md
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import subprocess
import sys
from pathlib import Path

import torch
from torchmetrics.functional.classification import binary_auroc

from bilatcf.checkpoints import read_checkpoint
from bilatcf.data.types import BilateralBatch
from bilatcf.registry import get_model_class

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("true", "self", "other")


def with_reference(batch: BilateralBatch, variant: str) -> BilateralBatch:
    """The batch with its reference as it is (``true``), the target (``self``) or another pair's (``other``)."""
    if variant == "true":
        return batch
    reference = batch.target.clone() if variant == "self" else batch.reference.roll(max(1, len(batch) // 2), dims=0)
    return dataclasses.replace(batch, reference=reference)


@torch.no_grad()
def aucs(checkpoint: str) -> tuple[str, dict[str, float], int]:
    """(model name, AUC per variant, number of scored test pairs) of one checkpoint on its own test split."""
    info = read_checkpoint(checkpoint)
    model = get_model_class(info.model_name).load_from_checkpoint(checkpoint, map_location="cpu").eval()
    datamodule = info.datamodule()  # the data the model was trained on
    datamodule.setup("test")
    scores: dict[str, list[torch.Tensor]] = {variant: [] for variant in VARIANTS}
    labels: list[torch.Tensor] = []
    for batch in datamodule.test_dataloader():
        labels.append(getattr(batch, model.label_field))
        for variant in VARIANTS:
            scores[variant].append(model.predict_step(with_reference(batch, variant)).score.float())
    label = torch.cat(labels)
    known = label >= 0
    result = {v: float(binary_auroc(torch.cat(s)[known], label[known])) for v, s in scores.items()}
    return info.model_name, result, int(known.sum())


def run_name(checkpoint: str) -> str:
    """The run folder a checkpoint belongs to (``.../<run>/lightning_logs/version_N/checkpoints/x.ckpt`` → run)."""
    parts = Path(checkpoint).resolve().parts
    return parts[parts.index("lightning_logs") - 1] if "lightning_logs" in parts else Path(checkpoint).stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="bilatcf checkpoints (best-epoch=*.ckpt of benchmark cells)")
    parser.add_argument("--name", default=None, help="also write benchmarks/results/<name>.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    lines = [
        "| run | model | test pairs | AUC, true reference | reference = target | reference of another pair |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for checkpoint in args.checkpoints:
        name, result, count = aucs(checkpoint)
        lines.append(
            f"| {run_name(checkpoint)} | {name} | {count} | " + " | ".join(f"{result[v]:.3f}" for v in VARIANTS) + " |"
        )
        print(lines[-1], flush=True)
    if args.name:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        command = shlex.join(["python", "benchmarks/reference_ablation.py", *args.checkpoints, "--name", args.name])
        head = f"Command: `{command}` (git {sha.stdout.strip() or 'unknown'}); AUC on each run's own test split.\n\n"
        out = REPO / "benchmarks" / "results" / f"{args.name}.md"
        out.write_text(head + "\n".join(lines) + "\n")
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
