import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmark.anomalies import ANOMALY_TYPES
from benchmark.baselines import RandomDetector, session_features
from benchmark.data import prepare_data
from benchmark.detectors import create
from benchmark.errors import ConfigError
from benchmark.metrics import roc_auc
from benchmark.pipeline import SCORES_FILE
from benchmark.run import run

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


@pytest.mark.parametrize(("name", "floor"), [("iforest", 0.9), ("markov", 0.9)])
def test_baselines_catch_blatant_click_floods(blatant_flood, name, floor):
    config, prepared = blatant_flood
    detector = build(name, config, prepared)
    detector.fit(prepared.arrays["train"], prepared.arrays["val"])
    test = prepared.arrays["test"]
    assert roc_auc(test.label, detector.score(test).sequence) > floor


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
    padded = type(test)(
        **{k: (np.pad(v, ((0, 0), (0, 5))) if v.ndim == 2 else v) for k, v in vars(test).items()}
    )
    np.testing.assert_allclose(session_features(padded), features)


def test_unknown_model_and_framework_pairs_name_what_exists(blatant_flood):
    with pytest.raises(ConfigError, match="framework='tensorflow' has no detectors"):
        create("lstm", "tensorflow", detector_spec(*blatant_flood))


def test_record_metrics_match_an_independent_computation(compose_config, tmp_path):
    result = run(compose_config(["experiment=smoke", "model=iforest", f"results_dir={tmp_path}"]))
    saved = np.load(result.run_dir / SCORES_FILE)
    metrics = result.record["metrics"]
    assert result.record["framework"] == "numpy"
    assert metrics["roc_auc"] == pytest.approx(
        roc_auc_score(saved["test_label"], saved["test_score"])
    )
    assert metrics["pr_auc"] == pytest.approx(
        average_precision_score(saved["test_label"], saved["test_score"])
    )
    assert metrics["roc_auc_ci"][0] <= metrics["roc_auc"] <= metrics["roc_auc_ci"][1]
    flagged = saved["test_score"] >= metrics["threshold"]
    assert metrics["recall"] == pytest.approx(flagged[saved["test_label"]].mean())
    assert set(metrics["per_type"]) <= set(ANOMALY_TYPES)
    assert result.record["n_params"] > 0
    assert result.record["timing"]["infer_seq_per_s"] > 0
