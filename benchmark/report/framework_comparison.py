"""PyTorch vs JAX on the same experiment: each detector's ROC-AUC per framework over seeds,
and a paired test of the difference (runs paired by seed).

python -m benchmark.report.framework_comparison results/frameworks
"""

from __future__ import annotations

import sys
from collections import defaultdict

from benchmark.evaluation.stats import mean_ci, paired_comparison
from benchmark.records.record import RunRecord
from benchmark.report import render
from benchmark.report.table import load_records, results_dir_arg

FRAMEWORKS = ("torch", "jax")


def paired_auc(records: list[RunRecord]) -> dict[tuple[str, str], dict[str, dict[int, float]]]:
    """(model, objective) -> framework -> seed -> ROC-AUC, over successful deep runs."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r.metrics is not None and r.is_ok and r.framework in FRAMEWORKS:
            out[(r.model, r.objective)][r.framework][r.seed] = r.metrics.roc_auc
    return out


COMPARISON_HEADER = [
    "model",
    "objective",
    "seeds",
    "torch ROC-AUC (95% CI)",
    "jax ROC-AUC (95% CI)",
    "jax - torch (95% CI)",
    "paired t p",
    "Wilcoxon p",
]


def comparison_table(records: list[RunRecord]) -> str:
    rows = []
    for (model, objective), by_fw in sorted(paired_auc(records).items()):
        seeds = sorted(set(by_fw["torch"]) & set(by_fw["jax"]))
        if len(seeds) < 2:
            continue
        a = [by_fw["torch"][s] for s in seeds]
        b = [by_fw["jax"][s] for s in seeds]
        ct, cj, cmp = mean_ci(a), mean_ci(b), paired_comparison(a, b)
        d = cmp.difference
        rows.append(
            [
                model,
                objective,
                len(seeds),
                f"{ct.mean:.3f} [{ct.low:.3f}, {ct.high:.3f}]",
                f"{cj.mean:.3f} [{cj.low:.3f}, {cj.high:.3f}]",
                f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]",
                f"{cmp.t_pvalue:.3f}",
                f"{cmp.wilcoxon_pvalue:.3f} (min {cmp.min_wilcoxon_pvalue:.3f})",
            ]
        )
    return render.markdown(COMPARISON_HEADER, rows)


def main(argv: list[str]) -> int:
    root = results_dir_arg(argv, "benchmark.report.framework_comparison")
    if root is None:
        return 2
    print(comparison_table(load_records(root)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
