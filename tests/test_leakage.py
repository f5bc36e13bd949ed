"""Train/eval leakage: text normalisation, exact and near duplicates, shared tweets and images."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crisislens.distill.data import (
    DataRootError,
    Example,
    load_crisismmd,
    load_humaid,
    load_labelled_images,
    resolve_data_root,
)
from crisislens.distill.leakage import (
    exclude_leaks,
    find_leaks,
    near_duplicate_pairs,
    normalise_text,
)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "data"


def ex(id: str, text: str | None, source: str = "train", **kw) -> Example:
    return Example(id=id, text=text, image=kw.pop("image", None), label=None, source=source, **kw)


# ----------------------------------------------------------------------------- normalise_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("RT @user: Bridge closed &amp; roads flooded https://t.co/abc", "bridge closed roads flooded"),
        ("U.S. &amp;bridges", "u.s bridges"),  # entity decoded, edge punctuation gone, inner kept
        ("rt @a @b:   Help   needed\n\tnow!!", "help needed now"),
        ("Stay safe @friend www.example.com/x", "stay safe"),
        ('"#Flood" warning...', "flood warning"),
        ("Irma's path", "irmas path"),
        ("Art show tonight", "art show tonight"),  # "rt" only as a word of its own
        ("https://t.co/only", ""),
        (None, ""),
        ("", ""),
    ],
)
def test_normalise_text(raw, expected):
    assert normalise_text(raw) == expected


@given(st.text(max_size=80))
def test_normalise_text_is_idempotent(text):
    once = normalise_text(text)
    assert normalise_text(once) == once


# ----------------------------------------------------------------------------- exact / near


def test_exact_duplicates_after_normalising():
    train = [ex("t1", "RT @news: Bridge closed on Main St https://t.co/1"), ex("t2", "Something else entirely here")]
    evaluation = [ex("e1", "bridge closed on main st", source="eval")]
    report = find_leaks(train, evaluation)
    assert [(p.kind, p.train_id, p.eval_id, p.eval_source) for p in report.pairs] == [("exact", "t1", "e1", "eval")]
    assert report.exact[0].similarity == 1.0 and not report.near


def test_near_threshold_is_inclusive():
    train = [ex("t1", "alpha beta gamma delta epsilon")]
    evaluation = [ex("e1", "alpha beta gamma delta", source="eval")]  # 4 / 5 = 0.8
    assert [p.similarity for p in find_leaks(train, evaluation, near_threshold=0.8).near] == [pytest.approx(0.8)]
    assert find_leaks(train, evaluation, near_threshold=0.81).near == []


def test_near_does_not_repeat_exact_pairs():
    train = [ex("t1", "alpha beta gamma delta"), ex("t2", "beta alpha gamma delta")]
    evaluation = [ex("e1", "Alpha beta gamma delta!", source="eval")]
    report = find_leaks(train, evaluation)
    assert [(p.kind, p.train_id) for p in report.pairs] == [("exact", "t1"), ("near", "t2")]
    assert report.near[0].similarity == 1.0  # same word set, different order


def test_short_texts_count_only_for_exact_matches():
    train = [ex("t1", "help flood"), ex("t2", "Help flood!")]
    evaluation = [ex("e1", "flood help", source="eval"), ex("e2", "help flood", source="eval")]
    report = find_leaks(train, evaluation)
    assert sorted((p.kind, p.train_id, p.eval_id) for p in report.pairs) == [
        ("exact", "t1", "e2"), ("exact", "t2", "e2")]


def test_empty_and_missing_texts_never_match():
    train = [ex("t1", None), ex("t2", "https://t.co/x"), ex("t3", "@someone")]
    evaluation = [ex("e1", None, source="eval"), ex("e2", "https://t.co/y", source="eval")]
    assert find_leaks(train, evaluation).pairs == []


def test_shared_tweet_and_image(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    train = [ex("t1", "completely different words here", tweet_id="42"), ex("t2", None, image=image)]
    evaluation = [ex("e1", "nothing in common at all", source="eval", tweet_id="42", image=image)]
    report = find_leaks(train, evaluation)
    assert sorted((p.kind, p.train_id) for p in report.pairs) == [("image", "t2"), ("tweet", "t1")]


def test_report_counts_and_exclusion():
    train = [ex("a1", "alpha beta gamma delta", source="a"), ex("a2", "unrelated text about cats", source="a"),
             ex("b1", "alpha beta gamma delta epsilon", source="b"), ex("b2", "alpha beta gamma delta", source="b")]
    evaluation = [ex("e1", "alpha beta gamma delta", source="eval"), ex("e2", "alpha beta gamma delta", source="eval")]
    report = find_leaks(train, evaluation)
    counts = report.counts_by_source()
    assert counts["a"]["rows"] == 2 and counts["a"]["exact"] == 1 and counts["a"]["exact_pairs"] == 2
    assert counts["b"]["exact"] == 1 and counts["b"]["near"] == 1 and counts["b"]["any"] == 2
    assert report.eval_hit() == 2
    kept = exclude_leaks(train, report)
    assert [e.id for e in kept] == ["a2"]
    assert [e.id for e in exclude_leaks(train, report, kinds=["exact"])] == ["a2", "b1"]
    summary = report.to_dict()
    assert "pairs" not in summary and summary["by_source"]["b"]["near"] == 1
    pairs = report.to_dict(include_pairs=True)["pairs"]
    assert all("text" not in p for p in pairs) and len(pairs) == len(report.pairs)


def test_threshold_validation():
    with pytest.raises(ValueError, match="near_threshold"):
        find_leaks([], [], near_threshold=0)


def _brute_force(train: list[str], evaluation: list[str], threshold: float) -> set[tuple[int, int]]:
    out = set()
    for (i, a), (j, b) in itertools.product(enumerate(train), enumerate(evaluation)):
        sa, sb = set(a.split()), set(b.split())
        if len(sa) >= 3 and len(sb) >= 3 and a != b and len(sa & sb) / len(sa | sb) >= threshold - 1e-9:
            out.add((i, j))
    return out


words = st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])
texts = st.lists(words, min_size=0, max_size=7).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(texts, max_size=12), st.lists(texts, max_size=6), st.sampled_from([0.5, 0.6, 0.75, 0.8, 1.0]))
def test_near_pairs_match_brute_force(train, evaluation, threshold):
    found = {(i, j) for i, j, _ in near_duplicate_pairs(train, evaluation, threshold)}
    assert found == _brute_force(train, evaluation, threshold)


def test_near_search_scales(monkeypatch):
    """75k x 2k texts in seconds (chunked sparse products)."""
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    weights = 1.0 / np.arange(1, len(vocab) + 1)  # Zipf-like: a few very common words
    weights /= weights.sum()

    def make(n):
        lengths = rng.integers(5, 25, size=n)
        drawn = rng.choice(len(vocab), size=int(lengths.sum()), p=weights)
        return [" ".join(vocab[chunk]) for chunk in np.split(drawn, np.cumsum(lengths)[:-1])]

    train, evaluation = make(75_000), make(2_000)
    train[123] = evaluation[7] + " extra"  # one planted near duplicate
    start = time.perf_counter()
    pairs = near_duplicate_pairs(train, evaluation, 0.8)
    elapsed = time.perf_counter() - start
    assert (123, 7) in {(i, j) for i, j, _ in pairs}
    assert elapsed < 30, f"near-duplicate search took {elapsed:.1f} s"


# ----------------------------------------------------------------------------- fixture root


def test_fixture_leaks_into_crisismmd_eval():
    evaluation = load_crisismmd(FIXTURE, "dev") + load_crisismmd(FIXTURE, "test")
    train = load_crisismmd(FIXTURE, "train") + load_humaid(FIXTURE, events=["hurricane_harvey_2017"])
    report = find_leaks(train, evaluation)
    got = sorted((p.kind, p.train_source, p.train_id, p.eval_id) for p in report.pairs)
    assert got == [
        ("exact", "crisismmd", "100000000000000004_0", "200000000000000002_0"),
        ("exact", "crisismmd", "100000000000000004_1", "200000000000000002_0"),
        ("exact", "crisismmd", "300000000000000003_1", "300000000000000003_0"),
        ("near", "humaid", "500000000000000006", "300000000000000002_0"),
        ("tweet", "crisismmd", "300000000000000003_1", "300000000000000003_0"),
    ]
    assert report.near[0].similarity == pytest.approx(11 / 12)
    cleaned = exclude_leaks(train, report)
    assert len(cleaned) == len(train) - 4
    assert find_leaks(cleaned, evaluation).pairs == []


def test_fixture_images_leak_only_without_the_exclusion():
    evaluation = load_crisismmd(FIXTURE, "dev") + load_crisismmd(FIXTURE, "test")
    safe = load_labelled_images(FIXTURE, strict=False)
    assert find_leaks(safe, evaluation).pairs == []
    unsafe = load_labelled_images(FIXTURE, strict=False, exclude_crisismmd_eval=False)
    kinds = {(p.kind, p.train_id.rsplit("/", 1)[-1]) for p in find_leaks(unsafe, evaluation).pairs}
    assert ("image", "200000000000000001_0.jpg") in kinds and ("image", "300000000000000001_0.jpg") in kinds
    assert ("tweet", "200000000000000001_1.jpg") in kinds


# ----------------------------------------------------------------------------- real data


@pytest.mark.data
def test_real_leakage_report_runs():
    try:
        root = resolve_data_root()
    except DataRootError as exc:
        pytest.skip(f"real data not available ({exc})")
    evaluation = load_crisismmd(root, "dev") + load_crisismmd(root, "test")
    train = load_crisismmd(root, "train") + load_humaid(root)
    start = time.perf_counter()
    report = find_leaks(train, evaluation)
    assert time.perf_counter() - start < 30
    counts = report.counts_by_source()
    assert counts["humaid"]["rows"] > 70_000 and counts["crisismmd"]["rows"] == 6126
    assert counts["humaid"]["tweet"] == 0  # README: no tweet id overlaps CrisisMMD
    cleaned = exclude_leaks(train, report)
    assert len(cleaned) == len(train) - len(report.leaked_train_keys())
