"""The runtime's own subcommands."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Collection, Iterator
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
from crisislens.runtime.cli.engines import add_engine_choice, run_on_engine
from crisislens.runtime.cli.inputs import INPUT_HELP, add_column_options, column_names
from crisislens.runtime.readers import ReadError, ReadReport, read_posts
from crisislens.runtime.settings import BUNDLE_HELP, STORE_HELP, SettingsError, settings

if TYPE_CHECKING:
    from crisislens.runtime.store import TriageResult, TriageStore

MAX_LISTED_PROBLEMS = 100  # the human listing; --json always has them all
MAX_RUN_PROBLEMS = 10  # what a triage run prints of its problems (the store and `validate` have them all)

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
    t.add_argument("--bundle", type=Path, default=None, metavar="DIR", help=BUNDLE_HELP)
    add_store_option(t)
    add_engine_options(t)
    t.add_argument(
        "--workers",
        type=int,
        default=None,
        help="model calls at once, each on --threads threads (default: one single-threaded worker per core "
        "on a CPU, one on a GPU)",
    )
    add_column_options(t)
    add_engine_choice(t)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    x = cli.command(
        "export-results",
        "write a triage store's predictions as JSONL or CSV, most urgent first",
        _export_results,
        description=(
            "Write every prediction of a triage store, in the order the app lists them (priority, most\n"
            "urgent first): CSV with rank, post_id, priority, label, confidence, ... or JSONL with everything."
        ),
    )
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

  crisislens triage posts/                 results go to posts.triage.sqlite beside posts/
  crisislens triage flood.jsonl --store flood.sqlite

The bundle is --bundle, else $CRISISLENS_BUNDLE, else the one installed with CrisisLens. The
store is --store (old name --out), else $CRISISLENS_STORE, else named after the first input and
put beside it (in the working directory where that folder is read-only); the run prints where.

One transaction per batch: Ctrl-C or a killed process loses at most the batch in flight, and
running the same command again resumes where it stopped (stored posts are skipped). A post is
known by its id, its input and its content: one that changed in its input (a photo that arrived
after its text) is triaged again; a different post with an id already stored (p01.txt of another
folder) is stored as p01#2 and named in the output. Rows the readers reject are stored as errors
and printed with file and line (the first 10, then a count); files a folder input skips are
printed too; nothing is silently dropped. A photo that cannot be decoded is left out with a
warning (the post is classified from its text); a post left with no word and no usable photo is
stored as a 'nothing to classify' error, not a label, and is tried again on the next run.

Exit codes: 0 all posts predicted, 1 some rows could not be read or predicted, or no post was
read at all, 2 usage error (no bundle, a store that cannot be opened), 130 interrupted (rerun to
resume)."""


def _triage(args: argparse.Namespace) -> int:
    from crisislens.runtime.backends.engines import EngineMismatch
    from crisislens.runtime.bundle import BundleError, load_bundle
    from crisislens.runtime.bundle.verify import DEFAULT
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.parallel import choose, for_backend
    from crisislens.runtime.readers import iter_posts
    from crisislens.runtime.readers.stream import count_posts, gathered
    from crisislens.runtime.store import StoreError, triage

    elsewhere = run_on_engine(args)  # --engine ray: a Ray cluster writes Parquet shards instead
    if elsewhere is not None:
        return elsewhere
    providers = comma_list(args.providers)
    conf = settings()
    try:
        bundle = conf.bundle_dir(args.bundle)
        store_path = conf.store_for(args.inputs, args.store)
        store = _writable_store(store_path)  # before the model loads
        cores = choose(args.workers, args.threads)
        engine = Engine(
            load_bundle(bundle, hash_for=args.variant or DEFAULT),
            args.variant,
            threads=cores.threads,
            providers=providers,
            prefer=args.backend,
        )
        cores = for_backend(cores, getattr(engine.backend, "providers", ()), args.workers is not None)
        # Read as the run goes, a window at a time; a first pass counts the posts for the progress bar.
        count = count_posts(args.inputs, image_root=args.image_root, columns=column_names(args))
        report = ReadReport()  # the read's problems, gathered as the posts stream by
        posts = gathered(iter_posts(args.inputs, image_root=args.image_root, columns=column_names(args)), report)
    except (
        SettingsError,
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
        print(f"results go to {store_path}", file=sys.stderr)
    read_errors = [(p.post_id, f"{p.file}:{p.line}" if p.line else p.file, p.message) for p in report.errors]
    store.add_image_roots(_image_roots(args.inputs, args.image_root))  # export-feedback copies from these only
    terminated: list[int] = []
    with store, sigterm_as_interrupt(terminated):
        earlier = {(e["post_id"], e["where"], e["message"]) for e in store.errors()}
        try:
            result = triage(
                engine,
                posts,
                store,
                batch_size=args.batch_size,
                classes=comma_list(args.classes),
                read_errors=read_errors,
                progress=not args.quiet,
                workers=cores.workers,
                total=count,
            )
        except StoreError as exc:  # the disk filled up, the medium went read-only
            raise CliError(printable(str(exc)), EXIT_STORE) from None
        except ValueError as exc:
            raise CliError(printable(str(exc))) from None
        total = store.count()
    for line in run_report_lines(report, result, earlier):
        print(line, file=sys.stderr)
    print(
        f"{result.predicted} predicted ({result.posts_per_second:.1f} posts/s), {result.skipped_done} already in the "
        f"store, {result.errors} error(s); {total} predictions in {printable(str(store_path))}"
    )
    if result.interrupted:
        why = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"{why}: run the same command again to resume", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    return EXIT_PROBLEMS if result.errors or not result.total else EXIT_OK


def add_store_option(parser: argparse.ArgumentParser, what: str = "") -> None:
    """`--store PATH` (old name `--out`), resolved by `Settings.store_for`."""
    parser.add_argument(
        "--store", "--out", dest="store", type=Path, default=None, metavar="PATH", help=STORE_HELP + what
    )


Problem = tuple[str | None, str, str]  # (post id, FILE[:LINE], message)


def run_report_lines(report: ReadReport, result: TriageResult, earlier: Collection[Problem] = ()) -> list[str]:
    """What a run says about what it could not triage: each problem of this run as FILE:LINE: MESSAGE
    (the first MAX_RUN_PROBLEMS, then a count), the inputs' files it skipped, and a line when it read
    no post at all. A problem an earlier run already stored is marked so, not announced as new."""
    lines: list[str] = []
    problems = result.problems
    for post_id, where, message in problems[:MAX_RUN_PROBLEMS]:
        seen = "  (also met by an earlier run)" if (post_id, where, message) in earlier else ""
        lines.append(f"error: {printable(where)}: {printable(message)}{seen}")
    if len(problems) > MAX_RUN_PROBLEMS:
        lines.append(f"... and {len(problems) - MAX_RUN_PROBLEMS} more error(s) (crisislens validate lists them all)")
    skipped = [p for p in report.warnings if p.post_id is None]
    for problem in skipped[:MAX_RUN_PROBLEMS]:
        lines.append(f"skipped: {printable(str(problem))}")
    if len(skipped) > MAX_RUN_PROBLEMS:
        lines.append(f"... and {len(skipped) - MAX_RUN_PROBLEMS} more skipped (crisislens validate lists them all)")
    for input_id, stored_id, place in result.renamed[:MAX_RUN_PROBLEMS]:
        lines.append(
            f"note: {printable(input_id)} of {printable(place)}: another post is stored under that id; "
            f"stored as {printable(stored_id)}"
        )
    if not result.total:
        lines.append("no post read from the inputs")
    return lines


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
def sigterm_as_interrupt(seen: list[int]) -> Iterator[None]:
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
