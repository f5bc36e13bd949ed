"""Quantised and half-precision variants of the exported student.

- **Dynamic INT8 (CPU)** with Optimum's `ORTQuantizer` and its per-ISA presets
  (`AutoQuantizationConfig.avx512_vnni` for x86 laptops, `.arm64` for Jetson/ARM CPUs):
  weights stored as int8, activations quantised on the fly. The word-embedding table (the
  largest tensor) is quantised too (`Gather`), which is what brings the file to ~1/4.
- **Static INT8, QDQ** (explicit quantisation, the form TensorRT 10/11 builds INT8 engines
  from): symmetric int8 activations and weights, ranges calibrated on real CrisisMMD dev posts
  with `ORTQuantizer.fit` (MinMax). Optimum's `AutoCalibrationConfig` wants a `datasets.Dataset`;
  we build the `CalibrationConfig` directly from a list of feeds instead (same calibrator).
- **FP16 (GPU)**: Optimum has no FP16 path for a custom (non-transformers) graph, so this uses
  the ONNX Runtime tool it wraps for its own models (`onnxruntime.transformers.float16`), keeping
  inputs/outputs in their original types.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CPU_TARGETS = ("avx512_vnni", "avx2", "arm64")
TEXT_OPERATORS = ("MatMul", "Gather", "Attention", "EmbedLayerNormalization")  # no Conv: see pipeline.VARIANTS


def _quantizer(onnx_path: Path, workdir: Path) -> Any:
    from optimum.onnxruntime import ORTQuantizer

    src = workdir / "model.onnx"
    shutil.copyfile(onnx_path, src)
    return ORTQuantizer.from_pretrained(workdir, file_name="model.onnx")


def _move_result(result: Path, out_path: Path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(result), out_path)
    return out_path


def quantize_dynamic(onnx_path: Path, out_path: Path, target: str = "avx512_vnni",
                     operators: Sequence[str] | None = None) -> Path:
    """Dynamic INT8 for CPUs (`target` in CPU_TARGETS picks Optimum's preset)."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if target not in CPU_TARGETS:
        raise ValueError(f"unknown CPU target {target!r}; choose one of {', '.join(CPU_TARGETS)}")
    preset = getattr(AutoQuantizationConfig, target)
    kwargs: dict[str, Any] = {"is_static": False, "per_channel": False}
    if operators is not None:
        kwargs["operators_to_quantize"] = list(operators)
    config = preset(**kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        q = _quantizer(Path(onnx_path), Path(tmp))
        q.quantize(config, save_dir=Path(tmp) / "out", file_suffix="int8")
        return _move_result(Path(tmp) / "out" / "model_int8.onnx", out_path)


def quantize_static_qdq(onnx_path: Path, out_path: Path, calibration: Sequence[dict[str, np.ndarray]],
                        operators: Sequence[str] = ("MatMul", "Conv", "Gemm")) -> Path:
    """Static INT8 with Q/DQ nodes (symmetric, per-channel weights), calibrated on `calibration`
    feeds (one post per feed: arrays without the batch dimension, as Optimum's reader adds it)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantizationMode, QuantType
    from optimum.onnxruntime.configuration import CalibrationConfig, QuantizationConfig

    if not calibration:
        raise ValueError("static quantisation needs calibration posts")
    calib = CalibrationConfig(dataset_name="crisismmd-dev", dataset_config_name="humanitarian", dataset_split="dev",
                              dataset_num_samples=len(calibration), method=CalibrationMethod.MinMax)
    config = QuantizationConfig(is_static=True, format=QuantFormat.QDQ, mode=QuantizationMode.QLinearOps,
                                activations_dtype=QuantType.QInt8, activations_symmetric=True,
                                weights_dtype=QuantType.QInt8, weights_symmetric=True, per_channel=True,
                                operators_to_quantize=list(operators))
    with tempfile.TemporaryDirectory() as tmp:
        q = _quantizer(Path(onnx_path), Path(tmp))
        ranges = q.fit(dataset=list(calibration), calibration_config=calib,
                       onnx_augmented_model_name=Path(tmp) / "augmented.onnx", operators_to_quantize=list(operators))
        q.quantize(config, save_dir=Path(tmp) / "out", file_suffix="qdq", calibration_tensors_range=ranges)
        return _move_result(Path(tmp) / "out" / "model_qdq.onnx", out_path)


def convert_fp16(onnx_path: Path, out_path: Path) -> Path:
    """FP16 weights and compute; inputs and outputs keep their types (keep_io_types)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(onnx_path))
    half = convert_float_to_float16(model, keep_io_types=True)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(out_path))
    return out_path
