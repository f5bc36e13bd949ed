"""The model's signature, declared once: the names, dtypes and axes of its inputs and outputs.

The ONNX export writes the graph with these names and dynamic axes, the TensorRT builder makes
its optimisation profiles from them, and the engine and the backends feed and read them. An
input renamed at export is one line here.

Axes are sizes (int) or symbols: `BATCH` posts, `SEQ` word pieces, `IMAGES` posts that have a
photo (1..batch), `IMAGE` the photo's side, `CLASSES` labels and `PATCHES` patch-grid cells.

`patch_keep` is optional: graphs exported before it do not take it, and a caller that does not
make it (triage) gets all ones (`crisislens.runtime.backends.feeds.model_feeds`). It removes
patches as tokens (out of the fusion's attention and the rationale pool), the deletion a
patch-token model makes; `crisislens eval photos` measures the rationale with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

BATCH, SEQ, IMAGES, IMAGE, CLASSES, PATCHES = "batch", "seq", "images", "image", "classes", "patches"
DYNAMIC = (BATCH, SEQ, IMAGES)  # the axes a graph leaves open; the others are fixed at export


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the model: its name, numpy dtype name and axes."""

    name: str
    dtype: str
    axes: tuple[str | int, ...]
    note: str = ""

    @property
    def dynamic_axes(self) -> dict[int, str]:
        """{axis index: symbol} of the axes left open in the exported graph."""
        return {i: a for i, a in enumerate(self.axes) if isinstance(a, str) and a in DYNAMIC}


INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("input_ids", "int64", (BATCH, SEQ), "word-piece ids"),
    TensorSpec("attention_mask", "int64", (BATCH, SEQ), "1 for a word piece, 0 for padding"),
    TensorSpec("pixel_values", "float32", (IMAGES, 3, IMAGE, IMAGE), "the photos of the posts that have one"),
    TensorSpec("image_index", "int64", (BATCH,), "row of each post's photo in pixel_values, -1 without"),
    TensorSpec("patch_keep", "int64", (BATCH, PATCHES), "1 keeps a patch, 0 removes it as a token; all 1 in triage"),
)
OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("logits", "float32", (BATCH, CLASSES), "class scores, in LABEL_NAMES order"),
    TensorSpec("token_scores", "float32", (BATCH, SEQ), "rationale score of each word piece"),
    TensorSpec("patch_scores", "float32", (BATCH, PATCHES), "rationale score of each photo patch"),
)

INPUT_NAMES: tuple[str, ...] = tuple(t.name for t in INPUTS)
OUTPUT_NAMES: tuple[str, ...] = tuple(t.name for t in OUTPUTS)
INPUT_DTYPES: dict[str, str] = {t.name: t.dtype for t in INPUTS}
PATCH_KEEP = "patch_keep"
OPTIONAL_INPUT_NAMES: tuple[str, ...] = (PATCH_KEEP,)  # older graphs lack them; defaults fill them
REQUIRED_INPUT_NAMES: tuple[str, ...] = tuple(n for n in INPUT_NAMES if n not in OPTIONAL_INPUT_NAMES)


def patch_keep_count(graph_inputs: Iterable[Any], where: str = "the graph") -> int | None:
    """The fixed patch count M of a `patch_keep` [batch, M] input among an ONNX graph's inputs
    (`model.graph.input`: ValueInfo protos, read by attribute, so the runtime needs no `onnx`),
    or None when the graph takes no such input (exported before it). A `patch_keep` without a
    fixed M is an error naming `where`."""
    for value in graph_inputs:
        if value.name == PATCH_KEEP:
            dims = value.type.tensor_type.shape.dim
            if len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value > 0:
                return int(dims[1].dim_value)
            raise ValueError(f"{where}: input {PATCH_KEEP!r} has no fixed patch count")
    return None


def dynamic_axes() -> dict[str, dict[int, str]]:
    """{tensor name: {axis: symbol}} for every input and output with an open axis."""
    return {t.name: t.dynamic_axes for t in (*INPUTS, *OUTPUTS) if t.dynamic_axes}


__all__ = [
    "BATCH",
    "CLASSES",
    "DYNAMIC",
    "IMAGE",
    "IMAGES",
    "INPUTS",
    "INPUT_DTYPES",
    "INPUT_NAMES",
    "OUTPUTS",
    "OPTIONAL_INPUT_NAMES",
    "OUTPUT_NAMES",
    "PATCHES",
    "PATCH_KEEP",
    "REQUIRED_INPUT_NAMES",
    "SEQ",
    "TensorSpec",
    "dynamic_axes",
    "patch_keep_count",
]
