"""`crisislens triage`'s run loop: posts in batches through the engine into the store, resumable,
with a progress line; a post the model saw nothing of is stored as an error, not a label.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from crisislens.runtime.engine import Engine
from crisislens.runtime.parallel import in_order
from crisislens.runtime.schema import Post, Prediction
from crisislens.runtime.store.identity import plan
from crisislens.runtime.store.sqlite import NOTHING_TO_CLASSIFY, PREDICTION_FAILED, TriageStore


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
    posts: Sequence[Post],
    store: TriageStore,
    *,
    batch_size: int = 32,
    classes: Sequence[str] | None = None,
    read_errors: Sequence[tuple[str | None, str, str]] = (),
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int = 1,
) -> TriageResult:
    """Predict every post not yet in `store`, one transaction per batch. `on_batch(done, total)`
    is called once before the first batch (done 0) and after each stored batch; `should_stop()` is
    asked before each batch (a stopped run is `interrupted` and resumes like one). `workers`
    batches are predicted at once (`crisislens.runtime.parallel`); the store is written here only."""
    started = time.perf_counter()
    # A post is stored once per identity (id, input, content: `store.identity`), never skipped for its id alone.
    todo = plan(posts, store.identities())
    pending, skipped = todo.pending, todo.skipped
    who = {ident.post_id: ident for ident in todo.identities}
    sha, variant = engine.bundle.sha256, engine.variant.name
    store.set_meta("bundle_sha256", sha)
    store.set_meta("variant", variant)
    store.set_meta("classes", list(classes) if classes else None)
    if read_errors:
        store.write_batch([], sha, variant, read_errors)
    bar = Progress(len(pending)) if progress else None
    if on_batch is not None:
        on_batch(0, len(pending))
    predicted = errors = 0
    problems = list(read_errors)
    interrupted = False
    stopped: list[bool] = []
    try:
        # Workers predict, this thread alone writes the store, batch by batch in input order.
        batches = _until_stopped(bucketed(pending, batch_size), should_stop, stopped)
        for batch, (items, errs) in in_order(lambda b: _predict_batch(engine, b, classes), batches, workers):
            store.write_batch(items, sha, variant, errs, [who[post.id] for post, _ in items], todo.replacing)
            predicted += len(items)
            errors += len(errs)
            problems.extend(errs)
            if bar:
                bar.update(len(batch))
            if on_batch is not None:
                on_batch(predicted + errors, len(pending))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar:
            bar.update(0, force=True)
            bar.close()
    interrupted = interrupted or bool(stopped)
    return TriageResult(
        str(store.path),
        len(posts),
        skipped,
        predicted,
        errors + len(read_errors),
        round(time.perf_counter() - started, 2),
        interrupted,
        problems,
        todo.renamed,
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


def _until_stopped(
    batches: Iterable[list[Post]], should_stop: Callable[[], bool] | None, stopped: list[bool]
) -> Iterator[list[Post]]:
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
