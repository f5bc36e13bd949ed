"""`crisislens eval score`: the one scoring path over a predictions file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crisislens.evaluation.metrics import classification_report
from crisislens.evaluation.score import PredictionsError, ScoredPost, read_predictions, score, write_predictions
from crisislens.runtime.cli import main
from crisislens.runtime.labels import LABEL_NAMES


def _records() -> list[ScoredPost]:
    gold = ["affected_individuals", "not_humanitarian", "not_humanitarian", "other_relevant_information"]
    pred = ["not_humanitarian", "not_humanitarian", "not_humanitarian", "other_relevant_information"]
    out = []
    for i, (g, p) in enumerate(zip(gold, pred)):
        probs = {name: (0.6 if name == p else 0.1) for name in LABEL_NAMES}
        out.append(ScoredPost(f"p{i}", g, p, probs, has_evidence=i != 3))
    return out


def test_score_is_the_classification_report_and_calibration(tmp_path: Path):
    path = write_predictions(tmp_path / "pred.jsonl", _records())
    back = read_predictions(path)
    assert [r.post_id for r in back] == ["p0", "p1", "p2", "p3"]
    scores = score(back)
    report = classification_report([r.gold_label for r in back], [r.label for r in back], LABEL_NAMES)
    assert scores.macro_f1 == report.macro_f1 and scores.accuracy == report.accuracy
    assert scores.without_evidence == 1
    assert scores.ece is not None and scores.nll is not None


def test_a_crisismmd_gold_name_is_mapped_and_probabilities_are_optional(tmp_path: Path):
    path = tmp_path / "pred.jsonl"
    path.write_text(json.dumps({"post_id": "a", "gold_label": "injured_or_dead_people",
                                "label": "affected_individuals"}) + "\n")
    scores = score(read_predictions(path))
    assert scores.accuracy == 1.0 and scores.ece is None


@pytest.mark.parametrize("line, message", [
    ("not json", "not JSON"),
    ('{"post_id": "a", "label": "not_humanitarian"}', "needs gold_label"),
    ('{"post_id": "a", "gold_label": "not_humanitarian", "label": "cats"}', "label 'cats'"),
])
def test_a_bad_record_names_its_file_and_line(tmp_path: Path, line: str, message: str):
    path = tmp_path / "pred.jsonl"
    path.write_text('{"post_id": "x", "gold_label": "not_humanitarian", "label": "not_humanitarian"}\n' + line + "\n")
    with pytest.raises(PredictionsError, match=f"pred.jsonl:2: .*{message}"):
        read_predictions(path)


def test_the_command_prints_json_and_refuses_a_bad_file(tmp_path: Path, capsys):
    path = write_predictions(tmp_path / "pred.jsonl", _records())
    assert main(["eval", "score", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 4 and out["macro_f1"] == score(_records()).macro_f1
    (tmp_path / "bad.jsonl").write_text("[1]\n")
    assert main(["eval", "score", str(tmp_path / "bad.jsonl")]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
