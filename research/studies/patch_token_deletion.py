"""Patch deletion, two ways: greying out pixels vs removing the patch tokens (student v2, PyTorch).

The issue's deletion target greys out the top-5 patches' pixels and asks the predicted class's
probability to fall 3x as much as for 5 random patches. No student v2 gets a ratio. This study
asks why, on the same students and posts:

- **Where a greyed-out cell lands.** On the CrisisMMD test photos, 5 random cells of the 7 x 7
  grid are greyed out in the pixels and the frozen Lite0 tower run again: the share of the change
  in its patch features that falls on the 5 greyed cells (5/49 = 10% if it fell evenly).
- **Pixels vs tokens.** For each student run: the mean drop of the predicted class's probability
  when its top-5 patches are deleted, against 5 random ones (5 draws), (a) greyed out in the
  pixels through the tower (what `crisislens eval photos` does through the runtime) and (b)
  removed as tokens: masked out of the fusion's attention and the rationale pool (the model's
  `patch_mask`), the deletion a patch-token transformer such as the paper's makes. CrisisMMD test
  posts with a photo (text + photo) and the kerala_flood_2018 photos alone (never trained on).

    python research/studies/patch_token_deletion.py --run artifacts/student-v2/v2-probekd-h0.1-photo-s13 \\
        --run artifacts/student-v2/v2-probekd-h0.1-photo-del-s13
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.runtime.markdown import md_table
from _report import add_render_only, publish, render_only, run_line  # research/studies/_report.py

K = 5


def spread(deleter: Any, images: list[Path], rng: np.random.Generator, k: int = K) -> dict[str, float]:
    """Share of the tower's feature change (squared) that lands on the greyed cells."""
    import torch

    m = deleter.grid**2
    shares = []
    for lo in range(0, len(images), 16):
        chunk = images[lo : lo + 16]
        cells = torch.zeros(2 * len(chunk), m, dtype=torch.bool)
        for i in range(len(chunk)):
            cells[len(chunk) + i, rng.choice(m, k, replace=False)] = True
        f = deleter(chunk + chunk, cells).double()
        change = ((f[len(chunk) :] - f[: len(chunk)]) ** 2).sum(-1)  # [B, M]
        inside = (change * cells[len(chunk) :]).sum(1) / change.sum(1).clamp_min(1e-12)
        shares += inside.tolist()
    return {"photos": len(shares), "share_on_greyed_cells": float(np.mean(shares)), "even_share": k / m}


def with_photo(examples: list[Any], features: Any) -> list[Any]:
    from crisislens.distill.features import image_key

    return [e for e in examples if image_key(features.root, e.image) in features.images.index]


def batches(examples: list[Any], features: Any) -> Any:
    """(posts, model inputs) 16 at a time."""
    for lo in range(0, len(examples), 16):
        yield examples[lo : lo + 16], features.batch(examples[lo : lo + 16])[0]


def drops(run: Path, rows: Any, features: Any, deleter: Any, draws: int, seed: int) -> dict[str, Any]:
    import torch

    from crisislens.distill.student import load_student
    from crisislens.distill.student_v2 import random_cells
    from crisislens.evaluation.photos import drop_ratio

    model = load_student(run / "best.pt").eval()
    out: dict[str, Any] = {}
    for name, examples in rows.items():
        examples = with_photo(examples, features)
        gen = torch.Generator().manual_seed(seed)
        top_px, rand_px, top_tok, rand_tok = [], [], [], []
        for batch, inputs in batches(examples, features):
            with torch.no_grad():
                base = model(inputs)
                p = base.logits.softmax(-1)
                pred = p.argmax(1, keepdim=True)
                p0 = p.gather(1, pred).squeeze(1)
                top = base.patch_rationale

                def prob(**changed: Any) -> Any:
                    return model(replace(inputs, **changed)).logits.softmax(-1).gather(1, pred).squeeze(1)

                images = [e.image for e in batch]
                top_px.append(p0 - prob(image_features=deleter(images, top)))
                top_tok.append(p0 - prob(patch_mask=~top))
                rp, rt = [], []
                for _ in range(draws):
                    rand = random_cells(top, gen)
                    rp.append(p0 - prob(image_features=deleter(images, rand)))
                    rt.append(p0 - prob(patch_mask=~rand))
                rand_px.append(torch.stack(rp).mean(0))
                rand_tok.append(torch.stack(rt).mean(0))

        def ratio(top: list[Any], rand: list[Any]) -> dict[str, Any]:
            return drop_ratio(float(torch.cat(top).mean()), float(torch.cat(rand).mean()))

        out[name] = {"posts": len(examples), "pixels": ratio(top_px, rand_px), "tokens": ratio(top_tok, rand_tok)}
        print(f"{run.name} {name}: {out[name]}", file=sys.stderr)
    return out


def agreement(a: Path, b: Path, rows: Any, features: Any) -> dict[str, Any]:
    """Mean top-k IoU between two runs' patches on the same posts (e.g. two seeds), and between
    unrelated posts' patches within run `a` (random pairs): `evaluation.photos`' measures, as the
    runtime's `crisislens eval photos --against` takes them."""
    import torch

    from crisislens.distill.student import load_student
    from crisislens.evaluation.photos import iou, top_k, unrelated_iou

    models = [load_student(r / "best.pt").eval() for r in (a, b)]
    k = models[0].config.top_k_patches
    out: dict[str, Any] = {}
    for name, examples in rows.items():
        examples = with_photo(examples, features)
        scores: list[list[Any]] = [[], []]
        for _, inputs in batches(examples, features):
            with torch.no_grad():
                for j, model in enumerate(models):
                    scores[j].append(model(inputs).patch_scores.numpy())
        sa, sb = np.concatenate(scores[0]), np.concatenate(scores[1])
        out[name] = {"posts": len(sa), "same_posts": float(np.mean([iou(x, y) for x, y in zip(top_k(sa, k), top_k(sb, k))])),
                     "unrelated_posts": unrelated_iou(sa, k=k)}
        print(f"{a.name} vs {b.name} {name}: {out[name]}", file=sys.stderr)
    return out


def cell(d: dict[str, Any]) -> str:
    r = "n/a" if d["ratio"] is None else f"{d['ratio']:.2f}x"
    return f"{d['mean_drop_top_k']:+.4f} / {d['mean_drop_random_k']:+.4f} ({r})"


def render(result: dict[str, Any], prov: dict[str, Any]) -> str:
    s = result["spread"]
    rows = []
    for run, sets in result["runs"].items():
        for name, d in sets.items():
            rows.append((run, f"{name} ({d['posts']})", cell(d["pixels"]), cell(d["tokens"])))
    return "\n".join([
        "# Patch deletion: greyed-out pixels vs removed patch tokens (student v2, PyTorch)", "",
        run_line(prov, result["seconds"]), "",
        "## Where a greyed-out cell lands in the frozen Lite0 features", "",
        f"{s['photos']} CrisisMMD test photos, 5 random cells of the 7 x 7 grid greyed out: "
        f"{s['share_on_greyed_cells']:.1%} of the change in the tower's patch features (squared) falls on "
        f"the greyed cells ({s['even_share']:.1%} if it fell evenly over the grid).", "",
        "## Mean drop of the predicted class's probability: top-5 patches / 5 random ones (ratio)", "",
        f"Random: {result['draws']} seeded draws per post. Pixels: the cells greyed out, the tower run again. "
        "Tokens: the cells masked out of the fusion's attention and the rationale pool.", "",
        *md_table(["student run", "posts", "pixels greyed out", "patch tokens removed"], rows), "",
        *agreement_lines(result.get("agreement", {}))])


def agreement_lines(found: dict[str, Any]) -> list[str]:
    if not found:
        return []
    rows = [(pair, f"{name} ({d['posts']})", f"{d['same_posts']:.3f}", f"{d['unrelated_posts']:.3f}")
            for pair, sets in found.items() for name, d in sets.items()]
    return ["## Top-5 patches: two seeds on the same posts, and unrelated posts", "",
            *md_table(["runs", "posts", "same posts, mean IoU", "unrelated posts (first run), mean IoU"], rows), ""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", type=Path, default=[], help="student v2 run folder (best.pt)")
    p.add_argument("--pair", action="append", default=[], metavar="RUN_A:RUN_B",
                   help="two runs (e.g. seeds) whose top-5 patches are compared on the same posts")
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path("research/results"))
    add_render_only(p)
    a = p.parse_args(argv)
    if a.render_only:
        return render_only("patch_token_deletion", a.out, render)
    if not a.run and not a.pair:
        p.error("give at least one --run or --pair")
    import torch

    from crisislens.distill.student import load_student
    from crisislens.distill.student_v2 import PixelDeletion, StudentV2Config, build_v2_features, gather_rows
    from crisislens.distill.data import resolve_data_root

    torch.set_num_threads(2)
    started = time.perf_counter()
    root = resolve_data_root(str(a.data_root))
    rows = gather_rows(root, 13)
    first = load_student((a.run[0] if a.run else Path(a.pair[0].partition(":")[0])) / "best.pt")
    config = StudentV2Config(model=first.config)
    features = build_v2_features(rows, root, config, first)
    deleter = PixelDeletion(first.config)
    test = [e for e in rows.groups["crisismmd:test"] if e.image is not None]
    sets = {"CrisisMMD test, text + photo": test, "kerala_flood_2018 photo only": rows.groups["images:kerala"]}
    result: dict[str, Any] = {
        "spread": spread(deleter, [e.image for e in test], np.random.default_rng(a.seed)),
        "draws": a.draws,
        "runs": {str(r.name): drops(r, sets, features, deleter, a.draws, a.seed) for r in a.run},
    }
    result["agreement"] = {}
    for pair in a.pair:
        first_run, sep, second_run = pair.partition(":")
        if not sep:
            p.error(f"--pair {pair!r}: give RUN_A:RUN_B")
        result["agreement"][f"{Path(first_run).name} vs {Path(second_run).name}"] = agreement(
            Path(first_run), Path(second_run), sets, features)
    result["seconds"] = round(time.perf_counter() - started, 1)
    publish("patch_token_deletion", " ".join(["python", "research/studies/patch_token_deletion.py", *(argv or sys.argv[1:])]),
            result, render, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
