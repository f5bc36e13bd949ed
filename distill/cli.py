"""Subcommands of the training stage, plugged into `crisislens` through an entry point.

Heavy imports (sklearn, torch) happen inside the handlers so the CLI stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crisislens.runtime.cli import Cli, CliError, require

DATA_ROOT_HELP = "data root (default: $CRISISLENS_DATA, else ../shared/data)"


def register(cli: Cli) -> None:
    from crisislens.distill.datacheck import register_data_commands

    register_data_commands(cli)
    evaluate = cli.group("eval", "evaluate models and write reports")
    p = evaluate.command(
        "baseline",
        "train + evaluate the TF-IDF/logistic-regression baseline on CrisisMMD",
        _eval_baseline,
        description=(
            "Train TF-IDF (word 1-2 grams) + logistic regression on the CrisisMMD humanitarian\n"
            "agreed train split, select hyper-parameters on dev by Macro-F1, report on test.\n"
            "Writes <out>/baseline.json and <out>/baseline.md."
        ),
    )
    p.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    p.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default: reports)")
    p.add_argument("--json", action="store_true", help="print the test metrics as JSON")


def _eval_baseline(args: argparse.Namespace) -> int:
    require("sklearn", "distill")
    from crisislens.distill.baseline import run_baseline, to_markdown
    from crisislens.distill.data import resolve_data_root
    from crisislens.runtime.reports import provenance, write_report

    try:
        root = resolve_data_root(args.data_root)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    print(f"training the baseline on {root} ...", file=sys.stderr)
    result = run_baseline(root)
    prov = provenance()
    reports = result.pop("_reports")
    payload = {**result, "provenance": prov}
    json_path, md_path = write_report("baseline", payload, to_markdown({**result, "_reports": reports}, prov), args.out)
    test = reports["test"]
    if args.json:
        print(json.dumps(payload["test"], indent=2))
    else:
        print(f"test Macro-F1 {test.macro_f1:.4f}  accuracy {test.accuracy:.4f}  weighted F1 {test.weighted_f1:.4f}")
        print(f"wrote {json_path} and {md_path}")
    return 0
