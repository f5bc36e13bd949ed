"""Pack everything the teacher v2 trains and is scored on into a small payload (no tweet text).

The payload is what `teacher_v2.main` reads, here or on a lent GPU:

- `rows.npz`: per row, MPNet token ids of the cleaned text (`runtime.preprocess.clean_text`,
  truncated to 64), the label, the photo's index and label, the human-rationale token mask and
  the row's group (`crisismmd:train`, `humaid:train`, `rationales:eval`, `images:kerala`, ...).
  `keys.json` (kept here, not sent) names each row's example.
- `photos.npz`: each photo's 7 x 7 patch features from the chosen EfficientNet-Lite, reduced to
  `image_dim` components by a PCA fitted on the training photos only, as int8 codes with one
  scale per component. `pca.npz` (kept here) holds the projection for inference.
- `weights-*.npz` + `config.json`: all-mpnet-base-v2 with its matrices stored int8 per row
  (they are dequantised on load, here and there alike, so both run the same encoder).

Held out of everything that trains or selects: CrisisMMD dev/test (dev selects the epoch),
the Hagupit rationale set, CrisisLexT26 and every `kerala_flood_2018` photo (the issue's
unseen-event photo test).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crisislens.distill import data as D
from crisislens.distill.assembly import assemble
from crisislens.distill.features import rationale_tokens
from crisislens.distill.pretrained import mpnet_dir
from crisislens.distill.train_teacher import TrainConfig
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.preprocessing import clean_text

HELD_OUT_EVENT = "kerala_flood_2018"
MAX_TOKENS = 64
GROUP = 64  # weights are sent as int8 with one float16 scale per 64 values of a row


def _photo_key(example: D.Example, root: Path) -> str | None:
    if example.image is None:
        return None
    return str(Path(example.image).resolve().relative_to((root / "images").resolve()))


def gather(root: Path, seed: int = 13) -> dict[str, list[D.Example]]:
    """Every group of rows, by name."""
    sets = assemble(root, TrainConfig(data_root=str(root), seed=seed))
    pool_ids = {e.id for e in sets.train["humaid"]}
    humaid_all = [e for e in D.load_humaid(root) if e.label is not None]
    eval_ids = {e.tweet_id for e in sets.dev + sets.test if e.tweet_id}
    humaid_rest = [e for e in humaid_all if e.id not in pool_ids and e.tweet_id not in eval_ids]
    all_images = D.load_labelled_images(root)
    kerala = [e for e in all_images if e.event == HELD_OUT_EVENT]
    groups = {
        "crisismmd:train": sets.train["crisismmd"],
        "crisismmd:dev": sets.dev,
        "crisismmd:test": sets.test,
        "humaid:train": sets.train["humaid"],
        "humaid:rest": humaid_rest,
        "rationales:train": sets.train["rationales"],
        "rationales:eval": sets.rationale_eval,
        "images:train": [e for e in sets.train["images"] if e.event != HELD_OUT_EVENT],
        "images:heldout": [e for e in sets.image_heldout if e.event != HELD_OUT_EVENT],
        "images:kerala": kerala,
        "crisislex:all": [e for e in D.load_crisislex(root) if e.label is not None],
    }
    return groups


def tokenize(examples: Sequence[D.Example], tokenizer: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids [R, 64] uint16, lengths, rationale mask [R, 64], has_rationale) on the cleaned texts."""
    from tokenizers import Tokenizer

    assert isinstance(tokenizer, Tokenizer)
    ids = np.ones((len(examples), MAX_TOKENS), np.uint16)  # <pad> = 1
    lengths = np.zeros(len(examples), np.int16)
    rationale = np.zeros((len(examples), MAX_TOKENS), bool)
    has = np.zeros(len(examples), bool)
    cleaned = [clean_text(e.text)[0] if e.text else "" for e in examples]
    encodings = tokenizer.encode_batch(cleaned)
    for i, (e, enc) in enumerate(zip(examples, encodings)):
        n = len(enc.ids)
        ids[i, :n] = enc.ids
        lengths[i] = n
        rat = rationale_tokens(e, cleaned[i], enc.offsets) if e.text else None
        if rat is not None:
            rationale[i, :n] = np.asarray(rat[:n], bool)
            has[i] = True
    return ids, lengths, rationale, has


def mpnet_tokenizer(folder: Path) -> object:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(MAX_TOKENS)
    tok.no_padding()
    return tok


def fit_pca(features: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean [C], components [C, dim]) of patch features [P, M, C]."""
    x = features.reshape(-1, features.shape[-1]).astype(np.float32)
    mean = x.mean(0)
    cov = np.cov((x - mean).T)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:dim]
    return mean, vecs[:, order].astype(np.float32)


def write_payload(root: Path, out: Path, *, tower: str, cache: Path, image_dim: int = 448,
                  weights_out: Sequence[Path] = ()) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    groups = gather(root)
    folder = mpnet_dir()
    tok = mpnet_tokenizer(folder)
    examples: list[D.Example] = []
    group_of: list[str] = []
    for name, rows in groups.items():
        examples.extend(rows)
        group_of.extend([name] * len(rows))
    ids, lengths, rationale, has = tokenize(examples, tok)
    label = np.array([LABEL_NAMES.index(e.label) if e.label else -1 for e in examples], np.int8)

    z = np.load(cache / f"photos-{tower}.npz", allow_pickle=False)
    feature_index = {k: i for i, k in enumerate(z["keys"].tolist())}
    used: dict[str, int] = {}
    photo = np.full(len(examples), -1, np.int32)
    for i, e in enumerate(examples):
        key = _photo_key(e, root)
        if key is not None and key in feature_index and bool(z["ok"][feature_index[key]]):
            photo[i] = used.setdefault(key, len(used))
    photo_label = np.full(len(examples), -1, np.int8)
    for i, e in enumerate(examples):
        if photo[i] < 0:
            continue
        raw = e.meta.get("label_image") if e.source == "crisismmd" else e.label
        if raw:
            photo_label[i] = LABEL_NAMES.index(D.to_humanitarian5(raw) if e.source == "crisismmd" else raw)
    grid = z["grid"]
    keys = list(used)
    feats = np.stack([grid[feature_index[k]] for k in keys]).astype(np.float32)
    train_groups = {"crisismmd:train", "images:train"}
    train_photos = sorted({int(photo[i]) for i in range(len(examples))
                           if photo[i] >= 0 and group_of[i] in train_groups})
    mean, comps = fit_pca(feats[train_photos], image_dim)
    codes = (feats - mean) @ comps  # [P, M, K]
    scale = np.abs(codes[train_photos]).reshape(-1, image_dim).max(0) / 127.0
    q = np.clip(np.round(codes / scale), -127, 127).astype(np.int8)
    explained = float(np.var(codes[train_photos].reshape(-1, image_dim), 0).sum()
                      / np.var(feats[train_photos].reshape(-1, feats.shape[-1]), 0).sum())

    np.savez_compressed(out / "rows.npz", ids=ids, lengths=lengths, label=label, photo_label=photo_label,
                        photo=photo, group=np.array(group_of), rationale=rationale, has_rationale=has)
    np.savez(out / "photos.npz", q=q, scale=scale.astype(np.float32))
    (out / "config.json").write_text((folder / "config.json").read_text())
    keys_path = out.parent / f"{out.name}-keys.json"
    keys_path.write_text(json.dumps({"rows": [f"{e.source}:{e.id}" for e in examples], "photos": keys,
                                     "tower": tower, "image_dim": image_dim}))
    np.savez(out.parent / f"{out.name}-pca.npz", mean=mean, components=comps, scale=scale)
    if weights_out:
        write_weights(folder, weights_out)
    return {"rows": len(examples), "photos": len(keys), "groups": {g: len(rows) for g, rows in groups.items()}, "pca_explained": explained,
            "with_rationale": int(has.sum())}


def write_weights(folder: Path, outs: Sequence[Path], min_size: int = 100_000) -> None:
    """all-mpnet-base-v2's tensors, matrices int8 in groups of `GROUP` values of a row (one float16
    scale each), spread over `outs` (one file each)."""
    from safetensors.numpy import load_file

    state = load_file(str(folder / "model.safetensors"))
    packed: list[tuple[str, dict[str, np.ndarray], int]] = []
    for key, value in sorted(state.items()):
        if key.startswith("pooler."):
            continue
        value = value.astype(np.float32)
        if value.ndim == 2 and value.size >= min_size and value.shape[1] % GROUP == 0:
            groups = value.reshape(value.shape[0], -1, GROUP)
            s = np.abs(groups).max(2) / 127.0
            s[s == 0] = 1.0
            s = s.astype(np.float16)
            q = np.round(groups / s[..., None].astype(np.float32)).astype(np.int8).reshape(value.shape)
            arrays = {key + "::q": q, key + "::s": s}
        else:
            arrays = {key: value.astype(np.float32)}
        packed.append((key, arrays, sum(a.nbytes for a in arrays.values())))
    total = sum(p[2] for p in packed)
    share = total / len(outs)
    parts: list[dict[str, np.ndarray]] = [{} for _ in outs]
    done = 0
    for _, arrays, size in packed:
        index = min(int(done / share), len(outs) - 1)
        parts[index].update(arrays)
        done += size
    for i, (path, part) in enumerate(zip(outs, parts)):
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / f"weights-{i}.npz", **part)


def compare_towers(root: Path, cache: Path, towers: Sequence[str] = ("lite0", "lite1", "lite2")) -> dict[str, object]:
    """Which image tower: a logistic-regression probe on each photo's mean patch feature, trained
    on the training photos (CrisisMMD train rows with a photo, labelled photos) and scored by
    Macro-F1 on the dev photos (CrisisMMD dev rows with a photo, held-out labelled photos)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    groups = gather(root)

    def labelled(names: Sequence[str]) -> list[tuple[str, str]]:
        rows = []
        for name in names:
            for e in groups[name]:
                key = _photo_key(e, root)
                raw = e.meta.get("label_image") if e.source == "crisismmd" else e.label
                if key and raw:
                    rows.append((key, D.to_humanitarian5(raw) if e.source == "crisismmd" else raw))
        return rows

    train = labelled(["crisismmd:train", "images:train"])
    dev = labelled(["crisismmd:dev", "images:heldout"])
    unseen = labelled(["images:kerala"])  # never trained on or selected with: scored once, after C is chosen
    result: dict[str, object] = {"train_photos": len(train), "dev_photos": len(dev), "kerala_photos": len(unseen)}
    for tower in towers:
        path = cache / f"photos-{tower}.npz"
        if not path.is_file():
            continue
        z = np.load(path, allow_pickle=False)
        index = {k: i for i, k in enumerate(z["keys"].tolist())}
        pooled = z["grid"].astype(np.float32).mean(1)

        xtr, ytr = _pooled_xy(train, index, pooled)
        xdev, ydev = _pooled_xy(dev, index, pooled)
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
        best: dict[str, float] = {"dev_macro_f1": -1.0}
        for c in (0.01, 0.03, 0.1, 0.3, 1.0):
            pred = LogisticRegression(C=c, max_iter=3000).fit((xtr - mu) / sd, ytr).predict((xdev - mu) / sd)
            f1 = float(f1_score(ydev, pred, average="macro"))
            if f1 > best["dev_macro_f1"]:
                best = {"C": c, "dev_macro_f1": f1, "dev_accuracy": float(accuracy_score(ydev, pred))}
        xk, yk = _pooled_xy(unseen, index, pooled)
        if len(yk):
            model = LogisticRegression(C=best["C"], max_iter=3000).fit((xtr - mu) / sd, ytr)
            pred = model.predict((xk - mu) / sd)
            present = sorted(set(yk))  # Macro-F1 over the classes the event has
            best["kerala_accuracy"] = float(accuracy_score(yk, pred))
            best["kerala_macro_f1"] = float(f1_score(yk, pred, labels=present, average="macro"))
        result[tower] = best
    return result


def _pooled_xy(rows: list[tuple[str, str]], index: dict[str, int], pooled: np.ndarray) -> tuple[np.ndarray, list[str]]:
    keep = [(index[k], y) for k, y in rows if k in index]
    return pooled[[i for i, _ in keep]], [y for _, y in keep]
