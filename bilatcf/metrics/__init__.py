"""Evaluation metrics (definitions in docs/metrics.md) and the callbacks that run them.

Every metric is a torchmetrics ``Metric`` (states sum or concatenate across DDP ranks) or a pure function it wraps;
they import without Lightning. The callbacks (and :class:`EvaluationSuite`, which lives with them) are Lightning code,
imported on first access.
"""

from bilatcf.metrics.classification import BootstrapAUROC, ClassificationRates, resampled_aucs
from bilatcf.metrics.counterfactual import (
    EXPL_THRESHOLD_RULE,
    ExplanationNCC,
    FeatureFidelityRatio,
    FeatureFrechetDistance,
    MaskedImageComparison,
    frechet_distance,
    lesion_positions,
    masked_ssim,
    normalized_cross_correlation,
)
from bilatcf.metrics.localization import (
    POINTING_TOLERANCE,
    TIOR_THRESHOLDS,
    TIOU_THRESHOLDS,
    MapAveragePrecision,
    PointingGame,
    SegmentationScores,
    ThresholdAccuracy,
    TopOneLocError,
    annotated,
    binarize_map,
    box_iou,
    box_pixels,
    heatmap_to_box,
    overlap_scores,
    pointing_hit,
    pointing_rule,
    threshold_rule,
)

__all__ = [
    "EXPL_THRESHOLD_RULE",
    "POINTING_TOLERANCE",
    "TIOR_THRESHOLDS",
    "TIOU_THRESHOLDS",
    "BootstrapAUROC",
    "ClassificationRates",
    "EvaluationCallback",
    "EvaluationSuite",
    "ExplanationNCC",
    "FeatureFidelityRatio",
    "FeatureFrechetDistance",
    "FigureCallback",
    "MapAveragePrecision",
    "MaskedImageComparison",
    "PointingGame",
    "SegmentationScores",
    "ThresholdAccuracy",
    "TopOneLocError",
    "annotated",
    "binarize_map",
    "box_iou",
    "box_pixels",
    "frechet_distance",
    "heatmap_to_box",
    "lesion_positions",
    "masked_ssim",
    "normalized_cross_correlation",
    "overlap_scores",
    "pointing_hit",
    "pointing_rule",
    "resampled_aucs",
    "threshold_rule",
]

_CALLBACKS = ("EvaluationCallback", "EvaluationSuite", "FigureCallback")


def __getattr__(name: str):
    if name in _CALLBACKS:
        from bilatcf.metrics import callbacks

        return getattr(callbacks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
