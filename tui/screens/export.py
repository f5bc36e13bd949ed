"""Export the posts shown now: a file name (.csv or .jsonl); Enter writes, Esc cancels."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from crisislens.runtime.store import EXPORT_FORMATS


class ExportScreen(ModalScreen[Path | None]):
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, default: Path, count: int):
        super().__init__()
        self.default, self.count = default, count

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Static(Text(f"Export the {self.count} posts shown now (the current filter and order)", style="bold"))
            yield Static(Text("File name ending in .csv (one row per post) or .jsonl (everything). Enter writes, Esc cancels.",
                              style="dim"))
            yield Input(str(self.default), id="export-path")
            yield Static(id="export-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        path = Path(event.value.strip()).expanduser()
        error = None
        if not event.value.strip():
            error = "give a file name"
        elif path.suffix.lower().lstrip(".") not in EXPORT_FORMATS:
            error = f"{path.name}: end the name in .csv or .jsonl"
        elif not path.parent.is_dir():
            error = f"{path.parent}: no such folder"
        if error:
            self.query_one("#export-error", Static).update(Text(error, style="bold red"))
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)
