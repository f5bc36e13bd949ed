"""Which stored prediction a post read now is: a post's identity is its id, the input it came from
and its content, never its id alone.

A run compares each post with the predictions stored under the same input id:

- same content (text and photo bytes) -> already triaged, skipped (a resumed run);
- same input (file, or folder of ID.txt + ID.jpg pairs), other content -> the post changed where
  it lies (a photo synced after its text, a rewritten row): triaged again, its row replaced;
- another input, other content -> a different post that happens to share the id (`p01.txt` in two
  folders): triaged under the id with `#2` (`#3`, ...) appended, and reported, never skipped.

Rows stored before identities were recorded match any content (they are skipped, as before).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from crisislens.runtime.schema import Post

_LINE = re.compile(r":\d+$")


@dataclass(frozen=True)
class Identity:
    """Who a stored prediction is: the id it is stored under, the id its input gave it, the input
    it came from and a digest of its content. `place`/`fingerprint` None: stored before these
    were recorded."""

    post_id: str
    input_id: str
    place: str | None
    fingerprint: str | None


def place_of(post: Post) -> str:
    """The input a post came from: its file (`FILE:LINE` origins), or the folder of a folder post."""
    origin = post.origin or post.source or ""
    if _LINE.search(origin):
        where = Path(_LINE.sub("", origin))
    elif origin:
        where = Path(origin).parent
    else:
        return ""
    try:
        return str(where.resolve())
    except OSError:
        return str(where)


@lru_cache(maxsize=65536)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(post: Post) -> str:
    """sha256 over the post's text and its photo's bytes (a missing photo counts by its name)."""
    digest = hashlib.sha256((post.text or "").encode("utf-8", "surrogatepass"))
    if post.image is not None:
        try:
            st = Path(post.image).stat()
            photo = _file_digest(str(post.image), st.st_size, st.st_mtime_ns)
        except OSError:
            photo = "missing:" + Path(post.image).name
        digest.update(b"\x00" + photo.encode())
    return digest.hexdigest()


@dataclass
class Plan:
    """What a run does with the posts it read."""

    pending: list[Post]  # to triage, each under the id it is stored as
    identities: list[Identity]  # one per pending post, same order
    replacing: set[str]  # stored ids whose row a pending post replaces
    skipped: int  # already stored with this content
    renamed: list[tuple[str, str, str]]  # (input id, stored id, place) of posts sharing a stored id


def plan(posts: Iterable[Post], stored: Sequence[Identity]) -> Plan:
    """Match `posts` against the `stored` identities (see the module docstring)."""
    by_input: dict[str, list[Identity]] = {}
    for ident in stored:
        by_input.setdefault(ident.input_id, []).append(ident)
    taken = {ident.post_id for ident in stored}
    out = Plan([], [], set(), 0, [])
    for post in posts:
        place, digest = place_of(post), fingerprint(post)
        known = by_input.get(post.id, [])
        if any(k.fingerprint is None or k.fingerprint == digest for k in known):
            out.skipped += 1
            continue
        same_place = next((k for k in known if k.place == place), None)
        if same_place is not None:
            stored_id = same_place.post_id
            out.replacing.add(stored_id)
        else:
            stored_id = _free_id(post.id, taken)
            if stored_id != post.id:
                out.renamed.append((post.id, stored_id, place))
        ident = Identity(stored_id, post.id, place, digest)
        taken.add(stored_id)
        by_input.setdefault(post.id, []).append(ident)
        out.pending.append(post if stored_id == post.id else replace(post, id=stored_id))
        out.identities.append(ident)
    return out


def _free_id(post_id: str, taken: Mapping[str, object] | set[str]) -> str:
    if post_id not in taken:
        return post_id
    n = 2
    while f"{post_id}#{n}" in taken:
        n += 1
    return f"{post_id}#{n}"
