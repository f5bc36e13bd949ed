"""Does the student fail to *learn* the teacher's patches, or to *generalise* them? One run ->
research/results/patch_fit.{json,md}

For each student checkpoint: top-5 patch IoU with the teacher's IPOT top-5 on the posts it was
trained on (CrisisMMD training posts with a photo and text, and the synthetic transfer pairs it
was trained with, where the teacher outputs have them) beside dev and test. Train about equal to test means
the student underfits the teacher's patch choice (it cannot represent it), rather than
overfitting its training posts.

With `--tune-epochs N`, the first student's patch side alone -- the patch projection, position
embeddings and transfer head, nothing the words' scores or the class use directly -- is trained
N more epochs on the examples with a photo and text (patch losses only), with the IoU after each
epoch: does a longer run of the patch side close the gap? (How much the teacher's patches depend
on the words: `research/results/patch_ceiling.md`.)

    python research/studies/patch_fit.py --student NAME=CHECKPOINT [--student ...] [--tune-epochs N]
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from crisislens.distill import data as D
from crisislens.distill.eval_teacher import cached_batches
from crisislens.distill.features import example_key
from crisislens.distill.student import DistillWeights, RationaleStudent, load_student
from crisislens.distill.teacher_outputs import AlignmentStore, TeacherOutputStore
from crisislens.distill.train_student import (
    DEFAULT_ALIGNMENT,
    batch_loss,
    student_features,
    student_outputs,
    transfer_pairs,
)
from crisislens.distill.features import Features, bucketed
from crisislens.distill.loop import optimizer_step

from _report import publish, run_line  # research/studies/_report.py
from _students import (  # research/studies/_students.py
    command,
    mean_se,
    patch_ious,
    student_checkpoints,
    student_parser,
    teacher_side,
    trained_pairs,
)

# The parts of the student that only the patch scores use (the fusion layer, which the words
# and the class share, stays as trained).
PATCH_SIDE = ("patch_proj", "row_embed", "col_embed", "align_")


def summary(ious: list[float]) -> dict[str, Any]:
    mean, se = mean_se(ious)
    return {"iou": None if mean is None else round(mean, 4), "se": round(se or 0.0, 4), "n": len(ious)}


def fit(model: RationaleStudent, feats: Features, splits: dict[str, Sequence[D.Example]],
        store: TeacherOutputStore) -> dict[str, Any]:
    model.eval()
    return {name: summary(patch_ious(rows, student_outputs(model, cached_batches(feats), rows), store))
            for name, rows in splits.items()}


def tune_patch_side(model: RationaleStudent, feats: Features, rows: list[D.Example], store: TeacherOutputStore,
                    alignment: AlignmentStore | None, splits: dict[str, Sequence[D.Example]], epochs: int,
                    lr: float, seed: int) -> list[dict[str, Any]]:
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(PATCH_SIDE))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    weights = replace(DistillWeights(), kd=0.0, ce=0.0, token_teacher=0.0, token_human=0.0)  # patch terms only
    total = epochs * ((len(rows) + 31) // 32)
    done, history = 0, []
    for epoch in range(epochs):
        model.train()
        for batch in bucketed(list(rows), feats, 32, random.Random(seed + epoch)):
            for group in optimizer.param_groups:
                group["lr"] = lr * (1 - done / total)
            done += 1
            loss, parts = batch_loss(model, batch, feats, store, alignment, weights)
            optimizer_step(model, optimizer, loss, parts, Counter())
        history.append({"epoch": epoch + 1, **fit(model, feats, splits, store)})
        print(f"tune epoch {epoch + 1}: {history[-1]}", file=sys.stderr)
    return history


def cell(r: dict[str, Any]) -> str:
    return "–" if r["iou"] is None else f"{r['iou']:.4f} ± {r['se']:.3f} (n {r['n']})"


def to_markdown(result: dict[str, Any], prov: dict[str, Any]) -> str:
    splits = list(next(iter(result["students"].values()))["fit"])
    lines = ["# Patch fit: does the student learn the teacher's patches on its own training posts?", "",
             run_line(prov, result["seconds"]), "",
             "Top-5 patch IoU with the teacher's IPOT top-5 (± standard error, n posts with a photo and text). "
             "`train-crisismmd`: CrisisMMD training posts with both; `train-pairs`: the student's own synthetic "
             "transfer pairs (a training text + a training photo) whose teacher outputs are in "
             "`models/teacher-outputs`.", "",
             "| student | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for name, r in result["students"].items():
        lines.append(f"| {name} | " + " | ".join(cell(r["fit"][s]) for s in splits) + " |")
    tuned = result.get("tuned")
    if tuned:
        lines += ["", f"## {tuned['epochs']} more epoch(s) of the patch side only ({tuned['student']})", "",
                  f"Trained: {', '.join(PATCH_SIDE)}* ({tuned['parameters']:,} parameters), patch losses only, on "
                  f"{tuned['rows']:,} examples with a photo and text, AdamW lr {tuned['lr']} decaying linearly.", "",
                  "| epoch | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
        for h in tuned["history"]:
            lines.append(f"| {h['epoch']} | " + " | ".join(cell(h[s]) for s in splits) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = student_parser(__doc__)
    parser.add_argument("--tune-epochs", type=int, default=0, help="train the first student's patch side N more epochs")
    parser.add_argument("--tune-lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    checkpoints = student_checkpoints(parser, args.student)
    started = time.perf_counter()
    config, root, sets, store = teacher_side(args.data_root)
    train_posts = [e for e in sets.train["crisismmd"] if e.image is not None and e.text]
    result: dict[str, Any] = {"students": {}}
    command_line = command("patch_fit.py", args.student)
    if args.tune_epochs:
        command_line += f" --tune-epochs {args.tune_epochs} --tune-lr {args.tune_lr}"
    for i, (name, path) in enumerate(checkpoints.items()):
        student = load_student(path)
        print(f"{name} ...", file=sys.stderr)
        # The student's own transfer pairs (as many as it was trained with), where the store has them.
        count = trained_pairs(path)
        pairs = [e for e in transfer_pairs(sets, config.pairs if count is None else count, config.seed)
                 if example_key(e) in store]
        splits = {"train-crisismmd": train_posts, "train-pairs": pairs, "dev": sets.dev, "test": sets.test}
        feats = student_features(sets, root, replace(config, model=student.config), student, pairs)
        result["students"][name] = {"checkpoint": path, "fit": fit(student, feats, splits, store)}
        if i == 0 and args.tune_epochs:
            alignment = AlignmentStore.load(Path(DEFAULT_ALIGNMENT)) if student.config.transfer_dim else None
            rows = splits["train-crisismmd"] + pairs
            history = tune_patch_side(student, feats, rows, store, alignment, splits, args.tune_epochs, args.tune_lr,
                                      config.seed)
            result["tuned"] = {"student": name, "epochs": args.tune_epochs, "lr": args.tune_lr, "rows": len(rows),
                               "parameters": sum(p.numel() for p in student.parameters() if p.requires_grad),
                               "history": history}
    result["seconds"] = round(time.perf_counter() - started, 1)
    publish("patch_fit", command_line, result, to_markdown, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
