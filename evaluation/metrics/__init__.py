"""Metrics: classification scores, rationale plausibility and rationale faithfulness.

Numpy only, so the runtime, the training stage and the reports all score the same way.

- Classification: accuracy, per-class and macro/weighted precision, recall and F1 with the
  scikit-learn conventions (`zero_division=0`, every label in `labels` counts, also those
  that never occur), and the confusion matrix.
- Plausibility (does the rationale agree with a human one?): token-level P/R/F1, IOU-F1 and
  AUPRC, as in ERASER (DeYoung et al., 2020; `rationale_benchmark/metrics.py`).
- Faithfulness (does the model actually use the rationale?): ERASER comprehensiveness and
  sufficiency as AOPC over rationale sizes, for any `predict_proba` over kept units (tokens or
  image patches).
- Calibration (is a confidence of 90% right 90% of the time?): expected and maximum
  calibration error over equal-width confidence bins (Guo et al., 2017), negative
  log-likelihood, Brier score, the accuracy of the posts at or above a confidence, and the
  temperature that minimises the NLL on held-out data (temperature scaling).

A *mask* is a 1-D boolean array over the units of one instance (True = in the rationale);
*scores* are a 1-D float array over the same units (higher = more important).
"""

from crisislens.evaluation.metrics.arrays import BoolArray, FloatArray, PredictProba
from crisislens.evaluation.metrics.calibration import (
    Calibration,
    ReliabilityBin,
    accuracy_at_confidence,
    calibration,
    fit_temperature,
    with_temperature,
)
from crisislens.evaluation.metrics.classification import (
    ClassificationReport,
    ClassScores,
    classification_report,
    confusion_matrix,
)
from crisislens.evaluation.metrics.faithfulness import FaithfulnessResult, faithfulness, random_scores
from crisislens.evaluation.metrics.rationale import (
    ERASER_FRACTIONS,
    TokenPRF,
    auprc,
    iou_f1,
    set_iou,
    soft_to_hard,
    token_f1,
)

__all__ = [
    "BoolArray",
    "Calibration",
    "ClassScores",
    "ClassificationReport",
    "ERASER_FRACTIONS",
    "FaithfulnessResult",
    "FloatArray",
    "PredictProba",
    "ReliabilityBin",
    "TokenPRF",
    "accuracy_at_confidence",
    "auprc",
    "calibration",
    "classification_report",
    "confusion_matrix",
    "faithfulness",
    "fit_temperature",
    "iou_f1",
    "random_scores",
    "set_iou",
    "soft_to_hard",
    "token_f1",
    "with_temperature",
]
