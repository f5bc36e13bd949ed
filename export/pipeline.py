"""`crisislens export onnx`: the student to ONNX FP32, its INT8 / QDQ / FP16 variants, parity
and accuracy of each on real CrisisMMD test posts -> reports/export.{json,md}.

Every variant is scored by ONNX Runtime on the same feeds (the runtime's own preprocessing:
`runtime.preprocess.TextEncoder` + `load_image`), against the CrisisMMD test labels and against
the FP32 graph's labels. FP32 is compared with PyTorch on mixed, text-only and image-only batches.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.export.onnx_export import check_parity, export_onnx, ort_session, run_ort
from crisislens.export.optimize import optimize_graph
from crisislens.export.quantize import (TEXT_OPERATORS, convert_fp16, gelu_projections, quantize_dynamic,
                                        quantize_static_qdq, quantize_weights_only)
from crisislens.runtime.backends.feeds import batch_dependent, image_inputs, run_per_post
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.evaluation.metrics import classification_report
from crisislens.runtime.preprocessing import ImageConfig, ImageError, TextEncoder, load_image
from crisislens.runtime.markdown import md_table
from crisislens.runtime.signature import INPUT_NAMES
from crisislens.runtime.variants import EXPORT_VARIANTS, VARIANTS, ExportVariant


@dataclass
class ExportConfig:
    data_root: str = "../shared/data"
    student: str = "artifacts/student/best.pt"
    out: str = "artifacts/export"
    batch_size: int = 32
    calibration_posts: int = 256  # CrisisMMD dev posts for the static (QDQ) ranges
    seed: int = 13
    variants: tuple[str, ...] = ()  # the variants to build and score (fp32 always); () = every one

    def chosen(self) -> list[ExportVariant]:
        unknown = sorted(set(self.variants) - {v.name for v in EXPORT_VARIANTS})
        if unknown:
            raise ValueError(f"unknown export variant(s) {', '.join(unknown)}; known: "
                             f"{', '.join(v.name for v in EXPORT_VARIANTS)}")
        return [v for v in EXPORT_VARIANTS if not self.variants or v.name == "fp32" or v.name in self.variants]


def feeds_for(rows: Sequence[Any], encoder: TextEncoder, image_config: ImageConfig, *, text: bool = True,
              image: bool = True) -> dict[str, np.ndarray]:
    """One batch of model inputs from examples (`text`/`image` False drops that part)."""
    enc = encoder.encode_batch([(e.text or "") if text else "" for e in rows])
    photos: list[np.ndarray | None] = [None] * len(rows)
    if image:
        for i, e in enumerate(rows):
            if e.image is not None:
                try:
                    photos[i] = load_image(e.image, image_config)[0]
                except ImageError:
                    pass
    pixels, index = image_inputs(photos, image_config.size)
    return {"input_ids": enc.input_ids.astype(np.int64), "attention_mask": enc.attention_mask.astype(np.int64),
            "pixel_values": pixels, "image_index": index}


def calibration_feeds(rows: Sequence[Any], encoder: TextEncoder, image_config: ImageConfig, posts: int,
                      seed: int) -> list[dict[str, np.ndarray]]:
    """`posts` of `rows` drawn with `seed`, one feed each, cut to its own tokens and without the
    batch dimension (Optimum's calibration reader adds it): the static (QDQ) ranges come from these."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(rows), min(posts, len(rows)), replace=False):
        f = feeds_for([rows[i]], encoder, image_config)
        n = int(f["attention_mask"].sum())
        out.append({"input_ids": f["input_ids"][0, :n], "attention_mask": f["attention_mask"][0, :n],
                    "pixel_values": f["pixel_values"][0], "image_index": f["image_index"][0]})
    return out


def batched(rows: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def score(session: Any, feeds: Sequence[dict[str, np.ndarray]], gold: Sequence[str],
          per_post: bool = False) -> tuple[dict[str, Any], np.ndarray]:
    """Classification report and logits over `feeds`; `per_post` runs each post alone, as the
    runtime does for a variant whose outputs depend on the batch (`runtime.engine.batch_dependent`)."""
    def run(f: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        return tuple(run_ort(session, f))

    logits = np.concatenate([(run_per_post(run, f) if per_post else run(f))[0] for f in feeds])
    pred = [LABEL_NAMES[i] for i in logits.argmax(1)]
    rep = classification_report(list(gold), pred, LABEL_NAMES)
    return rep.to_dict(), logits


def run(config: ExportConfig) -> dict[str, Any]:
    import torch

    from crisislens.distill import data as D
    from crisislens.distill.student import load_student, student_image_config, student_image_tower
    from crisislens.distill.train_teacher import TrainConfig, minilm_encoder

    started = time.perf_counter()
    config.chosen()  # an unknown variant name fails before the export starts
    torch.manual_seed(config.seed)
    root = D.resolve_data_root(config.data_root)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    student = load_student(config.student)
    image_config = student_image_config(student.config)  # the student's resolution (112 px by default)
    student.image = student_image_tower(student.config)
    encoder = minilm_encoder(TrainConfig())
    test = D.load_crisismmd(root, "test")
    dev = D.load_crisismmd(root, "dev")
    gold = [e.label for e in test]

    print("exporting FP32 ...", file=sys.stderr)
    t0 = time.perf_counter()
    fp32 = export_onnx(student, out / VARIANTS["fp32"].file, max_length=encoder.config.max_length,
                       image_size=image_config.size)
    export_seconds = time.perf_counter() - t0

    print("building test feeds ...", file=sys.stderr)
    mixed = [feeds_for(b, encoder, image_config) for b in batched(test, config.batch_size)]
    with_image = [e for e in test if e.image is not None]
    text_only = [feeds_for(b, encoder, image_config, image=False) for b in batched(test[:256], config.batch_size)]
    image_only = [feeds_for(b, encoder, image_config, text=False) for b in batched(with_image, config.batch_size)]
    single = [feeds_for([e], encoder, image_config) for e in with_image[:8] + [e for e in test if e.image is None][:8]]
    parity_feeds = mixed + text_only + image_only + single
    kinds = ["mixed"] * len(mixed) + ["text_only"] * len(text_only) + ["image_only"] * len(image_only) + ["batch_1"] * len(single)
    print("parity PyTorch vs ONNX Runtime ...", file=sys.stderr)
    parity = check_parity(student, fp32, parity_feeds, kinds, top_k=student.config.top_k_patches)

    print("quantising ...", file=sys.stderr)
    calibration = calibration_feeds(dev, encoder, image_config, config.calibration_posts, config.seed)
    timings = {"export_fp32": export_seconds}
    t0 = time.perf_counter()
    fused: dict[str, int] = {}
    for v in config.chosen():
        if v.builder == "onnx":
            continue
        t0 = time.perf_counter()
        fused.update(_build(v, fp32, out / v.file, calibration))
        timings[v.name] = time.perf_counter() - t0
        detail = f", fused {fused}" if v.builder == "optimize" else ""
        print(f"  {v.name}: {timings[v.name]:.1f} s{detail}", file=sys.stderr)

    print("scoring variants on CrisisMMD test ...", file=sys.stderr)
    variants: dict[str, Any] = {}
    reference = None
    for v in config.chosen():
        name, path = v.name, out / v.file
        rep, logits = score(ort_session(path, quantization=v.quantization), mixed, gold,
                            per_post=batch_dependent(v.quantization))
        if reference is None:
            reference = logits
        variants[name] = {
            "file": v.file, "precision": v.precision, "quantization": v.detail, "intended": v.runs_on,
            "size_mb": round(os.path.getsize(path) / 2**20, 2),
            "size_vs_fp32": round(os.path.getsize(path) / os.path.getsize(fp32), 4),
            "test": rep,
            "label_agreement_with_fp32": float((logits.argmax(1) == reference.argmax(1)).mean()),
            "max_abs_logit_diff_vs_fp32": float(np.abs(logits - reference).max()),
            "build_seconds": round(timings.get("export_fp32" if name == "fp32" else name, 0.0), 1),
        }
    return {"inputs": list(INPUT_NAMES), "n_test": len(test), "parity_fp32_vs_pytorch": parity.to_dict(),
            "graph_optimization": {"tool": "onnxruntime.transformers.optimizer (model_type bert, 12 heads, width 384)",
                                   "fused_operators": fused},
            "variants": variants, "calibration_posts": len(calibration),
            "qdq_unquantised": [n for names in gelu_projections(fp32).values() for n in names],
            "seconds": round(time.perf_counter() - started, 1),
            "student": config.student, "out": str(out)}


def _build(v: ExportVariant, fp32: Path, path: Path, calibration: list[dict[str, np.ndarray]]) -> dict[str, int]:
    """Build variant `v` from the FP32 graph into `path` by its row's recipe; the operators fused
    (only the `optimize` recipe fuses any). The dynamic forms keep the projections out of each
    GELU in FP32 (research/results/quantization.md)."""
    if v.builder == "optimize":
        return optimize_graph(fp32, path)[1]
    if v.builder == "dynamic":
        quantize_dynamic(fp32, path, v.cpu or "avx512_vnni", operators=TEXT_OPERATORS if v.text_only else None,
                         keep_gelu_down=True)
    elif v.builder == "static-qdq":
        quantize_static_qdq(fp32, path, calibration)
    elif v.builder == "weight-only":
        quantize_weights_only(fp32, path)
    elif v.builder == "fp16":
        convert_fp16(fp32, path)
    else:
        raise ValueError(f"variant {v.name!r}: no recipe for builder {v.builder!r}")
    return {}


def to_markdown(result: dict[str, Any], provenance: dict[str, Any]) -> str:
    p = result["parity_fp32_vs_pytorch"]
    lines = ["# Export: ONNX variants of the student", "",
             f"Command: `{provenance['command']}` · commit {provenance['git_commit']} · {provenance['created']} · "
             f"run time {result['seconds']} s on {provenance['environment']['cpu_count']} CPU cores.", "",
             f"## Parity: ONNX FP32 (ONNX Runtime CPU) vs PyTorch ({p['n']} posts)", "",
             *md_table(["batches", "posts", "max abs Δlogit", "label agreement", "max abs Δ token score",
                        "token rationale agreement", "top-k patch agreement"],
                       [(kind, s["n"], f"{s['max_abs_logit_diff']:.2e}", f"{s['label_agreement'] * 100:.2f}%",
                         f"{s['max_abs_token_score_diff']:.2e}", f"{s['token_rationale_agreement'] * 100:.2f}%",
                         f"{s['patch_topk_agreement'] * 100:.2f}%") for kind, s in p["by_kind"].items()])]
    lines += ["", f"## Variants on CrisisMMD test ({result['n_test']} posts, ONNX Runtime CPU)", "",
              *md_table(["variant", "precision", "quantisation", "for", "size MB", "vs FP32 size", "Macro-F1", "accuracy",
                         "label agreement with FP32", "max abs Δlogit vs FP32"],
                        [(name, v["precision"], v["quantization"] or "–", v["intended"], f"{v['size_mb']:.1f}",
                          f"{v['size_vs_fp32'] * 100:.1f}%", f"{v['test']['macro_f1']:.4f}",
                          f"{v['test']['accuracy']:.4f}", f"{v['label_agreement_with_fp32'] * 100:.2f}%",
                          f"{v['max_abs_logit_diff_vs_fp32']:.3f}") for name, v in result["variants"].items()])]
    g = result.get("graph_optimization")
    if g:
        fused = ", ".join(f"{k} {v}" for k, v in g["fused_operators"].items()) or "nothing"
        lines += ["", f"`fp32-opt`: {g['tool']} fused {fused}; the attention pattern of the exported graph is not",
                  "matched, so attention stays MatMul/Softmax. Runtime sessions apply the same LayerNorm/Gelu fusions",
                  "online (ORT_ENABLE_ALL), so the variants are built from the plain FP32 graph."]
    lines += ["", "FP16 and the QDQ model are meant for GPUs / TensorRT; on this CPU ONNX Runtime runs them for the",
              "accuracy check only (FP16 is emulated). `int8-w8a32` stores int8 weights (per channel) and computes",
              "in FP32: it is the INT8 form closest to FP32's answers, at FP32 speed; the dynamic `int8`/`int8-text`",
              "forms quantise activations too, which is faster on CPU and moves more labels (latency: reports/bench.md).",
              "The dynamic forms keep one weight scale per output column (per channel) and leave the projections",
              "out of each GELU in FP32 (research/results/quantization.md). The QDQ model leaves the",
              f"{len(result.get('qdq_unquantised', []))} projections on either side of each GELU without Q/DQ "
              "(quantize.gelu_projections: MiniLM's GELU outputs carry outliers that a calibrated int8 range "
              "cannot hold), so an engine runs them in its float precision."]
    return "\n".join(lines)
