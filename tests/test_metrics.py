"""Metrics: hand-computed cases, scikit-learn as the oracle for classification and AP, a
set-based re-statement of ERASER's scoring for the rationale metrics, and a toy model whose
comprehensiveness and sufficiency are known exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from crisislens.runtime.labels import LABEL_NAMES
from crisislens.evaluation.metrics import (
    ERASER_FRACTIONS,
    auprc,
    classification_report,
    confusion_matrix,
    faithfulness,
    iou_f1,
    random_scores,
    set_iou,
    soft_to_hard,
    token_f1,
)

ABC = ("a", "b", "c")
FAST = settings(max_examples=60, deadline=None)


def _mask(bits: str) -> np.ndarray:
    return np.array([c == "1" for c in bits], dtype=bool)


# --------------------------------------------------------------------------- classification


def test_classification_report_by_hand():
    # confusion (rows true a,b,c; cols pred): a [1 1 0], b [0 1 0], c [1 0 2]
    report = classification_report(list("aabccc"), list("abbcca"), ABC)
    assert report.confusion == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert report.n == 6
    assert report.accuracy == pytest.approx(4 / 6)
    a, b, c = (report.per_class[x] for x in ABC)
    assert (a.precision, a.recall, a.f1, a.support) == pytest.approx((0.5, 0.5, 0.5, 2))
    assert (b.precision, b.recall, b.f1, b.support) == pytest.approx((0.5, 1.0, 2 / 3, 1))
    assert (c.precision, c.recall, c.f1, c.support) == pytest.approx((1.0, 2 / 3, 0.8, 3))
    assert report.macro_f1 == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    assert report.weighted_f1 == pytest.approx((0.5 * 2 + 2 / 3 * 1 + 0.8 * 3) / 6)
    assert report.macro_precision == pytest.approx(2 / 3)
    assert report.macro_recall == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert report.labels == ABC


def test_a_label_that_never_occurs_counts_zero_in_the_macro_average():
    with_d = classification_report(list("aabccc"), list("abbcca"), (*ABC, "d"))
    assert with_d.per_class["d"].f1 == 0.0 and with_d.per_class["d"].support == 0
    assert with_d.macro_f1 == pytest.approx((0.5 + 2 / 3 + 0.8) / 4)
    assert with_d.weighted_f1 == pytest.approx(classification_report(list("aabccc"), list("abbcca"), ABC).weighted_f1)
    assert with_d.confusion[3] == [0, 0, 0, 0]


def test_default_labels_are_the_five_classes_in_canonical_order():
    y = [LABEL_NAMES[4], LABEL_NAMES[0], LABEL_NAMES[0]]
    report = classification_report(y, y)
    assert report.labels == LABEL_NAMES
    assert list(report.per_class) == list(LABEL_NAMES)
    assert report.accuracy == 1.0
    assert report.macro_f1 == pytest.approx(2 / 5)  # three classes never occur


@pytest.mark.parametrize("seed", range(8))
def test_classification_matches_sklearn_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    # The last label never occurs in y_true; with odd seeds it never occurs at all.
    y_true = list(rng.choice(LABEL_NAMES[:4], size=n))
    pool = LABEL_NAMES if seed % 2 == 0 else LABEL_NAMES[:4]
    y_pred = list(rng.choice(pool, size=n))
    labels = list(LABEL_NAMES)
    report = classification_report(y_true, y_pred, LABEL_NAMES)

    assert report.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred))
    for average, ours in (("macro", report.macro_f1), ("weighted", report.weighted_f1)):
        assert ours == pytest.approx(skm.f1_score(y_true, y_pred, labels=labels, average=average, zero_division=0))
    assert report.macro_precision == pytest.approx(
        skm.precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    )
    assert report.macro_recall == pytest.approx(
        skm.recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    )
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, name in enumerate(LABEL_NAMES):
        got = report.per_class[name]
        assert (got.precision, got.recall, got.f1, got.support) == pytest.approx((p[i], r[i], f[i], s[i]))
    expected_cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, LABEL_NAMES), expected_cm)
    assert report.confusion == expected_cm.tolist()


def test_classification_works_on_a_subset_of_labels_and_numpy_strings():
    subset = (LABEL_NAMES[0], LABEL_NAMES[4])
    y_true = np.array([subset[0], subset[1], subset[1]])
    y_pred = np.array([subset[0], subset[0], subset[1]])
    report = classification_report(y_true, y_pred, subset)
    assert report.confusion == [[1, 0], [1, 1]]
    assert report.macro_f1 == pytest.approx(skm.f1_score(y_true, y_pred, labels=list(subset), average="macro"))


def test_report_to_dict_is_json_ready_with_plain_types():
    data = classification_report(list("aabccc"), list("abbcca"), ABC).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert type(data["accuracy"]) is float and type(data["n"]) is int
    assert type(data["per_class"]["a"]["f1"]) is float and type(data["per_class"]["a"]["support"]) is int
    assert all(type(v) is int for row in data["confusion"] for v in row)
    assert data["labels"] == list(ABC)


def test_report_markdown_has_headline_per_class_table_and_confusion_matrix():
    text = classification_report(list("aabccc"), list("abbcca"), ABC).to_markdown()
    lines = text.splitlines()
    assert lines[0] == "n = 6 · accuracy 0.667 · macro-F1 0.656 · weighted-F1 0.678"
    assert "| class | precision | recall | F1 | support |" in lines
    assert "| b | 0.500 | 1.000 | 0.667 | 1 |" in lines
    assert "| true \\ predicted | a | b | c |" in lines
    assert "| c | 1 | 0 | 2 |" in lines


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        (["a", "b", "a"], ["a", "b", "flood"], r"y_pred\[2\] = 'flood' is not one of the labels \(a, b, c\); 1 unk"),
        (["x", "b", "y"], ["a", "b", "c"], r"y_true\[0\] = 'x' .* 2 unknown value\(s\) in y_true"),
        (np.array(["a", "zz"]), ["a", "a"], r"y_true\[1\] = 'zz' is not"),  # not np.str_('zz')
        (["a"], ["a", "b"], "y_true has 1 labels but y_pred has 2"),
        ([], [], "no examples"),
    ],
)
def test_classification_errors_name_the_value_and_position(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        classification_report(y_true, y_pred, ABC)


def test_labels_must_be_non_empty_and_distinct():
    with pytest.raises(ValueError, match="labels is empty"):
        classification_report(["a"], ["a"], ())
    with pytest.raises(ValueError, match="labels repeat: a"):
        confusion_matrix(["a"], ["a"], ("a", "b", "a"))


@FAST
@given(st.lists(st.tuples(st.sampled_from(LABEL_NAMES), st.sampled_from(LABEL_NAMES)), min_size=1, max_size=40))
def test_classification_properties(pairs):
    y_true, y_pred = [t for t, _ in pairs], [p for _, p in pairs]
    report = classification_report(y_true, y_pred)
    for value in (report.accuracy, report.macro_f1, report.weighted_f1, report.macro_precision, report.macro_recall):
        assert 0.0 <= value <= 1.0
    cm = np.array(report.confusion)
    assert cm.sum() == report.n == len(pairs)
    assert [report.per_class[name].support for name in LABEL_NAMES] == cm.sum(axis=1).tolist()

    perfect = classification_report(y_true, y_true)
    assert perfect.accuracy == 1.0 and perfect.weighted_f1 == pytest.approx(1.0)
    # Perfect predictions score 1 on every class that occurs and 0 on the others.
    assert perfect.macro_f1 == pytest.approx(len(set(y_true)) / len(LABEL_NAMES))
    assert classification_report(y_true, y_true, sorted(set(y_true))).macro_f1 == pytest.approx(1.0)


# --------------------------------------------------------------------------- ERASER oracle
# A set-based re-statement of rationale_benchmark/metrics.py: rationales are (instance, token)
# pairs or (instance, start, end) spans, instances exist only where some rationale does.


def _eraser_token_prf(gold, pred):
    truth = {(i, t) for i, m in enumerate(gold) for t in np.flatnonzero(m)}
    predicted = {(i, t) for i, m in enumerate(pred) for t in np.flatnonzero(m)}

    def prf(t, p):
        prec = len(t & p) / len(p) if p else 0.0
        rec = len(t & p) / len(t) if t else 0.0
        return prec, rec, (0.0 if prec == 0 or rec == 0 else 2 * prec * rec / (prec + rec))

    micro = prf(truth, predicted)
    keys = {i for i, _ in truth | predicted}
    per = [prf({x for x in truth if x[0] == k}, {x for x in predicted if x[0] == k}) for k in keys]
    macro = tuple(sum(x[j] for x in per) / len(per) for j in range(3)) if per else (0.0, 0.0, 0.0)
    return micro, macro


def _runs(mask):
    spans, start = [], None
    for t, bit in enumerate(list(mask) + [False]):
        if bit and start is None:
            start = t
        elif not bit and start is not None:
            spans.append((start, t))
            start = None
    return spans


def _eraser_partial_match_macro_f1(gold, pred, threshold):
    truth = {i: _runs(m) for i, m in enumerate(gold) if any(m)}
    guess = {i: _runs(m) for i, m in enumerate(pred) if any(m)}
    tps = {}
    for k, spans in guess.items():
        hits = 0
        for p in spans:
            best = 0.0
            for t in truth.get(k, []):
                a, b = set(range(*p)), set(range(*t))
                best = max(best, len(a & b) / len(a | b))
            hits += best >= threshold
        tps[k] = hits
    rs = [tps.get(k, 0) / len(v) for k, v in truth.items()]
    ps = [tps.get(k, 0) / len(v) for k, v in guess.items()]
    r = sum(rs) / len(rs) if rs else 0.0
    p = sum(ps) / len(ps) if ps else 0.0
    return 0.0 if p == 0 or r == 0 else 2 * p * r / (p + r)


def _bits(n: int) -> st.SearchStrategy[list[bool]]:
    return st.lists(st.booleans(), min_size=n, max_size=n)


_instance = st.integers(0, 12).flatmap(lambda n: st.tuples(_bits(n), _bits(n)))
_instances = st.lists(_instance, min_size=1, max_size=6)


def _split(instances):
    return [np.array(g, dtype=bool) for g, _ in instances], [np.array(p, dtype=bool) for _, p in instances]


# --------------------------------------------------------------------------- token F1


def test_token_f1_by_hand():
    gold = [_mask("1100"), _mask("000"), _mask("10"), _mask("000")]
    pred = [_mask("0110"), _mask("000"), _mask("00"), _mask("110")]
    got = token_f1(gold, pred)
    # micro: 1 hit, 3 gold, 4 predicted. macro over instances 0, 2, 3 (1 is empty on both sides).
    assert got.micro_precision == pytest.approx(1 / 4)
    assert got.micro_recall == pytest.approx(1 / 3)
    assert got.micro_f1 == pytest.approx(2 / 7)
    assert (got.macro_precision, got.macro_recall, got.macro_f1) == pytest.approx((1 / 6, 1 / 6, 1 / 6))
    assert (got.n_instances, got.n_empty) == (4, 1)
    assert json.loads(json.dumps(got.to_dict())) == got.to_dict()


def test_token_f1_accepts_0_1_integers_and_is_zero_when_everything_is_empty():
    assert token_f1([[1, 0, 1]], [[1, 0, 0]]).micro_recall == pytest.approx(0.5)
    nothing = token_f1([_mask("000"), _mask("")], [_mask("000"), _mask("")])
    assert nothing.micro_f1 == nothing.macro_f1 == nothing.macro_precision == 0.0
    assert nothing.n_empty == 2


@FAST
@given(_instances)
def test_token_f1_matches_eraser_and_is_symmetric(instances):
    gold, pred = _split(instances)
    got = token_f1(gold, pred)
    micro, macro = _eraser_token_prf(gold, pred)
    assert (got.micro_precision, got.micro_recall, got.micro_f1) == pytest.approx(micro)
    assert (got.macro_precision, got.macro_recall, got.macro_f1) == pytest.approx(macro)
    for value in (got.micro_f1, got.macro_f1):
        assert 0.0 <= value <= 1.0

    swapped = token_f1(pred, gold)
    assert swapped.micro_precision == pytest.approx(got.micro_recall)
    assert swapped.macro_recall == pytest.approx(got.macro_precision)
    assert (swapped.micro_f1, swapped.macro_f1) == pytest.approx((got.micro_f1, got.macro_f1))

    same = token_f1(gold, gold)
    if any(g.any() for g in gold):
        assert (same.micro_f1, same.macro_f1, same.macro_precision) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("gold", "pred", "message"),
    [
        ([_mask("10"), _mask("101")], [_mask("10"), _mask("10")], "instance 1: gold mask has 3 units but pred"),
        ([_mask("10")], [_mask("10"), _mask("10")], "1 gold masks but 2 predicted masks"),
        ([], [], "no instances"),
        ([_mask("10")], [np.array([0.9, 0.1])], "instance 0: predicted mask must be boolean .*soft_to_hard"),
        ([np.zeros((2, 2), dtype=bool)], [_mask("10")], r"instance 0: gold mask must be 1-D, got shape \(2, 2\)"),
    ],
)
def test_token_f1_errors_name_the_instance(gold, pred, message):
    with pytest.raises(ValueError, match=message):
        token_f1(gold, pred)


# --------------------------------------------------------------------------- IOU F1


def test_iou_f1_by_hand():
    gold = [_mask("1111000000"), _mask("001101"), _mask("00")]
    pred = [_mask("0111110010"), _mask("000000"), _mask("10")]
    # instance 0: span [1,6) has IOU 3/6 = 0.5 with gold [0,4) -> hit; [8,9) misses: P 1/2, R 1/1.
    # instance 1: no predicted span (left out of P), R 0. instance 2: no gold span (left out of R), P 0.
    # macro P = (1/2 + 0) / 2 = 1/4, macro R = (1 + 0) / 2 = 1/2, F1 = 1/3.
    assert iou_f1(gold, pred) == pytest.approx(1 / 3)
    assert iou_f1(gold, pred, threshold=0.51) == 0.0
    assert iou_f1(gold, gold) == 1.0


def test_iou_f1_spans_are_maximal_runs():
    # Two separate predicted runs are two spans; one run over both gold spans is one span.
    assert iou_f1([_mask("110011")], [_mask("110011")]) == 1.0
    assert iou_f1([_mask("110011")], [_mask("111111")]) == 0.0  # IOU 2/6 with either gold span


@FAST
@given(_instances, st.sampled_from([0.1, 0.25, 0.5, 0.75, 1.0]))
def test_iou_f1_matches_eraser_partial_match(instances, threshold):
    gold, pred = _split(instances)
    assert iou_f1(gold, pred, threshold) == pytest.approx(_eraser_partial_match_macro_f1(gold, pred, threshold))


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_iou_threshold_must_be_in_0_1(threshold):
    with pytest.raises(ValueError, match="IOU threshold must be in"):
        iou_f1([_mask("1")], [_mask("1")], threshold)


# --------------------------------------------------------------------------- AUPRC


def test_auprc_by_hand():
    # Ranked: gold, not, gold, not -> AP = 1/2 * 1 + 1/2 * 2/3. All-gold instance: AP 1.
    # The instance without a gold unit is left out.
    gold = [_mask("1010"), _mask("00"), _mask("11")]
    scores = [np.array([0.9, 0.8, 0.7, 0.1]), np.array([1.0, 2.0]), np.array([0.3, 0.2])]
    assert auprc(gold, scores) == pytest.approx((5 / 6 + 1.0) / 2)


def test_auprc_tied_scores_enter_together():
    assert auprc([_mask("10")], [np.array([0.5, 0.5])]) == pytest.approx(0.5)
    assert auprc([_mask("0110")], [np.array([3.0, 3.0, 3.0, 1.0])]) == pytest.approx(
        skm.average_precision_score([0, 1, 1, 0], [3.0, 3.0, 3.0, 1.0])
    )


@pytest.mark.parametrize("seed", range(5))
def test_auprc_matches_sklearn_average_precision_per_instance(seed):
    rng = np.random.default_rng(seed)
    gold, scores, expected = [], [], []
    for _ in range(12):
        n = int(rng.integers(1, 15))
        g = rng.random(n) < 0.3
        s = rng.integers(0, 4, size=n).astype(float) if seed % 2 else rng.random(n)  # ties on odd seeds
        gold.append(g)
        scores.append(s)
        if g.any():
            expected.append(skm.average_precision_score(g.astype(int), s))
    if not expected:
        pytest.skip("no positive drawn")
    assert auprc(gold, scores) == pytest.approx(np.mean(expected))


def test_auprc_errors():
    with pytest.raises(ValueError, match="no instance has a gold rationale unit"):
        auprc([_mask("00")], [np.array([0.1, 0.2])])
    with pytest.raises(ValueError, match="instance 1: scores has NaN"):
        auprc([_mask("1"), _mask("1")], [np.array([0.1]), np.array([np.nan])])
    with pytest.raises(ValueError, match="instance 0: gold mask has 2 units but scores has 3"):
        auprc([_mask("10")], [np.array([0.1, 0.2, 0.3])])


# --------------------------------------------------------------------------- soft_to_hard


def test_soft_to_hard_rules():
    scores = np.array([0.2, 0.9, 0.2, 0.9, 0.1])
    np.testing.assert_array_equal(soft_to_hard(scores, threshold=0.2), _mask("11110"))
    np.testing.assert_array_equal(soft_to_hard(scores, top_k=3), _mask("11010"))  # tie 0.2: index 0 first
    np.testing.assert_array_equal(soft_to_hard(scores, top_k=0), _mask("00000"))
    np.testing.assert_array_equal(soft_to_hard(scores, top_k=99), _mask("11111"))
    np.testing.assert_array_equal(soft_to_hard(scores, fraction=0.5), _mask("11010"))  # 2.5 rounds up to 3
    np.testing.assert_array_equal(soft_to_hard(scores, fraction=0.01), _mask("01000"))  # at least 1
    assert soft_to_hard(np.array([]), fraction=0.5).shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of threshold, top_k, fraction \\(got none\\)"),
        ({"threshold": 0.5, "top_k": 2}, "got threshold, top_k"),
        ({"fraction": 0.0}, "fraction must be in \\(0, 1\\]"),
        ({"top_k": -1}, "top_k must be >= 0"),
    ],
)
def test_soft_to_hard_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        soft_to_hard(np.array([0.1, 0.2]), **kwargs)


# --------------------------------------------------------------------------- faithfulness


class LinearToy:
    """p(class 0) = share of the instance's relevant units that are kept; p(class 1) = the rest.
    Records every batch it is called with."""

    def __init__(self, relevant):
        self.relevant = [np.asarray(r, dtype=bool) for r in relevant]
        self.calls = []

    def __call__(self, keep_masks):
        self.calls.append([m.copy() for m in keep_masks])
        assert len(keep_masks) == len(self.relevant)
        p0 = np.array(
            [(k & r).sum() / r.sum() if r.sum() else 1.0 for k, r in zip(keep_masks, self.relevant)]
        )
        return np.stack([p0, 1.0 - p0], axis=1)


def test_faithfulness_exact_on_a_linear_toy():
    relevant = [_mask("0010010000"), _mask("1000"), _mask("")]
    model = LinearToy(relevant)
    result = faithfulness(model, [r.astype(float) for r in relevant], fractions=(0.1, 0.2, 0.5))
    # Instance 0 (2 relevant of 10), k = 1, 2, 5: removing k top units drops 1/2, 1, 1 of p0.
    # Instance 1 (1 relevant of 4), k = 1, 1, 2: removing drops 1 each time. Instance 2: skipped.
    assert result.comprehensiveness_per_fraction == pytest.approx((0.75, 1.0, 1.0))
    assert result.sufficiency_per_fraction == pytest.approx((0.25, 0.0, 0.0))
    assert result.comprehensiveness == pytest.approx(2.75 / 3)
    assert result.sufficiency == pytest.approx(0.25 / 3)
    assert (result.n, result.n_skipped, result.fractions) == (2, 1, (0.1, 0.2, 0.5))

    # One batch for the full input, then (without top-k, only top-k) per fraction.
    assert len(model.calls) == 1 + 2 * 3
    assert all(m.all() for m in model.calls[0])
    without, only = model.calls[1], model.calls[2]
    np.testing.assert_array_equal(only[0], _mask("0010000000"))
    np.testing.assert_array_equal(without[0], ~only[0])
    assert all(m.dtype == np.bool_ for batch in model.calls for m in batch)
    assert [len(m) for m in only] == [10, 4, 0]  # the skipped instance gets an empty mask

    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data and data["fractions"] == [0.1, 0.2, 0.5]


def test_faithfulness_target_overrides_the_predicted_class():
    relevant = [_mask("0010010000"), _mask("1000")]
    scores = [r.astype(float) for r in relevant]
    own = faithfulness(LinearToy(relevant), scores, fractions=(0.1, 0.2, 0.5))
    other = faithfulness(LinearToy(relevant), scores, fractions=(0.1, 0.2, 0.5), target=np.array([1, 1]))
    # p1 = 1 - p0, so every difference flips sign.
    assert other.comprehensiveness == pytest.approx(-own.comprehensiveness)
    assert other.sufficiency == pytest.approx(-own.sufficiency)


def test_faithfulness_ties_go_to_the_lower_index():
    model = LinearToy([_mask("11111")])
    faithfulness(model, [np.zeros(5)], fractions=(0.4,))
    np.testing.assert_array_equal(model.calls[2][0], _mask("11000"))


def test_removing_the_true_rationale_hurts_more_than_removing_random_units():
    rng = np.random.default_rng(7)
    relevant = [rng.random(int(n)) < 0.2 for n in rng.integers(10, 40, size=50)]
    relevant = [r if r.any() else np.r_[True, r[1:]] for r in relevant]
    true_scores = [r + 0.01 * rng.random(len(r)) for r in relevant]
    true = faithfulness(LinearToy(relevant), true_scores)
    random = faithfulness(LinearToy(relevant), random_scores(true_scores, seed=0))
    assert true.fractions == ERASER_FRACTIONS
    assert true.comprehensiveness > random.comprehensiveness + 0.2
    assert true.sufficiency < random.sufficiency - 0.2


@FAST
@given(st.lists(st.integers(1, 20), min_size=1, max_size=5), st.integers(0, 2**16))
def test_linear_toy_comprehensiveness_plus_sufficiency_is_one(sizes, seed):
    # For the toy, p_without + p_only = p_full = 1 at every fraction, whatever the scores.
    rng = np.random.default_rng(seed)
    relevant = [rng.random(n) < 0.5 for n in sizes]
    for r in relevant:
        r[rng.integers(len(r))] = True  # the toy is constant without a relevant unit
    result = faithfulness(LinearToy(relevant), random_scores(relevant, seed))
    for comp, suff in zip(result.comprehensiveness_per_fraction, result.sufficiency_per_fraction):
        assert comp + suff == pytest.approx(1.0)
        assert 0.0 <= comp <= 1.0


def test_random_scores_have_the_same_shapes_and_follow_the_seed():
    shapes = [np.zeros(3), np.zeros(0), np.zeros(7)]
    a, b, c = random_scores(shapes, seed=1), random_scores(shapes, seed=1), random_scores(shapes, seed=2)
    assert [x.shape for x in a] == [(3,), (0,), (7,)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert all(((x >= 0) & (x < 1)).all() for x in a)


def _constant(probs):
    return lambda keep: np.tile(probs, (len(keep), 1))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: faithfulness(_constant([0.5, 0.5]), []), "at least one instance"),
        (lambda: faithfulness(_constant([0.5, 0.5]), [np.zeros(0)]), "all 1 instances have 0 units"),
        (lambda: faithfulness(_constant([0.5, 0.5]), [np.zeros(3)], fractions=()), "fractions is empty"),
        (lambda: faithfulness(_constant([0.5, 0.5]), [np.zeros(3)], fractions=(0.0,)), r"must be in \(0, 1\]"),
        (lambda: faithfulness(_constant([0.5, 0.5]), [np.array([0.1, np.inf])]), "instance 0: scores has NaN or inf"),
        (lambda: faithfulness(lambda keep: np.ones(len(keep)), [np.zeros(3)]), r"shape \(1,\) for the full input"),
        (
            lambda: faithfulness(_constant([0.5, 0.5]), [np.zeros(3)], target=np.array([2])),
            r"target\[0\] = 2 is not a class index in \[0, 2\)",
        ),
        (lambda: faithfulness(_constant([0.5, 0.5]), [np.zeros(3)], target=[0, 1]), "target must be 1 class indices"),
    ],
)
def test_faithfulness_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_faithfulness_refuses_a_predictor_whose_class_count_changes():
    shapes = iter([(1, 2), (1, 3)])
    with pytest.raises(ValueError, match=r"shape \(1, 3\) for the input without its top 1%; expected \(1, 2\)"):
        faithfulness(lambda keep: np.full(next(shapes), 0.5), [np.zeros(3)])


def test_set_iou_of_two_masks():
    assert set_iou(_mask("11000"), _mask("01100")) == pytest.approx(1 / 3)
    assert set_iou(_mask("101"), _mask("101")) == 1.0
    assert set_iou(_mask("000"), _mask("000")) == 1.0  # both empty: they agree
    assert set_iou(_mask("100"), _mask("010")) == 0.0
    assert set_iou([1, 0, 1], [1, 1, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="different lengths"):
        set_iou(_mask("10"), _mask("100"))
    with pytest.raises(ValueError, match="boolean"):
        set_iou(np.array([0.3, 0.7]), _mask("01"))


# --------------------------------------------------------------------------- calibration


def test_calibration_of_a_calibrated_and_an_overconfident_model():
    from crisislens.evaluation.metrics import calibration

    probs = np.tile([0.8, 0.1, 0.1], (10, 1))
    right = calibration(probs, np.array([0] * 8 + [1, 2]))  # 80% sure, right 8 times in 10
    assert right.ece == pytest.approx(0.0) and right.mce == pytest.approx(0.0)
    assert right.accuracy == pytest.approx(0.8) and right.mean_confidence == pytest.approx(0.8)
    assert right.nll == pytest.approx(-(8 * np.log(0.8) + 2 * np.log(0.1)) / 10)
    assert right.brier == pytest.approx((8 * (0.2**2 + 0.02) + 2 * (0.64 + 0.81 + 0.01)) / 10)
    [full] = [b for b in right.bins if b.n]
    assert (full.low, full.high, full.n) == (pytest.approx(11 / 15), pytest.approx(12 / 15), 10)
    over = calibration(np.vstack([np.tile([0.9, 0.05, 0.05], (5, 1)), np.tile([0.1, 0.6, 0.3], (5, 1))]),
                       np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 2]), n_bins=10)
    # 0.9-bin: 3 of 5 right (gap 0.3); 0.6-bin: 3 of 5 right (gap 0.0)
    assert over.ece == pytest.approx(0.15) and over.mce == pytest.approx(0.3)
    assert sum(b.n for b in over.bins) == 10 and len(over.bins) == 10


def test_accuracy_at_confidence_counts_the_posts_at_or_above_each_step():
    from crisislens.evaluation.metrics import accuracy_at_confidence

    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    rows = accuracy_at_confidence(probs, np.array([0, 1, 1, 0]), [0.5, 0.9, 0.99])
    assert rows == [{"threshold": 0.5, "n": 4, "share": 1.0, "accuracy": 0.75},
                    {"threshold": 0.9, "n": 2, "share": 0.5, "accuracy": 0.5},
                    {"threshold": 0.99, "n": 0, "share": 0.0, "accuracy": 0.0}]


def test_temperature_scaling_recovers_a_known_overconfidence():
    from crisislens.evaluation.metrics import calibration, fit_temperature, with_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (20000, 5))
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    target = np.array([rng.choice(5, p=row) for row in true])
    sharp = with_temperature(true, 0.5)  # a model twice as sure as it should be
    assert np.array_equal(sharp.argmax(axis=1), true.argmax(axis=1))
    assert np.allclose(with_temperature(true, 1.0), true)
    t = fit_temperature(sharp, target)
    assert t == pytest.approx(2.0, rel=0.05)
    assert calibration(with_temperature(sharp, t), target).ece < calibration(sharp, target).ece / 3
    assert fit_temperature(true, target) == pytest.approx(1.0, rel=0.05)


def test_calibration_refuses_bad_input():
    from crisislens.evaluation.metrics import calibration, fit_temperature, with_temperature

    with pytest.raises(ValueError, match="sum to 1"):
        calibration(np.array([[0.5, 0.6]]), np.array([0]))
    with pytest.raises(ValueError, match=r"\[n, classes\]"):
        calibration(np.zeros((0, 3)), np.array([], dtype=int))
    with pytest.raises(ValueError, match="class index"):
        calibration(np.array([[0.5, 0.5]]), np.array([2]))
    with pytest.raises(ValueError, match="n_bins"):
        calibration(np.array([[0.5, 0.5]]), np.array([0]), n_bins=0)
    with pytest.raises(ValueError, match="temperature"):
        with_temperature(np.array([[0.5, 0.5]]), 0.0)
    with pytest.raises(ValueError, match="sum to 1"):
        fit_temperature(np.array([[np.nan, 0.5]]), np.array([0]))
