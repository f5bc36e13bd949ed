"""The array types the metrics take and return."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
PredictProba = Callable[[list[BoolArray]], npt.ArrayLike]


def _check_target(target: npt.ArrayLike, n: int, n_classes: int) -> npt.NDArray[np.int64]:
    array = np.asarray(target)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"target must be {n} class indices (int), got shape {array.shape} of {array.dtype}")
    bad = np.flatnonzero((array < 0) | (array >= n_classes))
    if len(bad):
        raise ValueError(f"target[{bad[0]}] = {array[bad[0]]} is not a class index in [0, {n_classes})")
    return array.astype(np.int64)
