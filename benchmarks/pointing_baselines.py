"""What a pointing-game score means on the test split: chance, a trivial map and the ceiling of a coarse map.

For each tolerance (a fraction of the image height) and over the targets the pointing game counts (label 1 with a GT
lesion mask), prints the expected score of

- ``random``: a peak drawn uniformly among the breast pixels (target > 0);
- ``centre``: a peak at the breast's centre of mass (a map that always points at the middle of the breast);
- ``cells s``: the lesion's share of each s × s cell, upsampled bilinearly like a CAM at output stride s (the best a
  map of that resolution can do when its peak cell is the lesion's).

With ``--checkpoint``, also the model's own ``pointing`` split by predicted class, and with the malignant-class map
(1 − CAM where the predicted class is benign: the benign map of a one-logit CAM head is minus the malignant one).

    python benchmarks/pointing_baselines.py                        # the synthetic default
    python benchmarks/pointing_baselines.py --checkpoint CKPT      # plus one model, on the checkpoint's data
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import bilatcf.models  # noqa: F401  (registers the models)
from bilatcf.checkpoints import read_checkpoint
from bilatcf.data.datamodule import BilateralDataModule
from bilatcf.metrics.localization import POINTING_TOLERANCE, annotated, pointing_hit
from bilatcf.registry import get_model_class

TOLERANCES = (0.0, 1 / 64, 1 / 32, 1 / 16, 1 / 8)
STRIDES = (8, 16, 32)


def counted_targets(datamodule) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(target image, GT lesion) [H, W] of every test target the pointing game counts (label 1, known mask)."""
    rows = []
    for batch in datamodule.test_dataloader():
        keep = (batch.label == 1) & annotated(batch.target_mask, batch.has_mask)
        rows += [(batch.target[i, 0], batch.target_mask[i, 0] > 0.5) for i in torch.nonzero(keep).flatten().tolist()]
    return rows


def baselines(rows: list[tuple[torch.Tensor, torch.Tensor]], tolerance: float) -> dict[str, float]:
    height, width = rows[0][0].shape
    limit = (tolerance * height) ** 2
    scores = {"random": 0.0, "centre": 0.0, **{f"cells {s}": 0.0 for s in STRIDES}}
    for image, lesion in rows:
        breast = torch.nonzero(image > 0).float()
        distance = (breast[:, None, :] - torch.nonzero(lesion).float()[None]).square().sum(-1).amin(1)
        scores["random"] += float((distance <= limit).float().mean())
        centre = torch.zeros(height, width)
        centre[tuple(breast.mean(0).round().long().tolist())] = 1.0
        scores["centre"] += pointing_hit(centre, lesion, tolerance * height)
        for stride in STRIDES:
            cells = F.avg_pool2d(lesion[None, None].float(), stride)
            up = F.interpolate(cells, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
            scores[f"cells {stride}"] += pointing_hit(up, lesion, tolerance * height)
    return {name: value / len(rows) for name, value in scores.items()}


def model_pointing(checkpoint: str, tolerance: float) -> None:
    info = read_checkpoint(checkpoint)
    model = get_model_class(info.model_name).load_from_checkpoint(checkpoint, map_location="cpu").eval()
    datamodule = info.datamodule()  # the data the model was trained on
    datamodule.setup("test")
    hits: dict[str, list[float]] = {"predicted 1": [], "predicted 0": [], "malignant map, predicted 0": []}
    for batch in datamodule.test_dataloader():
        out = model.predict_step(batch)
        keep = (batch.label == 1) & annotated(batch.target_mask, batch.has_mask)
        tolerance_px = tolerance * batch.target.shape[-2]
        for i in torch.nonzero(keep).flatten().tolist():
            lesion, cam = batch.target_mask[i, 0] > 0.5, out.cam[i, 0]
            predicted = int(out.pred[i])
            hits[f"predicted {predicted}"].append(pointing_hit(cam, lesion, tolerance_px))
            if predicted == 0:
                hits["malignant map, predicted 0"].append(pointing_hit(1.0 - cam, lesion, tolerance_px))
    total = hits["predicted 1"] + hits["predicted 0"]
    print(f"{info.model_name}: pointing {sum(total) / len(total):.3f} over {len(total)} targets")
    for name, values in hits.items():
        if values:
            print(f"  {name}: {sum(values) / len(values):.3f} over {len(values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="also score this model's CAM (on the checkpoint's own data)")
    args = parser.parse_args()
    datamodule = BilateralDataModule()
    datamodule.setup("test")
    rows = counted_targets(datamodule)
    print(f"{len(rows)} counted targets, images {tuple(rows[0][0].shape)}")
    for tolerance in TOLERANCES:
        scores = baselines(rows, tolerance)
        pixels = tolerance * rows[0][0].shape[0]
        print(
            f"tolerance {tolerance:.4f} x H ({pixels:.0f} px): " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
        )
    if args.checkpoint:
        model_pointing(args.checkpoint, POINTING_TOLERANCE)


if __name__ == "__main__":
    main()
