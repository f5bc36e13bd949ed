"""The student as an ONNX graph, and proof that the graph computes what PyTorch computes.

Inputs (all with a dynamic batch; token inputs also a dynamic sequence length up to the
bundle's `max_length`), as declared in `crisislens.runtime.signature`:

| name | type | shape |
|---|---|---|
| `input_ids` | int64 | [batch, seq] |
| `attention_mask` | int64 | [batch, seq] |
| `pixel_values` | float32 | [images, 3, S, S]: the photos of the posts that have one (S = the student's resolution, 192) |
| `image_index` | int64 | [batch]: row of each post's photo in `pixel_values`, -1 without |
| `patch_keep` | int64 | [batch, patches]: 0 removes a patch as a token (the deletion test), 1 keeps it |

A batch without any photo passes one placeholder image and all indices -1; a caller that does
not make `patch_keep` gets all ones (`crisislens.runtime.backends.feeds.model_feeds`).

Outputs: `logits` [batch, 5], `token_scores` [batch, seq], `patch_scores` [batch, 49].
The hard rationales (threshold/top-k) are cheap post-processing done by the runtime.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.runtime.backends.feeds import model_feeds
from crisislens.runtime.signature import BATCH, IMAGES, INPUT_NAMES, INPUTS, OUTPUT_NAMES, SEQ

DEFAULT_OPSET = 18


def export_onnx(student: Any, path: Path, *, max_length: int = 64, opset: int = DEFAULT_OPSET,
                image_size: int | None = None) -> Path:
    """Write the student (with its image tower) to `path` as a single-file ONNX model; the photo
    side is fixed in the graph (`image_size`, default the student's own resolution)."""
    import torch

    from crisislens.distill.student import StudentExport

    wrapper = StudentExport(student).eval()
    image_size = image_size or int(getattr(getattr(student, "config", None), "image_size", 224))
    g = torch.Generator().manual_seed(0)
    b, n = 3, min(12, max_length)  # not 1: a size-1 example dimension would be specialised away
    ids = torch.randint(103, 200, (b, n), generator=g)  # any ordinary word pieces
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones(b, n, dtype=torch.long)
    mask[1, n // 2 :] = 0
    pixels = torch.randn(2, 3, image_size, image_size, generator=g)  # K = 2 photos for b = 3 posts
    index = torch.tensor([1, -1, 0])
    patches = patch_count(student)
    keep = torch.ones(b, patches, dtype=torch.long)
    keep[2, :2] = 0  # the example removes two patches, so the mask is not folded away
    dims = {BATCH: torch.export.Dim(BATCH, min=1, max=4096), IMAGES: torch.export.Dim(IMAGES, min=1, max=4096),
            SEQ: torch.export.Dim(SEQ, min=2, max=max_length)}
    dynamic = {t.name: {axis: dims[symbol] for axis, symbol in t.dynamic_axes.items()} for t in INPUTS}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(wrapper, (ids, mask, pixels, index, keep), str(path), dynamo=True, external_data=False,
                          opset_version=opset, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          dynamic_shapes=dynamic, verbose=False)
    return path


# ----------------------------------------------------------------------------- parity


@dataclass
class Parity:
    """PyTorch vs ONNX Runtime on the same inputs."""

    n: int
    max_abs_logit_diff: float
    label_agreement: float
    max_abs_token_score_diff: float
    token_rationale_agreement: float  # share of content tokens whose >= 0.5 decision matches
    patch_topk_agreement: float  # share of rows with an image whose top-k patch set matches
    by_kind: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def topk_sets(scores: np.ndarray, present: np.ndarray, k: int) -> list[frozenset[int]]:
    """Top-k patch indices per row (ties to the lower index), empty without an image."""
    out = []
    for s, p in zip(scores, present):
        if not p:
            out.append(frozenset())
            continue
        order = np.lexsort((np.arange(len(s)), -s))
        out.append(frozenset(order[:k].tolist()))
    return out


def patch_count(student: Any) -> int:
    """The student's patch-grid cells (`patch_keep`'s fixed axis)."""
    grid = int(getattr(getattr(student, "config", None), "patch_grid", 7))
    return grid * grid


def run_torch(student: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import torch

    from crisislens.distill.student import StudentExport

    wrapper = StudentExport(student).eval()
    with torch.no_grad():
        out = wrapper(*(torch.from_numpy(v) for v in model_feeds(feeds, INPUT_NAMES, patch_count(student)).values()))
    return [o.numpy() for o in out]


def compare(reference: Sequence[Sequence[np.ndarray]], candidate: Sequence[Sequence[np.ndarray]],
            feeds: Sequence[dict[str, np.ndarray]], kinds: Sequence[str], *, cls_id: int = 101, sep_id: int = 102,
            top_k: int = 5) -> Parity:
    """Compare two models' outputs batch by batch (`kinds` labels each batch, e.g. 'mixed')."""
    stats: dict[str, dict[str, list[float]]] = {}
    for ref, cand, feed, kind in zip(reference, candidate, feeds, kinds):
        s = stats.setdefault(kind, {"logit": [], "label": [], "token": [], "tok_rat": [], "patch": [], "n": []})
        content = (feed["attention_mask"] > 0) & (feed["input_ids"] != cls_id) & (feed["input_ids"] != sep_id)
        s["logit"].append(float(np.abs(ref[0] - cand[0]).max()))
        s["label"].extend((ref[0].argmax(1) == cand[0].argmax(1)).tolist())
        s["token"].append(float(np.abs((ref[1] - cand[1])[content]).max()) if content.any() else 0.0)
        s["tok_rat"].extend(((ref[1] >= 0.5) == (cand[1] >= 0.5))[content].tolist())
        present = feed["image_index"] >= 0
        a, b = topk_sets(ref[2], present, top_k), topk_sets(cand[2], present, top_k)
        s["patch"].extend([x == y for x, y, p in zip(a, b, present) if p])
        s["n"].append(len(present))

    def summary(s: dict[str, list[float]]) -> dict[str, float]:
        return {"n": int(sum(s["n"])), "max_abs_logit_diff": max(s["logit"]), "label_agreement": float(np.mean(s["label"])),
                "max_abs_token_score_diff": max(s["token"]),
                "token_rationale_agreement": float(np.mean(s["tok_rat"])) if s["tok_rat"] else 1.0,
                "patch_topk_agreement": float(np.mean(s["patch"])) if s["patch"] else 1.0}

    by_kind = {k: summary(v) for k, v in stats.items()}
    allstats = {key: [x for v in stats.values() for x in v[key]] for key in ("logit", "label", "token", "tok_rat", "patch", "n")}
    total = summary(allstats)
    return Parity(n=int(total["n"]), max_abs_logit_diff=total["max_abs_logit_diff"], label_agreement=total["label_agreement"],
                  max_abs_token_score_diff=total["max_abs_token_score_diff"],
                  token_rationale_agreement=total["token_rationale_agreement"],
                  patch_topk_agreement=total["patch_topk_agreement"], by_kind=by_kind)


def ort_session(path: Path, threads: int | None = None, quantization: str | None = None) -> Any:
    """A CPU session with the runtime's own options for this kind of model."""
    import onnxruntime as ort

    from crisislens.runtime.backends.ort import session_options

    return ort.InferenceSession(str(path), session_options(quantization, threads), providers=["CPUExecutionProvider"])


def run_ort(session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from crisislens.runtime.backends.ort import session_feeds

    return session.run(list(OUTPUT_NAMES), session_feeds(session, feeds))


def check_parity(student: Any, onnx_path: Path, feeds: Sequence[dict[str, np.ndarray]], kinds: Sequence[str],
                 top_k: int = 5) -> Parity:
    session = ort_session(onnx_path)
    ref, cand = [], []
    for i, f in enumerate(feeds):
        ref.append(run_torch(student, f))
        cand.append(run_ort(session, f))
        print(f"\rparity: batch {i + 1}/{len(feeds)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return compare(ref, cand, feeds, kinds, top_k=top_k)
