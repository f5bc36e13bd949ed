"""What an exported ONNX graph fixes, read from its proto without loading the weights: whether it
is quantised, its photo side, its `patch_keep` patch count. Used by the TensorRT build, the
bundle writer and static-INT8 calibration. Needs the `onnx` package (the export extra)."""

from __future__ import annotations

from pathlib import Path

from crisislens.runtime import signature as S


def onnx_has_qdq(onnx_path: str | Path) -> bool:
    """Whether an ONNX file has QuantizeLinear/DequantizeLinear nodes (needs the `onnx` package).

    Only the graph is read (external weights are not loaded).
    """
    import onnx  # export extra; imported here so this module loads without it

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)


def onnx_image_size(onnx_path: str | Path) -> int | None:
    """The photo side fixed in the graph's `pixel_values` input ([images, 3, S, S]: the student's
    resolution), or None when the graph leaves it dynamic or has no such input. Profiles must
    use it: TensorRT refuses a profile whose fixed dimensions differ from the graph's."""
    import onnx  # export extra; imported here so this module loads without it

    model = onnx.load(str(onnx_path), load_external_data=False)
    for value in model.graph.input:
        if value.name == "pixel_values":
            dims = value.type.tensor_type.shape.dim
            if len(dims) == 4 and dims[2].HasField("dim_value") and dims[2].dim_value > 0:
                return int(dims[2].dim_value)
    return None


def onnx_patch_count(onnx_path: str | Path) -> int | None:
    """The fixed patch count of the graph's `patch_keep` input ([batch, M]), or None when the
    graph has no such input (exported before it)."""
    import onnx  # export extra; imported here so this module loads without it

    return S.patch_keep_count(onnx.load(str(onnx_path), load_external_data=False).graph.input, str(onnx_path))


__all__ = ["onnx_has_qdq", "onnx_image_size", "onnx_patch_count"]
