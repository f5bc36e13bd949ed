"""The SQLite triage store itself (`TriageStore`): opening, migrating, writing predictions and
errors, reading them back for the app and the exports. What the store promises (WAL, one
transaction a batch, resume, identity) is the package's docstring: see `crisislens.runtime.store`.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.labels import get_label
from crisislens.runtime.schema import Post, Prediction
from crisislens.runtime.store.identity import Identity
from crisislens.runtime.store.review import ReviewItem
from crisislens.runtime.store.tables import MIGRATIONS, PROVENANCE, SCHEMA

# meta key: the folders a run read images from; export-feedback copies photos from inside them only
IMAGE_ROOTS = "image_roots"
# The errors a run gives a post it read (not the reader's): a later run that predicts the post
# supersedes them (`TriageStore.errors` leaves them out; the table keeps them).
PREDICTION_FAILED = "prediction failed"
NOTHING_TO_CLASSIFY = "nothing to classify"
_RUN_ERRORS = (PREDICTION_FAILED, NOTHING_TO_CLASSIFY)


class StoreError(CrisisLensError, RuntimeError):
    pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


MIN_FREE_BYTES = 4 * 1024 * 1024  # a run refuses to start on a disk with less room than this


def _write_error(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    full = "full" in str(exc)
    hint = ": free some space, then run the same command again to resume" if full else ""
    return StoreError(f"{path}: cannot write the store ({exc}){hint}")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """`rows` with every string writable as UTF-8: a name that is not UTF-8 (Python keeps its bad
    bytes as lone surrogates) is stored with U+FFFD for each, instead of aborting the run."""
    return [tuple(_SURROGATE.sub("\ufffd", v) if isinstance(v, str) else v for v in row) for row in rows]


def _open_readonly(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise StoreError(f"{path}: no such triage store")
    uri = path.resolve().as_uri()
    # mode=ro reads a store beside others' writes; a WAL store on read-only media cannot make its
    # -shm file, and is read as immutable instead.
    for query in ("mode=ro", "immutable=1"):
        try:
            db = sqlite3.connect(f"{uri}?{query}", uri=True, timeout=30, isolation_level=None)
            db.execute("SELECT COUNT(*) FROM predictions").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            problem = exc
    raise StoreError(f"{path}: not a usable triage store ({problem})")


class TriageStore:
    """The SQLite file a triage run writes and the TUI reads."""

    def __init__(self, path: Path | str, readonly: bool = False):
        """Open the store, created when missing; `readonly` opens an existing one for reading only
        (no WAL switch, no table created, nothing written): read-only commands and media."""
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            self.db = _open_readonly(self.path)
            return
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(
                "PRAGMA synchronous=NORMAL"
            )  # WAL + NORMAL: durable at each commit but the last on power loss
            self.db.executescript(SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable triage store ({exc})") from None

    def _migrate(self) -> None:
        """Add the columns an older store lacks, one process at a time: under the write lock a
        second process that opens the store at the same moment sees the columns the first added."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(predictions)")}
            for column, sql in MIGRATIONS.items():
                if column not in columns:
                    self.db.execute(sql)
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # SQLite may have rolled back itself (a full disk)
                self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    def check_writable(self) -> None:
        """Raise `StoreError` now, before any work, if a run could not write the store: a
        read-only file or medium, a locked store, a disk without room."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("ROLLBACK")
        except sqlite3.DatabaseError as exc:
            raise _write_error(self.path, exc) from None
        try:
            free = shutil.disk_usage(self.path.resolve().parent).free
        except OSError:
            return
        if free < MIN_FREE_BYTES:
            raise StoreError(
                f"{self.path}: cannot write the store: the disk is full ({free:,} bytes free); free some space"
            )

    def _rollback(self) -> None:
        # SQLite ends the transaction itself on some errors (a full disk): a second ROLLBACK would
        # hide the real cause behind "cannot rollback - no transaction is active".
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def __enter__(self) -> TriageStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_meta(self, key: str, value: Any) -> None:
        try:
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))
        except sqlite3.DatabaseError as exc:
            raise _write_error(self.path, exc) from None

    def add_image_roots(self, roots: Sequence[Path]) -> None:
        """Record the folders a run reads images from (`IMAGE_ROOTS`), beside earlier runs'."""
        known = self.meta().get(IMAGE_ROOTS) or []
        self.set_meta(IMAGE_ROOTS, sorted({*known, *(str(Path(r).resolve()) for r in roots)}))

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def write_batch(
        self,
        items: Sequence[tuple[Post, Prediction]],
        bundle_sha256: str,
        variant: str,
        errors: Sequence[tuple[str | None, str, str]] = (),
        identities: Sequence[Identity] = (),
        replacing: Collection[str] = (),
    ) -> None:
        """One transaction: all of `items` and `errors` are stored, or none. `identities` are
        recorded with them; the rows of `replacing` (posts that changed in their input) are
        replaced by the new predictions."""
        now = _now()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            gone = [(it[0].id,) for it in items if it[0].id in replacing]
            self.db.executemany("DELETE FROM predictions WHERE post_id = ?", gone)
            self.db.executemany(
                "INSERT OR REPLACE INTO identities(post_id, input_id, place, fingerprint) VALUES (?, ?, ?, ?)",
                _storable([(i.post_id, i.input_id, i.place, i.fingerprint) for i in identities]),
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO predictions(post_id, label, confidence, prediction, text, image, source, "
                "created_at, gold_label, latency_ms, bundle_sha256, variant, stored_at, origin, platform, author, "
                "original_text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _storable(
                    [
                        (
                            post.id,
                            pred.label,
                            pred.confidence,
                            pred.to_json(),
                            post.text,
                            str(post.image) if post.image else None,
                            post.source,
                            post.created_at,
                            post.label,
                            sum(pred.timings.values()),
                            bundle_sha256,
                            variant,
                            now,
                            post.origin,
                            post.platform,
                            post.author,
                            post.original_text,
                        )
                        for post, pred in items
                    ]
                ),
            )
            # A run again over the same inputs (a resume, a watched folder) meets the same problems.
            self.db.executemany(
                "INSERT INTO errors(post_id, where_, message, stored_at) SELECT ?, ?, ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM errors WHERE post_id IS ? AND where_ IS ? "
                "AND message = ?)",
                _storable([(pid, where, msg, now, pid, where, msg) for pid, where, msg in errors]),
            )
            self.db.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlite3.DatabaseError):
                raise _write_error(self.path, exc) from None
            raise

    def identities(self) -> Iterator[Identity]:
        """Who each stored prediction is (rows stored before identities were kept: id only), read
        from the store as they are consumed."""
        rows = self.db.execute(
            "SELECT p.post_id, i.input_id, i.place, i.fingerprint FROM predictions p "
            "LEFT JOIN identities i ON i.post_id = p.post_id ORDER BY p.rowid"
        )
        for pid, input_id, place, fp in rows:
            yield Identity(pid, input_id or pid, place, fp)

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    def rows(self) -> Iterable[dict[str, Any]]:
        cur = self.db.execute(
            "SELECT post_id, text, image, source, created_at, gold_label, prediction, reviewed, "
            "review_label, bundle_sha256, variant FROM predictions ORDER BY rowid"
        )
        for pid, text, image, source, created, gold, pred, reviewed, review, sha, variant in cur:
            yield {
                "post_id": pid,
                "text": text,
                "image": image,
                "source": source,
                "created_at": created,
                "gold_label": gold,
                "prediction": json.loads(pred),
                "reviewed": bool(reviewed),
                "review_label": review,
                "bundle_sha256": sha,
                "variant": variant,
            }

    def errors(self) -> list[dict[str, Any]]:
        """The input rows and posts not triaged, each problem once, oldest first. A run's error for
        a post (`PREDICTION_FAILED`, `NOTHING_TO_CLASSIFY`) is left out once a later run
        predicted that post."""
        run_error = " OR ".join("substr(message, 1, ?) = ?" for _ in _RUN_ERRORS)
        sql = (
            "SELECT post_id, where_, message FROM errors "
            f"WHERE NOT (({run_error}) AND post_id IN (SELECT post_id FROM predictions)) "
            "GROUP BY post_id, where_, message ORDER BY MIN(rowid)"
        )
        args = [x for prefix in _RUN_ERRORS for x in (len(prefix), prefix)]
        return [{"post_id": p, "where": w, "message": m} for p, w, m in self.db.execute(sql, args)]

    # -------------------------------------------------------------------------- review

    _ITEM_SQL = (
        "SELECT rowid, post_id, prediction, text, image, source, created_at, gold_label, latency_ms, "
        "variant, reviewed, review_label, flagged, {where} FROM predictions"
    )

    def _item_sql(self) -> str:
        """A store opened read-only runs no migration: the columns it lacks read as NULL."""
        have = {row[1] for row in self.db.execute("PRAGMA table_info(predictions)")}
        return self._ITEM_SQL.format(where=", ".join(c if c in have else f"NULL AS {c}" for c in PROVENANCE))

    @staticmethod
    def _item(row: tuple[Any, ...]) -> ReviewItem:
        seq, pid, pred, text, image, source, created, gold, latency, variant, reviewed, review, flagged, *where = row
        return ReviewItem(
            post_id=pid,
            prediction=Prediction.from_json(pred),
            text=text,
            image=image,
            source=source,
            created_at=created,
            gold_label=gold,
            latency_ms=latency,
            variant=variant,
            reviewed=bool(reviewed),
            review_label=review,
            flagged=bool(flagged),
            seq=int(seq),
            origin=where[0],
            platform=where[1],
            author=where[2],
            original_text=where[3],
        )

    def items(self, after: int = 0) -> list[ReviewItem]:
        """Every stored prediction (those stored after arrival number `after`), in arrival order."""
        return [self._item(r) for r in self.db.execute(self._item_sql() + " WHERE rowid > ? ORDER BY rowid", (after,))]

    def item(self, post_id: str) -> ReviewItem:
        row = self.db.execute(self._item_sql() + " WHERE post_id = ?", (post_id,)).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: no prediction for post {post_id!r}")
        return self._item(row)

    def _review(
        self,
        post_id: str,
        action: str,
        sql: str,
        args: tuple[Any, ...],
        label: str | None = None,
        note: str | None = None,
    ) -> ReviewItem:
        """Change a prediction's review state and log the action with its time, in one transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT label FROM predictions WHERE post_id = ?", (post_id,)).fetchone()
            if row is None:
                raise KeyError(f"{self.path}: no prediction for post {post_id!r}")
            self.db.execute(f"UPDATE predictions SET {sql} WHERE post_id = ?", (*args, post_id))
            self.db.execute(
                "INSERT INTO feedback(post_id, action, label, model_label, note, at) VALUES (?, ?, ?, ?, ?, ?)",
                (post_id, action, label, row[0], note, _now()),
            )
            self.db.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlite3.DatabaseError):
                raise _write_error(self.path, exc) from None
            raise
        return self.item(post_id)

    def set_reviewed(self, post_id: str, reviewed: bool = True) -> ReviewItem:
        return self._review(post_id, "reviewed" if reviewed else "unreviewed", "reviewed = ?", (int(reviewed),))

    def set_flagged(self, post_id: str, flagged: bool = True) -> ReviewItem:
        return self._review(post_id, "flag" if flagged else "unflag", "flagged = ?", (int(flagged),))

    def correct_label(self, post_id: str, label: str, note: str | None = None) -> ReviewItem:
        """Record the responder's label (the model's own label = confirmed); it counts as reviewed."""
        get_label(label)
        return self._review(post_id, "label", "review_label = ?, reviewed = 1", (label,), label=label, note=note)

    def feedback(self, post_id: str | None = None) -> list[Feedback]:
        sql = "SELECT post_id, action, label, model_label, note, at FROM feedback"
        rows = self.db.execute(
            sql + (" WHERE post_id = ? ORDER BY id" if post_id else " ORDER BY id"), (post_id,) if post_id else ()
        )
        return [Feedback(*r) for r in rows]


@dataclass(frozen=True)
class Feedback:
    """One review action, as logged."""

    post_id: str
    action: str
    label: str | None
    model_label: str
    note: str | None
    at: str
