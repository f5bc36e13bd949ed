"""The runtime's own subcommands."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crisislens.runtime.cli.base import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_STORE,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Cli,
    CliError,
    add_engine_options,
    comma_list,
    printable,
)
from crisislens.runtime.cli.inputs import INPUT_HELP, add_column_options, column_names
from crisislens.runtime.readers import ReadError, ReadReport, read_posts

if TYPE_CHECKING:
    from crisislens.runtime.store import TriageStore

MAX_LISTED_PROBLEMS = 100  # the human listing; --json always has them all

VALIDATE_DESCRIPTION = """\
Read cached posts and report what a run would see: how many posts, with text, with an image,
and every problem as FILE:LINE: MESSAGE. Nothing is changed.

Each image's header is read (no pixel decoded): an image the model could not use (not an image,
a damaged header, too many pixels) is reported like a missing one, and the post counts as
text-only. Damage past the header shows only when a run decodes the photo.

Inputs, told apart by their content: JSON lines (posts, or tweets archived by twarc2 or an API
v1.1 collector), .csv / .tsv files with a header row (CrisisMMD task files included; a table
with its own column names takes --id-column, --text-column, --image-column), a Telegram Desktop
export (its folder or result.json), a WhatsApp chat export (its folder or chat .txt), or folders
of ID.txt + ID.jpg pairs. Each input is listed with the format found, its posts, the photos found,
the photos referenced but not cached (read from text only: photos are never downloaded) and the
rows not read.

Exit codes: 0 no errors (warnings: rows repaired and kept), 1 some rows or inputs had errors
and were skipped, 2 --strict stopped at the first problem (or a usage error)."""


def register(cli: Cli) -> None:
    p = cli.command(
        "validate",
        "check cached posts (JSONL, CSV/TSV, folders) before a run",
        _validate,
        description=VALIDATE_DESCRIPTION,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=INPUT_HELP)
    p.add_argument(
        "--image-root",
        type=Path,
        metavar="DIR",
        help="resolve image paths against DIR instead of each file's folder (CrisisMMD: drops 'data_image/')",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first problem, error or warning (exit 2)")
    add_column_options(p)
    p.add_argument("--json", action="store_true", help="print a machine-readable summary with every problem")
    p.add_argument(
        "--no-image-check",
        dest="check_images",
        action="store_false",
        help="do not open the images (by default each image's header is read, no pixel decoded)",
    )

    t = cli.command(
        "triage",
        "predict cached posts into a resumable SQLite store (torch-free)",
        _triage,
        description=TRIAGE_DESCRIPTION,
    )
    t.add_argument("inputs", nargs="+", metavar="INPUT", help=INPUT_HELP)
    t.add_argument("--bundle", type=Path, required=True, metavar="DIR", help="model bundle folder")
    t.add_argument("--out", type=Path, default=Path("triage.sqlite"), help="SQLite store (default: triage.sqlite)")
    add_engine_options(t)
    t.add_argument(
        "--workers",
        type=int,
        default=None,
        help="model calls at once, each on --threads threads (default: one single-threaded worker per core "
        "on a CPU, one on a GPU)",
    )
    add_column_options(t)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    x = cli.command("export-results", "write a triage store's predictions as JSONL or CSV", _export_results)
    x.add_argument("store", type=Path, help="triage SQLite store")
    x.add_argument("--out", type=Path, required=True, help="output file (.jsonl or .csv)")
    fb = cli.command(
        "export-feedback",
        "write the labels responders corrected in a triage store as labelled posts (JSONL)",
        _export_feedback,
        description=(
            "Write the responders' labels (set in `crisislens tui`) as JSONL labelled posts: id, text, image,\n"
            "label, model_label, corrected_at, note. Photos are copied into <OUT stem>-images/ beside the\n"
            "file, so the set travels whole; `crisislens eval --bundle DIR --input OUT` scores a model on it."
        ),
    )
    fb.add_argument("store", type=Path, help="triage SQLite store")
    fb.add_argument("--out", type=Path, required=True, help="output file (.jsonl)")


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


def _triage(args: argparse.Namespace) -> int:
    from crisislens.runtime.backends.engines import EngineMismatch
    from crisislens.runtime.bundle import BundleError, load_bundle
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.parallel import choose, for_backend
    from crisislens.runtime.store import StoreError, triage

    providers = comma_list(args.providers)
    store = _writable_store(args.out)  # before the model loads
    try:
        cores = choose(args.workers, args.threads)
        engine = Engine(
            load_bundle(args.bundle), args.variant, threads=cores.threads, providers=providers, prefer=args.backend
        )
        cores = for_backend(cores, getattr(engine.backend, "providers", ()), args.workers is not None)
        report = read_posts(args.inputs, image_root=args.image_root, columns=column_names(args))
    except (
        BundleError,
        StoreError,
        FileNotFoundError,
        ValueError,
        ReadError,
        ImportError,
        RuntimeError,
        EngineMismatch,
    ) as exc:
        raise CliError(printable(str(exc), keep_newlines=True)) from None
    if not args.quiet:
        print(f"backend: {engine.backend_reason}; {cores.describe()}", file=sys.stderr)
    read_errors = [(p.post_id, f"{p.file}:{p.line}" if p.line else p.file, p.message) for p in report.errors]
    store.add_image_roots(_image_roots(args.inputs, args.image_root))  # export-feedback copies from these only
    terminated: list[int] = []
    with store, _sigterm_as_interrupt(terminated):
        try:
            result = triage(
                engine,
                report.posts,
                store,
                batch_size=args.batch_size,
                classes=comma_list(args.classes),
                read_errors=read_errors,
                progress=not args.quiet,
                workers=cores.workers,
            )
        except StoreError as exc:  # the disk filled up, the medium went read-only
            raise CliError(printable(str(exc)), EXIT_STORE) from None
        except ValueError as exc:
            raise CliError(printable(str(exc))) from None
        total = store.count()
    print(
        f"{result.predicted} predicted ({result.posts_per_second:.1f} posts/s), {result.skipped_done} already in the "
        f"store, {result.errors} error(s); {total} predictions in {args.out}"
    )
    if result.interrupted:
        why = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"{why}: run the same command again to resume", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    return EXIT_PROBLEMS if result.errors else EXIT_OK


def _image_roots(inputs: list[str], image_root: Path | None) -> list[Path]:
    """The folders the readers take a run's images from: a folder input's own, or each file's
    folder (or --image-root)."""
    paths = [Path(i) for i in inputs]
    return [p if p.is_dir() else (image_root or p.parent) for p in paths]


def _writable_store(path: Path) -> TriageStore:
    """The run's store, opened and checked before the model loads: a read-only or full store is
    one line and its own exit code now, not a traceback after the work."""
    from crisislens.runtime.store import StoreError, TriageStore

    try:
        store = TriageStore(path)
        store.check_writable()
    except StoreError as exc:
        raise CliError(printable(str(exc)), EXIT_STORE) from None
    return store


@contextmanager
def _sigterm_as_interrupt(seen: list[int]) -> Iterator[None]:
    """SIGTERM (`kill`, a service stop) ends a run like Ctrl-C: the batch in flight is rolled
    back and the run says so; `seen` gets the signal."""

    def stop(signum: int, frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave the signal alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _export_from_store(args: argparse.Namespace, export: Any, what: str) -> int:
    """Run `export(store, out) -> count` on an existing triage store; one clear line on failure."""
    from crisislens.runtime.store import StoreError, TriageStore

    if not args.store.is_file():
        raise CliError(f"{args.store}: no such triage store")
    try:
        with TriageStore(args.store, readonly=True) as store:
            n = export(store, args.out)
    except (StoreError, ValueError, OSError) as exc:
        raise CliError(printable(str(exc))) from None
    print(f"wrote {n} {what} to {args.out}")
    return EXIT_OK


def _export_results(args: argparse.Namespace) -> int:
    from crisislens.runtime.store import export_results

    return _export_from_store(args, export_results, "predictions")


def _export_feedback(args: argparse.Namespace) -> int:
    from crisislens.runtime.store import export_feedback

    return _export_from_store(args, export_feedback, "corrected label(s)")


def _validate(args: argparse.Namespace) -> int:
    if args.image_root is not None and not args.image_root.is_dir():
        raise CliError(f"--image-root {args.image_root}: not a folder")
    try:
        report = read_posts(
            args.inputs,
            image_root=args.image_root,
            strict=args.strict,
            check_images=args.check_images,
            columns=column_names(args),
        )
    except ReadError as exc:
        raise CliError(f"{printable(str(exc.problem))} (--strict stops at the first problem)", EXIT_USAGE) from None
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
    for s in report.inputs:
        lines.append(
            f"  {printable(s.file)}  {s.format}: {_count(s.posts, 'post')}, {_count(s.photos, 'photo')}, "
            f"{_count(s.not_cached, 'photo')} not cached, {_count(s.errors, 'row')} not read"
        )
    for problem in report.problems[:MAX_LISTED_PROBLEMS]:
        lines.append(f"  {problem.severity:<8} {printable(str(problem))}")
    hidden = len(report.problems) - MAX_LISTED_PROBLEMS
    if hidden > 0:
        lines.append(f"  ... and {hidden} more (--json lists them all)")
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
