import numpy as np
import pytest
from sklearn import metrics as sk

from benchmark.evaluation.metrics import (
    ScoredSplit,
    average_precision,
    best_f1,
    bootstrap_ci,
    decide,
    evaluate,
    event_roc_auc,
    fit_threshold,
    fpr_threshold,
    max_f1_threshold,
    per_type_roc_auc,
    pr_curve,
    precision_at_k,
    recall_at_fpr,
    roc_auc,
    roc_curve,
)

LABELS = np.array([0, 0, 1, 1, 0, 1], dtype=bool)
SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])


def test_hand_made_roc_auc():
    # Positives 0.35, 0.8, 0.9 vs negatives 0.1, 0.4, 0.2: 8 of 9 pairs ordered correctly.
    assert roc_auc(LABELS, SCORES) == pytest.approx(8 / 9)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts half
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_hand_made_average_precision():
    # Ranked: 0.9(+) 0.8(+) 0.4(-) 0.35(+): AP = (1 + 1 + 3/4) / 3
    assert average_precision(LABELS, SCORES) == pytest.approx((1 + 1 + 0.75) / 3)


def test_hand_made_decision_and_threshold():
    d = decide(LABELS, SCORES, 0.35)
    assert (d.precision, d.recall) == (pytest.approx(3 / 4), 1.0)
    assert d.f1 == pytest.approx(2 * 0.75 / 1.75)
    assert d.accuracy == pytest.approx(5 / 6)
    assert max_f1_threshold(LABELS, SCORES) == 0.35
    assert best_f1(LABELS, SCORES) == pytest.approx(2 * 0.75 / 1.75)


def test_recall_at_fpr_and_precision_at_k():
    assert recall_at_fpr(LABELS, SCORES, 0.0) == pytest.approx(2 / 3)
    assert recall_at_fpr(LABELS, SCORES, 0.34) == pytest.approx(1.0)
    assert precision_at_k(LABELS, SCORES, 3) == pytest.approx(2 / 3)


def test_fpr_threshold_keeps_validation_false_positives_within_target():
    rng = np.random.default_rng(0)
    labels = rng.random(2000) < 0.1
    scores = rng.normal(size=2000) + 2 * labels
    for target in (0.0, 0.01, 0.05, 0.2):
        t = fpr_threshold(labels, scores, target)
        fp_rate = np.mean(scores[~labels] >= t)
        assert fp_rate <= target
        assert fp_rate > target - 2 / (~labels).sum()  # and is not needlessly strict


def test_balanced_threshold_equalises_the_error_rates():
    # Hand-made: at 0.35, FPR 1/3 vs FNR 0; at 0.4, FPR 1/3 (0.4) = FNR 1/3 (0.35 missed).
    assert fit_threshold(LABELS, SCORES, "balanced") == 0.4
    rng = np.random.default_rng(1)
    labels = rng.random(4000) < 0.2
    scores = rng.normal(size=4000) + 2 * labels  # equal-variance classes: EER at 1.0
    t = fit_threshold(labels, scores, "balanced")
    fpr, fnr = np.mean(scores[~labels] >= t), np.mean(scores[labels] < t)
    assert abs(fpr - fnr) < 0.01
    assert t == pytest.approx(1.0, abs=0.1)


def test_fixed_threshold_is_not_fitted():
    assert fit_threshold(LABELS, SCORES, "fixed", fixed=0.5) == 0.5
    assert fit_threshold(~LABELS, SCORES, "fixed", fixed=0.5) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_metrics_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(500) < 0.15
    scores = np.round(rng.normal(size=500) + labels, 1)  # rounded: many ties
    assert roc_auc(labels, scores) == pytest.approx(sk.roc_auc_score(labels, scores))
    assert average_precision(labels, scores) == pytest.approx(
        sk.average_precision_score(labels, scores)
    )
    t = float(np.median(scores))
    d = decide(labels, scores, t)
    flagged = scores >= t
    assert d.precision == pytest.approx(sk.precision_score(labels, flagged))
    assert d.recall == pytest.approx(sk.recall_score(labels, flagged))
    assert d.f1 == pytest.approx(sk.f1_score(labels, flagged))
    assert d.accuracy == pytest.approx(sk.accuracy_score(labels, flagged))
    precision, recall, _ = sk.precision_recall_curve(labels, scores)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    assert best_f1(labels, scores) == pytest.approx(f1.max())
    fpr, tpr, _ = sk.roc_curve(labels, scores)
    assert recall_at_fpr(labels, scores, 0.01) == pytest.approx(tpr[fpr <= 0.01].max())


def test_per_type_auc_compares_each_type_with_normals_only():
    labels = np.array([0, 0, 0, 1, 1, 1, 1], dtype=bool)
    types = np.array([-1, -1, -1, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.15, 0.05])
    got = per_type_roc_auc(labels, types, scores, ("burst", "subtle", "absent"))
    assert got["burst"] == pytest.approx(1.0)
    assert got["subtle"] == pytest.approx(1 / 6)  # 0.15 beats 0.1 only
    assert "absent" not in got


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(1)
    labels = rng.random(400) < 0.2
    scores = rng.normal(size=400) + labels
    low, high = bootstrap_ci(roc_auc, labels, scores, n_boot=300, seed=0)
    assert low < roc_auc(labels, scores) < high
    assert high - low < 0.2
    assert bootstrap_ci(roc_auc, labels, scores, n_boot=300, seed=0) == (low, high)


def test_bootstrap_of_roc_auc_in_one_pass_equals_scikit_learn_per_resample():
    """The ROC-AUC bootstrap ranks all resamples at once; with ties in the scores it gives
    scikit-learn's AUC of every resample (the generic per-resample loop, same draws)."""
    rng = np.random.default_rng(5)
    labels = rng.random(400) < 0.1
    scores = np.round(rng.normal(size=400) + labels, 1)  # many ties
    fast = bootstrap_ci(roc_auc, labels, scores, n_boot=150, seed=2)
    looped = bootstrap_ci(lambda y, s: roc_auc(y, s), labels, scores, n_boot=150, seed=2)
    np.testing.assert_allclose(fast, looped, rtol=0, atol=1e-12)
    assert fast[0] < roc_auc(labels, scores) < fast[1]


def test_event_auc_ignores_padding():
    labels = np.array([[0, 1, 0], [0, 0, 0]], dtype=bool)
    scores = np.array([[0.1, 0.9, 5.0], [0.2, 0.3, 7.0]])
    mask = np.array([[1, 1, 0], [1, 1, 0]], dtype=bool)
    assert event_roc_auc(labels, scores, mask) == pytest.approx(1.0)


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [0.1, np.nan])


def test_threshold_comes_from_validation_and_test_labels_cannot_move_it():
    """The reported decision uses the validation threshold: relabelling the test set changes
    the test metrics but never the threshold, and the oracle is reported apart."""
    rng = np.random.default_rng(2)
    val_labels = rng.random(1000) < 0.1
    val_scores = rng.normal(size=1000) + 3 * val_labels
    test_labels = rng.random(1000) < 0.1
    test_scores = rng.normal(size=1000) + 1 * test_labels  # a harder test set
    threshold = fit_threshold(val_labels, val_scores)
    types = np.where(test_labels, 0, -1)
    result = evaluate(
        ScoredSplit(test_labels, test_scores, types),
        threshold=threshold,
        type_names=("x",),
        n_boot=50,
    )
    assert result["threshold"] == threshold == max_f1_threshold(val_labels, val_scores)
    assert result["threshold"] != max_f1_threshold(test_labels, test_scores)
    assert result["best_f1_oracle"] > result["f1"]  # test-fitted F1 is optimistic
    flipped = evaluate(
        ScoredSplit(~test_labels, test_scores, np.where(~test_labels, 0, -1)),
        threshold=threshold,
        type_names=("x",),
        n_boot=50,
    )
    assert flipped["threshold"] == threshold
    with pytest.raises(ValueError, match="unknown"):
        fit_threshold(val_labels, val_scores, rule="test_peek")


def test_a_population_restricts_every_metric_sequence_and_event_alike():
    rng = np.random.default_rng(3)
    n, width = 200, 6
    labels = rng.random(n) < 0.3
    scores = rng.normal(size=n) + labels
    event_labels = labels[:, None] & (rng.random((n, width)) < 0.5)
    event_scores = rng.normal(size=(n, width)) + event_labels
    mask = rng.random((n, width)) < 0.8
    keep = rng.random(n) < 0.6
    split = ScoredSplit(
        labels, scores, np.where(labels, 0, -1), None, event_labels, event_scores, mask
    )
    result = evaluate(split, threshold=0.5, type_names=("x",), n_boot=20, population=keep)
    assert result["n_test"] == keep.sum()
    assert result["n_test_outside_population"] == n - keep.sum()
    assert result["roc_auc"] == pytest.approx(sk.roc_auc_score(labels[keep], scores[keep]))
    assert result["per_type"]["x"] == pytest.approx(result["roc_auc"])
    kept_events = mask[keep]
    assert result["event_roc_auc"] == pytest.approx(
        sk.roc_auc_score(event_labels[keep][kept_events], event_scores[keep][kept_events])
    )
    assert (
        evaluate(split, threshold=0.5, type_names=("x",), n_boot=20)["event_roc_auc"]
        != (result["event_roc_auc"])
    )


def test_per_type_auc_can_compare_only_with_eligible_normals():
    # Type 0 can only hit "purchase" sessions, which score high whether anomalous or not.
    labels = np.array([0, 0, 0, 0, 1, 1], dtype=bool)
    types = np.array([-1, -1, -1, -1, 0, 0])
    scores = np.array([0.1, 0.2, 0.8, 0.9, 0.85, 0.95])
    eligible = np.array([[0], [0], [1], [1], [1], [1]], dtype=bool)
    against_all = per_type_roc_auc(labels, types, scores, ("needs_purchase",))
    against_eligible = per_type_roc_auc(labels, types, scores, ("needs_purchase",), eligible)
    assert against_all["needs_purchase"] == pytest.approx(7 / 8)
    assert against_eligible["needs_purchase"] == pytest.approx(3 / 4)


def test_curves_match_scikit_learn_with_ties():
    rng = np.random.default_rng(5)
    labels = rng.random(300) < 0.2
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounding makes ties
    fpr, tpr = roc_curve(labels, scores)
    sk_fpr, sk_tpr, _ = sk.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(labels, scores))
    recall, precision = pr_curve(labels, scores)
    sk_precision, sk_recall, _ = sk.precision_recall_curve(labels, scores, drop_intermediate=False)
    # scikit-learn lists thresholds lowest first and appends the (recall 0, precision 1) end
    np.testing.assert_allclose(recall, sk_recall[:-1][::-1])
    np.testing.assert_allclose(precision, sk_precision[:-1][::-1])


def test_curves_refuse_a_single_class():
    with pytest.raises(ValueError, match="both"):
        roc_curve(np.zeros(4, dtype=bool), np.arange(4.0))
    with pytest.raises(ValueError, match="anomalous"):
        pr_curve(np.zeros(4, dtype=bool), np.arange(4.0))
