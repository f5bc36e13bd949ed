"""`CrisisLensApp`: the field triage app over one triage store.

The app owns the store connection (main thread) and, when given a `TriageJob`, runs it in a
thread worker that posts progress messages; the screen then reads the new predictions through
the store. Nothing here talks SQL: reads and review actions are `runtime.triage.TriageStore`
methods.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual.app import App, SystemCommand
from textual.screen import Screen

from crisislens.runtime.labels import LABELS
from crisislens.runtime.store import TriageStore
from crisislens.runtime.store.watch import TriageJob
from crisislens.tui.messages import TriageDone, TriageFailed, TriageProgress
from crisislens.tui.safe import inert
from crisislens.tui.screens.triage import TriageScreen


class CrisisLensApp(App):
    CSS_PATH = "crisislens.tcss"
    TITLE = "CrisisLens"

    def __init__(self, store: Path | str, job: TriageJob | None = None, image_renderer: str = "halfblock"):
        super().__init__()
        self.store_path = Path(store)
        self.store = TriageStore(self.store_path)
        self.job = job
        self.image_renderer = image_renderer
        self._stop = threading.Event()
        self.job_done = threading.Event()  # set when a one-shot triage job has finished (or failed)

    def title_text(self) -> Text:
        out = Text("CrisisLens", style="bold")
        out.append(" · triage store ")
        out.append_text(inert(self.store_path.name, keep_newlines=False))
        if self.job is not None:
            verb = "watching" if self.job.watch else ("triaged" if self.job_done.is_set() else "triaging")
            out.append(f" · {verb} ", style="italic")
            out.append_text(inert(", ".join(Path(p).name for p in self.job.inputs), keep_newlines=False))
        errors = len(self.store.errors())
        if errors:
            out.append(f" · {errors} input row(s) not triaged (E shows them)", style="yellow")
        out.append("   ? help", style="dim")
        return out

    def get_default_screen(self) -> Screen:
        return TriageScreen()

    def start_job(self) -> None:
        """Called by the triage screen once it is mounted, so progress never meets a half-built screen."""
        if self.job is not None and not self.job_done.is_set():
            self.run_worker(self._run_job, thread=True, exclusive=True, group="triage", name="triage")

    def _run_job(self) -> None:
        assert self.job is not None
        try:
            self.job.run(self._stop, lambda done, total, note: self.post_message(TriageProgress(done, total, note)))
        except Exception as exc:  # noqa: BLE001 - shown to the user, the app stays usable
            self.post_message(TriageFailed(f"{type(exc).__name__}: {exc}"))
        finally:
            self.job_done.set()
            self.post_message(TriageDone())

    def on_triage_progress(self, message: TriageProgress) -> None:
        screen = self.get_screen_by_default()
        if screen is not None:
            screen.show_progress(message.done, message.total, message.note)

    def on_triage_done(self, message: TriageDone) -> None:
        screen = self.get_screen_by_default()
        if screen is not None:
            screen.query_one("#title").update(self.title_text())

    def on_triage_failed(self, message: TriageFailed) -> None:
        self.notify(message.error, title="Triage stopped", severity="error", timeout=15)
        screen = self.get_screen_by_default()
        if screen is not None:
            screen.show_progress(0, 0, "triage stopped: " + message.error)

    def get_screen_by_default(self) -> TriageScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, TriageScreen):
                return screen
        return None

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        main = self.get_screen_by_default()
        if main is None:
            return
        yield SystemCommand("Mark reviewed / unreviewed", "Toggle the current post's reviewed mark (r)", main.action_toggle_reviewed)
        yield SystemCommand("Correct label", "Pick the right class for the current post (l)", main.action_correct_label)
        yield SystemCommand("Flag / unflag", "Flag the current post for follow-up (f)", main.action_toggle_flag)
        yield SystemCommand("Search text", "Filter posts by words in their text (/)", main.action_search)
        yield SystemCommand("Export shown posts", "Write the posts shown now to CSV or JSONL (e)", main.action_export)
        yield SystemCommand("Export corrections", "Write the corrected labels as labelled JSONL beside the store",
                            main.action_export_feedback)
        yield SystemCommand("Input problems", "Rows of the inputs that could not be read (E)", main.action_problems)
        yield SystemCommand("Clear filters", "Show every post (x)", main.action_clear_filters)
        yield SystemCommand("Show all classes", "Remove the class filter", lambda: main.filter_class(None))
        for label in LABELS:
            yield SystemCommand(f"Show only: {label.title}", label.description,
                                lambda name=label.name: main.filter_class(name))
        for sort in ("priority", "confidence", "latest", "class"):
            yield SystemCommand(f"Sort by {sort}", f"Order the list by {sort}",
                                lambda s=sort: main.set_filter(main.view_filter.with_(sort=s)))
        yield SystemCommand("Only unreviewed", "Hide reviewed posts",
                            lambda: main.set_filter(main.view_filter.with_(reviewed=False)))
        yield SystemCommand("Only flagged", "Show flagged posts", lambda: main.set_filter(main.view_filter.with_(flagged=True)))
        yield SystemCommand("Keys and legend", "The help screen (?)", main.action_help)

    def on_unmount(self) -> None:
        self._stop.set()
        self.store.close()
