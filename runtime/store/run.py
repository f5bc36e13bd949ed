"""`crisislens triage`'s run loop: posts in batches through the engine into the store, resumable,
with a progress line; a post the model saw nothing of is stored as an error, not a label.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, TypeVar

from crisislens.runtime.engine import Engine
from crisislens.runtime.parallel import in_order
from crisislens.runtime.readers import ReadProblem
from crisislens.runtime.schema import Post, Prediction
from crisislens.runtime.store.sqlite import NOTHING_TO_CLASSIFY, PREDICTION_FAILED, TriageStore
from crisislens.runtime.store.windows import WINDOW_BATCHES, Tally, Window, windows

T = TypeVar("T")


@dataclass
class TriageResult:
    store: str
    total: int
    skipped_done: int
    predicted: int
    errors: int
    seconds: float
    interrupted: bool = False
    # (post id, file[:line], message) of every error of this run, the readers' first
    problems: list[tuple[str | None, str, str]] = field(default_factory=list)
    # (input id, stored id, input) of new posts whose id another stored post already had
    renamed: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def posts_per_second(self) -> float:
        return self.predicted / self.seconds if self.seconds > 0 else 0.0


def bucketed(posts: Sequence[Post], batch_size: int, chunk: int = 50) -> list[list[Post]]:
    """Batches of one kind (with / without image) and similar text length, in input order of
    chunks (so progress follows the input), to keep padding and masked patches low."""
    batches: list[list[Post]] = []
    span = batch_size * chunk
    for c in range(0, len(posts), span):
        part = posts[c : c + span]
        for with_image in (False, True):
            group = sorted((p for p in part if (p.image is not None) == with_image), key=lambda p: len(p.text or ""))
            batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return batches


class Progress:
    def __init__(self, total: int, stream: Any = sys.stderr, every: float = 0.5):
        self.total, self.stream, self.every = total, stream, every
        self.started = self.last = time.perf_counter()
        self.done = 0

    def update(self, n: int, force: bool = False) -> None:
        self.done += n
        now = time.perf_counter()
        if not force and now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.started, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        print(
            f"\rtriage [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"{rate:.1f} posts/s ETA {eta:.0f} s",
            end="",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        print(file=self.stream, flush=True)


def triage(
    engine: Engine,
    posts: Iterable[Post | ReadProblem],
    store: TriageStore,
    *,
    batch_size: int = 32,
    classes: Sequence[str] | None = None,
    read_errors: Sequence[tuple[str | None, str, str]] = (),
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int = 1,
    total: int | None = None,
) -> TriageResult:
    """Predict every post not yet in `store`, one transaction per batch. `on_batch(done, total)`
    is called once before the first batch (done 0) and after each stored batch; `should_stop()` is
    asked before each batch (a stopped run is `interrupted` and resumes like one). `workers`
    batches are predicted at once (`crisislens.runtime.parallel`); the store is written here only.

    `posts` is read a window at a time (`store.windows`), so it may be a stream (`iter_posts`, whose
    read errors are stored as they come); `total`, the number of posts where the caller knows it,
    sizes the progress bar when `posts` has no length."""
    started = time.perf_counter()
    # A post is stored once per identity (id, input, content: `store.identity`), never skipped for its id alone.
    tally = Tally()
    count = len(posts) if isinstance(posts, Sized) else total
    planned = windows(posts, store.identities(), batch_size * WINDOW_BATCHES, tally)
    first = next(planned, None)  # planned before the first progress call: resumed posts are not counted
    sha, variant = engine.bundle.sha256, engine.variant.name
    store.set_meta("bundle_sha256", sha)
    store.set_meta("variant", variant)
    store.set_meta("classes", list(classes) if classes else None)
    if read_errors:
        store.write_batch([], sha, variant, read_errors)

    def expected() -> int:  # posts to triage: the total less what the windows so far found stored
        return max(0, (count if count is not None else tally.read) - tally.skipped)

    bar = Progress(expected()) if progress else None
    if on_batch is not None:
        on_batch(0, expected())
    predicted = errors = 0
    problems = list(read_errors)
    interrupted = False
    stopped: list[bool] = []
    try:

        def window_batches() -> Iterator[tuple[list[Post], Window]]:
            nonlocal errors
            for window in chain([first] if first else [], planned):
                if window.read_errors:  # read here, on this thread, like every store write
                    store.write_batch([], sha, variant, window.read_errors)
                    problems.extend(window.read_errors)
                    errors += len(window.read_errors)
                if bar:
                    bar.total = expected()
                for batch in bucketed(window.posts, batch_size):
                    yield batch, window

        # Workers predict, this thread alone writes the store, batch by batch in input order.
        batches = _until_stopped(window_batches(), should_stop, stopped)
        for (batch, window), (items, errs) in in_order(
            lambda b: _predict_batch(engine, b[0], classes), batches, workers
        ):
            store.write_batch(items, sha, variant, errs, [window.who[p.id] for p, _ in items], window.replacing)
            predicted += len(items)
            errors += len(errs)
            problems.extend(errs)
            if bar:
                bar.update(len(batch))
            if on_batch is not None:
                on_batch(predicted + errors, expected())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar:
            bar.update(0, force=True)
            bar.close()
    interrupted = interrupted or bool(stopped)
    return TriageResult(
        str(store.path),
        tally.read,
        tally.skipped,
        predicted,
        errors + len(read_errors),
        round(time.perf_counter() - started, 2),
        interrupted,
        problems,
        tally.renamed,
    )


def _predict_batch(
    engine: Engine, batch: list[Post], classes: Sequence[str] | None
) -> tuple[list[tuple[Post, Prediction]], list[tuple[str | None, str, str]]]:
    """(predictions, errors) of one batch, on a worker: a failing batch is retried post by post,
    and the posts that still fail, or that the model saw nothing of, become errors."""
    items: list[tuple[Post, Prediction]] = []
    errs: list[tuple[str | None, str, str]] = []
    try:
        items = list(zip(batch, engine.predict(batch, classes=classes)))
    except Exception:  # one bad batch: retry post by post, record the ones that fail
        for post in batch:
            try:
                items.append((post, engine.predict([post], classes=classes)[0]))
            except Exception as exc:  # noqa: BLE001 - any failure is recorded, never lost
                errs.append((post.id, _where(post), f"{PREDICTION_FAILED}: {type(exc).__name__}: {exc}"))
    items, empty = _with_evidence(items)
    errs.extend(empty)
    return items, errs


def _until_stopped(batches: Iterable[T], should_stop: Callable[[], bool] | None, stopped: list[bool]) -> Iterator[T]:
    """`batches` until `should_stop()` says so (asked before each; `stopped` then gets a True)."""
    for batch in batches:
        if should_stop is not None and should_stop():
            stopped.append(True)
            return
        yield batch


def _with_evidence(
    items: list[tuple[Post, Prediction]],
) -> tuple[list[tuple[Post, Prediction]], list[tuple[str | None, str, str]]]:
    """Split off the posts the model saw nothing of (no word left after cleaning, no usable photo):
    their label would be the model's prior, so they are errors a responder sees, not predictions."""
    kept: list[tuple[Post, Prediction]] = []
    errors: list[tuple[str | None, str, str]] = []
    for post, pred in items:
        if pred.has_evidence:
            kept.append((post, pred))
        else:
            why = "; ".join(pred.input_warnings) or "no input"
            errors.append(
                (post.id, _where(post), f"{NOTHING_TO_CLASSIFY}: no word and no photo reached the model ({why})")
            )
    return kept, errors


def _where(post: Post) -> str:
    return post.origin or post.source or ""
