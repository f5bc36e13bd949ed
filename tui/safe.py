"""Untrusted text, shown inertly.

Tweets come from the internet: a post may carry Rich markup (`[bold red]`), terminal escape
codes (`\x1b[2J` clears a screen), or invisible characters that reorder or hide text (bidi
overrides, zero-width joiners). Everything the TUI shows from a post goes through `inert`: it
becomes a `rich.text.Text` (never parsed as markup) in which every control or invisible format
character is replaced by a visible, dimmed placeholder such as `␛` or `⟨RLO⟩`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator

from rich.text import Text

PLACEHOLDER_STYLE = "dim italic"

_NAMES = {
    0x00AD: "SHY", 0x061C: "ALM", 0x180E: "MVS", 0x200B: "ZWSP", 0x200C: "ZWNJ", 0x200D: "ZWJ", 0x200E: "LRM",
    0x200F: "RLM", 0x2028: "LS", 0x2029: "PS", 0x202A: "LRE", 0x202B: "RLE", 0x202C: "PDF", 0x202D: "LRO",
    0x202E: "RLO", 0x2060: "WJ", 0x2066: "LRI", 0x2067: "RLI", 0x2068: "FSI", 0x2069: "PDI", 0xFEFF: "BOM",
}


def placeholder(ch: str, keep_newlines: bool = True) -> str | None:
    """The visible stand-in for `ch`, or None when `ch` is safe to show as itself."""
    code = ord(ch)
    if ch == "\n":
        return None if keep_newlines else "⏎"
    if ch == "\t":
        return None if keep_newlines else " "
    if code < 0x20:
        return chr(0x2400 + code)  # Control Pictures: ␛ for ESC, ␀ for NUL, ␍ for CR
    if code == 0x7F:
        return "␡"
    category = unicodedata.category(ch)
    if category in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
        return f"⟨{_NAMES.get(code, f'U+{code:04X}')}⟩"
    return None


def segments(text: str, keep_newlines: bool = True) -> Iterator[tuple[int, int, str, bool]]:
    """(start, end, shown, is_placeholder) runs covering `text` in order."""
    start = 0
    for i, ch in enumerate(text):
        shown = placeholder(ch, keep_newlines)
        if shown is None:
            continue
        if i > start:
            yield start, i, text[start:i], False
        yield i, i + 1, shown, True
        start = i + 1
    if start < len(text):
        yield start, len(text), text[start:], False


def inert(text: str | None, style: str = "", keep_newlines: bool = True) -> Text:
    """`text` as a Rich `Text` that shows every character and interprets none."""
    out = Text(style=style, no_wrap=not keep_newlines, overflow="fold" if keep_newlines else "ellipsis")
    for _, _, shown, is_placeholder in segments(text or "", keep_newlines):
        out.append(shown, PLACEHOLDER_STYLE if is_placeholder else None)
    return out


def one_line(text: str | None, limit: int = 200) -> Text:
    """A post's text for a one-line cell: newlines shown as ⏎, at most `limit` cells wide as shown
    (placeholders are wider than the characters they stand for)."""
    out = inert((text or "")[: limit * 2], keep_newlines=False)  # a post can't fill more cells than this
    out.truncate(limit, overflow="ellipsis")
    return out
