"""Statistics over seeds and the PyTorch-vs-JAX comparison table, on hand-made numbers."""

import math

import numpy as np
import pytest
from scipy import stats

from benchmark.evaluation.stats import mean_ci, paired_comparison
from benchmark.records.record import RunRecord, from_dict
from benchmark.report.framework_comparison import comparison_table, paired_auc


def test_mean_ci_is_the_student_t_interval():
    ci = mean_ci([0.70, 0.72, 0.74])
    # mean 0.72, sd 0.02, t(0.975, 2) = 4.3027: half-width 4.3027 * 0.02 / sqrt(3) = 0.04968
    assert ci.mean == pytest.approx(0.72)
    assert ci.high - ci.mean == pytest.approx(0.049683, abs=1e-5)
    assert ci.mean - ci.low == pytest.approx(ci.high - ci.mean)
    assert ci.n == 3
    single = mean_ci([0.5])
    assert single.mean == 0.5
    assert math.isnan(single.low)
    assert math.isnan(single.high)


def test_paired_comparison_matches_scipy_and_states_the_wilcoxon_floor():
    a = np.array([0.70, 0.75, 0.72, 0.71, 0.69])
    b = a + np.array([0.01, 0.02, 0.015, 0.03, 0.012])
    result = paired_comparison(a, b)
    assert result.difference.mean == pytest.approx(0.0174)
    assert result.t_pvalue == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert result.wilcoxon_pvalue == pytest.approx(0.0625)  # all 5 positive: 2 / 2**5
    assert result.min_wilcoxon_pvalue == pytest.approx(0.0625)
    assert result.difference.low > 0  # a consistent shift: the interval excludes 0


def test_paired_comparison_of_identical_samples_finds_no_difference():
    result = paired_comparison([0.7, 0.8, 0.9], [0.7, 0.8, 0.9])
    assert result.difference.mean == 0
    assert result.t_pvalue == 1.0
    assert math.isnan(result.wilcoxon_pvalue)
    with pytest.raises(ValueError, match="at least 2"):
        paired_comparison([0.7], [0.8])


def record(model, framework, seed, auc, status="ok") -> RunRecord:
    return from_dict(
        {
            "run_id": f"{model}-{framework}-{seed}",
            "status": status,
            "model": model,
            "framework": framework,
            "objective": "classify",
            "seed": seed,
            "config": {"seed": seed},
            "metrics": {"roc_auc": auc},
        }
    )


def test_comparison_table_pairs_runs_by_seed_and_skips_failures_and_baselines():
    records = [
        record("lstm", "torch", 0, 0.70),
        record("lstm", "torch", 1, 0.72),
        record("lstm", "torch", 2, 0.74),
        record("lstm", "jax", 0, 0.71),
        record("lstm", "jax", 1, 0.72),
        record("lstm", "jax", 2, 0.75),
        record("lstm", "jax", 3, 0.99),  # no torch partner: left out of the pairs
        record("gru", "torch", 0, 0.9, status="failed"),
        record("iforest", "numpy", 0, 0.8),
    ]
    pairs = paired_auc(records)
    assert set(pairs) == {("lstm", "classify")}
    table = comparison_table(records)
    lines = table.splitlines()
    assert len(lines) == 3  # header, rule, one model
    assert "| lstm | classify | 3 | 0.720 [" in lines[2]
    assert "| 0.727 [" in lines[2]
    assert "+0.0067" in lines[2]


def test_framework_report_cli_names_a_bad_results_dir(tmp_path, capsys):
    from benchmark.report.framework_comparison import main

    assert main([]) == 2
    assert (
        "usage: python -m benchmark.report.framework_comparison <results dir>"
        in capsys.readouterr().err
    )
    assert main([str(tmp_path / "missing")]) == 2
    assert "is not a directory of run records" in capsys.readouterr().err
