"""`crisislens eval photos --bundle DIR`: does the photo count? Measured through the runtime.

- **Text + photo vs text alone**: CrisisMMD test posts that have a photo, scored as they are and
  with the photo removed (same words).
- **Photo only, an unseen event**: the MEDIC-labelled photos of one event (default
  `kerala_flood_2018`, which no model trains on or is selected with), without words; accuracy and
  Macro-F1 over the classes present, beside always answering the most common one.
- **Patch deletion**: for posts with a photo, the predicted class's probability with the photo as
  it is, with its top-k rationale patches deleted, and with k random patches deleted (several
  seeded draws); the ratio of the mean drops says whether the shown patches are the ones the
  answer depends on. Deleted in the pixels (greyed out: the preprocessing mean, 0 after
  normalisation; or each cell at its mean colour) and, where the graph takes `patch_keep`,
  removed as tokens.
- **Patch agreement**: mean top-k IoU between this bundle and `--against` (another seed) on the
  same posts, and between unrelated photos within this bundle (random pairs of different posts):
  the same photo should get the same patches, different photos different ones.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.evaluation.datasets import dataset_inputs, labelled_posts
from crisislens.evaluation.metrics import classification_report
from crisislens.runtime.bundle import load_bundle
from crisislens.runtime.engine import Engine, softmax
from crisislens.runtime.labels import LABEL_NAMES, medic_label
from crisislens.runtime.markdown import md_table
from crisislens.runtime.schema import Post
from crisislens.runtime.signature import PATCH_KEEP

TOP_K = 5
HELD_OUT_EVENT = "kerala_flood_2018"


def event_photos(root: Path, event: str) -> list[Post]:
    """Photo-only labelled posts: every photo of `event` in `images/image_labels.tsv` with a MEDIC
    humanitarian label (mapped to the 5 classes)."""
    path = root / "images" / "image_labels.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the image label file is missing")
    posts = []
    with path.open(encoding="utf-8", newline="") as f:
        for line, row in enumerate(csv.DictReader(f, delimiter="\t"), start=2):
            if row.get("event") != event or not row.get("medic_humanitarian"):
                continue
            try:
                label = medic_label(row["medic_humanitarian"])
            except KeyError:
                raise ValueError(f"{path}:{line}: unknown MEDIC label {row['medic_humanitarian']!r}") from None
            image = root / "images" / row["relpath"]
            if image.is_file():
                posts.append(Post(id=row["relpath"], text="", image=image, label=label))
    if not posts:
        raise ValueError(f"{path}: no MEDIC-labelled photo of event {event!r}")
    return posts


@dataclasses.dataclass
class Scored:
    probs: np.ndarray  # [N, C]
    patches: np.ndarray  # [N, M] (0 without a photo)
    has_photo: np.ndarray  # [N] bool
    feeds: list[dict[str, np.ndarray]]  # each batch's inputs, for the deletion runs


def run(engine: Engine, posts: Sequence[Post], batch_size: int = 16) -> Scored:
    probs, patches, photo, feeds = [], [], [], []
    for lo in range(0, len(posts), batch_size):
        prep = engine.prepare(posts[lo : lo + batch_size])
        logits, _, p = engine.run(prep.feeds)
        probs.append(softmax(logits.astype(np.float64) / engine.temperature))
        patches.append(p.astype(np.float64))
        photo.append(prep.feeds["image_index"] >= 0)
        feeds.append(prep.feeds)
    return Scored(np.concatenate(probs), np.concatenate(patches), np.concatenate(photo), feeds)


def report(gold: Sequence[str], probs: np.ndarray) -> dict[str, Any]:
    pred = [LABEL_NAMES[i] for i in probs.argmax(1)]
    # Macro-F1 over the classes present in the gold labels (a held-out event may lack one); a
    # prediction of an absent class still counts as an error.
    present = [name for name in LABEL_NAMES if name in set(gold)]
    rep = classification_report(list(gold), pred, LABEL_NAMES)
    f1 = {name: rep.per_class[name].f1 for name in present}
    return {"n": len(gold), "macro_f1": float(np.mean(list(f1.values()))), "accuracy": rep.accuracy, "per_class_f1": f1}


def top_k(scores: np.ndarray, k: int = TOP_K) -> list[frozenset[int]]:
    return [frozenset(np.argsort(-row, kind="stable")[:k].tolist()) for row in scores]


def iou(a: frozenset[int], b: frozenset[int]) -> float:
    return len(a & b) / max(len(a | b), 1)


FILLS = ("grey", "cell-mean")  # pixel deletions; `deletion` also takes "token"


def grey_out(pixels: np.ndarray, cells: Sequence[int], grid: int, fill: str = "grey") -> np.ndarray:
    """A copy of one photo's pixels [3, S, S] with the patch-grid `cells` deleted: set to 0 (the
    preprocessing mean: `fill="grey"`) or each to its own mean colour (`"cell-mean"`: the colour
    stays, the shapes go; a check on a model trained against grey deletions)."""
    if fill not in FILLS:
        raise ValueError(f"fill {fill!r}: one of {', '.join(FILLS)}")
    out = pixels.copy()
    size = pixels.shape[-1]
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    for c in cells:
        r, q = divmod(int(c), grid)
        cell = out[:, edges[r] : edges[r + 1], edges[q] : edges[q + 1]]
        cell[...] = 0.0 if fill == "grey" else cell.mean(axis=(1, 2), keepdims=True)
    return out


def takes_patch_keep(engine: Engine) -> bool:
    """Whether the engine's model can remove patches as tokens (a graph exported with `patch_keep`)."""
    return PATCH_KEEP in getattr(engine.backend, "input_names", ())


def deletion(
    engine: Engine, scored: Scored, k: int = TOP_K, draws: int = 5, seed: int = 13, fill: str = "grey"
) -> dict[str, Any]:
    """Mean drop of the predicted class's probability when the top-k patches are deleted, against
    k random patches (`draws` seeded draws per post), over the posts with a photo. `fill` "grey"
    or "cell-mean" deletes them in the pixels (`grey_out`); "token" removes them as tokens
    (`patch_keep` 0: out of the fusion's attention and the rationale pool), on a graph that takes
    `patch_keep` (otherwise no numbers, with the reason)."""
    if fill == "token" and not takes_patch_keep(engine):
        return {
            "posts": 0,
            "k": k,
            "random_draws": draws,
            "fill": fill,
            "mean_drop_top_k": None,
            "mean_drop_random_k": None,
            "ratio": None,
            "note": "the bundle's graph takes no patch_keep input (exported before it)",
        }
    rng = np.random.default_rng(seed)
    grid = engine.grid
    m = grid * grid
    top_drops, random_drops = [], []
    row = 0
    for feeds in scored.feeds:
        n = len(feeds["image_index"])
        for i in range(n):
            j = row + i
            photo = int(feeds["image_index"][i])
            if photo < 0:
                continue
            pred = int(scored.probs[j].argmax())
            base = scored.probs[j, pred]
            variants = [sorted(top_k(scored.patches[j : j + 1], k)[0])]
            variants += [sorted(rng.choice(m, k, replace=False).tolist()) for _ in range(draws)]
            one = {name: feeds[name][i : i + 1] for name in ("input_ids", "attention_mask")}
            batch = {
                "input_ids": np.repeat(one["input_ids"], len(variants), 0),
                "attention_mask": np.repeat(one["attention_mask"], len(variants), 0),
            }
            if fill == "token":
                keep = np.ones((len(variants), m), np.int64)
                for v, cells in enumerate(variants):
                    keep[v, cells] = 0
                batch |= {
                    "pixel_values": feeds["pixel_values"][photo : photo + 1],
                    "image_index": np.zeros(len(variants), np.int64),
                    PATCH_KEEP: keep,
                }
            else:
                pixels = np.stack([grey_out(feeds["pixel_values"][photo], cells, grid, fill) for cells in variants])
                batch |= {
                    "pixel_values": pixels.astype(np.float32),
                    "image_index": np.arange(len(variants), dtype=np.int64),
                }
            logits = engine.run(batch)[0]
            p = softmax(logits.astype(np.float64) / engine.temperature)[:, pred]
            top_drops.append(base - p[0])
            random_drops.append(float(np.mean(base - p[1:])))
        row += n
    return {
        "posts": len(top_drops),
        "k": k,
        "random_draws": draws,
        "fill": fill,
        **drop_ratio(float(np.mean(top_drops)), float(np.mean(random_drops))),
    }


def drop_ratio(top: float, rand: float) -> dict[str, Any]:
    """The two mean drops and their ratio; no ratio when deleting random patches moves nothing
    (or raises the probability)."""
    return {"mean_drop_top_k": top, "mean_drop_random_k": rand, "ratio": top / rand if rand > 1e-6 else None}


def unrelated_iou(patches: np.ndarray, pairs: int = 2000, seed: int = 13, k: int = TOP_K) -> float:
    """Mean top-k IoU between the patches of random pairs of different posts."""
    rng = np.random.default_rng(seed)
    sets = top_k(patches, k)
    n = len(sets)
    values = []
    for _ in range(pairs):
        a, b = rng.choice(n, 2, replace=False)
        values.append(iou(sets[a], sets[b]))
    return float(np.mean(values))


def photo_evidence(
    bundle_dir: Path,
    root: Path,
    *,
    variant: str | None = None,
    against: Path | None = None,
    event: str = HELD_OUT_EVENT,
    threads: int | None = None,
    draws: int = 5,
) -> dict[str, Any]:
    started = time.perf_counter()
    engine = Engine(load_bundle(bundle_dir), variant, threads=threads)
    inputs, image_root = dataset_inputs("crisismmd:test", root)
    posts, _ = labelled_posts(inputs, image_root)
    photo_posts = [p for p in posts if p.image is not None]
    gold = [p.label or "" for p in photo_posts]
    both = run(engine, photo_posts)
    used = both.has_photo
    words = run(engine, [dataclasses.replace(p, image=None) for p in photo_posts])
    result: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "variant": engine.variant.name,
        "model_id": engine.model_id,
        "crisismmd_test_with_photo": {
            "posts": len(photo_posts),
            "photo_readable": int(used.sum()),
            "text_and_photo": report(gold, both.probs),
            "text_only": report(gold, words.probs),
        },
    }
    result["crisismmd_test_with_photo"]["gain_macro_f1"] = (
        result["crisismmd_test_with_photo"]["text_and_photo"]["macro_f1"]
        - result["crisismmd_test_with_photo"]["text_only"]["macro_f1"]
    )
    held = event_photos(root, event)
    alone = run(engine, held)
    counts = Counter(p.label for p in held)
    majority = counts.most_common(1)[0]
    result["photo_only_unseen_event"] = {
        "event": event,
        **report([p.label or "" for p in held], alone.probs),
        "majority_class": majority[0],
        "majority_accuracy": majority[1] / len(held),
        "classes": dict(sorted(counts.items())),
    }
    result["deletion"] = {
        "crisismmd_test_with_photo": deletion(engine, both, draws=draws),
        f"{event} photo only": deletion(engine, alone, draws=draws),
        # The same posts with the cells kept at their mean colour: a model trained against grey
        # deletions (`loss.deletion`) could have learnt grey squares, not its patches.
        "crisismmd_test_with_photo, cells at their mean colour": deletion(engine, both, draws=draws, fill="cell-mean"),
        # Removed as tokens: the deletion a patch-token model makes (the CNN tower spreads a greyed
        # cell over the whole grid; research/results/patch_token_deletion.md).
        "crisismmd_test_with_photo, patches removed as tokens": deletion(engine, both, draws=draws, fill="token"),
        f"{event} photo only, patches removed as tokens": deletion(engine, alone, draws=draws, fill="token"),
    }
    shown = both.patches[used]
    result["agreement"] = {"unrelated_photos_top_k_iou": unrelated_iou(shown), "k": TOP_K}
    if against is not None:
        other = run(Engine(load_bundle(against), variant, threads=threads), photo_posts)
        same = [iou(a, b) for a, b in zip(top_k(shown), top_k(other.patches[used]))]
        alone_other = run(Engine(load_bundle(against), variant, threads=threads), held)
        result["agreement"] |= {
            "against": str(against),
            "same_posts_top_k_iou": float(np.mean(same)),
            f"{event} photo only, same photos top_k_iou": float(
                np.mean([iou(a, b) for a, b in zip(top_k(alone.patches), top_k(alone_other.patches))])
            ),
        }
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def to_markdown(result: dict[str, Any], provenance: dict[str, Any]) -> str:
    t = result["crisismmd_test_with_photo"]
    h = result["photo_only_unseen_event"]
    lines = [
        "# Photos: does the photo count?",
        "",
        f"Command: `{provenance['command']}` · commit {provenance['git_commit']} · {provenance['created']} · "
        f"bundle variant `{result['variant']}` ({result['model_id']}) · run time {result['seconds']} s.",
        "",
        f"## CrisisMMD test posts with a photo ({t['posts']} posts, {t['photo_readable']} photos read)",
        "",
        *md_table(
            ["input", "Macro-F1", "accuracy"],
            [
                ("text + photo", f"{t['text_and_photo']['macro_f1']:.4f}", f"{t['text_and_photo']['accuracy']:.4f}"),
                ("text only", f"{t['text_only']['macro_f1']:.4f}", f"{t['text_only']['accuracy']:.4f}"),
            ],
        ),
        "",
        f"Text + photo minus text only: {t['gain_macro_f1']:+.4f} Macro-F1.",
        "",
        f"## Photo only, an event no model saw: {h['event']} ({h['n']} MEDIC-labelled photos)",
        "",
        *md_table(
            ["classes present", "Macro-F1", "accuracy", "always the most common class"],
            [
                (
                    ", ".join(f"{k} {v}" for k, v in h["classes"].items()),
                    f"{h['macro_f1']:.4f}",
                    f"{h['accuracy']:.4f}",
                    f"{h['majority_accuracy']:.4f} ({h['majority_class']})",
                )
            ],
        ),
        "",
        "Per class F1: " + ", ".join(f"{k} {v:.3f}" for k, v in h["per_class_f1"].items()) + ".",
        "",
        "## Patch deletion",
        "",
        "Drop of the predicted class's probability when the top-5 rationale patches are deleted, "
        "against 5 random patches (mean of the random draws per post): greyed out in the pixels; "
        "set each to its own mean colour; or removed as tokens (out of the fusion's attention and "
        "the rationale pool, the deletion a patch-token model makes; the image tower, a CNN, spreads "
        "a greyed cell over the whole grid).",
        "",
        *md_table(
            ["posts", "n", "mean drop, top-5", "mean drop, random 5", "ratio"],
            [
                (
                    name,
                    d["posts"],
                    "n/a" if d["mean_drop_top_k"] is None else f"{d['mean_drop_top_k']:.4f}",
                    "n/a" if d["mean_drop_random_k"] is None else f"{d['mean_drop_random_k']:.4f}",
                    d.get("note") or ("n/a" if d["ratio"] is None else f"{d['ratio']:.2f}"),
                )
                for name, d in result["deletion"].items()
            ],
        ),
        "",
        "## Patch agreement (top-5 IoU)",
        "",
    ]
    a = result["agreement"]
    rows = [("unrelated photos, this bundle (random pairs)", f"{a['unrelated_photos_top_k_iou']:.3f}")]
    if "against" in a:
        rows.append((f"same posts, against {a['against']}", f"{a['same_posts_top_k_iou']:.3f}"))
        rows += [(k, f"{v:.3f}") for k, v in a.items() if k.endswith("same photos top_k_iou")]
    lines += md_table(["pairs", "mean IoU"], rows)
    return "\n".join(lines) + "\n"
