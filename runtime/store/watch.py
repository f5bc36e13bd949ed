"""Triage in the background: once over given inputs, or watching a folder for new posts
(`crisislens tui --watch`).

The app runs `TriageJob.run` in a thread worker (any caller could: nothing here needs the app).
The job opens its own engine and its own connection to the store (SQLite connections stay in
their thread); the app reads what it stored through its own connection (WAL lets both work at
once) when told of progress.

In watch mode a folder is read again when its listing changed and then stayed unchanged for
`settle` seconds, so a post whose text arrived before its photo is not read half-written.
Posts already stored are skipped (`runtime.store.run.triage`, by identity), so re-reading is cheap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from crisislens.runtime.cli.base import printable
from crisislens.runtime.readers import JSONL_SUFFIXES, TABLE_SUFFIXES, ReadReport, read_posts
from crisislens.runtime.store import TriageResult, TriageStore, triage

if TYPE_CHECKING:
    from crisislens.runtime.engine import Engine

Report = Callable[[int, int, str], None]  # (done, total, note)


def folder_signature(folder: Path) -> dict[str, tuple[int, int]]:
    """name -> (mtime_ns, size) of the folder's files (a change means new or rewritten posts)."""
    sig = {}
    for entry in folder.iterdir():
        try:
            st = entry.stat()
        except OSError:  # removed while listing
            continue
        if entry.is_file():
            sig[entry.name] = (st.st_mtime_ns, st.st_size)
    return sig


def watch_inputs(folder: Path) -> list[Path]:
    """What to read from a watched folder: the folder itself (ID.txt + ID.jpg pairs) and each
    JSONL/CSV/TSV file in it."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in JSONL_SUFFIXES + TABLE_SUFFIXES)
    return [folder, *files]


def done_note(result: TriageResult, read: ReadReport | None) -> str:
    """The status line after a one-shot pass: what it did, and the files it skipped (a folder of
    ID.txt pairs holding a posts.jsonl says so, instead of an empty list saying nothing)."""
    note = f"done: {result.predicted} new, {result.errors} error(s)"
    skipped = [p for p in (read.warnings if read else []) if p.post_id is None]
    if skipped:
        note += f"; {len(skipped)} file(s) skipped, e.g. {printable(str(skipped[0]))}"
    return note


@dataclass
class TriageJob:
    bundle: Path
    inputs: list[Path]
    store: Path
    watch: bool = False
    variant: str | None = None
    image_root: Path | None = None
    columns: dict[str, str] | None = None  # a table's own column names (--text-column, ...)
    backend: str = "auto"
    threads: int | None = None
    batch_size: int = 32
    interval: float = 1.0
    settle: float = 1.0
    _recorded: set[tuple[str | None, str, str]] = field(default_factory=set, repr=False)
    last_read: ReadReport | None = field(default=None, repr=False)  # what the latest pass read

    def __post_init__(self) -> None:
        if self.watch and (len(self.inputs) != 1 or not Path(self.inputs[0]).is_dir()):
            raise ValueError(f"watch mode needs one folder, got: {', '.join(map(str, self.inputs))}")

    def make_engine(self) -> Engine:
        from crisislens.runtime.bundle import load_bundle
        from crisislens.runtime.engine import Engine

        return Engine(load_bundle(self.bundle), self.variant, threads=self.threads, prefer=self.backend)

    def _pass(
        self, engine: Engine, store: TriageStore, inputs: list[Path], stop: threading.Event, report: Report
    ) -> TriageResult:
        read = read_posts(inputs, image_root=self.image_root, columns=self.columns)
        self.last_read = read
        errors = [(p.post_id, f"{p.file}:{p.line}" if p.line else p.file, p.message) for p in read.errors]
        new_errors = [e for e in errors if e not in self._recorded]  # a watched folder is read again and again
        self._recorded.update(new_errors)
        return triage(
            engine,
            read.posts,
            store,
            batch_size=self.batch_size,
            read_errors=new_errors,
            progress=False,
            on_batch=lambda done, total: report(done, total, "triaging"),
            should_stop=stop.is_set,
        )

    def run(self, stop: threading.Event, report: Report) -> TriageResult | None:
        report(0, 0, "loading the model")
        engine = self.make_engine()
        with TriageStore(self.store) as store:
            self._recorded.update((e["post_id"], e["where"], e["message"]) for e in store.errors())
            if not self.watch:
                once = self._pass(engine, store, list(self.inputs), stop, report)
                report(once.predicted, once.predicted, done_note(once, self.last_read))
                return once
            folder = Path(self.inputs[0])
            last_read: dict[str, tuple[int, int]] | None = None
            # What is there at the start must also stay unchanged for `settle` before it is read:
            # a photo still being synced when the watch begins is not read torn.
            seen, changed_at = folder_signature(folder), time.monotonic()
            result: TriageResult | None = None
            while not stop.is_set():
                now_sig = folder_signature(folder)
                if now_sig != seen:
                    seen, changed_at = now_sig, time.monotonic()
                if seen != last_read and time.monotonic() - changed_at >= self.settle:
                    result = self._pass(engine, store, watch_inputs(folder), stop, report)
                    last_read = seen
                    report(
                        result.predicted,
                        result.predicted,
                        f"watching {folder.name}/: {store.count()} stored, last pass {result.predicted} new",
                    )
                stop.wait(self.interval)
            return result
