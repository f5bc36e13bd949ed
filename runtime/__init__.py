"""CrisisLens runtime: the torch-free core.

The label set, the `Post` and `Prediction` types, reading cached posts, metrics and (later)
preprocessing, the model-bundle format and the inference backends. Nothing in this package
imports torch or transformers; the training, export and TUI stages stand on it.
"""

from crisislens.runtime.labels import LABEL_NAMES, LABELS, Label, label_index, to_humanitarian5
from crisislens.runtime.schema import Post, Prediction, TokenScore

__all__ = [
    "LABELS",
    "LABEL_NAMES",
    "Label",
    "Post",
    "Prediction",
    "TokenScore",
    "label_index",
    "to_humanitarian5",
]
