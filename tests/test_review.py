"""Review state in the triage store (runtime, no TUI): filters, priority, feedback history,
exports of the current view and of corrected labels."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from crisislens.runtime.readers import read_posts
from crisislens.runtime.labels import get_label
from crisislens.runtime.store.review import ReviewFilter, ReviewItem, counts, next_in_cycle, priority, select
from crisislens.runtime.store import TriageStore, export_feedback, export_items
from tests.tui_fixtures import POSTS, build_store


@pytest.fixture
def store(tmp_path):
    with TriageStore(build_store(tmp_path)) as s:
        yield s


def test_priority_is_expected_severity_and_orders_the_list(store):
    items = store.items()
    assert [it.seq for it in items] == sorted(it.seq for it in items)
    ordered = select(items)
    assert [it.post_id for it in ordered][:3] == ["p01", "p02", "p08"]
    p01 = ordered[0]
    expected = sum(get_label(n).severity * p for n, p in p01.prediction.probabilities.items())
    assert p01.priority == pytest.approx(expected) == pytest.approx(priority(p01.prediction.probabilities))
    assert all(a.priority >= b.priority for a, b in zip(ordered, ordered[1:]))


def test_an_unsure_urgent_post_outranks_a_sure_donation():
    """Issue 25, item 9: severity x top confidence put "trapped on the roof" (Affected 52%) below a
    sure food-kit donation; the expected severity puts it first."""
    from crisislens.runtime.schema import Prediction

    def item(pid: str, probs: dict[str, float]) -> ReviewItem:
        label = max(probs, key=probs.__getitem__)
        return ReviewItem(pid, Prediction(post_id=pid, label=label, probabilities=probs))

    roof = item("roof", {"affected_individuals": 0.52, "rescue_volunteering_or_donation_effort": 0.30,
                         "infrastructure_and_utility_damage": 0.10, "other_relevant_information": 0.05,
                         "not_humanitarian": 0.03})
    kits = item("kits", {"rescue_volunteering_or_donation_effort": 0.95, "other_relevant_information": 0.03,
                         "not_humanitarian": 0.02, "affected_individuals": 0.0,
                         "infrastructure_and_utility_damage": 0.0})
    assert [it.post_id for it in select([kits, roof])] == ["roof", "kits"]


def test_filters_combine(store):
    items = store.items()
    assert {it.post_id for it in select(items, ReviewFilter(classes=frozenset({"affected_individuals"})))} == {"p01", "p08"}
    assert {it.post_id for it in select(items, ReviewFilter(min_confidence=0.8))} == {"p01", "p02", "p05"}
    with_photo = select(items, ReviewFilter(has_image=True))
    assert {it.post_id for it in with_photo} == {p[0] for p in POSTS if p[4]}
    assert {it.post_id for it in select(items, ReviewFilter(has_image=True, min_confidence=0.9))} == {"p01", "p05"}
    assert {it.post_id for it in select(items, ReviewFilter(search="WATER"))} == {"p01", "p03"}
    assert select(items, ReviewFilter(search="no such words")) == []
    assert [it.post_id for it in select(items, ReviewFilter(sort="latest"))][0] == "p08"
    assert ReviewFilter(min_confidence=0.7, search="x").describe() == ["confidence ≥ 70%", "text contains 'x'"]
    with pytest.raises(ValueError, match="unknown class"):
        ReviewFilter(classes=frozenset({"bogus"}))
    assert next_in_cycle([1, 2, 3], 3) == 1 and next_in_cycle([1, 2], 9) == 1


def test_review_actions_persist_with_history(store, tmp_path):
    store.set_reviewed("p05")
    store.set_flagged("p07")
    fixed = store.correct_label("p04", "affected_individuals", note="people stranded")
    assert fixed.reviewed and fixed.corrected and fixed.final_label == "affected_individuals"
    assert fixed.priority == 1.0  # a known label: its severity at confidence 1
    store.correct_label("p04", "rescue_volunteering_or_donation_effort")
    store.close()
    with TriageStore(tmp_path / "demo.sqlite") as again:  # what the next session sees
        p04 = again.item("p04")
        assert p04.review_label == "rescue_volunteering_or_donation_effort" and p04.label == "other_relevant_information"
        assert again.item("p05").reviewed and again.item("p07").flagged and not again.item("p01").reviewed
        history = again.feedback("p04")
        assert [(f.action, f.label, f.model_label) for f in history] == [
            ("label", "affected_individuals", "other_relevant_information"),
            ("label", "rescue_volunteering_or_donation_effort", "other_relevant_information")]
        assert history[0].note == "people stranded" and history[0].at.endswith("Z")
        assert [f.action for f in again.feedback()] == ["reviewed", "flag", "label", "label"]
        assert counts(again.items())["rescue_volunteering_or_donation_effort"] == 2
        assert select(again.items(), ReviewFilter(reviewed=False, flagged=True))[0].post_id == "p07"
        with pytest.raises(KeyError, match="no prediction for post 'nope'"):
            again.set_reviewed("nope")
        with pytest.raises(KeyError, match="unknown label"):
            again.correct_label("p01", "bogus")
        assert again.feedback("nope") == []


def test_store_from_before_the_review_columns_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    build_store(tmp_path, "old.sqlite")
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE predictions DROP COLUMN flagged")
    db.execute("DROP TABLE feedback")
    db.commit()
    db.close()
    with TriageStore(path) as s:
        assert len(s.items()) == len(POSTS)
        assert s.set_flagged("p01").flagged


def test_export_items_writes_the_view_in_order(store, tmp_path):
    view = select(store.items(), ReviewFilter(has_image=True, sort="confidence"))
    assert export_items(view, tmp_path / "v.csv") == len(view)
    with (tmp_path / "v.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["post_id"] for r in rows] == [it.post_id for it in view]
    assert rows[0]["has_image"] == "True" and "flagged" in rows[0]
    assert export_items(view, tmp_path / "v.jsonl") == len(view)
    records = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text(encoding="utf-8").splitlines()]
    assert records[0]["prediction"]["label"] == view[0].label
    with pytest.raises(ValueError, match="unknown export format 'xml'"):
        export_items(view, tmp_path / "v.xml")
    assert not list(tmp_path.glob("*.part"))


def test_export_feedback_is_readable_training_data(store, tmp_path):
    store.correct_label("p01", "affected_individuals")  # confirmed
    store.correct_label("p05", "other_relevant_information")
    store.correct_label("p03", "affected_individuals")
    out = tmp_path / "out" / "corrections.jsonl"
    out.parent.mkdir()
    assert export_feedback(store, out) == 3
    read = read_posts([out])
    assert not read.errors
    by_id = {p.id: p for p in read.posts}
    assert by_id["p05"].label == "other_relevant_information" and by_id["p05"].image.is_file()
    assert by_id["p05"].image.parent.name == "corrections-images"
    assert by_id["p03"].image is None and by_id["p01"].metadata["model_label"] == "affected_individuals"


def test_export_feedback_command(store, tmp_path, capsys):
    from crisislens.runtime.cli import main

    store.correct_label("p02", "affected_individuals")
    out = tmp_path / "fb.jsonl"
    assert main(["export-feedback", str(store.path), "--out", str(out)]) == 0
    assert "wrote 1 corrected label(s)" in capsys.readouterr().out
    assert json.loads(out.read_text(encoding="utf-8"))["label"] == "affected_individuals"
    assert main(["export-feedback", str(tmp_path / "none.sqlite"), "--out", str(out)]) == 2
    assert "none.sqlite: no such triage store" in capsys.readouterr().err


def test_top_words_are_the_highlighted_words_trimmed_of_punctuation_each_once():
    from crisislens.runtime.store.review import top_words
    from crisislens.runtime.schema import Prediction, TokenScore

    scores = [("Bridge", 0.7), ("collapsed", 0.95), ("on", 0.1), ("route", 0.4), ("9,", 0.6), ("trapped,", 0.9),
              ("“Trapped”", 0.8), ("!!", 0.55), ("help…", 0.65), ("now", 0.52)]
    tokens, pos = [], 0
    for word, score in scores:
        tokens.append(TokenScore(word, pos, pos + len(word), score))
        pos += len(word) + 1
    pred = Prediction(post_id="1", label="affected_individuals", probabilities={"affected_individuals": 1.0},
                      token_rationale=tokens)
    assert top_words(pred) == ["collapsed", "trapped", "Bridge", "help", "9"]  # "Trapped" is "trapped" again
    assert top_words(pred, k=10) == ["collapsed", "trapped", "Bridge", "help", "9", "!!", "now"]
    assert top_words(pred, threshold=0.9) == ["collapsed", "trapped"]
    assert top_words(Prediction(post_id="2", label="not_humanitarian", probabilities={"not_humanitarian": 1.0})) == []
