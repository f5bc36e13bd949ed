"""Shipped bundles on unseen crises (CrisisLexT26) and on CrisisMMD test -> research/results/zero_shot.{json,md}

The field tool meets crises it was never trained on. This scores each bundle given, through
the runtime (`crisislens.evaluation.evaluate.evaluate_bundle`: the same readers, preprocessing and
ONNX Runtime backend as a triage run), on CrisisLexT26 (26 events of 2012-2013, text only, its
information types mapped to the 5 classes by `distill/data.py`) and on CrisisMMD agreed test.
Use it to compare two versions of the shipped student, e.g. the committed one and an earlier
one taken out of git:

    git archive e78770a models/crisislens-student | tar -x -C /tmp/old
    python research/studies/zero_shot_bundles.py --bundle before=/tmp/old/models/crisislens-student \
        --bundle now=models/crisislens-student

The tweets go to a temporary file that is deleted afterwards (their licence forbids keeping
them in the repository).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crisislens.distill import data as D
from crisislens.evaluation.datasets import dataset_inputs
from crisislens.evaluation.evaluate import evaluate_bundle
from _report import publish, run_line  # research/studies/_report.py


def parse_bundles(parser: argparse.ArgumentParser, values: list[str]) -> dict[str, tuple[Path, str | None]]:
    """NAME=DIR or NAME=DIR:VARIANT, names unique and non-empty, folders existing."""
    out: dict[str, tuple[Path, str | None]] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            parser.error(f"--bundle {value!r}: expected NAME=DIR or NAME=DIR:VARIANT")
        folder, _, variant = rest.partition(":")
        if name in out:
            parser.error(f"--bundle {value!r}: the name {name!r} is given twice")
        if not Path(folder).is_dir():
            parser.error(f"--bundle {value!r}: {folder} is not a folder")
        out[name] = (Path(folder), variant or None)
    return out


def crisislex_file(root: Path, folder: Path) -> tuple[Path, int]:
    rows = [e for e in D.load_crisislex(root) if e.label is not None and e.text]
    path = folder / "crisislex_t26.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for e in rows:
            f.write(json.dumps({"id": e.id, "text": e.text, "label": e.label}, ensure_ascii=False) + "\n")
    return path, len(rows)


def to_markdown(result: dict[str, Any], prov: dict[str, Any]) -> str:
    lines = ["# Shipped bundles on unseen crises (CrisisLexT26) and on CrisisMMD test", "",
             run_line(prov, result["seconds"]), "",
             "Through the runtime (ONNX Runtime, the bundle's preprocessing). CrisisLexT26: "
             f"{result['crisislex_n']:,} labelled tweets of 26 events never trained on, text only, information "
             "types mapped to the 5 classes (`distill/data.py`).", "",
             "| bundle | variant | CrisisLexT26 Macro-F1 | CrisisLexT26 accuracy | CrisisMMD test Macro-F1 | "
             "CrisisMMD test accuracy |", "|---|---|---|---|---|---|"]
    for name, r in result["bundles"].items():
        lex, mmd = r["crisislex_t26"], r["crisismmd_test"]
        lines.append(f"| {name} (`{r['folder']}`, sha256 {r['sha256'][:12]}) | {lex['variant']} | {lex['macro_f1']:.4f} | "
                     f"{lex['accuracy']:.4f} | {mmd['macro_f1']:.4f} | {mmd['accuracy']:.4f} |")
    lines += ["", "CrisisLexT26 F1 per class:", "", "| bundle | " + " | ".join(result["classes"]) + " |",
              "|---|" + "---|" * len(result["classes"])]
    for name, r in result["bundles"].items():
        per = r["crisislex_t26"]["per_class"]
        lines.append(f"| {name} | " + " | ".join(f"{per[c]:.3f}" for c in result["classes"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", action="append", required=True, metavar="NAME=DIR[:VARIANT]",
                        help="a bundle to score (repeatable)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=Path("research/results"))
    args = parser.parse_args(argv)
    bundles = parse_bundles(parser, args.bundle)
    root = D.resolve_data_root(str(D.cli_data_root(args.data_root)))
    started = time.perf_counter()
    result: dict[str, Any] = {"bundles": {}}
    mmd_inputs, mmd_images = dataset_inputs("crisismmd:test", root)
    with tempfile.TemporaryDirectory() as tmp:
        lex_path, result["crisislex_n"] = crisislex_file(root, Path(tmp))
        for name, (folder, variant) in bundles.items():
            print(f"{name}: CrisisLexT26 ...", file=sys.stderr)
            lex = evaluate_bundle(folder, [lex_path], variant=variant)
            print(f"{name}: CrisisMMD test ...", file=sys.stderr)
            mmd = evaluate_bundle(folder, mmd_inputs, variant=variant, image_root=mmd_images)
            for r in (lex, mmd):
                r.pop("inputs", None)  # the temporary file's path means nothing later
            result["bundles"][name] = {"folder": str(folder), "sha256": lex["bundle_sha256"],
                                       "crisislex_t26": lex, "crisismmd_test": mmd}
            result["classes"] = lex["classes"]
    result["seconds"] = round(time.perf_counter() - started, 1)
    publish("zero_shot", " ".join(["python", "research/studies/zero_shot_bundles.py", *(argv or sys.argv[1:])]), result,
            to_markdown, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
