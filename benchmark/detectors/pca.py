"""PCA anomaly scores on a detector's sequence representations (NumPy only).

Article 4's setup reduces its encoder's representation with PCA before detecting anomalies. The
harness does the reduction outside the model, in the framework-neutral boundary: it fits the
principal components on training representations only, then scores any split with one of the
two classic PCA statistics (Jackson & Mudholkar, 1979):

- ``t2``, Hotelling's T^2: the squared distance from the training mean inside the kept
  components, each component divided by its variance (a Mahalanobis distance there);
- ``spe``, the squared prediction error: the squared residual outside the kept components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STATISTICS: tuple[str, ...] = ("t2", "spe")
VARIANCE_FLOOR = 1e-12  # a component without variance would divide by zero in T^2


@dataclass(frozen=True)
class PCAModel:
    mean: np.ndarray  # (H,)
    components: np.ndarray  # (k, H), orthonormal rows, by decreasing variance
    variances: np.ndarray  # (k,) variance of the training data along each component
    explained_variance_ratio: float  # share of the total training variance the k keep

    @property
    def k(self) -> int:
        return len(self.variances)


def fit_pca(x: np.ndarray, components: int) -> PCAModel:
    """The top ``components`` principal components of ``x`` (N, H), in float64; fewer when the
    data have fewer dimensions or rows."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"PCA needs at least two representations (N, H), got shape {x.shape}")
    mean = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    variances = singular**2 / (len(x) - 1)
    k = min(components, len(variances))
    total = float(variances.sum())
    return PCAModel(
        mean=mean,
        components=vt[:k],
        variances=variances[:k],
        explained_variance_ratio=float(variances[:k].sum() / total) if total > 0 else 1.0,
    )


def pca_scores(model: PCAModel, x: np.ndarray) -> dict[str, np.ndarray]:
    """Both statistics (N,) for representations ``x`` (N, H)."""
    centred = np.asarray(x, dtype=np.float64) - model.mean
    projected = centred @ model.components.T  # (N, k)
    t2 = (projected**2 / np.maximum(model.variances, VARIANCE_FLOOR)).sum(axis=1)
    residual = centred - projected @ model.components
    return {"t2": t2, "spe": (residual**2).sum(axis=1)}
