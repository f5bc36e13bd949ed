"""Faithfulness of a rationale, as ERASER scores it: comprehensiveness and sufficiency (AOPC
over rationale sizes), against random rationales of the same size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from crisislens.evaluation.metrics.arrays import BoolArray, FloatArray, PredictProba, _check_target
from crisislens.evaluation.metrics.rationale import (
    ERASER_FRACTIONS,
    _as_scores,
    _check_fraction,
    _rationale_size,
    _top_k,
)


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
