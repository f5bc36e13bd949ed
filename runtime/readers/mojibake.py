"""Mojibake repair: text that was decoded with the wrong codec somewhere upstream (`â€™` for `'`,
`MagaÃ±a` for `Magaña`), common in CrisisMMD and in old tweet archives.

ftfy repairs it; only its encoding repairs are on. Its other fixes (straight quotes, full-width
letters, ligatures, NFC, HTML entities, control characters) would change text that was written
that way on purpose, and the model was trained on what people typed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ftfy import TextFixerConfig


@cache
def _fixer() -> tuple[Callable[[str, TextFixerConfig], str], TextFixerConfig]:
    """ftfy's `fix_text` and the configuration below, imported on the first non-ASCII text (ftfy
    takes a noticeable share of a run's start, and an ASCII input never needs it)."""
    from ftfy import TextFixerConfig, fix_text

    return fix_text, TextFixerConfig(
        unescape_html=False,
        remove_terminal_escapes=False,  # kept for the screen's own escaping; never part of a repair
        fix_encoding=True,
        restore_byte_a0=True,
        replace_lossy_sequences=True,
        decode_inconsistent_utf8=True,
        fix_c1_controls=True,
        fix_latin_ligatures=False,
        fix_character_width=False,
        uncurl_quotes=False,
        fix_line_breaks=False,
        fix_surrogates=False,  # the readers replace lone surrogates themselves, with a warning
        remove_control_chars=False,
        normalization=None,
        explain=False,
    )


REPAIRED = "text repaired (it was decoded with the wrong codec somewhere upstream); the original is kept"


def repair(text: str) -> str:
    """`text` with mojibake undone; the same string when there is none."""
    if text.isascii():  # no mojibake without a non-ASCII character; most posts stop here
        return text
    fix_text, config = _fixer()
    return fix_text(text, config)
