from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmark.anomalies.inject import ANOMALY_TYPES
from benchmark.detectors.baselines import RandomDetector, eligibility_features, session_features
from benchmark.detectors.registry import create
from benchmark.errors import ConfigError
from benchmark.evaluation.metrics import roc_auc
from benchmark.run.data import prepare_data
from benchmark.run.detect import SCORES_FILE
from benchmark.run.experiment import run
from datasets.features import FIRST_KNOWN
from datasets.schema import EventType

from .conftest import compose_typed, detector_spec, only_type


@pytest.fixture(scope="module")
def blatant_flood():
    """Prepared smoke-sized data with clean training and blatant click floods in val/test."""
    config = compose_typed(
        [
            "experiment=smoke",
            "anomaly.severity=1.0",
            "anomaly.severity_jitter=0",
            "anomaly.contamination.train=0",
            *only_type("click_flood"),
        ]
    )
    return config, prepare_data(config.dataset, config.anomaly, 0)


def build(name: str, config, prepared):
    return create(name, "torch", detector_spec(config, prepared))


@pytest.mark.parametrize(
    ("name", "floor"),
    [
        ("iforest", 0.9),
        ("markov", 0.9),
        ("lof", 0.9),
        ("knn", 0.9),
        ("ocsvm", 0.9),
        ("mean_shift", 0.9),
    ],
)
def test_baselines_catch_blatant_click_floods(blatant_flood, name, floor):
    config, prepared = blatant_flood
    detector = build(name, config, prepared)
    detector.fit(prepared.arrays["train"], prepared.arrays["val"])
    test = prepared.arrays["test"]
    assert roc_auc(test.label, detector.score(test).sequence) > floor


@pytest.mark.parametrize("name", ["hgb", "logreg", "random_forest", "decision_tree"])
def test_supervised_baselines_learn_blatant_floods_from_labels(blatant_flood, name):
    config, prepared = blatant_flood
    val, test = prepared.arrays["val"], prepared.arrays["test"]
    detector = build(name, config, prepared)
    detector.fit(val, val)  # the labelled split of this fixture (its training data is clean)
    assert roc_auc(test.label, detector.score(test).sequence) > 0.9
    assert detector.n_params > 0


def test_the_selection_probe_reads_eligibility_not_behaviour(blatant_flood):
    """Blatant floods leave length and purchases as they were at the start of the sequence, but
    the probe only sees eligibility features: what it separates, selection made separable."""
    _config, prepared = blatant_flood
    features = eligibility_features(prepared.arrays["test"])
    assert features.shape == (len(prepared.arrays["test"]), 7)
    test = prepared.arrays["test"]
    assert np.array_equal(features[:, 0], np.log(np.maximum(test.length, 1)))
    purchase = ((test.event_type - FIRST_KNOWN == EventType.PURCHASE) & test.mask).any(axis=1)
    assert np.array_equal(features[:, 3].astype(bool), purchase)


def test_random_baseline_is_at_chance_and_scores_every_event(blatant_flood):
    config, prepared = blatant_flood
    test = prepared.arrays["test"]
    aucs = [roc_auc(test.label, RandomDetector(seed).score(test).sequence) for seed in range(40)]
    assert abs(np.mean(aucs) - 0.5) < 0.04  # 40 draws: standard error about 0.013
    detector = build("random", config, prepared)
    scores = detector.score(test)
    np.testing.assert_array_equal(scores.sequence, detector.score(test).sequence)
    assert scores.event.shape == test.mask.shape
    assert np.all(scores.event[~test.mask] == 0)


def test_session_features_are_finite_and_padding_invariant(blatant_flood):
    _, prepared = blatant_flood
    test = prepared.arrays["test"]
    features = session_features(test)
    assert features.shape[0] == len(test)
    assert np.all(np.isfinite(features))
    padded = replace(test, width=test.width + 5)
    assert padded.mask.shape[1] == test.mask.shape[1] + 5
    np.testing.assert_allclose(session_features(padded), features)


def test_unknown_model_and_framework_pairs_name_what_exists(blatant_flood):
    with pytest.raises(ConfigError, match="framework='tensorflow' has no detectors"):
        create("lstm", "tensorflow", detector_spec(*blatant_flood))


def test_record_metrics_match_an_independent_computation(compose_config, tmp_path):
    overrides = ["experiment=smoke", "model=iforest", "setting=unsupervised"]
    result = run(compose_config([*overrides, f"results_dir={tmp_path}", *only_type("timing_bot")]))
    saved = np.load(result.run_dir / SCORES_FILE)
    metrics = result.record.result
    assert result.record.framework == "numpy"
    assert result.record.setting == "unsupervised"
    # timing_bot needs 4 events: shorter sequences are outside the reference population
    keep = saved["test_population"]
    assert 0 < metrics.n_test_outside_population == (~keep).sum()
    labels, scores = saved["test_label"][keep], saved["test_score"][keep]
    assert metrics.roc_auc == pytest.approx(roc_auc_score(labels, scores))
    assert metrics.pr_auc == pytest.approx(average_precision_score(labels, scores))
    record_text = (result.run_dir / "record.json").read_text()
    assert "NaN" not in record_text
    assert "Infinity" not in record_text
    assert metrics.roc_auc_ci[0] <= metrics.roc_auc <= metrics.roc_auc_ci[1]
    flagged = scores >= metrics.threshold
    assert metrics.recall == pytest.approx(flagged[labels].mean())
    assert set(metrics.per_type) <= set(ANOMALY_TYPES)
    assert result.record.n_params > 0
    assert result.record.timing.infer_seq_per_s > 0


def test_kernel_and_clustering_comparators_fit_on_a_sample_of_the_training_split(blatant_flood):
    config, prepared = blatant_flood
    train = prepared.arrays["train"]
    detector = build("ocsvm", config, prepared)
    detector.fit_sample = len(train.label) // 2
    facts = detector.fit(train, prepared.arrays["val"])
    assert facts["fit_sequences"] == len(train.label) // 2
