"""Subcommands of the export stage, plugged into `crisislens` through an entry point."""

from __future__ import annotations

import argparse
from pathlib import Path

from crisislens.runtime.cli import Cli, CliError, require

DATA_ROOT_HELP = "data root (default: $CRISISLENS_DATA, else ../shared/data)"


def register(cli: Cli) -> None:
    export = cli.group("export", "export the student: ONNX, INT8/FP16, TensorRT, the model bundle")
    p = export.command(
        "onnx",
        "student -> ONNX FP32 + INT8 (dynamic, x86/arm64) + INT8 QDQ + FP16, parity and accuracy -> reports/export.*",
        _onnx,
        description=(
            "Export the trained student (dynamic batch and sequence length) to ONNX, check it against\n"
            "PyTorch on CrisisMMD test posts (mixed, text-only, image-only and batch-1 inputs), quantise\n"
            "it with Optimum (dynamic INT8 for x86 and arm64 CPUs, static QDQ INT8 calibrated on dev\n"
            "posts for TensorRT) and convert it to FP16; score every variant on CrisisMMD test with\n"
            "ONNX Runtime. Models go to --out; the report to <reports>/export.{json,md}."
        ),
    )
    p.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    p.add_argument("--student", type=Path, default=Path("artifacts/student/best.pt"), help="student checkpoint")
    p.add_argument("--out", type=Path, default=Path("artifacts/export"), help="ONNX files (default: artifacts/export)")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="report folder (default: reports)")


def _onnx(args: argparse.Namespace) -> int:
    require("torch", "export")
    require("optimum", "export")
    from crisislens.distill.data import resolve_data_root
    from crisislens.export.pipeline import ExportConfig, run, targets, to_markdown
    from crisislens.runtime.reports import provenance, write_report

    if not args.student.is_file():
        raise CliError(f"{args.student}: no student checkpoint; run `crisislens distill student` first")
    try:
        root = resolve_data_root(args.data_root)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    result = run(ExportConfig(data_root=str(root), student=str(args.student), out=str(args.out)))
    prov = provenance()
    payload = {**result, "targets": targets(result), "provenance": prov}
    json_path, md_path = write_report("export", payload, to_markdown(result, prov), args.reports)
    for row in targets(result):
        print(f"{'ok ' if row['met'] else 'NO '} {row['target']}: {row['measured']}")
    print(f"wrote {json_path} and {md_path}")
    return 0
