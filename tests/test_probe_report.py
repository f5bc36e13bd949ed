"""The teacher report of the shipped student (`crisislens distill teacher-v2 probe-report`): every
number read from the files other commands wrote; a missing or wrong file is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crisislens.runtime.labels import LABEL_NAMES


def _scores(n: int, f1: float, acc: float, affected: float) -> dict:
    per_class = {c: {"f1": affected if c == "affected_individuals" else f1} for c in LABEL_NAMES}
    return {"n": n, "macro_f1": f1, "accuracy": acc, "per_class": per_class}


def _files(tmp_path: Path, photos: bool = True) -> tuple[Path, Path, Path]:
    run = tmp_path / "run"
    run.mkdir()
    summary = {"encoder": "mpnet", "C": 4.0, "folds": 5, "humaid_weight": 0.1, "humaid_sample": 8000,
               "crisismmd:dev": _scores(998, 0.6829, 0.8166, 0.3),
               "crisismmd:test": _scores(955, 0.7443, 0.8293, 0.5),
               "crisislex_t26 sample of 2000 (zero-shot)": _scores(2000, 0.4413, 0.4315, 0.57)}
    if photos:
        way = {"log_loss": 0.33, "accuracy": 0.9, "macro_f1": 0.61}
        summary["photos"] = {"features": "artifacts/v2/photos-lite0.npz", "C": 0.3, "weight": 0.15,
                             "crisismmd:test posts with a photo": {"n": 158, "text": way,
                                                                   "text + photo": {**way, "macro_f1": 0.81}},
                             "patch targets": {"rows": 924, "what": "class maps", "photos alone": 1198,
                                               "unrelated photos top-5 IoU": 0.077}}
    (run / "summary.json").write_text(json.dumps(summary))
    baselines = tmp_path / "baselines.json"
    probe = {"C": 2.0, "test_macro_f1": 0.7340, "test_acc": 0.8366, "per_class": {"affected_individuals": 0.429}}
    baselines.write_text(json.dumps({"mpnet": probe, "minilm": {**probe, "test_macro_f1": 0.7360},
                                     "towers": {"train_photos": 1582, "dev_photos": 323,
                                                "lite1": {"dev_macro_f1": 0.7166, "dev_accuracy": 0.839}}}))
    tfidf = tmp_path / "baseline.json"
    tfidf.write_text(json.dumps({"test": {"n": 955, "macro_f1": 0.6086, "accuracy": 0.7581,
                                          "per_class": {"affected_individuals": {"f1": 0.2}}}}))
    return run, baselines, tfidf


def test_the_report_puts_the_probe_teacher_beside_the_baselines(tmp_path):
    from crisislens.distill.probe_report import write_report

    run, baselines, tfidf = _files(tmp_path)
    write_report(run, baselines, tfidf, tmp_path / "out", "crisislens distill teacher-v2 probe-report --run run")
    md = (tmp_path / "out" / "teacher.md").read_text()
    assert "| TF-IDF + logistic regression | 955 | 0.6086 | 0.7581 | 0.200 |" in md
    assert "| mpnet linear probe (frozen, C=2.0) | 955 | 0.7340 | 0.8366 | 0.429 |" in md
    assert "| probe teacher (text, and photo where there is one) | 955 | 0.7443 | 0.8293 | 0.500 |" in md
    assert "crisislex_t26 sample of 2000 (zero-shot), unseen crises | 2000 | 0.4413" in md
    assert "crisismmd:test posts with a photo: text + photo | 158 | 0.8100" in md
    assert "| lite1 | 0.7166 | 0.8390 | – | – |" in md
    data = json.loads((tmp_path / "out" / "teacher.json").read_text())
    assert data["summary"]["crisismmd:test"]["macro_f1"] == 0.7443
    assert data["provenance"]["command"].startswith("crisislens distill teacher-v2 probe-report")
    assert "Command: `crisislens distill teacher-v2 probe-report --run run` · commit" in md
    assert "frozen all-mpnet-base-v2 embeddings" in md


def test_a_run_without_a_photo_side_gets_no_photo_section(tmp_path):
    from crisislens.distill.probe_report import collect, to_markdown

    md = to_markdown(collect(*_files(tmp_path, photos=False)), {"command": "c", "git_commit": "x", "created": "t"})
    assert "## Photos" not in md and "## Image tower" in md


def test_missing_or_wrong_files_are_named(tmp_path):
    from crisislens.distill.probe_report import collect

    run, baselines, tfidf = _files(tmp_path)
    with pytest.raises(FileNotFoundError, match="baselines"):
        collect(run, tmp_path / "nope.json", tfidf)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"dev": {}}))
    with pytest.raises(ValueError, match="other.json: no 'test' scores"):
        collect(run, baselines, other)
    (run / "summary.json").write_text("{not json")
    with pytest.raises(ValueError, match="summary.json: not JSON"):
        collect(run, baselines, tfidf)
    (run / "summary.json").write_text(json.dumps({"encoder": "mpnet"}))
    with pytest.raises(ValueError, match="crisismmd:dev"):
        collect(run, baselines, tfidf)


def test_the_cli_reports_a_missing_run_as_an_error(tmp_path, capsys):
    from crisislens.runtime.cli import main

    code = main(["distill", "teacher-v2", "probe-report", "--run", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert code == 2 and "summary.json" in capsys.readouterr().err
