"""The main screen: the triage list, the filter bar and the detail pane."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, ProgressBar, Static

from crisislens.runtime.labels import LABEL_NAMES, get_label
from crisislens.runtime.store.review import CONFIDENCE_STEPS, SORT_KEYS, ReviewFilter, ReviewItem, next_in_cycle, select
from crisislens.runtime.store import export_feedback, export_items
from crisislens.tui import keys
from crisislens.tui.screens.export import ExportScreen
from crisislens.tui.screens.help import HelpScreen
from crisislens.tui.screens.label_picker import LabelPicker
from crisislens.tui.screens.problems import ProblemsScreen
from crisislens.tui.widgets.filter_bar import FilterBar
from crisislens.tui.widgets.post_detail import PostDetail
from crisislens.tui.widgets.post_list import HEADER_SORT, PostList

CLASS_CYCLE: list[frozenset[str]] = [frozenset(), *(frozenset({name}) for name in LABEL_NAMES)]
TRI_STATE: list[bool | None] = [None, True, False]
REVIEW_CYCLE: list[bool | None] = [None, False, True]  # any → unreviewed → reviewed


class TriageScreen(Screen):
    BINDINGS = [*keys.TRIAGE, ("escape", "cancel_search")]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, ReviewItem] = {}
        self.last_seq = 0
        self.view_filter = ReviewFilter()
        self.shown: list[ReviewItem] = []
        self._search_timer = None

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield FilterBar(id="filters")
        with Horizontal(id="main"):
            yield PostList(id="posts")
            yield PostDetail(id="detail")
        with Horizontal(id="status"):
            yield Static(id="status-text")
            yield ProgressBar(id="progress", show_eta=False)
        # compact, the palette key in the help only: every key fits in 80 columns
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(PostDetail).set_renderer(self.app.image_renderer)
        self.query_one("#progress", ProgressBar).display = False
        self.query_one("#title", Static).update(self.app.title_text())
        self.reload()
        self.query_one(PostList).focus()
        self.app.start_job()
        # Another process (`crisislens triage`, a second app) may write into the store: read what is
        # new every few seconds, so a new urgent post shows up without reopening.
        self.set_interval(self.REFRESH_SECONDS, self.poll_store)

    REFRESH_SECONDS = 2.0

    def poll_store(self) -> None:
        if self.reload():
            self.query_one("#title", Static).update(self.app.title_text())

    NARROW = 110  # columns below which the list and the detail pane are stacked, not side by side

    def on_resize(self) -> None:
        self.set_class(self.size.width < self.NARROW, "narrow")

    # ------------------------------------------------------------------ data

    @property
    def store(self):  # noqa: ANN201 - runtime TriageStore, owned by the app
        return self.app.store

    @property
    def post_list(self) -> PostList:
        return self.query_one(PostList)

    @property
    def current(self) -> ReviewItem | None:
        pid = self.post_list.current_id
        return self.items.get(pid) if pid else None

    def reload(self) -> int:
        """Read what is new in the store; returns how many items arrived."""
        new = self.store.items(after=self.last_seq)
        for it in new:
            self.items[it.post_id] = it
            self.last_seq = max(self.last_seq, it.seq)
        if new or not self.shown:
            self.refresh_list()
        return len(new)

    def refresh_list(self, index: int | None = None) -> None:
        keep = self.post_list.current_id
        if index is None:
            index = max(self.post_list.cursor_row, 0)
        self.shown = select(self.items.values(), self.view_filter)
        self.post_list.show(self.shown, keep=keep, index=index)
        self.query_one(FilterBar).show(self.view_filter, len(self.shown), len(self.items))
        self.show_detail()

    def show_detail(self) -> None:
        self.query_one(PostDetail).show(self.current, self.empty_reason())

    def empty_reason(self) -> str:
        """What the empty list means, said where the post would be."""
        if self.shown:
            return ""
        if self.items:
            return f"No posts match the filter ({len(self.items)} hidden): x clears it."
        job = self.app.job
        if job is not None and not self.app.job_done.is_set():
            return "No posts yet: they appear here as they are triaged."
        return "No posts in this store. E lists the input problems, if any."

    def set_filter(self, f: ReviewFilter) -> None:
        self.view_filter = f
        self.refresh_list(index=0)

    def replace_item(self, item: ReviewItem, advance: bool = False, reorders: bool = True) -> None:
        """Show a review change; with `advance` the cursor goes on to the post that followed.
        `reorders` False: the change cannot move the post in or out of the list or along it (e.g.
        a reviewed mark while no filter looks at it), so one row is redrawn without re-filtering."""
        old_ids = self.post_list.all_ids
        index = max(self.post_list.cursor_row, 0)
        self.items[item.post_id] = item
        target = item.post_id
        if advance and index + 1 < len(old_ids):
            target = old_ids[index + 1]
        if reorders:
            self.shown = select(self.items.values(), self.view_filter)
        else:
            self.shown[old_ids.index(item.post_id)] = item
        if not reorders or [it.post_id for it in self.shown] == old_ids:  # same rows, same order: redraw one row
            self.post_list.update_item(item)
            self.post_list.move_to(target)
        else:
            self.post_list.show(self.shown, keep=target, index=index)
            self.query_one(FilterBar).show(self.view_filter, len(self.shown), len(self.items))
        self.show_detail()

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        sort = HEADER_SORT.get(str(event.column_key.value))
        if sort:
            self.set_filter(self.view_filter.with_(sort=sort))

    # ------------------------------------------------------------------ actions

    def action_next(self) -> None:
        self.post_list.action_cursor_down()

    def action_previous(self) -> None:
        self.post_list.action_cursor_up()

    def action_toggle_reviewed(self) -> None:
        item = self.current
        if item is None:
            return
        updated = self.store.set_reviewed(item.post_id, not item.reviewed)
        self.replace_item(updated, advance=updated.reviewed, reorders=self.view_filter.reviewed is not None)

    def action_toggle_flag(self) -> None:
        item = self.current
        if item is None:
            return
        updated = self.store.set_flagged(item.post_id, not item.flagged)
        self.replace_item(updated, reorders=self.view_filter.flagged is not None)
        self.notify(("Flagged " if updated.flagged else "Unflagged ") + "post", timeout=2)

    def action_correct_label(self) -> None:
        item = self.current
        if item is None:
            return

        def done(label: str | None) -> None:
            if label is None:
                return
            updated = self.store.correct_label(item.post_id, label)
            self.replace_item(updated, advance=True)
            verb = "Confirmed" if label == item.label else "Corrected to"
            self.notify(f"{verb} {get_label(label).title} (saved)", timeout=3)

        self.app.push_screen(LabelPicker(item.final_label, item.label), done)

    def action_search(self) -> None:
        bar = self.query_one(FilterBar)
        bar.add_class("searching")
        box = bar.query_one("#search", Input)
        box.value = self.view_filter.search
        box.focus()

    def action_cancel_search(self) -> None:
        bar = self.query_one(FilterBar)
        if not bar.has_class("searching"):
            return
        bar.remove_class("searching")
        self.post_list.focus()
        if self.view_filter.search:
            self.set_filter(self.view_filter.with_(search=""))

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        # Typing fast re-filters once, 0.15 s after the last key.
        if self._search_timer is not None:
            self._search_timer.stop()
        value = event.value
        self._search_timer = self.set_timer(0.15, lambda: self.set_filter(self.view_filter.with_(search=value)))

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
        if self.view_filter.search != event.value:
            self.set_filter(self.view_filter.with_(search=event.value))
        if not event.value:
            self.query_one(FilterBar).remove_class("searching")
        self.post_list.focus()

    def action_cycle_class(self) -> None:
        self.set_filter(self.view_filter.with_(classes=next_in_cycle(CLASS_CYCLE, self.view_filter.classes)))

    def filter_class(self, name: str | None) -> None:
        self.set_filter(self.view_filter.with_(classes=frozenset({name}) if name else frozenset()))

    def action_cycle_confidence(self) -> None:
        self.set_filter(self.view_filter.with_(min_confidence=next_in_cycle(CONFIDENCE_STEPS, self.view_filter.min_confidence)))

    def action_cycle_image(self) -> None:
        self.set_filter(self.view_filter.with_(has_image=next_in_cycle(TRI_STATE, self.view_filter.has_image)))

    def action_cycle_reviewed(self) -> None:
        self.set_filter(self.view_filter.with_(reviewed=next_in_cycle(REVIEW_CYCLE, self.view_filter.reviewed)))

    def action_cycle_sort(self) -> None:
        self.set_filter(self.view_filter.with_(sort=next_in_cycle(SORT_KEYS, self.view_filter.sort)))

    def action_clear_filters(self) -> None:
        self.query_one(FilterBar).remove_class("searching")
        self.set_filter(ReviewFilter(sort=self.view_filter.sort))

    def action_export(self) -> None:
        store = Path(self.store.path)
        default = store.with_name(f"{store.stem}-export.csv")

        def done(path: Path | None) -> None:
            if path is None:
                return
            try:
                n = export_items(self.shown, path)
            except (OSError, ValueError) as exc:
                self.notify(str(exc), title="Export failed", severity="error", timeout=8)
                return
            what = "; ".join(self.view_filter.describe()) or "no filter"
            self.notify(f"Wrote {n} posts ({what}) to {path}", title="Exported", timeout=6)

        self.app.push_screen(ExportScreen(default, len(self.shown)), done)

    def action_problems(self) -> None:
        self.app.push_screen(ProblemsScreen(self.store.errors()))

    def action_export_feedback(self) -> None:
        store = Path(self.store.path)
        out = store.with_name(f"{store.stem}-corrections.jsonl")
        try:
            n = export_feedback(self.store, out)
        except OSError as exc:
            self.notify(str(exc), title="Export failed", severity="error", timeout=8)
            return
        self.notify(f"Wrote {n} corrected label(s) to {out}", title="Corrections exported", timeout=6)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    # ------------------------------------------------------------------ live triage

    def show_progress(self, done: int, total: int, note: str) -> None:
        bar = self.query_one("#progress", ProgressBar)
        bar.display = total > 0 and done < total
        bar.update(total=max(total, 1), progress=done)
        self.query_one("#status-text", Static).update(Text(note, style="italic"))
        self.query_one("#title", Static).update(self.app.title_text())
        self.reload()
