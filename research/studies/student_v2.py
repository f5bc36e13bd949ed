"""Student v2 candidates against the shipped bundle, through the runtime -> research/results/student_v2.{json,md}

Each bundle given is scored the way a triage run would score it (torch-free engine): CrisisMMD
test (`evaluate_bundle`), the photo evidence of `crisislens eval photos` (text + photo vs text
alone, the unseen event's photos alone, top-5 vs random patch deletion, unrelated-photo patch
overlap) and the word rationale of `crisislens eval rationales` (Hagupit human rationales, ERASER
comprehensiveness against random words). With a training run folder (`NAME=BUNDLE@RUN`), the
student's own PyTorch scores from its `train_summary.json` (best dev epoch) are shown beside.

    python research/studies/student_v2.py --bundle shipped=models/crisislens-student \
        --bundle v2=artifacts/bundle-v2-s13@artifacts/student-v2/s13
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crisislens.distill.bundle_rationales import bundle_rationales
from crisislens.evaluation.datasets import dataset_inputs
from crisislens.evaluation.evaluate import evaluate_bundle
from crisislens.evaluation.photos import photo_evidence
from crisislens.runtime.markdown import md_table
from crisislens.runtime.settings import data_root
from _report import add_render_only, kept, kept_lines, publish, render_only, run_line  # research/studies/_report.py
from zero_shot_bundles import crisislex_file  # research/studies/zero_shot_bundles.py


def measure(bundle: Path, run: Path | None, root: Path, threads: int, against: Path | None = None,
            crisislex: Path | None = None) -> dict[str, Any]:
    inputs, images = dataset_inputs("crisismmd:test", root)
    out: dict[str, Any] = {"bundle": str(bundle),
                           "test": evaluate_bundle(bundle, inputs, image_root=images, threads=threads),
                           "photos": photo_evidence(bundle, root, threads=threads, against=against),
                           "rationales": bundle_rationales(bundle, root, threads=threads)}
    if crisislex is not None:  # 26 crises never trained on, text only
        out["crisislex_t26"] = evaluate_bundle(bundle, [str(crisislex)], threads=threads)
    out["bundle_mb"] = round(sum(f.stat().st_size for f in bundle.iterdir() if f.is_file()) / 2**20, 1)
    if run is not None:
        summary = json.loads((run / "train_summary.json").read_text())
        out["training"] = {"run": str(run), "best_dev_macro_f1": summary["best_dev_macro_f1"],
                           "epochs": len(summary["history"]), "minutes": summary["train_minutes"],
                           "config": summary["config"], "pytorch": summary["eval"]}
    return out


def deletion_cell(d: dict[str, Any]) -> str:
    """The top-k / random deletion ratio; where there is none (greying out random patches does not
    lower the probability), the two mean drops themselves."""
    if d.get("note"):
        return "n/a (graph without patch_keep)"
    if d["ratio"] is not None:
        return f"{d['ratio']:.2f}"
    return f"n/a (drops {d['mean_drop_top_k']:+.4f} / {d['mean_drop_random_k']:+.4f})"


def render(result: dict[str, Any], prov: dict[str, Any]) -> str:
    rows, photos, words = [], [], []
    for name, r in result["bundles"].items():
        t = r["test"]
        lex = r.get("crisislex_t26")
        rows.append((name, f"{t['macro_f1']:.4f}", f"{t['accuracy']:.4f}",
                     f"{t['per_class']['affected_individuals']:.3f}",
                     "–" if lex is None else f"{lex['macro_f1']:.4f} / {lex['accuracy']:.4f}", r["bundle_mb"]))
        p = r["photos"]
        w, h = p["crisismmd_test_with_photo"], p["photo_only_unseen_event"]
        d = next(iter(p["deletion"].values()))
        flat = p["deletion"].get("crisismmd_test_with_photo, cells at their mean colour")
        tokens = [p["deletion"].get(k) for k in ("crisismmd_test_with_photo, patches removed as tokens",
                                                  f"{h['event']} photo only, patches removed as tokens")]
        token_cell = "–" if None in tokens else " / ".join(deletion_cell(t) for t in tokens)
        seeds = p["agreement"].get("same_posts_top_k_iou")
        photos.append((name, f"{w['text_and_photo']['macro_f1']:.4f}", f"{w['text_only']['macro_f1']:.4f}",
                       f"{w['gain_macro_f1']:+.4f}", f"{h['accuracy']:.4f}", f"{h['macro_f1']:.4f}",
                       deletion_cell(d), "–" if flat is None else deletion_cell(flat), token_cell,
                       f"{p['agreement']['unrelated_photos_top_k_iou']:.3f}", "–" if seeds is None else f"{seeds:.3f}"))
        q = r["rationales"]
        ratio = q["faithfulness"]["comprehensiveness_ratio"]
        words.append((name, f"{q['plausibility']['token']['macro_f1']:.4f}",
                      f"{q['faithfulness']['rationale']['comprehensiveness']:.4f}",
                      f"{q['faithfulness']['random']['comprehensiveness']:.4f}", "n/a" if ratio is None else f"{ratio:.2f}"))
    h = next(iter(result["bundles"].values()))["photos"]["photo_only_unseen_event"]
    lines = ["# Student v2 candidates against the shipped bundle (through the runtime)", "",
             run_line(prov, result["seconds"]), "",
             "## CrisisMMD test (955 posts)", "",
             *md_table(["bundle", "Macro-F1", "accuracy", "affected_individuals F1",
                        "CrisisLexT26 Macro-F1 / accuracy (zero-shot)", "bundle MB"], rows), "",
             f"## Photos (CrisisMMD test posts with a photo; {h['event']} photos alone, "
             f"most common class {h['majority_accuracy']:.4f})", "",
             *md_table(["bundle", "text + photo F1", "text only F1", "gain", f"{h['event']} accuracy",
                        f"{h['event']} Macro-F1", "top-5 / random deletion", "same, cells at their mean colour",
                        f"same, removed as tokens (with words / {h['event']} alone)",
                        "unrelated top-5 IoU",
                        "top-5 IoU with another seed"], photos), "",
             "## Word rationales", "",
             *md_table(["bundle", "Hagupit token F1", "comprehensiveness", "random", "ratio"], words)]
    lines += kept_lines(result["bundles"], "not re-measured")
    for name, r in result["bundles"].items():
        if "training" in r:
            tr = r["training"]
            lines += ["", f"## {name}: the student in PyTorch ({tr['run']}, best dev Macro-F1 "
                      f"{tr['best_dev_macro_f1']:.4f}, {tr['epochs']} epochs, {tr['minutes']} min)", "",
                      *md_table(["set", "n", "Macro-F1", "accuracy"],
                                [(k, v["n"], f"{v['macro_f1']:.4f}", f"{v['accuracy']:.4f}")
                                 for k, v in tr["pytorch"].items()])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", action="append", default=[],
                   help="NAME=DIR, NAME=DIR@TRAINING_RUN or NAME=DIR@TRAINING_RUN%%OTHER_SEED_BUNDLE")
    p.add_argument("--crisislex", action="store_true", help="also CrisisLexT26 zero-shot (27k posts, minutes)")
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("research/results"))
    p.add_argument("--keep", action="append", default=[], metavar="NAME",
                   help="keep this bundle's numbers from the existing student_v2.json (not re-measured; "
                        "its commit and date are kept beside it)")
    add_render_only(p)
    a = p.parse_args(argv)
    if a.render_only:
        return render_only("student_v2", a.out, render)
    if not a.bundle:
        p.error("--bundle: at least one (or --render-only)")
    root = data_root(a.data_root)
    started = time.perf_counter()
    bundles = kept(a.out, "student_v2", "bundles", a.keep, p.error)
    with tempfile.TemporaryDirectory() as tmp:  # the CrisisLexT26 tweets never stay on disk
        lex = crisislex_file(root, Path(tmp))[0] if a.crisislex else None
        for value in a.bundle:
            name, _, rest = value.partition("=")
            folder, _, run = rest.partition("@")
            run, _, other = run.partition("%")
            if not name or not folder or not Path(folder).is_dir() or (other and not Path(other).is_dir()):
                p.error(f"--bundle {value!r}: expected NAME=DIR[@RUN[%OTHER_SEED_BUNDLE]] with existing folders")
            print(f"{name} ...", file=sys.stderr)
            bundles[name] = measure(Path(folder), Path(run) if run else None, root, a.threads,
                                    Path(other) if other else None, lex)
    result = {"bundles": bundles, "seconds": round(time.perf_counter() - started, 1)}
    publish("student_v2", " ".join(["python", "research/studies/student_v2.py", *(argv or sys.argv[1:])]), result,
            render, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
