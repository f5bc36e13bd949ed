"""Scoring a predictions file: every model is scored by the same code, as ERASER scores every
rationale model with one `metrics.py` over a documented file.

`crisislens eval score PREDICTIONS.jsonl` reads the file; `crisislens eval --bundle ...
--predictions-out FILE` writes one for a bundle, and any other model (the teacher, a student
checkpoint, a baseline, a study) is scored the same way once it writes the same records.

The predictions file is JSONL, one object per post:

| field | required | meaning |
|---|---|---|
| `post_id` | yes | the post's id |
| `gold_label` | yes | the gold class (one of the 5 names, or a CrisisMMD 8-class name) |
| `label` | yes | the predicted class |
| `probabilities` | no | {class: probability} over the 5 classes (calibration is scored when all have them) |
| `has_evidence` | no | false when the model saw no word and no photo (default true) |

Other fields are kept by the writer and ignored here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crisislens.evaluation.metrics.calibration import calibration
from crisislens.evaluation.metrics.classification import ClassificationReport, classification_report
from crisislens.evaluation.metrics.ranking import UrgentAtTop, urgent_at_top
from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.files import atomic_open
from crisislens.runtime.labels import LABEL_NAMES, to_humanitarian5
from crisislens.runtime.schema import Post, Prediction

REQUIRED = ("post_id", "gold_label", "label")


class PredictionsError(CrisisLensError, ValueError):
    """A predictions file that cannot be scored; the message names the file and line."""


@dataclass(frozen=True)
class ScoredPost:
    """One record of a predictions file."""

    post_id: str
    gold_label: str
    label: str
    probabilities: Mapping[str, float] | None = None
    has_evidence: bool = True
    extra: Mapping[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        record: dict[str, object] = {"post_id": self.post_id, "gold_label": self.gold_label, "label": self.label}
        if self.probabilities is not None:
            record["probabilities"] = dict(self.probabilities)
        record["has_evidence"] = self.has_evidence
        return {**record, **self.extra}


@dataclass(frozen=True)
class Scores:
    """What `score` measures; `to_dict` is what `--json` prints."""

    n: int
    classes: tuple[str, ...]
    macro_f1: float
    accuracy: float
    weighted_f1: float
    per_class: dict[str, float]
    without_evidence: int
    ece: float | None = None
    nll: float | None = None
    # the full report behind the numbers (per-class precision/recall/support, confusion), for
    # reports that show more than `to_dict`
    report: ClassificationReport | None = field(default=None, compare=False)
    # affected_individuals posts in the first 10% of the triage list (with probabilities only)
    urgent_at_top: UrgentAtTop | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "classes": list(self.classes),
            "macro_f1": self.macro_f1,
            "accuracy": self.accuracy,
            "weighted_f1": self.weighted_f1,
            "per_class": self.per_class,
            "without_evidence": self.without_evidence,
            "ece": self.ece,
            "nll": self.nll,
            "urgent_at_top": self.urgent_at_top.to_dict() if self.urgent_at_top else None,
        }


def records(posts: Sequence[Post], predictions: Sequence[Prediction]) -> list[ScoredPost]:
    """The records of labelled `posts` and the engine's `predictions` of them (same order)."""
    if len(posts) != len(predictions):
        raise ValueError(f"{len(posts)} posts but {len(predictions)} predictions")
    out = []
    for post, pred in zip(posts, predictions):
        if post.label is None:
            raise ValueError(f"post {post.id!r} has no gold label")
        out.append(ScoredPost(post.id, post.label, pred.label, dict(pred.probabilities), pred.has_evidence))
    return out


def score(scored: Sequence[ScoredPost], classes: Sequence[str] | None = None) -> Scores:
    """Classification scores over `classes` (default: every label) and, when every record has
    probabilities over all labels, calibration (ECE, NLL)."""
    if not scored:
        raise PredictionsError("no predictions to score")
    labels = tuple(classes) if classes else LABEL_NAMES
    report = classification_report([r.gold_label for r in scored], [r.label for r in scored], labels)
    ece = nll = None
    ranked = None
    if all(r.probabilities is not None and set(LABEL_NAMES) <= set(r.probabilities) for r in scored):
        probs = np.array([[float((r.probabilities or {})[c]) for c in LABEL_NAMES] for r in scored])
        cal = calibration(probs, np.array([LABEL_NAMES.index(r.gold_label) for r in scored]))
        ece, nll = cal.ece, cal.nll
        ranked = urgent_at_top(
            [r.gold_label for r in scored], [r.probabilities or {} for r in scored], [r.post_id for r in scored]
        )
    per_class = {name: float(c["f1"]) for name, c in report.to_dict()["per_class"].items()}
    return Scores(
        len(scored),
        labels,
        report.macro_f1,
        report.accuracy,
        report.weighted_f1,
        per_class,
        sum(1 for r in scored if not r.has_evidence),
        ece,
        nll,
        report,
        ranked,
    )


def write_predictions(path: str | Path, scored: Iterable[ScoredPost]) -> Path:
    """Write `scored` as a predictions file (atomically)."""
    with atomic_open(path) as f:
        for r in scored:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    return Path(path)


def read_predictions(path: str | Path) -> list[ScoredPost]:
    """The records of a predictions file; a `PredictionsError` naming the line of a bad one."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PredictionsError(f"{path}: cannot read the predictions file ({exc})") from None
    out = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            out.append(_record(json_line(path, number, line), f"{path}:{number}"))
    return out


def json_line(path: Path, number: int, line: str) -> Mapping[str, object]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PredictionsError(f"{path}:{number}: not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise PredictionsError(f"{path}:{number}: a record must be a JSON object")
    return value


def _record(value: Mapping[str, object], where: str) -> ScoredPost:
    missing = [k for k in REQUIRED if not isinstance(value.get(k), str) or not value.get(k)]
    if missing:
        raise PredictionsError(f"{where}: needs {', '.join(missing)} (strings)")
    gold, label = str(value["gold_label"]), str(value["label"])
    try:
        gold = gold if gold in LABEL_NAMES else to_humanitarian5(gold)
    except ValueError as exc:
        raise PredictionsError(f"{where}: gold_label: {exc}") from None
    if label not in LABEL_NAMES:
        raise PredictionsError(f"{where}: label {label!r} is not one of {', '.join(LABEL_NAMES)}")
    probs = value.get("probabilities")
    if probs is not None and (
        not isinstance(probs, dict)
        or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in probs.values())
    ):
        raise PredictionsError(f"{where}: probabilities must be an object of numbers")
    extra = {k: v for k, v in value.items() if k not in (*REQUIRED, "probabilities", "has_evidence")}
    return ScoredPost(str(value["post_id"]), gold, label, probs, bool(value.get("has_evidence", True)), extra)


__all__ = ["PredictionsError", "ScoredPost", "Scores", "read_predictions", "records", "score", "write_predictions"]
