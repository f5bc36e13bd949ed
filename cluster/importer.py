"""A shard folder into a triage store (`crisislens store import DIR --store X.sqlite`): the analyst
opens the store in `crisislens tui` and reviews the urgent part of a million-post run.

Rows go in through the store's own rules, as a run on one machine writes them: a window of posts
at a time is matched against the store (`runtime.store.windows`: a post already stored with the
same content is skipped, so importing twice adds nothing; a different post with a stored id
is stored as `ID#2`), then written one transaction a window. `--label` and `--top N` (the N most
urgent by the app's priority, read from the shards' `priority` column first) keep the store to
what the analyst will read. The shards' errors come along, with file and line.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

import pyarrow.compute as pc

from crisislens.cluster.shards import ERRORS, PREDICTIONS, RunInfo, ShardError, from_row, read_table, shard_files
from crisislens.runtime.schema import Post, Prediction
from crisislens.runtime.store import TriageStore
from crisislens.runtime.store.windows import Tally, windows

WINDOW = 2000  # posts matched and written at a time


@dataclass
class ImportResult:
    shards: int
    imported: int
    skipped: int  # already in the store with the same content
    errors: int
    renamed: list[tuple[str, str, str]]


def _threshold(paths: Sequence[Path], top: int, labels: set[str] | None) -> float:
    """The priority of the `top`-th most urgent post (reading only the label and priority columns)."""
    best: list[float] = []
    for path in paths:
        table = read_table(path, ["label", "priority"])
        if labels:
            table = table.filter(pc.is_in(table["label"], value_set=_array(labels)))
        for value in table["priority"].to_pylist():
            if len(best) < top:
                heapq.heappush(best, value)
            elif value > best[0]:
                heapq.heapreplace(best, value)
    return best[0] if len(best) >= top else float("-inf")


def _array(values: set[str]) -> object:
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())


def _selected(paths: Sequence[Path], labels: set[str] | None, floor: float) -> Iterator[tuple[Post, Prediction]]:
    for path in paths:
        table = read_table(path)
        mask = pc.greater_equal(table["priority"], floor)
        if labels:
            mask = pc.and_(mask, pc.is_in(table["label"], value_set=_array(labels)))
        for row in table.filter(mask).to_pylist():
            yield from_row(row)


def import_shards(
    folder: Path, store: TriageStore, *, labels: Sequence[str] | None = None, top: int | None = None
) -> ImportResult:
    """Bring the shards under `folder` into `store` (see the module)."""
    info = RunInfo.read(folder)
    paths = shard_files(folder, PREDICTIONS)
    if info is None or not paths and not shard_files(folder, ERRORS):
        raise ShardError(f"{folder}: no shards here (expected run.json and {PREDICTIONS}/*.parquet)")
    wanted = set(labels) if labels else None
    floor = _threshold(paths, top, wanted) if top else float("-inf")
    pairs = _selected(paths, wanted, floor)
    if top:
        pairs = islice(pairs, top)  # ties at the threshold: the first met, in shard order
    # A window's posts are matched back to their predictions by input id and origin (FILE:LINE,
    # unique across inputs): a post stored under a new id keeps its origin.
    pred_of: dict[tuple[str, str | None], Prediction] = {}

    def posts() -> Iterator[Post]:
        for post, pred in pairs:
            pred_of[(post.id, post.origin)] = pred
            yield post

    tally = Tally()
    imported = 0
    store.set_meta("bundle_sha256", info.bundle_sha256)
    store.set_meta("variant", info.variant)
    store.set_meta("classes", info.classes)
    for window in windows(posts(), store.identities(), WINDOW, tally):
        items = []
        for post in window.posts:
            pred = pred_of[(window.who[post.id].input_id, post.origin)]
            items.append((post, pred if pred.post_id == post.id else replace(pred, post_id=post.id)))
        who = [window.who[p.id] for p in window.posts]
        store.write_batch(items, info.bundle_sha256, info.variant, (), who, window.replacing)
        imported += len(items)
        pred_of.clear()
    errors = _import_errors(folder, store, info)
    return ImportResult(len(paths), imported, tally.skipped, errors, tally.renamed)


def _import_errors(folder: Path, store: TriageStore, info: RunInfo) -> int:
    """The shards' problems into the store's errors (each stored once, however often imported)."""
    count = 0
    for path in shard_files(folder, ERRORS):
        rows = read_table(path).to_pylist()
        problems = [
            (r["post_id"], f"{r['file']}:{r['line']}" if r["line"] is not None else r["file"], r["message"])
            for r in rows
        ]
        if problems:
            store.write_batch([], info.bundle_sha256, info.variant, problems)
            count += len(problems)
    return count


__all__ = ["WINDOW", "ImportResult", "import_shards"]
