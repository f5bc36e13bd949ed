"""The ONNX Runtime backend: one session over a bundle variant's model file, on the best
execution provider available (TensorRT EP, then CUDA EP, then CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.runtime.backends.feeds import model_feeds
from crisislens.runtime.signature import OUTPUT_NAMES, PATCH_KEEP

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(available: Sequence[str], requested: Sequence[str] | None = None) -> list[str]:
    """TensorRT EP, then CUDA EP, then CPU, among those available; `requested` overrides (each
    must be available)."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ValueError(
                f"execution provider(s) not available here: {', '.join(missing)}; available: {', '.join(available)}"
            )
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


def graph_inputs(session: Any) -> tuple[list[str], int | None]:
    """A session's input names, and the patch count of its `patch_keep` input (None without one)."""
    names, patches = [], None
    for i in session.get_inputs():
        names.append(i.name)
        if i.name == PATCH_KEEP and isinstance(i.shape[-1], int):
            patches = int(i.shape[-1])
    return names, patches


def session_feeds(session: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`feeds` as `session`'s graph takes them (`model_feeds`: `patch_keep` filled or left out)."""
    names, patches = graph_inputs(session)
    return model_feeds(feeds, names, patches)


class OnnxBackend:
    """One ONNX Runtime session over a model file."""

    name = "onnxruntime"

    def __init__(
        self,
        path: Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        quantization: str | None = None,
    ):
        import onnxruntime as ort

        options = session_options(quantization, threads)
        self.providers = choose_providers(ort.get_available_providers(), providers)
        self.session = ort.InferenceSession(str(path), options, providers=self.providers)
        self.path = Path(path)
        self.input_names, self.patches = graph_inputs(self.session)

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, tokens, patches = self.session.run(
            list(OUTPUT_NAMES), model_feeds(feeds, self.input_names, self.patches)
        )
        return logits, tokens, patches
