"""Masked-event pretraining before the objective's own training (article 4's setup): the
harness trains a masked-objective twin, carries every weight but the output heads over, then
fine-tunes. Framework-neutral: it goes through the detectors' canonical weights only."""

from dataclasses import replace
from typing import ClassVar

import numpy as np
import pytest

from benchmark.config import ObjectiveName, check_config
from benchmark.errors import ConfigError
from benchmark.records.record import RunRecord
from benchmark.run import detect
from benchmark.run.experiment import as_config, run

from .conftest import compose_typed, detector_spec


class FakeDetector:
    """Records what the harness asks of it; weights are one encoder and one head array."""

    made: ClassVar[list["FakeDetector"]] = []

    def __init__(self, spec) -> None:
        self.spec = spec
        self.weights = {"encoder.w": np.zeros(3), "heads.out": np.zeros(2)}
        self.loaded: dict | None = None
        FakeDetector.made.append(self)

    def fit(self, train, val) -> dict:
        # Training leaves a mark that says which objective produced the weights.
        mark = 1.0 if self.spec.objective.name == ObjectiveName.masked else 2.0
        self.weights = {k: v + mark for k, v in self.weights.items()}
        return {"epochs": self.spec.train.epochs, "history": []}

    def canonical_weights(self) -> dict:
        return {k: v.copy() for k, v in self.weights.items()}

    def load_weights(self, weights: dict) -> None:
        self.loaded = {k: v.copy() for k, v in weights.items()}
        self.weights = self.loaded

    def score(self, data):
        raise AssertionError("pretraining never scores")

    def represent(self, data):
        raise AssertionError("pretraining never reads representations")

    def inspect(self, data, index):
        raise AssertionError("pretraining never inspects")

    def stateful_scorer(self):
        raise AssertionError("pretraining never scores online")

    n_params = 5
    modalities_used = ("behaviour",)


def test_pretraining_carries_the_encoder_not_the_heads(monkeypatch):
    config = compose_typed(["experiment=smoke", "train.pretrain_epochs=3", "train.pretrain_lr=0.5"])
    from benchmark.run.data import prepare_data

    prepared = prepare_data(config.dataset, config.anomaly, 0)
    spec = replace(detector_spec(config, prepared, "transformer", "classify"), run_dir="somewhere")
    FakeDetector.made = []
    monkeypatch.setattr(detect, "create", lambda model, framework, s: FakeDetector(s))
    detector = FakeDetector(spec)
    report = detect.train_detector(detector, spec, None, None)
    pretrained = FakeDetector.made[1]
    assert pretrained.spec.objective.name == ObjectiveName.masked
    assert (pretrained.spec.train.epochs, pretrained.spec.train.lr) == (3, 0.5)
    assert pretrained.spec.train.pretrain_epochs == 0  # no pretraining of the pretraining
    assert pretrained.spec.run_dir is None  # its weights are not the run's checkpoint
    np.testing.assert_array_equal(detector.loaded["encoder.w"], np.full(3, 1.0))  # pretrained
    np.testing.assert_array_equal(detector.loaded["heads.out"], np.zeros(2))  # fresh
    np.testing.assert_array_equal(detector.weights["encoder.w"], np.full(3, 3.0))  # fine-tuned
    assert report["pretraining"]["epochs"] == 3
    assert RunRecord("r", training=report).epochs_trained() == config.train.epochs + 3


def test_article_4_pipeline_pretrains_fine_tunes_and_scores_by_pca(compose_config, tmp_path):
    overrides = [
        "experiment=smoke",
        "framework=torch",
        "model=transformer",
        "model.share_layers=true",
        "train.pretrain_epochs=1",
        "pca.components=4",
        f"results_dir={tmp_path}",
    ]
    result = run(compose_config(overrides))
    record = result.record
    assert record.status == "ok"
    training = record.training
    assert len(training["pretraining"]["history"]) == 1
    assert training["pretraining"]["history"][0]["train_loss"] > 0  # masked NLL, not BCE
    assert [h["epoch"] for h in training["history"]] == [1, 2]
    assert record.pca["components"] == 4
    assert record.pca["fit_on"] == "normal training sequences"
    assert (
        record.pca["n_fit"]
        == record.data["splits"]["train"]["sequences"]
        - (record.data["splits"]["train"]["anomalous_sequences"])
    )
    assert set(record.result.alternative_roc_auc) == {"objective_score", "pca_spe"}
    with np.load(result.run_dir / "scores.npz") as saved:  # the PCA statistic is the score
        assert np.all(saved["test_score"] >= 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=iforest", "train.pretrain_epochs=2"], "not the baseline iforest"),
        (["train.pretrain_epochs=-1"], "must be >= 0"),
        (["train.pretrain_lr=0"], "must be > 0"),
        (["model=lstm", "model.share_layers=true"], "not lstm"),
        (["model=markov", "pca.components=8"], "not the baseline markov"),
        (["pca.components=-2"], "must be >= 0"),
    ],
)
def test_pretraining_and_sharing_misconfigurations_name_the_fix(compose_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_config(as_config(compose_config(overrides)))
