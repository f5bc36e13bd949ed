"""`crisislens distill eval-teacher`: everything the teacher report needs, from one run.

CrisisMMD test (overall, with image vs text-only), the comparison models on the same rows,
plausibility of text rationales on the held-out rationale event, faithfulness (AOPC
comprehensiveness/sufficiency) of token and patch rationales beside random ones of the same
size, and zero-shot on CrisisLexT26.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crisislens.distill import data as D
from crisislens.distill.assembly import Sets, assemble
from crisislens.distill.baseline import run_baseline
from crisislens.distill.features import Features, build_features, example_key, minilm_encoder
from crisislens.distill.loop import load_checkpoint
from crisislens.distill.teacher import CrossModalRationaleTeacher, TeacherConfig, TeacherInputs, build_teacher
from crisislens.distill.train_teacher import TrainConfig
from crisislens.distill.unimodal import load_unimodal, predict_probs
from crisislens.evaluation import metrics as M
from crisislens.evaluation.score import ScoredPost, score
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.markdown import md_table
from crisislens.runtime.preprocessing import TextEncoder

FAITHFULNESS_SEED = 7


def _names(probs: np.ndarray, allowed: Sequence[str] | None = None) -> list[str]:
    if allowed is not None:  # restrict to a subset of classes (zero-shot on fewer classes)
        cols = [LABEL_NAMES.index(n) for n in allowed]
        return [allowed[i] for i in probs[:, cols].argmax(1)]
    return [LABEL_NAMES[i] for i in probs.argmax(1)]


def report(gold: Sequence[str], probs: np.ndarray, allowed: Sequence[str] | None = None) -> dict[str, Any]:
    """The classification report of `probs` against `gold`, through the one scoring path every
    model goes through (`crisislens.evaluation.score`, as `crisislens eval score` scores a file)."""
    labels = list(allowed) if allowed is not None else list(LABEL_NAMES)
    records = [ScoredPost(str(i), g, p) for i, (g, p) in enumerate(zip(gold, _names(probs, allowed)))]
    scored = score(records, classes=labels).report
    assert scored is not None
    return scored.to_dict()


def split_by_image(rows: Sequence[D.Example]) -> dict[str, list[int]]:
    return {"with_image": [i for i, e in enumerate(rows) if e.image is not None],
            "text_only": [i for i, e in enumerate(rows) if e.image is None]}


def load_teacher(path: Path) -> CrossModalRationaleTeacher:
    ckpt = load_checkpoint(path)
    model = build_teacher(TeacherConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()


@torch.no_grad()
def teacher_outputs(model: torch.nn.Module, batches: Callable[[Sequence[D.Example]], TeacherInputs],
                    rows: Sequence[D.Example], batch_size: int = 64) -> list[dict[str, np.ndarray]]:
    """Per example: class probabilities (and the full-input head's, when the model has one), token
    ids, token scores/rationale, patch scores/rationale. Serves the teacher and the student."""
    model.eval()
    out: list[dict[str, np.ndarray]] = []
    for b in range(0, len(rows), batch_size):
        inputs = batches(rows[b : b + batch_size])
        o = model(inputs)
        content = model.content_mask(inputs.input_ids, inputs.attention_mask)
        full = getattr(o, "full_logits", None)
        for i in range(inputs.input_ids.shape[0]):
            n = int(inputs.attention_mask[i].sum())
            out.append({
                "probs": o.logits[i].softmax(-1).numpy(),
                **({"full_probs": full[i].softmax(-1).numpy()} if full is not None else {}),
                "input_ids": inputs.input_ids[i, :n].numpy(),
                "content": content[i, :n].numpy(),
                "token_scores": o.token_scores[i, :n].numpy(),
                "token_rationale": o.token_rationale[i, :n].numpy(),
                "patch_scores": o.patch_scores[i].numpy(),
                "patch_rationale": o.patch_rationale[i].numpy(),
                "has_image": bool(inputs.image_present[i]),
            })
    return out


def cached_batches(features: Features) -> Callable[[Sequence[D.Example]], TeacherInputs]:
    return lambda rows: features.batch(rows)[0]


def uncached_batches(encoder: TextEncoder, features: Features) -> Callable[[Sequence[D.Example]], TeacherInputs]:
    """Batches for rows outside the cache: tokenised now, lower text layers run by the model."""
    from crisislens.distill.features import image_key

    def make(rows: Sequence[D.Example]) -> TeacherInputs:
        enc = encoder.encode_batch([e.text or "" for e in rows])
        b = len(rows)
        feats = np.zeros((b, 49, 1280), np.float32)
        present = np.zeros(b, bool)
        for i, e in enumerate(rows):
            f = features.images.get(image_key(features.root, e.image)) if e.image is not None else None
            if f is not None:
                feats[i], present[i] = f, True
        return TeacherInputs(torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask),
                             torch.from_numpy(present), image_features=torch.from_numpy(feats))

    return make


# ----------------------------------------------------------------------------- faithfulness


def _target_probs(model: CrossModalRationaleTeacher, inputs: TeacherInputs) -> np.ndarray:
    with torch.no_grad():
        return model(inputs).logits.softmax(-1).numpy()


def text_faithfulness(model: CrossModalRationaleTeacher, features: Features, rows: Sequence[D.Example],
                      outs: Sequence[dict[str, np.ndarray]], batch_size: int = 64) -> dict[str, Any]:
    """Units = content tokens. Removing a token masks it from the input and recomputes the lower
    text layers (the cached states saw the whole sentence, so they would leak it back)."""

    def predict(keep: Sequence[np.ndarray]) -> np.ndarray:
        probs = []
        for b in range(0, len(rows), batch_size):
            inputs = features.batch(rows[b : b + batch_size])[0]
            inputs.text_states = None
            for i, k in enumerate(keep[b : b + batch_size]):
                pos = np.flatnonzero(outs[b + i]["content"])
                removed = pos[~k]
                inputs.attention_mask[i, removed] = 0
            probs.append(_target_probs(model, inputs))
        return np.concatenate(probs)

    scores = [o["token_scores"][o["content"]] for o in outs]
    ours = M.faithfulness(predict, scores)
    rand = M.faithfulness(predict, M.random_scores(scores, FAITHFULNESS_SEED))
    return {"rationale": ours.to_dict(), "random": rand.to_dict(), "n": len(rows)}


def image_faithfulness(model: CrossModalRationaleTeacher, features: Features, rows: Sequence[D.Example],
                       outs: Sequence[dict[str, np.ndarray]], batch_size: int = 64) -> dict[str, Any]:
    """Units = the 49 patches; a removed patch is dropped from the fusion input."""

    def predict(keep: Sequence[np.ndarray]) -> np.ndarray:
        probs = []
        for b in range(0, len(rows), batch_size):
            inputs = features.batch(rows[b : b + batch_size])[0]
            inputs.patch_mask = torch.from_numpy(np.stack(keep[b : b + batch_size]))
            probs.append(_target_probs(model, inputs))
        return np.concatenate(probs)

    scores = [o["patch_scores"] for o in outs]
    ours = M.faithfulness(predict, scores)
    rand = M.faithfulness(predict, M.random_scores(scores, FAITHFULNESS_SEED))
    return {"rationale": ours.to_dict(), "random": rand.to_dict(), "n": len(rows)}


# ----------------------------------------------------------------------------- the run


def evaluate(config: TrainConfig, teacher_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    root = D.resolve_data_root(config.data_root)
    sets: Sets = assemble(root, config)
    model = load_teacher(teacher_dir / "best.pt")
    encoder = minilm_encoder(config)
    features = build_features(sets, root, config, model, encoder)
    batches = cached_batches(features)
    result: dict[str, Any] = {"data": {"test": len(sets.test), "rationale_eval": len(sets.rationale_eval),
                                       "image_heldout": len(sets.image_heldout)}}

    print("CrisisMMD test ...", file=sys.stderr)
    test = sets.test
    gold = [e.label for e in test]
    outs = teacher_outputs(model, batches, test)
    probs = np.stack([o["probs"] for o in outs])
    full = np.stack([o["full_probs"] for o in outs])
    parts = split_by_image(test)
    models: dict[str, dict[str, Any]] = {}
    models["teacher"] = {"test": report(gold, probs),
                         **{k: report([gold[i] for i in ix], probs[ix]) for k, ix in parts.items()}}
    models["teacher_full_input_head"] = {"test": report(gold, full),
                                         **{k: report([gold[i] for i in ix], full[ix]) for k, ix in parts.items()}}

    print("TF-IDF baseline ...", file=sys.stderr)
    base = run_baseline(root)
    base_reports = base.pop("_reports")
    models["tfidf_logreg"] = {"test": base_reports["test"].to_dict(), **base["test_by_modality"],
                              "selected": base["selected"]}

    text_path, image_path = teacher_dir / "text_only.pt", teacher_dir / "image_only.pt"
    if text_path.is_file():
        print("text-only MiniLM ...", file=sys.stderr)
        p = predict_probs(load_unimodal("text", text_path), features.batch, test)
        models["text_only_minilm"] = {"test": report(gold, p),
                                      **{k: report([gold[i] for i in ix], p[ix]) for k, ix in parts.items()}}
    image_rows = [test[i] for i in parts["with_image"]]
    heldout_gold = [e.label for e in sets.image_heldout]
    teacher_heldout = np.stack([o["probs"] for o in teacher_outputs(model, batches, sets.image_heldout)])
    models["teacher"]["image_heldout"] = report(heldout_gold, teacher_heldout)
    if image_path.is_file():
        print("image-only EfficientNet-Lite0 ...", file=sys.stderr)
        image_model = load_unimodal("image", image_path)
        p = predict_probs(image_model, features.batch, image_rows)
        p_held = predict_probs(image_model, features.batch, sets.image_heldout)
        models["image_only_efficientnet"] = {"with_image": report([e.label for e in image_rows], p),
                                             "image_heldout": report(heldout_gold, p_held)}
    result["models"] = models

    print("plausibility ...", file=sys.stderr)
    rat_rows = [e for e in sets.rationale_eval if features.text.row(example_key(e))[3]]
    rat_outs = teacher_outputs(model, batches, rat_rows)
    gold_masks = [features.text.row(example_key(e))[2][o["content"]].astype(bool) for e, o in zip(rat_rows, rat_outs)]
    pred_masks = [o["token_rationale"][o["content"]] for o in rat_outs]
    soft = [o["token_scores"][o["content"]] for o in rat_outs]
    result["plausibility"] = {
        "event": config.rationale_eval_event, "n": len(rat_rows), "unit": "word-piece tokens",
        "token_f1": M.token_f1(gold_masks, pred_masks).to_dict(),
        "iou_f1": M.iou_f1(gold_masks, pred_masks),
        "auprc": M.auprc(gold_masks, soft),
        "mean_rationale_fraction": float(np.mean([m.mean() for m in pred_masks if len(m)])),
        "mean_human_fraction": float(np.mean([m.mean() for m in gold_masks if len(m)])),
    }

    print("faithfulness ...", file=sys.stderr)
    text_rows = [(e, o) for e, o in zip(test, outs) if o["content"].any()]
    image_idx = [i for i in parts["with_image"] if outs[i]["has_image"]]
    result["faithfulness"] = {
        "text": text_faithfulness(model, features, [e for e, _ in text_rows], [o for _, o in text_rows]),
        "image": image_faithfulness(model, features, [test[i] for i in image_idx], [outs[i] for i in image_idx]),
        "fractions": list(M.ERASER_FRACTIONS),
    }

    print("zero-shot CrisisLexT26 ...", file=sys.stderr)
    lex = [e for e in D.load_crisislex(root) if e.label is not None]
    lex_outs = teacher_outputs(model, uncached_batches(encoder, features), lex)
    lex_probs = np.stack([o["probs"] for o in lex_outs])
    lex_gold = [e.label for e in lex]
    present = [n for n in LABEL_NAMES if n in set(lex_gold)]
    result["zero_shot"] = {
        "dataset": "CrisisLexT26", "n": len(lex), "classes_present": present,
        "all_classes": report(lex_gold, lex_probs),
        "restricted_to_present": report(lex_gold, lex_probs, present),
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


# ----------------------------------------------------------------------------- markdown


SCORE_HEADER = ["model", "Macro-F1", "accuracy", "weighted F1", "n"]


def _row(name: str, rep: dict[str, Any] | None) -> list[object]:
    if not rep:
        return [name, "–", "–", "–", "–"]
    return [name, f"{rep['macro_f1']:.4f}", f"{rep['accuracy']:.4f}", f"{rep['weighted_f1']:.4f}", rep["n"]]


def to_markdown(result: dict[str, Any], provenance: dict[str, Any], training: dict[str, Any] | None) -> str:
    m = result["models"]
    lines = [
        "# Teacher: cross-modal rationale transfer (CrisisMMD humanitarian, 5 classes)",
        "",
        f"Command: `{provenance['command']}` · commit {provenance['git_commit']} · {provenance['created']} · "
        f"evaluation run time {result['seconds']} s.",
    ]
    if training:
        lines.append(f"Training: `crisislens distill train-teacher` — {training.get('train_minutes')} min on "
                     f"{provenance['environment']['cpu_count']} CPU cores; best dev Macro-F1 "
                     f"{training.get('best_dev_macro_f1', float('nan')):.4f}; rows per source {training.get('data')}.")
        pool = training.get("config", {}).get("humaid_pool")
        if pool is not None:
            lines.append(f"HumAID rows mixed in: {pool} (`--humaid-pool`). Training recipes tried on a GPU (HumAID on "
                         "or off, MiniLM layers fine-tuned, epochs, seeds): `research/results/teacher_sweep.md`.")
    lines += [
        "",
        "## CrisisMMD agreed test",
        "",
    ]
    names = [("teacher (prediction from rationales)", "teacher"),
             ("teacher, full-input head (ablation)", "teacher_full_input_head"),
             ("TF-IDF + logistic regression", "tfidf_logreg"),
             ("text-only MiniLM (fine-tuned)", "text_only_minilm")]
    lines += md_table(SCORE_HEADER, [_row(label, m.get(key, {}).get("test")) for label, key in names])
    for part in ("with_image", "text_only"):
        lines += ["", f"Rows {part.replace('_', ' ')}:", ""]
        models = names + ([] if part == "text_only" else [("image-only EfficientNet-Lite0", "image_only_efficientnet")])
        lines += md_table(SCORE_HEADER, [_row(label, m.get(key, {}).get(part)) for label, key in models])
    lines += ["", "Held-out labelled crisis photos (image only, never trained on):", ""]
    lines += md_table(SCORE_HEADER, [
        _row("teacher (image only input)", m["teacher"].get("image_heldout")),
        _row("image-only EfficientNet-Lite0", m.get("image_only_efficientnet", {}).get("image_heldout"))])
    t = m["teacher"]["test"]
    lines += ["", "### Teacher per class (test)", ""]
    lines += md_table(["class", "precision", "recall", "F1", "support"], [
        [name, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", c["support"]]
        for name, c in t["per_class"].items()])
    lines += ["", "Confusion matrix (rows true, columns predicted, order as above):", ""]
    for name, row in zip(t["labels"], t["confusion"]):
        lines.append(f"- {name}: {row}")
    p = result["plausibility"]
    lines += ["", f"## Plausibility of text rationales ({p['event']}, never trained on; {p['n']} tweets)", ""]
    lines += md_table(
        ["token P (micro)", "token R (micro)", "token F1 (micro)", "IOU-F1", "AUPRC", "rationale share (model / human)"],
        [[f"{p['token_f1']['micro_precision']:.4f}", f"{p['token_f1']['micro_recall']:.4f}",
          f"{p['token_f1']['micro_f1']:.4f}", f"{p['iou_f1']:.4f}", f"{p['auprc']:.4f}",
          f"{p['mean_rationale_fraction']:.3f} / {p['mean_human_fraction']:.3f}"]])
    f = result["faithfulness"]
    lines += ["", "## Faithfulness (AOPC over fractions " + ", ".join(str(x) for x in f["fractions"]) + ")", "",
              "Comprehensiveness: higher is better; sufficiency: lower is better.", ""]
    lines += md_table(["units", "scores", "comprehensiveness", "sufficiency", "n"], [
        [unit, kind, f"{r['comprehensiveness']:.4f}", f"{r['sufficiency']:.4f}", r["n"]]
        for unit in ("text", "image") for kind in ("rationale", "random") for r in [f[unit][kind]]])
    z = result["zero_shot"]
    lines += ["", f"## Zero-shot: {z['dataset']} ({z['n']} tweets, events never seen)", ""]
    lines += md_table(["classes", "Macro-F1", "accuracy"], [
        ["all 5", f"{z['all_classes']['macro_f1']:.4f}", f"{z['all_classes']['accuracy']:.4f}"],
        [f"restricted to the {len(z['classes_present'])} present", f"{z['restricted_to_present']['macro_f1']:.4f}",
         f"{z['restricted_to_present']['accuracy']:.4f}"]])
    return "\n".join(lines)


