"""Calibration: ECE / MCE over equal-width bins, NLL, Brier, reliability bins, the accuracy of the
posts at or above a confidence, and temperature scaling fitted on held-out data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from crisislens.evaluation.metrics.arrays import FloatArray, _check_target


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


def accuracy_at_confidence(
    probs: npt.ArrayLike, target: npt.ArrayLike, thresholds: Sequence[float]
) -> list[dict[str, float | int]]:
    """For each threshold: how many posts have a confidence at or above it, the share of all
    posts that is, and how often those are right (0 when there are none)."""
    p, y = _probs_and_target(probs, target)
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    out: list[dict[str, float | int]] = []
    for t in thresholds:
        kept = conf >= t
        n = int(kept.sum())
        out.append(
            {"threshold": float(t), "n": n, "share": n / len(y), "accuracy": float(correct[kept].mean()) if n else 0.0}
        )
    return out


def with_temperature(probs: npt.ArrayLike, temperature: float) -> FloatArray:
    """softmax(log(probs) / temperature): the same ranking of classes, sharper (T < 1) or
    softer (T > 1). log(probs) equals the logits up to a per-row constant, which softmax ignores."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)) / temperature
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def fit_temperature(
    probs: npt.ArrayLike, target: npt.ArrayLike, low: float = 0.05, high: float = 20.0, iterations: int = 80
) -> float:
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
