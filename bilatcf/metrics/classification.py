"""Classification metrics: AUC with a bootstrap confidence interval, accuracy, sensitivity and specificity.

Pairs whose label is unknown (-1) are ignored everywhere. AUC follows DisAsymNet §3.2: the point estimate is the
area under the ROC curve (torchmetrics ``binary_auroc``), the 95% CI the percentile interval of 1000 bootstrap resamples
of the test pairs.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.utilities import dim_zero_cat

_NAN = float("nan")
# Bootstrap resamples are drawn in chunks of about this many indices, so memory stays bounded for large test sets.
_CHUNK_ELEMENTS = 1 << 22


def _known(preds: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten, drop label -1, and return float probabilities with 0/1 float labels."""
    preds, labels = preds.detach().flatten().float(), labels.detach().flatten()
    keep = labels >= 0
    return preds[keep], labels[keep].float()


def resampled_aucs(preds: Tensor, labels: Tensor, indices: Tensor) -> Tensor:
    """AUC of many resamples of one set of scored pairs, all at once.

    A resample with index counts ``w`` has AUC = Σ_{i pos, j neg} w_i w_j [s_i > s_j] + ½[s_i = s_j] / (W_pos W_neg)
    (Mann–Whitney, identical to the trapezoidal ROC area with ties). Grouping equal scores and taking a cumulative sum
    of negative counts makes this O(R × N) instead of one ``binary_auroc`` call per resample.

    Args:
        preds: [N] scores.
        labels: [N] 0/1 labels (float or long).
        indices: [R, N'] long, row r lists the pair indices of resample r (drawn with replacement).

    Returns:
        [R] float64 AUCs; NaN for a resample that contains a single class.
    """
    _, group = torch.unique(preds, sorted=True, return_inverse=True)
    num_groups = int(group.max()) + 1 if group.numel() else 0
    positive = (labels == 1).double()
    picked_group = group[indices]
    pos = torch.zeros(indices.shape[0], num_groups, dtype=torch.float64, device=preds.device)
    neg = torch.zeros_like(pos)
    pos.scatter_add_(1, picked_group, positive[indices])
    neg.scatter_add_(1, picked_group, 1.0 - positive[indices])
    negatives_below = torch.cumsum(neg, dim=1) - neg
    wins = (pos * (negatives_below + 0.5 * neg)).sum(dim=1)
    pairs = pos.sum(dim=1) * neg.sum(dim=1)
    return torch.where(pairs > 0, wins / pairs.clamp_min(1.0), torch.full_like(wins, _NAN))


def _concat(state: list[Tensor] | Tensor) -> Tensor:
    """A list state as one tensor (after a DDP sync torchmetrics has already concatenated it)."""
    if isinstance(state, Tensor):
        return state
    return dim_zero_cat(state) if state else torch.zeros(0)


def _canonical_order(preds: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Sort pairs by (score, label) so the bootstrap does not depend on the order ranks gathered them in under DDP."""
    by_label = torch.argsort(labels, stable=True)
    order = by_label[torch.argsort(preds[by_label], stable=True)]
    return preds[order], labels[order]


class BootstrapAUROC(Metric):
    """Binary AUROC with a seeded percentile bootstrap confidence interval.

    ``compute`` returns ``{"auc", "auc_ci_low", "auc_ci_high"}`` (0-d float64 tensors). With fewer than two classes
    all three are NaN. Resamples that contain a single class are skipped (they have no AUC); the interval is taken over
    the remaining ones. The generator is a CPU ``torch.Generator`` seeded at every ``compute``, and pairs are put in a
    canonical (score, label) order first, so the interval is repeatable and the same on CPU and GPU and for any number
    of DDP ranks.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95) -> None:
        super().__init__()
        if num_bootstrap < 1 or not 0.0 < confidence < 1.0:
            raise ValueError(f"need num_bootstrap >= 1 and 0 < confidence < 1, got {num_bootstrap}, {confidence}")
        self.num_bootstrap = num_bootstrap
        self.seed = seed
        self.confidence = confidence
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, labels: Tensor) -> None:
        """Add scored pairs: ``preds`` [B] probabilities, ``labels`` [B] in {1, 0, -1 unknown}."""
        preds, labels = _known(preds, labels)
        self.preds.append(preds)
        self.labels.append(labels)

    def compute(self) -> dict[str, Tensor]:
        nan = torch.tensor(_NAN, dtype=torch.float64)
        preds, labels = _concat(self.preds).cpu(), _concat(self.labels).cpu()
        if labels.numel() == 0 or labels.min() == labels.max():
            return {"auc": nan, "auc_ci_low": nan, "auc_ci_high": nan}
        preds, labels = _canonical_order(preds.float(), labels.float())
        auc = binary_auroc(preds, labels.long(), thresholds=None).double()
        aucs = self._bootstrap(preds, labels)
        aucs = aucs[~torch.isnan(aucs)]
        if aucs.numel() == 0:
            return {"auc": auc, "auc_ci_low": nan, "auc_ci_high": nan}
        tail = (1.0 - self.confidence) / 2.0
        low, high = torch.quantile(aucs, torch.tensor([tail, 1.0 - tail], dtype=torch.float64))
        return {"auc": auc, "auc_ci_low": low, "auc_ci_high": high}

    def _bootstrap(self, preds: Tensor, labels: Tensor) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        n = preds.numel()
        chunk = max(1, _CHUNK_ELEMENTS // n)
        aucs = []
        for start in range(0, self.num_bootstrap, chunk):
            rows = min(chunk, self.num_bootstrap - start)
            indices = torch.randint(n, (rows, n), generator=generator)
            aucs.append(resampled_aucs(preds, labels, indices))
        return torch.cat(aucs)


class ClassificationRates(Metric):
    """Accuracy, sensitivity and specificity of ``prob >= threshold`` (labels -1 ignored).

    ``compute`` returns ``{"acc", "sensitivity", "specificity"}``; a rate whose denominator is empty (e.g. sensitivity
    without positives) is NaN.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold
        for name in ("tp", "fp", "tn", "fn"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, labels: Tensor) -> None:
        """Add scored pairs: ``preds`` [B] probabilities, ``labels`` [B] in {1, 0, -1 unknown}."""
        preds, labels = _known(preds, labels)
        predicted = preds >= self.threshold
        positive = labels == 1
        self.tp += (predicted & positive).sum()
        self.fp += (predicted & ~positive).sum()
        self.tn += (~predicted & ~positive).sum()
        self.fn += (~predicted & positive).sum()

    def compute(self) -> dict[str, Tensor]:
        return {
            "acc": _ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn),
            "sensitivity": _ratio(self.tp, self.tp + self.fn),
            "specificity": _ratio(self.tn, self.tn + self.fp),
        }


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, NaN when the denominator is zero (the rate is undefined, not 0)."""
    return numerator / denominator if denominator > 0 else torch.full_like(numerator, _NAN)
