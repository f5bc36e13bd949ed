"""The one contract every backend keeps: `run(feeds) -> (logits, token_scores, patch_scores)`.

Feeds and outputs are named and typed by `crisislens.runtime.signature`; the engine builds the
feeds once and reads the outputs the same way whichever backend ran them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

Feeds = dict[str, npt.NDArray[np.generic]]
Outputs = tuple[npt.NDArray[np.floating], npt.NDArray[np.floating], npt.NDArray[np.floating]]


class Backend(Protocol):
    """Runs the model on a batch of feeds (`crisislens.runtime.signature.INPUTS`)."""

    name: str

    def run(self, feeds: Feeds) -> Outputs:
        """(logits [B, classes], token_scores [B, S], patch_scores [B, patches])."""
        ...


__all__ = ["Backend", "Feeds", "Outputs"]
