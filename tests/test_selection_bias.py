"""Victim selection must not be detectable: at severity 0 nothing is changed, so no detector,
and no probe reading only what decides eligibility (length, purchases, prices), may separate
the labelled sequences from the normal ones in the headline metrics."""

import numpy as np
import pytest

from benchmark.anomalies.inject import ANOMALY_TYPES
from benchmark.detectors.registry import BASELINE_SETTINGS, SUPERVISED, UNSUPERVISED, create
from benchmark.evaluation.metrics import roc_auc
from benchmark.evaluation.stats import mean_ci
from benchmark.run.data import prepare_data
from benchmark.run.detect import population, training_view

from .conftest import compose_typed, detector_spec

SEEDS = range(10)
BASELINES = ("iforest", "markov", "lof", "hgb", "logreg", "selection_probe", "random")
# Seven intervals at once: each at 1 - 0.05 / 7, so that all seven contain 0.5 with
# probability 0.95 when nothing separates the classes (Bonferroni).
CONFIDENCE = 1 - 0.05 / len(BASELINES)


def severity_zero(seed: int, *overrides: str):
    config = compose_typed(
        [
            "experiment=smoke",
            "dataset.generator.n_users=3000",
            "anomaly.severity=0",
            "anomaly.severity_jitter=0",
            "anomaly.contamination.train=0.1",
            *overrides,
        ]
    )
    return config, prepare_data(config.dataset, config.anomaly, seed)


def auc_on_test(name: str, config, prepared, whole_split: bool = False) -> float:
    setting = BASELINE_SETTINGS[name][0]
    detector = create(name, "torch", detector_spec(config, prepared))
    detector.fit(training_view(prepared.arrays["train"], setting), prepared.arrays["val"])
    test = prepared.arrays["test"]
    keep = np.ones(len(test), bool) if whole_split else population(prepared, "test")
    return roc_auc(test.label[keep], detector.score(test).sequence[keep])


@pytest.fixture(scope="module")
def mixed_at_severity_zero():
    return [severity_zero(seed) for seed in SEEDS]


def test_nothing_changes_at_severity_zero(mixed_at_severity_zero):
    for _, prepared in mixed_at_severity_zero:
        for split in ("train", "val", "test"):
            assert prepared.labelled[split].label.sum() > 0
            assert not prepared.arrays[split].events["event_label"].any()


@pytest.mark.parametrize("name", BASELINES)
def test_no_baseline_and_no_probe_separates_labels_without_anomalies(mixed_at_severity_zero, name):
    aucs = [auc_on_test(name, config, prepared) for config, prepared in mixed_at_severity_zero]
    ci = mean_ci(aucs, confidence=CONFIDENCE)
    assert ci.low <= 0.5 <= ci.high, f"{name}: {ci} from {np.round(aucs, 3)}"
    assert abs(ci.mean - 0.5) < 0.04


def test_every_type_keeps_a_share_of_the_victims(mixed_at_severity_zero):
    """Types that need a purchase draw their victims from the purchase sequences among the
    victims: they get fewer than an equal share, but never none."""
    _, prepared = mixed_at_severity_zero[0]
    summary = prepared.summary["splits"]["train"]["per_type"]
    assert set(summary) == set(ANOMALY_TYPES)
    assert min(summary.values()) > 0
    assert summary["price_outlier"] < summary["click_flood"]


def test_the_probe_sees_selection_when_the_population_is_ignored():
    """The check can fail: price outliers only hit sequences with a priced purchase, so
    against every normal sequence (not the ones that could host the type) the probe, which
    sees purchases, separates the classes at severity 0."""
    only_price = [f"anomaly.mix.{t}={float(t == 'price_outlier')}" for t in ANOMALY_TYPES]
    config, prepared = severity_zero(0, *only_price)
    assert auc_on_test("selection_probe", config, prepared, whole_split=True) > 0.8
    assert abs(auc_on_test("selection_probe", config, prepared) - 0.5) < 0.15


def test_supervised_and_unsupervised_settings_see_what_they_should(mixed_at_severity_zero):
    _, prepared = mixed_at_severity_zero[0]
    train = prepared.arrays["train"]
    assert training_view(train, SUPERVISED) is train
    hidden = training_view(train, UNSUPERVISED)
    assert len(hidden) == len(train)
    assert not hidden.label.any()
    assert not hidden.event_label.any()
    assert not hidden.anomaly_class.any()
    clean = training_view(train, "semi_supervised")
    assert len(clean) == (~train.label).sum()
    assert not clean.label.any()
