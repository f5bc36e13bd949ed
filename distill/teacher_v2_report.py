"""Score a teacher v2 run against the baselines on the same splits, and write the report.

Reads the payload the run trained on (`rows.npz`: groups, labels, photos, human rationales),
the run's outputs (`outputs-*.npz`, `teacher.json`), the image-tower comparison and the linear
probes (`crisislens distill teacher-v2 baselines`), and the TF-IDF baseline report. Every number
is computed here from those files; nothing is copied by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.distill import teacher_run as R
from crisislens.evaluation.metrics import token_f1
from crisislens.evaluation.score import ScoredPost, score
from crisislens.runtime.files import atomic_write
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.markdown import md_table


def _names(indices: np.ndarray) -> list[str]:
    return [LABEL_NAMES[int(i)] for i in indices]


def _scores(gold: np.ndarray, logits: np.ndarray, labels: list[str] | None = None) -> dict[str, Any]:
    """Scores through the one scoring path (`evaluation.score`); with `labels`, Macro-F1 over those
    classes only (the ones present), the answers still taken over all five (one outside is wrong)."""
    pred = logits.argmax(1)
    records = [ScoredPost(str(i), g, p) for i, (g, p) in enumerate(zip(_names(gold), _names(pred)))]
    scores = score(records)
    macro = float(np.mean([scores.per_class[x] for x in labels])) if labels else scores.macro_f1
    return {"n": scores.n, "macro_f1": macro, "accuracy": scores.accuracy, "per_class_f1": scores.per_class}


def evaluate_run(payload: Path, run: Path) -> dict[str, Any]:
    rows = np.load(payload / "rows.npz", allow_pickle=False)
    group, label, photo = rows["group"], rows["label"].astype(int), rows["photo"]
    logits = np.load(run / R.LOGITS, allow_pickle=False)
    tokens = np.load(run / R.TOKENS, allow_pickle=False)["tokens"].astype(np.float32)
    result: dict[str, Any] = {"run": json.loads((run / "teacher.json").read_text())}
    keys = payload.parent / f"{payload.name}-keys.json"
    if keys.is_file():  # what the payload was packed with
        packed = json.loads(keys.read_text())
        result["run"].update(tower=packed["tower"], image_dim=packed["image_dim"])

    def idx(name: str) -> np.ndarray:
        return np.flatnonzero(group == name)

    heads = {"rationale head (the prediction)": logits["logits"], "full-input head (ablation)": logits["full"]}
    for split in ("crisismmd:dev", "crisismmd:test", "rationales:eval", "crisislex:all"):
        i = idx(split)
        result[split] = {head: _scores(label[i], values[i]) for head, values in heads.items()}

    position = {int(r): k for k, r in enumerate(logits["photo_rows"])}
    for split in ("crisismmd:dev", "crisismmd:test"):
        i = np.array([r for r in idx(split) if photo[r] >= 0])
        j = np.array([position[int(r)] for r in i])
        result[f"{split} with a photo"] = {
            "text + photo": _scores(label[i], logits["logits"][i]),
            "text only": _scores(label[i], logits["text_only_logits"][j]),
            "photo only": _scores(label[i], logits["photo_only_logits"][j]),
        }
    i = np.array([r for r in idx("images:kerala") if photo[r] >= 0])
    j = np.array([position[int(r)] for r in i])
    present = [LABEL_NAMES[c] for c in sorted(set(label[i].tolist()))]
    result["kerala photos (unseen event, photo only)"] = {
        "classes": present,
        "rationale head": _scores(label[i], logits["photo_only_logits"][j], present),
        "photo head": _scores(label[i], logits["photo_only_photo"][j], present),
        "most common class": float(np.bincount(label[i]).max() / len(i)),
    }
    i = idx("rationales:eval")
    has = rows["has_rationale"][i]
    human = rows["rationale"]  # read once: each access to an npz member decompresses it again
    gold = [human[r] for r in i[has]]
    pred = [tokens[r] >= 0.5 for r in i[has]]
    result["hagupit token rationale"] = token_f1(gold, pred).to_dict()
    return result


def _row(name: str, s: dict[str, Any]) -> list[str]:
    return [name, str(s["n"]), f"{s['macro_f1']:.4f}", f"{s['accuracy']:.4f}",
            f"{s['per_class_f1']['affected_individuals']:.3f}"]


def to_markdown(result: dict[str, Any], baselines: dict[str, Any], tfidf: dict[str, Any] | None,
                command: str) -> str:
    run = result["run"]
    lines = ["# Teacher v2 (all-mpnet-base-v2 + EfficientNet-Lite patches)", "",
             f"Command: `{command}`", "",
             f"Trained on `{run['device']}` (torch {run['torch']}), best epoch {run['best_epoch']} of "
             f"{len(run['history'])} by CrisisMMD dev Macro-F1 of the rationale head.", "",
             "## CrisisMMD test, against the baselines (same split, per tweet-image pair)", ""]
    table = []
    if tfidf:
        table.append(["TF-IDF + logistic regression", str(tfidf["n"]), f"{tfidf['macro_f1']:.4f}",
                      f"{tfidf['accuracy']:.4f}", f"{tfidf['affected']:.3f}"])
    for name in ("minilm", "mpnet"):
        if name in baselines:
            b = baselines[name]
            table.append([f"{name} linear probe (frozen, C={b['C']})", "955", f"{b['test_macro_f1']:.4f}",
                          f"{b['test_acc']:.4f}", f"{b['per_class']['affected_individuals']:.3f}"])
    for head, s in result["crisismmd:test"].items():
        table.append(_row(f"teacher v2, {head}", s))
    lines += md_table(["model", "n", "Macro-F1", "accuracy", "affected_individuals F1"], table)
    lines += ["", "## Other sets", ""]
    table = []
    for split in ("crisismmd:dev", "rationales:eval", "crisislex:all"):
        for head, s in result[split].items():
            table.append(_row(f"{split}, {head}", s))
    lines += md_table(["set, head", "n", "Macro-F1", "accuracy", "affected_individuals F1"], table)
    lines += ["", "## Photos", "", "CrisisMMD rows with a photo, read three ways (rationale head):", ""]
    table = []
    for split in ("crisismmd:dev with a photo", "crisismmd:test with a photo"):
        for way, s in result[split].items():
            table.append(_row(f"{split}: {way}", s))
    lines += md_table(["rows, input", "n", "Macro-F1", "accuracy", "affected_individuals F1"], table)
    k = result["kerala photos (unseen event, photo only)"]
    lines += ["", f"kerala_flood_2018 MEDIC photos (never trained on or selected with), photo only, "
                  f"Macro-F1 over the {len(k['classes'])} classes present; always answering the most common "
                  f"class is right on {k['most common class']:.3f}:", ""]
    lines += md_table(["head", "n", "Macro-F1", "accuracy", "affected_individuals F1"],
                      [_row(h, k[h]) for h in ("rationale head", "photo head")])
    t = result["hagupit token rationale"]
    lines += ["", f"Token rationale vs the human rationales of Typhoon Hagupit (score >= 0.5): token F1 "
                  f"{t['macro_f1']:.4f} (micro {t['micro_f1']:.4f}, {t['n_instances']} posts).", ""]
    towers = baselines.get("towers")
    if towers:
        lines += ["## Image tower", "",
                  f"Logistic-regression probe on each photo's mean patch feature: {towers['train_photos']} training "
                  f"photos, scored on {towers['dev_photos']} dev photos (C chosen there), then once on the "
                  f"{towers.get('kerala_photos', 0)} kerala_flood_2018 photos (never trained on or selected with).", ""]

        def kerala(t: dict, key: str) -> str:
            return f"{t[key]:.4f}" if key in t else "–"

        lines += md_table(["tower", "dev Macro-F1", "dev accuracy", "kerala accuracy", "kerala Macro-F1"],
                          [[n, f"{towers[n]['dev_macro_f1']:.4f}", f"{towers[n]['dev_accuracy']:.4f}",
                            kerala(towers[n], "kerala_accuracy"), kerala(towers[n], "kerala_macro_f1")]
                           for n in ("lite0", "lite1", "lite2") if n in towers])
        lines += ["", f"This run used `{run['tower']}`." if "tower" in run else ""]
    lines += ["## Training", ""]
    lines += md_table(["epoch", "dev Macro-F1 (rationale)", "dev Macro-F1 (full)", "dev accuracy", "loss", "s"],
                      [[h["epoch"], f"{h['dev_macro_f1']:.4f}", f"{h['dev_macro_f1_full']:.4f}",
                        f"{h['dev_accuracy']:.4f}", f"{h['loss']:.4f}", f"{h['seconds']:.0f}"] for h in run["history"]])
    return "\n".join(lines) + "\n"


def write_report(payload: Path, run: Path, baselines_path: Path, out: Path, command: str,
                 tfidf_report: Path | None = None) -> dict[str, Any]:
    result = evaluate_run(payload, run)
    baselines = json.loads(baselines_path.read_text()) if baselines_path.is_file() else {}
    tfidf = None
    if tfidf_report and tfidf_report.is_file():
        test = json.loads(tfidf_report.read_text())["test"]
        tfidf = {"n": test["n"], "macro_f1": test["macro_f1"], "accuracy": test["accuracy"],
                 "affected": test["per_class"]["affected_individuals"]["f1"]}
    result["baselines"] = baselines
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "teacher_v2.json", json.dumps(result, indent=1, default=float))
    atomic_write(out / "teacher_v2.md", to_markdown(result, baselines, tfidf, command))
    return result
