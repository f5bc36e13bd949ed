"""The class-prior correction of research/studies/crisislex_ceiling.py on synthetic posteriors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studies"))

import crisislex_ceiling as C  # noqa: E402


def posteriors(prior: np.ndarray, source: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Posts drawn with class prior `prior`, scored by a calibrated model trained under `source`."""
    rng = np.random.default_rng(seed)
    k = len(prior)
    means = np.eye(k) * 2.0
    y = rng.choice(k, n, p=prior)
    x = means[y] + rng.normal(size=(n, k))
    log_lik = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)
    z = log_lik + np.log(source)
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), y


def test_reweighting_to_the_same_prior_changes_nothing_and_rows_stay_distributions():
    probs, _ = posteriors(np.full(3, 1 / 3), np.full(3, 1 / 3), 50)
    assert np.allclose(C.reweight(probs, [0.2, 0.3, 0.5], [0.2, 0.3, 0.5]), probs)
    moved = C.reweight(probs, [0.2, 0.3, 0.5], [0.6, 0.2, 0.2])
    assert np.allclose(moved.sum(1), 1.0) and moved[:, 0].mean() > probs[:, 0].mean()


def test_em_finds_a_shifted_prior_from_unlabelled_posts():
    source, target = np.array([0.6, 0.3, 0.1]), np.array([0.1, 0.3, 0.6])
    probs, y = posteriors(target, source, 4000)
    found = C.em_prior(probs, source)
    assert found == pytest.approx(np.bincount(y, minlength=3) / len(y), abs=0.05)
    assert abs(found[2] - source[2]) > 0.3  # it moved, far from where it started


def test_scores_name_each_class_share():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    s = C.scores(["a", "b", "b"], probs, ("a", "b"))
    assert s["accuracy"] == pytest.approx(2 / 3) and s["predicted_share"] == {"a": 2 / 3, "b": 1 / 3}


def test_one_weight_is_fitted_scored_three_ways_and_rendered():
    rng = np.random.default_rng(1)
    labels = ("a", "b", "not_humanitarian")

    def draw(n: int, prior: list[float]) -> tuple[np.ndarray, list[str]]:
        y = rng.choice(3, n, p=prior)
        return np.eye(3)[y] * 2 + rng.normal(size=(n, 3)), [labels[i] for i in y]

    fit, humaid, dev = draw(300, [0.6, 0.3, 0.1]), draw(100, [0.2, 0.4, 0.4]), draw(100, [0.6, 0.3, 0.1])
    sets = {"CrisisMMD test": draw(100, [0.6, 0.3, 0.1]), "crisislex_t26 sample": draw(200, [0.1, 0.3, 0.6])}
    rows = [C.study(w, fit, humaid, dev, sets, labels) for w in (0.0, 0.5)]
    shifted = rows[0]["crisislex_t26 sample"]
    assert shifted["true_prior"]["not_humanitarian"] > 0.5
    assert shifted["em_prior"]["not_humanitarian"] > rows[0]["training_prior"]["not_humanitarian"]
    assert sum(map(sum, shifted["confusion"])) == 200
    before, after = (r["training_prior"]["not_humanitarian"] for r in rows)
    assert after > before  # HumAID's posts weigh in
    text = C.render({"labels": list(labels), "sets": list(sets), "confusion_weight": 0.5,
                     "humaid_rows": 100, "rows": rows, "seconds": 1.0},
                    {"command": "x", "git_commit": "0" * 40, "created": "now"})
    assert "| 0.5 | crisislex_t26 sample |" in text and "Where the CrisisLexT26 posts go" in text

