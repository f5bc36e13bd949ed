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

    distill = cli.group("distill", "train the teacher and distil the student")
    t = distill.command(
        "train-teacher",
        "train the cross-modal rationale teacher (+ the text-only and image-only comparison models)",
        _train_teacher,
        description=(
            "Build the frozen-feature caches (EfficientNet-Lite0 grids, lower MiniLM layers) once, then\n"
            "train the teacher on CrisisMMD train + HumAID + the Nepal rationales + labelled photos,\n"
            "selecting on CrisisMMD dev Macro-F1 with early stopping. Seeded; resumes from\n"
            "<out>/last.pt unless --restart. Then trains the text-only and image-only models the\n"
            "report compares against. Checkpoints stay in <out> (ignored by git)."
        ),
    )
    _training_args(t)
    t.add_argument("--epochs", type=int, default=None, help="teacher epochs (default 6)")
    t.add_argument("--max-minutes", type=float, default=0.0, help="stop after the epoch that passes this time")
    t.add_argument("--restart", action="store_true", help="ignore <out>/last.pt and train from scratch")
    t.add_argument("--skip-unimodal", action="store_true", help="do not train the text-only/image-only models")
    t.add_argument("--only-unimodal", action="store_true", help="train only the text-only/image-only models")
    e = distill.command(
        "eval-teacher",
        "evaluate the teacher -> reports/teacher.{json,md}",
        _eval_teacher,
        description=(
            "One run: CrisisMMD test (overall, with image vs text-only) beside the TF-IDF baseline, the\n"
            "text-only and image-only models and the full-input head; plausibility of text rationales on\n"
            "the held-out Hagupit rationales; faithfulness of token and patch rationales beside random\n"
            "ones; zero-shot CrisisLexT26."
        ),
    )
    _training_args(e)
    e.add_argument("--reports", type=Path, default=Path("reports"), help="report folder (default: reports)")


def _training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    p.add_argument("--out", type=Path, default=Path("artifacts/teacher"), help="checkpoints (default: artifacts/teacher)")
    p.add_argument("--cache", type=Path, default=Path("artifacts/cache"), help="feature caches (default: artifacts/cache)")
    p.add_argument("--seed", type=int, default=13)


def _train_config(args: argparse.Namespace):
    from crisislens.distill.data import resolve_data_root
    from crisislens.distill.train_teacher import TrainConfig

    try:
        root = resolve_data_root(args.data_root)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    config = TrainConfig(data_root=str(root), out=str(args.out), cache=str(args.cache), seed=args.seed)
    if getattr(args, "epochs", None):
        config.epochs = args.epochs
    config.max_minutes = getattr(args, "max_minutes", 0.0) or 0.0
    return config


def _train_teacher(args: argparse.Namespace) -> int:
    require("torch", "distill")
    from crisislens.distill.train_teacher import train, train_comparison_models

    config = _train_config(args)
    if not args.only_unimodal:
        summary = train(config, resume=not args.restart)
        print(f"teacher: best dev Macro-F1 {summary['best_dev_macro_f1']:.4f} after {len(summary['history'])} "
              f"epoch(s), {summary['train_minutes']} min; checkpoints in {config.out}")
    if not args.skip_unimodal:
        for result in train_comparison_models(config):
            print(f"{result['kind']}-only: best dev Macro-F1 {result['best_dev_macro_f1']:.4f}")
    return 0


def _eval_teacher(args: argparse.Namespace) -> int:
    require("torch", "distill")
    from crisislens.distill.eval_teacher import evaluate, to_markdown
    from crisislens.runtime.reports import provenance, write_report

    config = _train_config(args)
    best = Path(config.out) / "best.pt"
    if not best.is_file():
        raise CliError(f"{best}: no teacher checkpoint; run `crisislens distill train-teacher` first")
    result = evaluate(config, Path(config.out))
    summary_path = Path(config.out) / "train_summary.json"
    training = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    prov = provenance()
    payload = {**result, "training": training, "provenance": prov}
    json_path, md_path = write_report("teacher", payload, to_markdown(result, prov, training), args.reports)
    t = result["models"]["teacher"]["test"]
    print(f"teacher test Macro-F1 {t['macro_f1']:.4f} accuracy {t['accuracy']:.4f}; wrote {json_path} and {md_path}")
    return 0


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
