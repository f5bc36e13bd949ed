"""`crisislens eval --bundle DIR`: score a bundle variant on labelled posts, through the runtime
(no torch): the same reader, preprocessing and backend a triage run uses.

Inputs are any post files the readers take (JSONL / CSV / TSV / folders) whose records carry a
gold `label`, or a named dataset under the data root (`crisismmd:test`, `crisismmd:dev`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.evaluation.datasets import labelled_posts
from crisislens.evaluation.metrics.calibration import calibration, fit_temperature, with_temperature
from crisislens.evaluation.score import records, score, write_predictions
from crisislens.runtime.bundle import load_bundle, set_temperature
from crisislens.runtime.engine import Engine
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.reports import provenance
from crisislens.runtime.schema import Post, Prediction


def predict_all(
    engine: Engine,
    posts: Sequence[Post],
    *,
    classes: Sequence[str] | None = None,
    batch_size: int = 32,
    what: str = "eval",
) -> list[Prediction]:
    """`engine.predict` over `posts` in batches, with a progress line on stderr."""
    preds: list[Prediction] = []
    for b in range(0, len(posts), batch_size):
        preds.extend(engine.predict(posts[b : b + batch_size], classes=classes))
        print(f"\r{what}: {min(b + batch_size, len(posts))}/{len(posts)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return preds


def class_probabilities(
    engine: Engine, posts: Sequence[Post], *, batch_size: int = 32, what: str = "eval"
) -> tuple[np.ndarray, np.ndarray]:
    """[n, 5] probabilities (`LABEL_NAMES` order) of labelled `posts` and their gold class indices."""
    preds = predict_all(engine, posts, batch_size=batch_size, what=what)
    probs = np.array([[p.probabilities[name] for name in LABEL_NAMES] for p in preds])
    return probs, np.array([LABEL_NAMES.index(p.label) for p in posts])


def evaluate_bundle(
    bundle_dir: Path,
    inputs: Sequence[Path],
    *,
    variant: str | None = None,
    image_root: Path | None = None,
    classes: Sequence[str] | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    prefer: str = "auto",
    predictions_out: Path | None = None,
) -> dict[str, Any]:
    """Score `variant` of the bundle on the labelled posts in `inputs` (`predictions_out`: also
    write the predictions file that `crisislens eval score` reads)."""
    started = time.perf_counter()
    bundle = load_bundle(bundle_dir)
    engine = Engine(bundle, variant, threads=threads, providers=providers, prefer=prefer)
    posts, report = labelled_posts(inputs, image_root)
    unlabelled = len(report.posts) - len(posts)
    if classes:
        outside = sorted({p.label for p in posts if p.label is not None and p.label not in classes})
        if outside:
            raise ValueError(f"gold labels outside --classes: {', '.join(outside)}")
    preds = predict_all(engine, posts, classes=classes, batch_size=batch_size)
    scored = records(posts, preds)
    if predictions_out is not None:
        write_predictions(predictions_out, scored)
    scores = score(scored, classes)  # the one scoring path: the same as `crisislens eval score`
    return {
        "bundle": str(bundle_dir),
        "bundle_sha256": bundle.sha256,
        "variant": engine.variant.name,
        "providers": list(getattr(engine.backend, "providers", [])),
        "backend": engine.backend_reason,
        "inputs": [str(p) for p in inputs],
        "n": len(posts),
        "skipped_unlabelled": unlabelled,
        "read_errors": len(report.errors),
        "with_image_used": sum(1 for p in preds if p.patch_rationale is not None),
        # scored all the same (every gold post counts), though the model saw no word and no photo
        "without_evidence": scores.without_evidence,
        "classes": list(scores.classes),
        "macro_f1": scores.macro_f1,
        "accuracy": scores.accuracy,
        "weighted_f1": scores.weighted_f1,
        "per_class": scores.per_class,
        "seconds": round(time.perf_counter() - started, 1),
    }


def calibrate_bundle(
    bundle_dir: Path,
    inputs: Sequence[Path],
    *,
    dataset: str,
    image_root: Path | None = None,
    variants: Sequence[str] | None = None,
    batch_size: int = 32,
) -> dict[str, dict[str, Any]]:
    """Fit each variant's softmax temperature on the labelled posts in `inputs` (held-out data:
    `dataset` names it in the manifest) and write it into the bundle (`set_temperature`).

    Each variant is run with temperature 1 (what the model gives), the NLL-minimising
    temperature is fitted to its probabilities, and ECE / NLL before and after are recorded with
    it. Labels do not change. Returns the evidence per variant.
    """
    bundle = load_bundle(bundle_dir)
    names = list(variants) if variants else list(bundle.variants)
    for name in names:
        bundle.variant(name)  # an unknown name is refused before anything runs
    posts, _ = labelled_posts(inputs, image_root)
    commit = provenance()["git_commit"]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        engine = Engine(bundle, name)
        engine.temperature = 1.0
        probs, target = class_probabilities(engine, posts, batch_size=batch_size, what=f"calibrate {name}")
        t = fit_temperature(probs, target)
        before, after = calibration(probs, target), calibration(with_temperature(probs, t), target)
        evidence = {
            "fitted_on": dataset,
            "n": len(posts),
            "objective": "nll",
            "nll_before": before.nll,
            "nll_after": after.nll,
            "ece_before": before.ece,
            "ece_after": after.ece,
            "measured_by": "crisislens export calibrate",
            "measured_at_commit": commit[:7],
        }
        set_temperature(bundle_dir, name, t, evidence)
        out[name] = {"temperature": t, **evidence}
    return out
