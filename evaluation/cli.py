"""The evaluation package's commands, plugged into `crisislens` through the `crisislens.cli`
entry-point group: `crisislens eval` (a bundle on labelled posts), `crisislens eval score` (a
predictions file), `crisislens bench` and its internal `bench-row`. Torch-free.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crisislens.runtime.cli.base import (
    EXIT_OK,
    EXIT_PROBLEMS,
    Cli,
    CliError,
    add_engine_options,
    comma_list,
    printable,
)
from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.settings import BUNDLE_HELP, DATA_ROOT_HELP, DEFAULT_REPORTS, settings

EVAL_DESCRIPTION = """\
Score a bundle variant through the runtime (no torch): the same readers, preprocessing and
backend as a triage run. Records need a gold `label` (one of the 5 class names, or a CrisisMMD
8-class name). Prints Macro-F1, accuracy and per-class F1. The scores come from the same code as
`crisislens eval score`: --predictions-out writes the predictions file it reads.

  crisislens eval --bundle models/crisislens-student --dataset crisismmd:test --json
  crisislens eval --bundle DIR --input posts.jsonl --classes not_humanitarian,affected_individuals
  crisislens eval score predictions.jsonl"""

SCORE_DESCRIPTION = """\
Score a predictions file: JSONL, one object per post with post_id, gold_label and label
(probabilities and has_evidence optional; see crisislens.evaluation.score). Every model is scored
by this code: a bundle (`crisislens eval --bundle ... --predictions-out FILE`), the teacher, a
baseline or a study that writes the same records. Prints Macro-F1, accuracy, per-class F1 and,
when every record has probabilities, ECE and NLL."""

BENCH_DESCRIPTION = """\
One row per backend x precision available here: ONNX Runtime for each bundle variant, and (with
PyTorch installed, unless --runtime-only) the PyTorch student and teacher and the "peer" — the
same student run as a user without CrisisLens would (transformers + PyTorch eager, per post).
Each row runs in a fresh process: size, Macro-F1 on CrisisMMD test, agreement with FP32,
batch-1 latency p50/p90/p99 (text-only, text+image), batch-32 throughput, peak RSS, cold start.

Made to hold on a shared machine: every row (the peers too) at the same --threads (default 1);
every row measured in each of --rounds rounds, the order reversed every other round, so rows are
timed seconds apart and a ratio is the median of the ratios within rounds, shown with its spread;
the load average recorded before and after every turn, with a warning when it moved.

Then `crisislens triage` itself, whole processes on the test posts: its defaults against one
worker on all cores (the earlier default; with --against, on the baseline bundle), in alternated
rounds, once per --compete count of competing busy processes (default 0,1).
--against DIR adds the baseline bundle's variants as rows `before:ort-<variant>` to the rounds."""


PHOTOS_DESCRIPTION = """\
Through the runtime: CrisisMMD test posts with a photo scored with and without it; the MEDIC-
labelled photos of an event no model trained on (default kerala_flood_2018), photo only; how much
the predicted class's probability drops when the top-5 rationale patches are greyed out against
5 random ones; and top-5 patch agreement (unrelated photos, and with --against another seed's
bundle on the same photos). Writes <reports>/photos.{json,md}."""


def register(cli: Cli) -> None:
    # `crisislens eval --bundle ...` is this package's; stages add subcommands below it
    # (`crisislens eval baseline`).
    evaluate = cli.group("eval", "evaluate a model bundle or a predictions file", description=EVAL_DESCRIPTION)
    e = evaluate.parser
    e.description = EVAL_DESCRIPTION  # also when another stage created the group first
    e.set_defaults(_handler=_eval_bundle)
    e.add_argument("--bundle", type=Path, metavar="DIR", help=BUNDLE_HELP)
    source = e.add_mutually_exclusive_group()
    source.add_argument(
        "--input", type=Path, nargs="+", metavar="FILE", help="labelled posts (.jsonl/.csv/.tsv/folder)"
    )
    source.add_argument(
        "--dataset", metavar="NAME", help="a dataset under the data root: crisismmd:test, crisismmd:dev"
    )
    e.add_argument("--data-root", type=Path, default=None, help=f"{DATA_ROOT_HELP}; for --dataset")
    add_engine_options(e)
    e.add_argument(
        "--predictions-out",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the predictions file (JSONL) that `crisislens eval score` reads",
    )
    e.add_argument("--json", action="store_true", help="print the result as JSON")

    s = evaluate.command(
        "score",
        "score a predictions file (JSONL: post_id, gold_label, label[, probabilities])",
        _score,
        description=SCORE_DESCRIPTION,
    )
    s.add_argument("predictions", type=Path, metavar="PREDICTIONS.jsonl", help="the predictions file")
    s.add_argument("--classes", default=None, metavar="A,B,...", help="score over these labels only")
    s.add_argument("--json", action="store_true", help="print the result as JSON")

    ph = evaluate.command(
        "photos",
        "does the photo count? text+photo vs text, an unseen event's photos, patch deletion -> <reports>/photos.*",
        _photos,
        description=PHOTOS_DESCRIPTION,
    )
    ph.add_argument("--bundle", type=Path, default=None, metavar="DIR", help=BUNDLE_HELP)
    ph.add_argument("--variant", default=None, help="bundle variant (default: the bundle's default)")
    ph.add_argument(
        "--against",
        type=Path,
        default=None,
        metavar="DIR",
        help="the same model trained with another seed: top-5 patch agreement on the same photos",
    )
    ph.add_argument("--event", default="kerala_flood_2018", help="held-out event of the photo-only test")
    ph.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    ph.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    ph.add_argument("--reports", type=Path, default=DEFAULT_REPORTS, help=f"report folder (default: {DEFAULT_REPORTS})")

    bn = cli.command(
        "bench",
        "benchmark every available backend x precision -> reports/bench.{json,md,png}",
        _bench,
        description=BENCH_DESCRIPTION,
    )
    bn.add_argument("--bundle", type=Path, default=None, metavar="DIR", help=BUNDLE_HELP)
    bn.add_argument("--variants", default=None, help="bundle variants to run (default: all in the bundle)")
    bn.add_argument("--runtime-only", action="store_true", help="only the ONNX Runtime rows (never imports torch)")
    bn.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    bn.add_argument("--threads", type=int, default=1, help="intra-op threads of every row, the peers' too (default 1)")
    bn.add_argument("--rounds", type=int, default=3, help="alternated rounds, every row in each (default 3)")
    bn.add_argument("--against", type=Path, default=None, metavar="DIR", help="a baseline bundle, timed alongside")
    bn.add_argument(
        "--compete",
        default="0,1",
        metavar="N,M",
        help="time crisislens triage beside N (then M, ...) busy processes (default 0,1; empty: no triage rounds)",
    )
    bn.add_argument("--single", type=int, default=100, help="posts timed one by one per kind (default 100)")
    bn.add_argument(
        "--eager-model",
        type=Path,
        default=None,
        metavar="FILE",
        help="the student's FP32 ONNX export (crisislens export onnx: model.fp32.onnx) for the "
        "PyTorch-eager row, when the bundle ships no FP32 or weight-only variant",
    )
    bn.add_argument("--reports", type=Path, default=DEFAULT_REPORTS, help=f"report folder (default: {DEFAULT_REPORTS})")
    bn.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite <reports>/bench.md and .png from the numbers already in <reports>/bench.json",
    )
    br = cli.command(
        "bench-row", "(internal) measure one bench row in this process and print JSON", _bench_row, hidden=True
    )
    br.add_argument("spec", help="JSON row spec")


def _eval_bundle(args: argparse.Namespace) -> int:
    from crisislens.evaluation.datasets import dataset_inputs
    from crisislens.evaluation.evaluate import evaluate_bundle
    from crisislens.runtime.settings import data_root

    if not (args.input or args.dataset):
        args._group_parser.print_help()
        raise CliError(
            "give --input FILE... or --dataset NAME (or a subcommand such as `crisislens eval score` or "
            "`crisislens eval baseline`)"
        )
    try:
        args.bundle = settings().bundle_dir(args.bundle)
        if args.dataset:
            inputs, image_root = dataset_inputs(args.dataset, data_root(args.data_root))
            image_root = args.image_root or image_root
        else:
            inputs, image_root = list(args.input), args.image_root
        result = evaluate_bundle(
            args.bundle,
            inputs,
            variant=args.variant,
            image_root=image_root,
            classes=comma_list(args.classes),
            batch_size=args.batch_size,
            threads=args.threads,
            providers=comma_list(args.providers),
            prefer=args.backend,
            predictions_out=args.predictions_out,
        )
    except (CrisisLensError, OSError, ValueError, ImportError, RuntimeError) as exc:
        raise CliError(printable(str(exc))) from None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['bundle']} [{result['variant']}] on {result['n']} posts: Macro-F1 {result['macro_f1']:.4f}, "
            f"accuracy {result['accuracy']:.4f}"
        )
        for name, f1 in result["per_class"].items():
            print(f"  {name:<40} F1 {f1:.4f}")
        if result["without_evidence"]:
            print(
                f"  {result['without_evidence']} post(s) scored with no word and no photo to read "
                "(the label is the model's prior)"
            )
    return EXIT_OK


def _score(args: argparse.Namespace) -> int:
    from crisislens.evaluation.score import read_predictions, score

    try:
        scores = score(read_predictions(args.predictions), comma_list(args.classes))
    except (CrisisLensError, ValueError) as exc:
        raise CliError(printable(str(exc))) from None
    if args.json:
        print(json.dumps({"predictions": str(args.predictions), **scores.to_dict()}, indent=2))
        return EXIT_OK
    print(f"{args.predictions} ({scores.n} posts): Macro-F1 {scores.macro_f1:.4f}, accuracy {scores.accuracy:.4f}")
    for name, f1 in scores.per_class.items():
        print(f"  {name:<40} F1 {f1:.4f}")
    if scores.ece is not None and scores.nll is not None:
        print(f"  calibration: ECE {scores.ece:.4f}, NLL {scores.nll:.4f}")
    if scores.urgent_at_top is not None:
        u = scores.urgent_at_top
        print(
            f"  triage list: {u.by_expected_severity} of {u.in_class} {u.label} posts in the first {u.fraction:.0%} "
            f"({u.top} of {u.n}) by priority; {u.by_top_class_severity} by severity x top confidence (the earlier rule)"
        )
    return EXIT_OK


def _photos(args: argparse.Namespace) -> int:
    from crisislens.evaluation.photos import photo_evidence, to_markdown
    from crisislens.runtime.reports import provenance, write_report
    from crisislens.runtime.settings import data_root

    try:
        bundle = settings().bundle_dir(args.bundle)
        result = photo_evidence(
            bundle,
            data_root(args.data_root),
            variant=args.variant,
            against=args.against,
            event=args.event,
            threads=args.threads,
        )
    except (CrisisLensError, OSError, ValueError, ImportError, RuntimeError) as exc:
        raise CliError(printable(str(exc))) from None
    prov = provenance()
    json_path, md_path = write_report("photos", {**result, "provenance": prov}, to_markdown(result, prov), args.reports)
    t = result["crisismmd_test_with_photo"]
    print(
        f"text + photo {t['text_and_photo']['macro_f1']:.4f} vs text only {t['text_only']['macro_f1']:.4f}; "
        f"photo only on {args.event}: accuracy {result['photo_only_unseen_event']['accuracy']:.4f} -> {md_path}"
    )
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from crisislens.evaluation.bench import plugin_runners, run_bench
    from crisislens.evaluation.bench_report import chart, to_markdown
    from crisislens.evaluation.bench_scale import EAGER_ROW
    from crisislens.runtime.bundle import load_bundle
    from crisislens.runtime.parallel import cores
    from crisislens.runtime.reports import provenance, render_again, write_report
    from crisislens.runtime.settings import data_root

    if args.render_only:
        json_path, md_path = render_again("bench", args.reports, lambda p: to_markdown(p, p["provenance"]))
        payload = json.loads(json_path.read_text())
        chart(payload, args.reports / "bench.png")
        print(f"rewrote {md_path} from {json_path}")
        return EXIT_OK
    try:
        args.bundle = settings().bundle_dir(args.bundle)
        bundle = load_bundle(args.bundle)
        root = data_root(args.data_root)
    except (CrisisLensError, OSError) as exc:
        raise CliError(printable(str(exc))) from None
    variants = comma_list(args.variants) or list(bundle.variants)
    rows = [f"ort-{v}" for v in variants]
    if not args.runtime_only:
        rows += sorted(plugin_runners())
    options = {}
    settings_ = {"one worker": ["--workers", "1", "--threads", str(cores())], "defaults": []}
    if args.against:
        against = [f"before:ort-{v}" for v in variants]
        rows = [r for pair in zip(rows, against) for r in pair] + rows[len(against) :]
        options = {r: {"bundle": str(args.against)} for r in against}
        settings_ = {"before": [*settings_["one worker"], "--bundle", str(args.against)], "defaults": []}
    if args.eager_model:
        if not args.eager_model.is_file():
            raise CliError(f"--eager-model {args.eager_model}: no such file")
        options[EAGER_ROW] = {"bundle": str(args.bundle), "model": str(args.eager_model)}
    try:
        compete = [int(n) for n in comma_list(args.compete) or []]
    except ValueError:
        raise CliError(f"--compete: comma-separated counts, got {args.compete!r}") from None
    result = run_bench(
        args.bundle,
        root,
        rows,
        threads=args.threads,
        single=args.single,
        options=options,
        rounds=max(1, args.rounds),
        triage_settings=settings_ if compete else None,
        compete=compete,
    )
    prov = provenance()
    json_path, md_path = write_report("bench", {**result, "provenance": prov}, to_markdown(result, prov), args.reports)
    png = chart(result, args.reports / "bench.png")
    print(f"wrote {json_path}, {md_path} and {png}")
    return EXIT_OK if all(r.get("status") == "ok" for r in result["rows"]) else EXIT_PROBLEMS


def _bench_row(args: argparse.Namespace) -> int:
    from crisislens.evaluation.bench import run_row

    print(json.dumps(run_row(json.loads(args.spec))))
    return EXIT_OK
