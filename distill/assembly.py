"""The training data, assembled per source: the same for the teacher and the student.

Sources (all mapped to the 5 CrisisMMD classes): CrisisMMD agreed train (text + the photos that
are available), a seeded HumAID sample (text only, redrawn every epoch from a pool; its size is
`humaid_pool`, a measured trade-off), the human rationale set of one event (text only, with the
rationale loss; the other event is held out for plausibility) and the labelled crisis photos
(image only). Anything that duplicates a CrisisMMD dev/test text (exact or near) is excluded.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from crisislens.distill import data as D
from crisislens.distill.leakage import exclude_leaks, find_leaks


class AssemblyConfig(Protocol):
    """The settings `assemble` reads (`train_teacher.TrainConfig` has them)."""

    seed: int
    humaid_pool: int
    humaid_per_epoch: int
    rationale_train_event: str
    rationale_eval_event: str
    image_heldout_fraction: float


@dataclass
class Sets:
    train: dict[str, list[D.Example]]  # by source
    dev: list[D.Example]
    test: list[D.Example]
    rationale_eval: list[D.Example]
    image_heldout: list[D.Example]  # labelled photos kept out of training, for image-only scores
    leakage: dict[str, Any]


def stratified_sample(examples: Sequence[D.Example], n: int, seed: int) -> list[D.Example]:
    """`n` rows keeping the class proportions (seeded); all of them when there are fewer."""
    if len(examples) <= n:
        return list(examples)
    rng = random.Random(seed)
    by: dict[str, list[D.Example]] = {}
    for e in examples:
        by.setdefault(e.label or "", []).append(e)
    out: list[D.Example] = []
    for label, rows in sorted(by.items()):
        k = round(n * len(rows) / len(examples))
        out.extend(rng.sample(rows, min(k, len(rows))))
    return out


def assemble(root: Path, config: AssemblyConfig) -> Sets:
    """Every training source, leak-checked against CrisisMMD dev/test, and the evaluation sets."""
    dev = D.load_crisismmd(root, "dev")
    test = D.load_crisismmd(root, "test")
    events = D.rationale_files(root)
    for event in (config.rationale_train_event, config.rationale_eval_event):
        if event not in events:
            raise D.DataError(f"rationale event {event!r} not found; available: {', '.join(events)}")
    train_event, eval_event = config.rationale_train_event, config.rationale_eval_event
    train: dict[str, list[D.Example]] = {
        "crisismmd": D.load_crisismmd(root, "train"),
        "humaid": [e for e in D.load_humaid(root) if e.label is not None],
        "rationales": D.load_rationales(root, events=[train_event]),
        "images": D.load_labelled_images(root),  # excludes photos of CrisisMMD dev/test tweets
    }
    evaluation = dev + test
    leakage: dict[str, Any] = {}
    for name in ("humaid", "rationales", "crisismmd"):
        report = find_leaks(train[name], evaluation)
        kept = exclude_leaks(train[name], report)
        leakage[name] = {"rows": len(train[name]), "excluded": len(train[name]) - len(kept)}
        train[name] = kept
    train["humaid"] = stratified_sample(train["humaid"], config.humaid_pool, config.seed)
    images = sorted(train["images"], key=lambda e: e.id)
    random.Random(config.seed).shuffle(images)
    cut = round(len(images) * (1 - config.image_heldout_fraction))
    train["images"], image_heldout = images[:cut], images[cut:]
    rationale_eval = D.load_rationales(root, events=[eval_event])
    return Sets(train, dev, test, rationale_eval, image_heldout, leakage)


def epoch_examples(sets: Sets, config: AssemblyConfig, epoch: int) -> list[D.Example]:
    """One epoch's rows: every CrisisMMD, rationale and photo row, and a fresh HumAID sample (seeded)."""
    rng = random.Random(config.seed * 1000 + epoch)
    humaid = sets.train["humaid"]
    rows = (sets.train["crisismmd"] + sets.train["rationales"] + sets.train["images"]
            + rng.sample(humaid, min(config.humaid_per_epoch, len(humaid))))
    rng.shuffle(rows)
    return rows
