"""The typed record every model returns (DESIGN §4), read by the metrics, the figures, `bilatcf predict` and the tests.

A model's ``forward`` fills the fields it computes; :meth:`BilateralModule.predict_step` then adds what evaluation needs
(the task score, the predicted class, maps at image size, the batch), so every consumer reads one record with named,
typed fields instead of guessing dictionary keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from torch import Tensor

from bilatcf.data.types import BilateralBatch

#: ``probability``: the task score is a logit, read through a sigmoid, thresholded at 0.5. ``anomaly``: the score is
#: not a probability (e.g. AnoGAN's residual); AUC reads it raw and the predicted class comes from an operating
#: threshold chosen on validation and saved in the checkpoint.
ScoreKind = Literal["probability", "anomaly"]


@dataclass
class BilateralOutput:
    """What a model computed for a batch of pairs; the optional fields are None when the method does not make them.

    Attributes:
        logits: [B] task score: a logit (``score_kind = "probability"``) or a raw anomaly score.
        cam: [B, 1, h, w] class activation map of the predicted class (any resolution; evaluation resizes it).
        counterfactual: [B, 1, H, W] the target as it would look without the lesion, in [0, 1].
        explanation: [B, 1, h, w] the explanation or residual map (signed or not; evaluation uses |map|).
        target_features / reference_features / cf_features: [B, C, h, w] H_T, H_R and the counterfactual H_C.
        heads: named extra task heads, each [B] of the same kind as ``logits`` (e.g. DisAsymNet's ``asymmetry``);
            the model's ``extra_heads`` says which batch label each one is evaluated against.
        score: filled by ``predict_step``: [B] the score the AUC reads (sigmoid of ``logits``, or the raw score).
        pred: filled by ``predict_step``: [B] the predicted class (score at the operating threshold).
        head_scores: filled by ``predict_step``: the score of each extra head.
        healthy_features: filled by ``predict_step`` on data with a true healthy image: backbone(healthy).
        batch: filled by ``predict_step``: the batch the output belongs to (images, masks, labels, meta).
    """

    logits: Tensor
    cam: Tensor
    counterfactual: Tensor | None = None
    explanation: Tensor | None = None
    target_features: Tensor | None = None
    reference_features: Tensor | None = None
    cf_features: Tensor | None = None
    heads: dict[str, Tensor] = field(default_factory=dict)
    score: Tensor | None = None
    pred: Tensor | None = None
    head_scores: dict[str, Tensor] = field(default_factory=dict)
    healthy_features: Tensor | None = None
    batch: BilateralBatch | None = None

    def __len__(self) -> int:
        return self.logits.shape[0]

    def replace(self, **changes: Any) -> BilateralOutput:
        """A copy with some fields changed (the record is shared by callbacks, so it is never edited in place)."""
        return replace(self, **changes)

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor field that is set, by name (extra heads as ``heads.<name>``): for checks and comparisons."""
        found = {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), Tensor)}
        found.update({f"heads.{name}": value for name, value in self.heads.items()})
        return found


def require_output(value: Any, where: str) -> BilateralOutput:
    """``value`` if it is a :class:`BilateralOutput`, else an error that says what the step must return."""
    from bilatcf.errors import ConfigError

    if not isinstance(value, BilateralOutput):
        raise ConfigError(
            f"{where} returned {type(value).__name__}, but bilatcf's evaluation reads a BilateralOutput: return "
            "BilateralModule.predict_step(batch) from the step (a model's forward returns a BilateralOutput too)."
        )
    return value
