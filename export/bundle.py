"""`crisislens export bundle`: the ONNX variants + tokenizer + preprocessing + labels + manifest,
as the runtime loads them (`runtime.bundle`). Each variant's metrics are the ones measured by
`crisislens export onnx` (reports/export.json), copied into the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crisislens.runtime.bundle import VariantSpec, write_bundle
from crisislens.runtime.preprocessing import ImageConfig, TextConfig
from crisislens.runtime.signature import INPUT_NAMES, OUTPUT_NAMES, REQUIRED_INPUT_NAMES
from crisislens.runtime.variants import VARIANTS

METRIC_KEYS = ("size_mb", "size_vs_fp32", "label_agreement_with_fp32", "max_abs_logit_diff_vs_fp32")


def variant_metrics(report: dict[str, Any], name: str) -> dict[str, Any]:
    v = report["variants"][name]
    test = v["test"]
    metrics = {k: v[k] for k in METRIC_KEYS if k in v}
    metrics.update({"dataset": "crisismmd:test", "macro_f1": test["macro_f1"], "accuracy": test["accuracy"],
                    "weighted_f1": test["weighted_f1"],
                    "per_class_f1": {c: s["f1"] for c, s in test["per_class"].items()},
                    "quantization_detail": v.get("quantization"),
                    "measured_by": report.get("provenance", {}).get("command", "crisislens export onnx"),
                    "measured_at_commit": report.get("provenance", {}).get("git_commit")})
    return metrics


def student_info(student_path: Path) -> dict[str, Any]:
    """What the runtime needs to know about the model (rationale rules, grid), from the checkpoint."""
    import torch

    from crisislens.distill.loop import load_checkpoint

    ckpt = load_checkpoint(student_path)
    c = ckpt["config"]
    return {"architecture": "crisislens-rationale-student", "text_layers": c["text_layers"],
            "fusion_layers": 1, "hidden": c["hidden"], "image_tower": "efficientnet-lite0",
            "patch_grid": c["patch_grid"], "top_k_patches": c["top_k_patches"],
            "rationale_threshold": c["rationale_threshold"], "min_rationale_tokens": c["min_rationale_tokens"],
            "image_size": c.get("image_size", 224),  # checkpoints before the field were trained at 224 px
            "trained_epochs": ckpt.get("epoch"), "dev": ckpt.get("dev")}


def build_bundle(out_dir: Path, *, export_dir: Path, report_path: Path, student_path: Path, tokenizer_json: Path,
                 variants: Sequence[str], default_variant: str, command: str, overwrite: bool = False) -> Path:
    report = json.loads(Path(report_path).read_text())
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    missing = [v for v in variants if v not in report.get("variants", {})]
    if missing:
        raise ValueError(f"{report_path}: no measured metrics for {', '.join(missing)}; run `crisislens export onnx`")
    specs = {}
    for name in variants:
        v = VARIANTS[name]
        source = Path(export_dir) / v.file
        if not source.is_file():
            raise FileNotFoundError(f"{source}: variant {name} not exported; run `crisislens export onnx`")
        specs[name] = VariantSpec(source, v.precision, v.quantization, v.target, variant_metrics(report, name))
    info = student_info(student_path)
    image_config = ImageConfig(size=info["image_size"], patch_grid=info["patch_grid"])
    return write_bundle(out_dir, variants=specs, tokenizer_json=tokenizer_json, text_config=TextConfig(),
                        image_config=image_config, model_info=info, command=command,
                        default_variant=default_variant, inputs=onnx_input_names(specs[default_variant].source),
                        outputs=OUTPUT_NAMES, overwrite=overwrite)


def onnx_input_names(onnx_path: Path) -> tuple[str, ...]:
    """The signature's inputs that the graph at `onnx_path` takes (a graph exported before
    `patch_keep` lacks it)."""
    from crisislens.export.graph_info import onnx_patch_count

    has_keep = onnx_patch_count(onnx_path) is not None
    return tuple(n for n in INPUT_NAMES if n in REQUIRED_INPUT_NAMES or has_keep)
