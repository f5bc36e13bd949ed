"""Offline graph optimisation of the exported student (transformer fusions).

Optimum's `ORTOptimizer` needs a Hugging Face model config (`model_type`) to pick its fusions;
the student is a custom graph (MiniLM layers + EfficientNet + a fusion layer), so this calls the
ONNX Runtime tool `ORTOptimizer` wraps, `onnxruntime.transformers.optimizer.optimize_model`,
with the BERT fusions for MiniLM's shape (12 heads, width 384). What it fuses on this graph is
counted and reported (`crisislens export onnx` -> reports/export.md): LayerNorm, SkipLayerNorm
and (Bias)Gelu apply; the attention fusion does not match the attention the dynamo exporter
writes, so attention stays as MatMul/Softmax.

The runtime's sessions run ONNX Runtime's own online optimisations (ORT_ENABLE_ALL) at load,
which apply the same LayerNorm/Gelu fusions; the offline pass makes them explicit in the file
(and available to runtimes that do not optimise at load), it is not expected to be faster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MINILM_HEADS = 12
MINILM_WIDTH = 384


def optimize_graph(onnx_path: Path, out_path: Path, num_heads: int = MINILM_HEADS,
                   hidden_size: int = MINILM_WIDTH) -> tuple[Path, dict[str, int]]:
    """Write the fused graph to `out_path`; returns it with the count of each fused operator."""
    from onnxruntime.transformers.optimizer import optimize_model

    # opt_level 0: only the transformer fusions; ONNX Runtime's own graph passes run at load.
    model: Any = optimize_model(str(onnx_path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                opt_level=0)
    fused = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model.save_model_to_file(str(out_path))
    return out_path, fused
