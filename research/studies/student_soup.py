"""Mixing two students' weights: CrisisMMD accuracy against other crises -> research/results/student_soup.{json,md}

The student distilled from the MPNet probe teacher reads CrisisMMD well (test Macro-F1 about
0.75) but unseen crises worse (CrisisLexT26 0.45-0.50); the student trained on HumAID's own
labels keeps CrisisLexT26 at 0.51 but CrisisMMD at 0.67. Two runs with the same seed start from
the same weights, so their weighted mean is a student in between (distill/soup.py,
`crisislens distill student-v2 soup`). This study scores the mix at each weight, in PyTorch, on:

- CrisisMMD dev and test (955 posts), and the test posts with a photo (text + photo, text only);
- a seeded sample of held-out HumAID posts (never trained on: outside the training pool) — the
  development set for "other crises";
- the never-seen kerala_flood_2018 photos alone;
- a seeded sample of CrisisLexT26 (zero-shot; reported, never used to choose).

The weight is chosen on development sets only: the highest mean of CrisisMMD dev Macro-F1 and
held-out HumAID Macro-F1. The chosen mix is written as a checkpoint for `export onnx`, and is then
measured through the runtime by `student_v2.py`.

    python research/studies/student_soup.py --first artifacts/student-v2/v2-probekd-h0.1-photo-cam-s7/best.pt \
        --second artifacts/student-v2/gold-s7/best.pt --weights 0,0.25,0.5,0.75,1
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.runtime.markdown import md_table
from _report import add_render_only, publish, render_only, run_line  # research/studies/_report.py

NAME = "student_soup"
CHOICE = ("crisismmd:dev", "humaid:heldout")  # the weight's development sets


def choice_score(row: dict[str, Any]) -> float:
    """What the weight is chosen by: the mean Macro-F1 over the development sets (`CHOICE`)."""
    return float(np.mean([row[k]["macro_f1"] for k in CHOICE]))


def chosen_weight(rows: list[dict[str, Any]]) -> float:
    """The weight with the best `choice_score` (ties: the smaller weight, the first student's side)."""
    return min(rows, key=lambda r: (-r["choice"], r["weight"]))["weight"]


def measure_weights(first: Path, second: Path, weights: list[float], data_root: str | None, sample: int, seed: int,
                    cache: Path, out_dir: Path | None) -> dict[str, Any]:
    import torch

    from crisislens.distill import data as D
    from crisislens.distill.features import image_key
    from crisislens.distill.soup import load_pair, mixed_checkpoint
    from crisislens.distill.student import StudentConfig, build_student
    from crisislens.distill.student_v2 import (Rows, StudentV2Config, build_v2_features, photo_only_view, scores,
                                               text_only_view)
    from crisislens.distill.teacher_v2_data import gather

    root = D.resolve_data_root(data_root)
    g = gather(root, seed=StudentV2Config.data_seed)  # the split the students were trained on
    heldout = random.Random(seed).sample([e for e in g["humaid:rest"] if e.text], sample)
    lex = random.Random(seed).sample([e for e in g["crisislex:all"] if e.text], sample)
    a, b = load_pair(first, second)  # read once; each weight mixes them in memory
    config = StudentV2Config(data_root=str(root), cache=str(cache), model=StudentConfig.from_dict(a["config"]))
    model = build_student(config.model, a["bert_config"])
    model.load_state_dict(a["model"], strict=False)  # the frozen lower text layers the cache is built with
    sets = {"crisismmd:dev": g["crisismmd:dev"], "crisismmd:test": g["crisismmd:test"], "humaid:heldout": heldout,
            "crisislex_t26 sample": lex}
    features = build_v2_features(Rows({**sets, "images:kerala": g["images:kerala"]}, []), root, config, model)
    index = features.images.index
    photo = [e for e in g["crisismmd:test"] if e.image is not None and image_key(root, e.image) in index]
    sets |= {"test with a photo: text + photo": photo, "test with a photo: text only": text_only_view(photo),
             "kerala photos alone": photo_only_view([e for e in g["images:kerala"]
                                                    if image_key(root, e.image) in index])}  # type: ignore[arg-type]
    results = []
    for w in weights:
        started = time.perf_counter()
        ckpt = mixed_checkpoint(a, b, w, first, second)
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
        if unexpected or [k for k in missing if not k.startswith("image.")]:
            raise SystemExit(f"the mix does not fit the student: {unexpected[:3]} {missing[:3]}")
        row: dict[str, Any] = {"weight": w}
        for name, group in sets.items():
            s = scores(model, features, group)
            row[name] = {"n": s["n"], "macro_f1": s["macro_f1"], "accuracy": s["accuracy"],
                         "affected_individuals_f1": s["per_class_f1"].get("affected_individuals")}
        row["choice"] = choice_score(row)
        if out_dir is not None:
            folder = out_dir / f"soup-w{w:g}"
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(ckpt, folder / "best.pt")
            row["checkpoint"] = str(folder / "best.pt")
        print(f"weight {w:g}: CrisisMMD dev {row['crisismmd:dev']['macro_f1']:.4f}, HumAID held-out "
              f"{row['humaid:heldout']['macro_f1']:.4f}, CrisisLexT26 sample {row['crisislex_t26 sample']['macro_f1']:.4f} "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        results.append(row)
    chosen = chosen_weight(results)
    return {"first": str(first), "second": str(second), "sample": sample, "seed": seed, "weights": results,
            "chosen": chosen}


def render(result: dict[str, Any], prov: dict[str, Any]) -> str:
    rows = result["weights"]

    def cell(r: dict[str, Any], key: str) -> str:
        return f"{r[key]['macro_f1']:.4f} / {r[key]['accuracy']:.4f}"

    table = [(f"{r['weight']:g}" + (" (chosen)" if r["weight"] == result["chosen"] else ""),
              cell(r, "crisismmd:dev"), cell(r, "humaid:heldout"), f"{r['choice']:.4f}", cell(r, "crisismmd:test"),
              "–" if r["crisismmd:test"]["affected_individuals_f1"] is None
              else f"{r['crisismmd:test']['affected_individuals_f1']:.3f}",
              f"{r['test with a photo: text + photo']['macro_f1'] - r['test with a photo: text only']['macro_f1']:+.4f}",
              cell(r, "kerala photos alone"), cell(r, "crisislex_t26 sample")) for r in rows]
    first = rows[0]
    lines = [
        "# Mixing two students' weights: CrisisMMD against other crises (PyTorch)", "",
        run_line(prov, result["seconds"]), "",
        f"Weight 0: `{result['first']}`; weight 1: `{result['second']}` (same seed, so the same starting weights); "
        f"each row is (1 - weight) x the first + weight x the second. Macro-F1 / accuracy. Held-out HumAID and "
        f"CrisisLexT26: seeded samples of {result['sample']} posts with words (seed {result['seed']}); held-out HumAID "
        "posts lie outside the training pool. The weight is chosen on development sets only: the highest mean of "
        "CrisisMMD dev and held-out HumAID Macro-F1; CrisisLexT26 is never used to choose.", "",
        *md_table(["weight", "CrisisMMD dev", "HumAID held-out", "choice score", "CrisisMMD test",
                  "test affected_individuals F1", "photo gain (test rows with a photo)", "kerala photos alone",
                  "CrisisLexT26 sample (zero-shot)"], table),
        "",
        f"Test rows with a photo: {first['test with a photo: text + photo']['n']}; kerala photos: "
        f"{first['kerala photos alone']['n']} (Macro-F1 over the 4 classes present).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--first", type=Path, help="student checkpoint at weight 0 (e.g. the probe-teacher student)")
    p.add_argument("--second", type=Path, help="student checkpoint at weight 1 (e.g. the HumAID-gold student)")
    p.add_argument("--weights", default="0,0.25,0.5,0.75,1", help="comma-separated mix weights")
    p.add_argument("--sample", type=int, default=2000, help="held-out HumAID and CrisisLexT26 sample size")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--data-root", default=None)
    p.add_argument("--cache", type=Path, default=Path("artifacts/cache-soup"),
                   help="feature cache of the scored rows (kept apart from the training cache)")
    p.add_argument("--save", type=Path, default=None, help="write each mix to <save>/soup-w<weight>/best.pt")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    add_render_only(p)
    a = p.parse_args(argv)
    if a.render_only:
        return render_only(NAME, a.out, render)
    if a.first is None or a.second is None:
        p.error("--first and --second are required")
    weights = [float(x) for x in a.weights.split(",")]
    started = time.perf_counter()
    result = measure_weights(a.first, a.second, weights, a.data_root, a.sample, a.seed, a.cache, a.save)
    seconds = round(time.perf_counter() - started, 1)
    command = "python research/studies/student_soup.py " + " ".join(argv if argv is not None else sys.argv[1:])
    publish(NAME, command, result | {"seconds": seconds}, render, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
