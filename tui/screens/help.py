"""Help: every key, what the colours and markers mean. Any of Esc, q, ? closes it."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from crisislens.runtime.labels import LABELS
from crisislens.tui.keys import HELP


def help_table() -> Table:
    keys = Table(show_header=False, box=None, padding=(0, 2))
    for key, what in HELP:
        keys.add_row(Text(key, style="bold"), Text(what))
    return keys


def legend() -> Text:
    out = Text("\nClasses, most urgent first\n", style="bold")
    for label in LABELS:
        out.append("  ● ", style=label.colour)
        out.append(f"{label.title} ", style="bold")
        out.append(f"(severity {label.severity:.1f}): {label.description}\n", style="dim")
    out.append("\nPriority\n", style="bold")
    out.append("  the expected severity: each class's probability × its severity, added up; a post with a fair\n"
               "  chance of affected people comes before one the model is sure is a donation. A post whose\n"
               "  label you corrected: your label's severity, and Conf shows the model's probability for it.\n")
    out.append("\nMarkers in the list\n", style="bold")
    out.append("  ⚑ flagged   ✓ reviewed   ✎ label corrected (the list shows your label)\n"
               "  ▣ the model used the photo   ✕ the post's photo could not be read (the label is from the text)\n")
    out.append("\nIn the detail pane, highlighted words and the amber boxes on the photo are what the model\n"
               "based its decision on. Text from posts is shown as typed: markup and control characters are\n"
               "displayed, never obeyed. Every action is saved to the store at once.", style="dim")
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(Text("CrisisLens — keys", style="bold").append("   ↓ / PgDn: more · Esc: close", style="dim"))
            yield Static(help_table())
            yield Static(legend())

    def on_mount(self) -> None:
        self.query_one("#help-box").focus()  # the keys scroll it: on a small screen it is longer than the box

    def action_close(self) -> None:
        self.dismiss(None)
