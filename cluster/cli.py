"""The cluster's commands: `crisislens triage --engine ray` (reached through the
`crisislens.engines` entry point), `crisislens store import` and `crisislens cluster bench`.
Ray and pyarrow are imported inside the commands: `crisislens --help` works without them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crisislens.runtime.cli import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_STORE,
    EXIT_TERMINATED,
    Cli,
    CliError,
    comma_list,
    printable,
    require,
)
from crisislens.runtime.cli.commands import sigterm_as_interrupt
from crisislens.runtime.cli.inputs import column_names
from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.settings import settings

MAX_RUN_PROBLEMS = 10

IMPORT_DESCRIPTION = """\
Bring the Parquet shards of a cluster run (crisislens triage --engine ray --parquet DIR) into a
triage store that `crisislens tui STORE` opens: predictions with their rationales, the posts'
text and photo paths, and the run's errors with file and line.

  crisislens store import shards/ --store urgent.sqlite --top 5000
  crisislens store import shards/ --store injured.sqlite --label affected_individuals

A post already in the store with the same content is skipped (importing twice adds nothing);
a different post with a stored id is stored as ID#2. Needs crisislens[cluster] (pyarrow)."""

BENCH_DESCRIPTION = """\
Triage the same synthetic posts with plain `crisislens triage` and with `--engine ray` on this
machine, for each number of workers / actors, in alternated order; check that both give the same
labels and rationale scores; write posts/s, the cluster path's overhead, memory per actor and
the machine's load to reports/cluster_bench.{json,md}."""


def register(cli: Cli) -> None:
    store = cli.group("store", "work on triage stores")
    imp = store.command(
        "import", "bring a cluster run's Parquet shards into a triage store", _import, description=IMPORT_DESCRIPTION
    )
    imp.add_argument("shards", type=Path, metavar="DIR", help="the shard folder a cluster run wrote (--parquet)")
    imp.add_argument("--store", type=Path, required=True, metavar="PATH", help="triage store to write (SQLite)")
    imp.add_argument("--label", default=None, metavar="A,B", help="only posts predicted as these labels")
    imp.add_argument("--top", type=int, default=None, metavar="N", help="only the N most urgent posts (by priority)")

    group = cli.group("cluster", "triage on a Ray cluster: benchmark")
    b = group.command(
        "bench", "the cluster path against plain triage on this machine", _bench, description=BENCH_DESCRIPTION
    )
    b.add_argument("--posts", type=int, default=100_000, help="text posts (default: 100000)")
    b.add_argument("--photo-posts", type=int, default=5_000, help="posts with a photo (default: 5000)")
    b.add_argument("--workers", default="1,2", metavar="N,M", help="workers / actors to compare (default: 1,2)")
    b.add_argument("--bundle", type=Path, default=None, metavar="DIR", help="model bundle (default: the installed one)")
    b.add_argument("--work", type=Path, default=Path("artifacts/cluster-bench"), metavar="DIR", help="scratch folder")
    b.add_argument("--reports", type=Path, default=None, metavar="DIR", help="report folder (default: reports/)")
    b.add_argument(
        "--own-instance",
        action="store_true",
        help="each cluster run starts its own local Ray instance (default: join a head the bench starts first)",
    )
    b.add_argument(
        "--update",
        action="store_true",
        help="keep the report's rows this run does not measure (e.g. --posts 0: re-measure the photo rows only)",
    )


def triage_on_ray(args: argparse.Namespace) -> int:
    """`crisislens triage ... --engine ray --parquet DIR` (the runtime's triage hands over here)."""
    require("pyarrow", "cluster")
    from crisislens.cluster.run import ClusterJob, ClusterResult, run_job
    from crisislens.cluster.shards import SHARD_SIZE
    from crisislens.runtime.bundle import BundleError
    from crisislens.runtime.settings import SettingsError

    if args.parquet is None:
        raise CliError("--engine ray writes Parquet shards: give --parquet DIR")
    if args.store is not None:
        raise CliError("--engine ray writes --parquet DIR, not a store: bring shards in with `crisislens store import`")
    try:
        job = ClusterJob(
            inputs=list(args.inputs),
            out=args.parquet,
            bundle=settings().bundle_dir(args.bundle),
            variant=args.variant,
            address=args.address,
            actors=args.workers,
            threads=args.threads or 1,
            batch_size=args.batch_size,
            shard_size=args.shard_size or SHARD_SIZE,
            classes=comma_list(args.classes),
            image_root=args.image_root,
            columns=column_names(args),
            backend=args.backend,
            providers=comma_list(args.providers),
        )

        def progress(r: ClusterResult) -> None:
            print(
                f"\rtriage (ray): {r.shards_written} shard(s) written, {r.predicted} predicted, {r.errors} error(s)",
                end="",
                file=sys.stderr,
                flush=True,
            )

        terminated: list[int] = []
        with sigterm_as_interrupt(terminated):  # `kill`, a stopped service: like Ctrl-C, resumable
            result = run_job(job, None if args.quiet else progress)
    except (SettingsError, BundleError, CrisisLensError, OSError, ValueError) as exc:
        raise CliError(printable(str(exc), keep_newlines=True)) from None
    if not args.quiet:
        print(file=sys.stderr)
    for _post_id, where, message in result.problems[:MAX_RUN_PROBLEMS]:
        print(f"error: {printable(where)}: {printable(message)}", file=sys.stderr)
    if result.errors > MAX_RUN_PROBLEMS:
        print(f"... and {result.errors - MAX_RUN_PROBLEMS} more error(s): {args.parquet}/errors/", file=sys.stderr)
    print(
        f"{result.predicted} predicted ({result.posts_per_second:.1f} posts/s) on {result.actors} actor(s), "
        f"{result.shards_written} shard(s) written, {result.shards_skipped} already there, {result.errors} error(s); "
        f"shards in {printable(str(args.parquet))}"
    )
    if result.interrupted:
        why = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"{why}: run the same command again to resume", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    written = result.predicted + result.errors
    return EXIT_PROBLEMS if result.errors or (not written and not result.shards_skipped) else EXIT_OK


def _import(args: argparse.Namespace) -> int:
    require("pyarrow", "cluster")
    from crisislens.cluster.importer import import_shards
    from crisislens.runtime.labels import LABEL_NAMES
    from crisislens.runtime.store import StoreError, TriageStore

    labels = comma_list(args.label)
    unknown = [name for name in labels or () if name not in LABEL_NAMES]
    if unknown:
        raise CliError(f"--label {', '.join(unknown)}: not a label; the labels are {', '.join(LABEL_NAMES)}")
    if args.top is not None and args.top < 1:
        raise CliError("--top: give a number of posts, 1 or more")
    if not args.shards.is_dir():
        raise CliError(f"{args.shards}: no such shard folder")
    try:
        store = TriageStore(args.store)
        store.check_writable()
    except StoreError as exc:
        raise CliError(printable(str(exc)), EXIT_STORE) from None
    with store:
        try:
            result = import_shards(args.shards, store, labels=labels, top=args.top)
        except StoreError as exc:
            raise CliError(printable(str(exc)), EXIT_STORE) from None
        except CrisisLensError as exc:
            raise CliError(printable(str(exc))) from None
        total = store.count()
    for input_id, stored_id, place in result.renamed[:MAX_RUN_PROBLEMS]:
        print(
            f"note: {printable(input_id)} of {printable(place)}: another post is stored under that id; "
            f"stored as {printable(stored_id)}",
            file=sys.stderr,
        )
    print(
        f"{result.imported} prediction(s) imported from {result.shards} shard(s), {result.skipped} already in the "
        f"store, {result.errors} error(s) recorded; {total} predictions in {printable(str(args.store))}"
    )
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    require("ray", "cluster")
    from crisislens.cluster.bench import BenchConfig, run_bench

    workers = [int(w) for w in comma_list(args.workers) or ["1"]]
    conf = settings()
    config = BenchConfig(
        posts=args.posts,
        photo_posts=args.photo_posts,
        workers=workers,
        bundle=conf.bundle_dir(args.bundle),
        work=args.work,
        reports=args.reports or conf.reports,
        own_instance=args.own_instance,
        update=args.update,
    )
    json_path, md_path = run_bench(config)
    print(f"wrote {json_path} and {md_path}")
    return EXIT_OK


__all__ = ["register", "triage_on_ray"]
