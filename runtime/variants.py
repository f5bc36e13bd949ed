"""The export variants, declared once (in the manner of Ultralytics' `export_formats()`).

One row per model variant the export stage can build: its name, the file it is written to, its
precision, its quantisation kind (what a bundle manifest records and what sets up its ONNX
Runtime session), the hardware it is meant for, and the recipe that builds it. The exporter, the
bundle writer, the CLI help, calibration and the bench all iterate this table, so a variant
cannot be known to one of them and missing from another.

Torch-free: the `builder` is a name; the export stage maps it to the function that builds it.
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp32", "fp16", "int8")
QUANTIZATIONS = (None, "dynamic", "static-qdq", "weight-only")
TARGETS = ("cpu", "gpu", "tensorrt")  # a bundle variant's `intended`
BUILDERS = ("onnx", "optimize", "dynamic", "static-qdq", "weight-only", "fp16")


@dataclass(frozen=True)
class ExportVariant:
    """One row of the table.

    `quantization` is the kind a bundle records (None for fp32/fp16); `detail` says how, for
    the export report. `target` is where it is meant to run; `cpu` names the CPU preset of a
    dynamic INT8 build (`avx512_vnni` for x86, `arm64`). `text_only` quantises only the text
    side (the image tower's convolutions stay FP32)."""

    name: str
    file: str
    precision: str
    quantization: str | None
    target: str
    builder: str
    detail: str | None = None
    cpu: str | None = None
    text_only: bool = False
    summary: str = ""

    @property
    def runs_on(self) -> str:
        """Where it is meant to run, in the export report's words (`cpu-arm64` for the arm64 build)."""
        return f"{self.target}-{self.cpu}" if self.cpu == "arm64" else self.target


_GELU = "projections out of GELU FP32"
EXPORT_VARIANTS: tuple[ExportVariant, ...] = (
    ExportVariant("fp32", "model.fp32.onnx", "fp32", None, "cpu", "onnx", summary="the exported graph"),
    # The FP32 graph with ONNX Runtime's transformer fusions written in (export/optimize.py).
    ExportVariant(
        "fp32-opt",
        "model.fp32-opt.onnx",
        "fp32",
        None,
        "cpu",
        "optimize",
        summary="FP32 with ONNX Runtime's fusions written in",
    ),
    ExportVariant(
        "int8",
        "model.int8.onnx",
        "int8",
        "dynamic",
        "cpu",
        "dynamic",
        f"dynamic (avx512_vnni preset), per-channel weights; {_GELU}",
        cpu="avx512_vnni",
        summary="dynamic INT8, x86 CPUs",
    ),
    ExportVariant(
        "int8-arm64",
        "model.int8-arm64.onnx",
        "int8",
        "dynamic",
        "cpu",
        "dynamic",
        f"dynamic (arm64 preset), per-channel weights; {_GELU}",
        cpu="arm64",
        summary="dynamic INT8, arm64 CPUs",
    ),
    # Text side only (MatMul, Gather); EfficientNet's convolutions stay FP32: ONNX Runtime's
    # dynamic ConvInteger kernels are several times slower than its FP32 convolutions on x86.
    ExportVariant(
        "int8-text",
        "model.int8-text.onnx",
        "int8",
        "dynamic",
        "cpu",
        "dynamic",
        "dynamic, per-channel weights, text side only (convs and projections out of GELU FP32)",
        cpu="avx512_vnni",
        text_only=True,
        summary="dynamic INT8 on the text side, x86 CPUs",
    ),
    ExportVariant(
        "int8-qdq",
        "model.int8-qdq.onnx",
        "int8",
        "static-qdq",
        "tensorrt",
        "static-qdq",
        "static QDQ, calibrated on CrisisMMD dev; projections around GELU unquantised",
        summary="static INT8 (QDQ) for TensorRT",
    ),
    # Int8 weights (per channel), FP32 activations and compute: a quarter of the size at FP32
    # accuracy, but no faster than FP32 (see quantize.quantize_weights_only).
    ExportVariant(
        "int8-w8a32",
        "model.int8-w8a32.onnx",
        "int8",
        "weight-only",
        "cpu",
        "weight-only",
        "weight-only, per-channel int8 weights, FP32 compute",
        summary="int8 weights, FP32 compute",
    ),
    ExportVariant("fp16", "model.fp16.onnx", "fp16", None, "gpu", "fp16", summary="FP16 for GPUs"),
)
VARIANTS: dict[str, ExportVariant] = {v.name: v for v in EXPORT_VARIANTS}


def export_variant(name: str) -> ExportVariant:
    """The row called `name`; a ValueError listing the known names otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}") from None


def variants_help() -> str:
    """The variant names for a CLI help line: `fp32, fp32-opt, int8, ...`."""
    return ", ".join(VARIANTS)


__all__ = [
    "BUILDERS",
    "EXPORT_VARIANTS",
    "PRECISIONS",
    "QUANTIZATIONS",
    "TARGETS",
    "VARIANTS",
    "ExportVariant",
    "export_variant",
    "variants_help",
]
