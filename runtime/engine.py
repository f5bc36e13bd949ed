"""Posts in, Predictions out: the bundle's preprocessing, an ONNX Runtime backend, and the
post-processing that turns scores into words and patch grids. No torch.

A post whose photo cannot be used is still classified from its text, with the reason in
`input_warnings`; nothing in one post can stop a batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.preprocess import ImageError, TextEncoder, load_image, words_with_scores
from crisislens.runtime.schema import Post, Prediction, TokenScore
from crisislens.runtime.signature import INPUT_NAMES, OUTPUT_NAMES

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(available: Sequence[str], requested: Sequence[str] | None = None) -> list[str]:
    """TensorRT EP, then CUDA EP, then CPU, among those available; `requested` overrides (each
    must be available)."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ValueError(f"execution provider(s) not available here: {', '.join(missing)}; "
                             f"available: {', '.join(available)}")
        return list(requested)
    chosen = [p for p in PROVIDER_ORDER if p in available]
    return chosen or list(available)


def session_options(quantization: str | None = None, threads: int | None = None) -> Any:
    """ONNX Runtime session options for a bundle variant (the runtime and the export checks share them).

    A weight-only model ("weight-only": int8 weights behind DequantizeLinear, FP32 compute) is
    meant to be dequantised once: ONNX Runtime skips DequantizeLinear in constant folding while
    its QDQ optimisations are on (it would rather fuse them into int8 kernels), which left the
    weights dequantised on every call, 1.6x slower than FP32; with QDQ optimisations off they are
    folded into FP32 weights at load."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    if quantization == "weight-only":
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return options


class OnnxBackend:
    """One ONNX Runtime session over a model file."""

    name = "onnxruntime"

    def __init__(self, path: Path, *, providers: Sequence[str] | None = None, threads: int | None = None,
                 quantization: str | None = None):
        import onnxruntime as ort

        options = session_options(quantization, threads)
        self.providers = choose_providers(ort.get_available_providers(), providers)
        self.session = ort.InferenceSession(str(path), options, providers=self.providers)
        self.path = Path(path)

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, tokens, patches = self.session.run(list(OUTPUT_NAMES), {k: feeds[k] for k in INPUT_NAMES})
        return logits, tokens, patches


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


def image_inputs(pixels: Sequence[np.ndarray | None], size: int) -> tuple[np.ndarray, np.ndarray]:
    """`pixel_values` [K, 3, size, size] with only the posts that have a photo, and `image_index`
    [B] (row in pixel_values, -1 without). No photo at all: one placeholder image, all -1 (the
    graph needs K >= 1; the placeholder is masked out)."""
    index = np.full(len(pixels), -1, np.int64)
    rows = []
    for i, p in enumerate(pixels):
        if p is not None:
            index[i] = len(rows)
            rows.append(p)
    stacked = np.stack(rows).astype(np.float32, copy=False) if rows else np.zeros((1, 3, size, size), np.float32)
    return stacked, index


def slice_feeds(feeds: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    """Posts start..stop of a batch, with their photos re-indexed (for backends that split a
    batch larger than they take)."""
    index = feeds["image_index"][start:stop]
    used = index >= 0
    new_index = np.full(len(index), -1, np.int64)
    new_index[used] = np.arange(int(used.sum()))
    pixels = feeds["pixel_values"][index[used]] if used.any() else np.zeros_like(feeds["pixel_values"][:1])
    return {"input_ids": feeds["input_ids"][start:stop], "attention_mask": feeds["attention_mask"][start:stop],
            "pixel_values": pixels, "image_index": new_index}


def batch_dependent(quantization: str | None) -> bool:
    """Whether a variant's outputs for a post would depend on the other posts in its call.
    Dynamic INT8 computes each activation's scale from the whole input tensor, so a post's
    neighbours (and their padding) move its scores and sometimes its label (measured in
    `reports/bundle_rationale.md`); such variants run each post alone (`run_per_post`).
    Weight-only and static (QDQ) INT8 have fixed scales."""
    return quantization == "dynamic"


def run_per_post(run: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, ...]],
                 feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`run` on each post alone, its tokens cut to its own length, so that neither the other
    posts nor the batch's padding can change its outputs; token scores are padded back (zeros)."""
    width = feeds["input_ids"].shape[1]
    logits, tokens, patches = [], [], []
    for i in range(len(feeds["image_index"])):
        one = slice_feeds(feeds, i, i + 1)
        n = max(1, int(one["attention_mask"][0].sum()))
        one["input_ids"], one["attention_mask"] = one["input_ids"][:, :n], one["attention_mask"][:, :n]
        lg, tk, pt = run(one)
        logits.append(lg)
        tokens.append(np.pad(tk, ((0, 0), (0, width - tk.shape[1]))))
        patches.append(pt)
    return np.concatenate(logits), np.concatenate(tokens), np.concatenate(patches)


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

    def __init__(self, bundle: Any, variant: str | None = None, *, providers: Sequence[str] | None = None,
                 threads: int | None = None, backend: Any | None = None, image_batch: int = IMAGE_BATCH,
                 prefer: str = "auto", engine_cache: Path | None = None):
        self.bundle = bundle
        self.variant = bundle.variant(variant)
        self.text_config = bundle.text_config
        self.image_config = bundle.image_config
        self.encoder = TextEncoder.from_file(bundle.tokenizer_path, self.text_config)
        if backend is None:
            from crisislens.runtime.backends import make_backend  # it imports this module

            backend, self.backend_reason = make_backend(bundle, variant, prefer=prefer, engine_cache=engine_cache,
                                                        providers=providers, threads=threads)
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
        feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "pixel_values": pixels,
                 "image_index": index}
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
        parts = [self.backend.run(slice_feeds(feeds, start, min(start + self.image_batch, n)))
                 for start in range(0, n, self.image_batch)]
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
            out.append(Prediction(
                post_id=post.id, label=label,
                probabilities={name: float(p) for name, p in zip(LABEL_NAMES, probs[i])},
                token_rationale=tuple(TokenScore(w.word, w.start, w.end, round(w.score, 4)) for w in words),
                patch_rationale=grid, timings={k: round(v, 3) for k, v in per_post.items()},
                model_id=self.model_id, input_warnings=tuple(prep.warnings[i]),
            ))
        return out
