"""Processes that open one store at the same moment: each either migrates it or sees it migrated."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

from crisislens.runtime.store.sqlite import TriageStore
from crisislens.runtime.store.tables import MIGRATIONS


def _open(path: str, barrier: mp.synchronize.Barrier, errors: mp.Queue) -> None:
    barrier.wait()
    try:
        TriageStore(path).close()
    except Exception as exc:  # what a responder would see
        errors.put(f"{type(exc).__name__}: {exc}")


def _old_store(path: Path) -> None:
    """A store from before the migrated columns: the predictions table without them."""
    TriageStore(path).close()
    db = sqlite3.connect(path)
    columns = [r[1] for r in db.execute("PRAGMA table_info(predictions)") if r[1] not in MIGRATIONS]
    db.executescript(f"CREATE TABLE old AS SELECT {', '.join(columns)} FROM predictions; DROP TABLE predictions; "
                     "ALTER TABLE old RENAME TO predictions;")
    db.close()


def test_processes_opening_an_old_store_at_once_all_succeed(tmp_path):
    ctx = mp.get_context("fork")
    for attempt in range(3):
        path = tmp_path / f"old{attempt}.sqlite"
        _old_store(path)
        barrier, errors = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(str(path), barrier, errors)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        found = []
        while not errors.empty():
            found.append(errors.get())
        assert not found, found
        db = sqlite3.connect(path)
        assert set(MIGRATIONS) <= {r[1] for r in db.execute("PRAGMA table_info(predictions)")}
        db.close()
