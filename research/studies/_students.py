"""What the student benchmarks share: their command line (`--student NAME=CHECKPOINT`), the one
a report records, the data and the teacher's stored outputs they compare against, how many
transfer pairs a checkpoint was trained with, the patch IoU with the teacher and its mean ± s.e."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


def student_parser(doc: str) -> argparse.ArgumentParser:
    """A student benchmark's command line: --student NAME=CHECKPOINT (repeated), --data-root, --out."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--student", action="append", required=True, metavar="NAME=CHECKPOINT")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=Path("research/results"))
    return parser


def student_checkpoints(parser: argparse.ArgumentParser, specs: list[str]) -> dict[str, str]:
    """NAME -> checkpoint path, in the order given; a spec without an existing file is a usage error."""
    out: dict[str, str] = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not name or not path or not Path(path).is_file():
            parser.error(f"--student {spec}: give NAME=CHECKPOINT with an existing checkpoint file")
        out[name] = path
    return out


def command(script: str, specs: list[str]) -> str:
    """The command line a report records."""
    return f"python research/studies/{script} " + " ".join(f"--student {s}" for s in specs)


class TeacherSide(NamedTuple):
    """The distillation data and the teacher's stored outputs (`models/teacher-outputs`)."""

    config: Any  # StudentTrainConfig
    root: Path
    sets: Any  # assembly.Sets
    store: Any  # TeacherOutputStore


def teacher_side(data_root: str | None) -> TeacherSide:
    """`--data-root` (or the default) -> the student's training config, the data sets and the
    teacher's stored outputs."""
    from crisislens.distill import data as D
    from crisislens.distill.teacher_outputs import TeacherOutputStore
    from crisislens.distill.train_student import DEFAULT_OUTPUTS, StudentTrainConfig
    from crisislens.distill.assembly import assemble

    config = StudentTrainConfig(data_root=str(D.cli_data_root(data_root)), outputs=DEFAULT_OUTPUTS)
    root = D.resolve_data_root(config.data_root)
    sets = assemble(root, config.teacher_config())
    return TeacherSide(config, root, sets, TeacherOutputStore.load(Path(config.outputs)))


def shipped_teacher(side: TeacherSide) -> tuple[Any, Any]:
    """(the teacher the student was distilled from, evaluated; its cached input features for `side`'s sets)."""
    from crisislens.distill.eval_teacher import load_teacher
    from crisislens.distill.features import build_features, minilm_encoder

    tconfig = side.config.teacher_config()
    teacher = load_teacher(Path(side.config.teacher) / "best.pt").eval()
    return teacher, build_features(side.sets, side.root, tconfig, teacher, minilm_encoder(tconfig))


def training_summary(checkpoint: str) -> dict[str, Any] | None:
    """The train_summary.json beside a checkpoint, or None without one."""
    path = Path(checkpoint).with_name("train_summary.json")
    return json.loads(path.read_text()) if path.is_file() else None


def trained_pairs(checkpoint: str) -> int | None:
    """How many transfer pairs a checkpoint was trained with (its train_summary.json; None without one)."""
    summary = training_summary(checkpoint)
    return None if summary is None else int(summary.get("data", {}).get("pairs", 0))


def patch_ious(rows: Sequence[Any], outs: Sequence[dict[str, Any]], store: Any) -> list[float]:
    """Per post with a photo and words (for both models), the IoU of the student's top-k patches
    with the teacher's stored top-k (`TeacherOutputStore`)."""
    from crisislens.distill.features import example_key
    from crisislens.evaluation.metrics import set_iou

    ious = []
    for e, o in zip(rows, outs):
        t = store.row(example_key(e))
        if t["has_image"] and o["has_image"] and o["content"].any():
            ious.append(set_iou(t["patch_rationale"], o["patch_rationale"]))
    return ious


def mean_se(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (None without values / with fewer than two)."""
    arr = np.asarray(values, float)
    mean = float(arr.mean()) if len(arr) else None
    return mean, (float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else None)
