"""The teacher report of the shipped student: the frozen-encoder probe teacher against the baselines.

The student v2 is distilled from a probe-teacher run (`crisislens distill teacher-v2
probe-teacher`): logistic regression on frozen all-mpnet-base-v2 embeddings, with HumAID's own
labels at a small weight and, for posts with a photo, an EfficientNet-Lite photo probe read
beside the text. This writes `<out>/teacher.{json,md}` from three files other `crisislens`
commands wrote, so every number comes from a run:

- the run's `summary.json` (probe-teacher: dev, test, a CrisisLexT26 sample, the photo side);
- `baselines.json` (`crisislens distill teacher-v2 baselines`: the MiniLM-L6 and MPNet linear
  probes on the same split, the image-tower comparison);
- the TF-IDF baseline report (`crisislens eval baseline`, `reports/baseline.json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crisislens.runtime.markdown import md_table
from crisislens.runtime.reports import provenance
from crisislens.runtime.reports import write_report as write_files

AFFECTED = "affected_individuals"
CRISISLEX_PREFIX = "crisislex_t26 sample"
ENCODERS = {"mpnet": "all-mpnet-base-v2", "minilm": "all-MiniLM-L6-v2"}


def _read(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what} (see `crisislens distill teacher-v2 probe-report --help`)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _split_row(name: str, s: dict[str, Any]) -> list[str]:
    return [name, str(s["n"]), f"{s['macro_f1']:.4f}", f"{s['accuracy']:.4f}",
            f"{s['per_class'][AFFECTED]['f1']:.3f}"]


def _crisislex_key(summary: dict[str, Any]) -> str | None:
    return next((k for k in summary if k.startswith(CRISISLEX_PREFIX)), None)


def collect(run: Path, baselines_path: Path, tfidf_path: Path) -> dict[str, Any]:
    """The report's numbers, read from the three files (see the module docstring)."""
    summary = _read(run / "summary.json", "probe-teacher summary")
    for key in ("crisismmd:dev", "crisismmd:test"):
        if key not in summary:
            raise ValueError(f"{run / 'summary.json'}: no {key!r} scores (not a probe-teacher run?)")
    baselines = _read(baselines_path, "baselines (crisislens distill teacher-v2 baselines)")
    tfidf_report = _read(tfidf_path, "TF-IDF baseline report (crisislens eval baseline)")
    if "test" not in tfidf_report:
        raise ValueError(f"{tfidf_path}: no 'test' scores (not the report of `crisislens eval baseline`?)")
    tfidf = tfidf_report["test"]
    return {"run": str(run), "summary": summary, "baselines": baselines,
            "tfidf": {"n": tfidf["n"], "macro_f1": tfidf["macro_f1"], "accuracy": tfidf["accuracy"],
                      "affected_f1": tfidf["per_class"][AFFECTED]["f1"]}}


def to_markdown(result: dict[str, Any], prov: dict[str, Any]) -> str:
    s, b, t = result["summary"], result["baselines"], result["tfidf"]
    photos = s.get("photos") or {}
    dirty = " (dirty)" if prov.get("git_dirty") else ""
    lines = ["# Teacher: the frozen-encoder probe teacher (CrisisMMD humanitarian, 5 classes)", "",
             f"Command: `{prov['command']}` · commit {prov['git_commit']}{dirty} · {prov['created']}.", "",
             f"The teacher the shipped student is distilled from: logistic regression on frozen {ENCODERS.get(s['encoder'], s['encoder'])} "
             f"embeddings (C={s['C']}, picked on CrisisMMD dev), CrisisMMD training rows scored out of fold "
             f"({s['folds']} folds), {s.get('humaid_sample') or 'all'} HumAID training posts at weight "
             f"{s['humaid_weight']} with their own labels"
             + (f", and for posts with a photo an EfficientNet-Lite photo probe (`{photos['features']}`, "
                f"C={photos['C']}) read beside the text at weight {photos['weight']} (picked on dev posts with a photo)"
                if photos else "")
             + ". It has no rationale head: the student learns its word rationales from the human rationales "
               "and its patch rationales from the photo probe's per-cell class evidence.", "",
             "## CrisisMMD test, against the baselines (same split, per tweet-image pair)", ""]
    table = [["TF-IDF + logistic regression", str(t["n"]), f"{t['macro_f1']:.4f}", f"{t['accuracy']:.4f}",
              f"{t['affected_f1']:.3f}"]]
    for name in ("minilm", "mpnet"):
        if name in b:
            p = b[name]
            table.append([f"{name} linear probe (frozen, C={p['C']})", str(t["n"]), f"{p['test_macro_f1']:.4f}",
                          f"{p['test_acc']:.4f}", f"{p['per_class'][AFFECTED]:.3f}"])
    table.append(_split_row("probe teacher (text, and photo where there is one)", s["crisismmd:test"]))
    lines += md_table(["model", "n", "Macro-F1", "accuracy", "affected_individuals F1"], table)
    lines += ["", "## Other sets", ""]
    table = [_split_row("crisismmd:dev", s["crisismmd:dev"])]
    lex = _crisislex_key(s)
    if lex:
        table.append(_split_row(f"{lex}, unseen crises", s[lex]))
    lines += md_table(["set", "n", "Macro-F1", "accuracy", "affected_individuals F1"], table)
    if photos:
        lines += ["", "## Photos", "", "CrisisMMD posts with a photo, text alone and text with the photo probe:", ""]
        table = []
        for split in ("crisismmd:dev posts with a photo", "crisismmd:test posts with a photo"):
            if split in photos:
                for way in ("text", "text + photo"):
                    r = photos[split][way]
                    table.append([f"{split}: {way}", str(photos[split]["n"]), f"{r['macro_f1']:.4f}",
                                  f"{r['accuracy']:.4f}", f"{r['log_loss']:.4f}"])
        lines += md_table(["posts, input", "n", "Macro-F1", "accuracy", "log loss"], table)
        targets = photos.get("patch targets")
        if targets:
            lines += ["", f"Patch targets ({targets['what']}): {targets['rows']} training posts with a photo, "
                          f"{targets.get('photos alone', 0)} training photos read alone; mean top-5 IoU between "
                          f"unrelated photos {targets['unrelated photos top-5 IoU']:.3f}."]
    towers = b.get("towers")
    if towers:
        lines += ["", "## Image tower", "",
                  f"Logistic-regression probe on each photo's mean patch feature: {towers['train_photos']} training "
                  f"photos, scored on {towers['dev_photos']} dev photos (C chosen there)"
                  + (f", then once on the {towers['kerala_photos']} kerala_flood_2018 photos (never trained on or "
                     "selected with)" if towers.get("kerala_photos") else "") + ".", ""]
        rows = []
        for n in ("lite0", "lite1", "lite2"):
            if n in towers:
                x = towers[n]
                rows.append([n, f"{x['dev_macro_f1']:.4f}", f"{x['dev_accuracy']:.4f}",
                             f"{x['kerala_accuracy']:.4f}" if "kerala_accuracy" in x else "–",
                             f"{x['kerala_macro_f1']:.4f}" if "kerala_macro_f1" in x else "–"])
        lines += md_table(["tower", "dev Macro-F1", "dev accuracy", "kerala accuracy", "kerala Macro-F1"], rows)
    return "\n".join(lines) + "\n"


def write_report(run: Path, baselines_path: Path, tfidf_path: Path, out: Path,
                 command: str | None = None) -> dict[str, Any]:
    """`<out>/teacher.{json,md}`; the provenance records `command` (default: this process's
    `crisislens ...` command line)."""
    result = collect(run, baselines_path, tfidf_path)
    prov = provenance(command)
    write_files("teacher", {**result, "provenance": prov}, to_markdown(result, prov), out)
    return result
