"""`crisislens distill rationales --bundle DIR`: the word rationale of a bundle, through the runtime.

- **Plausibility**: against the human rationales of the held-out event (Typhoon Hagupit, never
  trained on): token precision/recall/F1 of the bundle's highlighted words (score >= 0.5, at least
  2 words, the models' own rule) on the word pieces of each tweet.
- **Faithfulness** (ERASER comprehensiveness and sufficiency, AOPC over its fractions): CrisisMMD
  test texts; a removed word piece is masked out of the input (attention mask 0), and the same is
  done with random word pieces of the same number; the ratio of the two comprehensiveness values
  says how much more the highlighted words carry than random ones.

It lives in `distill` because the human rationales are read by `distill.data`; the model runs
through the torch-free runtime engine, as in a triage run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.distill import data as D
from crisislens.distill.features import rationale_tokens
from crisislens.evaluation import metrics as M
from crisislens.evaluation.datasets import dataset_inputs, labelled_posts
from crisislens.runtime.bundle import load_bundle
from crisislens.runtime.engine import Engine, softmax
from crisislens.runtime.markdown import md_table
from crisislens.runtime.schema import Post

EVAL_EVENT = "typhoon_hagupit_2014"
THRESHOLD, MIN_WORDS = 0.5, 2
SEED = 13
SPECIAL = (0, 101, 102)  # [PAD], [CLS], [SEP] of the MiniLM vocabulary the bundles use


def highlighted(scores: np.ndarray, threshold: float = THRESHOLD, minimum: int = MIN_WORDS) -> np.ndarray:
    """The highlighted units: score >= threshold, else (or when fewer) the `minimum` best."""
    keep = scores >= threshold
    if keep.sum() < min(minimum, len(scores)):
        keep = M.soft_to_hard(scores, top_k=minimum)
    return keep


def content_positions(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero((mask > 0) & ~np.isin(ids, SPECIAL))


def plausibility(engine: Engine, rows: Sequence[D.Example], batch_size: int = 32) -> dict[str, Any]:
    gold, pred = [], []
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo : lo + batch_size]
        prep = engine.prepare([Post(id=e.id, text=e.text) for e in chunk])
        tokens = engine.run(prep.feeds)[1]
        for i, e in enumerate(chunk):
            n = int(prep.feeds["attention_mask"][i].sum())
            human = rationale_tokens(e, prep.cleaned[i], prep.offsets[i][:n])
            if human is None:
                continue
            pos = content_positions(prep.feeds["input_ids"][i], prep.feeds["attention_mask"][i])
            if len(pos) == 0:
                continue
            gold.append(human[pos].astype(bool))
            pred.append(highlighted(tokens[i, pos]))
    return {"event": EVAL_EVENT, "n": len(gold), "token": M.token_f1(gold, pred).to_dict(),
            "iou_f1": M.iou_f1(gold, pred)}


def faithfulness(engine: Engine, posts: Sequence[Post]) -> dict[str, Any]:
    prep = engine.prepare(list(posts))
    feeds = prep.feeds
    tokens = engine.run(feeds)[1]
    positions = [content_positions(feeds["input_ids"][i], feeds["attention_mask"][i]) for i in range(len(posts))]

    def predict(keep: Sequence[np.ndarray]) -> np.ndarray:
        mask = feeds["attention_mask"].copy()
        for i, k in enumerate(keep):
            mask[i, positions[i][~k]] = 0
        logits = engine.run({**feeds, "attention_mask": mask})[0]
        return softmax(logits.astype(np.float64) / engine.temperature)

    scores = [tokens[i, p].astype(np.float64) for i, p in enumerate(positions)]
    ours = M.faithfulness(predict, scores)
    rand = M.faithfulness(predict, M.random_scores(scores, SEED))
    return {"n": ours.n, "rationale": ours.to_dict(), "random": rand.to_dict(),
            "comprehensiveness_ratio": ours.comprehensiveness / rand.comprehensiveness
            if rand.comprehensiveness > 1e-9 else None}


def bundle_rationales(bundle_dir: Path, root: Path, *, variant: str | None = None,
                      threads: int | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    engine = Engine(load_bundle(bundle_dir), variant, threads=threads)
    rows = D.load_rationales(root, events=[EVAL_EVENT])
    inputs, _ = dataset_inputs("crisismmd:test", root)
    posts, _ = labelled_posts(inputs, None)  # texts only: the word rationale alone
    texts = [Post(id=p.id, text=p.text) for p in posts if p.text]
    return {"bundle": str(bundle_dir), "variant": engine.variant.name, "model_id": engine.model_id,
            "plausibility": plausibility(engine, rows), "faithfulness": faithfulness(engine, texts),
            "seconds": round(time.perf_counter() - started, 1)}


def to_markdown(result: dict[str, Any], provenance: dict[str, Any]) -> str:
    p, f = result["plausibility"], result["faithfulness"]
    ratio = f["comprehensiveness_ratio"]
    return "\n".join([
        "# Word rationales of the bundle", "",
        f"Command: `{provenance['command']}` · commit {provenance['git_commit']} · {provenance['created']} · "
        f"bundle variant `{result['variant']}` ({result['model_id']}) · run time {result['seconds']} s.", "",
        f"## Against human rationales: {p['event']} ({p['n']} tweets, never trained on)", "",
        f"Highlighted word pieces (score >= {THRESHOLD}, at least {MIN_WORDS}) against the annotators' words.", "",
        *md_table(["token precision", "token recall", "token F1", "token F1 (micro)", "IOU-F1"],
                  [(f"{p['token']['macro_precision']:.4f}", f"{p['token']['macro_recall']:.4f}",
                    f"{p['token']['macro_f1']:.4f}", f"{p['token']['micro_f1']:.4f}", f"{p['iou_f1']:.4f}")]),
        "", f"## Faithfulness on CrisisMMD test texts ({f['n']} posts, ERASER AOPC)", "",
        *md_table(["words removed", "comprehensiveness", "sufficiency"],
                  [("highlighted first", f"{f['rationale']['comprehensiveness']:.4f}", f"{f['rationale']['sufficiency']:.4f}"),
                   ("random, same number", f"{f['random']['comprehensiveness']:.4f}", f"{f['random']['sufficiency']:.4f}")]),
        "", "Comprehensiveness, highlighted / random: " + ("n/a" if ratio is None else f"{ratio:.2f}x") + ".",
    ]) + "\n"
