"""Is the shipped model's confidence honest? Calibration per bundle -> research/results/calibration.{json,md}

The app shows each post's confidence, sorts by severity x confidence and filters at 50 / 70 /
90 % (`runtime.review.CONFIDENCE_STEPS`). This measures, through the runtime (the readers,
preprocessing and ONNX Runtime backend of a triage run), how often a post shown at a given
confidence is right: accuracy vs mean confidence, expected / maximum calibration error (15
equal-width bins), NLL and Brier score, and the accuracy of the posts at or above each filter
step, on CrisisMMD dev and test and on CrisisLexT26 (26 crises never trained on, text only).

Each variant is run with temperature 1 (the model's own softmax) and scored again with the
temperature its bundle carries (`crisislens export calibrate`, fitted on CrisisMMD dev), or,
for a bundle without one, with a temperature fitted here on CrisisMMD dev
(`runtime.metrics.fit_temperature`): the same labels (a temperature never changes the top
class), other confidences. log(probabilities) / T gives the runtime's softmax(logits / T).

    python research/studies/calibration.py --bundle int8-text=models/crisislens-student \\
        --bundle int8-w8a32=models/crisislens-student:int8-w8a32

The tweets go to a temporary file that is deleted afterwards (their licence forbids keeping
them in the repository).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.distill import data as D
from crisislens.runtime.bundle import load_bundle
from crisislens.runtime.engine import Engine
from crisislens.evaluation.datasets import dataset_inputs, labelled_posts
from crisislens.evaluation.evaluate import class_probabilities
from crisislens.evaluation.metrics import accuracy_at_confidence, calibration, fit_temperature, with_temperature
from crisislens.runtime.store.review import CONFIDENCE_STEPS
from _report import add_render_only, publish, render_only, run_line  # research/studies/_report.py
from zero_shot_bundles import crisislex_file, parse_bundles

N_BINS = 15
STEPS = tuple(t for t in CONFIDENCE_STEPS if t > 0)  # the app's minimum-confidence filter
SPLITS = ("crisismmd_dev", "crisismmd_test", "crisislex_t26")
SPLIT_TITLES = {"crisismmd_dev": "CrisisMMD dev", "crisismmd_test": "CrisisMMD test",
                "crisislex_t26": "CrisisLexT26 (zero-shot)"}


def scores(probs: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    return {**calibration(probs, target, N_BINS).to_dict(), "at_confidence": accuracy_at_confidence(probs, target, STEPS)}


def measure(folder: Path, variant: str | None, data: dict[str, tuple[list[Path], Path | None]]) -> dict[str, Any]:
    bundle = load_bundle(folder)
    engine = Engine(bundle, variant)
    in_bundle = engine.temperature
    engine.temperature = 1.0
    out: dict[str, Any] = {"folder": str(folder), "sha256": bundle.sha256, "variant": engine.variant.name}
    probs = {split: class_probabilities(engine, labelled_posts(*data[split])[0], what=split) for split in SPLITS}
    fitted = fit_temperature(*probs["crisismmd_dev"])
    t = in_bundle if in_bundle != 1.0 else fitted
    out.update(temperature_in_bundle=in_bundle, temperature_fit_on_dev=fitted, temperature=t,
               temperature_from="the bundle" if in_bundle != 1.0 else "fitted on CrisisMMD dev here")
    for split, (p, y) in probs.items():
        out[split] = {"no_temperature": scores(p, y), "with_temperature": scores(with_temperature(p, t), y)}
    return out


def _row(name: str, split: str, how: str, s: dict[str, Any]) -> str:
    steps = " | ".join(f"{a['accuracy']:.3f} ({a['n']:,})" for a in s["at_confidence"])
    return (f"| {name} | {SPLIT_TITLES[split]} | {how} | {s['n']:,} | {s['accuracy']:.4f} | {s['mean_confidence']:.4f} | "
            f"{s['ece']:.4f} | {s['mce']:.4f} | {s['nll']:.4f} | {s['brier']:.4f} | {steps} |")


def to_markdown(result: dict[str, Any], prov: dict[str, Any]) -> str:
    steps = " | ".join(f"accuracy at >= {t:.0%} (n)" for t in result["steps"])
    lines = ["# Calibration: is a confidence of 90% right 90% of the time?", "",
             run_line(prov, result["seconds"]), "",
             "Through the runtime (ONNX Runtime, the bundle's preprocessing). Confidence = the top class's "
             f"probability. ECE / MCE over {result['n_bins']} equal-width bins (Guo et al., 2017); NLL and Brier "
             "over the 5 classes. The last columns are the app's minimum-confidence filter steps: how often the "
             "posts at or above each are right, and how many there are. `T = 1` is the model's own softmax; the "
             "other row divides the logits by the bundle's temperature (fitted on CrisisMMD dev by `crisislens "
             "export calibrate`; for a bundle without one, fitted here the same way); labels do not change. "
             "CrisisLexT26: "
             f"{result['crisislex_n']:,} labelled tweets of 26 events never trained on, text only.", "",
             f"| bundle | data | confidence | n | accuracy | mean confidence | ECE | MCE | NLL | Brier | {steps} |",
             "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(result["steps"])]
    for name, r in result["bundles"].items():
        for split in SPLITS:
            lines.append(_row(name, split, "T = 1", r[split]["no_temperature"]))
            lines.append(_row(name, split, f"T = {r['temperature']:.3f} ({r['temperature_from']})",
                              r[split]["with_temperature"]))
    lines += ["", "Bundles: " + "; ".join(f"{name} = `{r['folder']}` variant {r['variant']} (sha256 {r['sha256'][:12]}; "
                                         f"temperature fitted on CrisisMMD dev here: {r['temperature_fit_on_dev']:.3f})"
                                         for name, r in result["bundles"].items()) + ".", ""]
    first, r = next(iter(result["bundles"].items()))
    for split in ("crisismmd_test", "crisislex_t26"):
        lines += [f"Reliability of {first} with T = {r['temperature']:.3f} on {SPLIT_TITLES[split]} (non-empty bins):",
                  "", "| confidence | n | accuracy | mean confidence | gap |", "|---|---|---|---|---|"]
        for b in r[split]["with_temperature"]["bins"]:
            if b["n"]:
                lines.append(f"| ({b['low']:.3f}, {b['high']:.3f}] | {b['n']:,} | {b['accuracy']:.3f} | "
                             f"{b['mean_confidence']:.3f} | {b['accuracy'] - b['mean_confidence']:+.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", action="append", metavar="NAME=DIR[:VARIANT]",
                        help="a bundle to measure (repeatable)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=Path("research/results"))
    add_render_only(parser)
    args = parser.parse_args(argv)
    if args.render_only:
        return render_only("calibration", args.out, to_markdown)
    if not args.bundle:
        parser.error("--bundle is required (or --render-only)")
    bundles = parse_bundles(parser, args.bundle)
    root = D.resolve_data_root(str(D.cli_data_root(args.data_root)))
    started = time.perf_counter()
    result: dict[str, Any] = {"n_bins": N_BINS, "steps": list(STEPS), "bundles": {}}
    with tempfile.TemporaryDirectory() as tmp:
        lex_path, result["crisislex_n"] = crisislex_file(root, Path(tmp))
        data = {"crisismmd_dev": dataset_inputs("crisismmd:dev", root), "crisismmd_test": dataset_inputs("crisismmd:test", root),
                "crisislex_t26": ([lex_path], None)}
        for name, (folder, variant) in bundles.items():
            print(f"{name} ...", file=sys.stderr)
            result["bundles"][name] = measure(folder, variant, data)
    result["seconds"] = round(time.perf_counter() - started, 1)
    publish("calibration", " ".join(["python", "research/studies/calibration.py", *(argv or sys.argv[1:])]), result,
            to_markdown, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
