"""Quantised and half-precision variants of the exported student.

- **Dynamic INT8 (CPU)** with Optimum's `ORTQuantizer` and its per-ISA presets
  (`AutoQuantizationConfig.avx512_vnni` for x86 laptops, `.arm64` for Jetson/ARM CPUs):
  weights stored as int8 with one scale per output column (per channel), activations quantised
  on the fly; one scale per weight matrix moves more labels. The pipeline keeps the projections
  out of each GELU in FP32 (`keep_gelu_down`): fewer labels move, for a little more time a post
  (research/results/quantization.md measures both choices on dev). The word-embedding table
  (the largest tensor) is quantised too (`Gather`), which is what makes the file small.
- **Static INT8, QDQ** (explicit quantisation, the form TensorRT 10/11 builds INT8 engines
  from): symmetric int8 activations and weights, ranges calibrated on real CrisisMMD dev posts
  with `ORTQuantizer.fit` (MinMax). Optimum's `AutoCalibrationConfig` wants a `datasets.Dataset`;
  we build the `CalibrationConfig` directly from a list of feeds instead (same calibrator).
  The feed-forward projections on either side of each GELU (`gelu_projections`) get no Q/DQ
  and stay in the engine's float precision: a calibrated int8 range cannot hold the outliers of
  MiniLM's GELU outputs (research/results/quantization.md measures how many dev labels they move).
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

from crisislens.runtime.signature import PATCH_KEEP

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


_PROJECTIONS = ("MatMul", "Gemm")
_GELU_STEPS = ("Add", "Mul", "Div", "Cast")  # the elementwise steps of x * 0.5 * (1 + erf(x / sqrt 2))


def gelu_projections(onnx_path: Path) -> dict[str, list[str]]:
    """Names of the MatMul/Gemm nodes on either side of each GELU (found by its `Erf`): "up",
    the projection whose output the GELU takes (through its bias Add and the division by
    sqrt 2), and "down", the one that takes the GELU's output (x * 0.5 * (1 + erf))."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: dict[str, list[str]] = {"up": [], "down": []}
    for erf in (n for n in graph.node if n.op_type == "Erf"):
        node = producer.get(erf.input[0])
        for _ in range(4):  # back through Div / Add / Mul / Cast to the projection
            if node is None or node.op_type in _PROJECTIONS:
                break
            node = producer.get(node.input[0]) if node.op_type in _GELU_STEPS else None
        if node is not None and node.op_type in _PROJECTIONS:
            found["up"].append(node.name)
        node = erf
        for _ in range(4):  # forward through the Add and Muls of x * 0.5 * (1 + erf)
            nxt = consumers.get(node.output[0], [])
            if len(nxt) != 1:
                break
            node = nxt[0]
            if node.op_type in _PROJECTIONS:
                found["down"].append(node.name)
                break
            if node.op_type not in _GELU_STEPS:
                break
    return found



def quantize_dynamic(onnx_path: Path, out_path: Path, target: str = "avx512_vnni",
                     operators: Sequence[str] | None = None, per_channel: bool = True,
                     exclude: Sequence[str] = (), keep_gelu_down: bool = False) -> Path:
    """Dynamic INT8 for CPUs (`target` in CPU_TARGETS picks Optimum's preset); weights with one
    scale per output column unless `per_channel` is False; the nodes named in `exclude` stay FP32,
    and with `keep_gelu_down` so do the projections that take each GELU's output."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if target not in CPU_TARGETS:
        raise ValueError(f"unknown CPU target {target!r}; choose one of {', '.join(CPU_TARGETS)}")
    preset = getattr(AutoQuantizationConfig, target)
    skip = list(exclude) + (gelu_projections(onnx_path)["down"] if keep_gelu_down else [])
    # ONNX Runtime's dynamic quantiser first splits a Gemm into `<name>_MatMul` + `<name>_Add`
    # and matches the exclusions against the new names, so both spellings are listed.
    skip += [f"{name}_MatMul" for name in skip]
    kwargs: dict[str, Any] = {"is_static": False, "per_channel": per_channel, "nodes_to_exclude": skip}
    if operators is not None:
        kwargs["operators_to_quantize"] = list(operators)
    config = preset(**kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        q = _quantizer(Path(onnx_path), Path(tmp))
        q.quantize(config, save_dir=Path(tmp) / "out", file_suffix="int8")
        return _move_result(Path(tmp) / "out" / "model_int8.onnx", out_path)


def with_patch_keep(onnx_path: Path, calibration: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The calibration feeds with `patch_keep` all ones (no batch dimension) where the graph takes
    it and a feed lacks it: the ranges are those of triage, every patch kept."""
    from crisislens.export.graph_info import onnx_patch_count

    patches = onnx_patch_count(onnx_path)
    if patches is None:
        return list(calibration)
    return [f if PATCH_KEEP in f else {**f, PATCH_KEEP: np.ones(patches, np.int64)} for f in calibration]


def quantize_static_qdq(onnx_path: Path, out_path: Path, calibration: Sequence[dict[str, np.ndarray]],
                        operators: Sequence[str] = ("MatMul", "Conv", "Gemm"), keep_gelu_projections: bool = True,
                        exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> Path:
    """Static INT8 with Q/DQ nodes (symmetric, per-channel weights), calibrated on `calibration`
    feeds (one post per feed: arrays without the batch dimension, as Optimum's reader adds it).
    `keep_gelu_projections` leaves the projections around each GELU unquantised, `exclude` other
    nodes by name; `only` quantises just the nodes it names (a sensitivity check)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantizationMode, QuantType
    from optimum.onnxruntime.configuration import CalibrationConfig, QuantizationConfig

    if not calibration:
        raise ValueError("static quantisation needs calibration posts")
    calibration = with_patch_keep(Path(onnx_path), calibration)
    kept = gelu_projections(Path(onnx_path)) if keep_gelu_projections else {}
    excluded = [name for names in kept.values() for name in names] + list(exclude)
    calib = CalibrationConfig(dataset_name="crisismmd-dev", dataset_config_name="humanitarian", dataset_split="dev",
                              dataset_num_samples=len(calibration), method=CalibrationMethod.MinMax)
    config = QuantizationConfig(is_static=True, format=QuantFormat.QDQ, mode=QuantizationMode.QLinearOps,
                                activations_dtype=QuantType.QInt8, activations_symmetric=True,
                                weights_dtype=QuantType.QInt8, weights_symmetric=True, per_channel=True,
                                operators_to_quantize=list(operators), nodes_to_exclude=excluded,
                                nodes_to_quantize=list(only or []))
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


# Weight-only INT8 (W8A32): int8 weights in the file, FP32 activations and compute.
WEIGHT_ONLY_OPERATORS = ("Gather", "MatMul", "Gemm", "Conv")
_MIN_WEIGHT_ELEMENTS = 4096  # biases, norms and tiny tables stay FP32


def _weight_input(node: Any, initializers: dict[str, Any]) -> tuple[str, int] | None:
    """(initializer name, per-channel axis) of the node's weight, or None."""
    if node.op_type == "Gather" and node.input[0] in initializers:
        return node.input[0], 0  # one scale per table row (per token)
    if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in initializers:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return node.input[1], 0 if (node.op_type == "Gemm" and trans_b) else 1  # one scale per output column
    if node.op_type == "Conv" and node.input[1] in initializers:
        return node.input[1], 0  # one scale per output channel
    return None


def quantize_weights_only(onnx_path: Path, out_path: Path, operators: Sequence[str] = WEIGHT_ONLY_OPERATORS) -> Path:
    """Store the weights of `operators` as symmetric per-channel int8 with a DequantizeLinear in
    front of their use, activations untouched (W8A32).

    Why not Optimum: ORTQuantizer (and the ONNX Runtime quantiser under it) quantises activations
    too, dynamically or statically, and that — not the weight rounding — is what costs this
    model's accuracy; ONNX Runtime's own weight-only tool (MatMulNBits) covers MatMul only. The
    file is ~1/4 of FP32; compute stays FP32, so it is no faster than FP32."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    done: set[str] = set()
    new_nodes, new_inits = [], []
    for node in graph.node:
        if node.op_type not in operators:
            continue
        found = _weight_input(node, inits)
        if found is None or found[0] in done:
            continue
        name, axis = found
        w = numpy_helper.to_array(inits[name])
        if w.dtype != np.float32 or w.size < _MIN_WEIGHT_ELEMENTS or w.ndim < 2:
            continue
        other = tuple(i for i in range(w.ndim) if i != axis)
        scale = np.abs(w).max(axis=other) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        new_inits += [numpy_helper.from_array(q, f"{name}_int8"), numpy_helper.from_array(scale, f"{name}_scale"),
                      numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{name}_zero")]
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero"], [name],
                                          name=f"{name}_dequantize", axis=axis))
        graph.initializer.remove(inits[name])
        done.add(name)
    graph.initializer.extend(new_inits)
    nodes = new_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return out_path
