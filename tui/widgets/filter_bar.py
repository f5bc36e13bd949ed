"""The filter bar: what the list shows (filters, sort, counts) and the `/` search box."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Static

from crisislens.runtime.store.review import ReviewFilter


def describe(f: ReviewFilter, shown: int, total: int) -> Text:
    out = Text()
    out.append(f"{shown} of {total} posts", style="bold")
    out.append(f" · sort: {f.sort}")
    parts = f.describe()
    if parts:
        out.append(" · ")
        out.append(" · ".join(parts), style="bold yellow")  # Text.append: the search string stays literal
    else:
        out.append(" · no filter", style="dim")
    return out


class FilterBar(Horizontal):
    DEFAULT_CSS = """
    FilterBar { height: auto; }
    FilterBar #filter-summary { width: 1fr; padding: 0 1; }
    FilterBar #search { width: 40; display: none; border: none; height: 1; padding: 0 1; }
    FilterBar.searching #search { display: block; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="filter-summary")
        yield Input(placeholder="search text (Enter: keep, Esc: clear)", id="search")

    def show(self, f: ReviewFilter, shown: int, total: int) -> None:
        self.query_one("#filter-summary", Static).update(describe(f, shown, total))
