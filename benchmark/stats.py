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


def mean_ci(values, confidence: float = 0.95) -> MeanCI:
    """Mean with a Student-t interval (NaN bounds for fewer than two values)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return MeanCI(float(x.mean()) if len(x) else math.nan, math.nan, math.nan, len(x))
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return MeanCI(float(x.mean()), float(x.mean() - half), float(x.mean() + half), len(x))


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
    return PairedComparison(mean_ci(diff, confidence), t_p, w_p, 2.0 / 2 ** len(a))
