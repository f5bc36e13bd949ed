"""Train/eval leakage: training examples that repeat (or nearly repeat) an evaluation example.

Crisis tweets are retweeted and copied across datasets (HumAID and CrisisMMD share 2017
events), so a training set can hold the very text of a benchmark test tweet under another id.
`find_leaks` finds, for every training example, the evaluation examples it leaks into:

- ``exact``  same text after `normalise_text` (non-empty);
- ``near``   word-set Jaccard >= `near_threshold` on normalised words, not already exact.
             Texts with fewer than `MIN_NEAR_TOKENS` words count only for exact matches:
             two 2-word tweets share half their words by chance;
- ``tweet``  same tweet id (one tweet, another image or another copy);
- ``image``  same image file.

Reports list ids and sources, never texts (tweet texts may not be published). The near
search is a sparse binary word matrix product (intersection = A @ B.T), in row chunks so that
memory stays bounded even when common words make the product dense.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crisislens.distill.data import Example

MIN_NEAR_TOKENS = 3
KINDS = ("exact", "near", "tweet", "image")
_CHUNK_CELLS = 4_000_000  # train rows x eval rows per sparse product chunk

_URL = re.compile(r"(?:https?://|www\.)\S*", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@\w+")
_APOSTROPHE = re.compile(r"['\u2019`]")
_LEADING_RT = re.compile(r"^\s*(?:rt\b\s*:?\s*)+", re.IGNORECASE)


def _is_edge_punct(c: str) -> bool:
    return unicodedata.category(c)[0] in "PS"  # punctuation and symbols (#, …, emoji)


def _strip_edges(word: str) -> str:
    if word[0].isalnum() and word[-1].isalnum():  # fast path: most words
        return word
    start, end = 0, len(word)
    while start < end and _is_edge_punct(word[start]):
        start += 1
    while end > start and _is_edge_punct(word[end - 1]):
        end -= 1
    return word[start:end]


def normalise_text(text: str | None) -> str:
    """Canonical form for duplicate detection.

    Lower-cased; HTML entities decoded (&amp; -> &); apostrophes, URLs, @mentions and a
    leading "RT" removed; punctuation and symbols stripped from the edges of each word (so "#Flood!" ==
    "flood"); whitespace collapsed. Empty string for None or a text with no words left.
    """
    if not text:
        return ""
    text = html.unescape(text).lower()
    text = _APOSTROPHE.sub("", text)  # some copies drop them: "irma's" == "irmas"
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    text = _LEADING_RT.sub("", text)
    words = (_strip_edges(w) for w in text.split())
    text = " ".join(w for w in words if w)
    return _LEADING_RT.sub("", text).strip()  # "RT @user: text" leaves "rt text" after mentions go


def word_set(normalised: str) -> frozenset[str]:
    return frozenset(normalised.split())


@dataclass(frozen=True)
class LeakPair:
    """One training example that repeats one evaluation example (ids only, no text)."""

    kind: str  # "exact" | "near" | "tweet" | "image"
    train_source: str
    train_id: str
    eval_source: str
    eval_id: str
    similarity: float  # Jaccard of the word sets (1.0 for exact/tweet/image)

    @property
    def train_key(self) -> tuple[str, str]:
        return (self.train_source, self.train_id)


@dataclass
class LeakageReport:
    """All leak pairs, with counts per training source and kind."""

    pairs: list[LeakPair]
    near_threshold: float
    n_train: int
    n_eval: int
    train_sources: Counter = field(default_factory=Counter)

    def of_kind(self, kind: str) -> list[LeakPair]:
        return [p for p in self.pairs if p.kind == kind]

    @property
    def exact(self) -> list[LeakPair]:
        return self.of_kind("exact")

    @property
    def near(self) -> list[LeakPair]:
        return self.of_kind("near")

    def leaked_train_keys(self, kinds: Iterable[str] = KINDS) -> set[tuple[str, str]]:
        kinds = set(kinds)
        return {p.train_key for p in self.pairs if p.kind in kinds}

    def counts_by_source(self) -> dict[str, dict[str, int]]:
        """source -> {rows, <kind>: leaking train examples, <kind>_pairs, any}."""
        out: dict[str, dict[str, int]] = {}
        for source, rows in self.train_sources.items():
            out[source] = {"rows": rows, **{k: 0 for k in KINDS}, **{f"{k}_pairs": 0 for k in KINDS}, "any": 0}
        examples: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
        for p in self.pairs:
            out.setdefault(p.train_source, {"rows": 0, **{k: 0 for k in KINDS},
                                            **{f"{k}_pairs": 0 for k in KINDS}, "any": 0})
            out[p.train_source][f"{p.kind}_pairs"] += 1
            examples[(p.train_source, p.kind)].add(p.train_key)
        for (source, kind), keys in examples.items():
            out[source][kind] = len(keys)
        for source in out:
            out[source]["any"] = len({p.train_key for p in self.pairs if p.train_source == source})
        return out

    def eval_hit(self, kinds: Iterable[str] = KINDS) -> int:
        """How many distinct evaluation examples some training example leaks into."""
        kinds = set(kinds)
        return len({(p.eval_source, p.eval_id) for p in self.pairs if p.kind in kinds})

    def to_dict(self, include_pairs: bool = False) -> dict:
        """JSON-ready summary; `include_pairs` adds every pair (ids only; can be long)."""
        data = {
            "near_threshold": self.near_threshold,
            "n_train": self.n_train,
            "n_eval": self.n_eval,
            "by_source": self.counts_by_source(),
            "eval_examples_hit": {k: self.eval_hit([k]) for k in KINDS} | {"any": self.eval_hit()},
        }
        if include_pairs:
            data["pairs"] = [p.__dict__ for p in self.pairs]
        return data


def _exact_pairs(train_norm: list[str], eval_norm: list[str], train: Sequence[Example],
                 eval: Sequence[Example]) -> list[LeakPair]:
    index: dict[str, list[int]] = defaultdict(list)
    for j, text in enumerate(eval_norm):
        if text:
            index[text].append(j)
    return [LeakPair("exact", train[i].source, train[i].id, eval[j].source, eval[j].id, 1.0)
            for i, text in enumerate(train_norm) if text for j in index.get(text, ())]


def _key_pairs(kind: str, train: Sequence[Example], eval: Sequence[Example], key) -> list[LeakPair]:
    index: dict[object, list[int]] = defaultdict(list)
    for j, ex in enumerate(eval):
        k = key(ex)
        if k is not None:
            index[k].append(j)
    out = []
    for ex in train:
        k = key(ex)
        if k is not None:
            out.extend(LeakPair(kind, ex.source, ex.id, eval[j].source, eval[j].id, 1.0) for j in index.get(k, ()))
    return out


def _binary_rows(sets: list[frozenset[str]], vocab: dict[str, int]) -> Any:
    from scipy import sparse  # lazy: keeps `crisislens --help` free of scipy

    indptr, indices = [0], []
    for words in sets:
        indices.extend(vocab[w] for w in words if w in vocab)
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    return sparse.csr_matrix((data, np.asarray(indices, dtype=np.int64), np.asarray(indptr)), shape=(len(sets), len(vocab)))


def near_duplicate_pairs(train_norm: Sequence[str], eval_norm: Sequence[str], threshold: float,
                         min_tokens: int = MIN_NEAR_TOKENS) -> list[tuple[int, int, float]]:
    """(train index, eval index, Jaccard) for word-set Jaccard >= threshold; not exact matches.

    Texts with fewer than `min_tokens` words are skipped. Only the eval vocabulary becomes
    matrix columns (other words cannot intersect) but every word counts in the set sizes.
    """
    train_sets = [word_set(t) for t in train_norm]
    eval_sets = [word_set(t) for t in eval_norm]
    t_rows = [i for i, s in enumerate(train_sets) if len(s) >= min_tokens]
    e_rows = [j for j, s in enumerate(eval_sets) if len(s) >= min_tokens]
    if not t_rows or not e_rows:
        return []
    vocab: dict[str, int] = {}
    for j in e_rows:
        for w in eval_sets[j]:
            vocab.setdefault(w, len(vocab))
    a = _binary_rows([train_sets[i] for i in t_rows], vocab)
    b_t = _binary_rows([eval_sets[j] for j in e_rows], vocab).T.tocsc()
    size_a = np.array([len(train_sets[i]) for i in t_rows], dtype=np.float64)
    size_b = np.array([len(eval_sets[j]) for j in e_rows], dtype=np.float64)
    t_idx, e_idx = np.asarray(t_rows), np.asarray(e_rows)
    chunk = max(1, _CHUNK_CELLS // len(e_rows))
    out: list[tuple[int, int, float]] = []
    for start in range(0, len(t_rows), chunk):
        inter = (a[start:start + chunk] @ b_t).tocoo()
        rows, cols, vals = inter.row, inter.col, inter.data.astype(np.float64)
        union = size_a[start + rows] + size_b[cols] - vals
        keep = vals >= threshold * union - 1e-9
        for r, c, v, u in zip(rows[keep], cols[keep], vals[keep], union[keep]):
            i, j = int(t_idx[start + r]), int(e_idx[c])
            if train_norm[i] != eval_norm[j]:
                out.append((i, j, float(v / u)))
    return out


def find_leaks(train: Sequence[Example], eval: Sequence[Example], near_threshold: float = 0.8) -> LeakageReport:
    """Every (train, eval) pair that is an exact or near duplicate, or shares a tweet or image.

    See the module docstring for the kinds; `near_threshold` is inclusive.
    """
    if not 0.0 < near_threshold <= 1.0:
        raise ValueError(f"near_threshold must be in (0, 1], got {near_threshold}")
    train_norm = [normalise_text(ex.text) for ex in train]
    eval_norm = [normalise_text(ex.text) for ex in eval]
    pairs = _exact_pairs(train_norm, eval_norm, train, eval)
    pairs += [LeakPair("near", train[i].source, train[i].id, eval[j].source, eval[j].id, sim)
              for i, j, sim in near_duplicate_pairs(train_norm, eval_norm, near_threshold)]
    pairs += _key_pairs("tweet", train, eval, lambda ex: ex.tweet_id)
    pairs += _key_pairs("image", train, eval, lambda ex: ex.image)
    return LeakageReport(pairs=pairs, near_threshold=near_threshold, n_train=len(train), n_eval=len(eval),
                         train_sources=Counter(ex.source for ex in train))


def exclude_leaks(train: Sequence[Example], report: LeakageReport, kinds: Iterable[str] = KINDS) -> list[Example]:
    """`train` without every example that leaks (by any of `kinds`) into the evaluation set."""
    leaked = report.leaked_train_keys(kinds)
    return [ex for ex in train if ex.key not in leaked]
