"""The model on a Ray actor: one engine per actor, loaded once, its ONNX Runtime threads set so that
actors do not fight for the cores, predicting exactly as `crisislens triage` does on one machine
(the run loop's own batch step: batches bucketed by kind and length, a failing batch retried
post by post, a post the model saw nothing of recorded as an error).

`Predictor` is what `map_batches` runs: rows in (`sources.read_unit`), rows out, one per row in:
`shard`, `total`, `seq`, `kind` ("prediction" or "error"), `data` (the shard row as JSON), and
`worker` with `peak_rss_mb` (this actor's peak memory so far, for the run's log).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from crisislens.cluster.bundles import worker_bundle
from crisislens.cluster.shards import error_row, prediction_row
from crisislens.runtime.bundle import Bundle, BundleError
from crisislens.runtime.engine import Engine
from crisislens.runtime.schema import Post
from crisislens.runtime.store import bucketed
from crisislens.runtime.store.run import _predict_batch  # the single-machine batch step, reused as is

OUT_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("total", pa.int64()),
        ("seq", pa.int64()),
        ("kind", pa.string()),
        ("data", pa.string()),
        ("worker", pa.string()),
        ("peak_rss_mb", pa.float64()),
    ]
)


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


class Predictor:
    """One engine per actor (see the module). `carried` is `[ObjectRef]` of the driver's bundle
    files, fetched only by a worker that lacks the bundle at `bundle_path`. `crash_once` is for the
    tests of a killed worker: the first actor to find no file at that path creates it and exits
    in the middle of its batch."""

    def __init__(
        self,
        *,
        bundle_path: str,
        bundle_sha256: str,
        carried: list[Any] | None,
        variant: str | None,
        threads: int,
        batch_size: int,
        classes: Sequence[str] | None,
        backend: str = "auto",
        providers: Sequence[str] | None = None,
        crash_once: str | None = None,
    ):
        def fetch() -> dict[str, bytes] | None:
            if not carried:
                return None
            import ray

            files: dict[str, bytes] = ray.get(carried[0])
            return files

        bundle = self._bundle(bundle_path, bundle_sha256, fetch)
        self.engine = Engine(bundle, variant, threads=threads, providers=providers, prefer=backend)
        self.sha, self.variant = bundle.sha256, self.engine.variant.name
        self.batch_size, self.classes = batch_size, list(classes) if classes else None
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.crash_once = crash_once

    @staticmethod
    def _bundle(path: str, sha256: str, fetch: Callable[[], dict[str, bytes] | None]) -> Bundle:
        try:
            return worker_bundle(path, sha256, None)
        except BundleError:  # not at that path on this machine, or not the same: the carried copy
            return worker_bundle(path, sha256, fetch())

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        out: list[dict[str, Any]] = []
        posts: list[Post] = []
        place: dict[int, dict[str, Any]] = {}  # id(post) -> its read row
        for row in rows:
            if row["post"] is None:
                out.append(self._out(row, "error", error_row(tuple(json.loads(row["problem"])))))
                continue
            post = Post.from_dict(json.loads(row["post"]))
            posts.append(post)
            place[id(post)] = row
        if self.crash_once and posts and not Path(self.crash_once).exists():
            Path(self.crash_once).touch()
            os._exit(1)  # a worker killed mid-batch: Ray runs the batch again on a new actor
        for group in bucketed(posts, self.batch_size):
            items, errors = _predict_batch(self.engine, group, self.classes)
            for post, pred in items:
                data = prediction_row(post, pred, self.sha, self.variant, self.worker)
                out.append(self._out(place.pop(id(post)), "prediction", data))
            for post_id, where, message in errors:  # each a post of this group, by id and origin
                post = next(
                    p for p in group if id(p) in place and p.id == post_id and (p.origin or p.source or "") == where
                )
                out.append(self._out(place.pop(id(post)), "error", error_row((post_id, where, message))))
        return pa.Table.from_pylist(out, schema=OUT_SCHEMA)

    def _out(self, row: dict[str, Any], kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "shard": row["shard"],
            "total": row["total"],
            "seq": row["seq"],
            "kind": kind,
            "data": json.dumps(data),
            "worker": self.worker,
            "peak_rss_mb": peak_rss_mb(),
        }


__all__ = ["OUT_SCHEMA", "Predictor", "peak_rss_mb"]
