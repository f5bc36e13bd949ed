"""`crisislens triage`: predictions for folders/files of cached posts, into a SQLite store that
survives Ctrl-C and kill -9.

- The store is SQLite in WAL mode; each batch of predictions is one transaction, so an
  interrupted run loses at most the batch in flight and never leaves a half-written row.
- Re-running with the same store resumes: posts already stored (by post id) are skipped.
- A post that cannot be predicted at all (it should not happen: unusable images and texts are
  warnings) is stored in `errors` with the reason, never silently dropped; rows the readers
  reject are stored there too, with file and line.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crisislens.runtime.schema import Post, Prediction

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
    post_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    prediction TEXT NOT NULL,          -- Prediction.to_json(): probabilities, rationales, warnings
    text TEXT,
    image TEXT,
    source TEXT,
    created_at TEXT,
    gold_label TEXT,
    latency_ms REAL,
    bundle_sha256 TEXT NOT NULL,
    variant TEXT NOT NULL,
    reviewed INTEGER NOT NULL DEFAULT 0,
    review_label TEXT,
    stored_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS errors (
    post_id TEXT,
    where_ TEXT,
    message TEXT NOT NULL,
    stored_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_label ON predictions(label);
"""


class StoreError(RuntimeError):
    pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class TriageStore:
    """The SQLite file a triage run writes and the TUI reads."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at each commit but the last on power loss
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable triage store ({exc})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> TriageStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def done_ids(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT post_id FROM predictions")}

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def write_batch(self, items: Sequence[tuple[Post, Prediction]], bundle_sha256: str, variant: str,
                    errors: Sequence[tuple[str | None, str, str]] = ()) -> None:
        """One transaction: all of `items` and `errors` are stored, or none."""
        now = _now()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT OR IGNORE INTO predictions(post_id, label, confidence, prediction, text, image, source, "
                "created_at, gold_label, latency_ms, bundle_sha256, variant, stored_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(post.id, pred.label, pred.confidence, pred.to_json(), post.text,
                  str(post.image) if post.image else None, post.source, post.created_at, post.label,
                  sum(pred.timings.values()), bundle_sha256, variant, now) for post, pred in items])
            self.db.executemany("INSERT INTO errors(post_id, where_, message, stored_at) VALUES (?, ?, ?, ?)",
                                [(pid, where, msg, now) for pid, where, msg in errors])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    def rows(self) -> Iterable[dict[str, Any]]:
        cur = self.db.execute("SELECT post_id, text, image, source, created_at, gold_label, prediction, reviewed, "
                              "review_label, bundle_sha256, variant FROM predictions ORDER BY rowid")
        for pid, text, image, source, created, gold, pred, reviewed, review, sha, variant in cur:
            yield {"post_id": pid, "text": text, "image": image, "source": source, "created_at": created,
                   "gold_label": gold, "prediction": json.loads(pred), "reviewed": bool(reviewed),
                   "review_label": review, "bundle_sha256": sha, "variant": variant}

    def errors(self) -> list[dict[str, Any]]:
        return [{"post_id": p, "where": w, "message": m}
                for p, w, m in self.db.execute("SELECT post_id, where_, message FROM errors ORDER BY rowid")]


# ----------------------------------------------------------------------------- the run


@dataclass
class TriageResult:
    store: str
    total: int
    skipped_done: int
    predicted: int
    errors: int
    seconds: float
    interrupted: bool = False

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
        print(f"\rtriage [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {rate:.1f} posts/s ETA {eta:.0f} s",
              end="", file=self.stream, flush=True)

    def close(self) -> None:
        print(file=self.stream, flush=True)


def triage(engine: Any, posts: Sequence[Post], store: TriageStore, *, batch_size: int = 32,
           classes: Sequence[str] | None = None, read_errors: Sequence[tuple[str | None, str, str]] = (),
           progress: bool = True) -> TriageResult:
    started = time.perf_counter()
    done = store.done_ids()
    pending, seen = [], set()
    for p in posts:
        if p.id in done or p.id in seen:
            continue
        seen.add(p.id)
        pending.append(p)
    skipped = len(posts) - len(pending)
    sha, variant = engine.bundle.sha256, engine.variant.name
    store.set_meta("bundle_sha256", sha)
    store.set_meta("variant", variant)
    store.set_meta("classes", list(classes) if classes else None)
    if read_errors:
        store.write_batch([], sha, variant, read_errors)
    bar = Progress(len(pending)) if progress else None
    predicted = errors = 0
    interrupted = False
    try:
        for batch in bucketed(pending, batch_size):
            items: list[tuple[Post, Prediction]] = []
            errs: list[tuple[str | None, str, str]] = []
            try:
                items = list(zip(batch, engine.predict(batch, classes=classes)))
            except Exception:  # one bad batch: retry post by post, record the ones that fail
                for post in batch:
                    try:
                        items.append((post, engine.predict([post], classes=classes)[0]))
                    except Exception as exc:  # noqa: BLE001 - any failure is recorded, never lost
                        errs.append((post.id, post.source or "", f"prediction failed: {type(exc).__name__}: {exc}"))
            store.write_batch(items, sha, variant, errs)
            predicted += len(items)
            errors += len(errs)
            if bar:
                bar.update(len(batch))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar:
            bar.update(0, force=True)
            bar.close()
    return TriageResult(str(store.path), len(posts), skipped, predicted, errors + len(read_errors),
                        round(time.perf_counter() - started, 2), interrupted)


# ----------------------------------------------------------------------------- export


def export_results(store: TriageStore, out: Path, fmt: str | None = None) -> int:
    """Write the store's predictions as JSONL (everything) or CSV (one row per post)."""
    out = Path(out)
    fmt = fmt or out.suffix.lstrip(".").lower()
    rows = list(store.rows())
    if fmt == "jsonl":
        with out.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        with out.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["post_id", "label", "confidence", "top_words", "has_image", "warnings", "reviewed",
                        "review_label", "gold_label", "text", "image"])
            for r in rows:
                p = r["prediction"]
                words = sorted(p["token_rationale"], key=lambda t: -t["score"])[:5]
                w.writerow([r["post_id"], p["label"], f"{p['probabilities'][p['label']]:.4f}",
                            " ".join(t["text"] for t in words), p["patch_rationale"] is not None,
                            " | ".join(p["input_warnings"]), r["reviewed"], r["review_label"] or "",
                            r["gold_label"] or "", r["text"] or "", r["image"] or ""])
    else:
        raise ValueError(f"{out}: unknown export format {fmt!r}; use .jsonl or .csv")
    return len(rows)
