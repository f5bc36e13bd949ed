"""The TF-IDF + logistic-regression baseline: selection on dev, reports, the CLI command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crisislens.distill.baseline import BaselineConfig, preprocess, run_baseline, select_and_fit, to_markdown
from crisislens.distill.data import Example
from crisislens.runtime.reports import provenance

from conftest import FIXTURES, REPO

pytest.importorskip("sklearn")

TINY_GRID = {"C": (1.0, 8.0), "class_weight": (None,), "min_df": (1,)}


def _examples(pairs: list[tuple[str, str]], split: str) -> list[Example]:
    return [Example(id=f"{split}{i}", text=t, image=None, label=y, source="synthetic", split=split) for i, (t, y) in enumerate(pairs)]


def _synthetic() -> tuple[list[Example], list[Example]]:
    words = {
        "affected_individuals": "injured dead missing people",
        "infrastructure_and_utility_damage": "bridge collapsed road destroyed",
        "rescue_volunteering_or_donation_effort": "donate volunteers rescue relief",
        "other_relevant_information": "forecast update warning alert",
        "not_humanitarian": "selfie concert football pizza",
    }
    train = [(f"{w} {k}", y) for y, ws in words.items() for k, w in enumerate(ws.split())]
    dev = [(ws, y) for y, ws in words.items()]
    return _examples(train, "train"), _examples(dev, "dev")


def test_preprocess_replaces_urls_and_lowercases():
    assert preprocess("Bridge DOWN https://t.co/x1 now") == "bridge down  URL  now"
    assert preprocess(None) == ""


def test_select_and_fit_tries_every_grid_point_and_learns_separable_data():
    train, dev = _synthetic()
    model, config, rows = select_and_fit(train, dev, TINY_GRID)
    assert len(rows) == 2 and {r["C"] for r in rows} == {1.0, 8.0}
    assert isinstance(config, BaselineConfig)
    best = max(r["dev_macro_f1"] for r in rows)
    chosen = next(r for r in rows if r["C"] == config.C)
    assert chosen["dev_macro_f1"] == best
    assert list(model.predict(["the bridge collapsed"])) == ["infrastructure_and_utility_damage"]
    assert best == 1.0


def test_run_baseline_on_fixture_root_reports_all_splits_and_no_text():
    result = run_baseline(FIXTURES / "data", TINY_GRID)
    assert set(result["data"]) == {"train", "dev", "test"}
    assert result["test"]["n"] == result["data"]["test"]
    assert set(result["test_by_modality"]) == {"with_image", "text_only"}
    by = result["test_by_modality"]
    assert by["with_image"]["n"] + by["text_only"]["n"] == result["test"]["n"]
    md = to_markdown(result, provenance())
    assert "Macro-F1" in md and "| **test** |" in md
    # The report must never carry tweet text (data licence): check a fixture sentence.
    reports = result.pop("_reports")
    assert reports["test"].n == result["test"]["n"]
    assert "Ratnapura" not in json.dumps(result)


def test_eval_baseline_cli_writes_both_reports(tmp_path: Path):
    out = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "crisislens.runtime.cli", "eval", "baseline", "--data-root", str(FIXTURES / "data"),
         "--out", str(out), "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads((out / "baseline.json").read_text())
    assert payload["provenance"]["command"]
    assert 0.0 <= payload["test"]["macro_f1"] <= 1.0
    assert (out / "baseline.md").read_text().startswith("# Baseline")
    assert json.loads(proc.stdout)["macro_f1"] == payload["test"]["macro_f1"]


def test_eval_baseline_cli_names_a_missing_data_root(tmp_path: Path):
    missing = tmp_path / "nope"
    proc = subprocess.run(
        [sys.executable, "-m", "crisislens.runtime.cli", "eval", "baseline", "--data-root", str(missing), "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode != 0
    assert str(missing) in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.data
@pytest.mark.slow
def test_real_baseline_single_grid_point_beats_chance(data_root: Path):
    result = run_baseline(data_root, {"C": (4.0,), "class_weight": (None,), "min_df": (1,)})
    assert result["data"] == {"train": 6126, "dev": 998, "test": 955}
    assert result["test"]["macro_f1"] > 0.5
    assert result["test"]["accuracy"] > 0.6
