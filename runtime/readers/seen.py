"""The ids a read has given its posts so far, and where each was first seen: the duplicate-id check.

Kept in a private temporary SQLite database, not in a Python dict, so a read's memory does not
grow with the number of posts it has read: SQLite holds a bounded page cache and spills the rest
to a temporary file that is deleted when the read ends. Strings are stored as their UTF-8 bytes
(with `surrogatepass`), so an id or a file name that is not valid UTF-8 is kept exactly.
"""

from __future__ import annotations

import sqlite3


def scratch_db() -> sqlite3.Connection:
    """A private temporary SQLite database ("" names none: SQLite makes one on disk, deleted on
    close), for one reader or one run; nothing in it needs to survive a crash."""
    db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    return db


def as_bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8", "surrogatepass")


def as_text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "surrogatepass")


class SeenIds:
    """Post id -> (file, line) of the row that first gave it."""

    def __init__(self) -> None:
        self.db = scratch_db()
        self.db.execute("CREATE TABLE seen (post_id BLOB PRIMARY KEY, file BLOB NOT NULL, line INTEGER) WITHOUT ROWID")

    def first(self, post_id: str) -> tuple[str, int | None] | None:
        """Where `post_id` was first seen, or None for a new id."""
        row = self.db.execute("SELECT file, line FROM seen WHERE post_id = ?", (as_bytes(post_id),)).fetchone()
        return None if row is None else (as_text(row[0]) or "", row[1])

    def add(self, post_id: str, file: str, line: int | None) -> None:
        """Record `post_id` as first seen at `file`:`line` (a second add of an id keeps the first)."""
        self.db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)", (as_bytes(post_id), as_bytes(file), line))


__all__ = ["SeenIds", "as_bytes", "as_text", "scratch_db"]
