"""Student v2 training recipes side by side (PyTorch, the best dev epoch of each run) -> research/results/student_v2_runs.{json,md}

Each run is a folder written by `crisislens distill student-v2 train` (its `train_summary.json`:
the settings, the per-epoch dev scores, and the best epoch's scores on CrisisMMD dev/test, their
rows with a photo read three ways, and the never-seen kerala_flood_2018 photos alone). Which
recipe to export is decided here, on dev; the bundles are then compared through the runtime by
`student_v2.py`.

    python research/studies/student_v2_runs.py --run gold=artifacts/student-v2/gold-s13 \
        --run offsets=artifacts/student-v2/offs-s13
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from crisislens.runtime.markdown import md_table
from _report import kept, kept_lines, publish, run_line  # research/studies/_report.py

DEFAULTS = {"seed": 13, "epochs": 6, "humaid_per_epoch": 8000, "humaid_labels": "", "humaid_gold": True,
            "class_weight_power": 0.0, "text_drop": 1.0}
SETS = [("crisismmd:dev", "dev"), ("crisismmd:test", "test"),
        ("crisismmd:test with a photo: text + photo", "test, photo rows: text + photo"),
        ("crisismmd:test with a photo: text only", "test, photo rows: text only"),
        ("crisismmd:test with a photo: photo only", "test, photo rows: photo only"),
        ("images:kerala photo only", "kerala photos alone")]


def recipe(config: dict[str, Any]) -> str:
    """The settings that differ from the defaults, in a line."""
    parts = [f"{k}={config[k]}" for k in DEFAULTS if k in config and config[k] != DEFAULTS[k]]
    if not config.get("teacher_run"):
        parts.append("no teacher")
    else:
        parts.append(f"teacher {Path(config['teacher_run']).name}")
    loss = config.get("loss", {})
    loss_defaults = {"kd": 0.5, "token_human": 0.5, "patch_teacher": 1.0}
    parts += [f"loss.{k}={v}" for k, v in loss.items() if k in loss_defaults and v != loss_defaults[k]
              and (config.get("teacher_run") or k == "token_human")]
    model = config.get("model", {})
    model_defaults = {"frozen_text_layers": 5, "source_offsets": 0, "image_size": 224, "local_patch_pool": False}
    parts += [f"model.{k}={model[k]}" for k in model_defaults if k in model and model[k] != model_defaults[k]]
    return ", ".join(parts) or "defaults"


def measure(run: Path) -> dict[str, Any]:
    summary = json.loads((run / "train_summary.json").read_text())
    return {"run": str(run), "recipe": recipe(summary["config"]), "best_dev_macro_f1": summary["best_dev_macro_f1"],
            "dev_per_epoch": [h["dev"]["macro_f1"] for h in summary["history"]],
            "minutes": summary["train_minutes"], "eval": summary["eval"]}


def render(result: dict[str, Any], prov: dict[str, Any]) -> str:
    runs = result["runs"]
    recipes = [(name, r["recipe"], " / ".join(f"{x:.3f}" for x in r["dev_per_epoch"]), r["minutes"])
               for name, r in runs.items()]
    scores = []
    for name, r in runs.items():
        for key, label in SETS:
            s = r["eval"].get(key)
            if s is None:
                continue
            aff = s["per_class_f1"].get("affected_individuals")
            scores.append((name, label, s["n"], f"{s['macro_f1']:.4f}", f"{s['accuracy']:.4f}",
                           "–" if aff is None else f"{aff:.3f}"))
    return "\n".join([
        "# Student v2 training recipes (PyTorch, best dev epoch)", "",
        run_line(prov, result["seconds"]), "",
        "Each run: `crisislens distill student-v2 train` with the settings shown (the rest at their defaults: "
        "the teacher v2's outputs when a teacher run is given, HumAID 8,000 posts an epoch, no class weights). "
        "Macro-F1 over the classes present (kerala_flood_2018: 4).", "",
        *md_table(["run", "settings", "dev Macro-F1 per epoch", "minutes"], recipes), "",
        *md_table(["run", "set", "n", "Macro-F1", "accuracy", "affected_individuals F1"], scores),
        *kept_lines(runs, "folders not re-read")])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, metavar="NAME=DIR", help="a training run folder")
    p.add_argument("--out", type=Path, default=Path("research/results"))
    p.add_argument("--keep", action="append", default=[], metavar="NAME",
                   help="keep this run's numbers from the existing student_v2_runs.json (its folder may be gone; "
                        "its commit and date are kept beside it)")
    a = p.parse_args(argv)
    started = time.perf_counter()
    runs = kept(a.out, "student_v2_runs", "runs", a.keep, p.error)
    for item in a.run:
        name, _, folder = item.partition("=")
        if not (Path(folder) / "train_summary.json").is_file():
            p.error(f"--run {item}: {folder}/train_summary.json not found (an unfinished run?)")
        runs[name] = measure(Path(folder))
    result = {"runs": runs, "seconds": round(time.perf_counter() - started, 1)}
    publish("student_v2_runs", " ".join(["python research/studies/student_v2_runs.py", *sys.argv[1:]]), result,
            render, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
