"""Ideal-observer AUCs of the synthetic malignancy task, computed from the generator's latent variables.

The task's targets are breasts with a lesion; the label is "malignant". An observer that reads each finding's latent
*suspicion* perfectly but sees one breast can only score it by the most suspicious finding it holds, distractors
included; an observer that also sees the other breast can discard the distractors (they are on both sides). These two
AUCs bound what single-view and bilateral models can reach (a model also has to read suspicion from pixels).

    python benchmarks/synthetic_ceiling.py --num_patients 4000
"""

from __future__ import annotations

import argparse

import torch
from torchmetrics.functional.classification import binary_auroc

from bilatcf.data.synthetic import SyntheticConfig, _draw_patient


def ceilings(config: SyntheticConfig) -> dict[str, float]:
    unilateral, bilateral, labels = [], [], []
    for index in range(config.num_patients):
        patient = _draw_patient(config, index)
        distractor = max((f.suspicion for f in patient.distractors), default=0.0)
        for findings in patient.findings:
            if not findings:
                continue  # not a target of the malignancy task
            lesion = max(f.suspicion for f in findings)
            labels.append(int(any(f.malignant for f in findings)))
            bilateral.append(lesion)
            unilateral.append(max(lesion, distractor))
    target = torch.tensor(labels)
    return {
        "targets": len(labels),
        "malignant_fraction": float(target.float().mean()),
        "ideal_unilateral_auc": float(binary_auroc(torch.tensor(unilateral), target)),
        "ideal_bilateral_auc": float(binary_auroc(torch.tensor(bilateral), target)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_patients", type=int, default=4000)
    parser.add_argument("--distractor_rate", type=float, default=SyntheticConfig.distractor_rate)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = SyntheticConfig(num_patients=args.num_patients, distractor_rate=args.distractor_rate, seed=args.seed)
    for key, value in ceilings(config).items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
