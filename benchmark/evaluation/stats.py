"""Statistics over runs (SciPy only): confidence intervals across seeds and paired tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class MeanCI:
    mean: float
    low: float
    high: float
    n: int


UNIT_INTERVAL = (0.0, 1.0)  # where a rate or an area under a curve lives


def mean_ci(values, confidence: float = 0.95, bounds: tuple[float, float] | None = None) -> MeanCI:
    """Mean with a Student-t interval (NaN bounds for fewer than two values), clipped to
    ``bounds`` (e.g. ``UNIT_INTERVAL`` for a ROC-AUC, which cannot leave [0, 1])."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return MeanCI(float(x.mean()) if len(x) else math.nan, math.nan, math.nan, len(x))
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    low, high = float(x.mean() - half), float(x.mean() + half)
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return MeanCI(float(x.mean()), low, high, len(x))


@dataclass(frozen=True)
class PairedComparison:
    difference: MeanCI  # of b - a
    t_pvalue: float  # paired t-test, two-sided
    wilcoxon_pvalue: float  # exact signed-rank test, two-sided; NaN if all differences are 0
    min_wilcoxon_pvalue: float  # the smallest p-value n pairs can give (2 / 2**n)


def paired_comparison(a, b, confidence: float = 0.95) -> PairedComparison:
    """Compare paired samples (e.g. one metric of two implementations, seed by seed)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or len(a) < 2:
        raise ValueError("paired_comparison needs two equally long samples of at least 2")
    diff = b - a
    if np.allclose(diff, diff[0]):  # no spread: the t statistic is undefined
        t_p = 1.0 if diff[0] == 0 else 0.0
    else:
        t_p = float(stats.ttest_rel(b, a).pvalue)
    w_p = math.nan if np.all(diff == 0) else float(stats.wilcoxon(b, a, method="exact").pvalue)
    return PairedComparison(mean_ci(diff, confidence), t_p, w_p, min_wilcoxon_pvalue(len(a)))


def min_wilcoxon_pvalue(n: int) -> float:
    """The smallest two-sided p-value the exact signed-rank test can give with n pairs."""
    return 2.0 / 2**n if n > 0 else math.nan


@dataclass(frozen=True)
class Friedman:
    """Friedman test over blocks (rows: e.g. datasets) x treatments (columns: detectors)."""

    names: list[str]
    average_ranks: list[float]  # rank 1 = best (highest value), ties get mid-ranks
    n_blocks: int
    statistic: float
    pvalue: float
    critical_difference: float  # Nemenyi, at ``alpha``
    alpha: float


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Mean rank of each column over rows, the highest value ranked 1."""
    return stats.rankdata(-np.asarray(values, dtype=float), axis=1).mean(axis=0)


def nemenyi_critical_difference(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Demsar (2006): CD = q_alpha * sqrt(k (k + 1) / (6 N)), with q_alpha the studentized
    range quantile for k groups and infinite degrees of freedom, divided by sqrt(2)."""
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n_blocks)))


def friedman(values, names: list[str], alpha: float = 0.05) -> Friedman:
    """``values[i, j]``: treatment j's score on block i (higher is better)."""
    x = np.asarray(values, dtype=float)
    n, k = x.shape
    if k < 3 or n < 2:
        raise ValueError("the Friedman test needs at least 3 detectors and 2 blocks")
    result = stats.friedmanchisquare(*x.T)
    return Friedman(
        names=list(names),
        average_ranks=[float(r) for r in average_ranks(x)],
        n_blocks=n,
        statistic=float(result.statistic),
        pvalue=float(result.pvalue),
        critical_difference=nemenyi_critical_difference(k, n, alpha),
        alpha=alpha,
    )


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out
