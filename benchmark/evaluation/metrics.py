"""Detection metrics: NumPy in, numbers out. No I/O, no mutation, no test data in thresholds.

Conventions: ``labels`` are booleans (True = anomalous), ``scores`` are floats where higher means
more anomalous. Decision metrics (precision, recall, F1, accuracy) use a threshold fitted on
validation scores only and passed in explicitly; the best F1 over thresholds on the test set is
reported separately, named as an oracle. No point-adjust.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np


def _sk() -> ModuleType:
    """scikit-learn's metrics, imported at first use: with scipy that takes over a second,
    which a dry run or a refused command line (both import this module) would pay for nothing."""
    from sklearn import metrics

    return metrics


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf")
    return labels, scores


def _both_classes(labels: np.ndarray) -> bool:
    return bool(labels.any() and (~labels).any())


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN if one class."""
    labels, scores = _check(labels, scores)
    if not _both_classes(labels):
        return float("nan")
    return float(_sk().roc_auc_score(labels, scores))


def _curve(labels: np.ndarray, scores: np.ndarray):
    """True and false positive counts at each distinct threshold, highest score first (the
    threshold rules' search space; scikit-learn keeps its own version of this private)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    return tp, fp, s[last_of_tie]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """PR-AUC as average precision: sum over thresholds of (R_n - R_{n-1}) * P_n."""
    labels, scores = _check(labels, scores)
    if not labels.any():
        return float("nan")
    return float(_sk().average_precision_score(labels, scores))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at each distinct threshold, from (0, 0)."""
    labels, scores = _check(labels, scores)
    if not _both_classes(labels):
        raise ValueError("a ROC curve needs both anomalous and normal sequences")
    fpr, tpr, _ = _sk().roc_curve(labels, scores, drop_intermediate=False)
    return fpr, tpr


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct threshold, highest threshold first."""
    labels, scores = _check(labels, scores)
    if not labels.any():
        raise ValueError("a precision-recall curve needs anomalous sequences")
    precision, recall, _ = _sk().precision_recall_curve(labels, scores)
    return recall[-2::-1], precision[-2::-1]  # without scikit-learn's closing (0, 1) point


@dataclass(frozen=True)
class Decision:
    threshold: float
    precision: float
    recall: float
    f1: float
    accuracy: float


def decide(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Decision:
    """Precision, recall, F1 and accuracy of flagging ``scores >= threshold``."""
    labels, scores = _check(labels, scores)
    flagged = scores >= threshold
    tp = int(np.sum(flagged & labels))
    fp = int(np.sum(flagged & ~labels))
    fn = int(np.sum(~flagged & labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Decision(threshold, precision, recall, f1, float(np.mean(flagged == labels)))


def max_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising F1 on these (validation) labels; the lowest such score."""
    labels, scores = _check(labels, scores)
    if not labels.any():
        return float(np.max(scores)) + 1.0  # nothing to find: flag nothing
    tp, fp, thresholds = _curve(labels, scores)
    f1 = 2 * tp / (tp + fp + labels.sum())
    return float(thresholds[int(np.argmax(f1))])


def fpr_threshold(labels: np.ndarray, scores: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on these (validation) labels stays within
    ``target_fpr``."""
    labels, scores = _check(labels, scores)
    negatives = np.sort(scores[~labels])[::-1]
    if len(negatives) == 0:
        return float(np.min(scores))
    allowed = int(np.floor(target_fpr * len(negatives)))  # negatives that may be flagged
    if allowed >= len(negatives):
        return float(np.min(scores))
    # Flag strictly above the (allowed + 1)-th highest negative score.
    return float(np.nextafter(negatives[allowed], np.inf))


def balanced_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold where the false-positive and false-negative rates on these (validation)
    labels are closest (the equal-error point); the lowest such score."""
    labels, scores = _check(labels, scores)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return max_f1_threshold(labels, scores)
    tp, fp, thresholds = _curve(labels, scores)
    gap = np.abs(fp / n_neg - (1.0 - tp / n_pos))
    return float(thresholds[int(np.argmin(gap))])


def best_f1(labels: np.ndarray, scores: np.ndarray) -> float:
    """Best F1 over all thresholds on these labels: an oracle, never a reported decision."""
    labels, scores = _check(labels, scores)
    if not labels.any():
        return 0.0
    return decide(labels, scores, max_f1_threshold(labels, scores)).f1


def recall_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = 0.01) -> float:
    """Highest recall on the ROC curve with false-positive rate at most ``fpr``."""
    labels, scores = _check(labels, scores)
    if not _both_classes(labels):
        return float("nan")
    tp, fp, _ = _curve(labels, scores)
    ok = fp / (~labels).sum() <= fpr
    return float(tp[ok].max() / labels.sum()) if ok.any() else 0.0


def precision_at_k(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of anomalies among the ``k`` highest scores (ties broken by order)."""
    labels, scores = _check(labels, scores)
    k = min(k, len(scores))
    if k <= 0:
        return float("nan")
    top = np.argsort(-scores, kind="stable")[:k]
    return float(labels[top].mean())


def per_type_roc_auc(
    labels: np.ndarray,
    types: np.ndarray,
    scores: np.ndarray,
    names: tuple[str, ...],
    eligible: np.ndarray | None = None,
) -> dict[str, float]:
    """ROC-AUC of each anomaly type against its reference normals (types absent: left out).

    Without ``eligible`` the reference is every normal sequence. With ``eligible`` ((N,
    n_types) bool) it is the normal sequences the type could have been injected into, each
    weighted so that their mix of eligibility patterns (which types a sequence could host)
    matches the type's victims (``matched_weights``): neither "needs a purchase" nor the
    victim assignment among types can be scored as detection."""
    labels, scores = _check(labels, scores)
    types = np.asarray(types)
    out = {}
    for code, name in enumerate(names):
        rows = (types == code) & labels
        if eligible is None:
            normals, weight = ~labels, None
        else:
            normals = ~labels & eligible[:, code]
            weight = matched_weights(eligible, rows, normals)
            rows = rows & (weight > 0)
            normals = normals & (weight > 0)
        if rows.any() and normals.any():
            keep = rows | normals
            out[name] = weighted_roc_auc(
                labels[keep], scores[keep], None if weight is None else weight[keep]
            )
    return out


def eligibility_patterns(eligible: np.ndarray) -> np.ndarray:
    """(N,) int: one code per distinct row of ``eligible`` (which types a sequence can host)."""
    return np.unique(np.asarray(eligible, dtype=bool), axis=0, return_inverse=True)[1].ravel()


def matched_weights(eligible: np.ndarray, victims: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """(N,) weights: 1 for ``victims``; for ``normals``, the victims' share of the normal's
    eligibility pattern over the normals' share of it (0 outside both sets, and for victims
    whose pattern no normal has: they have no reference)."""
    pattern = eligibility_patterns(eligible)
    n_patterns = int(pattern.max()) + 1 if len(pattern) else 0
    v = np.bincount(pattern[victims], minlength=n_patterns).astype(float)
    n = np.bincount(pattern[normals], minlength=n_patterns).astype(float)
    if v.sum() == 0 or n.sum() == 0:
        return np.zeros(len(pattern))
    ratio = np.divide(v / v.sum(), n / n.sum(), out=np.zeros(n_patterns), where=n > 0)
    weight = np.where(normals, ratio[pattern], 0.0)
    return np.where(victims & (n[pattern] > 0), 1.0, weight)


def weighted_roc_auc(labels: np.ndarray, scores: np.ndarray, weight: np.ndarray | None) -> float:
    """ROC-AUC with per-sequence weights (scikit-learn's; NaN if one class)."""
    if not _both_classes(np.asarray(labels, dtype=bool)):
        return float("nan")
    return float(_sk().roc_auc_score(labels, scores, sample_weight=weight))


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval, resampling anomalies and normals separately (stratified,
    so every resample has both classes); NaN (no interval) with ``n_boot=0``."""
    labels, scores = _check(labels, scores)
    if not _both_classes(labels) or n_boot == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    draws = [(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(n_boot)]
    if metric is roc_auc:  # every resample in one pass (the loop below, 8-40x faster)
        values = _roc_auc_rows(
            scores[np.stack([p for p, _ in draws])], scores[np.stack([n for _, n in draws])]
        )
    else:
        values = np.empty(n_boot)
        for b, (p, n) in enumerate(draws):
            idx = np.concatenate([p, n])
            values[b] = metric(labels[idx], scores[idx])
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def _roc_auc_rows(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row pair (anomalous scores, normal scores) at once: the Mann-Whitney U
    of the row over its size, ties counting half, as ``roc_auc``. Here rather than
    scikit-learn's, whose per-call input checks cost more than a bootstrap resample's AUC."""
    from scipy.stats import mannwhitneyu  # at first use, as scikit-learn (see _sk)

    u = mannwhitneyu(positive, negative, axis=1, method="asymptotic", use_continuity=False)
    return u.statistic / (positive.shape[1] * negative.shape[1])


def event_roc_auc(event_labels: np.ndarray, event_scores: np.ndarray, mask: np.ndarray) -> float:
    """Localisation: ROC-AUC of per-event scores against event labels, over real events."""
    mask = np.asarray(mask, dtype=bool)
    return roc_auc(np.asarray(event_labels)[mask], np.asarray(event_scores)[mask])


THRESHOLD_RULES: tuple[str, ...] = ("max_f1", "fpr", "balanced", "fixed")


def fit_threshold(
    val_labels: np.ndarray,
    val_scores: np.ndarray,
    rule: str = "max_f1",
    target_fpr: float = 0.01,
    fixed: float = 0.0,
) -> float:
    """The decision threshold, from validation data only (``fixed``: given, not fitted)."""
    if rule == "max_f1":
        return max_f1_threshold(val_labels, val_scores)
    if rule == "fpr":
        return fpr_threshold(val_labels, val_scores, target_fpr)
    if rule == "balanced":
        return balanced_threshold(val_labels, val_scores)
    if rule == "fixed":
        return float(fixed)
    raise ValueError(f"threshold rule {rule!r} is unknown; use one of {list(THRESHOLD_RULES)}")


@dataclass(frozen=True)
class ScoredSplit:
    """A split's labels and scores as the metrics read them: per sequence, and optionally per
    event."""

    labels: np.ndarray  # (N,) bool
    scores: np.ndarray  # (N,)
    types: np.ndarray  # (N,) anomaly type index, -1 for normal
    eligible: np.ndarray | None = None  # (N, n_types) bool: could host each type
    event_labels: np.ndarray | None = None  # (N, T)
    event_scores: np.ndarray | None = None  # (N, T)
    mask: np.ndarray | None = None  # (N, T) bool: real events, not padding

    def per_event_roc_auc(self) -> float | None:
        """ROC-AUC over the real events; None without per-event labels and scores."""
        if self.event_labels is None or self.event_scores is None or self.mask is None:
            return None
        return event_roc_auc(self.event_labels, self.event_scores, self.mask)

    def restricted(self, keep: np.ndarray) -> ScoredSplit:
        """The sequences ``keep`` ((N,) bool) selects."""

        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else np.asarray(values)[keep]

        return ScoredSplit(
            np.asarray(self.labels)[keep],
            np.asarray(self.scores)[keep],
            np.asarray(self.types)[keep],
            pick(self.eligible),
            pick(self.event_labels),
            pick(self.event_scores),
            pick(self.mask),
        )


def evaluate(
    split: ScoredSplit,
    *,
    threshold: float,
    type_names: tuple[str, ...],
    n_boot: int = 1000,
    seed: int = 0,
    population: np.ndarray | None = None,
) -> dict:
    """Every test-set metric of the run record. ``threshold`` must come from
    :func:`fit_threshold` on validation data: this function never sees validation labels and
    never fits anything on the test labels except the oracle it names as such.

    ``population`` ((N,) bool) restricts every metric to the reference population (the
    sequences that could host an anomaly of the mix); the others are counted, not scored."""
    n_all = len(np.ravel(split.labels))
    if population is not None:
        split = split.restricted(np.asarray(population, dtype=bool))
    labels, scores = split.labels, split.scores
    decision = decide(labels, scores, threshold)
    n_anomalies = int(np.sum(labels))
    return {
        "roc_auc": roc_auc(labels, scores),
        "pr_auc": average_precision(labels, scores),
        "threshold": threshold,
        "precision": decision.precision,
        "recall": decision.recall,
        "f1": decision.f1,
        "accuracy": decision.accuracy,
        "best_f1_oracle": best_f1(labels, scores),
        "recall_at_1pct_fpr": recall_at_fpr(labels, scores, 0.01),
        "precision_at_n_anomalies": precision_at_k(labels, scores, n_anomalies),
        "roc_auc_ci": bootstrap_ci(roc_auc, labels, scores, n_boot=n_boot, seed=seed),
        "pr_auc_ci": bootstrap_ci(average_precision, labels, scores, n_boot=n_boot, seed=seed),
        "per_type": per_type_roc_auc(labels, split.types, scores, type_names, split.eligible),
        "event_roc_auc": split.per_event_roc_auc(),
        "n_test": len(np.ravel(labels)),
        "n_test_anomalies": n_anomalies,
        "n_test_outside_population": n_all - len(np.ravel(labels)),
    }
