"""The runtime's own subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from crisislens.runtime.cli.base import EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, Cli, CliError
from crisislens.runtime.readers import ReadError, ReadReport, read_posts
from crisislens.runtime.settings import DATA_ROOT_HELP

MAX_LISTED_PROBLEMS = 100  # the human listing; --json always has them all

VALIDATE_DESCRIPTION = """\
Read cached posts and report what a run would see: how many posts, with text, with an image,
and every problem as FILE:LINE: MESSAGE. Nothing is changed.

Each image's header is read (no pixel decoded): an image the model could not use (not an image,
a damaged header, too many pixels) is reported like a missing one, and the post counts as
text-only. Damage past the header shows only when a run decodes the photo.

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
    p.add_argument("--no-image-check", dest="check_images", action="store_false",
                   help="do not open the images (by default each image's header is read, no pixel decoded)")

    # `crisislens eval --bundle ...` is the runtime's (torch-free); stages add subcommands below
    # it (`crisislens eval baseline`).
    evaluate = cli.group("eval", "evaluate a model bundle on labelled posts, or (subcommands) train+evaluate models",
                         description=EVAL_DESCRIPTION)
    e = evaluate.parser
    e.set_defaults(_handler=_eval_bundle)
    e.add_argument("--bundle", type=Path, metavar="DIR", help="model bundle folder (see `crisislens export bundle`)")
    e.add_argument("--variant", default=None, help="bundle variant (default: the bundle's default, e.g. int8)")
    source = e.add_mutually_exclusive_group()
    source.add_argument("--input", type=Path, nargs="+", metavar="FILE", help="labelled posts (.jsonl/.csv/.tsv/folder)")
    source.add_argument("--dataset", metavar="NAME", help="a dataset under the data root: crisismmd:test, crisismmd:dev")
    e.add_argument("--data-root", type=Path, default=None, help=f"{DATA_ROOT_HELP}; for --dataset")
    e.add_argument("--image-root", type=Path, default=None, metavar="DIR", help="resolve image paths against DIR")
    e.add_argument("--classes", default=None, metavar="A,B,...", help="restrict prediction to these labels (renormalised)")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    e.add_argument("--providers", default=None, metavar="P1,P2", help="ONNX Runtime execution providers, in order")
    e.add_argument("--backend", choices=["auto", "onnxruntime", "tensorrt"], default="auto",
                    help="auto: a native TensorRT engine when one fits this GPU, else ONNX Runtime (default)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")


    t = cli.command("triage", "predict cached posts into a resumable SQLite store (torch-free)", _triage,
                    description=TRIAGE_DESCRIPTION)
    t.add_argument("inputs", nargs="+", metavar="INPUT", help="a .jsonl, .csv or .tsv file, or a folder of ID.txt + ID.jpg pairs")
    t.add_argument("--bundle", type=Path, required=True, metavar="DIR", help="model bundle folder")
    t.add_argument("--out", type=Path, default=Path("triage.sqlite"), help="SQLite store (default: triage.sqlite)")
    t.add_argument("--variant", default=None, help="bundle variant (default: the bundle's default)")
    t.add_argument("--image-root", type=Path, default=None, metavar="DIR", help="resolve image paths against DIR")
    t.add_argument("--classes", default=None, metavar="A,B,...", help="restrict prediction to these labels (renormalised)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    t.add_argument("--providers", default=None, metavar="P1,P2", help="ONNX Runtime execution providers, in order")
    t.add_argument("--backend", choices=["auto", "onnxruntime", "tensorrt"], default="auto",
                    help="auto: a native TensorRT engine when one fits this GPU, else ONNX Runtime (default)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    x = cli.command("export-results", "write a triage store's predictions as JSONL or CSV", _export_results)
    x.add_argument("store", type=Path, help="triage SQLite store")
    x.add_argument("--out", type=Path, required=True, help="output file (.jsonl or .csv)")
    fb = cli.command(
        "export-feedback", "write the labels responders corrected in a triage store as labelled posts (JSONL)",
        _export_feedback,
        description=(
            "Write the responders' labels (set in `crisislens tui`) as JSONL labelled posts: id, text, image,\n"
            "label, model_label, corrected_at, note. Photos are copied into <OUT stem>-images/ beside the\n"
            "file, so the set travels whole; `crisislens eval --bundle DIR --input OUT` scores a model on it."),
    )
    fb.add_argument("store", type=Path, help="triage SQLite store")
    fb.add_argument("--out", type=Path, required=True, help="output file (.jsonl)")

    bn = cli.command("bench", "benchmark every available backend x precision -> reports/bench.{json,md,png}", _bench,
                     description=BENCH_DESCRIPTION)
    bn.add_argument("--bundle", type=Path, required=True, metavar="DIR", help="model bundle with the ONNX variants")
    bn.add_argument("--variants", default=None, help="bundle variants to run (default: all in the bundle)")
    bn.add_argument("--runtime-only", action="store_true", help="only the ONNX Runtime rows (never imports torch)")
    bn.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    bn.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    bn.add_argument("--single", type=int, default=100, help="posts timed one by one per kind (default 100)")
    bn.add_argument("--reports", type=Path, default=Path("reports"), help="report folder (default: reports)")
    bn.add_argument("--render-only", action="store_true",
                    help="rewrite <reports>/bench.md and .png from the numbers already in <reports>/bench.json")
    br = cli.command("bench-row", "(internal) measure one bench row in this process and print JSON", _bench_row)
    br.add_argument("spec", help="JSON row spec")


BENCH_DESCRIPTION = """\
One row per backend x precision available here: ONNX Runtime for each bundle variant, and (with
PyTorch installed, unless --runtime-only) the PyTorch student and teacher and the "peer" — the
same student run as a user without CrisisLens would (transformers + PyTorch eager, per post).
Each row runs in a fresh process: size, Macro-F1 on CrisisMMD test, agreement with FP32,
batch-1 latency p50/p90/p99 (text-only, text+image), batch-32 throughput, peak RSS, cold start.
Then the CPU INT8 rows and the peer are timed once more, batch-1 latency only, in alternating
rounds of fresh processes, for the speed-up over the peer (rows run minutes apart also carry the
machine's drift)."""


def _bench(args: argparse.Namespace) -> int:
    from crisislens.runtime.bench import chart, plugin_runners, run_bench, targets, to_markdown
    from crisislens.runtime.bundle import BundleError, load_bundle
    from crisislens.runtime.settings import data_root
    from crisislens.runtime.reports import provenance, write_report

    if args.render_only:
        from crisislens.runtime.reports import render_again

        json_path, md_path = render_again("bench", args.reports, lambda p: to_markdown(p, p["provenance"]))
        payload = json.loads(json_path.read_text())
        payload["targets"] = targets(payload)  # derived from the stored numbers, nothing re-measured
        json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        chart(payload, args.reports / "bench.png")
        print(f"rewrote {md_path} from {json_path}")
        return EXIT_OK
    try:
        bundle = load_bundle(args.bundle)
        root = data_root(args.data_root)
    except (BundleError, FileNotFoundError) as exc:
        raise CliError(_printable(str(exc))) from None
    variants = [v.strip() for v in args.variants.split(",")] if args.variants else list(bundle.variants)
    rows = [f"ort-{v}" for v in variants]
    if not args.runtime_only:
        rows += sorted(plugin_runners())
    result = run_bench(args.bundle, root, rows, threads=args.threads, single=args.single)
    prov = provenance()
    json_path, md_path = write_report("bench", {**result, "targets": targets(result), "provenance": prov},
                                      to_markdown(result, prov), args.reports)
    png = chart(result, args.reports / "bench.png")
    print(f"wrote {json_path}, {md_path} and {png}")
    return EXIT_OK if all(r.get("status") == "ok" for r in result["rows"]) else EXIT_PROBLEMS


def _bench_row(args: argparse.Namespace) -> int:
    from crisislens.runtime.bench import run_row

    print(json.dumps(run_row(json.loads(args.spec))))
    return EXIT_OK


TRIAGE_DESCRIPTION = """\
Classify cached posts with a model bundle and store every prediction (label, probabilities,
rationale words with scores, patch score grid, warnings, latency, bundle hash) in SQLite.
One transaction per batch: Ctrl-C or a killed process loses at most the batch in flight, and
running the same command again resumes where it stopped (stored posts are skipped). Rows the
readers reject are stored as errors with file and line; nothing is silently dropped. A photo
that cannot be decoded is left out with a warning (the post is classified from its text); a post
left with no word and no usable photo is stored as a 'nothing to classify' error, not a label,
and is tried again on the next run.

Exit codes: 0 all posts predicted, 1 some rows could not be read or predicted (see the store's
errors), 130 interrupted (rerun to resume)."""


def _classes_arg(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def _triage(args: argparse.Namespace) -> int:
    from crisislens.runtime.backends.engines import EngineMismatch
    from crisislens.runtime.bundle import BundleError, load_bundle
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.store import StoreError, TriageStore, triage

    providers = [p.strip() for p in args.providers.split(",")] if args.providers else None
    try:
        engine = Engine(load_bundle(args.bundle), args.variant, threads=args.threads, providers=providers,
                        prefer=args.backend)
        report = read_posts(args.inputs, image_root=args.image_root)
        store = TriageStore(args.out)
    except (BundleError, StoreError, FileNotFoundError, ValueError, ReadError, ImportError, RuntimeError, EngineMismatch) as exc:
        raise CliError(_printable(str(exc))) from None
    if not args.quiet:
        print(f"backend: {engine.backend_reason}", file=sys.stderr)
    read_errors = [(p.post_id, f"{p.file}:{p.line}" if p.line else p.file, p.message) for p in report.errors]
    with store:
        try:
            result = triage(engine, report.posts, store, batch_size=args.batch_size, classes=_classes_arg(args.classes),
                            read_errors=read_errors, progress=not args.quiet)
        except ValueError as exc:
            raise CliError(_printable(str(exc))) from None
        total = store.count()
    print(f"{result.predicted} predicted ({result.posts_per_second:.1f} posts/s), {result.skipped_done} already in the "
          f"store, {result.errors} error(s); {total} predictions in {args.out}")
    if result.interrupted:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_PROBLEMS if result.errors else EXIT_OK


def _export_from_store(args: argparse.Namespace, export: Any, what: str) -> int:
    """Run `export(store, out) -> count` on an existing triage store; one clear line on failure."""
    from crisislens.runtime.store import StoreError, TriageStore

    if not args.store.is_file():
        raise CliError(f"{args.store}: no such triage store")
    try:
        with TriageStore(args.store) as store:
            n = export(store, args.out)
    except (StoreError, ValueError, OSError) as exc:
        raise CliError(_printable(str(exc))) from None
    print(f"wrote {n} {what} to {args.out}")
    return EXIT_OK


def _export_results(args: argparse.Namespace) -> int:
    from crisislens.runtime.store import export_results

    return _export_from_store(args, export_results, "predictions")


def _export_feedback(args: argparse.Namespace) -> int:
    from crisislens.runtime.store import export_feedback

    return _export_from_store(args, export_feedback, "corrected label(s)")


EVAL_DESCRIPTION = """\
Score a bundle variant through the runtime (no torch): the same readers, preprocessing and
backend as a triage run. Records need a gold `label` (one of the 5 class names, or a CrisisMMD
8-class name). Prints Macro-F1, accuracy and per-class F1.

  crisislens eval --bundle models/crisislens-student --dataset crisismmd:test --json
  crisislens eval --bundle DIR --input posts.jsonl --classes not_humanitarian,affected_individuals"""


def _eval_bundle(args: argparse.Namespace) -> int:
    from crisislens.runtime.backends.engines import EngineMismatch
    from crisislens.runtime.bundle import BundleError
    from crisislens.runtime.evaluate import dataset_inputs, evaluate_bundle
    from crisislens.runtime.settings import data_root

    if args.bundle is None:
        args._group_parser.print_help()
        raise CliError("--bundle DIR is needed (or a subcommand such as `crisislens eval baseline`)")
    if not (args.input or args.dataset):
        raise CliError("give --input FILE... or --dataset NAME")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    providers = [p.strip() for p in args.providers.split(",")] if args.providers else None
    try:
        if args.dataset:
            inputs, image_root = dataset_inputs(args.dataset, data_root(args.data_root))
            image_root = args.image_root or image_root
        else:
            inputs, image_root = list(args.input), args.image_root
        result = evaluate_bundle(args.bundle, inputs, variant=args.variant, image_root=image_root, classes=classes,
                                 batch_size=args.batch_size, threads=args.threads, providers=providers,
                                 prefer=args.backend)
    except (BundleError, FileNotFoundError, ValueError, ReadError, ImportError, RuntimeError, EngineMismatch) as exc:
        raise CliError(_printable(str(exc))) from None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['bundle']} [{result['variant']}] on {result['n']} posts: Macro-F1 {result['macro_f1']:.4f}, "
              f"accuracy {result['accuracy']:.4f}")
        for name, f1 in result["per_class"].items():
            print(f"  {name:<40} F1 {f1:.4f}")
        if result["without_evidence"]:
            print(f"  {result['without_evidence']} post(s) scored with no word and no photo to read "
                  "(the label is the model's prior)")
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    if args.image_root is not None and not args.image_root.is_dir():
        raise CliError(f"--image-root {args.image_root}: not a folder")
    try:
        report = read_posts(args.inputs, image_root=args.image_root, strict=args.strict,
                            check_images=args.check_images)
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
