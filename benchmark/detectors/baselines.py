"""Framework-neutral baselines that show where deep detectors earn their cost.

- ``random``: uniform scores (the floor every metric is read against);
- ``iforest``: hand-crafted session features (length, event-type mix, pace, gaps, prices,
  diversity) scored by scikit-learn's Isolation Forest, fitted on the training split;
- ``markov``: a first-order Markov chain over (event type, time-gap bucket) tokens with add-alpha
  smoothing; an event's score is its negative log-likelihood given the previous event, a
  sequence's score their mean;
- ``lof``: the same session features, standardised, scored by scikit-learn's Local Outlier
  Factor (novelty mode: fitted on the training split, applied to new sequences);
- ``hgb`` (supervised): gradient-boosted trees on the session features
  (HistGradientBoostingClassifier), the probability of "anomalous" as the score;
- ``logreg`` (supervised): logistic regression on the standardised session features;
- the comparators the source articles name, on the same session features: ``knn`` (the mean
  distance to the 5 nearest training sequences), ``ocsvm`` (a one-class SVM, RBF kernel),
  ``mean_shift`` (the distance to the nearest mode MeanShift finds in the training
  sequences), and supervised ``random_forest`` and ``decision_tree``; the kernel and
  clustering ones fit on at most ``FIT_SAMPLE`` training sequences (their cost grows with the
  square of the sequences);
- ``selection_probe`` (supervised): logistic regression on what decides whether an anomaly
  type can be injected into a sequence (length, purchase presence and position, priced
  events). It sees no behaviour, so it must sit at chance: above chance it shows that victim
  selection, not the anomaly, separates the classes.

Which detection setting each supports: ``benchmark.detectors.registry.BASELINE_SETTINGS``.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.cluster import MeanShift
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    IsolationForest,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM
from sklearn.tree import DecisionTreeClassifier

from benchmark.detectors.registry import DetectorSpec, Scores, register
from datasets.features import FIRST_KNOWN, N_GAP_BUCKETS, UNKNOWN, SequenceArrays
from datasets.schema import EventType

LOG1P_ONE_SECOND = float(np.log1p(1.0))


class RandomDetector:
    modalities_used = ("behaviour",)
    n_params = 0

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def fit(self, train: SequenceArrays, val: SequenceArrays) -> dict:
        return {"fit_seconds": 0.0}

    def score(self, data: SequenceArrays) -> Scores:
        rng = np.random.default_rng(self.seed + len(data))
        return Scores(rng.random(len(data)), np.where(data.mask, rng.random(data.mask.shape), 0))


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=1)
    return np.where(count > 0, (values * mask).sum(axis=1) / np.maximum(count, 1), 0.0)


def _masked_std(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mean = _masked_mean(values, mask)
    return np.sqrt(_masked_mean((values - mean[:, None]) ** 2, mask))


def session_features(data: SequenceArrays) -> np.ndarray:
    """(N, F) hand-crafted features of each sequence, from the encoded arrays only."""
    mask = data.mask
    length = np.maximum(data.length, 1).astype(np.float64)
    types = data.event_type - FIRST_KNOWN
    type_share = np.stack([((types == t) & mask).sum(1) / length for t in EventType], axis=1)
    gap_mask = mask.copy()
    gap_mask[:, 0] = False  # the first event has no gap
    gaps = data.log_gap.astype(np.float64)
    duration = np.log1p(np.expm1(gaps * gap_mask).sum(axis=1))
    priced = mask & (data.price_bucket != UNKNOWN)
    price = data.log_price.astype(np.float64)
    price_max = np.where(priced, price, -np.inf).max(axis=1)
    same_item = np.zeros_like(mask)
    same_item[:, 1:] = (data.item[:, 1:] == data.item[:, :-1]) & mask[:, 1:]
    return np.column_stack(
        [
            np.log(length),
            type_share,
            _masked_mean(gaps, gap_mask),
            _masked_std(gaps, gap_mask),
            np.where(gap_mask, gaps, np.inf).min(axis=1).clip(max=20.0),
            _masked_mean(gaps < LOG1P_ONE_SECOND, gap_mask),
            np.log(length) - duration,  # log events per second of session
            _masked_mean(price, priced),
            _masked_std(price, priced),
            np.where(np.isfinite(price_max), price_max - _masked_mean(price, priced), 0.0),
            [len(np.unique(r[m])) / n for r, m, n in zip(data.item, mask, length, strict=True)],
            [len(np.unique(r[m])) / n for r, m, n in zip(data.category, mask, length, strict=True)],
            same_item.sum(axis=1) / length,
        ]
    )


class MarkovDetector:
    modalities_used = ("behaviour",)

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha
        self.n_tokens = (FIRST_KNOWN + len(EventType)) * N_GAP_BUCKETS
        self.log_prob = np.zeros((self.n_tokens + 1, self.n_tokens))  # last row: start state

    def _tokens(self, data: SequenceArrays) -> np.ndarray:
        return data.event_type * N_GAP_BUCKETS + data.gap_bucket

    def _previous(self, tokens: np.ndarray) -> np.ndarray:
        prev = np.full_like(tokens, self.n_tokens)
        prev[:, 1:] = tokens[:, :-1]
        return prev

    def fit(self, train: SequenceArrays, val: SequenceArrays) -> dict:
        start = time.perf_counter()
        tokens = self._tokens(train)
        counts = np.full(self.log_prob.shape, self.alpha)
        np.add.at(counts, (self._previous(tokens)[train.mask], tokens[train.mask]), 1.0)
        self.log_prob = np.log(counts / counts.sum(axis=1, keepdims=True))
        return {"fit_seconds": time.perf_counter() - start}

    def score(self, data: SequenceArrays) -> Scores:
        tokens = self._tokens(data)
        nll = -self.log_prob[self._previous(tokens), tokens]
        event = np.where(data.mask, nll, 0.0)
        return Scores(_masked_mean(event, data.mask), event)

    @property
    def n_params(self) -> int:
        return int(self.log_prob.size)


def eligibility_features(data: SequenceArrays) -> np.ndarray:
    """(N, F) what the injectors' eligibility rules read: log length, length thresholds, and
    whether the sequence has a purchase, a priced purchase, a purchase after its first event,
    and a priced event."""
    mask = data.mask
    purchase = (data.event_type - FIRST_KNOWN == EventType.PURCHASE) & mask
    priced = (data.price_bucket != UNKNOWN) & mask
    later = purchase.copy()
    later[:, 0] = False
    length = np.maximum(data.length, 1)
    return np.column_stack(
        [
            np.log(length),
            length >= 3,
            length >= 4,
            purchase.any(axis=1),
            (purchase & priced).any(axis=1),
            later.any(axis=1),
            priced.any(axis=1),
        ]
    ).astype(np.float64)


class SklearnDetector:
    """A scikit-learn estimator on sequence features: outlier detectors (``score_samples``,
    higher = more normal) fitted on the training sequences, or classifiers
    (``predict_proba``) fitted on their labels."""

    modalities_used = ("behaviour",)

    def __init__(
        self,
        estimator,
        features=session_features,
        supervised: bool = False,
        fit_sample: int | None = None,
        seed: int = 0,
    ) -> None:
        self.estimator, self.features, self.supervised = estimator, features, supervised
        self.fit_sample, self.seed = fit_sample, seed

    def fit(self, train: SequenceArrays, val: SequenceArrays) -> dict:
        start = time.perf_counter()
        x, y = self.features(train), train.label
        if self.fit_sample is not None and len(x) > self.fit_sample:
            keep = np.random.default_rng(self.seed).choice(len(x), self.fit_sample, replace=False)
            x, y = x[np.sort(keep)], y[np.sort(keep)]
        if self.supervised:
            self.estimator.fit(x, y)
        else:
            self.estimator.fit(x)
        return {"fit_seconds": time.perf_counter() - start, "fit_sequences": len(x)}

    def score(self, data: SequenceArrays) -> Scores:
        x = self.features(data)
        if self.supervised:
            return Scores(self.estimator.predict_proba(x)[:, 1].astype(np.float64))
        return Scores(-self.estimator.score_samples(x))

    @property
    def n_params(self) -> int:
        final = self.estimator[-1] if isinstance(self.estimator, Pipeline) else self.estimator
        if hasattr(final, "coef_"):
            return int(final.coef_.size + final.intercept_.size)
        if hasattr(final, "estimators_"):  # Isolation Forest: the nodes of its trees
            return int(sum(t.tree_.node_count for t in final.estimators_))
        if hasattr(final, "_predictors"):  # gradient-boosted trees: their nodes
            return int(sum(len(p.nodes) for it in final._predictors for p in it))
        if hasattr(final, "tree_"):  # one decision tree: its nodes
            return int(final.tree_.node_count)
        if hasattr(final, "support_vectors_"):  # an SVM: its support vectors
            return int(final.support_vectors_.size)
        if hasattr(final, "modes_"):  # mean shift: its modes
            return int(final.modes_.size)
        return int(getattr(final, "n_samples_fit_", 0) * getattr(final, "n_features_in_", 0))


@register("numpy", "random")
def _random(spec: DetectorSpec) -> RandomDetector:
    return RandomDetector(spec.seed)


@register("numpy", "iforest")
def _iforest(spec: DetectorSpec) -> SklearnDetector:
    return SklearnDetector(IsolationForest(n_estimators=200, random_state=spec.seed))


@register("numpy", "markov")
def _markov(spec: DetectorSpec) -> MarkovDetector:
    return MarkovDetector()


@register("numpy", "lof")
def _lof(spec: DetectorSpec) -> SklearnDetector:
    lof = LocalOutlierFactor(n_neighbors=20, novelty=True)
    return SklearnDetector(make_pipeline(StandardScaler(), lof))


@register("numpy", "hgb")
def _hgb(spec: DetectorSpec) -> SklearnDetector:
    trees = HistGradientBoostingClassifier(random_state=spec.seed)
    return SklearnDetector(trees, supervised=True)


@register("numpy", "logreg")
def _logreg(spec: DetectorSpec) -> SklearnDetector:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return SklearnDetector(model, supervised=True)


# Fitted on at most this many training sequences: a kernel or a mean shift costs the square.
FIT_SAMPLE = 5_000


class NearestNeighbourScore(BaseEstimator):
    """``score_samples``: minus the mean distance to the ``k`` nearest fitted points (the
    kNN outlier score; scikit-learn has the neighbours, not the score)."""

    def __init__(self, k: int = 5) -> None:
        self.k = k

    def fit(self, x: np.ndarray, y: None = None) -> NearestNeighbourScore:
        self.index_ = NearestNeighbors(n_neighbors=min(self.k, len(x))).fit(x)
        self.n_samples_fit_, self.n_features_in_ = x.shape
        return self

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        distance, _ = self.index_.kneighbors(x)
        return -distance.mean(axis=1)


class MeanShiftScore(BaseEstimator):
    """``score_samples``: minus the distance to the nearest mode MeanShift finds (a density
    mode of the fitted points; scikit-learn clusters, it does not score)."""

    def fit(self, x: np.ndarray, y: None = None) -> MeanShiftScore:
        self.modes_ = MeanShift(bin_seeding=True).fit(x).cluster_centers_
        return self

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        distance = np.linalg.norm(x[:, None, :] - self.modes_[None, :, :], axis=2)
        return -distance.min(axis=1)


@register("numpy", "knn")
def _knn(spec: DetectorSpec) -> SklearnDetector:
    model = make_pipeline(StandardScaler(), NearestNeighbourScore(k=5))
    return SklearnDetector(model, fit_sample=FIT_SAMPLE, seed=spec.seed)


@register("numpy", "ocsvm")
def _ocsvm(spec: DetectorSpec) -> SklearnDetector:
    model = make_pipeline(StandardScaler(), OneClassSVM(nu=0.1, gamma="scale"))
    return SklearnDetector(model, fit_sample=FIT_SAMPLE, seed=spec.seed)


@register("numpy", "mean_shift")
def _mean_shift(spec: DetectorSpec) -> SklearnDetector:
    model = make_pipeline(StandardScaler(), MeanShiftScore())
    return SklearnDetector(model, fit_sample=FIT_SAMPLE, seed=spec.seed)


@register("numpy", "random_forest")
def _random_forest(spec: DetectorSpec) -> SklearnDetector:
    forest = RandomForestClassifier(n_estimators=200, random_state=spec.seed)
    return SklearnDetector(forest, supervised=True)


@register("numpy", "decision_tree")
def _decision_tree(spec: DetectorSpec) -> SklearnDetector:
    return SklearnDetector(DecisionTreeClassifier(random_state=spec.seed), supervised=True)


@register("numpy", "selection_probe")
def _selection_probe(spec: DetectorSpec) -> SklearnDetector:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return SklearnDetector(model, eligibility_features, supervised=True)
