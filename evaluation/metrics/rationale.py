"""Rationale plausibility, as ERASER scores it (DeYoung et al., 2020;
`rationale_benchmark/metrics.py`): does the rationale agree with a human one? Token-level
P/R/F1, IOU-F1, AUPRC, and soft scores made hard.

A *mask* is a 1-D boolean array over the units of one instance (True = in the rationale);
*scores* are a 1-D float array over the same units (higher = more important).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from crisislens.evaluation.metrics.arrays import BoolArray, FloatArray
from crisislens.evaluation.metrics.classification import _safe_div

# ERASER's default AOPC bins: rationales of 1, 5, 10, 20 and 50 % of the units.
ERASER_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)


@dataclass(frozen=True)
class TokenPRF:
    """Token-level agreement of predicted and gold rationale masks.

    micro: pooled over every unit of every instance. macro: the mean of the per-instance
    precision, recall and F1 over `n_instances - n_empty` instances (those with neither a
    gold nor a predicted unit are left out, as in ERASER).
    """

    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    n_instances: int
    n_empty: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def token_f1(gold_masks: Sequence[npt.ArrayLike], pred_masks: Sequence[npt.ArrayLike]) -> TokenPRF:
    """Token precision, recall and F1, ERASER's `token_prf` (`score_hard_rationale_predictions`
    on token-level rationales).

    Per instance: P = |gold ∧ pred| / |pred|, R = |gold ∧ pred| / |gold|, each 0 when its
    denominator is 0, and F1 = 2PR / (P + R), 0 when P or R is 0.
    - micro: the same formulas on the counts summed over all instances;
    - macro: the plain mean of the per-instance P, R and F1 (the mean of F1s, not the F1 of
      the means), over the instances with at least one gold or predicted unit. An instance
      with both masks empty is skipped rather than scored 0 or 1 — ERASER never sees it,
      because it keys instances by their gold and predicted tokens. If every instance is
      empty, all six values are 0.
    """
    pairs = _mask_pairs(gold_masks, pred_masks, "predicted mask")
    hits, n_gold, n_pred = np.array([(np.sum(g & p), np.sum(g), np.sum(p)) for g, p in pairs], dtype=np.float64).T
    micro_p = _ratio(hits.sum(), n_pred.sum())
    micro_r = _ratio(hits.sum(), n_gold.sum())
    scored = (n_gold > 0) | (n_pred > 0)
    inst_p = _safe_div(hits, n_pred)[scored]
    inst_r = _safe_div(hits, n_gold)[scored]
    inst_f1 = np.array([_f1(p, r) for p, r in zip(inst_p, inst_r)])
    return TokenPRF(
        micro_precision=micro_p,
        micro_recall=micro_r,
        micro_f1=_f1(micro_p, micro_r),
        macro_precision=_mean_or_zero(inst_p),
        macro_recall=_mean_or_zero(inst_r),
        macro_f1=_mean_or_zero(inst_f1),
        n_instances=len(pairs),
        n_empty=int(len(pairs) - scored.sum()),
    )


def iou_f1(gold_masks: Sequence[npt.ArrayLike], pred_masks: Sequence[npt.ArrayLike], threshold: float = 0.5) -> float:
    """IOU-F1, ERASER's macro `partial_match_score`.

    Spans are the maximal runs of True in a mask. A predicted span is a hit when its best
    intersection-over-union with any gold span of the same instance is >= `threshold`
    (matching is not one-to-one, as in ERASER; with threshold >= 0.5 and disjoint runs a gold
    span can take at most one hit anyway). Per instance: P = hits / predicted spans, R =
    hits / gold spans. Macro P is the mean P over the instances with a predicted span, macro R
    the mean R over the instances with a gold span (0 when there are none), and the result
    is the F1 of those two means (0 when either is 0).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"IOU threshold must be in (0, 1], got {threshold}")
    precisions: list[float] = []
    recalls: list[float] = []
    for gold, pred in _mask_pairs(gold_masks, pred_masks, "predicted mask"):
        gold_spans, pred_spans = _spans(gold), _spans(pred)
        hits = sum(1 for p in pred_spans if max((_iou(p, g) for g in gold_spans), default=0.0) >= threshold)
        if pred_spans:
            precisions.append(hits / len(pred_spans))
        if gold_spans:
            recalls.append(hits / len(gold_spans))
    return _f1(_mean_or_zero(precisions), _mean_or_zero(recalls))


def set_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Intersection over union of two unit sets given as boolean masks of one length (e.g. two
    top-k patch rationales); 1.0 when both are empty, since they then agree."""
    a, b = _as_mask(a, "first mask"), _as_mask(b, "second mask")
    if a.shape != b.shape:
        raise ValueError(f"masks of different lengths: {a.shape[0]} and {b.shape[0]}")
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else 1.0


def auprc(gold_masks: Sequence[npt.ArrayLike], soft_scores: Sequence[npt.ArrayLike]) -> float:
    """Mean average precision of soft rationale scores against gold masks.

    Per instance, scikit-learn's `average_precision_score`: AP = Σ_n (R_n − R_{n−1}) · P_n
    over the distinct score thresholds from high to low (tied scores enter together), a
    step function with no interpolation. The mean is over the instances with at least one
    gold unit, since AP is undefined without a positive. (ERASER's `average_precision` also
    drops instances whose units are all gold — they always score 1 — and its `auprc` is the
    trapezoidal area under the PR curve; neither is done here.)
    """
    values = [
        _average_precision(gold, scores)
        for gold, scores in _pairs(gold_masks, soft_scores, "scores", _as_scores)
        if gold.any()
    ]
    if not values:
        raise ValueError("no instance has a gold rationale unit; AUPRC is undefined")
    return float(np.mean(values))


def soft_to_hard(
    scores: npt.ArrayLike,
    *,
    threshold: float | None = None,
    top_k: int | None = None,
    fraction: float | None = None,
) -> BoolArray:
    """A rationale mask from scores; give exactly one rule.

    - `threshold`: units with score >= threshold;
    - `top_k`: the k highest-scoring units (all of them when k >= the number of units);
    - `fraction`: the top round(fraction · n) units, at least 1 (as `faithfulness` uses).
    Ties go to the lower index, so the mask is deterministic.
    """
    rules = {"threshold": threshold, "top_k": top_k, "fraction": fraction}
    given = [name for name, value in rules.items() if value is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of threshold, top_k, fraction (got {', '.join(given) or 'none'})")
    values = _as_scores(scores, "scores")
    if threshold is not None:
        return values >= threshold
    if top_k is not None:
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        return _top_k(values, min(top_k, len(values)))
    assert fraction is not None
    return _top_k(values, _rationale_size(_check_fraction(fraction), len(values)))


def _average_precision(gold: BoolArray, scores: FloatArray) -> float:
    order = np.argsort(-scores, kind="stable")
    ranked_scores, ranked_gold = scores[order], gold[order]
    # A threshold admits a whole group of tied scores: keep only the last rank of each group.
    group_end = np.r_[ranked_scores[1:] != ranked_scores[:-1], True]
    tps = np.cumsum(ranked_gold)[group_end]
    fps = np.cumsum(~ranked_gold)[group_end]
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _spans(mask: BoolArray) -> list[tuple[int, int]]:
    """Maximal runs of True as half-open [start, end) pairs."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union else 0.0


def _f1(precision: float, recall: float) -> float:
    if precision == 0 or recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else 0.0


def _mean_or_zero(values: Sequence[float] | FloatArray) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def _as_mask(value: npt.ArrayLike, what: str) -> BoolArray:
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array
    # Refuse scores passed as a mask: bool() would silently turn every non-zero into True.
    if array.size and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{what} must be boolean (0/1); turn scores into a mask with soft_to_hard")
    return array.astype(bool)


def _as_scores(value: npt.ArrayLike, what: str) -> FloatArray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} has NaN or infinite values")
    return array


def _pairs(
    gold_masks: Sequence[npt.ArrayLike],
    others: Sequence[npt.ArrayLike],
    other_name: str,
    convert: Callable[[npt.ArrayLike, str], Any],
) -> list[tuple[BoolArray, Any]]:
    """Validated (gold mask, other) per instance; errors name the instance index."""
    if len(gold_masks) != len(others):
        raise ValueError(f"{len(gold_masks)} gold masks but {len(others)} {other_name}s: one of each per instance")
    if len(gold_masks) == 0:
        raise ValueError("no instances: the gold masks are empty")
    pairs = []
    for i, (gold, other) in enumerate(zip(gold_masks, others)):
        g = _as_mask(gold, f"instance {i}: gold mask")
        o = convert(other, f"instance {i}: {other_name}")
        if len(g) != len(o):
            raise ValueError(f"instance {i}: gold mask has {len(g)} units but {other_name} has {len(o)}")
        pairs.append((g, o))
    return pairs


def _mask_pairs(
    gold_masks: Sequence[npt.ArrayLike], pred_masks: Sequence[npt.ArrayLike], other_name: str
) -> list[tuple[BoolArray, BoolArray]]:
    return _pairs(gold_masks, pred_masks, other_name, _as_mask)


def _rationale_size(fraction: float, n_units: int) -> int:
    if n_units == 0:
        return 0
    # Half up, not Python's round-half-even: 0.5 of 5 units is 3, like 0.5 of 7 is 4.
    return min(n_units, max(1, math.floor(fraction * n_units + 0.5)))


def _top_k(scores: FloatArray, k: int) -> BoolArray:
    # A stable sort of the negated scores keeps tied units in index order.
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.argsort(-scores, kind="stable")[:k]] = True
    return mask


def _check_fraction(fraction: float) -> float:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"a rationale fraction must be in (0, 1], got {fraction}")
    return float(fraction)
