"""The post text with its rationale words highlighted by score.

Token offsets point into the text the model saw (cleaned: URLs replaced, whitespace squeezed),
so the words are placed back onto the original text in order; a word that cannot be found is
left unhighlighted rather than guessed.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from crisislens.runtime.store.review import RATIONALE_THRESHOLD
from crisislens.runtime.schema import TokenScore
from crisislens.tui.safe import PLACEHOLDER_STYLE, segments
from crisislens.tui.theme import RATIONALE

THRESHOLD = RATIONALE_THRESHOLD  # a word with a score at least this is part of the rationale
HIGHLIGHT = Color.parse(RATIONALE)
BACKGROUND = Color.parse("#1e1e1e")


def align(text: str, tokens: Sequence[TokenScore]) -> list[tuple[int, int, float]]:
    """(start, end, score) of each rationale word in `text`, searched left to right."""
    spans: list[tuple[int, int, float]] = []
    cursor = 0
    folded = text.casefold()
    for tok in tokens:
        if not tok.text:
            continue
        if text[tok.start : tok.end] == tok.text and tok.start >= cursor:
            start = tok.start
        else:
            start = text.find(tok.text, cursor)
            if start < 0 and len(folded) == len(text):  # casefold kept offsets (no ß-like expansions)
                start = folded.find(tok.text.casefold(), cursor)
            if start < 0:
                continue
        end = start + len(tok.text)
        spans.append((start, end, float(tok.score)))
        cursor = end
    return spans


def word_style(score: float, threshold: float = THRESHOLD) -> Style | None:
    """Stronger background for a higher score; no style below the threshold."""
    if score < threshold:
        return None
    weight = 0.35 + 0.65 * (score - threshold) / max(1e-9, 1 - threshold)
    r, g, b = (round(BACKGROUND.triplet[i] + (HIGHLIGHT.triplet[i] - BACKGROUND.triplet[i]) * weight)  # type: ignore[index]
               for i in range(3))
    return Style(bgcolor=Color.from_rgb(r, g, b), color="black" if weight > 0.6 else "white", bold=score >= 0.8)


def rationale_text(text: str | None, tokens: Sequence[TokenScore], threshold: float = THRESHOLD) -> Text:
    """The post text (inert: markup and control characters shown, not obeyed) with its
    rationale words highlighted."""
    text = text or ""
    out = Text(overflow="fold")
    styles: list[Style | None] = [None] * len(text)
    for start, end, score in align(text, tokens):
        style = word_style(score, threshold)
        for i in range(start, end):
            styles[i] = style
    for start, end, shown, is_placeholder in segments(text):
        if is_placeholder:
            out.append(shown, PLACEHOLDER_STYLE)
            continue
        run_start = start
        for i in range(start + 1, end + 1):
            if i == end or styles[i] is not styles[run_start]:
                out.append(text[run_start:i], styles[run_start])
                run_start = i
    return out


def legend(threshold: float = THRESHOLD) -> Text:
    out = Text("rationale: ", style="dim")
    for score in (0.55, 0.75, 0.95):
        out.append(f" {score:.2f} ", word_style(score, threshold))
        out.append(" ")
    out.append("(words the model used; stronger = more weight)", style="dim")
    return out


# Laying out a 12 MB post froze the app for 22 s; the model reads far less than this anyway.
MAX_SHOWN_CHARS = 5_000


def post_text(text: str | None, tokens: Sequence[TokenScore], limit: int = MAX_SHOWN_CHARS) -> Text:
    """What the detail pane lays out: the post's first `limit` characters with their rationale,
    and, for a longer post, its length and where to read the rest."""
    if not text:
        return Text("(no text)", style="dim italic")
    shown = rationale_text(text[:limit], tokens)
    if len(text) > limit:
        shown.append(
            f"\n… {len(text):,} characters; the first {limit:,} are shown (the model reads fewer). "
            "Export the post (.jsonl) to read all of it.",
            style="dim italic",
        )
    return shown


class RationaleText(Static):
    """The detail pane's post text."""

    def show(self, text: str | None, tokens: Sequence[TokenScore]) -> None:
        self.update(post_text(text, tokens))
