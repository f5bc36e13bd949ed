"""Posts in, Predictions out: the bundle's preprocessing, an ONNX Runtime backend, and the
post-processing that turns scores into words and patch grids. No torch.

A post whose photo cannot be used is still classified from its text, with the reason in
`input_warnings`; nothing in one post can stop a batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crisislens.runtime.backends.base import Backend
from crisislens.runtime.backends.feeds import batch_dependent, image_inputs, run_per_post, slice_feeds
from crisislens.runtime.backends.select import make_backend
from crisislens.runtime.bundle.manifest import Bundle
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.preprocessing import ImageError, TextEncoder, load_image, words_with_scores
from crisislens.runtime.schema import Post, Prediction, TokenScore


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def restrict(probs: np.ndarray, classes: Sequence[str] | None) -> np.ndarray:
    """Probabilities renormalised over `classes` (the others set to 0), e.g. for zero-shot use on
    a dataset with fewer labels."""
    if not classes:
        return probs
    unknown = [c for c in classes if c not in LABEL_NAMES]
    if unknown:
        raise ValueError(f"unknown class(es) {', '.join(unknown)}; the labels are {', '.join(LABEL_NAMES)}")
    keep = np.array([name in set(classes) for name in LABEL_NAMES])
    out = np.where(keep, probs, 0.0)
    return out / np.clip(out.sum(axis=-1, keepdims=True), 1e-12, None)


@dataclass
class Prepared:
    feeds: dict[str, np.ndarray]
    cleaned: list[str]
    offsets: list[list[tuple[int, int]]]
    warnings: list[list[str]]
    seconds: float


class Engine:
    """A bundle variant ready to predict."""

    # Photos per model call: a batch with more is run in slices. The image tower's activations
    # for 32 photos at 224 px dominate peak memory; 8 at a time keeps the throughput.
    IMAGE_BATCH = 8

    def __init__(
        self,
        bundle: Bundle,
        variant: str | None = None,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        backend: Backend | None = None,
        image_batch: int = IMAGE_BATCH,
        prefer: str = "auto",
        engine_cache: Path | None = None,
    ):
        self.bundle = bundle
        self.variant = bundle.variant(variant)
        self.text_config = bundle.text_config
        self.image_config = bundle.image_config
        self.encoder = TextEncoder.from_file(bundle.tokenizer_path, self.text_config)
        if backend is None:
            backend, self.backend_reason = make_backend(
                bundle, variant, prefer=prefer, engine_cache=engine_cache, providers=providers, threads=threads
            )
        else:
            self.backend_reason = "given"
        self.backend = backend
        self.model_id = f"{bundle.sha256[:12]}:{self.variant.name}"
        self.image_batch = max(1, int(image_batch))
        self.per_post = batch_dependent(self.variant.quantization)
        # The bundle's softmax temperature (1 when none was fitted); set 1.0 to see the raw model.
        self.temperature = self.variant.temperature
        self.grid = self.image_config.patch_grid

    # -- preprocessing ---------------------------------------------------------------------

    def prepare(self, posts: Sequence[Post]) -> Prepared:
        t0 = time.perf_counter()
        batch = self.encoder.encode_batch([p.text for p in posts])
        photos: list[np.ndarray | None] = [None] * len(posts)
        warnings = [list(p.warnings) + list(w) for p, w in zip(posts, batch.warnings)]
        for i, post in enumerate(posts):
            if post.image is None:
                continue
            try:
                photos[i], notes = load_image(post.image, self.image_config)
                warnings[i].extend(notes)
            except ImageError as exc:
                warnings[i].append(f"image not used: {exc}")
        pixels, index = image_inputs(photos, self.image_config.size)
        feeds = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "pixel_values": pixels,
            "image_index": index,
        }
        return Prepared(feeds, batch.cleaned, batch.offsets, warnings, time.perf_counter() - t0)

    # -- prediction --------------------------------------------------------------------------

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The backend over `feeds`, in slices of at most `image_batch` photos (a post at a time
        for a variant whose outputs depend on the batch: `batch_dependent`)."""
        if self.per_post:
            return run_per_post(self.backend.run, feeds)
        n = len(feeds["image_index"])
        if int((feeds["image_index"] >= 0).sum()) <= self.image_batch:
            return self.backend.run(feeds)
        parts = [
            self.backend.run(slice_feeds(feeds, start, min(start + self.image_batch, n)))
            for start in range(0, n, self.image_batch)
        ]
        logits, tokens, patches = (np.concatenate(p) for p in zip(*parts))
        return logits, tokens, patches

    def predict(self, posts: Sequence[Post], classes: Sequence[str] | None = None) -> list[Prediction]:
        if not posts:
            return []
        prep = self.prepare(posts)
        t0 = time.perf_counter()
        logits, token_scores, patch_scores = self.run(prep.feeds)
        model_s = time.perf_counter() - t0
        probs = restrict(softmax(logits.astype(np.float64) / self.temperature), classes)
        per_post = {"preprocess": prep.seconds * 1000 / len(posts), "model": model_s * 1000 / len(posts)}
        out = []
        for i, post in enumerate(posts):
            n = int(prep.feeds["attention_mask"][i].sum())
            words = words_with_scores(prep.cleaned[i], prep.offsets[i][:n], token_scores[i, :n].astype(float).tolist())
            grid = None
            if prep.feeds["image_index"][i] >= 0:
                g = patch_scores[i].astype(float).reshape(self.grid, self.grid)
                grid = tuple(tuple(row) for row in g.tolist())
            label = LABEL_NAMES[int(probs[i].argmax())]
            out.append(
                Prediction(
                    post_id=post.id,
                    label=label,
                    probabilities={name: float(p) for name, p in zip(LABEL_NAMES, probs[i])},
                    token_rationale=tuple(TokenScore(w.word, w.start, w.end, round(w.score, 4)) for w in words),
                    patch_rationale=grid,
                    timings={k: round(v, 3) for k, v in per_post.items()},
                    model_id=self.model_id,
                    input_warnings=tuple(prep.warnings[i]),
                )
            )
        return out
