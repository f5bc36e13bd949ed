"""The run loop's input in bounded windows: posts are read, matched against the store and triaged a
window at a time, so a run holds a window of posts, not the whole input, and its memory does not
grow with the number of posts: the identities it matches against (the store's, and those planned
in earlier windows) are kept in a private temporary SQLite database (`readers.seen.scratch_db`),
copied from the store when the run starts, and looked up a window at a time.

Each window is matched by `identity.plan` against the identities stored before the run and those
planned in earlier windows, so a window sees exactly what one plan over the whole input would.
Only the identities that can matter to a window are handed to `plan`: those stored under the
window's input ids, and the ids a renamed post could take (`id#2`, `id#3`, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

from crisislens.runtime.readers import ReadProblem
from crisislens.runtime.readers.seen import as_bytes, as_text, scratch_db
from crisislens.runtime.schema import Post
from crisislens.runtime.store.identity import Identity, plan

# Posts per window, in batches: bucketing sorts within a window, so a window this size keeps the
# batches as full and as evenly padded as sorting the whole input did.
WINDOW_BATCHES = 50
_TAKEN = "\0taken"  # the input id of a placeholder that only marks a stored id as in use


@dataclass
class Window:
    """One window's work: the posts to triage (under the ids they are stored as), who each is,
    the stored rows they replace, and the readers' errors met while reading the window."""

    posts: list[Post]
    who: dict[str, Identity]
    replacing: set[str]
    read_errors: list[tuple[str | None, str, str]]


@dataclass
class Tally:
    """What the windows read so far (the run's result is made from it)."""

    read: int = 0  # posts read
    skipped: int = 0  # already stored with this content
    renamed: list[tuple[str, str, str]] = field(default_factory=list)


class _Known:
    """The identities of the store and of earlier windows, in arrival order, on disk (see the
    module docstring), indexed for `relevant`."""

    def __init__(self, stored: Iterable[Identity]):
        self.db = scratch_db()
        self.db.execute("CREATE TABLE known (post_id BLOB, input_id BLOB, place BLOB, fingerprint BLOB)")
        self.add(stored)
        self.db.execute("CREATE INDEX known_input ON known(input_id)")
        self.db.execute("CREATE INDEX known_post ON known(post_id)")

    def add(self, identities: Iterable[Identity]) -> None:
        self.db.executemany(
            "INSERT INTO known VALUES (?, ?, ?, ?)",
            (
                (as_bytes(i.post_id), as_bytes(i.input_id), as_bytes(i.place), as_bytes(i.fingerprint))
                for i in identities
            ),
        )

    def _taken(self, post_id: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM known WHERE post_id = ? LIMIT 1", (as_bytes(post_id),)).fetchone()
            is not None
        )

    def relevant(self, posts: Sequence[Post]) -> list[Identity]:
        out: list[Identity] = []
        for pid in dict.fromkeys(p.id for p in posts):
            rows = self.db.execute(
                "SELECT post_id, input_id, place, fingerprint FROM known WHERE input_id = ? ORDER BY rowid",
                (as_bytes(pid),),
            )
            out.extend(Identity(as_text(a) or "", as_text(b) or "", as_text(c), as_text(d)) for a, b, c, d in rows)
            n = 1
            while self._taken(taken := pid if n == 1 else f"{pid}#{n}"):
                out.append(Identity(taken, _TAKEN, None, None))  # only says: this id is in use
                n += 1
        return out

    def close(self) -> None:
        self.db.close()


def read_error(problem: ReadProblem) -> tuple[str | None, str, str]:
    """A reader's error as the store records it: (post id, FILE[:LINE], message)."""
    return problem.post_id, f"{problem.file}:{problem.line}" if problem.line else problem.file, problem.message


def windows(
    items: Iterable[Post | ReadProblem], stored: Iterable[Identity], size: int, tally: Tally
) -> Iterator[Window]:
    """`items` (posts, and read problems as `iter_posts` yields them) in windows of `size` posts,
    each planned against `stored` and the earlier windows; counts go to `tally`."""
    known = _Known(stored)
    source = iter(items)
    try:
        while True:
            chunk = list(islice(source, max(1, size)))
            if not chunk:
                return
            posts = [p for p in chunk if isinstance(p, Post)]
            errors = [read_error(p) for p in chunk if isinstance(p, ReadProblem) and p.severity == "error"]
            todo = plan(posts, known.relevant(posts))
            known.add(todo.identities)
            tally.read += len(posts)
            tally.skipped += todo.skipped
            tally.renamed.extend(todo.renamed)
            yield Window(todo.pending, {i.post_id: i for i in todo.identities}, todo.replacing, errors)
    finally:
        known.close()


__all__ = ["WINDOW_BATCHES", "Tally", "Window", "read_error", "windows"]
