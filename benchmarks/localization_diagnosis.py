"""Why is the top-1 localization error what it is? Break it down for one checkpoint on the test split of its data.

Reports the fraction of test pairs classified correctly, the fraction whose CAM box (largest component above 20 % of the
min–max normalised map, as in `TopOneLocError`) overlaps a GT box with IoU ≥ 0.1 whatever the class (with the map of the
predicted class and with the malignant-class map), the median box size and IoU, and per predicted class how often the
map's peak lies outside the breast (the benign-class map of a one-logit head is minus the malignant one, so it can peak
on the background).

    python benchmarks/localization_diagnosis.py CHECKPOINT   # e.g. a best-epoch=*.ckpt under runs/quality/
"""

from __future__ import annotations

import argparse
import statistics

import torch

from bilatcf.checkpoints import read_checkpoint
from bilatcf.metrics.localization import box_iou, heatmap_to_box
from bilatcf.registry import get_model_class


def best_iou(heatmap: torch.Tensor, boxes: list) -> tuple[float, float]:
    """(IoU with the best-matching GT box, box area as a fraction of the image) of the heatmap's CAM box."""
    box = heatmap_to_box(heatmap)
    if box is None or not boxes:
        return 0.0, 0.0
    area = (box[2] - box[0]) * (box[3] - box[1]) / heatmap.numel()
    return max(box_iou(box, gt) for gt in boxes), area


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    args = parser.parse_args()
    info = read_checkpoint(args.checkpoint)  # a clear error for a file that is not a bilatcf checkpoint
    name = info.model_name
    model = get_model_class(name).load_from_checkpoint(args.checkpoint, map_location="cpu").eval()
    datamodule = info.datamodule()  # the data the model was trained on
    datamodule.setup("test")
    correct, hit, hit_malignant, areas, ious, predicted, peak_outside = [], [], [], [], [], [], []
    for batch in datamodule.test_dataloader():
        out = model.predict_step(batch)
        for i in range(len(batch)):
            cam, boxes = out.cam[i, 0], batch.meta[i].get("boxes", [])
            malignant_map = cam if int(out.pred[i]) == 1 else 1.0 - cam
            iou, area = best_iou(cam, boxes)
            correct.append(int(out.pred[i]) == int(batch.label[i]))
            predicted.append(int(out.pred[i]))
            hit.append(iou >= 0.1)
            hit_malignant.append(best_iou(malignant_map, boxes)[0] >= 0.1)
            areas.append(area)
            ious.append(iou)
            peak_outside.append(float(batch.target[i, 0].flatten()[cam.argmax()]) <= 0.0)
    n = len(correct)
    print(f"model {name}, {n} test pairs")
    print(f"class correct: {sum(correct) / n:.3f}")
    print(f"top-1 loc error: {1 - sum(c and h for c, h in zip(correct, hit)) / n:.3f}")
    print(
        f"IoU >= 0.1 whatever the class: predicted-class map {sum(hit) / n:.3f}, "
        f"malignant-class map {sum(hit_malignant) / n:.3f}"
    )
    print(
        f"median CAM box area (fraction of the image): {statistics.median(areas):.3f}; "
        f"median IoU: {statistics.median(ious):.3f}"
    )
    for label, cls in (("benign", 0), ("malignant", 1)):
        rows = [k for k in range(n) if predicted[k] == cls]
        if rows:
            print(
                f"predicted {label} ({len(rows)} pairs): IoU >= 0.1 for {sum(hit[k] for k in rows) / len(rows):.3f}, "
                f"CAM peak outside the breast for {sum(peak_outside[k] for k in rows) / len(rows):.3f}"
            )


if __name__ == "__main__":
    main()
