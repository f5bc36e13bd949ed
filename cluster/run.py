"""A triage run on a Ray cluster: Ray Data reads the inputs in parallel (`sources`), an actor pool
runs the model (`predictor`), and the driver writes each shard whole as its last row arrives
(`shards`). What is written is what `crisislens triage` would store for the same posts.

Resume: the shards of an earlier run of the same command are found by name and not read
again. A worker killed mid-batch loses nothing: Ray runs the batch again on another actor, and
the driver keeps one row per (shard, place in the shard), so a batch run twice is written once.
A killed driver loses the shards it had not written; the next run redoes them.

The driver uses the Ray this process already joined, else connects to `address` (else
$RAY_ADDRESS: a running cluster, `ray://` included), else starts a local Ray instance on this
machine's cores and stops it at the end.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crisislens.cluster.bundles import bundle_files
from crisislens.cluster.predictor import Predictor
from crisislens.cluster.shards import (
    SHARD_SIZE,
    RunInfo,
    ShardError,
    check_resume,
    done_shards,
    input_signature,
    write_shard,
)
from crisislens.cluster.sources import input_units, read_unit
from crisislens.runtime.bundle import load_bundle
from crisislens.runtime.files import atomic_write
from crisislens.runtime.parallel import cores

RUNS_LOG = "runs.jsonl"  # one line per run: when, how many, how fast, each actor's peak memory
LOCAL_OBJECT_STORE_MB = 256  # a local instance's object store: rows in flight and the carried bundle
CALLS_PER_BATCH = 8  # model batches per actor call: fewer, larger calls, same answers
# Ray Data hands an actor whole blocks: blocks of a few hundred posts spread one big input over
# every actor (its default, 128 MB, would give a 100k-post file to one actor) and bound what a
# killed actor's retry redoes.
BLOCK_BYTES = 256 * 1024


@dataclass
class ClusterJob:
    """What a cluster run is asked to do (the CLI's options)."""

    inputs: list[str]
    out: Path
    bundle: Path
    variant: str | None = None
    address: str | None = None
    actors: int | None = None  # default: the cluster's CPUs / threads
    threads: int = 1  # ONNX Runtime threads per actor (the CPUs each actor reserves)
    batch_size: int = 32
    shard_size: int = SHARD_SIZE
    classes: list[str] | None = None
    image_root: Path | None = None
    columns: dict[str, str] | None = None
    backend: str = "auto"
    providers: list[str] | None = None
    crash_once: str | None = None  # tests: see `Predictor`


@dataclass
class ClusterResult:
    predicted: int = 0
    errors: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    seconds: float = 0.0
    actors: int = 0
    # (post id, FILE[:LINE], message) of this run's problems, the first MAX_KEPT
    problems: list[tuple[str | None, str, str]] = field(default_factory=list)
    workers: dict[str, float] = field(default_factory=dict)  # host:pid -> peak RSS, MB
    interrupted: bool = False

    @property
    def posts_per_second(self) -> float:
        return self.predicted / self.seconds if self.seconds > 0 else 0.0


MAX_KEPT = 100


@contextmanager
def connected(address: str | None, cpus: int | None = None) -> Iterator[bool]:
    """Ray, joined at `address`, or the instance this process already joined, or a local one
    started here (and stopped at the end). Yields whether it started one."""
    import ray

    if ray.is_initialized():
        yield False
        return
    logging.getLogger("ray").setLevel(logging.WARNING)
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        ray.init(
            address="local",  # a new instance: never a cluster some earlier `ray start` left behind
            num_cpus=cpus or cores(),
            object_store_memory=LOCAL_OBJECT_STORE_MB * 1024 * 1024,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    try:
        yield not address
    finally:
        ray.shutdown()


def run_job(job: ClusterJob, progress: Callable[[ClusterResult], None] | None = None) -> ClusterResult:
    """Triage `job.inputs` into shards under `job.out` (see the module)."""
    bundle = load_bundle(job.bundle)  # every file checked here first, then on each worker
    variant = bundle.variant(job.variant).name
    units = input_units(job.inputs)
    now = RunInfo(
        bundle.sha256,
        variant,
        job.classes,
        job.shard_size,
        {u["prefix"]: {"path": u["path"], "signature": input_signature(Path(u["path"]))} for u in units},
    )
    job.out.mkdir(parents=True, exist_ok=True)
    info = check_resume(job.out, now)
    atomic_write(job.out / "run.json", info.to_json())
    done = done_shards(job.out)
    result = ClusterResult()
    started = time.perf_counter()
    with connected(job.address):
        import ray
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the run prints its own progress line
        ctx.print_on_execution_start = False
        ctx.target_max_block_size = BLOCK_BYTES
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        result.actors = job.actors or max(1, cpus // max(1, job.threads))
        carried = [ray.put(bundle_files(bundle))]
        done_now = frozenset(done)
        image_root = str(job.image_root.absolute()) if job.image_root else None

        def read(unit: dict[str, Any]) -> Iterator[dict[str, Any]]:
            return read_unit(unit, shard_size=job.shard_size, done=done_now, image_root=image_root, columns=job.columns)

        # reading is light: the actors hold the CPUs, and a read must never wait for one (num_cpus 0)
        reads = ray.data.from_items(units, override_num_blocks=max(1, len(units))).flat_map(read, num_cpus=0)
        predicted = reads.map_batches(
            Predictor,
            fn_constructor_kwargs={
                "bundle_path": str(bundle.path.absolute()),
                "bundle_sha256": bundle.sha256,
                "carried": carried,
                "variant": variant,
                "threads": job.threads,
                "batch_size": job.batch_size,
                "classes": job.classes,
                "backend": job.backend,
                "providers": job.providers,
                "crash_once": job.crash_once,
            },
            batch_size=job.batch_size * CALLS_PER_BATCH,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=result.actors),
            num_cpus=job.threads,
        )
        try:
            _write_shards(predicted, job.out, done, result, progress)
        except KeyboardInterrupt:
            result.interrupted = True
    result.seconds = round(time.perf_counter() - started, 2)
    _log_run(job, result)
    return result


def _write_shards(
    dataset: Any, out: Path, done: set[str], result: ClusterResult, progress: Callable[[ClusterResult], None] | None
) -> None:
    """Gather each shard's rows (one per place: a batch run twice counts once) and write the shard
    as soon as it is whole."""
    pending: dict[str, dict[int, dict[str, Any]]] = {}
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in batch.to_pylist():
            result.workers[row["worker"]] = max(result.workers.get(row["worker"], 0.0), row["peak_rss_mb"])
            rows = pending.setdefault(row["shard"], {})
            rows[row["seq"]] = row
            if len(rows) < row["total"]:
                continue
            shard = pending.pop(row["shard"])
            predictions = [json.loads(r["data"]) for _, r in sorted(shard.items()) if r["kind"] == "prediction"]
            errors = [json.loads(r["data"]) for _, r in sorted(shard.items()) if r["kind"] == "error"]
            write_shard(out, row["shard"], predictions, errors)
            result.predicted += len(predictions)
            result.errors += len(errors)
            result.shards_written += 1
            room = MAX_KEPT - len(result.problems)
            result.problems += [(e["post_id"], _where(e), e["message"]) for e in errors[: max(0, room)]]
            if progress is not None:
                progress(result)
    if pending:  # every row of a shard comes back: a shard left open is a bug, never silence
        raise ShardError(f"{out}: shard(s) {', '.join(sorted(pending))} came back incomplete; run again to redo them")
    result.shards_skipped = len(done)


def _where(error: dict[str, Any]) -> str:
    return f"{error['file']}:{error['line']}" if error["line"] is not None else error["file"]


def _log_run(job: ClusterJob, result: ClusterResult) -> None:
    entry = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["crisislens", *sys.argv[1:]]),
        "address": job.address,
        "threads_per_actor": job.threads,
        **{k: v for k, v in asdict(result).items() if k != "problems"},
        "posts_per_second": round(result.posts_per_second, 2),
    }
    with (job.out / RUNS_LOG).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


__all__ = [
    "CALLS_PER_BATCH",
    "LOCAL_OBJECT_STORE_MB",
    "RUNS_LOG",
    "ClusterJob",
    "ClusterResult",
    "connected",
    "run_job",
]
