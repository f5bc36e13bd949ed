from __future__ import annotations

import json
from pathlib import Path

import pytest

from crisislens.runtime.labels import (
    CRISISMMD_MERGE,
    LABEL_NAMES,
    LABELS,
    get_label,
    label_index,
    parse_classes,
    to_humanitarian5,
)
from crisislens.runtime.schema import Post, Prediction, TokenScore


def test_label_set_is_the_five_crisismmd_classes():
    assert set(LABEL_NAMES) == {
        "affected_individuals",
        "infrastructure_and_utility_damage",
        "rescue_volunteering_or_donation_effort",
        "other_relevant_information",
        "not_humanitarian",
    }
    assert sorted(label.priority for label in LABELS) == [1, 2, 3, 4, 5]
    assert all(label.colour.startswith("#") and len(label.colour) == 7 for label in LABELS)
    assert all(label.description and label.title for label in LABELS)
    # Severity follows priority: the first thing to look at weighs most.
    by_priority = sorted(LABELS, key=lambda label: label.priority)
    assert [label.severity for label in by_priority] == sorted((label.severity for label in LABELS), reverse=True)


def test_crisismmd_eight_to_five_merge():
    assert to_humanitarian5("injured_or_dead_people") == "affected_individuals"
    assert to_humanitarian5("missing_or_found_people") == "affected_individuals"
    assert to_humanitarian5("vehicle_damage") == "infrastructure_and_utility_damage"
    assert to_humanitarian5(" Not_Humanitarian ") == "not_humanitarian"
    assert set(CRISISMMD_MERGE.values()) == set(LABEL_NAMES)
    with pytest.raises(ValueError, match="unknown CrisisMMD humanitarian label 'flood'"):
        to_humanitarian5("flood")


def test_label_lookup_errors_name_the_choices():
    assert label_index(LABEL_NAMES[2]) == 2
    assert get_label("not_humanitarian").priority == 5
    with pytest.raises(KeyError, match="expected one of"):
        get_label("nope")


def test_parse_classes():
    assert parse_classes(None) == LABEL_NAMES
    assert parse_classes("not_humanitarian, affected_individuals") == ("affected_individuals", "not_humanitarian")
    with pytest.raises(ValueError, match="unknown class"):
        parse_classes("affected_individuals,flood")
    with pytest.raises(ValueError, match="at least two"):
        parse_classes("affected_individuals")


def test_post_json_round_trip(tmp_path: Path):
    post = Post(
        id="42",
        text="Bridge down near the river [bold]",
        image=tmp_path / "42.jpg",
        source="posts.jsonl",
        created_at="2017-06-01T10:00:00Z",
        label="infrastructure_and_utility_damage",
        metadata={"event": "flood", "retweets": 3},
        warnings=("line 3: invalid UTF-8 replaced",),
    )
    again = Post.from_json(post.to_json())
    assert again == post
    assert again.has_text and again.has_image
    assert json.loads(post.to_json())["image"] == str(tmp_path / "42.jpg")
    text_only = Post(id="7", text="hello")
    assert Post.from_dict(text_only.to_dict()) == text_only
    assert not text_only.has_image


def test_post_needs_an_id():
    with pytest.raises(ValueError, match="non-empty string id"):
        Post(id="  ", text="x")


def test_prediction_json_round_trip():
    probs = dict.fromkeys(LABEL_NAMES, 0.05)
    probs["affected_individuals"] = 0.8
    pred = Prediction(
        post_id="42",
        label="affected_individuals",
        probabilities=probs,
        token_rationale=(TokenScore("trapped", 10, 17, 0.93), TokenScore("people", 18, 24, 0.71)),
        patch_rationale=((0.0, 0.5), (0.25, 1.0)),
        timings={"preprocess": 1.5, "model": 4.0},
        model_id="student-int8@abc123",
        input_warnings=("image: missing",),
    )
    again = Prediction.from_json(pred.to_json())
    assert again == pred
    assert again.confidence == pytest.approx(0.8)
    no_image = Prediction(post_id="1", label="not_humanitarian", probabilities={"not_humanitarian": 1.0})
    assert Prediction.from_dict(no_image.to_dict()) == no_image
    assert pred.has_evidence and not no_image.has_evidence  # no word, no photo: the label is the prior
    assert Prediction(post_id="2", label="not_humanitarian", probabilities={"not_humanitarian": 1.0},
                      patch_rationale=((0.1,),)).has_evidence


def test_prediction_rejects_bad_values():
    with pytest.raises(ValueError, match="not one of"):
        Prediction(post_id="1", label="flood", probabilities={})
    with pytest.raises(ValueError, match="finite"):
        Prediction(post_id="1", label="not_humanitarian", probabilities={"not_humanitarian": float("nan")})
    with pytest.raises(ValueError, match="unknown labels"):
        Prediction(post_id="1", label="not_humanitarian", probabilities={"flood": 0.5})
    with pytest.raises(ValueError, match="schema 99"):
        Prediction.from_dict({"schema": 99, "post_id": "1", "label": "not_humanitarian", "probabilities": {}})
