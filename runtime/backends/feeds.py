"""Model inputs for a batch of posts, and splitting a batch that a backend runs in parts.

Every backend takes the same feeds (`crisislens.runtime.signature`): the engine builds them
once, and a backend that cannot take a batch whole runs it in slices or a post at a time here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from crisislens.runtime.signature import PATCH_KEEP


def image_inputs(pixels: Sequence[np.ndarray | None], size: int) -> tuple[np.ndarray, np.ndarray]:
    """`pixel_values` [K, 3, size, size] with only the posts that have a photo, and `image_index`
    [B] (row in pixel_values, -1 without). No photo at all: one placeholder image, all -1 (the
    graph needs K >= 1; the placeholder is masked out)."""
    index = np.full(len(pixels), -1, np.int64)
    rows: list[np.ndarray] = []
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
    out = {
        "input_ids": feeds["input_ids"][start:stop],
        "attention_mask": feeds["attention_mask"][start:stop],
        "pixel_values": pixels,
        "image_index": new_index,
    }
    if PATCH_KEEP in feeds:
        out[PATCH_KEEP] = feeds[PATCH_KEEP][start:stop]
    return out


def model_feeds(feeds: dict[str, np.ndarray], names: Sequence[str], patches: int | None) -> dict[str, np.ndarray]:
    """The feeds a graph that takes `names` needs: `patch_keep` is all ones (every patch kept)
    when the caller did not make it, and left out for a graph exported before it."""
    out = {}
    for name in names:
        if name in feeds:
            out[name] = feeds[name]
        elif name == PATCH_KEEP and patches:
            out[name] = np.ones((len(feeds["image_index"]), patches), np.int64)
        else:
            raise KeyError(f"the model takes input {name!r}, which these feeds lack ({', '.join(sorted(feeds))})")
    return out


def batch_dependent(quantization: str | None) -> bool:
    """Whether a variant's outputs for a post would depend on the other posts in its call.
    Dynamic INT8 computes each activation's scale from the whole input tensor, so a post's
    neighbours (and their padding) move its scores and sometimes its label (measured in
    `research/results/bundle_rationale.md`); such variants run each post alone (`run_per_post`).
    Weight-only and static (QDQ) INT8 have fixed scales."""
    return quantization == "dynamic"


def run_per_post(
    run: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, ...]], feeds: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
