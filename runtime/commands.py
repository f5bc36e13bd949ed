"""The runtime's own subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crisislens.runtime.cli import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, Cli, CliError
from crisislens.runtime.readers import ReadError, ReadReport, read_posts

MAX_LISTED_PROBLEMS = 100  # the human listing; --json always has them all

VALIDATE_DESCRIPTION = """\
Read cached posts and report what a run would see: how many posts, with text, with an image,
and every problem as FILE:LINE: MESSAGE. Nothing is changed.

Inputs: .jsonl files (one JSON object per line), .csv / .tsv files with a header row
(CrisisMMD task files included), or folders of ID.txt + ID.jpg pairs.

Exit codes: 0 no errors (warnings: rows repaired and kept), 1 some rows or inputs had errors
and were skipped, 2 --strict stopped at the first problem (or a usage error)."""


def register(cli: Cli) -> None:
    p = cli.command(
        "validate",
        "check cached posts (JSONL, CSV/TSV, folders) before a run",
        _validate,
        description=VALIDATE_DESCRIPTION,
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="a .jsonl, .csv or .tsv file, or a folder of ID.txt + ID.jpg pairs"
    )
    p.add_argument(
        "--image-root",
        type=Path,
        metavar="DIR",
        help="resolve image paths against DIR instead of each file's folder (CrisisMMD: drops 'data_image/')",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first problem, error or warning (exit 2)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary with every problem")


def _validate(args: argparse.Namespace) -> int:
    if args.image_root is not None and not args.image_root.is_dir():
        raise CliError(f"--image-root {args.image_root}: not a folder")
    try:
        report = read_posts(args.inputs, image_root=args.image_root, strict=args.strict)
    except ReadError as exc:
        raise CliError(f"{_printable(str(exc.problem))} (--strict stops at the first problem)", EXIT_USAGE) from None
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))  # ensure_ascii: control bytes cannot reach the terminal
    else:
        print("\n".join(_summary_lines(report)))
    return EXIT_PROBLEMS if report.errors else EXIT_OK


def _summary_lines(report: ReadReport) -> list[str]:
    counts = report.to_dict()
    lines = [
        f"files     {len(report.files)}",
        f"rows      {report.rows_seen}",
        f"posts     {counts['posts']}  (with text {counts['with_text']}, with image {counts['with_image']}, "
        f"both {counts['with_both']})",
    ]
    if counts["labels"]:
        lines.append("labels    " + ", ".join(f"{name} {n}" for name, n in counts["labels"].items()))
    lines.append(f"errors    {counts['errors']}" + ("  (skipped)" if counts["errors"] else ""))
    lines.append(f"warnings  {counts['warnings']}" + ("  (rows repaired and kept)" if counts["warnings"] else ""))
    for problem in report.problems[:MAX_LISTED_PROBLEMS]:
        lines.append(f"  {problem.severity:<8} {_printable(str(problem))}")
    hidden = len(report.problems) - MAX_LISTED_PROBLEMS
    if hidden > 0:
        lines.append(f"  ... and {hidden} more (--json lists them all)")
    return lines


def _printable(text: str) -> str:
    """Escape control characters and undecodable bytes: file names and ids come from the field."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
