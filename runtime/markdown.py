"""Markdown tables for reports: one helper instead of a renderer per report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Cell = object


def md_table(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> list[str]:
    """The lines of a Markdown table: the header, the `|---|` rule, one line per row.

    Cells are written with `str()` (format numbers before passing them); a `|` inside a cell is
    escaped so that it cannot split the row."""

    def line(cells: Sequence[Cell]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]


__all__ = ["md_table"]
