"""Every key of the app, in one table: the bindings (footer, screens) and the help screen's lines
are both read from `KEYS`, so a key cannot be bound without being explained, or the reverse."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    binding: Binding | None  # None: a key Textual itself provides (the command palette)
    shown: str  # how the help screen names the key ("" for a key explained on the line before)
    does: str  # what it does, for the help screen


KEYS = (
    # j/k stay out of the footer (the arrows are obvious) so that every other key fits in 80 columns.
    Key(Binding("j,down", "next", "Next", key_display="j/↓", show=False), "j / ↓, k / ↑", "next / previous post"),
    Key(Binding("k,up", "previous", "Prev", key_display="k/↑", show=False), "", ""),
    Key(Binding("r", "toggle_reviewed", "Review"), "r", "mark the post reviewed (again: unmark); moves to the next post"),
    Key(Binding("l", "correct_label", "Label"), "l",
        "correct the label: pick the right class (1–5); saved with the time as feedback"),
    Key(Binding("f", "toggle_flag", "Flag"), "f", "flag the post for follow-up (again: unflag)"),
    Key(Binding("slash", "search", "Search", key_display="/"), "/",
        "search the post texts (Enter keeps the search, Esc clears it)"),
    Key(Binding("c", "cycle_class", "Class"), "c", "filter by class: all → each class in turn"),
    Key(Binding("m", "cycle_confidence", "Conf"), "m", "minimum confidence: any → 50% → 70% → 90%"),
    Key(Binding("i", "cycle_image", "Photo", show=False), "i", "photo: any → with photo → without photo"),
    Key(Binding("u", "cycle_reviewed", "Unreviewed", show=False), "u", "review state: any → unreviewed → reviewed"),
    Key(Binding("s", "cycle_sort", "Sort", show=False), "s", "sort: priority → confidence → latest → class"),
    Key(Binding("x", "clear_filters", "Clear", show=False), "x", "clear every filter and the search"),
    Key(Binding("e", "export", "Export"), "e", "export the posts shown now to CSV or JSONL"),
    Key(Binding("E", "problems", "Problems", show=False), "E",
        "input problems: rows that could not be read or had nothing to classify, with file, line and reason"),
    Key(None, "ctrl+p", "command palette: every action by name"),
    Key(Binding("question_mark", "help", "Help", key_display="?"), "?", "this help"),
    Key(Binding("q", "app.quit", "Quit"), "q", "quit (everything is already saved)"),
)

TRIAGE = [k.binding for k in KEYS if k.binding is not None]
HELP = [(k.shown, k.does) for k in KEYS if k.shown]
