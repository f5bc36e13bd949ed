"""`crisislens distill eval-student`: teacher vs student (and the no-rationale-loss ablation),
side by side, from one run -> research/results/v1/distill.{json,md}.

Accuracy on CrisisMMD test; agreement with the teacher (labels, token rationales, top-k
patches); plausibility on the held-out rationale event; faithfulness; size; PyTorch CPU
latency of both models in this process, from raw inputs (token ids + pixels at each model's
resolution: every layer and the image tower run, nothing cached).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crisislens.distill import data as D
from crisislens.distill.assembly import assemble
from crisislens.distill.eval_teacher import (
    cached_batches,
    image_faithfulness,
    load_teacher,
    report,
    split_by_image,
    teacher_outputs,
    text_faithfulness,
)
from crisislens.distill.features import build_features, example_key, minilm_encoder
from crisislens.distill.student import RationaleStudent, load_student, student_image_config, student_image_tower
from crisislens.distill.teacher import ImageTower, TeacherInputs
from crisislens.distill.train_student import StudentTrainConfig, student_features, student_outputs
from crisislens.evaluation import metrics as M
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.markdown import md_table
from crisislens.runtime.preprocessing import ImageConfig, ImageError, load_image


def agreement(teacher: Sequence[dict[str, Any]], student: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Label agreement, token-rationale F1 (student vs teacher hard rationales, micro over
    content tokens) and the mean IoU of the top-k patch sets on rows with a photo."""
    labels = float(np.mean([int(t["probs"].argmax()) == int(s["probs"].argmax()) for t, s in zip(teacher, student)]))
    with_text = [(t, s) for t, s in zip(teacher, student) if t["content"].any()]
    gold = [t["token_rationale"][t["content"]] for t, _ in with_text]
    pred = [s["token_rationale"][s["content"]] for _, s in with_text]
    ious = [M.set_iou(t["patch_rationale"], s["patch_rationale"]) for t, s in zip(teacher, student) if t["has_image"]]
    return {"label_agreement": labels, "token_rationale_vs_teacher": M.token_f1(gold, pred).to_dict(),
            "patch_topk_iou_vs_teacher": float(np.mean(ious)) if ious else None, "n": len(teacher),
            "n_with_text": len(with_text), "n_with_image": len(ious)}


def plausibility(rows: Sequence[D.Example], outs: Sequence[dict[str, Any]], human: Sequence[np.ndarray]) -> dict[str, Any]:
    gold = [h[o["content"]].astype(bool) for h, o in zip(human, outs)]
    pred = [o["token_rationale"][o["content"]] for o in outs]
    soft = [o["token_scores"][o["content"]] for o in outs]
    return {"n": len(rows), "token_f1": M.token_f1(gold, pred).to_dict(), "iou_f1": M.iou_f1(gold, pred),
            "auprc": M.auprc(gold, soft)}


def size(model: torch.nn.Module) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        torch.save(model.state_dict(), path)
        mb = path.stat().st_size / 2**20
    return {"parameters": sum(p.numel() for p in model.parameters()), "state_dict_mb": round(mb, 2)}


# ----------------------------------------------------------------------------- latency


def raw_inputs(rows: Sequence[D.Example], encoder: Any, with_image: bool,
               config: ImageConfig | None = None) -> TeacherInputs:
    """What a model sees in the field: token ids from the text and pixels from the JPEG
    (preprocessed by `config`: the model's own resolution)."""
    config = config or ImageConfig()
    enc = encoder.encode_batch([e.text or "" for e in rows])
    b = len(rows)
    pixels = np.zeros((b, 3, config.size, config.size), np.float32)
    present = np.zeros(b, bool)
    if with_image:
        for i, e in enumerate(rows):
            if e.image is not None:
                try:
                    pixels[i] = load_image(e.image, config)[0]
                    present[i] = True
                except ImageError:
                    pass
    return TeacherInputs(torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask),
                         torch.from_numpy(present), pixel_values=torch.from_numpy(pixels))


def interleaved_ms(models: dict[str, Any], inputs: dict[str, Sequence[Any]], warmup: int,
                    rounds: int = 1) -> dict[str, dict[str, float]]:
    """Median ms per model over the same inputs, the models taking turns input by input (and
    swapping who goes first), so a slow spell of a shared machine hits both alike and the ratio
    of the medians stays fair. `inputs[name][i]` is input i prepared for model `name`."""
    names = list(models)
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.no_grad():
        for n in names:
            for x in inputs[n][:warmup]:
                models[n](x)
        count = min(len(inputs[n]) for n in names)
        for r in range(rounds):
            for i in range(count):
                order = names if (i + r) % 2 == 0 else names[::-1]
                for n in order:
                    t0 = time.perf_counter()
                    models[n](inputs[n][i])
                    times[n].append((time.perf_counter() - t0) * 1000)
    return {n: {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "runs": len(t)}
            for n, t in times.items()}


def latency(models: dict[str, torch.nn.Module], test: Sequence[D.Example], encoder: Any, *, single: int = 40,
            batches: int = 5, batch_size: int = 32, warmup: int = 5, rounds: int = 3,
            image_configs: dict[str, ImageConfig] | None = None) -> dict[str, Any]:
    """Median latency of each model on the same real posts, the models interleaved post by post
    (`rounds` passes over `single` posts at batch 1; one pass over `batches` batches); each model
    gets the pixels at its own resolution (`image_configs`, default 224 px)."""
    image_rows = [e for e in test if e.image is not None][: max(single, batch_size * batches)]
    text_rows = [e for e in test if e.image is None][:single]
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "batch_size": batch_size, "interleaved": True,
                           "rounds": rounds, "image_size": {}}
    settings: dict[str, dict[str, list[Any]]] = {"batch1_text_image": {}, "batch1_text_only": {},
                                                 f"batch{batch_size}_text_image": {}}
    for name, model in models.items():
        config = (image_configs or {}).get(name, ImageConfig())
        out["image_size"][name] = config.size
        model.eval()
        settings["batch1_text_image"][name] = [raw_inputs([e], encoder, True, config) for e in image_rows[:single]]
        settings["batch1_text_only"][name] = [raw_inputs([e], encoder, False, config) for e in text_rows]
        settings[f"batch{batch_size}_text_image"][name] = [
            raw_inputs(image_rows[i * batch_size : (i + 1) * batch_size], encoder, True, config)
            for i in range(batches) if len(image_rows) >= (i + 1) * batch_size]
    for name in models:
        out[name] = {}
    for key, inputs in settings.items():
        big = key.startswith(f"batch{batch_size}")
        if not all(inputs[n] for n in models):
            for name in models:
                out[name][key] = None
            continue
        measured = interleaved_ms(models, inputs, 1 if big else warmup, 1 if big else rounds)
        for name in models:
            out[name][key] = measured[name]
    for name in models:
        print(f"latency {name}: {out[name]['batch1_text_image']['median_ms']:.1f} ms (text+image, batch 1)",
              file=sys.stderr)
    t, s = out.get("teacher"), out.get("student")
    if t and s:
        out["speedup"] = {k: t[k]["median_ms"] / s[k]["median_ms"] for k in t if t[k] and s.get(k)}
    return out


# ----------------------------------------------------------------------------- the run


def evaluate(config: StudentTrainConfig, ablation_dir: Path | None = None, faithfulness: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    root = D.resolve_data_root(config.data_root)
    tconfig = config.teacher_config()
    sets = assemble(root, tconfig)
    teacher = load_teacher(Path(config.teacher) / "best.pt")
    encoder = minilm_encoder(tconfig)
    t_feats = build_features(sets, root, tconfig, teacher, encoder)
    students: dict[str, RationaleStudent] = {"student": load_student(Path(config.out) / "best.pt")}
    if ablation_dir is not None and (ablation_dir / "best.pt").is_file():
        students["student_no_rationale_loss"] = load_student(ablation_dir / "best.pt")
    s_config = replace(config, model=students["student"].config)  # the checkpoint's resolution
    for name, other in students.items():
        if other.config.image_size != s_config.model.image_size:
            raise ValueError(f"{name} was trained at {other.config.image_size} px, the student at "
                             f"{s_config.model.image_size} px; retrain it with the same settings")
    s_feats = student_features(sets, root, s_config, students["student"])
    s_batches = cached_batches(s_feats)

    test = sets.test
    gold = [e.label for e in test]
    parts = split_by_image(test)
    print("test ...", file=sys.stderr)
    outs = {"teacher": teacher_outputs(teacher, cached_batches(t_feats), test)}
    for name, model in students.items():
        outs[name] = student_outputs(model, s_batches, test)
    result: dict[str, Any] = {"n_test": len(test), "models": {}}
    for name, o in outs.items():
        probs = np.stack([x["probs"] for x in o])
        result["models"][name] = {"test": report(gold, probs),
                                  **{k: report([gold[i] for i in ix], probs[ix]) for k, ix in parts.items()}}
        if name != "teacher":
            result["models"][name]["agreement_with_teacher"] = agreement(outs["teacher"], o)

    print("plausibility ...", file=sys.stderr)
    rat_rows = [e for e in sets.rationale_eval if t_feats.text.row(example_key(e))[3]]
    human = [t_feats.text.row(example_key(e))[2] for e in rat_rows]
    t_rat = teacher_outputs(teacher, cached_batches(t_feats), rat_rows)
    result["plausibility"] = {"event": tconfig.rationale_eval_event, "teacher": plausibility(rat_rows, t_rat, human)}
    for name, model in students.items():
        result["plausibility"][name] = plausibility(rat_rows, student_outputs(model, s_batches, rat_rows), human)

    if faithfulness:
        print("faithfulness ...", file=sys.stderr)
        result["faithfulness"] = {"fractions": list(M.ERASER_FRACTIONS)}
        for name, model, feats in (("teacher", teacher, t_feats), ("student", students["student"], s_feats)):
            o = outs[name]
            text_idx = [i for i, x in enumerate(o) if x["content"].any()]
            image_idx = [i for i in parts["with_image"] if o[i]["has_image"]]
            result["faithfulness"][name] = {
                "text": text_faithfulness(model, feats, [test[i] for i in text_idx], [o[i] for i in text_idx]),  # type: ignore[arg-type]
                "image": image_faithfulness(model, feats, [test[i] for i in image_idx], [o[i] for i in image_idx]),  # type: ignore[arg-type]
            }

    print("size and latency ...", file=sys.stderr)
    teacher.backbone.image = ImageTower()
    student = students["student"]
    student.image = student_image_tower(student.config)
    result["size"] = {"teacher": size(teacher), "student": size(student)}
    result["latency"] = latency({"teacher": teacher, "student": student}, test, encoder,
                                image_configs={"teacher": ImageConfig(), "student": student_image_config(student.config)})
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


# ----------------------------------------------------------------------------- markdown


def to_markdown(result: dict[str, Any], provenance: dict[str, Any], training: dict[str, Any] | None) -> str:
    m = result["models"]
    names = [n for n in ("teacher", "student", "student_no_rationale_loss") if n in m]
    pretty = {"teacher": "teacher", "student": "student",
              "student_no_rationale_loss": "student, no rationale losses (ablation)"}
    lines = ["# Distillation: teacher vs student (CrisisMMD humanitarian, 5 classes)", "",
             f"Command: `{provenance['command']}` · commit {provenance['git_commit']} · {provenance['created']} · "
             f"run time {result['seconds']} s on {provenance['environment']['cpu_count']} CPU cores."]
    if training:
        lines.append(f"Student training: `crisislens distill student` — {training.get('train_minutes')} min; best dev "
                     f"Macro-F1 {training.get('best_dev_macro_f1', float('nan')):.4f} after "
                     f"{len(training.get('history', []))} epoch(s).")
    lines += ["", f"## CrisisMMD agreed test ({result['n_test']} posts)", ""]
    lines += md_table(["model", "Macro-F1", "accuracy", "weighted F1", *(f"F1 {c}" for c in LABEL_NAMES)], [
        [pretty[n], f"{t['macro_f1']:.4f}", f"{t['accuracy']:.4f}", f"{t['weighted_f1']:.4f}",
         *(f"{t['per_class'][c]['f1']:.3f}" for c in LABEL_NAMES)] for n in names for t in [m[n]["test"]]])
    lines += [""]
    lines += md_table(["model", "Macro-F1 with image", "n", "Macro-F1 text only", "n"], [
        [pretty[n], f"{w['macro_f1']:.4f}", w["n"], f"{t['macro_f1']:.4f}", t["n"]]
        for n in names for w, t in [(m[n]["with_image"], m[n]["text_only"])]])
    lines += ["", "## Agreement with the teacher (test)", ""]
    agreement = []
    for n in names[1:]:
        a = m[n]["agreement_with_teacher"]
        tr = a["token_rationale_vs_teacher"]
        iou = a["patch_topk_iou_vs_teacher"]
        agreement.append([pretty[n], f"{a['label_agreement']:.4f}",
                          f"{tr['micro_precision']:.3f} / {tr['micro_recall']:.3f} / {tr['micro_f1']:.4f}",
                          "–" if iou is None else f"{iou:.4f}"])
    lines += md_table(["model", "label agreement", "token-rationale P / R / F1 vs teacher",
                       "patch top-k IoU vs teacher"], agreement)
    p = result["plausibility"]
    lines += ["", f"## Plausibility vs human rationales ({p['event']}, never trained on)", ""]
    lines += md_table(["model", "token F1 (micro)", "IOU-F1", "AUPRC", "n"], [
        [pretty[n], f"{q['token_f1']['micro_f1']:.4f}", f"{q['iou_f1']:.4f}", f"{q['auprc']:.4f}", q["n"]]
        for n in names if n in p for q in [p[n]]])
    if "faithfulness" in result:
        f = result["faithfulness"]
        lines += ["", "## Faithfulness (AOPC over fractions " + ", ".join(str(x) for x in f["fractions"]) + ")", "",
                  "Comprehensiveness: higher is better; sufficiency: lower is better.", ""]
        lines += md_table(["model", "units", "scores", "comprehensiveness", "sufficiency", "n"], [
            [n, unit, kind, f"{r['comprehensiveness']:.4f}", f"{r['sufficiency']:.4f}", r["n"]]
            for n in ("teacher", "student") for unit in ("text", "image") for kind in ("rationale", "random")
            for r in [f[n][unit][kind]]])
    s, lat = result["size"], result["latency"]
    sizes = lat.get("image_size", {})
    bkey = f"batch{lat['batch_size']}_text_image"
    how = "models interleaved post by post, " if lat.get("interleaved") else ""
    lines += ["", f"## Size and PyTorch CPU latency ({lat['threads']} threads, same process, {how}median after warm-up)", "",
              "Inputs are raw: token ids and pixels at each model's resolution (teacher "
              f"{sizes.get('teacher', 224)} px, student {sizes.get('student', 224)} px), so the image tower and every "
              "text layer run.", ""]
    lines += md_table(["model", "parameters", "state dict MB", "batch 1 text+image ms", "batch 1 text-only ms",
                       f"batch {lat['batch_size']} text+image ms"], [
        [n, f"{s[n]['parameters']:,}", f"{s[n]['state_dict_mb']:.1f}", f"{L['batch1_text_image']['median_ms']:.1f}",
         f"{L['batch1_text_only']['median_ms']:.1f}", "–" if not L.get(bkey) else f"{L[bkey]['median_ms']:.1f}"]
        for n in ("teacher", "student") for L in [lat[n]]])
    if "speedup" in lat:
        lines += ["", "Speed-up of the student (teacher time / student time): " + ", ".join(
            f"{k.replace('_', ' ')} {v:.2f}x" for k, v in lat["speedup"].items()) + "."]
    return "\n".join(lines)


