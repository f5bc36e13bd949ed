"""How much of HumAID's own labels the probe teacher should learn -> research/results/probe_teacher_humaid.{json,md}

The probe teacher fitted on CrisisMMD alone gives the student v2 its best CrisisMMD scores but
costs CrisisLexT26 zero-shot (0.51 -> 0.34 through the runtime): HumAID read through CrisisMMD's
probe loses what its own labels say about `affected_individuals` and `other_relevant_information`
elsewhere. This study fits the probe teacher (`crisislens distill teacher-v2 probe-teacher`) with
HumAID's labels weighted 0 .. 1 against CrisisMMD's and scores each on CrisisMMD dev / test and a
seeded CrisisLexT26 sample, zero-shot; the embeddings are cached, so each weight costs only the fits.
MPNet embeds about 5 posts a second on two CPU cores, so `--humaid N` fits on a seeded sample of
N HumAID training posts (the rationale set, which only the teacher run's outputs need, is left out).

    python research/studies/probe_teacher_humaid.py --weights 0,0.1,0.3,1 --crisislex 2000 --humaid 8000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crisislens.runtime.markdown import md_table
from _report import numbers, publish, run_line  # research/studies/_report.py

FOCUS = ("affected_individuals", "other_relevant_information")


def row(weight: float, summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one fitted weight."""
    lex_key = next((k for k in summary if k.startswith("crisislex_t26")), None)
    lex = summary[lex_key] if lex_key else None
    dev, test = summary["crisismmd:dev"], summary["crisismmd:test"]
    return {"humaid_weight": weight, "C": summary["C"], "dev_macro_f1": dev["macro_f1"],
            "test_macro_f1": test["macro_f1"], "test_accuracy": test["accuracy"],
            "test_affected_f1": test["per_class"]["affected_individuals"]["f1"],
            "crisislex": None if lex is None else {
                "n": lex["n"], "macro_f1": lex["macro_f1"], "accuracy": lex["accuracy"],
                "per_class": {k: v["f1"] for k, v in lex["per_class"].items()}}}


def subsample(groups: dict[str, list[Any]], humaid: int, seed: int) -> dict[str, list[Any]]:
    """`groups` with a seeded sample of `humaid` HumAID training posts (0: all) and no rationale set."""
    from crisislens.distill.probe_teacher import sample_humaid

    return {k: v for k, v in sample_humaid(groups, humaid, seed).items() if k != "rationales:train"}


def render(result: dict[str, Any], prov: dict[str, Any]) -> str:
    rows = []
    for r in result["rows"]:
        lex = r["crisislex"]
        rows.append((f"{r['humaid_weight']:g}", f"{r['C']:g}", f"{r['dev_macro_f1']:.4f}", f"{r['test_macro_f1']:.4f}",
                     f"{r['test_accuracy']:.4f}", f"{r['test_affected_f1']:.3f}",
                     "–" if lex is None else f"{lex['macro_f1']:.4f} / {lex['accuracy']:.4f}",
                     *(("–" if lex is None else f"{lex['per_class'][k]:.3f}") for k in FOCUS)))
    return "\n".join([
        "# The probe teacher with HumAID's own labels (MPNet linear probe, CrisisMMD dev / test, CrisisLexT26 zero-shot)",
        "", run_line(prov, result["seconds"]), "",
        f"Encoder {result['encoder']}; {result['humaid_rows']} HumAID training posts (seeded sample), each weighing the weight "
        "shown against a CrisisMMD training post; C picked on CrisisMMD dev for each weight. CrisisLexT26: a seeded "
        "sample, never trained on.", "",
        *md_table(["HumAID weight", "C", "dev Macro-F1", "test Macro-F1", "test accuracy",
                   "test affected_individuals F1", "CrisisLexT26 Macro-F1 / accuracy",
                   "CrisisLexT26 affected_individuals F1", "CrisisLexT26 other_relevant_information F1"], rows)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=numbers, default="0,0.1,0.3,1", help="HumAID weights, comma-separated")
    p.add_argument("--crisislex", type=int, default=2000, help="CrisisLexT26 sample size")
    p.add_argument("--humaid", type=int, default=0, help="a seeded sample of N HumAID training posts (0: all)")
    p.add_argument("--seed", type=int, default=13, help="the samples' seed")
    p.add_argument("--encoder", default="mpnet", choices=("minilm", "mpnet"))
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p.add_argument("--cache", type=Path, default=Path("artifacts/cache-v2"))
    p.add_argument("--out", type=Path, default=Path("research/results"))
    a = p.parse_args(argv)
    weights = a.weights
    from crisislens.distill.probe_teacher import build
    from crisislens.distill.teacher_v2_data import gather

    started = time.perf_counter()
    groups = subsample(gather(a.data_root), a.humaid, a.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in weights:
            summary = build(groups, Path(tmp) / f"w{w}", a.cache, encoder=a.encoder, humaid_weight=w,
                            crisislex=a.crisislex)
            rows.append(row(w, summary))
            print(f"weight {w:g}: test {rows[-1]['test_macro_f1']:.4f}, CrisisLexT26 "
                  f"{(rows[-1]['crisislex'] or {}).get('macro_f1', float('nan')):.4f}", file=sys.stderr)
    result = {"encoder": a.encoder, "humaid_rows": len(groups.get("humaid:train", [])), "seed": a.seed, "rows": rows,
              "seconds": round(time.perf_counter() - started, 1)}
    publish("probe_teacher_humaid", " ".join(["python research/studies/probe_teacher_humaid.py", *sys.argv[1:]]),
            result, render, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
