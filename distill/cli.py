"""Subcommands of the training stage, plugged into `crisislens` through an entry point.

Heavy imports (sklearn, torch) happen inside the handlers so the CLI stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crisislens.runtime.cli import Cli, CliError, require

DATA_ROOT_HELP = "data root (default: $CRISISLENS_DATA, else ../shared/data)"


def register(cli: Cli) -> None:
    from crisislens.distill.datacheck import register_data_commands

    register_data_commands(cli)
    evaluate = cli.group("eval", "evaluate models and write reports")
    p = evaluate.command(
        "baseline",
        "train + evaluate the TF-IDF/logistic-regression baseline on CrisisMMD",
        _eval_baseline,
        description=(
            "Train TF-IDF (word 1-2 grams) + logistic regression on the CrisisMMD humanitarian\n"
            "agreed train split, select hyper-parameters on dev by Macro-F1, report on test.\n"
            "Writes <out>/baseline.json and <out>/baseline.md."
        ),
    )
    p.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    p.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default: reports)")
    p.add_argument("--json", action="store_true", help="print the test metrics as JSON")
    r = evaluate.command(
        "rationales",
        "a bundle's word rationale: vs the held-out human rationales, and ERASER faithfulness -> <reports>/rationales.*",
        _eval_rationales,
        description=(
            "Through the runtime: the bundle's highlighted words (score >= 0.5, at least 2) against the\n"
            "human rationales of Typhoon Hagupit (never trained on), and comprehensiveness/sufficiency on\n"
            "CrisisMMD test texts against random words of the same number. Needs the distill extra (the\n"
            "rationale files are read by distill.data); the model runs torch-free."
        ),
    )
    r.add_argument("--bundle", type=Path, default=None, metavar="DIR", help="model bundle (default: the installed one)")
    r.add_argument("--variant", default=None, help="bundle variant (default: the bundle's default)")
    r.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    r.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    r.add_argument("--reports", type=Path, default=Path("reports"), help="report folder (default: reports)")

    distill = cli.group("distill", "train the teacher and distil the student")
    t = distill.command(
        "train-teacher",
        "train the cross-modal rationale teacher (+ the text-only and image-only comparison models)",
        _train_teacher,
        description=(
            "Build the frozen-feature caches (EfficientNet-Lite0 grids, lower MiniLM layers) once, then\n"
            "train the teacher on CrisisMMD train + HumAID + the Nepal rationales + labelled photos,\n"
            "selecting on CrisisMMD dev Macro-F1 with early stopping. Seeded; resumes from\n"
            "<out>/last.pt unless --restart. Then trains the text-only and image-only models the\n"
            "report compares against. Checkpoints stay in <out> (ignored by git)."
        ),
    )
    _training_args(t)
    t.add_argument("--epochs", type=int, default=None, help="teacher epochs (default 6)")
    t.add_argument("--max-minutes", type=float, default=0.0, help="stop after the epoch that passes this time")
    t.add_argument("--humaid-pool", type=int, default=None,
                   help="HumAID rows to mix in (default 24000; fewer trade CrisisMMD accuracy against zero-shot "
                        "on unseen crises: research/results/v1/teacher_no_humaid.md measures 0)")
    t.add_argument("--restart", action="store_true", help="ignore <out>/last.pt and train from scratch")
    t.add_argument("--skip-unimodal", action="store_true", help="do not train the text-only/image-only models")
    t.add_argument("--only-unimodal", action="store_true", help="train only the text-only/image-only models")
    t.add_argument("--pack-extractor", action="store_true",
                   help="train the rationale extractor over each post's own tokens, as it is evaluated (default: "
                        "over padded batches, the recipe of the shipped checkpoint; see README, the teacher)")
    e = distill.command(
        "eval-teacher",
        "evaluate the first teacher -> research/results/v1/teacher.{json,md}",
        _eval_teacher,
        description=(
            "One run: CrisisMMD test (overall, with image vs text-only) beside the TF-IDF baseline, the\n"
            "text-only and image-only models and the full-input head; plausibility of text rationales on\n"
            "the held-out Hagupit rationales; faithfulness of token and patch rationales beside random\n"
            "ones; zero-shot CrisisLexT26."
        ),
    )
    _training_args(e)
    e.add_argument("--reports", type=Path, default=Path("research/results/v1"),
                   help="report folder (default: research/results/v1, the first student's teacher; the shipped "
                        "student's is `teacher-v2 probe-report`)")
    e.add_argument("--render-only", action="store_true",
                   help="rewrite <reports>/teacher.md from the numbers already in <reports>/teacher.json")

    o = distill.command(
        "teacher-outputs",
        "run the teacher once over every example distillation uses -> compressed .npz (no text)",
        _teacher_outputs,
        description=(
            "Per example (keyed source:id): the teacher's class log-probabilities, token rationale scores\n"
            "and hard rationale, transferred patch scores and top-k patches. Distillation reads this file\n"
            "instead of running the teacher."
        ),
    )
    _student_args(o)
    o.add_argument("--reuse", action="store_true",
                   help="keep the rows of the existing file made by the same teacher; compute only the missing ones")
    al = distill.command(
        "teacher-alignment",
        "the teacher's word-to-patch transfer shares per post with a photo -> .npz (no text)",
        _teacher_alignment,
        description=(
            "Per example with a photo and words (keyed source:id): for each patch, the share of its\n"
            "IPOT-transferred mass that comes from each word piece. The student's one-step transfer head\n"
            "learns to reproduce it (default artifacts/teacher-alignment.npz)."
        ),
    )
    _student_args(al)
    al.add_argument("--states", action="store_true",
                    help="also store the teacher's final token and patch states (about 320 MB more for the default examples), the targets "
                         "of the student's hidden-state term (--hidden-weight)")
    s = distill.command(
        "student",
        "distil the teacher into the small one-pass student",
        _train_student,
        description=(
            "Train the student (first MiniLM layers + EfficientNet-Lite0 + one fusion layer, rationale-\n"
            "weighted prediction) on the teacher's cached outputs and the gold labels. Seeded; resumes\n"
            "from <out>/last.pt unless --restart; selects on CrisisMMD dev Macro-F1.\n"
            "--ablation no-rationale trains the same student without the rationale loss terms."
        ),
    )
    _student_args(s)
    s.add_argument("--epochs", type=int, default=None, help="epochs (default 5)")
    s.add_argument("--max-minutes", type=float, default=0.0, help="stop after the epoch that passes this time")
    s.add_argument("--restart", action="store_true", help="ignore <out>/last.pt and train from scratch")
    s.add_argument("--image-size", type=int, default=None,
                   help="photo side in pixels the student sees (default 112; the teacher's is 224)")
    s.add_argument("--image-blocks", default=None, metavar="N|all",
                   help="cut EfficientNet-Lite0 after N of its 16 blocks (default 11: stage 5, 112 channels, "
                        "stride 16); 'all' runs the whole tower with its 1280-channel head")
    s.add_argument("--patch-head", choices=["transfer", "mlp"], default=None,
                   help="transfer (default): each patch's score is its attention over the tokens times their "
                        "rationale scores; mlp: a free head on the fused patch states")
    s.add_argument("--tune-image-blocks", type=int, default=None, metavar="N",
                   help="train the last N blocks of the cut image tower with the student (default 0: all frozen)")
    s.add_argument("--fusion-layers", type=int, choices=[1, 2], default=None,
                   help="fusion transformer layers over tokens and patches, copied from the teacher's (default 1; "
                        "2 is slower: research/results/student_latency.md)")
    s.add_argument("--hidden-weight", type=float, default=None, metavar="W",
                   help="weight of the hidden-state alignment term (default 0: off): 1 - cosine between the "
                        "student's fused token/patch states and the teacher's; needs teacher-alignment --states")
    s.add_argument("--relation-weight", type=float, default=None, metavar="W",
                   help="weight of the relation term (default 0: off): the student's transfer attention learns the "
                        "one-step transfer over the teacher's own states; needs teacher-alignment --states")
    s.add_argument("--ablation", choices=["no-rationale"], default=None,
                   help="drop the token/patch rationale terms (out defaults to artifacts/student_no_rationale)")
    v = distill.command(
        "eval-student",
        "the first teacher vs its student (+ ablation) -> research/results/v1/distill.{json,md}",
        _eval_student,
        description=(
            "One run: CrisisMMD test per model, agreement with the teacher (labels, token rationales,\n"
            "top-k patches), plausibility on the held-out rationale event, faithfulness, size and\n"
            "PyTorch CPU latency of teacher and student in the same process."
        ),
    )
    _student_args(v)
    v.add_argument("--ablation-dir", type=Path, default=Path("artifacts/student_no_rationale"),
                   help="the no-rationale-loss student, reported when present")
    v.add_argument("--no-faithfulness", action="store_true", help="skip the (slow) faithfulness runs")
    v.add_argument("--reports", type=Path, default=Path("research/results/v1"),
                   help="report folder (default: research/results/v1: the first student)")
    _register_teacher_v2(distill)
    _register_student_v2(distill)


def _eval_rationales(args: argparse.Namespace) -> int:
    from crisislens.distill.bundle_rationales import bundle_rationales, to_markdown
    from crisislens.distill.data import cli_data_root
    from crisislens.runtime.reports import provenance, write_report
    from crisislens.runtime.settings import settings

    result = bundle_rationales(settings().bundle_dir(args.bundle), cli_data_root(args.data_root),
                               variant=args.variant, threads=args.threads)
    prov = provenance()
    _, md = write_report("rationales", {**result, "provenance": prov}, to_markdown(result, prov), args.reports)
    p, f = result["plausibility"], result["faithfulness"]
    print(f"token F1 vs human rationales {p['token']['macro_f1']:.4f}; comprehensiveness "
          f"{f['rationale']['comprehensiveness']:.4f} vs random {f['random']['comprehensiveness']:.4f} -> {md}")
    return 0


def _register_student_v2(distill: Cli) -> None:
    v2 = distill.group("student-v2", "student v2: full-depth MiniLM + EfficientNet-Lite0, distilled from the teacher v2")
    t = v2.command(
        "train", "distil the teacher v2's outputs into the student v2 (cached frozen features; CPU)", _v2_student_train,
        description=(
            "Trains the student v2 (distill/student_v2.py) on the gold labels, the teacher v2's class\n"
            "distributions, word rationales and transferred patch scores (from --teacher-run), with CrisisMMD\n"
            "dev selecting the epoch. Writes <out>/best.pt (a student checkpoint `export onnx` takes),\n"
            "<out>/last.pt (resumable) and <out>/train_summary.json (scores on CrisisMMD dev/test, their\n"
            "rows with a photo read three ways, and the held-out kerala_flood_2018 photos).\n"
            "Unset options take StudentV2Config's defaults."
        ),
    )
    t.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    t.add_argument("--teacher-run", type=Path, default=None,
                   help="teacher v2 run folder: outputs-*.npz and keys.json (default artifacts/teacher-v2-run1)")
    t.add_argument("--no-teacher", action="store_true",
                   help="train on the gold labels and the human rationales only (no teacher outputs)")
    t.add_argument("--humaid-per-epoch", type=int, default=None,
                   help="HumAID posts drawn each epoch (0: CrisisMMD, rationale and image rows only)")
    t.add_argument("--out", type=Path, default=None, help="checkpoint folder (default artifacts/student-v2)")
    t.add_argument("--cache", type=Path, default=None, help="feature cache folder (default artifacts/cache-v2)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--kd", type=float, default=None, help="weight of the teacher's class distribution")
    t.add_argument("--class-weight-power", type=float, default=None,
                   help="0: no class weights; 1: inverse square-root class frequency")
    t.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch that passes this")
    t.add_argument("--fresh", action="store_true", help="start over instead of resuming from <out>/last.pt")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any other setting of StudentV2Config, loss.FIELD or model.FIELD (repeatable), "
                        "e.g. --set model.frozen_text_layers=6 --set loss.token_human=0.1")
    m = v2.command(
        "soup", "mix two student v2 checkpoints of one shape and seed into one (weight interpolation)",
        _v2_student_soup,
        description=(
            "Writes <out>/best.pt: the weights of FIRST and SECOND mixed as (1 - weight) * FIRST + weight * SECOND\n"
            "(distill/soup.py). Two runs with the same --seed start from the same weights, so their mix is a\n"
            "working student between the two (e.g. the probe teacher's reading of CrisisMMD and HumAID's own\n"
            "labels). Pick the weight on development sets: research/studies/student_soup.py."
        ),
    )
    m.add_argument("first", type=Path, help="student checkpoint (best.pt), weight 0")
    m.add_argument("second", type=Path, help="student checkpoint (best.pt), weight 1")
    m.add_argument("--weight", type=float, required=True, help="share of SECOND, 0 to 1")
    m.add_argument("--out", type=Path, required=True, help="folder for the mixed best.pt")


def _v2_student_soup(args: argparse.Namespace) -> int:
    from crisislens.distill.soup import write_mix

    for path in (args.first, args.second):
        if not path.is_file():
            raise CliError(f"{path}: no such checkpoint")
    try:
        path = write_mix(args.first, args.second, args.weight, args.out)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(f"{1 - args.weight:g} x {args.first} + {args.weight:g} x {args.second} -> {path}")
    return 0


def _v2_student_train(args: argparse.Namespace) -> int:
    from crisislens.distill.data import cli_data_root
    from crisislens.distill.student_v2 import LossWeights, StudentV2Config, train

    given = {"teacher_run": args.teacher_run, "out": args.out, "cache": args.cache, "seed": args.seed,
             "epochs": args.epochs, "class_weight_power": args.class_weight_power, "max_minutes": args.max_minutes,
             "humaid_per_epoch": args.humaid_per_epoch}
    if args.no_teacher:
        given["teacher_run"] = ""
    config = StudentV2Config(data_root=str(cli_data_root(args.data_root)),
                             **{k: (str(v) if isinstance(v, Path) else v) for k, v in given.items() if v is not None})
    if args.no_teacher:
        config.loss = LossWeights(kd=0.0, token_teacher=0.0, patch_teacher=0.0, patch_rank=0.0)
    elif args.kd is not None:
        config.loss = LossWeights(kd=args.kd)
    from crisislens.distill.student_v2 import apply_settings, check_settings

    try:
        apply_settings(config, args.set)
        check_settings(config)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    summary = train(config, resume=not args.fresh)
    test = summary["eval"]["crisismmd:test"]
    print(f"CrisisMMD test: Macro-F1 {test['macro_f1']:.4f}, accuracy {test['accuracy']:.4f} -> {config.out}/best.pt")
    return 0


def _register_teacher_v2(distill: Cli) -> None:
    v2 = distill.group("teacher-v2", "teacher v2 (all-mpnet-base-v2 + EfficientNet-Lite): pack, baselines, report")
    f = v2.command("photo-features", "EfficientNet-Lite patch features of every photo, per tower (cached)",
                   _v2_photo_features)
    f.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    f.add_argument("--cache", type=Path, default=Path("artifacts/v2"), help="feature cache (default: artifacts/v2)")
    f.add_argument("--tower", action="append", choices=("lite0", "lite1", "lite2"),
                   help="tower(s) to extract (repeatable; default all three)")
    p = v2.command(
        "pack", "pack the training data, photo features and MPNet weights into a payload (no tweet text)", _v2_pack,
        description=(
            "Writes <out>/data (token ids, labels, groups, rationale masks, PCA'd photo features, config),\n"
            "<out>/w1 and <out>/w2 (all-mpnet-base-v2, int8 in groups of 64, in two halves small enough\n"
            "for a lent GPU's 64 MiB transfer) and, beside them, the row keys and the PCA. Train with\n"
            "distill/teacher_v2_device.sh (or python -m crisislens.distill.teacher_v2 --payload ...)."
        ),
    )
    p.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    p.add_argument("--cache", type=Path, default=Path("artifacts/v2"), help="photo-feature cache")
    p.add_argument("--tower", default="lite1", choices=("lite0", "lite1", "lite2"),
                   help="image tower (default lite1: best photo probe on dev, see the report)")
    p.add_argument("--out", type=Path, default=Path(".gpu"), help="payload folder (default: .gpu)")
    b = v2.command("baselines", "image-tower comparison and the MiniLM / MPNet linear probes on CrisisMMD",
                   _v2_baselines)
    b.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    b.add_argument("--cache", type=Path, default=Path("artifacts/v2"), help="feature and embedding cache")
    q = v2.command(
        "probe-teacher", "a teacher run of the frozen-encoder probe's class distributions (CPU; no rationales)",
        _v2_probe_teacher,
        description=(
            "Fits the linear probe on frozen all-mpnet-base-v2 (or MiniLM) embeddings of CrisisMMD training\n"
            "posts (C picked on dev) and writes its class distributions as a teacher run folder the student\n"
            "v2 reads with --teacher-run: out-of-fold for CrisisMMD training rows, the full probe's for\n"
            "HumAID and the rationale set. --humaid-weight W > 0 adds HumAID's own labels to the fit (each\n"
            "HumAID row weighing W; its rows out of fold too). <out>/summary.json records dev, test and\n"
            "(--crisislex N) a sample of CrisisLexT26 scored zero-shot."
        ),
    )
    q.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    q.add_argument("--encoder", default="mpnet", choices=("minilm", "mpnet"))
    q.add_argument("--folds", type=int, default=5, help="out-of-fold probes for CrisisMMD training rows (default 5)")
    q.add_argument("--seed", type=int, default=13, help="the data split, as the student v2's data_seed (default 13)")
    q.add_argument("--humaid-weight", type=float, default=0.0,
                   help="weight of a HumAID row's own label in the fit (default 0: CrisisMMD's reading only)")
    q.add_argument("--humaid", type=int, default=0, metavar="N",
                   help="read a seeded sample of N HumAID training posts (default 0: all 24,000)")
    q.add_argument("--photos", type=Path, default=None, metavar="FILE",
                   help="photo features (teacher-v2 photo-features, e.g. artifacts/v2/photos-lite0.npz): CrisisMMD "
                        "training rows with a photo get text and photo read together")
    q.add_argument("--patch-targets", action="store_true",
                   help="with --photos: training rows with a photo also get patch targets, the photo probe's "
                        "evidence for the teacher's class in each cell (a class activation map)")
    q.add_argument("--crisislex", type=int, default=2000, metavar="N",
                   help="score a seeded sample of N CrisisLexT26 posts zero-shot (default 2000; 0: none)")
    q.add_argument("--cache", type=Path, default=Path("artifacts/cache-v2"), help="embedding cache")
    q.add_argument("--out", type=Path, default=Path("artifacts/probe-teacher"), help="teacher run folder to write")
    t = v2.command(
        "probe-report", "the shipped student's teacher (a probe-teacher run) against the baselines -> "
        "<out>/teacher.{json,md}", _v2_probe_report,
        description=(
            "Reads the probe-teacher run's summary.json, the baselines `teacher-v2 baselines` left in\n"
            "<cache>/baselines.json and the TF-IDF report of `crisislens eval baseline`, and writes the\n"
            "teacher report beside the other release evidence."
        ),
    )
    t.add_argument("--run", type=Path, required=True, help="the probe-teacher run folder (summary.json)")
    t.add_argument("--cache", type=Path, default=Path("artifacts/v2"), help="where `baselines` left baselines.json")
    t.add_argument("--tfidf", type=Path, default=Path("reports/baseline.json"),
                   help="the TF-IDF baseline report (default: reports/baseline.json)")
    t.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default: reports)")
    r = v2.command("report", "score a teacher v2 run against the baselines -> <out>/teacher_v2.{json,md}",
                   _v2_report)
    r.add_argument("--payload", type=Path, default=Path(".gpu/data"), help="the payload the run trained on")
    r.add_argument("--run", type=Path, required=True, help="the run's output folder (outputs-*.npz, teacher.json)")
    r.add_argument("--cache", type=Path, default=Path("artifacts/v2"), help="where `baselines` left baselines.json")
    r.add_argument("--out", type=Path, default=Path("research/results"),
                   help="report folder (default research/results until the teacher v2 ships)")


def _v2_probe_teacher(args: argparse.Namespace) -> int:
    from crisislens.distill.data import cli_data_root
    from crisislens.distill.probe_teacher import build
    from crisislens.distill.teacher_v2_data import gather

    root = cli_data_root(args.data_root)
    try:
        summary = build(gather(root, seed=args.seed), args.out, args.cache, encoder=args.encoder, folds=args.folds,
                        seed=args.seed, humaid_weight=args.humaid_weight, crisislex=args.crisislex,
                        humaid=args.humaid, photos=args.photos, root=root, patch_targets=args.patch_targets)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    test = summary["crisismmd:test"]
    lex = next((v for k, v in summary.items() if k.startswith("crisislex_t26")), None)
    print(f"probe teacher ({args.encoder}, C={summary['C']}, HumAID weight {args.humaid_weight:g}): CrisisMMD test "
          f"Macro-F1 {test['macro_f1']:.4f}, accuracy {test['accuracy']:.4f}"
          + (f"; CrisisLexT26 sample Macro-F1 {lex['macro_f1']:.4f}" if lex else "") + f" -> {args.out}")
    if "photos" in summary:
        ph = summary["photos"]
        for split in ("dev", "test"):
            row = ph[f"crisismmd:{split} posts with a photo"]
            print(f"  {split} posts with a photo ({row['n']}, photo weight {ph['weight']:g}): "
                  + ", ".join(f"{k} {row['text'][k]:.4f} -> {row['text + photo'][k]:.4f}"
                              for k in ("macro_f1", "accuracy", "log_loss")))
    return 0


def _v2_photo_features(args: argparse.Namespace) -> int:
    from crisislens.distill.data import cli_data_root
    from crisislens.distill.photo_features import extract

    root = cli_data_root(args.data_root)
    for tower in args.tower or ["lite0", "lite1", "lite2"]:
        print(extract(root, args.cache, tower))
    return 0


def _v2_pack(args: argparse.Namespace) -> int:
    from crisislens.distill.data import cli_data_root
    from crisislens.distill.teacher_v2_data import write_payload

    summary = write_payload(cli_data_root(args.data_root), args.out / "data", tower=args.tower, cache=args.cache,
                            weights_out=[args.out / "w1", args.out / "w2"])
    print(json.dumps(summary, indent=1))
    return 0


def _v2_baselines(args: argparse.Namespace) -> int:
    from crisislens.distill.data import cli_data_root
    from crisislens.distill.probes import run_probe
    from crisislens.distill.teacher_v2_data import compare_towers

    root = cli_data_root(args.data_root)
    out: dict[str, object] = {"towers": compare_towers(root, args.cache)}
    for name in ("minilm", "mpnet"):
        r = run_probe(name, root, args.cache)
        out[name] = {"C": r["C"], "dev": r["dev_macro_f1"], "test_macro_f1": r["test"].macro_f1,
                     "test_acc": r["test"].accuracy, "per_class": {k: v.f1 for k, v in r["test"].per_class.items()}}
    (args.cache / "baselines.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


def _v2_report(args: argparse.Namespace) -> int:
    from crisislens.distill.teacher_v2_report import write_report

    command = " ".join(["crisislens", *sys.argv[1:]]) if sys.argv else "crisislens distill teacher-v2 report"
    result = write_report(args.payload, args.run, args.cache / "baselines.json", args.out, command,
                          tfidf_report=Path("reports/baseline.json"))
    test = result["crisismmd:test"]["rationale head (the prediction)"]
    print(f"CrisisMMD test: Macro-F1 {test['macro_f1']:.4f}, accuracy {test['accuracy']:.4f} -> {args.out}/teacher_v2.md")
    return 0


def _v2_probe_report(args: argparse.Namespace) -> int:
    from crisislens.distill.probe_report import write_report

    try:
        result = write_report(args.run, args.cache / "baselines.json", args.tfidf, args.out)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    test = result["summary"]["crisismmd:test"]
    print(f"CrisisMMD test: Macro-F1 {test['macro_f1']:.4f}, accuracy {test['accuracy']:.4f} -> {args.out}/teacher.md")
    return 0


def _student_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    p.add_argument("--teacher", type=Path, default=Path("artifacts/teacher"), help="teacher checkpoints folder")
    p.add_argument("--outputs", type=Path, default=None,
                   help="teacher outputs file (default: models/teacher-outputs/outputs.npz)")
    p.add_argument("--alignment", type=Path, default=None,
                   help="teacher transfer-alignment file (default: artifacts/teacher-alignment.npz)")
    p.add_argument("--out", type=Path, default=None, help="student checkpoints (default: artifacts/student)")
    p.add_argument("--cache", type=Path, default=Path("artifacts/cache"), help="feature caches (default: artifacts/cache)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--pairs", type=int, default=None,
                   help="synthetic text+photo transfer pairs (default 5562: every training text without a "
                        "photo; 0: none); give teacher-outputs, teacher-alignment and student the same number")


def _student_config(args: argparse.Namespace):
    from crisislens.distill.data import cli_data_root
    from crisislens.distill.train_student import DEFAULT_OUTPUTS, StudentTrainConfig

    root = cli_data_root(args.data_root)
    ablation = getattr(args, "ablation", None)
    out = args.out or Path("artifacts/student_no_rationale" if ablation else "artifacts/student")
    config = StudentTrainConfig(data_root=str(root), teacher=str(args.teacher), outputs=str(args.outputs or DEFAULT_OUTPUTS),
                                out=str(out), cache=str(args.cache), seed=args.seed)
    if not (Path(config.teacher) / "best.pt").is_file():
        raise CliError(f"{config.teacher}/best.pt: no teacher checkpoint; run `crisislens distill train-teacher` first")
    if getattr(args, "alignment", None) is not None:
        config.alignment = str(args.alignment)
    if getattr(args, "epochs", None):
        config.epochs = args.epochs
    config.max_minutes = getattr(args, "max_minutes", 0.0) or 0.0
    for flag, term in (("hidden_weight", "hidden"), ("relation_weight", "relation")):
        weight = getattr(args, flag, None)
        if weight is not None:
            if weight < 0:
                raise CliError(f"--{flag.replace('_', '-')} {weight}: give 0 or more")
            setattr(config.loss, term, weight)
    if ablation == "no-rationale":
        config.loss = config.loss.without_rationale_terms()
    if getattr(args, "image_size", None) is not None:
        if args.image_size < 32:
            raise CliError(f"--image-size {args.image_size}: give at least 32 pixels (EfficientNet-Lite0 downsamples 32x)")
        config.model.image_size = args.image_size
    blocks = getattr(args, "image_blocks", None)
    if blocks is not None:
        from crisislens.distill.teacher import LITE0_BLOCK_CHANNELS, tower_channels

        if blocks != "all" and not (blocks.isdigit() and 1 <= int(blocks) <= len(LITE0_BLOCK_CHANNELS)):
            raise CliError(f"--image-blocks {blocks}: give 1..{len(LITE0_BLOCK_CHANNELS)} or 'all'")
        config.model.image_blocks = None if blocks == "all" else int(blocks)
        config.model.image_channels = tower_channels(config.model.image_blocks)
    if getattr(args, "patch_head", None) == "mlp":
        config.model.transfer_dim = 0
    if getattr(args, "fusion_layers", None) is not None:
        config.model.fusion_layers = args.fusion_layers
    tuned = getattr(args, "tune_image_blocks", None)
    if tuned is not None:
        from crisislens.distill.student import frozen_image_blocks

        config.model.tuned_image_blocks = tuned
        try:
            frozen_image_blocks(config.model)
        except ValueError as exc:
            raise CliError(f"--tune-image-blocks {tuned}: {exc}") from None
    if getattr(args, "pairs", None) is not None:
        if args.pairs < 0:
            raise CliError(f"--pairs {args.pairs}: give 0 or more")
        config.pairs = args.pairs
    return config


def _teacher_outputs(args: argparse.Namespace) -> int:
    require("torch", "distill")
    from crisislens.distill.train_student import export_teacher_outputs

    path, store = export_teacher_outputs(_student_config(args), reuse=args.reuse)
    print(f"wrote teacher outputs for {len(store)} examples to {path} ({path.stat().st_size / 2**20:.1f} MB)")
    return 0


def _teacher_alignment(args: argparse.Namespace) -> int:
    require("torch", "distill")
    from crisislens.distill.train_student import export_teacher_alignment

    config = _student_config(args)
    path, store = export_teacher_alignment(config, states=args.states)
    print(f"wrote the teacher's transfer alignment for {len(store)} examples to {path} "
          f"({path.stat().st_size / 2**20:.1f} MB)")
    return 0


def _train_student(args: argparse.Namespace) -> int:
    require("torch", "distill")
    from crisislens.distill.train_student import train_student
    from crisislens.distill.teacher_outputs import TeacherOutputsError

    config = _student_config(args)
    try:
        summary = train_student(config, resume=not args.restart)
    except (FileNotFoundError, TeacherOutputsError) as exc:
        raise CliError(str(exc)) from None
    print(f"student: best dev Macro-F1 {summary['best_dev_macro_f1']:.4f} after {len(summary['history'])} epoch(s), "
          f"{summary['train_minutes']} min; checkpoints in {config.out}")
    return 0


def _eval_student(args: argparse.Namespace) -> int:
    require("torch", "distill")
    from crisislens.distill.eval_student import evaluate, to_markdown
    from crisislens.runtime.reports import provenance, write_report

    config = _student_config(args)
    if not (Path(config.out) / "best.pt").is_file():
        raise CliError(f"{config.out}/best.pt: no student checkpoint; run `crisislens distill student` first")
    result = evaluate(config, args.ablation_dir, faithfulness=not args.no_faithfulness)
    summary_path = Path(config.out) / "train_summary.json"
    training = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    ablation_path = Path(args.ablation_dir) / "train_summary.json"
    ablation = json.loads(ablation_path.read_text()) if ablation_path.is_file() else None
    prov = provenance()
    payload = {**result, "training": training, "ablation_training": ablation,
               "provenance": prov}
    json_path, md_path = write_report("distill", payload, to_markdown(result, prov, training), args.reports)
    s = result["models"]["student"]["test"]
    print(f"student test Macro-F1 {s['macro_f1']:.4f}; wrote {json_path} and {md_path}")
    return 0


def _training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    p.add_argument("--out", type=Path, default=Path("artifacts/teacher"), help="checkpoints (default: artifacts/teacher)")
    p.add_argument("--cache", type=Path, default=Path("artifacts/cache"), help="feature caches (default: artifacts/cache)")
    p.add_argument("--seed", type=int, default=13)


def _train_config(args: argparse.Namespace):
    from crisislens.distill.data import cli_data_root
    from crisislens.distill.train_teacher import TrainConfig

    root = cli_data_root(args.data_root)
    config = TrainConfig(data_root=str(root), out=str(args.out), cache=str(args.cache), seed=args.seed)
    if getattr(args, "epochs", None):
        config.epochs = args.epochs
    config.max_minutes = getattr(args, "max_minutes", 0.0) or 0.0
    if getattr(args, "humaid_pool", None) is not None:
        config.humaid_pool = args.humaid_pool
    if getattr(args, "pack_extractor", False):
        config.model.packed_extractor_training = True
    return config


def _train_teacher(args: argparse.Namespace) -> int:
    require("torch", "distill")
    from crisislens.distill.train_teacher import train, train_comparison_models

    config = _train_config(args)
    if not args.only_unimodal:
        summary = train(config, resume=not args.restart)
        print(f"teacher: best dev Macro-F1 {summary['best_dev_macro_f1']:.4f} after {len(summary['history'])} "
              f"epoch(s), {summary['train_minutes']} min; checkpoints in {config.out}")
    if not args.skip_unimodal:
        for result in train_comparison_models(config):
            print(f"{result['kind']}-only: best dev Macro-F1 {result['best_dev_macro_f1']:.4f}")
    return 0


def _eval_teacher(args: argparse.Namespace) -> int:
    require("torch", "distill")
    from crisislens.distill.eval_teacher import evaluate, to_markdown
    from crisislens.runtime.reports import provenance, render_again, write_report

    if args.render_only:
        json_path, md_path = render_again("teacher", args.reports,
                                          lambda p: to_markdown(p, p["provenance"], p.get("training")))
        print(f"rewrote {md_path} from {json_path}")
        return 0
    config = _train_config(args)
    best = Path(config.out) / "best.pt"
    if not best.is_file():
        raise CliError(f"{best}: no teacher checkpoint; run `crisislens distill train-teacher` first")
    result = evaluate(config, Path(config.out))
    summary_path = Path(config.out) / "train_summary.json"
    training = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    prov = provenance()
    payload = {**result, "training": training, "provenance": prov}
    json_path, md_path = write_report("teacher", payload, to_markdown(result, prov, training), args.reports)
    t = result["models"]["teacher"]["test"]
    print(f"teacher test Macro-F1 {t['macro_f1']:.4f} accuracy {t['accuracy']:.4f}; wrote {json_path} and {md_path}")
    return 0


def _eval_baseline(args: argparse.Namespace) -> int:
    require("sklearn", "distill")
    from crisislens.distill.baseline import run_baseline, to_markdown
    from crisislens.distill.data import cli_data_root
    from crisislens.runtime.reports import provenance, write_report

    root = cli_data_root(args.data_root)
    print(f"training the baseline on {root} ...", file=sys.stderr)
    result = run_baseline(root)
    prov = provenance()
    reports = result.pop("_reports")
    payload = {**result, "provenance": prov}
    json_path, md_path = write_report("baseline", payload, to_markdown({**result, "_reports": reports}, prov), args.out)
    test = reports["test"]
    if args.json:
        print(json.dumps(payload["test"], indent=2))
    else:
        print(f"test Macro-F1 {test.macro_f1:.4f}  accuracy {test.accuracy:.4f}  weighted F1 {test.weighted_f1:.4f}")
        print(f"wrote {json_path} and {md_path}")
    return 0
