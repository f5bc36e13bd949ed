"""Do the shipped bundle variants explain like the teacher? -> research/results/bundle_rationale.{json,md}

What a responder sees comes from a bundle variant through the runtime (ONNX Runtime, INT8), not
from the PyTorch student that `research/results/v1/distill.md` scores. This runs each variant given over
CrisisMMD test with the runtime's own reader, preprocessing and backend, takes the hard
rationales by the rules the bundle's manifest records (token score >= threshold, at least N
tokens; the top-k patches) and compares them with the teacher's stored outputs
(`models/teacher-outputs/outputs.npz`) by the definitions of `crisislens distill eval-student`
(`eval_student.agreement`). Patch agreement is also given at other k, beside the IoU that two
random k-sets of the patches have on average, so the top-5 number can be read against chance:

    python research/studies/bundle_rationale_agreement.py --bundle int8-text=models/crisislens-student:int8-text \
        --bundle int8-w8a32=models/crisislens-student:int8-w8a32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from math import comb
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.distill import data as D
from crisislens.distill.eval_student import agreement
from crisislens.distill.teacher_outputs import TeacherOutputStore
from crisislens.runtime.bundle import load_bundle
from crisislens.runtime.backends.feeds import run_per_post
from crisislens.runtime.engine import Engine, softmax
from crisislens.evaluation.datasets import dataset_inputs
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.evaluation.metrics import classification_report, set_iou, soft_to_hard
from crisislens.runtime.readers import read_posts
from _report import publish, run_line  # research/studies/_report.py
from _students import mean_se  # research/studies/_students.py
from zero_shot_bundles import parse_bundles  # research/studies/zero_shot_bundles.py

DEFAULT_KS = (1, 3, 5, 10)


def hard_tokens(scores: np.ndarray, content: np.ndarray, threshold: float, min_tokens: int) -> np.ndarray:
    """The student's token rule in NumPy (`teacher.select_tokens`): content tokens scoring at
    least `threshold`; when fewer than `min_tokens` pass, the `min_tokens` best content tokens."""
    keep = (scores >= threshold) & content
    if keep.sum() < min_tokens:
        ranked = np.where(content, scores, -1.0)
        keep = keep | (soft_to_hard(ranked, top_k=min_tokens) & content)
    return keep


def chance_iou(k: int, m: int) -> float:
    """Expected IoU of two independent, uniformly random k-subsets of m items (hypergeometric overlap)."""
    if not 0 < k <= m:
        raise ValueError(f"chance_iou needs 0 < k <= m, got k={k}, m={m}")
    return sum(comb(k, i) * comb(m - k, k - i) / comb(m, k) * i / (2 * k - i) for i in range(k + 1))


def run_batches(engine: Engine, posts: Sequence[Any], batch_size: int = 32) -> list[tuple[Any, tuple[np.ndarray, ...]]]:
    """The runtime over `posts`: each batch prepared once (`Engine.prepare`) and run by `Engine.run`."""
    runs = []
    for b in range(0, len(posts), batch_size):
        prep = engine.prepare(posts[b : b + batch_size])
        runs.append((prep, engine.run(prep.feeds)))
        print(f"\r{engine.variant.name}: {min(b + batch_size, len(posts))}/{len(posts)}", end="", file=sys.stderr,
              flush=True)
    print(file=sys.stderr)
    return runs


def variant_outputs(engine: Engine, runs: Sequence[tuple[Any, tuple[np.ndarray, ...]]]) -> list[dict[str, Any]]:
    """Per post, what `eval_student.agreement` reads, from the runtime's outputs (`run_batches`);
    hard rationales by the bundle manifest's rules."""
    model = engine.bundle.model_info
    rules = {"threshold": float(model.get("rationale_threshold", 0.5)),
             "min_tokens": int(model.get("min_rationale_tokens", 0)), "top_k": int(model.get("top_k_patches", 5))}
    special = {engine.encoder.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")} - {None}
    out: list[dict[str, Any]] = []
    for prep, (logits, tokens, patches) in runs:
        probs = softmax(logits.astype(np.float64))
        for i in range(len(logits)):
            n = int(prep.feeds["attention_mask"][i].sum())
            ids = prep.feeds["input_ids"][i, :n]
            content = ~np.isin(ids, list(special))
            scores = tokens[i, :n].astype(np.float64)
            has_image = bool(prep.feeds["image_index"][i] >= 0)
            patch_scores = patches[i].astype(np.float64)
            out.append({"probs": probs[i], "input_ids": ids, "content": content, "token_scores": scores,
                        "token_rationale": hard_tokens(scores, content, rules["threshold"], rules["min_tokens"]),
                        "patch_scores": patch_scores, "has_image": has_image,
                        "patch_rationale": (soft_to_hard(patch_scores, top_k=rules["top_k"]) if has_image
                                            else np.zeros(len(patch_scores), bool))})
    return out


def teacher_rows(store: TeacherOutputStore, keys: Sequence[str], student: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The teacher's stored outputs in `agreement`'s shape. Its token arrays cover the same word
    pieces as the runtime's (one tokenizer); a post where the lengths differ is an error."""
    rows = []
    for key, s in zip(keys, student):
        t = store.row(key)
        if len(t["token_rationale"]) != len(s["content"]):
            raise ValueError(f"{key}: the teacher's outputs cover {len(t['token_rationale'])} word pieces, the "
                             f"runtime's tokenizer gives {len(s['content'])}: outputs.npz and the bundle disagree")
        rows.append({"probs": softmax(np.asarray(t["logits"], np.float64)[None])[0], "content": s["content"],
                     "token_rationale": t["token_rationale"].astype(bool), "has_image": bool(t["has_image"]),
                     "patch_scores": t["patch_scores"], "patch_rationale": t["patch_rationale"].astype(bool)})
    return rows


def iou_at_k(teacher: Sequence[dict[str, Any]], student: Sequence[dict[str, Any]], ks: Sequence[int]) -> dict[str, Any]:
    """Top-k patch IoU (teacher top-k of its stored scores vs the variant's top-k) on the posts where
    both used a photo, per k, with the chance level for the grid."""
    pairs = [(t, s) for t, s in zip(teacher, student) if t["has_image"] and s["has_image"]]
    out: dict[str, Any] = {}
    for k in ks:
        ious = [set_iou(soft_to_hard(t["patch_scores"], top_k=k), soft_to_hard(s["patch_scores"], top_k=k))
                for t, s in pairs]
        mean, se = mean_se(ious)
        m = len(pairs[0][1]["patch_scores"]) if pairs else 49
        out[str(k)] = {"iou": mean, "se": se, "n": len(ious), "chance": chance_iou(k, m)}
    return out


def stored_top_k_check(teacher: Sequence[dict[str, Any]], k: int) -> dict[str, int]:
    """How often the teacher's stored top-k (taken from its 32-bit scores) is the top-k of its stored
    16-bit scores, and how many of the others tie at k-th place in 16 bits (rounding, not a mismatch)."""
    same = tied = 0
    for t in teacher:
        if (t["patch_rationale"] == soft_to_hard(t["patch_scores"], top_k=k)).all():
            same += 1
        else:
            ranked = np.sort(t["patch_scores"])[::-1]
            tied += int(ranked[k - 1] == ranked[k])
    return {"n": len(teacher), "k": k, "same": same, "tied_at_k": tied}


def batch_consistency(engine: Engine, runs: Sequence[tuple[Any, tuple[np.ndarray, ...]]]) -> dict[str, Any]:
    """Each post in its batch (`run_batches`) vs alone (`run_per_post`): how many labels differ and
    the largest score differences, for one backend call per batch and for the runtime's own
    `Engine.run` (which runs a batch-dependent variant a post at a time)."""
    out: dict[str, dict[str, float]] = {name: {"labels_differing": 0, "max_token_diff": 0.0, "max_patch_diff": 0.0}
                                        for name in ("one call per batch", "runtime")}
    for prep, runtime in runs:
        feeds = prep.feeds
        alone = run_per_post(engine.backend.run, feeds)
        photo = feeds["image_index"] >= 0
        words = feeds["attention_mask"].astype(bool)
        for name, got in (("one call per batch", engine.backend.run(feeds)), ("runtime", runtime)):
            row = out[name]
            row["labels_differing"] += int((got[0].argmax(1) != alone[0].argmax(1)).sum())
            row["max_token_diff"] = max(row["max_token_diff"], float(np.abs(got[1] - alone[1])[words].max()))
            if photo.any():
                row["max_patch_diff"] = max(row["max_patch_diff"], float(np.abs(got[2] - alone[2])[photo].max()))
    sizes = [len(prep.feeds["image_index"]) for prep, _ in runs]
    return {"batch_size": max(sizes), "n": sum(sizes), **out}


def evaluate_variant(folder: Path, variant: str | None, posts: Sequence[Any], store: TeacherOutputStore,
                     ks: Sequence[int]) -> dict[str, Any]:
    bundle = load_bundle(folder)
    engine = Engine(bundle, variant)
    runs = run_batches(engine, posts)
    student = variant_outputs(engine, runs)
    teacher = teacher_rows(store, [f"crisismmd:{p.id}" for p in posts], student)
    report = classification_report([p.label for p in posts], [LABEL_NAMES[int(s["probs"].argmax())] for s in student],
                                   list(LABEL_NAMES))
    stored_top5 = stored_top_k_check([t for t in teacher if t["has_image"]], int(bundle.model_info.get("top_k_patches", 5)))
    return {"folder": str(folder), "variant": engine.variant.name, "sha256": bundle.sha256, "n": len(posts),
            "macro_f1": report.macro_f1, "accuracy": report.accuracy,
            "agreement_with_teacher": agreement(teacher, student), "patch_iou_at_k": iou_at_k(teacher, student, ks),
            "teacher_stored_top_k": stored_top5, "batch_consistency": batch_consistency(engine, runs)}


def pytorch_reference(path: Path) -> dict[str, Any] | None:
    """The PyTorch student's agreement with the teacher as `research/results/v1/distill.json` measured it (None without it)."""
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    a = d["models"]["student"]["agreement_with_teacher"]
    return {"report": str(path), "commit": d.get("provenance", {}).get("git_commit", "")[:7],
            "macro_f1": d["models"]["student"]["test"]["macro_f1"], "label_agreement": a["label_agreement"],
            "token_f1": a["token_rationale_vs_teacher"]["micro_f1"], "patch_iou": a["patch_topk_iou_vs_teacher"],
            "n_with_image": a["n_with_image"]}


def k_row(name: str, r: dict[str, Any], ks: Sequence[int], show_n: bool = False) -> str:
    """A Markdown row of `r["patch_iou_at_k"]` (mean ± s.e., and n with `show_n`), '–' where missing."""
    cells = []
    for k in ks:
        c = r["patch_iou_at_k"].get(str(k))
        cells.append("–" if not c or c["iou"] is None else
                     f"{c['iou']:.4f} ± {c['se'] or 0:.3f}" + (f" (n {c['n']})" if show_n else ""))
    return f"| {name} | " + " | ".join(cells) + " |"


def parse_ks(parser: argparse.ArgumentParser, value: str) -> list[int]:
    """--ks '1,3,5': whole numbers, each at least 1."""
    try:
        ks = [int(k) for k in value.split(",")]
    except ValueError:
        parser.error(f"--ks {value!r}: expected comma-separated whole numbers")
    if any(k < 1 for k in ks):
        parser.error(f"--ks {value!r}: every k must be at least 1")
    return ks


def to_markdown(result: dict[str, Any], prov: dict[str, Any]) -> str:
    first = next(iter(result["variants"].values()))
    lines = ["# Shipped bundle variants: rationale agreement with the teacher (CrisisMMD test)", "",
             run_line(prov, result["seconds"]), "",
             "Through the runtime (the bundle's preprocessing, ONNX Runtime CPU); hard rationales by the rules in "
             "each bundle's manifest; teacher = `models/teacher-outputs/outputs.npz`; definitions as in "
             "`research/results/v1/distill.md` (token P/R/F1 micro over content word pieces, patch IoU over the posts with a "
             "photo).", "",
             "| model | posts | Macro-F1 | label agreement | token-rationale P / R / F1 vs teacher | "
             f"patch top-{first['teacher_stored_top_k']['k']} IoU vs teacher (n) |", "|---|---|---|---|---|---|"]
    ref = result.get("pytorch_reference")
    if ref:
        lines.append(f"| PyTorch student (`{ref['report']}`, commit {ref['commit']}) | {result['n']} | "
                     f"{ref['macro_f1']:.4f} | {ref['label_agreement']:.4f} | – / – / {ref['token_f1']:.4f} | "
                     f"{ref['patch_iou']:.4f} ({ref['n_with_image']}) |")
    for name, r in result["variants"].items():
        a = r["agreement_with_teacher"]
        tr = a["token_rationale_vs_teacher"]
        lines.append(f"| {name} (`{r['folder']}`:{r['variant']}) | {r['n']} | {r['macro_f1']:.4f} | "
                     f"{a['label_agreement']:.4f} | {tr['micro_precision']:.3f} / {tr['micro_recall']:.3f} / "
                     f"{tr['micro_f1']:.4f} | {a['patch_topk_iou_vs_teacher']:.4f} ({a['n_with_image']}) |")
    ks = result["ks"]
    lines += ["", "## Patch IoU with the teacher at other k", "",
              "Teacher top-k of its stored patch scores vs the variant's top-k, posts where both used a photo "
              "(mean ± standard error); chance = the mean IoU of two random k-sets of the 49 patches.", "",
              "| model | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    lines.append("| chance | " + " | ".join(f"{first['patch_iou_at_k'][str(k)]['chance']:.4f}" for k in ks) + " |")
    for name, r in result["variants"].items():
        lines.append(k_row(name, r, ks, show_n=True))
    lines += ["", "## Does a post's answer depend on its batch?", "",
              f"Each post in batches of {first['batch_consistency']['batch_size']} against the same post run alone "
              "(cut to its own tokens). *One call per batch* is the model over the whole batch; *runtime* is what "
              "`Engine.run` does, which runs a variant with dynamic INT8 (activation scales taken from the whole "
              "call) one post at a time.", "",
              "| variant | path | labels that differ | max abs Δ token score | max abs Δ patch score |",
              "|---|---|---|---|---|"]
    for name, r in result["variants"].items():
        bc = r["batch_consistency"]
        for path in ("one call per batch", "runtime"):
            row = bc[path]
            lines.append(f"| {name} | {path} | {row['labels_differing']} of {bc['n']} | {row['max_token_diff']:.2e} | "
                         f"{row['max_patch_diff']:.2e} |")
    c = first["teacher_stored_top_k"]
    lines += ["", f"The first table uses the teacher's stored top-{c['k']} (taken from its 32-bit scores), the k columns "
              f"the top-k of its stored 16-bit scores: the two top-{c['k']} sets are the same on {c['same']} of {c['n']} "
              f"posts, and {c['tied_at_k']} of the other {c['n'] - c['same']} tie at place {c['k']} in 16 bits."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", action="append", required=True, metavar="NAME=DIR[:VARIANT]",
                        help="a bundle variant to score (repeatable)")
    parser.add_argument("--outputs", type=Path, default=Path("models/teacher-outputs/outputs.npz"),
                        help="the teacher's stored outputs")
    parser.add_argument("--ks", default=",".join(map(str, DEFAULT_KS)), help="patch top-k sizes, comma-separated")
    parser.add_argument("--reference", type=Path, default=Path("research/results/v1/distill.json"),
                        help="the PyTorch student's report, shown as the first row")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=Path("research/results"))
    args = parser.parse_args(argv)
    bundles = parse_bundles(parser, args.bundle)
    ks = parse_ks(parser, args.ks)
    root = D.resolve_data_root(str(D.cli_data_root(args.data_root)))
    started = time.perf_counter()
    store = TeacherOutputStore.load(args.outputs)
    inputs, images = dataset_inputs("crisismmd:test", root)
    posts = [p for p in read_posts(inputs, image_root=images).posts if p.label is not None]
    result: dict[str, Any] = {"n": len(posts), "ks": ks, "outputs": str(args.outputs),
                              "teacher_checkpoint_sha256": store.meta.get("teacher_checkpoint_sha256"),
                              "pytorch_reference": pytorch_reference(args.reference), "variants": {}}
    for name, (folder, variant) in bundles.items():
        result["variants"][name] = evaluate_variant(folder, variant, posts, store, ks)
    result["seconds"] = round(time.perf_counter() - started, 1)
    publish("bundle_rationale", " ".join(["python", "research/studies/bundle_rationale_agreement.py",
                                          *(argv or sys.argv[1:])]), result, to_markdown, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
