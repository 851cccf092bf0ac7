"""DisAsymNet's Fig. 3 for a trained run: a few test pairs with their reconstructed normal breast.

One row per pair (pairs whose target has an annotated lesion first, then one normal pair): the target with its GT
outline, the reference, the reconstructed normal image x_n (``counterfactual``), the true healthy image where the data
has one (synthetic data), the abnormal channel x_ab (``explanation``) and the CAM over the target with the GT outline.
The panel is bilatcf's own (``bilatcf.viz.pair_panel``, as the figure callback draws it), on the test split of the data
the checkpoint was trained on.

    python benchmarks/disasymnet_figure.py CHECKPOINT                       # writes disasymnet_fig3.png
    python benchmarks/disasymnet_figure.py CHECKPOINT --out fig.png --pairs 6 --split val
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from bilatcf.checkpoints import read_checkpoint
from bilatcf.errors import ConfigError
from bilatcf.metrics.callbacks import figure_sample
from bilatcf.models.disasymnet import DisAsymNet
from bilatcf.registry import get_model_class
from bilatcf.viz import pair_panel


def select_samples(model: DisAsymNet, loader: Any, pairs: int) -> list[dict[str, Any]]:
    """Up to ``pairs`` pairs whose target has an annotated lesion, then one normal pair, as figure samples."""
    lesions, normal = [], []
    for batch in loader:
        output = model.predict_step(batch)
        for row in range(len(batch)):
            annotated = bool(batch.has_mask[row]) and float(batch.target_mask[row].sum()) > 0
            if annotated and len(lesions) < pairs:
                lesions.append(figure_sample(output, row, model.label_field))
            elif not annotated and int(batch.asym_label[row]) == 0 and not normal:
                normal.append(figure_sample(output, row, model.label_field))
        if len(lesions) >= pairs and normal:
            break
    return lesions + normal


def merge(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """One sample dict with a row per pair; a column only some pairs have (the true healthy image) is dropped."""
    keys = set.intersection(*(set(sample) for sample in samples))
    merged: dict[str, Any] = {}
    for key in keys:
        values = [sample[key] for sample in samples]
        merged[key] = torch.cat(values) if isinstance(values[0], torch.Tensor) else sum(values, [])
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a DisAsymNet checkpoint (best-epoch=*.ckpt or last.ckpt of a run)")
    parser.add_argument("--out", default="disasymnet_fig3.png", help="the PNG to write")
    parser.add_argument("--pairs", type=int, default=4, help="pairs with a lesion (one normal pair is added)")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    args = parser.parse_args()
    info = read_checkpoint(args.checkpoint)  # a clear error for a file that is not a bilatcf checkpoint
    cls = get_model_class(info.model_name)
    if not issubclass(cls, DisAsymNet):
        raise SystemExit(f"{args.checkpoint} holds a '{info.model_name}' model; this figure needs a disasymnet one.")
    model = cls.load_from_checkpoint(args.checkpoint, map_location="cpu").eval()
    if model.network.decoder is None:
        raise ConfigError(
            f"{args.checkpoint} was trained without the decoder (decoder: false), so it reconstructs no normal image; "
            "use a run of configs/models/disasymnet.yaml or an ablation with decoder: true."
        )
    datamodule = info.datamodule()  # the data the model was trained on
    datamodule.setup(args.split if args.split == "test" else "fit")
    samples = select_samples(model, getattr(datamodule, f"{args.split}_dataloader")(), args.pairs)
    if not samples:
        raise SystemExit(f"the {args.split} split has no pair to draw.")
    path = pair_panel(merge(samples), Path(args.out))
    print(f"wrote {path} ({len(samples)} pairs)")


if __name__ == "__main__":
    main()
