"""Counterfactual and explanation metrics: NCC, non-resemblance / masked SSIM, feature Fréchet distance, GT fidelity.

* Explanation maps (CX-GAN Tables 1–4): IoU/Dice use :class:`~bilatcf.metrics.localization.SegmentationScores` on
  ``|explanation|`` (rule :data:`EXPL_THRESHOLD_RULE`); NCC is :class:`ExplanationNCC`.
* Image counterfactuals: :class:`MaskedImageComparison` gives MAE inside / outside the GT lesion and SSIM with the
  lesion removed. Non-resemblance (CX-GAN Eq. 11–12, with the absolute value the paper's formula omits) is 1 − MAE
  between the input and its counterfactual; masked SSIM is its ``ssim_out``; GT fidelity compares the counterfactual
  with the true healthy image.
* Feature counterfactuals (CGN §IV-F, BR-GAN §3.2): :class:`FeatureFrechetDistance` and :class:`FeatureFidelityRatio`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure

from bilatcf.metrics.localization import threshold_rule

_NAN = float("nan")
#: Default binarisation of explanation maps, as written into metrics.json under ``expl_threshold_rule``.
EXPL_THRESHOLD_RULE = threshold_rule(0.5, absolute=True)


def _zero() -> Tensor:
    return torch.tensor(0.0, dtype=torch.float64)


def _mean_or_nan(total: Tensor, count: Tensor) -> Tensor:
    return total / count if count > 0 else torch.full_like(total, _NAN)


def normalized_cross_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Per-image NCC = mean((a−μa)(b−μb)) / (σa σb) of [B, ...] maps (population σ), in float64.

    A constant map has no correlation with anything: its NCC is 0 rather than 0/0.
    """
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    denominator = (a.square().sum(1) * b.square().sum(1)).sqrt()
    return torch.where(denominator > 0, (a * b).sum(1) / denominator.clamp_min(1e-300), torch.zeros_like(denominator))


class ExplanationNCC(Metric):
    """NCC between the GT lesion mask and the absolute explanation map (CX-GAN Table 1, after VA-GAN).

    Averaged over images with a non-empty GT mask (an empty mask has no variance). ``compute`` returns
    ``{"ncc", "ncc_std"}``, the std being the sample standard deviation over images (NaN for fewer than two).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("total", "total_sq", "count"):
            self.add_state(name, default=_zero(), dist_reduce_fx="sum")

    def update(self, explanation: Tensor, mask: Tensor, has_mask: Tensor) -> None:
        """Add images: ``explanation`` and ``mask`` [B, 1, H, W], ``has_mask`` [B] bool."""
        keep = has_mask.bool() & (mask > 0.5).flatten(1).any(1)
        ncc = normalized_cross_correlation((mask[keep] > 0.5).float(), explanation[keep].abs())
        self.total += ncc.sum()
        self.total_sq += ncc.square().sum()
        self.count += keep.sum()

    def compute(self) -> dict[str, Tensor]:
        mean = _mean_or_nan(self.total, self.count)
        if self.count < 2:
            return {"ncc": mean, "ncc_std": torch.full_like(mean, _NAN)}
        variance = (self.total_sq - self.count * mean.square()) / (self.count - 1)
        return {"ncc": mean, "ncc_std": variance.clamp_min(0.0).sqrt()}


def masked_ssim(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Per-image SSIM of [B, 1, H, W] images in [0, 1] after zeroing the ``mask`` region in both (CX-GAN §4.4).

    torchmetrics SSIM (Gaussian 11×11, σ = 1.5, data range 1) in float32: float64 convolutions are ~10× slower on CPU.
    In float32 two identical images can score 1 − 3e-5 rather than 1 (torchmetrics clamps σ² at 0 but not σxy).
    """
    outside = (mask <= 0.5).to(a.dtype)
    return structural_similarity_index_measure(
        (a * outside).float(), (b * outside).float(), data_range=1.0, reduction="none"
    ).double()


class MaskedImageComparison(Metric):
    """Compare two images region by region: mean |a − b| inside and outside the GT lesion, and SSIM outside it.

    Each image counts once: region means are taken per image, then averaged over the images where the region is
    non-empty. ``compute`` returns ``{"mae_in", "mae_out", "ssim_out"}``. The caller chooses the rows (``valid``),
    e.g. the images with a known mask, or those that also have a true healthy image.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("mae_in", "count_in", "mae_out", "ssim_out", "count_out"):
            self.add_state(name, default=_zero(), dist_reduce_fx="sum")

    def update(self, a: Tensor, b: Tensor, mask: Tensor, valid: Tensor) -> None:
        """Add images: ``a``, ``b``, ``mask`` [B, 1, H, W] (images in [0, 1]), ``valid`` [B] bool rows to use."""
        valid = valid.bool()
        a, b, lesion = a[valid].double(), b[valid].double(), (mask[valid] > 0.5).flatten(1)
        error = (a - b).abs().flatten(1)
        inside, outside = lesion.sum(1), (~lesion).sum(1)
        has_in, has_out = inside > 0, outside > 0
        self.mae_in += ((error * lesion).sum(1) / inside.clamp_min(1))[has_in].sum()
        self.count_in += has_in.sum()
        self.mae_out += ((error * ~lesion).sum(1) / outside.clamp_min(1))[has_out].sum()
        self.count_out += has_out.sum()
        if has_out.any():
            self.ssim_out += masked_ssim(a[has_out], b[has_out], mask[valid][has_out]).sum()

    def compute(self) -> dict[str, Tensor]:
        return {
            "mae_in": _mean_or_nan(self.mae_in, self.count_in),
            "mae_out": _mean_or_nan(self.mae_out, self.count_out),
            "ssim_out": _mean_or_nan(self.ssim_out, self.count_out),
        }


def lesion_positions(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """[B, 1, h, w] bool: feature positions whose image cell contains any lesion pixel (adaptive max pooling).

    Max pooling is the conservative choice: a position touched by a lesion is never counted as healthy tissue.
    """
    return F.adaptive_max_pool2d((mask > 0.5).float(), size) > 0


def _feature_rows(features: Tensor, keep: Tensor | None) -> Tensor:
    """[B, C, h, w] → [N, C] float64 vectors, one per kept spatial position and sample."""
    rows = features.detach().double().permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    return rows if keep is None else rows[keep.permute(0, 2, 3, 1).reshape(-1)]


def _sqrtm_psd(matrix: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues clamped at 0 against rounding)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T


def frechet_distance(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> Tensor:
    """‖μ1−μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^{1/2}) in float64, clamped at 0.

    Tr((Σ1Σ2)^{1/2}) is the sum of the square roots of the eigenvalues of √Σ1 Σ2 √Σ1, a symmetric PSD matrix with the
    same spectrum as Σ1Σ2; this avoids the non-symmetric matrix square root (and scipy) and stays stable for
    rank-deficient covariances.
    """
    mean1, cov1, mean2, cov2 = (t.double() for t in (mean1, cov1, mean2, cov2))
    root1 = _sqrtm_psd(cov1)
    middle = root1 @ cov2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0.0).sqrt().sum()
    distance = (mean1 - mean2).square().sum() + torch.trace(cov1) + torch.trace(cov2) - 2.0 * trace_sqrt
    return distance.clamp_min(0.0)


class FeatureFrechetDistance(Metric):
    """Fréchet distance between two sets of feature vectors (CGN §IV-F; backbone features, no Inception network).

    Every spatial position of every sample is one vector. Only counts, sums and sums of outer products are accumulated
    (float64), so the statistics sum exactly across DDP ranks; the C×C states take their shape from the first update.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for side in ("a", "b"):
            for stat in ("count", "sum", "outer"):
                self.add_state(f"{side}_{stat}", default=_zero(), dist_reduce_fx="sum")

    def update(self, features_a: Tensor, features_b: Tensor, keep: Tensor | None = None) -> None:
        """Add ``features_a`` and ``features_b`` [B, C, h, w]; ``keep`` [B, 1, h, w] bool selects positions of both."""
        for side, features in (("a", features_a), ("b", features_b)):
            rows = _feature_rows(features, keep)
            setattr(self, f"{side}_count", getattr(self, f"{side}_count") + rows.shape[0])
            setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + rows.sum(0))
            setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + rows.T @ rows)

    def compute(self) -> Tensor:
        if self.a_count < 2 or self.b_count < 2:
            return torch.full_like(self.a_count, _NAN)
        mean_a, cov_a = _moments(self.a_count, self.a_sum, self.a_outer)
        mean_b, cov_b = _moments(self.b_count, self.b_sum, self.b_outer)
        return frechet_distance(mean_a, cov_a, mean_b, cov_b)


def _moments(count: Tensor, total: Tensor, outer: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance from a count, a sum and a sum of outer products."""
    mean = total / count
    return mean, (outer - count * torch.outer(mean, mean)) / (count - 1)


class FeatureFidelityRatio(Metric):
    """Ground-truth fidelity of feature counterfactuals (synthetic data, where H_true = backbone(healthy) is known).

    * ``ratio_in`` = ‖H_C − H_true‖ / ‖H_T − H_true‖ over lesion positions: < 1 means the counterfactual moved the
      target's features towards the truth.
    * ``ratio_out`` = ‖H_C − H_T‖ / ‖H_T‖ over lesion-free positions: small means healthy tissue was preserved.

    Norms are Frobenius norms over all feature values of the region pooled across the dataset (sums of squares are
    accumulated), so images with tiny lesions do not produce unstable per-image ratios.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("num_in", "den_in", "num_out", "den_out"):
            self.add_state(name, default=_zero(), dist_reduce_fx="sum")

    def update(
        self,
        target_features: Tensor,
        cf_features: Tensor,
        lesion: Tensor,
        has_mask: Tensor,
        healthy_features: Tensor | None = None,
        has_healthy: Tensor | None = None,
    ) -> None:
        """Add a batch.

        Args:
            target_features, cf_features: [B, C, h, w] H_T and H_C.
            lesion: [B, 1, h, w] bool lesion positions (:func:`lesion_positions`).
            has_mask: [B] bool, rows whose lesion mask is known (others are skipped).
            healthy_features: [B, C, h, w] H_true, valid where ``has_healthy``; None when no row has it.
            has_healthy: [B] bool.
        """
        known = has_mask.bool()[:, None, None, None]
        target, cf = target_features.detach().double(), cf_features.detach().double()
        outside = (known & ~lesion).to(target.dtype)
        self.num_out += ((cf - target).square() * outside).sum()
        self.den_out += (target.square() * outside).sum()
        if healthy_features is None or has_healthy is None:
            return
        rows = has_mask.bool() & has_healthy.bool()  # healthy features of other rows are not meaningful
        inside = lesion[rows].to(target.dtype)
        healthy = healthy_features[rows].detach().double()
        self.num_in += ((cf[rows] - healthy).square() * inside).sum()
        self.den_in += ((target[rows] - healthy).square() * inside).sum()

    def compute(self) -> dict[str, Tensor]:
        return {
            "ratio_in": _mean_or_nan(self.num_in, self.den_in).sqrt(),
            "ratio_out": _mean_or_nan(self.num_out, self.den_out).sqrt(),
        }
