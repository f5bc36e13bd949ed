"""Every key binding of the app, in one place (the footer, the help screen and the screens use these)."""

from __future__ import annotations

from textual.binding import Binding

TRIAGE = [
    # j/k stay out of the footer (the arrows are obvious) so that every other key fits in 80 columns.
    Binding("j,down", "next", "Next", key_display="j/↓", show=False),
    Binding("k,up", "previous", "Prev", key_display="k/↑", show=False),
    Binding("r", "toggle_reviewed", "Review"),
    Binding("l", "correct_label", "Label"),
    Binding("f", "toggle_flag", "Flag"),
    Binding("slash", "search", "Search", key_display="/"),
    Binding("c", "cycle_class", "Class"),
    Binding("m", "cycle_confidence", "Conf"),
    Binding("i", "cycle_image", "Photo", show=False),
    Binding("u", "cycle_reviewed", "Unreviewed", show=False),
    Binding("s", "cycle_sort", "Sort", show=False),
    Binding("x", "clear_filters", "Clear", show=False),
    Binding("e", "export", "Export"),
    Binding("E", "problems", "Problems", show=False),
    Binding("question_mark", "help", "Help", key_display="?"),
    Binding("q", "app.quit", "Quit"),
]

# What each key does, for the help screen (the footer shows the short names).
HELP = [
    ("j / ↓, k / ↑", "next / previous post"),
    ("r", "mark the post reviewed (again: unmark); moves to the next post"),
    ("l", "correct the label: pick the right class (1–5); saved with the time as feedback"),
    ("f", "flag the post for follow-up (again: unflag)"),
    ("/", "search the post texts (Enter keeps the search, Esc clears it)"),
    ("c", "filter by class: all → each class in turn"),
    ("m", "minimum confidence: any → 50% → 70% → 90%"),
    ("i", "photo: any → with photo → without photo"),
    ("u", "review state: any → unreviewed → reviewed"),
    ("s", "sort: priority → confidence → latest → class"),
    ("x", "clear every filter and the search"),
    ("e", "export the posts shown now to CSV or JSONL"),
    ("E", "input problems: rows that could not be read or had nothing to classify, with file, line and reason"),
    ("ctrl+p", "command palette: every action by name"),
    ("?", "this help"),
    ("q", "quit (everything is already saved)"),
]
