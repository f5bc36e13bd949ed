"""Reviewing a triage store: the items a responder works through, their priority, filters,
sorting and text search — pure functions over `ReviewItem`s, so the TUI and tests share them
and the TUI never touches SQL.

Priority is the expected severity over the class probabilities (sum of p(class) × `Label.severity`):
a post the model gives a fair chance of being about affected people comes before a post it is
sure is a donation, chatter last. (Severity × confidence of the top class alone ranked a 52%
"family trapped on the roof" below a sure food-kit donation.) A label a responder corrected is
known, so its priority is that class's severity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from crisislens.runtime.labels import LABEL_NAMES, get_label
from crisislens.runtime.schema import Prediction

# A word with a score at least this is part of the rationale (the student's `rationale_threshold`).
RATIONALE_THRESHOLD = 0.5
# Trimmed from a summary word's ends: ASCII punctuation, curly quotes, guillemets, the ellipsis.
_WORD_EDGES = (
    "".join(chr(c) for c in range(0x21, 0x7F) if not chr(c).isalnum()) + "\u2018\u2019\u201c\u201d\u00ab\u00bb\u2026"
)


def top_words(prediction: Prediction, k: int = 5, threshold: float = RATIONALE_THRESHOLD) -> list[str]:
    """The `k` highest-scoring rationale words (score >= `threshold`) for a one-line summary:
    highest first, punctuation trimmed from their ends ("trapped," -> "trapped"), each word once
    (case-insensitive). The full, untrimmed words and scores stay in `token_rationale`."""
    out: list[str] = []
    seen: set[str] = set()
    for token in sorted(prediction.token_rationale, key=lambda t: -t.score):
        if token.score < threshold or len(out) == k:
            break
        word = token.text.strip(_WORD_EDGES) or token.text  # a word that is only punctuation stays as it is
        if word.casefold() not in seen:
            seen.add(word.casefold())
            out.append(word)
    return out


SortKey = Literal["priority", "confidence", "latest", "class"]
SORT_KEYS: tuple[SortKey, ...] = ("priority", "confidence", "latest", "class")
CONFIDENCE_STEPS: tuple[float, ...] = (0.0, 0.5, 0.7, 0.9)


@dataclass(frozen=True)
class ReviewItem:
    """One stored prediction with its review state (what a row of the triage list shows)."""

    post_id: str
    prediction: Prediction
    text: str | None = None
    image: str | None = None
    source: str | None = None
    created_at: str | None = None
    gold_label: str | None = None
    latency_ms: float | None = None
    variant: str = ""
    reviewed: bool = False
    review_label: str | None = None
    flagged: bool = False
    seq: int = 0  # arrival order in the store
    origin: str | None = None  # where the reader found the post: FILE:LINE, or FILE message ID
    platform: str | None = None  # twitter, telegram, whatsapp, when the archive says
    author: str | None = None  # a handle or a sender's name, when the archive says
    original_text: str | None = None  # the text as read, when the reader repaired it (mojibake)

    @property
    def label(self) -> str:
        """The model's label."""
        return self.prediction.label

    @property
    def confidence(self) -> float:
        return self.prediction.confidence

    @property
    def final_label(self) -> str:
        """The responder's label where there is one, else the model's."""
        return self.review_label or self.prediction.label

    @property
    def final_probability(self) -> float:
        """The model's probability for the final label (its confidence unless a responder corrected it)."""
        return float(self.prediction.probabilities.get(self.final_label, 0.0))

    @property
    def corrected(self) -> bool:
        return self.review_label is not None and self.review_label != self.prediction.label

    @property
    def has_image(self) -> bool:
        """Whether the model used a photo (a post whose photo could not be decoded has none)."""
        return self.prediction.patch_rationale is not None

    @property
    def photo_unusable(self) -> bool:
        """The post came with a photo the model could not use (why: `prediction.input_warnings`)."""
        return self.image is not None and self.prediction.patch_rationale is None

    @property
    def priority(self) -> float:
        if self.review_label is not None:
            return get_label(self.review_label).severity
        return priority(self.prediction.probabilities)


def priority(probabilities: Mapping[str, float]) -> float:
    """Sort weight of a prediction: the expected severity, sum of p(class) × severity, in [0, 1]."""
    return sum(get_label(name).severity * float(p) for name, p in probabilities.items())


@dataclass(frozen=True)
class ReviewFilter:
    """Which items the triage list shows, and in which order. Empty = everything, by priority."""

    classes: frozenset[str] = field(default_factory=frozenset)  # final labels; empty = all
    min_confidence: float = 0.0
    has_image: bool | None = None
    reviewed: bool | None = None
    flagged: bool | None = None
    search: str = ""
    sort: SortKey = "priority"

    def __post_init__(self) -> None:
        unknown = set(self.classes) - set(LABEL_NAMES)
        if unknown:
            raise ValueError(f"unknown class(es) in filter: {', '.join(sorted(unknown))}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"minimum confidence must be in [0, 1], got {self.min_confidence}")
        if self.sort not in SORT_KEYS:
            raise ValueError(f"unknown sort {self.sort!r}; expected one of {', '.join(SORT_KEYS)}")
        object.__setattr__(self, "classes", frozenset(self.classes))

    @property
    def active(self) -> bool:
        return self != ReviewFilter(sort=self.sort)

    def with_(self, **changes: object) -> ReviewFilter:
        return replace(self, **changes)  # type: ignore[arg-type]

    def describe(self) -> list[str]:
        """The active filters in words, for the filter bar and exported-file notes."""
        parts = []
        if self.classes:
            parts.append("class: " + ", ".join(get_label(c).title for c in LABEL_NAMES if c in self.classes))
        if self.min_confidence > 0:
            parts.append(f"confidence ≥ {self.min_confidence:.0%}")
        if self.has_image is not None:
            parts.append("with photo" if self.has_image else "without photo")
        if self.reviewed is not None:
            parts.append("reviewed" if self.reviewed else "unreviewed")
        if self.flagged is not None:
            parts.append("flagged" if self.flagged else "not flagged")
        if self.search:
            parts.append(f"text contains {self.search!r}")
        return parts


def matches(item: ReviewItem, f: ReviewFilter) -> bool:
    if f.classes and item.final_label not in f.classes:
        return False
    if item.confidence < f.min_confidence:
        return False
    if f.has_image is not None and item.has_image != f.has_image:
        return False
    if f.reviewed is not None and item.reviewed != f.reviewed:
        return False
    if f.flagged is not None and item.flagged != f.flagged:
        return False
    if f.search:
        needle = f.search.casefold()
        if needle not in (item.text or "").casefold() and needle not in item.post_id.casefold():
            return False
    return True


def _sort_key(sort: SortKey):  # noqa: ANN202 - a key function
    if sort == "priority":
        return lambda it: (-it.priority, -it.confidence, it.post_id)
    if sort == "confidence":
        return lambda it: (-it.confidence, it.post_id)
    if sort == "latest":
        return lambda it: (-it.seq, it.post_id)
    order = {name: i for i, name in enumerate(LABEL_NAMES)}
    return lambda it: (order[it.final_label], -it.confidence, it.post_id)


def select(items: Iterable[ReviewItem], f: ReviewFilter = ReviewFilter()) -> list[ReviewItem]:
    """The items `f` lets through, in its order."""
    return sorted((it for it in items if matches(it, f)), key=_sort_key(f.sort))


def next_in_cycle(options: Sequence[object], current: object) -> object:
    """The option after `current` (wrapping), for keys that cycle through a filter's values."""
    try:
        return options[(list(options).index(current) + 1) % len(options)]
    except ValueError:
        return options[0]


def counts(items: Iterable[ReviewItem]) -> dict[str, int]:
    """Items per final label (every label present, in label order)."""
    out = dict.fromkeys(LABEL_NAMES, 0)
    for it in items:
        out[it.final_label] += 1
    return out
