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

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from crisislens.runtime.labels import LABEL_NAMES

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
PredictProba = Callable[[list[BoolArray]], npt.ArrayLike]

# ERASER's default AOPC bins: rationales of 1, 5, 10, 20 and 50 % of the units.
ERASER_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int  # gold examples of this class


@dataclass(frozen=True)
class ClassificationReport:
    """Scores of one set of predictions; `confusion` rows are true labels, columns predicted,
    both in `labels` order."""

    labels: tuple[str, ...]
    n: int
    accuracy: float
    macro_f1: float
    weighted_f1: float
    macro_precision: float
    macro_recall: float
    per_class: dict[str, ClassScores]
    confusion: list[list[int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "labels": list(self.labels),
            "per_class": {name: asdict(scores) for name, scores in self.per_class.items()},
            "confusion": [list(row) for row in self.confusion],
        }

    def to_markdown(self) -> str:
        lines = [
            f"n = {self.n} · accuracy {self.accuracy:.3f} · macro-F1 {self.macro_f1:.3f} · "
            f"weighted-F1 {self.weighted_f1:.3f}",
            "",
            "| class | precision | recall | F1 | support |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, s in self.per_class.items():
            lines.append(f"| {name} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {s.support} |")
        lines.append(
            f"| macro average | {self.macro_precision:.3f} | {self.macro_recall:.3f} | {self.macro_f1:.3f} | {self.n} |"
        )
        lines += [
            "",
            "Confusion matrix (rows: true class, columns: predicted class):",
            "",
            "| true \\ predicted | " + " | ".join(self.labels) + " |",
            "| --- |" + " ---: |" * len(self.labels),
        ]
        for name, row in zip(self.labels, self.confusion):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
        return "\n".join(lines) + "\n"


def confusion_matrix(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = LABEL_NAMES
) -> npt.NDArray[np.int64]:
    """Counts `[i, j]` of examples with true label `labels[i]` predicted as `labels[j]`."""
    names = _check_labels(labels)
    true_idx, pred_idx = _encode_pair(y_true, y_pred, names)
    size = len(names)
    flat = np.bincount(true_idx * size + pred_idx, minlength=size * size)
    return flat.reshape(size, size).astype(np.int64)


def classification_report(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = LABEL_NAMES
) -> ClassificationReport:
    """Accuracy, per-class P/R/F1 and their macro and support-weighted averages.

    Same numbers as scikit-learn's `precision_recall_fscore_support(..., labels=labels,
    zero_division=0)`: a precision, recall or F1 whose denominator is 0 counts as 0, and a
    label that never occurs (neither true nor predicted) still enters the macro average
    with F1 = 0. F1 is 2·TP / (2·TP + FP + FN). Every value must be one of `labels`.
    """
    names = _check_labels(labels)
    cm = confusion_matrix(y_true, y_pred, names)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)  # 2TP + FP + FN = support + predicted
    n = int(cm.sum())
    return ClassificationReport(
        labels=names,
        n=n,
        accuracy=float(tp.sum() / n),
        macro_f1=float(f1.mean()),
        weighted_f1=float(np.dot(f1, support) / n),
        macro_precision=float(precision.mean()),
        macro_recall=float(recall.mean()),
        per_class={
            name: ClassScores(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
            for i, name in enumerate(names)
        },
        confusion=cm.tolist(),
    )


def _check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    names = tuple(labels)
    if not names:
        raise ValueError("labels is empty; give at least one class name")
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"labels repeat: {', '.join(repeated)}")
    return names


def _encode_pair(
    y_true: Sequence[str], y_pred: Sequence[str], labels: tuple[str, ...]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("no examples: y_true and y_pred are empty")
    return _encode(y_true, labels, "y_true"), _encode(y_pred, labels, "y_pred")


def _encode(values: Sequence[str], labels: tuple[str, ...], name: str) -> npt.NDArray[np.int64]:
    index = {label: i for i, label in enumerate(labels)}
    codes = [index.get(value, -1) for value in values]
    unknown = [pos for pos, code in enumerate(codes) if code < 0]
    if unknown:
        pos = unknown[0]
        # str() first: numpy string scalars would otherwise print as np.str_('...').
        value = str(values[pos]) if isinstance(values[pos], str) else values[pos]
        raise ValueError(
            f"{name}[{pos}] = {value!r} is not one of the labels ({', '.join(labels)}); "
            f"{len(unknown)} unknown value(s) in {name}"
        )
    return np.asarray(codes, dtype=np.int64)


def _safe_div(num: npt.ArrayLike, den: npt.ArrayLike) -> FloatArray:
    """num / den, and 0 where den is 0 (scikit-learn's zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class ReliabilityBin:
    low: float  # confidences in (low, high]; the first bin also holds 0
    high: float
    n: int
    accuracy: float  # 0 for an empty bin
    mean_confidence: float


@dataclass(frozen=True)
class Calibration:
    """How far a model's confidence (its top probability) matches how often it is right."""

    n: int
    accuracy: float
    mean_confidence: float
    ece: float  # sum over bins of (bin share) x |accuracy - mean confidence|
    mce: float  # the largest such gap over the non-empty bins
    nll: float  # mean -log p(true class)
    brier: float  # mean squared distance of the probability vector from the one-hot truth
    bins: tuple[ReliabilityBin, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibration(probs: npt.ArrayLike, target: npt.ArrayLike, n_bins: int = 15) -> Calibration:
    """Calibration of `probs` ([n, classes], rows summing to 1) against class indices `target`."""
    p, y = _probs_and_target(probs, target)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)  # (low, high]
    bins, ece, mce = [], 0.0, 0.0
    for b in range(n_bins):
        members = which == b
        count = int(members.sum())
        acc = float(correct[members].mean()) if count else 0.0
        mean_conf = float(conf[members].mean()) if count else 0.0
        if count:
            gap = abs(acc - mean_conf)
            ece += count / len(y) * gap
            mce = max(mce, gap)
        bins.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), count, acc, mean_conf))
    onehot = np.eye(p.shape[1])[y]
    return Calibration(
        n=len(y),
        accuracy=float(correct.mean()),
        mean_confidence=float(conf.mean()),
        ece=float(ece),
        mce=float(mce),
        nll=_nll(p, y),
        brier=float(((p - onehot) ** 2).sum(axis=1).mean()),
        bins=tuple(bins),
    )


def accuracy_at_confidence(probs: npt.ArrayLike, target: npt.ArrayLike,
                           thresholds: Sequence[float]) -> list[dict[str, float | int]]:
    """For each threshold: how many posts have a confidence at or above it, the share of all
    posts that is, and how often those are right (0 when there are none)."""
    p, y = _probs_and_target(probs, target)
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    out: list[dict[str, float | int]] = []
    for t in thresholds:
        kept = conf >= t
        n = int(kept.sum())
        out.append({"threshold": float(t), "n": n, "share": n / len(y),
                    "accuracy": float(correct[kept].mean()) if n else 0.0})
    return out


def with_temperature(probs: npt.ArrayLike, temperature: float) -> FloatArray:
    """softmax(log(probs) / temperature): the same ranking of classes, sharper (T < 1) or
    softer (T > 1). log(probs) equals the logits up to a per-row constant, which softmax ignores."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)) / temperature
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def fit_temperature(probs: npt.ArrayLike, target: npt.ArrayLike, low: float = 0.05, high: float = 20.0,
                    iterations: int = 80) -> float:
    """The temperature in [low, high] that minimises the NLL of `with_temperature(probs, T)`
    against `target` (golden-section search over log T; the NLL is unimodal in it)."""
    p, y = _probs_and_target(probs, target)

    def nll(log_t: float) -> float:
        return _nll(with_temperature(p, math.exp(log_t)), y)

    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(iterations):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    return float(math.exp((a + b) / 2))


def _nll(p: FloatArray, y: npt.NDArray[np.int64]) -> float:
    """Mean -log p(true class), a probability floored at 1e-12."""
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


def _probs_and_target(probs: npt.ArrayLike, target: npt.ArrayLike) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"probs must be [n, classes] with n >= 1, got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probs must be finite, non-negative, and each row must sum to 1")
    return p, _check_target(target, p.shape[0], p.shape[1])


# --------------------------------------------------------------------------- plausibility


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


def iou_f1(
    gold_masks: Sequence[npt.ArrayLike], pred_masks: Sequence[npt.ArrayLike], threshold: float = 0.5
) -> float:
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
        hits = sum(
            1 for p in pred_spans if max((_iou(p, g) for g in gold_spans), default=0.0) >= threshold
        )
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


# --------------------------------------------------------------------------- faithfulness


@dataclass(frozen=True)
class FaithfulnessResult:
    """ERASER comprehensiveness and sufficiency (AOPC), overall and per rationale fraction.

    Higher comprehensiveness is better (removing the rationale hurts); lower sufficiency is
    better (the rationale alone keeps the prediction). `n` instances were scored;
    `n_skipped` had no units.
    """

    comprehensiveness: float
    sufficiency: float
    fractions: tuple[float, ...]
    comprehensiveness_per_fraction: tuple[float, ...]
    sufficiency_per_fraction: tuple[float, ...]
    n: int
    n_skipped: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("fractions", "comprehensiveness_per_fraction", "sufficiency_per_fraction"):
            data[key] = list(data[key])
        return data


def faithfulness(
    predict_proba: PredictProba,
    scores: Sequence[npt.ArrayLike],
    fractions: Sequence[float] = ERASER_FRACTIONS,
    target: npt.ArrayLike | None = None,
) -> FaithfulnessResult:
    """Comprehensiveness and sufficiency of rationale `scores` for the model `predict_proba`.

    `predict_proba(keep_masks)` gets one boolean mask per instance, aligned with `scores`
    (True = the unit is kept; all True = the full input), and returns probabilities of shape
    [n_instances, n_classes]. It is called 1 + 2·len(fractions) times, each time for every
    instance: the full input, then per fraction the input without the top-k units and the
    top-k units alone. An instance with 0 units gets an empty mask each time; its rows are
    ignored and it counts in `n_skipped`.

    Per instance and fraction f: k = round(f · n_units) (half up), at least 1 and at most
    n_units; top-k by descending score, ties to the lower index. With y the target class
    (argmax of the full-input probabilities, first class on ties, unless `target` is given):
      comprehensiveness_f = mean over instances of p_full(y) − p_without_top_k(y)
      sufficiency_f       = mean over instances of p_full(y) − p_only_top_k(y)
    and each aggregate is the mean over fractions (AOPC) — ERASER's `_instances_aopc`, whose
    default bins are `ERASER_FRACTIONS`.
    """
    units = [_as_scores(s, f"instance {i}: scores") for i, s in enumerate(scores)]
    if not units:
        raise ValueError("faithfulness needs at least one instance")
    checked = tuple(_check_fraction(f) for f in fractions)
    if not checked:
        raise ValueError("fractions is empty; ERASER uses (0.01, 0.05, 0.1, 0.2, 0.5)")
    rows = np.flatnonzero([len(u) > 0 for u in units])
    if len(rows) == 0:
        raise ValueError(f"all {len(units)} instances have 0 units; nothing to score")

    full = _predict(predict_proba, [np.ones(len(u), dtype=bool) for u in units], len(units), None, "the full input")
    n_classes = full.shape[1]
    y = np.argmax(full, axis=1) if target is None else _check_target(target, len(units), n_classes)
    p_full = full[rows, y[rows]]

    comprehensiveness: list[float] = []
    sufficiency: list[float] = []
    for f in checked:
        top = [_top_k(u, _rationale_size(f, len(u))) for u in units]
        size = f"top {f * 100:g}%"
        without = _predict(predict_proba, [~t for t in top], len(units), n_classes, f"the input without its {size}")
        only = _predict(predict_proba, top, len(units), n_classes, f"the {size} alone")
        comprehensiveness.append(float(np.mean(p_full - without[rows, y[rows]])))
        sufficiency.append(float(np.mean(p_full - only[rows, y[rows]])))
    return FaithfulnessResult(
        comprehensiveness=float(np.mean(comprehensiveness)),
        sufficiency=float(np.mean(sufficiency)),
        fractions=checked,
        comprehensiveness_per_fraction=tuple(comprehensiveness),
        sufficiency_per_fraction=tuple(sufficiency),
        n=len(rows),
        n_skipped=len(units) - len(rows),
    )


def random_scores(scores: Sequence[npt.ArrayLike], seed: int) -> list[FloatArray]:
    """Uniform random scores shaped like `scores`: the "random rationale of equal size" baseline
    (fed to `faithfulness` with the same fractions, it removes as many units at random)."""
    rng = np.random.default_rng(seed)
    return [rng.random(np.shape(s)) for s in scores]


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


def _check_target(target: npt.ArrayLike, n: int, n_classes: int) -> npt.NDArray[np.int64]:
    array = np.asarray(target)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"target must be {n} class indices (int), got shape {array.shape} of {array.dtype}")
    bad = np.flatnonzero((array < 0) | (array >= n_classes))
    if len(bad):
        raise ValueError(f"target[{bad[0]}] = {array[bad[0]]} is not a class index in [0, {n_classes})")
    return array.astype(np.int64)


def _predict(
    predict_proba: PredictProba, keep: list[BoolArray], n: int, n_classes: int | None, what: str
) -> FloatArray:
    probs = np.asarray(predict_proba(keep), dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != n or (n_classes is not None and probs.shape[1] != n_classes):
        expected = f"({n}, {n_classes if n_classes is not None else 'n_classes'})"
        raise ValueError(f"predict_proba returned shape {probs.shape} for {what}; expected {expected}")
    if not np.isfinite(probs).all():
        raise ValueError(f"predict_proba returned NaN or infinite values for {what}")
    return probs
