"""Parallel inference without spinning: several workers, each running single-threaded model calls.

A post is one short model call (a few ms). ONNX Runtime's intra-op threads split such a call
over the cores, and spin while they wait: a small gain on a quiet machine and a large loss when
another process competes for the cores. Workers that each run whole calls on one thread keep
every core busy with useful work instead. ONNX Runtime releases the GIL during `run`, so the
workers are threads over one shared session (one copy of the weights); tokenisation and image
decoding release it too.

`choose` picks workers x threads from the cores present (`--workers` / `--threads` override);
`in_order` runs a function over batches on the workers and yields the results in input order,
with a bounded number of batches in flight, so that the caller (the run loop) alone writes the
store, one transaction per batch, in the order the posts were read.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Batches queued per worker beyond the one it runs: enough to never leave a worker idle while the
# store is written, few enough that memory does not grow with the input.
AHEAD = 2


@dataclass(frozen=True)
class Parallelism:
    """How a run uses the cores: `workers` concurrent model calls of `threads` intra-op threads each."""

    workers: int
    threads: int

    def describe(self) -> str:
        def plural(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 's'}"

        return f"{plural(self.workers, 'worker')} x {plural(self.threads, 'thread')}"


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says, else the count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def choose(workers: int | None = None, threads: int | None = None, available: int | None = None) -> Parallelism:
    """Workers x threads for a CPU run: one single-threaded worker per core by default; given one
    of the two, the other fills the cores; given both, both are kept (values below 1 are 1)."""
    n = cores() if available is None else max(1, available)
    if workers is not None and threads is not None:
        return Parallelism(max(1, workers), max(1, threads))
    if workers is not None:
        w = max(1, workers)
        return Parallelism(w, max(1, n // w))
    if threads is not None:
        t = max(1, threads)
        return Parallelism(max(1, n // t), t)
    return Parallelism(n, 1)


def for_backend(chosen: Parallelism, providers: Sequence[str], workers_given: bool) -> Parallelism:
    """A GPU session (TensorRT, CUDA or a native engine) runs one call at a time: workers only
    for a CPU-only ONNX Runtime session, unless asked for."""
    if workers_given or list(providers) == ["CPUExecutionProvider"]:
        return chosen
    return Parallelism(1, chosen.threads)


def in_order(fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int = AHEAD) -> Iterator[tuple[T, R]]:
    """(item, fn(item)) for each of `items`, in their order, computed by `workers` threads with at
    most workers x (1 + ahead) items in flight (the input is read lazily). One worker: no thread at
    all. An exception in `fn` is raised here, at its item; the items after it are not started
    once the caller stops iterating."""
    if workers <= 1:
        for item in items:
            yield item, fn(item)
        return
    limit = workers * (1 + max(0, ahead))
    pending: deque[tuple[T, Future[R]]] = deque()
    source = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crisislens-worker") as pool:
        try:
            for item in source:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= limit:
                    first, future = pending.popleft()
                    yield first, future.result()
            while pending:
                first, future = pending.popleft()
                yield first, future.result()
        finally:
            # stopped early (interrupt, error, a closed generator): drop what has not started
            for _, future in pending:
                future.cancel()


__all__ = ["AHEAD", "Parallelism", "choose", "cores", "for_backend", "in_order"]
