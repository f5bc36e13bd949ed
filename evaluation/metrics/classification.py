"""Classification scores: per-class precision, recall and F1, Macro-F1, weighted F1, accuracy,
the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from crisislens.evaluation.metrics.arrays import FloatArray
from crisislens.runtime.labels import LABEL_NAMES


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
