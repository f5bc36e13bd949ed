"""`crisislens tui`: plugged into the `crisislens` command through an entry point."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crisislens.runtime.cli.inputs import add_column_options, column_names
from crisislens.runtime.cli import (EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEMS, Cli, CliError, add_engine_options,
                                   printable, require)
from crisislens.runtime.settings import BUNDLE_HELP, STORE_HELP, settings

STORE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
SQLITE_MAGIC = b"SQLite format 3\x00"

DESCRIPTION = """\
Open the field triage app.

  crisislens tui triage.sqlite                      review a store written by `crisislens triage`
  crisislens tui posts.jsonl photos/ --store s.sqlite   triage INPUTs with the bundle, then review
  crisislens tui --watch incoming/ --store s.sqlite    live: triage new posts as they appear

INPUTs are .jsonl/.csv/.tsv files, folders of ID.txt + ID.jpg pairs, tweet archives (twarc2,
API v1.1), Telegram Desktop exports and WhatsApp chat exports, told apart by their content; a
table with its own column names takes --id-column, --text-column, --image-column. Posts already in the
store are skipped, so running it again resumes. Without a terminal (or with --print) the
triage list is printed as a table instead. Keys: ? in the app."""


def register(cli: Cli) -> None:
    p = cli.command("tui", "the field triage app (Textual): review, correct, flag and export predictions", _tui,
                    description=DESCRIPTION)
    p.add_argument("inputs", nargs="*", metavar="STORE|INPUT", help="a triage store (.sqlite), or inputs to triage")
    p.add_argument("--store", type=Path, default=None, metavar="PATH", help=STORE_HELP)
    p.add_argument("--bundle", type=Path, default=None, metavar="DIR", help=BUNDLE_HELP)
    p.add_argument("--watch", type=Path, default=None, metavar="DIR", help="live mode: triage new posts in DIR as they appear")
    add_engine_options(p, batching=False)
    add_column_options(p)
    p.add_argument("--image", choices=["auto", "halfblock", "kitty", "sixel", "unicode", "none"], default="auto",
                   help="how photos are drawn: auto picks kitty graphics, sixel or half-blocks (default: auto)")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print the triage list as a table and exit (automatic without a terminal)")
    p.add_argument("--limit", type=int, default=None, help="with --print: at most this many rows")
    p.add_argument("--screenshot", type=Path, default=None, metavar="FILE.svg",
                   help="run the app headless (after triaging INPUTs), save the screen as SVG and exit")
    p.add_argument("--size", default="140x44", metavar="COLSxROWS", help="with --screenshot: terminal size (default 140x44)")


def is_store(path: Path) -> bool:
    """A triage store: an existing SQLite file (by its header), or a new .sqlite/.db name."""
    if path.is_file():
        try:
            with path.open("rb") as f:
                return f.read(16) == SQLITE_MAGIC
        except OSError:
            return False
    return path.suffix.lower() in STORE_SUFFIXES and not path.exists()


def _plan(args: argparse.Namespace):  # noqa: ANN202 - (store path, TriageJob | None)
    from crisislens.runtime.store.watch import TriageJob

    inputs = [Path(i) for i in args.inputs]
    if args.watch is not None:
        if inputs:
            raise CliError("give either --watch DIR or STORE/INPUTs, not both")
        if not args.watch.is_dir():
            raise CliError(f"{args.watch}: not a folder to watch")
        store = settings().store_for([args.watch], args.store)
        return store, TriageJob(args.bundle, [args.watch], store, watch=True, variant=args.variant,
                                image_root=args.image_root, backend=args.backend, columns=column_names(args))
    if len(inputs) == 1 and is_store(inputs[0]):
        if not inputs[0].exists():
            raise CliError(f"{inputs[0]}: no such triage store")
        return inputs[0], None
    stores = [i for i in inputs if i.is_file() and is_store(i)]
    if stores:
        raise CliError(f"{stores[0]}: a triage store among the inputs; open it alone, or pass it with --store")
    if not inputs:
        if args.store is not None and args.store.is_file():
            return args.store, None
        raise CliError("nothing to show: give a triage store, INPUTs to triage, or --watch DIR (see --help)")
    missing = [i for i in inputs if not i.exists()]
    if missing:
        raise CliError(f"{missing[0]}: no such file or folder")
    store = settings().store_for(inputs, args.store)
    return store, TriageJob(args.bundle, inputs, store, variant=args.variant, image_root=args.image_root,
                            columns=column_names(args),
                            backend=args.backend)


def _check_bundle(job) -> None:  # noqa: ANN001
    """Resolve the job's bundle (--bundle > $CRISISLENS_BUNDLE > the installed default) before the app starts."""
    from crisislens.runtime.settings import SettingsError

    if job is not None:
        try:
            job.bundle = settings().bundle_dir(job.bundle)
        except SettingsError as exc:
            raise CliError(str(exc)) from None
        print(f"results go to {printable(str(job.store))}", file=sys.stderr)


def _tui(args: argparse.Namespace) -> int:
    from crisislens.runtime.bundle import BundleError
    from crisislens.runtime.store import StoreError, TriageStore

    store, job = _plan(args)
    _check_bundle(job)
    store.parent.mkdir(parents=True, exist_ok=True)
    if args.screenshot is not None:
        return _screenshot(store, job, args)
    if args.print_only or not sys.stdout.isatty():
        return _print(store, job, args)
    require("textual", "tui")
    from crisislens.tui.app import CrisisLensApp
    from crisislens.tui.widgets.image_view import load_renderer

    try:
        renderer = load_renderer(args.image)  # before the app takes the terminal
        app = CrisisLensApp(store, job, renderer)
    except (StoreError, BundleError, ValueError, ImportError) as exc:
        raise CliError(str(exc)) from None
    app.run()
    with TriageStore(store) as s:
        print(f"{s.count()} predictions in {store}; {sum(1 for it in s.items() if it.reviewed)} reviewed")
    return EXIT_OK


def _print(store: Path, job, args: argparse.Namespace) -> int:  # noqa: ANN001
    import threading

    from crisislens.runtime.bundle import BundleError
    from crisislens.runtime.cli.commands import run_report_lines
    from crisislens.runtime.store import StoreError, TriageStore
    from crisislens.tui.table import print_table

    code = EXIT_OK
    lines: list[str] = []  # what this run could not triage; earlier runs' problems are only counted
    result = None
    if job is not None:
        if job.watch:
            raise CliError("--watch needs the app (a terminal); use `crisislens triage` in scripts")

        def report(done: int, total: int, note: str) -> None:
            print(f"\r{note}: {done}/{total}", end="", file=sys.stderr, flush=True)

        try:
            result = job.run(threading.Event(), report)
        except (StoreError, BundleError, ValueError, OSError) as exc:
            raise CliError(str(exc)) from None
        print(file=sys.stderr)
        if result is not None and job.last_read is not None:
            lines = run_report_lines(job.last_read, result)
            if not job.last_read.posts:
                code = EXIT_PROBLEMS
        if result is not None and result.errors:
            code = EXIT_PROBLEMS
        if result is not None and result.interrupted:
            code = EXIT_INTERRUPTED
    try:
        with TriageStore(store, readonly=True) as s:  # a store on read-only media prints too
            print_table(s.items(), limit=args.limit)
            errors = s.errors()
    except StoreError as exc:
        raise CliError(str(exc)) from None
    for line in lines:
        print(line, file=sys.stderr)
    shown = {(p[1], p[2]) for p in result.problems} if result is not None else set()
    earlier = [e for e in errors if (e["where"], e["message"]) not in shown]
    if earlier:
        print(f"{len(earlier)} input problem(s) stored by earlier runs: open the store in the app and press E",
              file=sys.stderr)
    return code


def _screenshot(store: Path, job, args: argparse.Namespace) -> int:  # noqa: ANN001
    """The README's picture, drawn by the app itself: headless, half-block photos, after any triage."""
    require("textual", "tui")
    import asyncio

    from crisislens.tui.app import CrisisLensApp

    try:
        cols, rows = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise CliError(f"--size {args.size!r}: expected COLSxROWS, e.g. 140x44") from None
    if job is not None and job.watch:
        raise CliError("--screenshot takes a store or INPUTs, not --watch")
    app = CrisisLensApp(store, job, "halfblock")

    async def shoot(pilot) -> None:  # noqa: ANN001 - textual Pilot
        while job is not None and not app.job_done.is_set():
            await asyncio.sleep(0.1)
        await pilot.pause(0.5)
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(filename=args.screenshot.name, path=str(args.screenshot.parent))
        app.exit()

    app.run(headless=True, size=(cols, rows), auto_pilot=shoot)
    print(f"wrote {args.screenshot}")
    return EXIT_OK
