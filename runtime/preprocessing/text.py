"""Tweet -> token ids: `clean_text` normalises a tweet (entities, URLs, mentions, invisible
characters, whitespace) and `TextEncoder.encode_batch` calls it before tokenising, so token
offsets point into the cleaned text.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from crisislens.runtime.preprocessing.config import _check_int, _config_from_dict


@dataclass(frozen=True)
class TextConfig:
    """How a tweet becomes token ids: `max_length` tokens including [CLS]/[SEP], and at most
    `max_chars` characters of cleaned text (so a pasted essay cannot stall tokenisation)."""

    max_length: int = 64
    max_chars: int = 2000

    def __post_init__(self) -> None:
        _check_int("TextConfig", "max_length", self.max_length, 1)
        _check_int("TextConfig", "max_chars", self.max_chars, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextConfig:
        return _config_from_dict(cls, data)


_SURROGATE = re.compile("[\ud800-\udfff]")
# ANSI escape sequences (CSI "ESC [ ... m", OSC "ESC ] ... BEL", two-byte ESC x): dropped whole so no "[31m" is left.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# C0/C1 controls that are not whitespace (whitespace ones become spaces below), zero-width and
# bidi controls (U+061C, U+200B-U+200F, U+202A-U+202E, U+2066-U+2069), word joiners, soft hyphen, BOM.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
_URL_TAIL = ".,;:!?)]}'\"\u2026\u00bb\u201d\u2019"  # punctuation after a URL belongs to the sentence
_MENTION = re.compile(r"(?<![\w@])@[A-Za-z0-9_]+")
_SPACES = re.compile(r"\s+")


def _url_to_word(match: re.Match[str]) -> str:
    url = match.group(0)
    kept = url.rstrip(_URL_TAIL)
    return "url" + url[len(kept) :]


def clean_text(text: str | None, config: TextConfig | None = None) -> tuple[str, list[str]]:
    """Normalise a tweet the way training and runtime both see it; returns (text, warnings).

    In order: lone surrogates -> U+FFFD; HTML entities unescaped (&amp; -> &); ANSI escapes,
    non-whitespace control characters and zero-width/bidi controls removed; Unicode NFC;
    URLs (http://, https://, www.) -> `url`; @mentions -> `@user`; whitespace runs -> one space,
    ends stripped; then cut to `config.max_chars` (at a space when one is in the second half).
    None or nothing left -> "" with the warning "empty text". Pure: no state, no I/O.
    """
    config = config or TextConfig()
    if text is None:
        return "", ["empty text"]
    if not isinstance(text, str):
        raise TypeError(f"clean_text needs a str or None, got {type(text).__name__}")
    notes: list[str] = []
    if _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)  # the tokenizer (Rust) cannot take lone surrogates
        notes.append("invalid code points (lone surrogates) replaced with U+FFFD")
    text = html.unescape(text)  # before removal: "&#8203;" is a zero-width space too
    text = _INVISIBLE.sub("", _ANSI.sub("", text))
    text = unicodedata.normalize("NFC", text)
    text = _MENTION.sub("@user", _URL.sub(_url_to_word, text))
    text = _SPACES.sub(" ", text).strip()
    if not text:
        return "", [*notes, "empty text"]
    if len(text) > config.max_chars:
        original = len(text)
        cut = text[: config.max_chars]
        space = cut.rfind(" ")
        if text[config.max_chars] != " " and space > config.max_chars // 2:
            cut = cut[:space]
        text = cut.rstrip()
        notes.append(f"text cut to {len(text)} characters (was {original}, max_chars={config.max_chars})")
    return text, notes


@dataclass
class TextBatch:
    """Token ids of a batch of texts, padded to one length L.

    `offsets[i][t]` is the (start, end) character range of token t in `cleaned[i]`, (0, 0) for
    special and padding tokens; `warnings[i]` are the cleaning and truncation warnings of text i.
    """

    input_ids: np.ndarray  # int64 [B, L]
    attention_mask: np.ndarray  # int64 [B, L], 1 on real tokens (specials included)
    offsets: list[list[tuple[int, int]]]
    cleaned: list[str]
    warnings: list[list[str]]

    def __len__(self) -> int:
        return len(self.cleaned)


class TextEncoder:
    """`clean_text` + a `tokenizers.Tokenizer` with CrisisLens' own truncation and padding.

    The tokenizer is copied and any padding/truncation stored in its tokenizer.json is switched
    off (the MiniLM file pads everything to 128): content tokens are cut so that with the
    special tokens a text has at most `config.max_length` tokens, and `encode_batch` pads to the
    batch's longest text or to a fixed `pad_to`.
    """

    def __init__(self, tokenizer: Tokenizer, config: TextConfig | None = None, *, copy: bool = True):
        """`copy=False` takes `tokenizer` over (its padding and truncation are switched off in place)."""
        self.config = config or TextConfig()
        stored_padding = tokenizer.padding
        # a copy: the caller's object is left as it was (`from_file` hands over one of its own)
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str()) if copy else tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        pad_id = stored_padding["pad_id"] if stored_padding else self.tokenizer.token_to_id("[PAD]")
        if pad_id is None:
            raise ValueError("the tokenizer has no [PAD] token and no padding settings to take a pad id from")
        self.pad_id: int = int(pad_id)
        self.num_special_tokens = self.tokenizer.num_special_tokens_to_add(False)
        if self.config.max_length <= self.num_special_tokens:
            raise ValueError(
                f"TextConfig.max_length ({self.config.max_length}) leaves no room for text "
                f"next to the tokenizer's {self.num_special_tokens} special tokens"
            )

    @classmethod
    def from_file(cls, path: str | Path, config: TextConfig | None = None) -> TextEncoder:
        """Load a Hugging Face `tokenizer.json`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: tokenizer file not found")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises a bare Exception
            raise ValueError(f"{path}: not a readable tokenizer.json ({exc})") from None
        return cls(tokenizer, config, copy=False)

    def encode_batch(self, texts: Sequence[str | None], pad_to: int | None = None) -> TextBatch:
        """Clean, tokenise, truncate and pad `texts`.

        L is the longest encoding in the batch, or `pad_to` (a fixed shape for export and
        TensorRT profiles; it must be at least `config.max_length` so every text fits).
        An empty text still gives [CLS] [SEP].
        """
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of texts, not one str")
        if pad_to is not None and pad_to < self.config.max_length:
            raise ValueError(f"pad_to ({pad_to}) must be at least TextConfig.max_length ({self.config.max_length})")
        cleaned, notes = [], []
        for text in texts:
            clean, warns = clean_text(text, self.config)
            cleaned.append(clean)
            notes.append(warns)
        limit = self.config.max_length - self.num_special_tokens
        encodings = []
        for encoding, warns in zip(self.tokenizer.encode_batch(cleaned, add_special_tokens=False), notes):
            if len(encoding.ids) > limit:
                warns.append(
                    f"text truncated to {self.config.max_length} tokens "
                    f"(was {len(encoding.ids) + self.num_special_tokens})"
                )
                encoding.truncate(limit)
            encodings.append(self.tokenizer.post_process(encoding))
        width = pad_to if pad_to is not None else max((len(e.ids) for e in encodings), default=0)
        input_ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(encodings), width), dtype=np.int64)
        offsets: list[list[tuple[int, int]]] = []
        for i, encoding in enumerate(encodings):
            n = len(encoding.ids)
            input_ids[i, :n] = encoding.ids
            attention_mask[i, :n] = encoding.attention_mask
            row = [
                (0, 0) if special else (int(s), int(e))
                for (s, e), special in zip(encoding.offsets, encoding.special_tokens_mask)
            ]
            offsets.append(row + [(0, 0)] * (width - n))
        return TextBatch(input_ids, attention_mask, offsets, cleaned, notes)
