"""The triage list as a plain table, for when there is no terminal to open the app in
(`crisislens tui --print`, or output piped to a file)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from crisislens.runtime.labels import get_label
from crisislens.runtime.store.review import ReviewFilter, ReviewItem, counts, select
from crisislens.runtime.store.review import top_words as rationale_top_words
from crisislens.tui.safe import one_line
from crisislens.tui.widgets.rationale import THRESHOLD


def top_words(item: ReviewItem, k: int = 5) -> str:
    return " ".join(rationale_top_words(item.prediction, k, THRESHOLD))


def triage_table(items: Sequence[ReviewItem], limit: int | None = None) -> Table:
    table = Table(title=f"CrisisLens triage — {len(items)} posts, by priority", title_justify="left", expand=True)
    for name, opts in (("#", {"justify": "right"}), ("class", {}), ("conf", {"justify": "right"}),
                       ("prio", {"justify": "right"}), ("photo", {}), ("state", {}), ("rationale words", {"ratio": 1}),
                       ("text", {"ratio": 2})):
        table.add_column(name, **opts)
    for rank, it in enumerate(items[:limit] if limit else items, 1):
        label = get_label(it.final_label)
        state = ("flagged " if it.flagged else "") + ("corrected" if it.corrected else "reviewed" if it.reviewed else "")
        photo = "yes" if it.has_image else "unusable" if it.photo_unusable else ""
        table.add_row(str(rank), Text(label.title, style=label.colour), f"{it.final_probability:.0%}", f"{it.priority:.2f}",
                      photo, state.strip(), one_line(top_words(it)), one_line(it.text, 280))
    return table


def terminal_width(fallback: int = 100) -> int:
    """The width to print at: $COLUMNS, else the terminal of stdout, stderr or stdin (output piped to
    a file or `less` still follows the window it was typed in), else `fallback`."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    for stream in (sys.stdout, sys.stderr, sys.stdin):
        try:
            return os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            continue
    return fallback


def print_table(items: Sequence[ReviewItem], out: TextIO | None = None, limit: int | None = None,
                width: int | None = None) -> None:
    ordered = select(items, ReviewFilter())
    console = Console(file=out or sys.stdout, width=width or terminal_width())
    console.print(triage_table(ordered, limit))
    per_class = ", ".join(f"{get_label(n).title} {c}" for n, c in counts(ordered).items() if c)
    console.print(Text(f"{len(ordered)} posts: {per_class}"))
