"""Choosing the backend that runs a bundle variant: native TensorRT when it can run here, else
ONNX Runtime (which itself picks its TensorRT EP, then CUDA EP, then CPU).

`make_backend` returns the backend and one line saying why it was chosen, for logs and reports:

    onnxruntime (CPUExecutionProvider); native TensorRT not used: TensorRT is not installed
    native TensorRT: student.3f2a....engine matches this GPU, TensorRT and model (TensorRT 10.7.0 on ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from crisislens.runtime.backends.base import Backend
from crisislens.runtime.backends.engines import EngineMismatch
from crisislens.runtime.backends.gpu import GpuProbeError, TensorRTUnavailable
from crisislens.runtime.backends.ort import OnnxBackend
from crisislens.runtime.backends.trt import TensorRTBackend, TensorRTRuntimeError
from crisislens.runtime.bundle.manifest import Bundle, Variant

PREFERENCES = ("auto", "tensorrt", "onnxruntime")
ENGINE_DIR = "engines"  # default engine cache: <bundle>/engines


def make_backend(
    bundle: Bundle,
    variant: str | None = None,
    *,
    prefer: str = "auto",
    engine_cache: str | Path | None = None,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
) -> tuple[Backend, str]:
    """(backend, reason) for `bundle`'s `variant` (its default when None).

    - "auto": `TensorRTBackend` when tensorrt and cuda-python import, a GPU is found and
      `engine_cache` (default `<bundle>/engines`) holds an engine built from this variant's ONNX
      file at its precision by this TensorRT on this GPU; otherwise `OnnxBackend`, the reason
      saying what was missing. Execution `providers` mean onnxruntime was asked for.
    - "tensorrt": native TensorRT or its error (`TensorRTUnavailable`, `GpuProbeError`,
      `EngineMismatch`, `TensorRTRuntimeError`), each saying what to do.
    - "onnxruntime": `OnnxBackend` with `providers` and `threads`.
    """
    if prefer not in PREFERENCES:
        raise ValueError(f"backend preference {prefer!r} is not one of: {', '.join(PREFERENCES)}")
    spec = bundle.variant(variant)
    cache = Path(engine_cache) if engine_cache is not None else Path(bundle.path) / ENGINE_DIR
    if prefer == "onnxruntime":
        return _onnxruntime(spec, providers, threads, "asked for")
    if prefer == "tensorrt":
        if providers:
            raise ValueError("execution providers are onnxruntime's; they do not apply to the native TensorRT backend")
        backend = TensorRTBackend.from_cache(cache, spec.path, spec.precision, onnx_sha256=spec.sha256)
        return backend, f"native TensorRT (asked for): {backend.path.name} ({backend.built_for})"
    if providers:
        return _onnxruntime(spec, providers, threads, f"execution providers {', '.join(providers)} asked for")
    try:
        backend = TensorRTBackend.from_cache(cache, spec.path, spec.precision, onnx_sha256=spec.sha256)
    except TensorRTUnavailable as exc:
        return _onnxruntime(spec, None, threads, f"native TensorRT not used: {exc.missing}")
    except (GpuProbeError, EngineMismatch, TensorRTRuntimeError) as exc:
        return _onnxruntime(spec, None, threads, f"native TensorRT not used: {_first_line(exc)}")
    return backend, f"native TensorRT: {backend.path.name} matches this GPU, TensorRT and model ({backend.built_for})"


def _onnxruntime(
    spec: Variant, providers: Sequence[str] | None, threads: int | None, why: str
) -> tuple[OnnxBackend, str]:
    backend = OnnxBackend(spec.path, providers=providers, threads=threads, quantization=spec.quantization)
    return backend, f"onnxruntime ({backend.providers[0]}); {why}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


__all__ = ["ENGINE_DIR", "PREFERENCES", "make_backend"]
