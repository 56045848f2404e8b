"""PCA scores of sequence representations (article 4's setup): the statistics against their
textbook definitions, and the harness fitting them on training data only."""

from types import SimpleNamespace

import numpy as np
import pytest

from benchmark.detectors.pca import fit_pca, pca_scores
from benchmark.detectors.registry import Scores
from benchmark.run.detect import fit_representation_pca, with_pca_scores


def correlated(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(5, 5)) * np.array([3.0, 2.0, 1.0, 0.5, 0.1])[:, None]
    return rng.normal(size=(n, 5)) @ mixing + 7.0


def test_t2_with_every_component_is_the_mahalanobis_distance():
    train, new = correlated(400, 0), correlated(20, 1)
    pca = fit_pca(train, components=5)
    inverse = np.linalg.inv(np.cov(train, rowvar=False))
    centred = new - train.mean(axis=0)
    expected = np.einsum("ni,ij,nj->n", centred, inverse, centred)
    np.testing.assert_allclose(pca_scores(pca, new)["t2"], expected, rtol=1e-8)
    np.testing.assert_allclose(pca_scores(pca, new)["spe"], 0.0, atol=1e-9)
    assert pca.explained_variance_ratio == pytest.approx(1.0)


def test_components_are_orthonormal_by_decreasing_variance_and_spe_is_the_residual():
    train = correlated(400, 2)
    pca = fit_pca(train, components=2)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(2), atol=1e-10)
    assert pca.variances[0] >= pca.variances[1]
    inside = pca.mean + np.array([[1.5, -2.0], [0.3, 0.7]]) @ pca.components
    np.testing.assert_allclose(pca_scores(pca, inside)["spe"], 0.0, atol=1e-9)
    # A step orthogonal to the kept components is all residual and no T^2.
    rest = np.linalg.svd(train - train.mean(axis=0), full_matrices=False)[2][2]
    off = pca.mean + 3.0 * rest
    scores = pca_scores(pca, off[None, :])
    assert scores["spe"][0] == pytest.approx(9.0)
    assert scores["t2"][0] == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < pca.explained_variance_ratio < 1.0


def test_more_components_than_dimensions_keeps_all_and_one_row_is_refused():
    assert fit_pca(correlated(50, 3), components=64).k == 5
    with pytest.raises(ValueError, match="at least two"):
        fit_pca(np.ones((1, 5)), components=2)


class Represents:
    """A detector whose representation of each sequence is given."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def represent(self, data) -> np.ndarray:
        return self.table[data.rows]


def config(objective: str, components: int = 2):
    return SimpleNamespace(
        objective=SimpleNamespace(name=SimpleNamespace(value=objective)),
        pca=SimpleNamespace(components=components, statistic="t2"),
    )


@pytest.mark.parametrize(("objective", "fit_on"), [("classify", 300), ("masked", 330)])
def test_pca_is_fitted_on_training_rows_only_normal_ones_when_supervised(objective, fit_on):
    table = correlated(330, 4)
    label = np.zeros(330, bool)
    if objective == "classify":  # unsupervised training sees no labels (training_view)
        label[300:] = True
    train = SimpleNamespace(rows=np.arange(330), label=label)
    pca, summary = fit_representation_pca(Represents(table), train, config(objective))
    assert summary["n_fit"] == fit_on
    rows = np.arange(300) if objective == "classify" else np.arange(330)
    np.testing.assert_allclose(pca.mean, table[rows].mean(axis=0))
    # Whatever the anomalous training rows hold, a supervised fit does not move.
    table[300:] += 100.0
    again, _ = fit_representation_pca(Represents(table), train, config(objective))
    moved = not np.allclose(again.mean, pca.mean)
    assert moved == (objective != "classify")


def test_pca_score_replaces_the_sequence_score_and_keeps_the_others_beside_it():
    pca = fit_pca(correlated(100, 5), components=2)
    new = correlated(6, 6)
    before = Scores(np.arange(6.0), np.ones((6, 3)), {"top_k_miss_rate": np.zeros(6)})
    after = with_pca_scores(before, pca, new, config("classify").pca)
    stats = pca_scores(pca, new)
    np.testing.assert_array_equal(after.sequence, stats["t2"])
    np.testing.assert_array_equal(after.alternatives["pca_spe"], stats["spe"])
    np.testing.assert_array_equal(after.alternatives["objective_score"], np.arange(6.0))
    assert "top_k_miss_rate" in after.alternatives
    assert after.event is before.event
