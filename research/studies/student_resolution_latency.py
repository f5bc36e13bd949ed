"""Teacher vs students at their photo resolutions, PyTorch CPU, one run -> research/results/student_latency.{json,md}

A student's batch-1 time was mostly EfficientNet-Lite0. This run times the teacher (224 px) and
each student checkpoint given (e.g. the earlier 192 px student on the whole tower and the shipped
112 px one on the tower cut after stage 5) in
the same process, the models taking turns post by post (`eval_student.latency`), so their
ratios are comparable. Same raw inputs as `crisislens distill eval-student`: token ids and
pixels at each model's resolution, on CrisisMMD test posts.

    python research/studies/student_resolution_latency.py --student student-192=artifacts/student_192_mlp/best.pt \
        --student student-112-cut=artifacts/student/best.pt
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from crisislens.distill import data as D
from crisislens.distill.eval_student import latency, size
from crisislens.distill.eval_teacher import load_teacher
from crisislens.distill.student import load_student, student_image_config, student_image_tower
from crisislens.distill.teacher import ImageTower
from crisislens.distill.train_student import StudentTrainConfig
from crisislens.distill.features import minilm_encoder
from crisislens.runtime.preprocessing import ImageConfig

from _report import publish, run_line  # research/studies/_report.py
from _students import command, student_checkpoints, student_parser  # research/studies/_students.py


def to_markdown(result: dict[str, Any], prov: dict[str, Any]) -> str:
    lat = result["latency"]
    lines = ["# Teacher vs students at two photo resolutions (PyTorch CPU, batch 1 and 32)", "",
             run_line(prov, result["seconds"], f" · {lat['threads']} threads"), "",
             "All models in one process, taking turns post by post (median after warm-up, "
             f"{lat['rounds']} rounds over the batch-1 posts); raw token ids and pixels at each model's resolution.", "",
             f"| model | photo px | parameters | batch 1 text+image ms | batch 1 text-only ms | batch {lat['batch_size']} "
             "text+image ms | teacher / model at batch 1 text+image |", "|---|---|---|---|---|---|---|"]
    big = f"batch{lat['batch_size']}_text_image"
    teacher = lat["teacher"]["batch1_text_image"]["median_ms"]
    for name in result["models"]:
        row = lat[name]
        b1 = row["batch1_text_image"]["median_ms"]
        lines.append(f"| {name} | {lat['image_size'][name]} | {result['size'][name]['parameters']:,} | {b1:.1f} | "
                     f"{row['batch1_text_only']['median_ms']:.1f} | "
                     f"{'–' if not row.get(big) else format(row[big]['median_ms'], '.1f')} | {teacher / b1:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = student_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    checkpoints = student_checkpoints(parser, args.student)
    started = time.perf_counter()
    config = StudentTrainConfig(data_root=str(D.cli_data_root(args.data_root)))
    root = D.resolve_data_root(config.data_root)
    test = D.load_crisismmd(root, "test")
    teacher = load_teacher(Path(config.teacher) / "best.pt")
    teacher.backbone.image = ImageTower()
    models: dict[str, torch.nn.Module] = {"teacher": teacher}
    images: dict[str, ImageConfig] = {"teacher": ImageConfig()}
    for name, path in checkpoints.items():
        student = load_student(path)
        images[name] = student_image_config(student.config)
        student.image = student_image_tower(student.config)
        models[name] = student
    print(f"timing {', '.join(models)} ...", file=sys.stderr)
    result: dict[str, Any] = {"models": list(models), "checkpoints": checkpoints,
                              "size": {n: size(m) for n, m in models.items()},
                              "latency": latency(models, test, minilm_encoder(config.teacher_config()),
                                                 rounds=args.rounds, image_configs=images)}
    result["seconds"] = round(time.perf_counter() - started, 1)
    publish("student_latency", command("student_resolution_latency.py", args.student), result, to_markdown, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
