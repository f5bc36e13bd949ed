"""`crisislens data check`: read every source under the data root and say what is in it.

Per source: rows, 5-class and raw label distributions, images found/missing, rows dropped
and why, problems and warnings naming file and line; the CrisisMMD benchmark counts per
split; the rationale substring match rate; and the leakage of every training source into
the CrisisMMD dev+test benchmark. Never prints tweet texts (licence): ids and counts only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crisislens.distill import data as D
from crisislens.distill.leakage import KINDS, find_leaks
from crisislens.runtime.cli import EXIT_OK, EXIT_PROBLEMS, Cli
from crisislens.runtime.labels import LABEL_NAMES

# The published CrisisMMD humanitarian benchmark (../shared/data/README.md): rows, and rows whose
# photo is under images/crisismmd (the srilanka_floods and california_wildfires events).
CRISISMMD_EXPECTED = {"train": (6126, 924), "dev": (998, 155), "test": (955, 158)}
CRISISMMD_IMAGE_FILES = 2614  # files under images/crisismmd (1,025 Sri Lanka + 1,589 California)
UNLABELLED = "unlabelled"

Progress = Callable[[str], None]


def _section(report: D.LoadReport, examples: list[D.Example]) -> dict[str, Any]:
    labels = Counter(ex.label or UNLABELLED for ex in examples)
    return {
        "files": len(report.files),
        "rows": report.rows,
        "examples": len(examples),
        "labels": {name: labels.get(name, 0) for name in (*LABEL_NAMES, UNLABELLED)},
        "raw_labels": dict(Counter(ex.raw_label or "" for ex in examples).most_common()),
        "images_found": sum(ex.image is not None for ex in examples),
        "dropped": dict(report.dropped),
        "non_utf8_lines": report.non_utf8_lines,
        "n_problems": report.n_problems,
        "problems": list(report.problems),
        "n_warnings": report.n_warnings,
        "warnings": list(report.warnings),
    }


def _load(source: str, loader: Callable[[D.LoadReport], list[D.Example]]) -> tuple[dict[str, Any], list[D.Example]]:
    """Run one loader leniently; a source that cannot be read at all becomes one problem."""
    report = D.LoadReport(source)
    try:
        examples = loader(report)
    except (D.DataError, OSError) as exc:
        report.problem(str(exc))
        examples = []
    return _section(report, examples), examples


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def data_check(root: str | Path | None = None, *, near_threshold: float = 0.8,
               progress: Progress | None = None) -> dict[str, Any]:
    """Check every source under `root` (see `resolve_data_root`); a JSON-ready dict.

    `n_problems` > 0 means rows could not be used as documented; warnings are caveats only.
    """
    say = progress or (lambda message: None)
    start = time.perf_counter()
    root = D.resolve_data_root(root)
    sources: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []

    say("reading CrisisMMD")
    splits: dict[str, list[D.Example]] = {}
    per_split: dict[str, dict[str, Any]] = {}
    mmd_report = D.LoadReport("crisismmd")
    for split in D.SPLITS:
        before = mmd_report.rows
        try:
            splits[split] = D.load_crisismmd(root, split, strict=False, report=mmd_report)
        except (D.DataError, OSError) as exc:
            mmd_report.problem(str(exc))
            splits[split] = []
        rows_with_image = sum(ex.image is not None for ex in splits[split])
        exp_rows, exp_images = CRISISMMD_EXPECTED[split]
        per_split[split] = {"rows": mmd_report.rows - before, "examples": len(splits[split]),
                            "images_found": rows_with_image,
                            "images_missing": len(splits[split]) - rows_with_image,
                            "expected_rows": exp_rows, "expected_images": exp_images}
        if (per_split[split]["rows"], rows_with_image) != (exp_rows, exp_images):
            warnings.append(f"crisismmd {split}: {per_split[split]['rows']:,} rows / {rows_with_image:,} with images; "
                            f"the benchmark has {exp_rows:,} / {exp_images:,}")
    all_mmd = [ex for split in D.SPLITS for ex in splits[split]]
    mmd = _section(mmd_report, all_mmd)
    mmd["images_missing"] = len(all_mmd) - mmd["images_found"]
    mmd["splits"] = per_split
    mmd["image_files"] = _count_files(root / "images" / "crisismmd")
    mmd["expected_image_files"] = CRISISMMD_IMAGE_FILES
    if mmd["image_files"] != CRISISMMD_IMAGE_FILES:
        warnings.append(f"images/crisismmd: {mmd['image_files']:,} files; expected {CRISISMMD_IMAGE_FILES:,}")
    sources["crisismmd"] = mmd

    say("reading HumAID")
    sources["humaid"], humaid = _load("humaid", lambda r: D.load_humaid(root, strict=False, report=r))
    say("reading rationales")
    sources["rationales"], rationales = _load("rationales", lambda r: D.load_rationales(root, strict=False, report=r))
    matched, total, missing = D.rationale_match_rate(rationales)
    full = sum(1 for ex in rationales if ex.rationale and not D.rationale_char_spans(ex.text or "", ex.rationale).unmatched)
    sources["rationales"]["rationale_match"] = {
        "substrings": total,
        "matched": matched,
        "rate": matched / total if total else None,
        "tweets_with_rationale": sum(1 for ex in rationales if ex.rationale),
        "tweets_fully_matched": full,
        "unmatched_ids": sorted({ex_id for ex_id, _ in missing}),  # ids only: no tweet text
    }
    say("reading labelled images")
    sources["images"], images = _load("images", lambda r: D.load_labelled_images(root, strict=False, report=r))
    sources["images"]["images_missing"] = sources["images"]["dropped"].get("missing_image", 0)
    say("reading CrisisLexT26")
    sources["crisislex_t26"], crisislex = _load("crisislex_t26", lambda r: D.load_crisislex(root, strict=False, report=r))
    for name in ("humaid", "rationales", "crisislex_t26"):
        sources[name]["images_missing"] = 0  # text-only sources: no image is expected

    say("checking leakage into CrisisMMD dev+test")
    train = splits["train"] + humaid + rationales + images + crisislex
    evaluation = splits["dev"] + splits["test"]
    leaks = find_leaks(train, evaluation, near_threshold=near_threshold)

    n_problems = sum(s["n_problems"] for s in sources.values())
    n_warnings = sum(s["n_warnings"] for s in sources.values()) + len(warnings)
    return {
        "root": str(root),
        "sources": sources,
        "leakage": {"eval": "crisismmd dev+test", **leaks.to_dict()},
        "warnings": warnings,
        "n_problems": n_problems,
        "n_warnings": n_warnings,
        "seconds": round(time.perf_counter() - start, 2),
    }


# ----------------------------------------------------------------------------- human table

_SHORT = {
    "affected_individuals": "affect",
    "infrastructure_and_utility_damage": "infra",
    "rescue_volunteering_or_donation_effort": "rescue",
    "other_relevant_information": "other",
    "not_humanitarian": "not_hum",
    UNLABELLED: "unlab",
}


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [[f"{c:,}" if isinstance(c, int) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    fmt = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in cells)]


def format_data_check(report: dict[str, Any], max_messages: int = 10) -> str:
    """The report as plain-text tables (no tweet texts)."""
    sources = report["sources"]
    lines = [f"Data root: {report['root']}  (checked in {report['seconds']:.1f} s)", ""]
    header = ["source", "rows", "examples", *(_SHORT[n] for n in (*LABEL_NAMES, UNLABELLED)),
              "img found", "img missing", "dropped", "problems", "warnings"]
    rows = [[name, s["rows"], s["examples"], *(s["labels"][n] for n in (*LABEL_NAMES, UNLABELLED)),
             s["images_found"], s.get("images_missing", 0), sum(s["dropped"].values()), s["n_problems"], s["n_warnings"]]
            for name, s in sources.items()]
    lines += _table(header, rows)

    mmd = sources["crisismmd"]
    lines += ["", f"CrisisMMD humanitarian benchmark (image files under images/crisismmd: "
                  f"{mmd['image_files']:,}, expected {mmd['expected_image_files']:,})"]
    lines += _table(["split", "rows", "expected", "with image", "expected"],
                    [[s, v["rows"], v["expected_rows"], v["images_found"], v["expected_images"]]
                     for s, v in mmd["splits"].items()])

    match = sources["rationales"].get("rationale_match", {})
    if match.get("substrings"):
        lines += ["", f"Rationales: {match['matched']:,} / {match['substrings']:,} substrings found in their tweet "
                      f"({match['rate']:.2%}); {match['tweets_fully_matched']:,} / {match['tweets_with_rationale']:,} "
                      f"tweets fully matched"]
        if match["unmatched_ids"]:
            shown = ", ".join(match["unmatched_ids"][:max_messages])
            more = len(match["unmatched_ids"]) - max_messages
            lines.append(f"  not fully matched: {shown}" + (f" ... and {more:,} more" if more > 0 else ""))

    dropped = [(name, reason, n) for name, s in sources.items() for reason, n in s["dropped"].items()]
    if dropped:
        lines += ["", "Dropped or unlabelled rows"] + _table(["source", "reason", "rows"], [list(d) for d in dropped])

    leak = report["leakage"]
    lines += ["", f"Leakage into {leak['eval']} ({leak['n_eval']:,} examples; near = word Jaccard >= "
                  f"{leak['near_threshold']}): training examples that repeat an evaluation example"]
    lines += _table(["source", "rows", *KINDS, "any"],
                    [[name, c["rows"], *(c[k] for k in KINDS), c["any"]] for name, c in leak["by_source"].items()])
    hit = leak["eval_examples_hit"]
    lines.append(f"evaluation examples hit: {hit['any']:,} (exact {hit['exact']:,}, near {hit['near']:,}, "
                 f"tweet {hit['tweet']:,}, image {hit['image']:,}); drop them with leakage.exclude_leaks")

    for kind in ("problems", "warnings"):
        messages = [(name, m) for name, s in sources.items() for m in s[kind]]
        if kind == "warnings":
            messages += [("check", m) for m in report["warnings"]]
        total = report[f"n_{kind}"]
        if not total:
            continue
        lines += ["", f"{kind.capitalize()} ({total:,})"]
        for name in dict.fromkeys(n for n, _ in messages):
            mine = [m for n, m in messages if n == name]
            lines += [f"  {m}" for m in mine[:max_messages]]
            if len(mine) > max_messages:
                lines.append(f"  ... and {len(mine) - max_messages:,} more from {name}")
    lines += ["", "OK: no problems" if not report["n_problems"] else f"{report['n_problems']:,} problem(s) found"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command


def _check_command(args: argparse.Namespace) -> int:
    root = D.cli_data_root(args.data_root)
    report = data_check(root, progress=lambda m: print(f"crisislens: {m}...", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(format_data_check(report))
    return EXIT_PROBLEMS if report["n_problems"] else EXIT_OK


def register_data_commands(cli: Cli) -> None:
    """Add `crisislens data check`."""
    group = cli.group("data", "Inspect the training and evaluation data.")
    parser = group.command(
        "check",
        "Read every data source and report counts, labels, problems and train/eval leakage.",
        _check_command,
        description=(
            "Read every source under the data root (CrisisMMD, HumAID, rationales, labelled images,\n"
            "CrisisLexT26) and report rows, label distributions, images found, dropped rows, problems\n"
            "(file:line), the rationale match rate and the leakage of every training source into the\n"
            "CrisisMMD dev+test benchmark. Prints ids and counts, never tweet texts.\n\n"
            f"Data root: --data-root, else ${D.ENV_DATA_ROOT}, else ../shared/data next to the repository.\n"
            "Exit codes: 0 no problems, 1 problems found, 2 data root missing."
        ),
    )
    parser.add_argument("--data-root", metavar="DIR", default=None, help="the data root (default: see above)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
