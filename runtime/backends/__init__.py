"""The backends that run a bundle variant, behind one `Backend` protocol.

- `ort`: ONNX Runtime (its TensorRT, CUDA or CPU execution provider);
- `trt`: native TensorRT, from an engine built by `crisislens export tensorrt`;
- `engines`, `profiles`, `gpu`: the engine cache, optimisation profiles and the GPU probe that
  decide whether a cached engine may run here;
- `feeds`: model inputs for a batch, and running a batch in slices or a post at a time;
- `select`: `make_backend`, which picks native TensorRT when it can run here, else ONNX Runtime.
"""

from crisislens.runtime.backends.base import Backend, Feeds, Outputs
from crisislens.runtime.backends.select import ENGINE_DIR, PREFERENCES, make_backend

__all__ = ["ENGINE_DIR", "PREFERENCES", "Backend", "Feeds", "Outputs", "make_backend"]
