"""Trained detectors find blatant anomalies and stay at chance on severity-0 ones.

Small synthetic worlds and short training, so the whole module runs in about four minutes on
two CPU cores. The margins are wide: during development the LSTM and Transformer reached
ROC-AUC 0.997-1.000 on blatant floods and 0.51-0.55 at severity 0.
"""

import pytest

from benchmark.detectors.registry import create
from benchmark.evaluation.metrics import per_type_roc_auc, roc_auc
from benchmark.run.data import prepare_data

from .conftest import compose_typed, detector_spec, only_type

SELF_SUPERVISED = ("next_event", "masked", "forecast")
DEEP = ("lstm", "gru", "transformer", "multimodal")


@pytest.fixture(scope="module")
def flood_data():
    """Clean training data; validation and test with 20% click floods at severity 0 or 1."""
    prepared = {}
    for severity in (0.0, 1.0):
        config = compose_typed(
            [
                "experiment=smoke",
                f"anomaly.severity={severity}",
                "anomaly.severity_jitter=0",
                "anomaly.contamination.train=0",
                "anomaly.contamination.val=0.2",
                "anomaly.contamination.test=0.2",
                "dataset.generator.n_users=600",
                "train.epochs=6",
                "train.lr=3e-3",
                *only_type("click_flood"),
            ]
        )
        prepared[severity] = (config, prepare_data(config.dataset, config.anomaly, 0))
    return prepared


def trained_auc(config, prepared, model: str, objective: str) -> float:
    detector = create(model, "torch", detector_spec(config, prepared, model, objective))
    detector.fit(prepared.arrays["train"], prepared.arrays["val"])
    test = prepared.arrays["test"]
    return roc_auc(test.label, detector.score(test).sequence)


# The fast tier trains one pair (the quickest); the other eleven run with -m slow (7 min).
@pytest.mark.parametrize(
    ("model", "objective"),
    [
        (model, objective)
        if (model, objective) == ("lstm", "forecast")
        else pytest.param(model, objective, marks=pytest.mark.slow)
        for model in DEEP
        for objective in SELF_SUPERVISED
    ],
)
def test_self_supervised_detectors_find_blatant_floods_and_miss_invisible_ones(
    flood_data, model, objective
):
    blatant = trained_auc(*flood_data[1.0], model, objective)
    invisible = trained_auc(*flood_data[0.0], model, objective)
    assert blatant > 0.9, blatant
    assert abs(invisible - 0.5) < 0.15, invisible


@pytest.fixture(scope="module")
def labelled_invisible_floods():
    """Click floods at severity 0 (sequences labelled but unchanged) in every split."""
    config = compose_typed(
        [
            "experiment=smoke",
            "anomaly.severity=0.0",
            "anomaly.severity_jitter=0",
            "anomaly.contamination.train=0.2",
            "anomaly.contamination.val=0.2",
            "anomaly.contamination.test=0.2",
            "dataset.generator.n_users=600",
            "train.epochs=6",
            "train.lr=3e-3",
            *only_type("click_flood"),
        ]
    )
    return config, prepare_data(config.dataset, config.anomaly, 0)


@pytest.mark.parametrize(
    "model", ["lstm", *(pytest.param(m, marks=pytest.mark.slow) for m in DEEP[1:])]
)
def test_classifiers_stay_at_chance_on_labels_without_anomalies(labelled_invisible_floods, model):
    """A supervised detector trained on severity-0 labels has nothing to learn: anything far
    from 0.5 would be a leak (through padding, ordering, splits or preprocessing). Click floods
    fit every sequence, so no eligibility base rate is in play either."""
    auc = trained_auc(*labelled_invisible_floods, model, "classify")
    assert abs(auc - 0.5) < 0.15, auc


@pytest.fixture(scope="module")
def blatant_mix():
    """All nine types at severity 1, 20% of every split (training included, for `classify`).
    3,000 users give about 140 training examples per type; batches of 128 keep it fast."""
    config = compose_typed(
        [
            "experiment=smoke",
            "anomaly.severity=1.0",
            "anomaly.severity_jitter=0",
            "anomaly.contamination.train=0.2",
            "anomaly.contamination.val=0.2",
            "anomaly.contamination.test=0.2",
            "dataset.generator.n_users=3000",
            "train.epochs=25",
            "train.patience=8",
            "train.batch_size=128",
            "train.lr=5e-3",
        ]
    )
    return config, prepare_data(config.dataset, config.anomaly, 0)


@pytest.mark.slow  # up to 25 epochs for each of four detectors
@pytest.mark.parametrize("model", DEEP)
def test_classifiers_separate_a_blatant_mix(blatant_mix, model):
    """Measured on the reference CPU: LSTM 0.931, GRU 0.926, Transformer 0.925, multimodal
    0.914. The ceiling is about 0.95, not 1: with ~140 examples a type, every detector catches
    the eight other types at per-type ROC-AUC 0.91-1.00 but not session hijack (0.38-0.49), a
    foreign segment of normal-looking behaviour that the Transformer learns (ROC-AUC 1.0) when
    trained on hijacks only. Funnel violations (a purchase moved first) guard the Transformer's
    input scale: with the summed embeddings drowned by the positions they scored 0.39."""
    assert trained_auc(*blatant_mix, model, "classify") > 0.9


def test_per_type_detectability_rises_with_severity():
    """The severity knob moves what a detector can see: the Isolation Forest baseline's mean
    per-type ROC-AUC rises from near chance at severity 0 to clearly above it at 1."""
    mean_auc = {}
    for severity in (0.0, 0.5, 1.0):
        config = compose_typed(
            [
                "experiment=smoke",
                "model=iforest",
                f"anomaly.severity={severity}",
                "anomaly.severity_jitter=0",
                "anomaly.contamination.train=0",
                "anomaly.contamination.val=0.2",
                "anomaly.contamination.test=0.2",
                "dataset.generator.n_users=1500",
            ]
        )
        prepared = prepare_data(config.dataset, config.anomaly, 0)
        detector = create(
            "iforest",
            "numpy",
            detector_spec(config, prepared),
        )
        detector.fit(prepared.arrays["train"], prepared.arrays["val"])
        test, lab = prepared.arrays["test"], prepared.labelled["test"]
        per_type = per_type_roc_auc(
            test.label,
            lab.anomaly_type,
            detector.score(test).sequence,
            lab.type_names,
            lab.eligible,
        )
        assert len(per_type) == len(lab.type_names)
        mean_auc[severity] = sum(per_type.values()) / len(per_type)
    assert abs(mean_auc[0.0] - 0.5) < 0.1, mean_auc
    assert mean_auc[0.0] < mean_auc[0.5] < mean_auc[1.0], mean_auc
    assert mean_auc[1.0] > 0.75, mean_auc
