"""Scoring cost per image of the anomaly models: AnoGAN's latent search against f-AnoGAN's one-pass encoder.

The point of f-AnoGAN's izif encoder is to replace AnoGAN's per-image optimisation of z (Γ Adam steps through G and D)
by one forward pass. Both models are built with their defaults at the synthetic data's image size and score the same
batch of synthetic targets; the networks are untrained, which does not change the cost of a step. Results go to
``benchmarks/results/anomaly_scoring.md`` and into ``docs/benchmarks.md`` between the ``anomaly-scoring`` markers.

    python benchmarks/anomaly_scoring.py                       # Γ = 500 (AnoGAN's), 8 images, 128×64
    python benchmarks/anomaly_scoring.py --search_steps 100 --images 4
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

from speed import git_sha, update_docs  # noqa: E402

from bilatcf.data.synthetic import SyntheticConfig, load_or_generate  # noqa: E402
from bilatcf.registry import get_model_class  # noqa: E402


def seconds_per_image(model: torch.nn.Module, images: torch.Tensor, repeats: int) -> float:
    """Mean wall time of scoring ``images`` (forward, whatever it optimises inside), divided by the image count."""
    model(images, images)  # warm-up: allocations, first-call dispatch
    start = time.perf_counter()
    for _ in range(repeats):
        model(images, images)
    return (time.perf_counter() - start) / repeats / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="images scored per call")
    parser.add_argument("--search_steps", type=int, default=500, help="AnoGAN's Γ (its default: 500)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of f-AnoGAN (AnoGAN: one)")
    args = parser.parse_args()
    torch.manual_seed(0)
    size = (128, 64)
    data = load_or_generate(SyntheticConfig(num_patients=max(4, args.images), image_size=size))
    images = torch.from_numpy(data.images[: args.images]).float()[:, None]
    steps = args.search_steps
    anogan = get_model_class("anogan")(image_size=size, search_steps=steps, val_search_steps=steps).eval()
    fanogan = get_model_class("fanogan")(image_size=size).eval()
    anogan_time = seconds_per_image(anogan, images, 1)
    with torch.no_grad():
        fanogan_time = seconds_per_image(fanogan, images, args.repeats)
    markdown = (
        f"Command: `python benchmarks/anomaly_scoring.py {' '.join(sys.argv[1:])}`".rstrip() + "  \n"
        f"git {git_sha()}, {datetime.date.today().isoformat()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {args.images} synthetic images of {size[0]}×{size[1]}, "
        "default networks.\n\n"
        "| model | scoring | seconds per image | images per second |\n|---|---|---:|---:|\n"
        f"| anogan | latent search, Γ = {steps} Adam steps | {anogan_time:.3f} | {1 / anogan_time:.2f} |\n"
        f"| fanogan | one encoder + generator pass | {fanogan_time:.4f} | {1 / fanogan_time:.1f} |\n\n"
        f"f-AnoGAN scores an image {anogan_time / fanogan_time:.0f}× faster than AnoGAN.\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "anomaly_scoring.md").write_text(markdown)
    update_docs(markdown, "anomaly-scoring")
    print(markdown)


if __name__ == "__main__":
    main()
