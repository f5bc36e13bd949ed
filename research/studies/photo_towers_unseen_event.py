"""How far a photo alone goes on an event no model has seen -> research/results/photo_towers.{json,md}

The model issue asks the shipped bundle, shown only the photo, for accuracy >= 0.75 and Macro-F1
>= 0.55 on the 121 MEDIC-labelled kerala_flood_2018 photos (60% infrastructure). This measures
the ceiling the image towers and the photos we hold allow, without any student in between: a
logistic-regression probe on each photo's mean EfficientNet-Lite patch feature (features from
`crisislens distill teacher-v2 photo-features`), trained on the labelled training photos
(CrisisMMD train rows with a photo, by their image label; MEDIC photos of other events), C chosen
on the dev photos, then scored once on kerala; with and without balanced class weights, and on
the MEDIC photos alone. Which events the training photos come from is listed: the photos we
hold are of four events.

    crisislens distill teacher-v2 photo-features --tower lite0 --tower lite1
    python research/studies/photo_towers_unseen_event.py --tower lite0 --tower lite1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.distill import data as D
from crisislens.distill import teacher_v2_data as T
from crisislens.distill.probe_teacher import fit_photo_probe, photo_label
from crisislens.runtime.markdown import md_table
from crisislens.runtime.settings import data_root
from _report import publish, run_line  # research/studies/_report.py

def labelled(groups: dict[str, list[D.Example]], names: list[str], root: Path) -> list[tuple[str, str, str, str]]:
    """(photo key, 5-class label, event, source) of every labelled photo in the groups (the
    probe teacher's photo labels)."""
    rows = []
    for name in names:
        for e in groups[name]:
            key, label = T._photo_key(e, root), photo_label(e)
            if key and label:
                rows.append((key, label, e.event or "?", e.source))
    return rows


def probe(tower: str, cache: Path, train: list, dev: list, unseen: list) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score

    z = np.load(cache / f"photos-{tower}.npz", allow_pickle=False)
    index = {k: i for i, k in enumerate(z["keys"].tolist())}
    pooled = z["grid"].astype(np.float32).mean(1)

    def xy(rows: list) -> tuple[np.ndarray, list[str]]:
        keep = [r for r in rows if r[0] in index]
        return pooled[[index[r[0]] for r in keep]], [r[1] for r in keep]

    out: dict[str, Any] = {}
    for variant, sources, weights in (("all training photos", ("crisismmd", "images"), None),
                                      ("all training photos, balanced class weights", ("crisismmd", "images"), "balanced"),
                                      ("MEDIC photos only", ("images",), None)):
        xtr, ytr = xy([r for r in train if r[3] in sources])
        xdev, ydev = xy(dev)
        xk, yk = xy(unseen)
        probe = fit_photo_probe(xtr, ytr, xdev, ydev, class_weight=weights)
        pred = probe.model.predict(probe.x(xk))
        present = sorted(set(yk))
        confusions = Counter(f"{g} -> {p}" for g, p in zip(yk, pred) if g != p)
        out[variant] = {"C": probe.c, "train_photos": len(ytr), "dev_macro_f1": probe.dev_scores[probe.c],
                        "kerala_accuracy": float(accuracy_score(yk, pred)),
                        "kerala_macro_f1": float(f1_score(yk, pred, labels=present, average="macro")),
                        "kerala_errors": dict(confusions.most_common(5))}
    return out


def render(result: dict[str, Any], prov: dict[str, Any]) -> str:
    rows = [(tower, variant, r["train_photos"], f"{r['dev_macro_f1']:.4f}", f"{r['kerala_accuracy']:.4f}",
             f"{r['kerala_macro_f1']:.4f}") for tower, variants in result["towers"].items() for variant, r in variants.items()]
    errors = []
    for tower, variants in result["towers"].items():
        first = next(iter(variants.values()))
        errors.append((tower, "; ".join(f"{k}: {v}" for k, v in first["kerala_errors"].items())))
    events = ", ".join(f"{k} {v}" for k, v in result["training_events"].items())
    return "\n".join([
        "# A photo alone on an unseen event: what the towers allow", "",
        run_line(prov, result["seconds"]), "",
        f"Training photos by event: {events}. Kerala: {result['kerala_photos']} photos, most common class "
        f"{result['kerala_majority']:.4f} of them. Macro-F1 over the 4 classes kerala has; C chosen on the "
        f"{result['dev_photos']} dev photos.", "",
        *md_table(["tower", "trained on", "photos", "dev Macro-F1", "kerala accuracy", "kerala Macro-F1"], rows), "",
        "Most frequent kerala errors (gold -> predicted), all training photos:", "",
        *md_table(["tower", "errors"], errors), ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tower", action="append", choices=("lite0", "lite1", "lite2"))
    p.add_argument("--cache", type=Path, default=Path("artifacts/v2"), help="photo-features cache")
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("research/results"))
    a = p.parse_args(argv)
    started = time.perf_counter()
    root = data_root(a.data_root)
    groups = T.gather(root)
    train = labelled(groups, ["crisismmd:train", "images:train"], root)
    dev = labelled(groups, ["crisismmd:dev", "images:heldout"], root)
    unseen = labelled(groups, ["images:kerala"], root)
    towers = a.tower or ["lite0", "lite1"]
    for tower in towers:
        if not (a.cache / f"photos-{tower}.npz").is_file():
            p.error(f"{a.cache}/photos-{tower}.npz: missing; run crisislens distill teacher-v2 photo-features --tower {tower}")
    majority = Counter(r[1] for r in unseen).most_common(1)[0][1] / len(unseen)
    result = {"towers": {t: probe(t, a.cache, train, dev, unseen) for t in towers},
              "training_events": dict(Counter(r[2] for r in train).most_common()), "dev_photos": len(dev),
              "kerala_photos": len(unseen), "kerala_majority": majority,
              "seconds": round(time.perf_counter() - started, 1)}
    publish("photo_towers", " ".join(["python research/studies/photo_towers_unseen_event.py", *sys.argv[1:]]), result,
            render, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
