"""The native TensorRT backend: runs an engine built by `crisislens export tensorrt` with the
`tensorrt` Python API and cuda-python for device memory, behind the same `run(feeds)` contract as
`OnnxBackend` (logits [B,5], token_scores [B,S], patch_scores [B,49], all float32).

Only an engine whose sidecar says it was built from this ONNX file, at this precision, by this
TensorRT on this GPU is loaded (`TensorRTBackend.from_cache`); anything else is refused with the
field that differs. Each batch runs under the smallest optimisation profile that covers it; a batch
larger than every profile runs in chunks. Device buffers grow when a larger shape arrives and are
reused otherwise.

`tensorrt` and cuda-python are imported inside functions: this module imports on any machine.
Written against TensorRT 10.x (name-based I/O, `execute_async_v3`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.runtime.backends.engines import DEFAULT_STEM, EngineMismatch, EngineTarget, find_engine_for
from crisislens.runtime.backends.feeds import model_feeds, slice_feeds
from crisislens.runtime.backends.gpu import capturing_logger, import_cudart, import_tensorrt, probe_gpu
from crisislens.runtime.backends.profiles import ProfileSpec, plan_batches
from crisislens.runtime.bundle.manifest import hash_file
from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.signature import OUTPUT_NAMES, PATCH_KEEP, REQUIRED_INPUT_NAMES

RUNTIME_HINT = (
    'meanwhile run the ONNX model with onnxruntime (make_backend(..., prefer="auto") falls back to '
    'it by itself; prefer="onnxruntime" forces it)'
)


class TensorRTRuntimeError(CrisisLensError, RuntimeError):
    """A CUDA call or TensorRT failed while loading or running an engine; the message names the call."""


# ----------------------------------------------------------------------------- small pure pieces


def cuda_check(cudart: Any, result: Any, what: str) -> Any:
    """cuda-python returns `(error, *values)`: the value(s), or `TensorRTRuntimeError` naming `what`
    and the CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise TensorRTRuntimeError(f"{what} failed: {_cuda_error_text(cudart, err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _cuda_error_text(cudart: Any, err: Any) -> str:
    try:
        name, text = cudart.cudaGetErrorName(err)[1], cudart.cudaGetErrorString(err)[1]
    except Exception:  # describing an error must not hide it
        return str(err)

    def decode(b: object) -> str:
        return b.decode("utf-8", "replace") if isinstance(b, (bytes, bytearray)) else str(b)

    return f"{decode(name)}: {decode(text)}"


def to_engine_dtype(name: str, array: np.ndarray, dtype: Any) -> np.ndarray:
    """`array` as the engine input `name` wants it: its dtype, C-contiguous (what a raw copy needs).

    int64 ids into an engine built with int32 (TensorRT 8.6 narrows them) are checked to fit;
    floats are never truncated into an integer or bool input; ints become bool only from 0/1.
    """
    dtype = np.dtype(dtype)
    arr = np.asarray(array)
    src, dst = arr.dtype.kind, dtype.kind
    if src == "f" and dst in "iub":
        raise ValueError(f"input {name!r} is {arr.dtype} but the engine takes {dtype}: refusing to truncate")
    if arr.size and src in "iu" and dst in "iu":
        info, lo, hi = np.iinfo(dtype), int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            raise ValueError(f"input {name!r} holds {lo}..{hi}, outside the engine's {dtype} ({info.min}..{info.max})")
    if arr.size and src in "iu" and dst == "b" and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"input {name!r} holds values other than 0/1 but the engine takes bool")
    return np.ascontiguousarray(arr, dtype=dtype)


def grown_capacity(current: int, needed: int) -> int | None:
    """Bytes to allocate for a tensor of `needed` bytes when `current` are allocated: None when they
    suffice, else at least double (growing batches reallocate a few times, not at every size) and
    at least 1 (TensorRT wants a real address even for an empty tensor)."""
    if needed <= current and current > 0:
        return None
    return max(needed, 2 * current, 1)


@dataclass
class DeviceBuffers:
    """One device allocation per tensor name, grown when a larger shape needs it, else reused."""

    malloc: Callable[[int], int]
    free: Callable[[int], None]
    pointers: dict[str, int] = field(default_factory=dict)
    capacity: dict[str, int] = field(default_factory=dict)
    allocations: int = 0

    def ensure(self, name: str, nbytes: int) -> int:
        """The device address of `name`'s buffer, holding at least `nbytes`."""
        size = grown_capacity(self.capacity.get(name, 0), nbytes)
        if size is None:
            return self.pointers[name]
        old = self.pointers.pop(name, None)
        self.capacity.pop(name, None)
        if old is not None:
            self.free(old)
        self.pointers[name] = self.malloc(size)
        self.capacity[name] = size
        self.allocations += 1
        return self.pointers[name]

    def release(self) -> None:
        pointers, self.pointers, self.capacity = list(self.pointers.values()), {}, {}
        for ptr in pointers:
            self.free(ptr)


# ----------------------------------------------------------------------------- the backend


@dataclass(frozen=True)
class TensorInfo:
    name: str
    is_input: bool
    dtype: np.dtype


def engine_tensors(trt: Any, engine: Any) -> dict[str, TensorInfo]:
    """The engine's I/O tensors by name, with numpy dtypes (TensorRT 10's name-based API)."""
    tensors = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        trt_dtype = engine.get_tensor_dtype(name)
        try:
            dtype = np.dtype(trt.nptype(trt_dtype))
        except TypeError as exc:
            raise TensorRTRuntimeError(
                f"tensor {name!r} has TensorRT type {trt_dtype}, which numpy cannot hold"
            ) from exc
        tensors[name] = TensorInfo(name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT, dtype)
    return tensors


def check_signature(path: Path, tensors: Mapping[str, TensorInfo]) -> None:
    """The engine must take exactly the runtime's inputs and give at least its outputs."""
    inputs = sorted(n for n, t in tensors.items() if t.is_input)
    outputs = {n for n, t in tensors.items() if not t.is_input}
    missing = sorted(set(OUTPUT_NAMES) - outputs)
    if sorted(set(inputs) - {PATCH_KEEP}) != sorted(REQUIRED_INPUT_NAMES) or missing:
        raise TensorRTRuntimeError(
            f"{path}: the engine takes {inputs} and gives {sorted(outputs)}; the runtime "
            f"feeds {sorted(REQUIRED_INPUT_NAMES)} (and {PATCH_KEEP!r} where the graph has it) and reads "
            f"{list(OUTPUT_NAMES)}: not a student engine"
        )


class TensorRTBackend:
    """A TensorRT engine with one execution context, one CUDA stream and reusable device buffers.

    Build it with `from_cache` (which checks the engine was built for this machine); the constructor
    trusts the caller about that. Not thread-safe: one batch at a time, like the engine that calls it.
    """

    name = "tensorrt"
    providers = ["TensorRT (native)"]

    def __init__(
        self,
        engine_path: str | Path,
        profiles: Sequence[ProfileSpec],
        *,
        engine_sha256: str | None = None,
        device: int = 0,
        built_for: str = "",
    ):
        self.path = Path(engine_path)
        self.profiles = tuple(profiles)
        self.built_for = built_for
        self._stream: Any = None
        self._context: Any = None
        if not self.profiles:
            raise ValueError(f"{self.path}: no optimisation profiles given")
        trt = import_tensorrt(RUNTIME_HINT)
        self._cudart = cudart = import_cudart(RUNTIME_HINT)
        self._buffers = DeviceBuffers(self._malloc, self._free)
        data = self.path.read_bytes()
        if engine_sha256 is not None and hashlib.sha256(data).hexdigest() != engine_sha256:
            raise EngineMismatch(
                f"{self.path}: its sha256 is not the one its sidecar records (replaced or corrupt); "
                "rebuild it with `crisislens export tensorrt --force`"
            )
        cuda_check(cudart, cudart.cudaSetDevice(device), f"cudaSetDevice({device})")
        self._logger = capturing_logger(trt)
        self._runtime = trt.Runtime(self._logger)  # must outlive the engine
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise TensorRTRuntimeError(f"{self.path}: TensorRT could not deserialise the engine{self._log_tail()}")
        self.tensors = engine_tensors(trt, self._engine)
        check_signature(self.path, self.tensors)
        self.input_names = [n for n, t in self.tensors.items() if t.is_input]
        if self._engine.num_optimization_profiles != len(self.profiles):
            raise TensorRTRuntimeError(
                f"{self.path}: the engine has {self._engine.num_optimization_profiles} "
                f"optimisation profiles, its sidecar records {len(self.profiles)}"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise TensorRTRuntimeError(
                f"{self.path}: TensorRT could not create an execution context (out of GPU memory?){self._log_tail()}"
            )
        self._stream = cuda_check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._profile: int | None = None
        # the patch count of an engine built from a graph with `patch_keep` (its fixed last axis)
        self._patches = int(self._engine.get_tensor_shape(PATCH_KEEP)[-1]) if PATCH_KEEP in self.tensors else None

    @classmethod
    def from_cache(
        cls,
        cache_dir: str | Path,
        onnx_path: str | Path,
        precision: str,
        *,
        onnx_sha256: str | None = None,
        stem: str = DEFAULT_STEM,
        device: int = 0,
    ) -> TensorRTBackend:
        """The cached engine built from `onnx_path` at `precision` by this TensorRT on this GPU.

        Raises `TensorRTUnavailable` (tensorrt or cuda-python missing), `GpuProbeError`, or
        `EngineMismatch` naming what differs and how to build a matching engine. `onnx_sha256`
        skips hashing the file (a bundle's manifest already has it).
        """
        trt = import_tensorrt(RUNTIME_HINT)
        import_cudart(RUNTIME_HINT)
        gpu = probe_gpu(device)
        target = EngineTarget(
            onnx_sha256 or hash_file(onnx_path), str(trt.__version__), gpu.name, gpu.compute_capability, precision
        )
        try:
            engine, record = find_engine_for(cache_dir, target, stem)
        except EngineMismatch as exc:
            raise EngineMismatch(
                f"{exc}. Build one here with `crisislens export tensorrt --onnx {onnx_path} "
                f"--precision {precision} --cache-dir {cache_dir}`",
                exc.differing,
            ) from exc
        return cls(
            engine,
            record.fields.profiles,
            engine_sha256=record.engine_sha256,
            device=device,
            built_for=record.fields.describe(),
        )

    # -- running ----------------------------------------------------------------------------------

    def run(self, feeds: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._context is None:
            raise TensorRTRuntimeError(f"{self.path}: the backend is closed")
        batch, seq = np.shape(feeds["input_ids"])
        parts = [
            self._run_profile(slice_feeds(dict(feeds), start, stop), profile)
            for start, stop, profile in plan_batches(self.profiles, int(batch), int(seq))
        ]
        if len(parts) == 1:
            return parts[0]
        logits, tokens, patches = (np.concatenate(arrays) for arrays in zip(*parts))
        return logits, tokens, patches

    def _run_profile(self, feeds: Mapping[str, np.ndarray], profile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cudart, context = self._cudart, self._context
        stream_handle = int(self._stream)
        if profile != self._profile:
            if not context.set_optimization_profile_async(profile, stream_handle):
                raise TensorRTRuntimeError(f"TensorRT refused optimisation profile #{profile}{self._log_tail()}")
            self._profile = profile
        hosts = {}
        for name, value in model_feeds(dict(feeds), self.input_names, self._patches).items():
            hosts[name] = to_engine_dtype(name, value, self.tensors[name].dtype)
            if not context.set_input_shape(name, hosts[name].shape):
                raise TensorRTRuntimeError(
                    f"TensorRT refused shape {hosts[name].shape} for input {name!r} under "
                    f"profile #{profile} ({self.profiles[profile].describe()}){self._log_tail()}"
                )
        outputs = {}
        for name, info in self.tensors.items():
            if not info.is_input:
                shape = tuple(context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise TensorRTRuntimeError(
                        f"output {name!r} has an unresolved shape {shape} after setting the inputs"
                    )
                outputs[name] = np.empty(shape, info.dtype)
        for name, array in (*hosts.items(), *outputs.items()):
            if not context.set_tensor_address(name, self._buffers.ensure(name, array.nbytes)):
                raise TensorRTRuntimeError(f"TensorRT refused the device address of {name!r}{self._log_tail()}")
        # Pageable host arrays: the copies stage through the driver, and the stream sync below
        # orders them; `hosts` and `outputs` stay referenced until then.
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        for name, array in hosts.items():
            cuda_check(
                cudart,
                cudart.cudaMemcpyAsync(
                    self._buffers.pointers[name], array.ctypes.data, array.nbytes, to_device, self._stream
                ),
                f"cudaMemcpyAsync({name} to the GPU)",
            )
        if not context.execute_async_v3(stream_handle):
            raise TensorRTRuntimeError(f"{self.path}: TensorRT failed to run the batch{self._log_tail()}")
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, array in outputs.items():
            cuda_check(
                cudart,
                cudart.cudaMemcpyAsync(
                    array.ctypes.data, self._buffers.pointers[name], array.nbytes, to_host, self._stream
                ),
                f"cudaMemcpyAsync({name} from the GPU)",
            )
        cuda_check(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        logits, tokens, patches = (outputs[n].astype(np.float32, copy=False) for n in OUTPUT_NAMES)
        return logits, tokens, patches

    # -- memory -----------------------------------------------------------------------------------

    def _malloc(self, nbytes: int) -> int:
        return int(cuda_check(self._cudart, self._cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes} bytes)"))

    def _free(self, pointer: int) -> None:
        cuda_check(self._cudart, self._cudart.cudaFree(pointer), "cudaFree")

    def _log_tail(self) -> str:
        lines = self._logger.lines[-5:]
        return (":\n  " + "\n  ".join(lines)) if lines else ""

    def close(self) -> None:
        """Free the device buffers and the stream (also done when the backend is garbage-collected)."""
        if self._context is None and self._stream is None:
            return
        self._context = None
        self._buffers.release()
        stream, self._stream = self._stream, None
        if stream is not None:
            cuda_check(self._cudart, self._cudart.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # at interpreter exit CUDA may already be gone; nothing left to report to
            pass


__all__ = [
    "RUNTIME_HINT",
    "DeviceBuffers",
    "TensorInfo",
    "TensorRTBackend",
    "TensorRTRuntimeError",
    "check_signature",
    "cuda_check",
    "engine_tensors",
    "grown_capacity",
    "to_engine_dtype",
]
