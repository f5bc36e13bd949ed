"""The model's signature, declared once: the names, dtypes and axes of its inputs and outputs.

The ONNX export writes the graph with these names and dynamic axes, the TensorRT builder makes
its optimisation profiles from them, and the engine and the backends feed and read them. An
input renamed at export is one line here.

Axes are sizes (int) or symbols: `BATCH` posts, `SEQ` word pieces, `IMAGES` posts that have a
photo (1..batch), `IMAGE` the photo's side, `CLASSES` labels and `PATCHES` patch-grid cells.
"""

from __future__ import annotations

from dataclasses import dataclass

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
)
OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("logits", "float32", (BATCH, CLASSES), "class scores, in LABEL_NAMES order"),
    TensorSpec("token_scores", "float32", (BATCH, SEQ), "rationale score of each word piece"),
    TensorSpec("patch_scores", "float32", (BATCH, PATCHES), "rationale score of each photo patch"),
)

INPUT_NAMES: tuple[str, ...] = tuple(t.name for t in INPUTS)
OUTPUT_NAMES: tuple[str, ...] = tuple(t.name for t in OUTPUTS)
INPUT_DTYPES: dict[str, str] = {t.name: t.dtype for t in INPUTS}


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
    "OUTPUT_NAMES",
    "PATCHES",
    "SEQ",
    "TensorSpec",
    "dynamic_axes",
]
