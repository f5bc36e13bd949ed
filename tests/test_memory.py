"""A run's memory does not grow with the number of posts: the readers' duplicate-id check and the
run's identities live in temporary SQLite files, not in Python objects (issue 29). The whole
process is measured by `crisislens bench` (peak RSS of `crisislens triage` on 1k to 100k posts);
these tests hold the Python side: what a read and the windows keep between posts."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from crisislens.runtime.readers import ReadProblem, iter_posts
from crisislens.runtime.readers.seen import SeenIds
from crisislens.runtime.schema import Post
from crisislens.runtime.store.identity import Identity, fingerprint, place_of
from crisislens.runtime.store.windows import Tally, windows


def _write(path: Path, n: int) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"post-{i}", "text": f"flood water rising near bridge {i}"}) + "\n")
    return path


def _python_bytes_after(posts: int, tmp: Path) -> int:
    """Python memory still held by a read + windowed plan of `posts` posts when its last window
    is out (the windows hold one window at a time)."""
    src = _write(tmp / f"posts-{posts}.jsonl", posts)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tally = Tally()
        held = 0
        for window in windows(iter_posts(src), [], 200, tally):
            held = tracemalloc.get_traced_memory()[0] - base
            del window
        assert tally.read == posts
        return held
    finally:
        tracemalloc.stop()


def test_a_read_and_its_windows_hold_no_record_per_post(tmp_path):
    small, large = _python_bytes_after(1_000, tmp_path), _python_bytes_after(10_000, tmp_path)
    # An in-memory record per post (a dict of seen ids, a list of identities) costs hundreds of
    # bytes a post: 9,000 more posts would add megabytes.
    assert large - small < 300_000, (small, large)


def test_duplicate_ids_are_still_found_across_a_long_read(tmp_path):
    src = _write(tmp_path / "posts.jsonl", 3_000)
    with src.open("a") as f:
        f.write(json.dumps({"id": "post-17", "text": "again"}) + "\n")
    problems = [p for p in iter_posts(src) if isinstance(p, ReadProblem)]
    assert [(p.line, p.message) for p in problems] == [(3001, "duplicate id 'post-17' (first seen at line 18)")]


def test_seen_ids_keep_ids_and_file_names_that_are_not_utf8():
    seen = SeenIds()
    odd = "caf\udce9"  # a byte that was not UTF-8, kept by Python as a lone surrogate
    assert seen.first(odd) is None
    seen.add(odd, "/data/\udcff.jsonl", 4)
    seen.add(odd, "/elsewhere.jsonl", 9)  # the first stays
    assert seen.first(odd) == ("/data/\udcff.jsonl", 4)
    assert seen.first("cafe") is None


def test_windows_match_against_stored_identities_given_as_a_stream(tmp_path):
    """The store hands its identities over as an iterator (never a list in memory): the windows
    read it once and still skip, replace and rename as one plan would."""
    origin = f"{tmp_path}/a.jsonl"
    posts = [Post(id=f"p{i}", text=f"text {i}", origin=f"{origin}:{i + 1}") for i in range(10)]
    stored = iter(
        [
            Identity("p1", "p1", place_of(posts[1]), fingerprint(posts[1])),  # same content: skipped
            Identity("p2", "p2", place_of(posts[2]), "changed"),  # same input, other content: replaced
            Identity("p3", "p3", "/elsewhere", "x"),  # another input: renamed p3#2
        ]
    )
    tally = Tally()
    got = list(windows(iter(posts), stored, 4, tally))
    ids = [p.id for w in got for p in w.posts]
    assert "p1" not in ids and "p2" in ids and "p3#2" in ids and tally.skipped == 1
    assert set().union(*(w.replacing for w in got)) == {"p2"}
    assert tally.renamed == [("p3", "p3#2", place_of(posts[3]))]
