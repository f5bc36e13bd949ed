"""Which student change costs patch agreement? Several student checkpoints against the teacher's
stored outputs, one run -> research/results/patch_agreement.{json,md}

For each checkpoint (its own resolution and patch head, as saved): CrisisMMD dev and test
Macro-F1, label agreement with the teacher and the mean IoU of the top-k patches with the
teacher's IPOT top-k on the posts with a photo and text -- the same quantities as
`crisislens distill eval-student`, without the latency and faithfulness parts.

    python research/studies/patch_agreement.py --student NAME=CHECKPOINT [--student ...]
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np

from crisislens.distill import data as D
from crisislens.distill.eval_teacher import cached_batches
from crisislens.distill.features import example_key
from crisislens.distill.student import load_student
from crisislens.distill.teacher_outputs import TeacherOutputStore
from crisislens.distill.train_student import student_features, student_outputs
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.evaluation.metrics import classification_report

from _report import publish, run_line  # research/studies/_report.py
from _students import (  # research/studies/_students.py
    command,
    mean_se,
    patch_ious,
    student_checkpoints,
    student_parser,
    teacher_side,
    trained_pairs,
    training_summary,
)


def scores(rows: list[D.Example], outs: list[dict[str, Any]], store: TeacherOutputStore) -> dict[str, Any]:
    agree = [int(np.argmax(store.row(example_key(e))["logits"])) == int(o["probs"].argmax())
             for e, o in zip(rows, outs)]
    rep = classification_report([e.label for e in rows], [LABEL_NAMES[int(o["probs"].argmax())] for o in outs],
                                LABEL_NAMES)
    ious = patch_ious(rows, outs, store)
    iou, se = mean_se(ious)
    return {"macro_f1": rep.macro_f1, "accuracy": rep.accuracy, "label_agreement": float(np.mean(agree)),
            "patch_topk_iou": iou, "patch_iou_se": se, "n": len(rows), "n_with_image": len(ious)}


def to_markdown(result: dict[str, Any], prov: dict[str, Any]) -> str:
    lines = ["# Patch agreement with the teacher, per student checkpoint", "",
             run_line(prov, result["seconds"]), "",
             "Top-5 patch IoU with the teacher's IPOT top-5 on CrisisMMD posts with a photo and text (± standard "
             "error), label agreement with the teacher and Macro-F1 on all posts; the teacher's side is its stored "
             "outputs (`models/teacher-outputs`), so agreement can differ by a post from `research/results/v1/distill.md`, which "
             "runs the teacher again.", "",
             "| student | photo px | image tower | patch head | transfer pairs | teacher-state terms | epochs (best) "
             "| dev patch IoU | test patch IoU | test label agreement | test Macro-F1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["students"].items():
        d, t = r["dev"], r["test"]
        lines.append(f"| {name} | {r['image_size']} | {r.get('tower', 'whole')} | {r['patch_head']} | {r['pairs']} | "
                     f"{r.get('state_terms', '–')} | {r.get('epochs', '–')} | "
                     f"{d['patch_topk_iou']:.4f} ± {d['patch_iou_se']:.3f} | {t['patch_topk_iou']:.4f} ± "
                     f"{t['patch_iou_se']:.3f} | {t['label_agreement']:.4f} | {t['macro_f1']:.4f} |")
    return "\n".join(lines)


def head_name(config: Any) -> str:
    if config.transfer_dim:
        return "one-step transfer"
    return f"MLP {config.patch_head_hidden}" if config.patch_head_hidden else "linear"


def tower_name(config: Any) -> str:
    blocks = getattr(config, "image_blocks", None)
    tuned = getattr(config, "tuned_image_blocks", 0)
    name = "whole" if blocks is None else f"first {blocks} blocks"
    return f"{name}, last {tuned} trained" if tuned else name


STATE_TERMS = ("hidden", "relation")  # DistillWeights terms that read the teacher's final states


def state_terms(checkpoint: str) -> str:
    """The teacher-state loss terms a checkpoint was trained with and their weights ("hidden 1"),
    or "–" (none, or a checkpoint older than those terms)."""
    from crisislens.distill.loop import load_checkpoint

    saved = load_checkpoint(checkpoint).get("loss") or {}
    used = [f"{t} {saved[t]:g}" for t in STATE_TERMS if saved.get(t)]
    return ", ".join(used) or "–"


def epochs_run(checkpoint: str) -> str:
    """"best of run": the epoch whose weights the checkpoint holds (best dev Macro-F1) and how
    many epochs training ran (its train_summary.json); "–" without one."""
    history = (training_summary(checkpoint) or {}).get("history", [])
    if not history:
        return "–"
    best = max(history, key=lambda h: h["dev"]["macro_f1"])["epoch"]
    return f"{best} of {len(history)}"


def main(argv: list[str] | None = None) -> int:
    parser = student_parser(__doc__)
    args = parser.parse_args(argv)
    checkpoints = student_checkpoints(parser, args.student)
    started = time.perf_counter()
    config, root, sets, store = teacher_side(args.data_root)
    result: dict[str, Any] = {"students": {}}
    for name, path in checkpoints.items():
        student = load_student(path)
        pairs = trained_pairs(path)
        print(f"{name}: {student.config.image_size} px ...", file=sys.stderr)
        feats = student_features(sets, root, replace(config, model=student.config), student)
        entry: dict[str, Any] = {"checkpoint": path, "image_size": student.config.image_size,
                                 "tower": tower_name(student.config), "patch_head": head_name(student.config),
                                 "pairs": "–" if pairs is None else pairs, "state_terms": state_terms(path),
                                 "epochs": epochs_run(path)}
        for split, rows in (("dev", sets.dev), ("test", sets.test)):
            entry[split] = scores(rows, student_outputs(student, cached_batches(feats), rows), store)
        result["students"][name] = entry
    result["seconds"] = round(time.perf_counter() - started, 1)
    publish("patch_agreement", command("patch_agreement.py", args.student), result, to_markdown, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
