"""Reading for a run that streams: the posts of the inputs one at a time, with the read's problems
gathered in a `ReadReport` as they go by (the posts themselves are not kept), and a first pass
that only counts the posts, for a progress bar that knows its total.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from crisislens.runtime.readers.reader import iter_posts
from crisislens.runtime.readers.report import ReadProblem, ReadReport
from crisislens.runtime.schema import Post


def count_posts(
    inputs: Iterable[str | Path] | str | Path,
    *,
    image_root: Path | str | None = None,
    columns: dict[str, str] | None = None,
) -> int:
    """How many posts a read of `inputs` gives (one pass; nothing kept in memory)."""
    return sum(isinstance(item, Post) for item in iter_posts(inputs, image_root=image_root, columns=columns))


def gathered(items: Iterable[Post | ReadProblem], report: ReadReport) -> Iterator[Post | ReadProblem]:
    """`items` as they come, each problem also added to `report.problems` (its posts stay empty)."""
    for item in items:
        if isinstance(item, ReadProblem):
            report.problems.append(item)
        yield item


__all__ = ["count_posts", "gathered"]
