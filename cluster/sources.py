"""The inputs of a cluster run, read in parallel: one read task per input file (a folder of
Parquet files is one task per file), each with the project's readers, so a post is read on the
cluster exactly as `crisislens triage` reads it on one machine.

JSON lines, CSV/TSV, folders of ID.txt + ID.jpg pairs and the chat exports go through
`runtime.readers.iter_posts`. A Parquet file is read row by row through the JSONL reader's own
row rules (`parquet`): its columns are the JSON fields (id | post_id | tweet_id, text | tweet_text,
image | image_path, created_at, source, label, or the ones --id-column etc. name), and a row is
named FILE:ROW in problems, ROW counted from 1.

A read task cuts its input into shards of `shard_size` posts (`shards`), and leaves out the rows
of the shards a previous run already wrote. What it emits is one row per post or problem:
`shard`, `total` (rows of that shard, posts and problems), `seq` (its place in the shard) and
the post or the problem as JSON.

Read per input, the check that a post id is used once per read holds within each input; two
inputs that share an id both reach the shards, and `crisislens store import` stores the second
under `ID#2`, as a run on one machine does for a post id met in another folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from crisislens.cluster.parquet import PARQUET_SUFFIX, iter_parquet
from crisislens.cluster.shards import shard_name, shard_prefix
from crisislens.runtime.readers import ReadProblem, iter_posts
from crisislens.runtime.schema import Post

READ_ROW_KEYS = ("shard", "total", "seq", "post", "problem")


def input_units(inputs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One read task per input: {"path": absolute path, "kind": "parquet" | "posts", "prefix"}.
    Paths are made absolute here, on the driver, so that every worker reads the same file."""
    units: list[dict[str, Any]] = []
    for given in inputs:
        path = Path(given).absolute()
        parquet_files = sorted(path.glob(f"*{PARQUET_SUFFIX}")) if path.is_dir() else []
        if parquet_files:  # a Parquet dataset folder: each file is an input of its own
            units += [{"path": str(p), "kind": "parquet", "prefix": shard_prefix(p)} for p in parquet_files]
        else:
            kind = "parquet" if path.suffix.lower() == PARQUET_SUFFIX else "posts"
            units.append({"path": str(path), "kind": kind, "prefix": shard_prefix(path)})
    return units


def read_items(
    unit: dict[str, Any], image_root: str | None, columns: dict[str, str] | None
) -> Iterator[Post | ReadProblem]:
    """The posts and problems of one input, in its reader's order."""
    if unit["kind"] == "parquet":
        yield from iter_parquet(Path(unit["path"]), image_root=image_root, columns=columns)
    else:
        yield from iter_posts([unit["path"]], image_root=image_root, columns=columns)


def shards(items: Iterable[Post | ReadProblem], size: int) -> Iterator[list[Post | ReadProblem]]:
    """`items` cut after every `size` posts; the problems go with the posts around them (only
    problems that are errors: a warning is in its post's warnings already)."""
    part: list[Post | ReadProblem] = []
    posts = 0
    for item in items:
        if isinstance(item, ReadProblem) and item.severity != "error":
            continue
        part.append(item)
        if isinstance(item, Post):
            posts += 1
            if posts == size:
                yield part
                part, posts = [], 0
    if part:
        yield part


def problem_json(problem: ReadProblem) -> str:
    where = f"{problem.file}:{problem.line}" if problem.line else problem.file
    return json.dumps([problem.post_id, where, problem.message])


def read_unit(
    unit: dict[str, Any],
    *,
    shard_size: int,
    done: frozenset[str] | set[str],
    image_root: str | None = None,
    columns: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The rows one read task emits for `unit`, without the shards in `done` (see the module)."""
    for part, items in enumerate(shards(read_items(unit, image_root, columns), shard_size)):
        name = shard_name(unit["prefix"], part)
        if name in done:
            continue
        for seq, item in enumerate(items):
            # ensure_ascii: a name with undecodable bytes (lone surrogates) still travels as UTF-8
            post = json.dumps(item.to_dict()) if isinstance(item, Post) else None
            problem = problem_json(item) if isinstance(item, ReadProblem) else None
            yield {"shard": name, "total": len(items), "seq": seq, "post": post, "problem": problem}


__all__ = ["READ_ROW_KEYS", "input_units", "problem_json", "read_items", "read_unit", "shards"]
