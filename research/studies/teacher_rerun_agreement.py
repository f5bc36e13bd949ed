"""How far does another run of the teacher's recipe agree with the shipped teacher? -> research/results/teacher_rerun.{json,md}

The student's agreement targets (`research/results/v1/distill.md`) compare it with one run of the teacher,
whose outputs are stored (`models/teacher-outputs/outputs.npz`). This scores other teacher
checkpoints against those stored outputs by the same definitions (`eval_student.agreement`:
label agreement, token-rationale F1, top-5 patch IoU; the patch IoU at other k as in
`research/studies/bundle_rationale_agreement.py`) and puts the shipped bundle variants beside them
(`research/results/bundle_rationale.json`), so a student's agreement can be read against what the
teacher's own recipe reproduces. It trains nothing; for the same recipe run again:

    crisislens distill train-teacher --epochs 3 --skip-unimodal --out artifacts/teacher_rerun
    python research/studies/teacher_rerun_agreement.py --teacher rerun=artifacts/teacher_rerun
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crisislens.distill.eval_student import agreement
from crisislens.distill.eval_teacher import cached_batches, load_teacher, teacher_outputs
from crisislens.distill.features import example_key
from crisislens.distill.teacher_outputs import TeacherOutputStore, file_sha256
from crisislens.distill.features import build_features, minilm_encoder
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.evaluation.metrics import classification_report, set_iou
from _report import publish, run_line  # research/studies/_report.py
from _students import mean_se, teacher_side  # research/studies/_students.py
from bundle_rationale_agreement import (  # research/studies/bundle_rationale_agreement.py
    DEFAULT_KS,
    iou_at_k,
    k_row,
    parse_ks,
    teacher_rows,
)


def parse_teachers(parser: argparse.ArgumentParser, values: list[str]) -> dict[str, Path]:
    """NAME=DIR with DIR/best.pt, names unique."""
    out: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not (Path(folder) / "best.pt").is_file():
            parser.error(f"--teacher {value!r}: expected NAME=DIR with DIR/best.pt")
        if name in out:
            parser.error(f"--teacher {value!r}: the name {name!r} is given twice")
        out[name] = Path(folder)
    return out


def compare(outs: list[dict[str, Any]], rows: list[Any], store: TeacherOutputStore, ks: list[int]) -> dict[str, Any]:
    """One model's outputs on `rows` against the stored teacher's: Macro-F1 on the gold labels,
    `agreement` with the stored teacher and the patch IoU at each k."""
    stored = teacher_rows(store, [example_key(e) for e in rows], outs)
    rep = classification_report([e.label for e in rows], [LABEL_NAMES[int(o["probs"].argmax())] for o in outs],
                                list(LABEL_NAMES))
    return {"n": len(rows), "macro_f1": rep.macro_f1, "accuracy": rep.accuracy,
            "agreement_with_teacher": agreement(stored, outs), "patch_iou_at_k": iou_at_k(stored, outs, ks)}


def batch_dependence(model: Any, batches: Any, rows: list[Any]) -> dict[str, Any]:
    """The model's outputs on `rows` in batches of 64 vs one post at a time: labels that differ,
    the largest token-score difference and the mean top-k patch IoU (posts with a photo)."""
    with torch.no_grad():
        together = teacher_outputs(model, batches, rows, batch_size=64)
        alone = teacher_outputs(model, batches, rows, batch_size=1)
    ious = [set_iou(a["patch_rationale"], b["patch_rationale"]) for a, b in zip(together, alone) if a["has_image"]]
    return {"n": len(rows), "labels_differing": sum(int(a["probs"].argmax() != b["probs"].argmax())
                                                     for a, b in zip(together, alone)),
            "max_token_diff": max(float(np.abs(a["token_scores"] - b["token_scores"]).max()) for a, b in zip(together, alone)),
            "patch_iou": mean_se(ious)[0], "n_with_image": len(ious)}


def bundle_rows(path: Path) -> dict[str, Any]:
    """The shipped bundle variants' test numbers from `research/results/bundle_rationale.json` ({} without it)."""
    if not path.is_file():
        return {}
    d = json.loads(path.read_text())
    return {name: {"macro_f1": v["macro_f1"], "agreement_with_teacher": v["agreement_with_teacher"],
                   "patch_iou_at_k": v["patch_iou_at_k"]} for name, v in d["variants"].items()}


def _row(name: str, r: dict[str, Any]) -> str:
    a = r["agreement_with_teacher"]
    iou = a["patch_topk_iou_vs_teacher"]
    return (f"| {name} | {r['macro_f1']:.4f} | {a['label_agreement']:.4f} | "
            f"{a['token_rationale_vs_teacher']['micro_f1']:.4f} | {'–' if iou is None else f'{iou:.4f}'} "
            f"({a['n_with_image']}) |")


def to_markdown(result: dict[str, Any], prov: dict[str, Any]) -> str:
    ks = result["ks"]
    lines = ["# Another run of the teacher's recipe vs the shipped teacher (stored outputs)", "",
             run_line(prov, result["seconds"]), "",
             f"Reference: the shipped teacher's stored outputs (`{result['outputs']}`, teacher checkpoint sha256 "
             f"{(result['reference_sha256'] or '?')[:12]}). Definitions as in `research/results/v1/distill.md` (token-rationale F1 "
             "micro over content word pieces; top-5 patch IoU over the posts with a photo) and "
             "`research/results/bundle_rationale.md` (IoU at k: top-k of the stored 16-bit scores, posts where both used a "
             "photo). The student's targets: token F1 >= 0.80, patch IoU >= 0.60.", ""]
    for split in result["splits"]:
        lines += [f"## CrisisMMD {split}", "",
                  "| model | Macro-F1 | label agreement | token-rationale F1 vs teacher | patch top-5 IoU vs teacher (n) |",
                  "|---|---|---|---|---|"]
        runs = result["splits"][split]
        for name, r in runs.items():
            lines.append(_row(f"teacher run {name} (`{result['teachers'][name]['folder']}`, dev Macro-F1 "
                              f"{result['teachers'][name]['dev_macro_f1']:.4f}, sha256 "
                              f"{result['teachers'][name]['sha256'][:12]})", r))
        shipped = result["bundles"] if split == "test" else {}
        for name, r in shipped.items():
            lines.append(_row(f"student bundle {name} (`research/results/bundle_rationale.json`)", r))
        lines += ["", "Patch IoU with the shipped teacher at other k (mean ± standard error):", "",
                  "| model | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        first = next(iter(runs.values()))
        lines.append("| chance | " + " | ".join(f"{first['patch_iou_at_k'][str(k)]['chance']:.4f}" for k in ks) + " |")
        for name, r in runs.items():
            lines.append(k_row(f"teacher run {name}", r, ks))
        for name, r in shipped.items():
            lines.append(k_row(f"student bundle {name}", r, ks))
        lines.append("")
    if result.get("batch_dependence"):
        lines += ["## Does a teacher's answer depend on its batch?", "",
                  "The same test posts in batches of 64 (as the stored outputs and the tables above were computed) "
                  "and one at a time. The teacher's rationale extractor is a bidirectional GRU; evaluated, it runs "
                  "over each post's own tokens (`distill/teacher.py` `RationaleExtractor`, packed sequences). Over "
                  "the whole padded sequence, as before that change, a post's padding reached its token scores and "
                  "IPOT carried the change to the patches: this report at commit b4572c2 measured it.", "",
                  "| teacher run | posts | labels that differ | max abs Δ token score | top-5 patch IoU, batched vs alone (n) |",
                  "|---|---|---|---|---|"]
        for name, r in result["batch_dependence"].items():
            iou = "–" if r["patch_iou"] is None else f"{r['patch_iou']:.4f}"
            lines.append(f"| {name} | {r['n']} | {r['labels_differing']} | {r['max_token_diff']:.3f} | {iou} "
                         f"({r['n_with_image']}) |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", action="append", required=True, metavar="NAME=DIR",
                        help="a teacher checkpoint folder (DIR/best.pt) to compare with the stored outputs; repeatable")
    parser.add_argument("--ks", default=",".join(map(str, DEFAULT_KS)), help="patch top-k sizes, comma-separated")
    parser.add_argument("--bundles", type=Path, default=Path("research/results/bundle_rationale.json"),
                        help="the bundle variants' report, shown beside the teacher runs")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=Path("research/results"))
    args = parser.parse_args(argv)
    teachers = parse_teachers(parser, args.teacher)
    ks = parse_ks(parser, args.ks)
    started = time.perf_counter()
    torch.manual_seed(0)
    config, root, sets, store = teacher_side(args.data_root)
    tconfig = config.teacher_config()
    models = {name: load_teacher(folder / "best.pt").eval() for name, folder in teachers.items()}
    frozen = {m.config.frozen_text_layers for m in models.values()}
    if len(frozen) > 1:
        parser.error(f"the teachers freeze different numbers of text layers ({sorted(frozen)}): one feature cache "
                     "cannot serve them all; compare them in separate runs")
    features = build_features(sets, root, tconfig, next(iter(models.values())), minilm_encoder(tconfig))
    result: dict[str, Any] = {"ks": ks, "outputs": config.outputs,
                              "reference_sha256": store.meta.get("teacher_checkpoint_sha256"), "teachers": {},
                              "splits": {}, "bundles": bundle_rows(args.bundles)}
    for name, folder in teachers.items():
        summary = folder / "train_summary.json"
        dev = json.loads(summary.read_text()).get("best_dev_macro_f1") if summary.is_file() else float("nan")
        result["teachers"][name] = {"folder": str(folder), "sha256": file_sha256(folder / "best.pt"),
                                    "dev_macro_f1": dev}
    for split, rows in (("test", sets.test), ("dev", sets.dev)):
        rows = [e for e in rows if example_key(e) in store]
        if not rows:
            continue
        print(f"{split}: {len(rows)} posts", file=sys.stderr)
        result["splits"][split] = {}
        for name, model in models.items():
            with torch.no_grad():
                outs = teacher_outputs(model, cached_batches(features), rows)
            result["splits"][split][name] = compare(outs, rows, store, ks)
    # test posts with a photo and as many without: the teacher's forward pass, alone and in batches
    sample = [e for e in sets.test if e.image is not None]
    sample += [e for e in sets.test if e.image is None][: len(sample)]
    result["batch_dependence"] = {name: batch_dependence(model, cached_batches(features), sample)
                                  for name, model in models.items()}
    result["seconds"] = round(time.perf_counter() - started, 1)
    publish("teacher_rerun", " ".join(["python", "research/studies/teacher_rerun_agreement.py", *(argv or sys.argv[1:])]),
            result, to_markdown, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
