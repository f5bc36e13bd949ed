"""Which INT8 choices keep the student's answers? -> research/results/quantization.{json,md}

`crisislens export onnx` makes two kinds of INT8 model from the FP32 graph: dynamic (int8 weights,
activation scales computed per call; the fast CPU form and the shipped default `int8-text`) and
static QDQ (calibrated scales; the form TensorRT builds INT8 engines from). Two choices in
`export/quantize.py` decide how close they stay to FP32, and this benchmark measures both on
CrisisMMD **dev** posts (test is left to `reports/export.md`):

- one weight scale per matrix or per output column (per channel), for the dynamic forms;
- which projections stay in float: each MatMul/Gemm quantised alone in the QDQ model (how far it
  alone moves the answers), then the forms with and without the projections on either side of
  each GELU (`quantize.gelu_projections`).

For each form: Macro-F1, label agreement with FP32, mean and max |Δlogit|, one post per call as
the runtime runs them; for the dynamic forms also the model's own time per post (ONNX Runtime,
batch 1, forms taking turns post by post). The QDQ ranges come from 256 dev posts (as in the
export), so they are among the posts scored here.

    python research/studies/quantization_choices.py [--onnx artifacts/export/model.fp32.onnx] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.distill import data as D
from crisislens.distill.eval_student import interleaved_ms
from crisislens.distill.features import minilm_encoder
from crisislens.distill.train_teacher import TrainConfig
from crisislens.export.onnx_export import ort_session, run_ort
from crisislens.export.pipeline import ExportConfig, calibration_feeds, feeds_for
from crisislens.export.quantize import TEXT_OPERATORS, gelu_projections, quantize_dynamic, quantize_static_qdq
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.evaluation.metrics import classification_report
from crisislens.runtime.preprocessing import ImageConfig

from _report import add_render_only, publish, render_only, run_line  # research/studies/_report.py

TIMED_POSTS = 120  # posts per form in the latency rounds (half with a photo)
ROUNDS = 3


def photo_size(onnx_path: Path) -> int:
    """The photo size the exported graph fixes (pixel_values [K, 3, size, size])."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    pixels = next(i for i in graph.input if i.name == "pixel_values")
    return int(pixels.type.tensor_type.shape.dim[2].dim_value)


def logits_of(path: Path, kind: str | None, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    session = ort_session(path, quantization=kind)
    return np.concatenate([run_ort(session, f)[0] for f in feeds])


def agreement(logits: np.ndarray, reference: np.ndarray, gold: list[str]) -> dict[str, float]:
    pred = [LABEL_NAMES[i] for i in logits.argmax(1)]
    rep = classification_report(gold, pred, LABEL_NAMES).to_dict()
    diff = np.abs(logits - reference)
    return {"macro_f1": rep["macro_f1"], "accuracy": rep["accuracy"],
            "label_agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
            "mean_abs_logit_diff": float(diff.mean()), "max_abs_logit_diff": float(diff.max())}


def model_ms(forms: dict[str, tuple[Path, str | None]], feeds: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Median ms per post of each form, the forms taking turns post by post (`interleaved_ms`,
    as the distillation report times teacher and student), after a warm-up."""
    sessions = {n: ort_session(p, quantization=k) for n, (p, k) in forms.items()}
    runs = {n: (lambda f, s=s: run_ort(s, f)) for n, s in sessions.items()}
    timed = interleaved_ms(runs, {n: feeds for n in sessions}, warmup=10, rounds=ROUNDS)
    return {n: t["median_ms"] for n, t in timed.items()}


def run(onnx_path: Path, data_root: str | None, work: Path) -> dict[str, Any]:
    root = D.resolve_data_root(D.cli_data_root(data_root))
    dev = D.load_crisismmd(root, "dev")
    gold = [e.label for e in dev]
    encoder = minilm_encoder(TrainConfig())
    image_config = ImageConfig(size=photo_size(onnx_path))
    feeds = [feeds_for([e], encoder, image_config) for e in dev]
    export = ExportConfig()
    calibration = calibration_feeds(dev, encoder, image_config, export.calibration_posts, export.seed)
    reference = logits_of(onnx_path, None, feeds)
    roles = gelu_projections(onnx_path)
    role_of = {n: f"GELU {side}" for side, names in roles.items() for n in names}
    around = roles["up"] + roles["down"]

    dynamic = {
        "one scale per matrix": dict(per_channel=False),
        "per channel": dict(per_channel=True),
        "per channel, projections out of each GELU in FP32 (shipped)": dict(per_channel=True, keep_gelu_down=True),
        "per channel, projections on both sides of each GELU in FP32": dict(per_channel=True, exclude=around),
    }
    result: dict[str, Any] = {"onnx": str(onnx_path), "dev_posts": len(dev), "photo_size": image_config.size,
                              "calibration_posts": len(calibration), "reference": agreement(reference, reference, gold),
                              "dynamic": {}, "qdq": {}, "sensitivity": []}
    files: dict[str, tuple[Path, str | None]] = {"fp32": (onnx_path, None)}
    for i, (name, kw) in enumerate(dynamic.items()):
        path = quantize_dynamic(onnx_path, work / f"dynamic{i}.onnx", "avx512_vnni", operators=TEXT_OPERATORS, **kw)
        result["dynamic"][name] = agreement(logits_of(path, "dynamic", feeds), reference, gold)
        files[name] = (path, "dynamic")
        print(f"dynamic, {name}: {result['dynamic'][name]}", file=sys.stderr)
    qdq = {
        "every projection int8": dict(keep_gelu_projections=False),
        "projections out of each GELU in float": dict(keep_gelu_projections=False, exclude=roles["down"]),
        "projections on both sides of each GELU in float (shipped)": dict(keep_gelu_projections=True),
    }
    for i, (name, kw) in enumerate(qdq.items()):
        path = quantize_static_qdq(onnx_path, work / f"qdq{i}.onnx", calibration, **kw)
        result["qdq"][name] = agreement(logits_of(path, "static-qdq", feeds), reference, gold)
        print(f"qdq, {name}: {result['qdq'][name]}", file=sys.stderr)
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    for node in (n for n in graph.node if n.op_type in ("MatMul", "Gemm")):
        path = quantize_static_qdq(onnx_path, work / "one.onnx", calibration, keep_gelu_projections=False,
                                   only=[node.name])
        row = {"node": node.name, "op": node.op_type, "role": role_of.get(node.name, "other"),
               **agreement(logits_of(path, "static-qdq", feeds), reference, gold)}
        result["sensitivity"].append(row)
        print(f"alone: {node.name} {row['label_agreement']:.4f}", file=sys.stderr)
    photo = [f for f, e in zip(feeds, dev) if e.image is not None][: TIMED_POSTS // 2]
    text = [f for f, e in zip(feeds, dev) if e.image is None][: TIMED_POSTS - len(photo)]
    result["model_ms"] = model_ms(files, photo + text)
    result["timed_posts"] = len(photo) + len(text)
    return result


def _row(name: str, m: dict[str, float], extra: str = "") -> str:
    return (f"| {name} | {m['macro_f1']:.4f} | {m['accuracy']:.4f} | {m['label_agreement'] * 100:.2f}% | "
            f"{m['mean_abs_logit_diff']:.4f} | {m['max_abs_logit_diff']:.3f} |{extra}")


def to_markdown(result: dict[str, Any], prov: dict[str, Any]) -> str:
    head = "| form | Macro-F1 | accuracy | label agreement with FP32 | mean abs Δlogit | max abs Δlogit |"
    ms = result["model_ms"]
    lines = ["# INT8 choices, measured on CrisisMMD dev", "", run_line(prov, result["seconds"]), "",
             f"{result['dev_posts']} dev posts, one per call (photos at {result['photo_size']} px), against the FP32 "
             f"graph `{result['onnx']}` (dev Macro-F1 {result['reference']['macro_f1']:.4f}, accuracy "
             f"{result['reference']['accuracy']:.4f}). QDQ ranges from {result['calibration_posts']} of these posts "
             "(MinMax, symmetric int8, per-channel weights).", "",
             "## Dynamic INT8, text side (the `int8-text` form)", "",
             head[:-2] + " | model ms per post |", "|---|---|---|---|---|---|---|",
             f"| FP32 | {result['reference']['macro_f1']:.4f} | {result['reference']['accuracy']:.4f} | 100.00% | 0 | 0 | "
             f"{ms['fp32']:.2f} |"]
    for name, m in result["dynamic"].items():
        lines.append(_row(name, m, f" {ms[name]:.2f} |"))
    lines += ["", f"Model time: ONNX Runtime alone (no decoding or tokenising), median over {ROUNDS} rounds of "
                  f"{result['timed_posts']} posts (half with a photo), the forms taking turns post by post.", "",
              "## Static QDQ (the `int8-qdq` form, for TensorRT)", "", head, "|---|---|---|---|---|---|"]
    for name, m in result["qdq"].items():
        lines.append(_row(name, m))
    lines += ["", "## Each projection quantised alone (QDQ; everything else FP32), worst first", "",
              "| node | op | role | Macro-F1 | label agreement with FP32 | mean abs Δlogit | max abs Δlogit |",
              "|---|---|---|---|---|---|---|"]
    for r in sorted(result["sensitivity"], key=lambda r: (r["label_agreement"], -r["mean_abs_logit_diff"])):
        lines.append(f"| {r['node']} | {r['op']} | {r['role']} | {r['macro_f1']:.4f} | {r['label_agreement'] * 100:.2f}% | "
                     f"{r['mean_abs_logit_diff']:.4f} | {r['max_abs_logit_diff']:.3f} |")
    lines += ["", "Role: `GELU up` projects into a GELU, `GELU down` takes its output (`quantize.gelu_projections`)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, default=Path("artifacts/export/model.fp32.onnx"))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=Path("research/results"))
    add_render_only(parser)
    args = parser.parse_args(argv)
    if args.render_only:
        return render_only("quantization", args.out, to_markdown)
    if not args.onnx.is_file():
        parser.error(f"--onnx {args.onnx}: not found (make it with `crisislens export onnx`)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.onnx, args.data_root, Path(tmp))
    result["seconds"] = round(time.perf_counter() - started, 1)
    publish("quantization", "python research/studies/quantization_choices.py", result, to_markdown, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
