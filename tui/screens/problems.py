"""Input problems: the rows of the inputs that could not be read or predicted, as stored in the
triage store's `errors` table (file, line and what is wrong). Esc, q or E closes it."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from crisislens.tui.safe import inert


def problems_table(errors: list[dict[str, str | None]]) -> Table:
    table = Table(expand=True, show_lines=False)
    table.add_column("where", ratio=1)
    table.add_column("post", ratio=1)
    table.add_column("what is wrong", ratio=3)
    for e in errors:
        table.add_row(inert(e.get("where") or "", keep_newlines=False), inert(e.get("post_id") or "–", keep_newlines=False),
                      inert(e.get("message") or ""))
    return table


class ProblemsScreen(ModalScreen[None]):
    BINDINGS = [("escape,q,E", "close", "Close")]

    def __init__(self, errors: list[dict[str, str | None]]):
        super().__init__()
        self.errors = errors

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="problems-box"):
            title = f"Input problems — {len(self.errors)} row(s) not triaged" if self.errors else "No input problems"
            yield Static(Text(title, style="bold"))
            yield Static(Text("Fix these rows in their files and run the same command again: posts already in the store "
                              "are skipped, the fixed rows are added.", style="dim"))
            if self.errors:
                yield Static(problems_table(self.errors))

    def action_close(self) -> None:
        self.dismiss(None)
