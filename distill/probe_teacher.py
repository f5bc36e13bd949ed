"""A text teacher that needs no GPU: the frozen-encoder linear probe's class distributions.

The linear probe on frozen all-mpnet-base-v2 embeddings (`probes`) is the strongest text model
this project can train on two CPU cores. Written as a teacher run folder (`keys.json`,
`outputs-logits.npz`, an empty `outputs-patches.npz`, no word scores), the student v2 learns
its class distributions (`kd`) as it would learn the teacher v2's:

- CrisisMMD training rows get out-of-fold distributions (`folds` probes, each fitted without the
  row), so the soft label is not the gold label read back;
- HumAID and the rationale set get the distribution of the probe fitted on all CrisisMMD
  training rows: CrisisMMD's reading of posts whose own labels follow another scheme.
- With `humaid_weight` > 0, HumAID's own labels join the fit (each HumAID row weighing that
  much against a CrisisMMD row) and HumAID rows are scored out of fold too. CrisisMMD's reading
  alone loses what HumAID's labels carry to other collections (CrisisLexT26's
  `affected_individuals` and `other_relevant_information`); the weight trades the two.

With `humaid` > 0, only a seeded sample of that many HumAID training posts is read (embedding
all 24,000 with MPNet takes hours on two CPU cores); the student v2 then draws its HumAID posts
from the ones this teacher read (`humaid_gold=false`).

With `crisislex` > 0, a seeded sample of that many labelled CrisisLexT26 posts (never trained
on) is scored zero-shot and recorded beside dev and test.

With `photos` (the frozen EfficientNet-Lite features of `photo_features`), a photo probe is
trained on the labelled training photos (CrisisMMD image labels, MEDIC photos of other events)
and a CrisisMMD training row with a photo gets its text and photo read together: the text
probe's log-probabilities plus a weight times what the photo probe adds to its class prior (both
out of fold), the weight picked by log loss on the CrisisMMD dev posts with a photo. The text-only teacher
teaches the student that the photo never matters; this one does not.

C is picked by Macro-F1 on CrisisMMD dev, as in `probes.run_probe`; dev and test are scored and
recorded in `summary.json`, never trained on. It carries no word or patch rationale: those still
come from the human rationales (and from the teacher v2 where one is given).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.distill import data as D
from crisislens.distill import teacher_run as R
from crisislens.distill.features import example_key
from crisislens.distill.probes import C_GRID, ENCODERS, embed
from crisislens.evaluation.metrics import classification_report
from crisislens.runtime.files import atomic_write
from crisislens.runtime.labels import LABEL_NAMES

LABELLED_GROUPS = ("crisismmd:train", "humaid:train", "rationales:train")


def sample_humaid(groups: dict[str, list[D.Example]], n: int, seed: int) -> dict[str, list[D.Example]]:
    """`groups` with a seeded sample of `n` of its HumAID training posts (0: all of them)."""
    if n < 0:
        raise ValueError(f"humaid {n}: 0 or more")
    if not n:
        return dict(groups)
    pool = groups.get("humaid:train", [])
    return {**groups, "humaid:train": random.Random(seed).sample(pool, min(n, len(pool)))}


def crisislex_sample(groups: dict[str, list[D.Example]], n: int, seed: int) -> list[D.Example]:
    """A seeded sample of `n` labelled CrisisLexT26 posts with words (the zero-shot check's)."""
    lex = [e for e in groups.get("crisislex:all", []) if e.text and e.label]
    return random.Random(seed).sample(lex, min(n, len(lex)))


def cached_rows_embeddings(encoder: str, rows: Sequence[D.Example], cache: Path, chunk: int = 2048) -> np.ndarray:
    """[len(rows), D] probe embeddings of the rows' texts, cached per example key in `cache` (saved
    every `chunk` texts, so a killed run starts again where it stopped)."""
    path = cache / f"probe-teacher-{encoder}.npz"
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as z:
            known = dict(zip(z["keys"].tolist(), z["embeddings"]))
    keys = [example_key(e) for e in rows]
    first = {k: i for i, k in reversed(list(enumerate(keys)))}  # each key's first row
    todo = sorted(i for k, i in first.items() if k not in known)
    if todo:
        print(f"embedding {len(todo)} texts with {encoder} ...", file=sys.stderr)
    for start in range(0, len(todo), chunk):  # saved after each chunk: a killed run keeps what it did
        part = todo[start: start + chunk]
        fresh = embed(encoder, [rows[i].text or "" for i in part])
        known.update({keys[i]: fresh[j] for j, i in enumerate(part)})
        cache.mkdir(parents=True, exist_ok=True)
        order = list(known)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(order), embeddings=np.stack([known[k] for k in order]))
        tmp.replace(path)
        print(f"  {min(start + chunk, len(todo))} / {len(todo)} embedded, cached in {path}", file=sys.stderr)
    return np.stack([known[k] for k in keys])


def pick_c(x: np.ndarray, y: Sequence[str], x_dev: np.ndarray, y_dev: Sequence[str],
           weights: np.ndarray | None = None, grid: Sequence[float] = C_GRID,
           class_weight: str | None = None) -> tuple[float, dict[float, float]]:
    """The C of `grid` with the best dev Macro-F1, and every C's score."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    def fit(c: float) -> Any:
        return LogisticRegression(C=c, max_iter=3000, class_weight=class_weight).fit(x, y, sample_weight=weights)

    scores = {c: float(f1_score(y_dev, fit(c).predict(x_dev), average="macro")) for c in grid}
    return max(scores, key=lambda c: scores[c]), scores


@dataclass
class PhotoProbe:
    """Logistic regression on standardised mean patch features, C picked on dev photos."""

    model: Any
    mu: np.ndarray
    sd: np.ndarray
    c: float
    dev_scores: dict[float, float]

    def x(self, pooled: np.ndarray) -> np.ndarray:
        return (pooled - self.mu) / self.sd


def fit_photo_probe(x: np.ndarray, y: Sequence[str], x_dev: np.ndarray, y_dev: Sequence[str],
                    class_weight: str | None = None) -> PhotoProbe:
    """The photo probe: standardise on the training photos, pick C on PHOTO_C_GRID by dev Macro-F1, refit."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = x.mean(0), x.std(0) + 1e-6
    c, scores = pick_c((x - mu) / sd, y, (x_dev - mu) / sd, y_dev, grid=PHOTO_C_GRID, class_weight=class_weight)
    model = LogisticRegression(C=c, max_iter=3000, class_weight=class_weight).fit((x - mu) / sd, y)
    return PhotoProbe(model, mu, sd, c, scores)


def log_probabilities(model: Any, x: np.ndarray) -> np.ndarray:
    """[N, C] log-probabilities in LABEL_NAMES order (a class the model never saw: -30)."""
    out = np.full((len(x), len(LABEL_NAMES)), -30.0, np.float32)
    logp = model.predict_log_proba(x)
    for j, name in enumerate(model.classes_):
        out[:, LABEL_NAMES.index(name)] = np.maximum(logp[:, j], -30.0)
    return out


def out_of_fold(x: np.ndarray, y: Sequence[str], c: float, folds: int, seed: int,
                weights: np.ndarray | None = None) -> np.ndarray:
    """[N, C] log-probabilities of each row from the probe fitted on the other folds (stratified)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros((len(x), len(LABEL_NAMES)), np.float32)
    labels = np.asarray(y)
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, labels):
        model = LogisticRegression(C=c, max_iter=3000).fit(
            x[fit], labels[fit], sample_weight=None if weights is None else weights[fit])
        out[held] = log_probabilities(model, x[held])
    return out


# ----------------------------------------------------------------------------- the photo probe

PHOTO_C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
PHOTO_WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0)


def photo_label(e: D.Example) -> str | None:
    """A row's 5-class photo label: a CrisisMMD row's image label, another photo collection's own
    label; None when it has none."""
    raw = e.meta.get("label_image") if e.source == "crisismmd" else e.label
    if not raw:
        return None
    return D.to_humanitarian5(raw) if e.source == "crisismmd" else raw


def photo_labelled(groups: dict[str, list[D.Example]], names: Sequence[str], root: Path,
                   index: dict[str, int]) -> list[tuple[D.Example, str, int]]:
    """(row, 5-class photo label, feature row) of every labelled photo in the groups that `index`
    holds features of."""
    from crisislens.distill.teacher_v2_data import _photo_key

    out = []
    for name in names:
        for e in groups.get(name, []):
            key, label = _photo_key(e, root), photo_label(e)
            if key in index and label:
                out.append((e, label, index[key]))
    return out


def fuse(text: np.ndarray, photo: np.ndarray, prior: np.ndarray, weight: float) -> np.ndarray:
    """Log-probabilities of text and photo read together: the text's, plus `weight` times what the
    photo adds to its own class prior (a product of experts), renormalised."""
    z = text + weight * (photo - prior)
    return (z - np.logaddexp.reduce(z, axis=1, keepdims=True)).astype(np.float32)


def class_maps(probe: PhotoProbe, cells: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Patch targets from the photo probe: each cell's evidence for the row's class (`classes`:
    index into LABEL_NAMES), a class activation map. The probe is linear in the mean cell
    feature, so its logit for class c is the mean over cells of `(w_c - mean_k w_k) . x(cell)`
    plus a constant: each cell's term is its share. Scaled to 0..1 per photo.
    `cells` [R, M, D] -> [R, M]."""
    names = [str(c) for c in probe.model.classes_]
    coef = np.asarray(probe.model.coef_, np.float64)
    if coef.shape[0] == 1:  # two classes: sklearn keeps one row (the second class's)
        coef = np.concatenate([-coef, coef]) / 2
    contrast = coef - coef.mean(0, keepdims=True)  # [K, D]
    out = np.zeros(cells.shape[:2], np.float32)
    for r, c in enumerate(classes):
        name = LABEL_NAMES[int(c)]
        if name not in names:  # a class the photo probe never saw: no evidence for it
            continue
        s = probe.x(cells[r].astype(np.float64)) @ contrast[names.index(name)]
        span = s.max() - s.min()
        out[r] = (s - s.min()) / span if span > 0 else 0.0
    return out


def photo_teacher(groups: dict[str, list[D.Example]], root: Path, features: Path, text_full: Any,
                  text: dict[str, tuple[list[D.Example], np.ndarray]], folds: int,
                  seed: int, patch_targets: bool = False
                  ) -> tuple[dict[int, np.ndarray], dict[str, Any], dict[int, np.ndarray], dict[str, np.ndarray]]:
    """The photo probe (logistic regression on the mean EfficientNet-Lite patch feature, trained on
    the labelled training photos, C picked on the dev photos) and its weight in the fusion, picked
    by log loss on the CrisisMMD dev posts with a photo. `text` holds, per CrisisMMD split, the
    text probe's rows and their log-probabilities (out of fold for "crisismmd:train"). Returns the
    fused out-of-fold log-probabilities of the training rows with a photo (by their position in
    `text["crisismmd:train"]`), a summary, and with `patch_targets` those rows' patch targets
    (`class_maps` for the fused class) and every labelled training photo's own (`class_maps` for
    its photo label, by photo key: for the photo read alone); otherwise both empty."""
    from sklearn.metrics import f1_score

    from crisislens.distill.teacher_v2_data import _photo_key
    from crisislens.evaluation.photos import unrelated_iou

    with np.load(features, allow_pickle=False) as z:
        keys, ok = z["keys"].tolist(), z["ok"]
        grid = z["grid"]  # [photos, cells, channels] float16
        pooled = grid.mean(1, dtype=np.float32)
        # The whole grid (about 370 MB for 3k photos) is kept only for the patch targets.
        cells = grid if patch_targets else None
        del grid
    index = {k: i for i, k in enumerate(keys) if ok[i]}
    train = photo_labelled(groups, ("crisismmd:train", "images:train"), root, index)
    dev = photo_labelled(groups, ("crisismmd:dev", "images:heldout"), root, index)
    if not train or not dev:
        raise ValueError(f"{features}: no labelled training or dev photo among its {len(index)} photos")
    y_train = [label for _, label, _ in train]
    probe = fit_photo_probe(pooled[[r for _, _, r in train]], y_train, pooled[[r for _, _, r in dev]],
                            [label for _, label, _ in dev])
    c, by_c = probe.c, probe.dev_scores

    def x(items: Sequence[tuple[Any, Any, int]]) -> np.ndarray:
        return probe.x(pooled[[r for _, _, r in items]])

    oof = out_of_fold(x(train), y_train, c, folds, seed)
    counts = np.array([y_train.count(name) + 1 for name in LABEL_NAMES], np.float64)
    prior = np.log(counts / counts.sum()).astype(np.float32)

    def posts(name: str) -> tuple[list[D.Example], np.ndarray, np.ndarray]:
        """A split's labelled posts with words and a photo: the rows, their text and photo log-probabilities."""
        rows_, logp = text[name]
        found = [(i, index.get(_photo_key(e, root) or "")) for i, e in enumerate(rows_) if e.label and e.text]
        keep = [(i, r) for i, r in found if r is not None]
        photos = probe.x(pooled[[r for _, r in keep]])
        return [rows_[i] for i, _ in keep], logp[[i for i, _ in keep]], log_probabilities(probe.model, photos)

    def scores(rows_: list[D.Example], logp: np.ndarray) -> dict[str, float]:
        gold = [e.label for e in rows_]
        pred = np.asarray(LABEL_NAMES)[logp.argmax(1)]
        return {"log_loss": float(-np.mean(logp[np.arange(len(gold)), [LABEL_NAMES.index(g or "") for g in gold]])),
                "accuracy": float(np.mean(pred == np.asarray(gold))),
                "macro_f1": float(f1_score(gold, pred, average="macro"))}

    dev_rows, dev_text, dev_photo = posts("crisismmd:dev")
    if not dev_rows:
        raise ValueError(f"{features}: no CrisisMMD dev post with a photo to weigh the photo by")
    # Picked by log loss: the distribution is what the student learns, and Macro-F1 on ~150 posts
    # turns on the one or two posts of the rarest classes.
    by_weight = {w: scores(dev_rows, fuse(dev_text, dev_photo, prior, w)) for w in PHOTO_WEIGHTS}
    weight = min(PHOTO_WEIGHTS, key=lambda w: (by_weight[w]["log_loss"], w))  # ties: the smaller weight
    test_rows, test_text, test_photo = posts("crisismmd:test")
    train_rows, train_oof = text["crisismmd:train"]
    position = {id(e): i for i, e in enumerate(train_rows)}
    fused = {position[id(e)]: fuse(train_oof[position[id(e)]][None], oof[j][None], prior, weight)[0]
             for j, (e, _, _) in enumerate(train) if id(e) in position}
    maps: dict[int, np.ndarray] = {}
    photo_maps: dict[str, np.ndarray] = {}
    if cells is not None:
        rows_ = [(position[id(e)], r) for e, _, r in train if id(e) in position]
        found = class_maps(probe, cells[[r for _, r in rows_]], [int(fused[i].argmax()) for i, _ in rows_])
        maps = {i: found[j] for j, (i, _) in enumerate(rows_)}
        alone = {keys[r]: (r, LABEL_NAMES.index(label)) for _, label, r in train}  # one map per photo
        found = class_maps(probe, cells[[r for r, _ in alone.values()]], [c for _, c in alone.values()])
        photo_maps = {key: found[j] for j, key in enumerate(alone)}
    summary = {
        "features": str(features), "C": c, "dev_photo_macro_f1_by_C": by_c, "training photos": len(train),
        "weight": weight, "dev_by_weight": by_weight,
        "crisismmd:dev posts with a photo": {"n": len(dev_rows), "text": by_weight[0.0],
                                             "text + photo": by_weight[weight]},
        "crisismmd:test posts with a photo": {"n": len(test_rows), "text": scores(test_rows, test_text),
                                              "text + photo": scores(test_rows, fuse(test_text, test_photo, prior,
                                                                                     weight))},
        "crisismmd:train rows given the fused reading": len(fused),
    }
    if maps:
        summary["patch targets"] = {
            "rows": len(maps), "what": "the photo probe's per-cell evidence for the fused class, 0..1 per photo",
            "unrelated photos top-5 IoU": unrelated_iou(np.stack(list(maps.values())), seed=seed),
            "photos alone": len(photo_maps),
        }
    return fused, summary, maps, photo_maps


def build(groups: dict[str, list[D.Example]], out: Path, cache: Path, *, encoder: str = "mpnet", folds: int = 5,
          seed: int = 13, humaid_weight: float = 0.0, crisislex: int = 0, humaid: int = 0,
          photos: Path | None = None, root: Path | None = None, patch_targets: bool = False) -> dict[str, Any]:
    """Write the probe teacher's run folder for `groups` (`teacher_v2_data.gather`'s) into `out`;
    with `photos` (`photo_features.extract`'s file for data root `root`), CrisisMMD training rows
    with a photo get the text and the photo read together (`photo_teacher`), and with
    `patch_targets` also patch targets (`class_maps`), which the student learns as a teacher's
    transferred patch scores."""
    from sklearn.linear_model import LogisticRegression

    if encoder not in ENCODERS:
        raise ValueError(f"encoder {encoder!r}: one of {', '.join(ENCODERS)}")
    if folds < 2:
        raise ValueError(f"folds {folds}: at least 2")
    if not humaid_weight >= 0:
        raise ValueError(f"humaid_weight {humaid_weight}: 0 or more")
    if crisislex < 0:
        raise ValueError(f"crisislex {crisislex}: 0 or more")
    if photos is not None and not photos.is_file():
        raise ValueError(f"{photos}: no such photo feature file (crisislens distill teacher-v2 photo-features)")
    if photos is not None and root is None:
        raise ValueError("photos: needs the data root the features were taken from")
    if patch_targets and photos is None:
        raise ValueError("patch targets come from the photo probe: they need the photo features (photos)")
    groups = sample_humaid(groups, humaid, seed)
    started = time.perf_counter()
    train = [e for e in groups["crisismmd:train"] if e.text and e.label]
    dev = [e for e in groups["crisismmd:dev"] if e.label]
    test = [e for e in groups["crisismmd:test"] if e.label]
    humaid_rows = [e for e in groups.get("humaid:train", []) if e.text]
    gold = [e for e in humaid_rows if e.label] if humaid_weight > 0 else []
    fitted = {id(e) for e in gold}
    others = [e for e in humaid_rows if id(e) not in fitted] + [e for e in groups.get("rationales:train", []) if e.text]
    lex = crisislex_sample(groups, crisislex, seed)
    fit = train + gold
    x = cached_rows_embeddings(encoder, fit + dev + test + others + lex, cache)
    cuts = np.cumsum([len(fit), len(dev), len(test), len(others)])
    x_fit, x_dev, x_test, x_others, x_lex = np.split(x, cuts)
    y_fit = [e.label or "" for e in fit]
    weights = np.array([1.0] * len(train) + [humaid_weight] * len(gold)) if gold else None
    c, dev_scores = pick_c(x_fit, y_fit, x_dev, [e.label or "" for e in dev], weights)
    full = LogisticRegression(C=c, max_iter=3000).fit(x_fit, y_fit, sample_weight=weights)
    logits = out_of_fold(x_fit, y_fit, c, folds, seed, weights)
    if others:
        logits = np.concatenate([logits, log_probabilities(full, x_others)])
    keys = [example_key(e) for e in fit + others]
    photo_summary = None
    maps: dict[int, np.ndarray] = {}
    photo_maps: dict[str, np.ndarray] = {}
    if photos is not None and root is not None:
        fused, photo_summary, maps, photo_maps = photo_teacher(
            groups, root, photos, full, {"crisismmd:train": (train, logits[: len(train)]),
                                         "crisismmd:dev": (dev, log_probabilities(full, x_dev)),
                                         "crisismmd:test": (test, log_probabilities(full, x_test))}, folds, seed,
            patch_targets)
        for i, row in fused.items():
            logits[i] = row
    agree_oof = float(np.mean(np.asarray(LABEL_NAMES)[logits[: len(train)].argmax(1)] == np.asarray(y_fit[: len(train)])))

    def report(rows: Sequence[D.Example], xs: np.ndarray) -> dict[str, Any]:
        return classification_report([e.label or "" for e in rows], list(full.predict(xs)), labels=LABEL_NAMES).to_dict()

    summary: dict[str, Any] = {
        "encoder": encoder, "C": c, "folds": folds, "seed": seed, "humaid_weight": humaid_weight,
        "humaid_sample": humaid or None, "dev_macro_f1_by_C": dev_scores,
        "rows": {"crisismmd:train (out of fold)": len(train), "humaid:train with its labels (out of fold)": len(gold),
                 "other training rows": len(others)},
        "crisismmd:train out-of-fold accuracy": agree_oof,
        "crisismmd:dev": report(dev, x_dev),
        "crisismmd:test": report(test, x_test),
    }
    if photo_summary is not None:
        summary["photos"] = photo_summary
    if lex:
        summary[f"crisislex_t26 sample of {len(lex)} (zero-shot)"] = report(lex, x_lex)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / R.LOGITS, logits=logits)
    rows_with_maps = sorted(maps)
    np.savez(out / R.PATCHES,
             patches=np.stack([maps[i] for i in rows_with_maps]).astype(np.float16) if maps
             else np.zeros((0, 49), np.float16),
             photo_rows=np.asarray(rows_with_maps, np.int64))
    alone = out / R.PHOTO_PATCHES
    if photo_maps:  # the photos read alone: targets by photo key (path under images/)
        np.savez(alone, keys=np.array(list(photo_maps)), patches=np.stack(list(photo_maps.values())).astype(np.float16))
    else:
        alone.unlink(missing_ok=True)
    atomic_write(out / R.KEYS, json.dumps(keys))
    atomic_write(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary
