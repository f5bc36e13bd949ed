"""TensorRT and the GPU: importing `tensorrt` and cuda-python (with what to do when they are
missing), the GPU's identity, and the errors of both.

`tensorrt` and `cuda-python` are imported inside functions only, so everything here works (and is
tested) on machines without them.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crisislens.runtime.errors import CrisisLensError


class TensorRTUnavailable(CrisisLensError, ImportError):
    """`import tensorrt` failed: says how to install it and what to do meanwhile (`hint`; by default
    the trtexec fallback the exporter writes beside the ONNX file). `missing` is the short form."""

    missing = "TensorRT is not installed"
    install = (
        "install it from NVIDIA's index (pip install tensorrt --extra-index-url https://pypi.nvidia.com) "
        "or on Jetson use JetPack's python3-libnvinfer"
    )

    def __init__(self, detail: str = "", trtexec_script: Path | None = None, *, hint: str | None = None):
        self.detail = detail
        self.trtexec_script = trtexec_script
        self.hint = hint
        if hint is None:
            where = f" ({trtexec_script})" if trtexec_script else ""
            hint = f"meanwhile use the trtexec command written beside the ONNX file{where}"
        message = f"{self.missing}: {self.install}; {hint}"
        super().__init__(f"{message} [{detail}]" if detail else message)


class CudaPythonUnavailable(TensorRTUnavailable):
    """`cuda-python` (device memory and streams for the native TensorRT backend) is missing."""

    missing = "cuda-python is not installed"
    install = (
        "pip install cuda-python (the major version of the CUDA that TensorRT uses); the native TensorRT "
        "backend needs it to move tensors to and from the GPU"
    )


class GpuProbeError(CrisisLensError, RuntimeError):
    """The GPU's name and compute capability could not be found (they are part of the engine key)."""


@dataclass(frozen=True)
class GpuInfo:
    """The GPU an engine is built on; `compute_capability` as "major.minor" (e.g. "8.7" on Orin)."""

    name: str
    compute_capability: str

    @property
    def sm(self) -> str:
        return "sm_" + self.compute_capability.replace(".", "")


_CC = re.compile(r"^\d+\.\d+$")


def parse_nvidia_smi(text: str, device: int = 0) -> GpuInfo:
    """Parse `nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader` output (line `device`)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if device >= len(lines):
        raise GpuProbeError(f"nvidia-smi lists {len(lines)} GPU(s), no device {device}: {text.strip()!r}")
    name, sep, cc = lines[device].rpartition(",")
    name, cc = name.strip(), cc.strip()
    if not sep or not name or not _CC.match(cc):
        raise GpuProbeError(
            f"cannot read a GPU name and compute capability from nvidia-smi line {lines[device]!r} "
            "(drivers before R510 do not report compute_cap)"
        )
    return GpuInfo(name, cc)


def import_tensorrt(hint: str | None = None) -> Any:
    """The `tensorrt` module, or `TensorRTUnavailable` (also when its native libraries are missing)."""
    try:
        import tensorrt
    except (ImportError, OSError) as exc:
        raise TensorRTUnavailable(f"import tensorrt failed: {exc}", hint=hint) from exc
    return tensorrt


def import_cudart(hint: str | None = None) -> Any:
    """cuda-python's runtime API module (`cuda.bindings.runtime`, or `cuda.cudart` before 12.6),
    or `CudaPythonUnavailable`."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except (ImportError, OSError):
        try:
            from cuda import cudart  # older cuda-python
        except (ImportError, OSError) as exc:
            raise CudaPythonUnavailable(f"import cuda.bindings.runtime failed: {exc}", hint=hint) from exc
    return cudart


def _gpu_from_cuda_python(device: int) -> GpuInfo:
    try:
        cudart = import_cudart()
    except CudaPythonUnavailable as exc:
        raise GpuProbeError("cuda-python is not installed") from exc
    err, props = cudart.cudaGetDeviceProperties(device)
    if err != cudart.cudaError_t.cudaSuccess:
        raise GpuProbeError(f"cudaGetDeviceProperties({device}) failed: {err}")
    name = props.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
    return GpuInfo(str(name).strip(), f"{props.major}.{props.minor}")


def _gpu_from_nvidia_smi(device: int) -> GpuInfo:
    cmd = ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GpuProbeError(f"nvidia-smi could not run: {exc}") from exc
    if out.returncode != 0:
        raise GpuProbeError(f"nvidia-smi exited {out.returncode}: {(out.stderr or out.stdout).strip()}")
    return parse_nvidia_smi(out.stdout, device)


def probe_gpu(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device `device`: from cuda-python if importable (works
    on Jetson, where nvidia-smi may be missing), else from nvidia-smi. Tests monkeypatch this."""
    problems = []
    for probe in (_gpu_from_cuda_python, _gpu_from_nvidia_smi):
        try:
            return probe(device)
        except GpuProbeError as exc:
            problems.append(str(exc))
    raise GpuProbeError(
        "cannot identify the GPU (needed for the engine cache key): "
        + "; ".join(problems)
        + ". Install cuda-python (pip install cuda-python) or make nvidia-smi available."
    )


def capturing_logger(trt: Any, keep: int = 100) -> Any:
    """A TensorRT logger that keeps the last `keep` warnings and errors, so a failed build, load or
    run can say why (bounded: a long-running backend may see a warning per batch)."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.lines.append(f"[{getattr(severity, 'name', severity)}] {msg}")
                del self.lines[:-keep]

    return _Logger()
