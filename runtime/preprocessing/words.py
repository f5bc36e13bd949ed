"""Between the tokens a model scores and the whitespace words a responder reads (and the human
rationales are marked on): `words_with_scores`, `word_mask_to_token_mask`.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class WordScore:
    """A whitespace-delimited word of the cleaned text, its character range and rationale score.

    `truncated` marks a word after the last token the model saw (cut by `max_length`).
    """

    word: str
    start: int
    end: int
    score: float
    truncated: bool = False


def _word_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def _token_words(
    words: list[tuple[int, int]], offsets: Sequence[tuple[int, int]], keep: Sequence[Any] | None
) -> list[list[int]]:
    """For each token, the indices of the words its character range overlaps (none for specials)."""
    starts = [s for s, _ in words]
    out: list[list[int]] = []
    for t, (start, end) in enumerate(offsets):
        hits: list[int] = []
        if end > start and (keep is None or keep[t]):
            w = max(bisect_right(starts, start) - 1, 0)
            while w < len(words) and words[w][0] < end:
                if words[w][1] > start:
                    hits.append(w)
                w += 1
        out.append(hits)
    return out


def _check_lengths(offsets: Sequence[Any], **others: Sequence[Any] | None) -> None:
    for name, values in others.items():
        if values is not None and len(values) != len(offsets):
            raise ValueError(f"{name} has {len(values)} entries for {len(offsets)} token offsets")


def words_with_scores(
    text: str, offsets: Sequence[tuple[int, int]], scores: Sequence[float], mask: Sequence[Any] | None = None
) -> list[WordScore]:
    """Per-token scores -> per-word scores for the whitespace words of `text` (the cleaned text).

    A word's score is the maximum over the tokens inside it (so "flooding" = max("flood",
    "##ing")); tokens with an empty range (special, padding) or `mask` 0 are ignored. A word
    with no token gets 0.0, and `truncated=True` when it comes after the last scored token.
    """
    _check_lengths(offsets, scores=scores, mask=mask)
    words = _word_spans(text)
    best: list[float | None] = [None] * len(words)
    last_end = 0
    for t, hits in enumerate(_token_words(words, offsets, mask)):
        for w in hits:
            value = float(scores[t])
            best[w] = value if best[w] is None else max(best[w], value)  # type: ignore[type-var]
        if hits:
            last_end = max(last_end, offsets[t][1])
    return [
        WordScore(text[s:e], s, e, 0.0 if b is None else b, b is None and s >= last_end)
        for (s, e), b in zip(words, best)
    ]


def word_mask_to_token_mask(text: str, offsets: Sequence[tuple[int, int]], word_flags: Sequence[Any]) -> np.ndarray:
    """Per-word 0/1 flags (for the whitespace words of `text`) -> per-token uint8 0/1; specials 0."""
    words = _word_spans(text)
    if len(word_flags) != len(words):
        raise ValueError(f"{len(word_flags)} word flags for {len(words)} words in the text")
    mask = np.zeros(len(offsets), dtype=np.uint8)
    for t, hits in enumerate(_token_words(words, offsets, None)):
        mask[t] = any(word_flags[w] for w in hits)
    return mask
