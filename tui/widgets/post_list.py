"""The triage list: one row per post, in the current filter's order."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from crisislens.runtime.labels import get_label
from crisislens.runtime.store.review import ReviewItem
from crisislens.tui.safe import one_line

COLUMNS = (("state", " "), ("class", "Class"), ("conf", "Conf"), ("prio", "Prio"), ("photo", "▣"), ("text", "Text"))
# Clicking a header sorts by it (where the column has a sort order).
HEADER_SORT = {"class": "class", "conf": "confidence", "prio": "priority"}



def state_cell(item: ReviewItem) -> Text:
    out = Text()
    out.append("⚑" if item.flagged else " ", style="bold red")
    out.append("✎" if item.corrected else ("✓" if item.reviewed else " "), style="green")
    return out


def class_cell(item: ReviewItem) -> Text:
    label = get_label(item.final_label)
    out = Text("● ", style=label.colour)
    out.append(label.title, style="italic" if item.corrected else "")
    return out


def photo_cell(item: ReviewItem) -> Text:
    """▣ the model used the post's photo; ✕ the post came with a photo it could not use."""
    if item.has_image:
        return Text("▣")
    return Text("✕", style="yellow") if item.photo_unusable else Text(" ")


def conf_cell(item: ReviewItem) -> Text:
    """The model's probability for the class shown: for a corrected post, for the responder's label."""
    return Text(f"{item.final_probability:4.0%}", justify="right", style="italic" if item.corrected else "")


def row_cells(item: ReviewItem, text_width: int = 200) -> tuple[Text, ...]:
    return (state_cell(item), class_cell(item), conf_cell(item),
            Text(f"{item.priority:.2f}", justify="right"), photo_cell(item),
            one_line(item.text, text_width))


class PostList(DataTable):
    """A DataTable keyed by post id; `show` replaces the rows and keeps the cursor on its post.

    Large stores stay quick: rows are added in chunks as the cursor nears the end of what is
    drawn (a filter change redraws one chunk, not every post), and each row's cells are built
    once per state of its post."""

    FIXED_WIDTH = 2 + 18 + 4 + 4 + 1 + 2 * len(COLUMNS) + 2  # every column but the text, padding, scrollbar
    CHUNK = 100

    def __init__(self, **kwargs):  # noqa: ANN003 - DataTable's own options
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.post_ids: list[str] = []  # the rows drawn, a prefix of all_ids
        self.all_ids: list[str] = []
        self._shown: list[ReviewItem] = []
        self._text_width = 0
        self._cells: dict[str, tuple[ReviewItem, int, tuple[Text, ...]]] = {}

    def text_width(self) -> int:
        """Characters of post text that fit beside the other columns (no sideways scrolling)."""
        return max(10, self.size.width - self.FIXED_WIDTH)

    def on_resize(self) -> None:
        if self._shown and self.text_width() != self._text_width:
            self.show(self._shown, keep=self.current_id)

    def _ensure_columns(self) -> None:
        # Rows can arrive (live progress) before this widget's own mount handler has run.
        if not self.columns:
            for key, title in COLUMNS:
                self.add_column(title, key=key)

    def on_mount(self) -> None:
        self._ensure_columns()

    @property
    def current_id(self) -> str | None:
        if not self.post_ids or self.cursor_row < 0 or self.cursor_row >= len(self.post_ids):
            return None
        return self.post_ids[self.cursor_row]

    def _row(self, item: ReviewItem) -> tuple[Text, ...]:
        cached = self._cells.get(item.post_id)
        if cached is not None and cached[0] is item and cached[1] == self._text_width:
            return cached[2]
        cells = row_cells(item, self._text_width)
        self._cells[item.post_id] = (item, self._text_width, cells)
        return cells

    def draw_until(self, index: int) -> None:
        """Make sure rows up to `index` are drawn (whole chunks at a time)."""
        want = min(len(self._shown), (index // self.CHUNK + 1) * self.CHUNK)
        for it in self._shown[len(self.post_ids) : want]:
            self.add_row(*self._row(it), key=it.post_id)
            self.post_ids.append(it.post_id)

    def show(self, items: Sequence[ReviewItem], keep: str | None = None, index: int | None = None) -> None:
        """Replace the rows; put the cursor on post `keep` if it is still listed, else at `index`."""
        self._ensure_columns()
        self.clear()
        self._shown = list(items)
        self._text_width = self.text_width()
        self.all_ids = [it.post_id for it in items]
        self.post_ids = []
        if not items:
            return
        if keep is not None and keep in self.all_ids:
            row = self.all_ids.index(keep)
        else:
            row = min(index or 0, len(items) - 1)
        self.draw_until(row)
        self.move_cursor(row=row, animate=False)

    def move_to(self, post_id: str) -> None:
        row = self.all_ids.index(post_id)
        self.draw_until(row)
        self.move_cursor(row=row, animate=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= len(self.post_ids) - 1 and len(self.post_ids) < len(self._shown):
            self.draw_until(len(self.post_ids))  # the next chunk, before the cursor runs out of rows

    def update_item(self, item: ReviewItem) -> None:
        """Redraw one row in place (after a review action that keeps it in the list)."""
        if item.post_id not in self.all_ids:
            return
        self._shown = [item if it.post_id == item.post_id else it for it in self._shown]
        if item.post_id not in self.post_ids:
            return
        for (key, _), cell in zip(COLUMNS, self._row(item)):
            self.update_cell(item.post_id, key, cell)
