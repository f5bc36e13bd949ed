"""The teacher's outputs per example, computed once so that distillation runs without it.

One compressed `.npz`, keyed by example key (`source:id`), holding no tweet text:

- `logits` [N, C] float32: log-probabilities of the teacher's prediction (from rationales);
  softmax(logits / T) is the temperature-softened distribution distillation needs.
- token scores (float16) and the hard token rationale, flat, with `starts`/`lengths` per
  example, on the MiniLM word pieces of `runtime.preprocess.TextEncoder` (so they line up with
  the student's tokens; `lengths` is checked against them);
- patch scores (float16) and the hard patch rationale [K, 49] for the K examples with a photo
  (`patch_row[i]` = -1 without one).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.runtime.files import atomic_open

FORMAT_VERSION = 1


class TeacherOutputsError(ValueError):
    """The stored teacher outputs do not fit the examples they are asked about."""


@dataclass
class TeacherOutputStore:
    keys: list[str]
    logits: np.ndarray  # [N, C] float32
    starts: np.ndarray  # [N] int64
    lengths: np.ndarray  # [N] int32
    token_scores: np.ndarray  # [T] float16
    token_rationale: np.ndarray  # [T] bool
    patch_row: np.ndarray  # [N] int32, -1 without an image
    patch_scores: np.ndarray  # [K, M] float16
    patch_rationale: np.ndarray  # [K, M] bool
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def row(self, key: str) -> dict[str, Any]:
        if key not in self.index:
            raise TeacherOutputsError(f"no teacher outputs for example {key!r}; rebuild with "
                                      "`crisislens distill teacher-outputs`")
        i = self.index[key]
        s, n = int(self.starts[i]), int(self.lengths[i])
        p = int(self.patch_row[i])
        m = self.patch_scores.shape[1] if self.patch_scores.ndim == 2 else 49
        return {
            "logits": self.logits[i],
            "token_scores": self.token_scores[s : s + n].astype(np.float32),
            "token_rationale": self.token_rationale[s : s + n],
            "has_image": p >= 0,
            "patch_scores": self.patch_scores[p].astype(np.float32) if p >= 0 else np.zeros(m, np.float32),
            "patch_rationale": self.patch_rationale[p] if p >= 0 else np.zeros(m, bool),
        }

    @classmethod
    def from_rows(cls, keys: Sequence[str], rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> TeacherOutputStore:
        """From `eval_teacher.teacher_outputs`-style dicts (probs, content-aligned token arrays)."""
        if len(keys) != len(rows):
            raise ValueError("keys and rows differ in length")
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate example keys")
        lengths = np.array([len(r["token_scores"]) for r in rows], np.int32)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
        with_image = [i for i, r in enumerate(rows) if r["has_image"]]
        patch_row = np.full(len(rows), -1, np.int32)
        patch_row[with_image] = np.arange(len(with_image), dtype=np.int32)
        m = len(rows[0]["patch_scores"]) if rows else 49
        probs = np.stack([r["probs"] for r in rows]).astype(np.float64) if rows else np.zeros((0, 5))
        return cls(
            keys=list(keys),
            logits=np.log(np.clip(probs, 1e-12, None)).astype(np.float32),
            starts=starts, lengths=lengths,
            token_scores=np.concatenate([r["token_scores"] for r in rows]).astype(np.float16) if rows else np.zeros(0, np.float16),
            token_rationale=np.concatenate([r["token_rationale"] for r in rows]).astype(bool) if rows else np.zeros(0, bool),
            patch_row=patch_row,
            patch_scores=np.stack([rows[i]["patch_scores"] for i in with_image]).astype(np.float16) if with_image else np.zeros((0, m), np.float16),
            patch_rationale=np.stack([rows[i]["patch_rationale"] for i in with_image]).astype(bool) if with_image else np.zeros((0, m), bool),
            meta=dict(meta),
        )

    def save(self, path: Path) -> None:
        _save_npz(path, {**self.meta, "format_version": FORMAT_VERSION, "keys": self.keys},
                  logits=self.logits, starts=self.starts, lengths=self.lengths, token_scores=self.token_scores,
                  token_rationale=np.packbits(self.token_rationale), n_tokens=np.array(len(self.token_rationale)),
                  patch_row=self.patch_row, patch_scores=self.patch_scores, patch_rationale=self.patch_rationale)

    @classmethod
    def load(cls, path: Path) -> TeacherOutputStore:
        def build(meta: dict[str, Any], z: Any) -> TeacherOutputStore:
            if meta.get("format_version") != FORMAT_VERSION:
                raise TeacherOutputsError(f"{path}: format {meta.get('format_version')}, this code reads {FORMAT_VERSION}")
            n_tokens = int(z["n_tokens"])
            return cls(keys=meta.pop("keys"), logits=z["logits"], starts=z["starts"], lengths=z["lengths"],
                       token_scores=z["token_scores"],
                       token_rationale=np.unpackbits(z["token_rationale"])[:n_tokens].astype(bool),
                       patch_row=z["patch_row"], patch_scores=z["patch_scores"],
                       patch_rationale=z["patch_rationale"], meta=meta)

        return _load_npz(path, ("teacher outputs", "a teacher-outputs file"), "crisislens distill teacher-outputs", build)


def _save_npz(path: Path, meta: dict[str, Any], **arrays: np.ndarray) -> None:
    """Write `arrays` and the JSON `meta` to one compressed .npz, atomically (temp file + rename)."""
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, **arrays, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))


def _load_npz(path: Path, what: tuple[str, str], command: str, build: Callable[[dict[str, Any], Any], Any]) -> Any:
    """`build(meta, arrays)` over a file `_save_npz` wrote. `what` = (what is missing, what the
    file is not): a missing file names `command`, any other unreadable one is a
    `TeacherOutputsError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what[0]}; run `{command}`")
    try:
        with np.load(path) as z:
            return build(json.loads(bytes(z["meta"]).decode()), z)
    except (KeyError, ValueError, OSError) as exc:
        if isinstance(exc, TeacherOutputsError):
            raise
        raise TeacherOutputsError(f"{path}: not {what[1]} ({exc})") from exc


def merge_outputs(keys: Sequence[str], stores: Sequence[TeacherOutputStore], meta: dict[str, Any]) -> TeacherOutputStore:
    """One store holding `keys`, each row taken from the first of `stores` that has it."""
    rows = []
    for key in keys:
        store = next((s for s in stores if key in s), None)
        if store is None:
            raise TeacherOutputsError(f"no teacher outputs for example {key!r} in any of the stores merged")
        r = store.row(key)
        rows.append({**r, "probs": np.exp(r["logits"].astype(np.float64))})
    return TeacherOutputStore.from_rows(keys, rows, meta)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def compute(model: Any, batches: Callable[[Sequence[Any]], Any], examples: Sequence[Any], keys: Sequence[str],
            meta: dict[str, Any], batch_size: int = 64) -> TeacherOutputStore:
    """Run the teacher over `examples` (length-sorted batches) and store its outputs."""
    from crisislens.distill.eval_teacher import teacher_outputs

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].text or ""))
    rows: list[dict[str, Any] | None] = [None] * len(examples)
    started = time.perf_counter()
    chunk = batch_size * 8
    for c in range(0, len(order), chunk):
        idx = order[c : c + chunk]
        # text-only and with-image rows apart: text-only batches skip the patch tokens
        for group in ([i for i in idx if examples[i].image is None], [i for i in idx if examples[i].image is not None]):
            if group:
                for i, r in zip(group, teacher_outputs(model, batches, [examples[i] for i in group], batch_size)):
                    rows[i] = r
        done = min(c + chunk, len(order))
        rate = done / max(time.perf_counter() - started, 1e-9)
        print(f"\rteacher outputs: {done}/{len(order)} ({rate:.0f}/s, ETA {(len(order) - done) / rate:.0f} s)",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return TeacherOutputStore.from_rows(keys, rows, meta)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- transfer alignment


@dataclass
class AlignmentStore:
    """The teacher's token-to-patch transfer per example with a photo and words: `shares`
    [n_i, M] (float16, `ipot.plan_shares` of its IPOT plan: row i, column j = the share of patch
    j's mass that comes from word piece i), on the word pieces `TeacherOutputStore` uses. The
    student's one-step transfer learns to reproduce it (`DistillWeights.align`). Kept apart from
    the outputs file: it is larger (about 13 MB) and only training needs it.

    Optionally (`crisislens distill teacher-alignment --states`) also the teacher's final fused
    states that plan was made from, per word piece (`token_states` [T, D]) and per patch
    (`patch_states` [K, M, D]), float16: the targets of the hidden-state alignment term
    (`DistillWeights.hidden`). About 320 MB more for the default 6,288 examples."""

    keys: list[str]
    starts: np.ndarray  # [K] int64
    lengths: np.ndarray  # [K] int32
    shares: np.ndarray  # [T, M] float16
    meta: dict[str, Any] = field(default_factory=dict)
    token_states: np.ndarray | None = None  # [T, D] float16
    patch_states: np.ndarray | None = None  # [K, M, D] float16

    def __post_init__(self) -> None:
        self.index = {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, key: str) -> np.ndarray | None:
        """[n, M] float32, or None when the example had no photo or no words."""
        i = self.index.get(key)
        if i is None:
            return None
        s, n = int(self.starts[i]), int(self.lengths[i])
        return self.shares[s : s + n].astype(np.float32)

    @property
    def has_states(self) -> bool:
        return self.token_states is not None and self.patch_states is not None

    def states(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(token states [n, D], patch states [M, D]) as float32, or None when the example is not
        stored or the file holds no states."""
        i = self.index.get(key)
        if i is None or self.token_states is None or self.patch_states is None:
            return None
        s, n = int(self.starts[i]), int(self.lengths[i])
        return self.token_states[s : s + n].astype(np.float32), self.patch_states[i].astype(np.float32)

    def save(self, path: Path) -> None:
        states = {"token_states": self.token_states, "patch_states": self.patch_states} if self.has_states else {}
        _save_npz(path, {**self.meta, "format_version": FORMAT_VERSION, "kind": "alignment", "keys": self.keys},
                  starts=self.starts, lengths=self.lengths, shares=self.shares, **states)

    @classmethod
    def load(cls, path: Path) -> AlignmentStore:
        def build(meta: dict[str, Any], z: Any) -> AlignmentStore:
            if meta.get("kind") != "alignment" or meta.get("format_version") != FORMAT_VERSION:
                raise TeacherOutputsError(f"{path}: not a teacher-alignment file of format {FORMAT_VERSION}")
            states = {k: z[k] for k in ("token_states", "patch_states") if k in z.files}
            return cls(keys=meta.pop("keys"), starts=z["starts"], lengths=z["lengths"], shares=z["shares"], meta=meta,
                       **states)

        return _load_npz(path, ("teacher alignment", "a teacher-alignment file"), "crisislens distill teacher-alignment",
                         build)


def compute_alignment(model: Any, batches: Callable[[Sequence[Any]], Any], examples: Sequence[Any],
                      keys: Sequence[str], meta: dict[str, Any], batch_size: int = 64,
                      states: bool = False) -> AlignmentStore:
    """Run the teacher's encoder and IPOT over `examples` (those with a photo) and keep, for
    each one that has words, the plan's per-patch token shares on its attention length (and,
    with `states`, the final token and patch states the plan was made from)."""
    import torch

    model.eval()
    kept: list[str] = []
    blocks: list[np.ndarray] = []
    token_blocks: list[np.ndarray] = []
    patch_blocks: list[np.ndarray] = []
    started = time.perf_counter()
    for b in range(0, len(examples), batch_size):
        inputs = batches(examples[b : b + batch_size])
        with torch.no_grad():
            shares, enc = model.alignment(inputs)
        content = model.content_mask(inputs.input_ids, inputs.attention_mask)
        for i in range(inputs.input_ids.shape[0]):
            if not bool(enc.patch_mask[i].any()) or not bool(content[i].any()):
                continue
            n = int(inputs.attention_mask[i].sum())
            kept.append(keys[b + i])
            blocks.append(shares[i, :n].numpy().astype(np.float16))
            if states:
                token_blocks.append(enc.tokens[i, :n].numpy().astype(np.float16))
                patch_blocks.append(enc.patches[i].numpy().astype(np.float16))
        done = min(b + batch_size, len(examples))
        rate = done / max(time.perf_counter() - started, 1e-9)
        print(f"\rteacher alignment: {done}/{len(examples)} ({rate:.0f}/s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    lengths = np.array([len(x) for x in blocks], np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if blocks else np.zeros(0, np.int64)
    m = blocks[0].shape[1] if blocks else 49
    shares_all = np.concatenate(blocks) if blocks else np.zeros((0, m), np.float16)
    store = AlignmentStore(kept, starts, lengths, shares_all, {**meta, "states": bool(states and blocks)})
    if states and blocks:
        store.token_states, store.patch_states = np.concatenate(token_blocks), np.stack(patch_blocks)
    return store
