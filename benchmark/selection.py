"""Model selection from run records: one row per detector and setting, aggregated over seeds,
with ranks, Pareto flags, budget recommendations and the statistics behind them.

Pure functions of records (dicts as written by ``benchmark.run``); NumPy and SciPy only.
A *candidate* is (model, framework, objective); a *setting* is (dataset, anomaly setting,
severity). Seeds are the replicates. Higher ROC-AUC is better; lower latency and memory are.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from benchmark.identity import run_id
from benchmark.stats import (
    Friedman,
    friedman,
    holm,
    mean_ci,
    paired_comparison,
)
from benchmark.timing import largest_batch

MIN_SEEDS_FOR_TESTS = 6  # fewer pairs cannot give an exact signed-rank p below 0.05
MIN_BLOCKS_FOR_FRIEDMAN = 5  # Demsar's rule of thumb for a trustworthy chi-square approximation


@dataclass
class Row:
    """One candidate in one setting, over its seeds."""

    setting: str
    model: str
    framework: str
    objective: str
    seeds: list[int]
    roc_auc: list[float]  # per seed, aligned with ``seeds``
    roc_auc_mean: float
    roc_auc_low: float
    roc_auc_high: float
    ci_kind: str  # "t over seeds", "bootstrap over seeds" or "bootstrap over test sequences"
    pr_auc: float
    f1: float
    recall_at_1pct_fpr: float
    per_type: dict[str, float]
    train_seq_per_s: float | None
    infer_seq_per_s: float | None
    latency_ms: float | None
    n_params: int | None
    peak_memory_mb: float | None
    run_dirs: list[str] = field(default_factory=list)
    rank: int = 0
    pareto_latency: bool | None = None
    pareto_memory: bool | None = None
    variant: str = ""  # config hash, shown only when two rows would share a name

    @property
    def name(self) -> str:
        parts = [self.model, self.framework] + ([self.objective] if self.objective != "-" else [])
        return "/".join(parts) + (f"#{self.variant}" if self.variant else "")


SETTING_SECTIONS = ("dataset", "anomaly")
CANDIDATE_SECTIONS = ("model", "framework", "objective", "train", "evaluation", "checkpoint")


def _variant(record: dict, sections: tuple[str, ...]) -> str:
    """A short hash of the record's config ``sections``: runs pool as seeds of one row only
    when everything but the seed agrees."""
    config = record.get("config", {})
    return run_id({k: config.get(k) for k in sections}, (), length=6)


def setting_of(record: dict) -> str:
    severity = record.get("config", {}).get("anomaly", {}).get("severity")
    label = f"{record['dataset']} / {record['anomaly']}"
    return label if severity is None else f"{label} (severity {severity:g})"


def candidate_of(record: dict) -> tuple[str, str, str]:
    baseline = record["framework"] == "numpy"
    return record["model"], record["framework"], "-" if baseline else record["objective"]


def _candidate_variant(record: dict) -> str:
    baseline = record["framework"] == "numpy"  # baselines ignore framework and objective
    sections = ("model", "evaluation") if baseline else CANDIDATE_SECTIONS
    return _variant(record, sections)


def latest_per_run(records: list[dict]) -> list[dict]:
    """One record per run id (the config hash): the last finished, so a config that appears
    in two experiment folders counts once."""
    latest: dict[str, dict] = {}
    for r in records:
        rid = r.get("run_id")
        if rid not in latest or str(r.get("finished_at")) >= str(latest[rid].get("finished_at")):
            latest[rid] = r
    return list(latest.values())


def latency_of(record: dict) -> tuple[float | None, str]:
    """(milliseconds, what it measures): batch-1 p99 when the timing protocol recorded it,
    else the mean time per sequence of the evaluation pass (batched, a throughput figure)."""
    timing = record.get("timing", {})
    p99 = timing.get("latency_ms", {}).get("batch_1", {}).get("p99")
    if p99 is not None:
        return float(p99), "p99 batch-1 latency"
    rate = timing.get("infer_seq_per_s")
    if rate:
        return 1000.0 / rate, "mean time per sequence in batched scoring"
    return None, "not measured"


def train_rate(timing: dict) -> float | None:
    """Training sequences/s: the timing protocol's figure (full optimiser steps, no host
    sync), else the fit's average (which includes validation and data handling)."""
    return timing.get("train", {}).get("seq_per_s") or timing.get("train_seq_per_s")


def infer_rate(timing: dict) -> float | None:
    """Inference sequences/s: the protocol's figure at its largest batch size, else the
    evaluation pass's average."""
    by_batch = timing.get("inference", {})
    if by_batch:
        return by_batch[largest_batch(by_batch)]["seq_per_s"]
    return timing.get("infer_seq_per_s")


def _median(values: list) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.median(kept)) if kept else None


def _mean(values: list) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def ok_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("status") == "ok" and "metrics" in r]


def failed_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("status") == "failed"]


def aggregate(records: list[dict]) -> list[Row]:
    """Rows per (setting, candidate), ranked within each setting, Pareto flags set."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in ok_records(latest_per_run(records)):
        key = (setting_of(r), _variant(r, SETTING_SECTIONS), *candidate_of(r))
        groups[(*key, _candidate_variant(r))].append(r)
    rows = [_row(key, sorted(rs, key=lambda r: r["seed"])) for key, rs in groups.items()]
    _disambiguate(rows, groups)
    by_setting: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_setting[row.setting].append(row)
    out = []
    for setting in sorted(by_setting):
        ranked = sorted(by_setting[setting], key=lambda r: (-_key(r.roc_auc_mean), r.name))
        for i, row in enumerate(ranked, start=1):
            row.rank = i
        flag_pareto(ranked)
        out.extend(ranked)
    return out


def _disambiguate(rows: list[Row], groups: dict) -> None:
    """Rows (or settings) that share a label but differ in config get the config hash added."""
    settings = Counter((k[0], k[1]) for k in groups)
    names = Counter((r.setting, r.name) for r in rows)
    labels = Counter(label for label, _ in settings)
    for row, key in zip(rows, groups, strict=True):
        if names[(row.setting, row.name)] > 1:
            row.variant = key[-1]
        if labels[key[0]] > 1:
            row.setting = f"{key[0]} [{key[1]}]"


def _key(x: float) -> float:
    return -math.inf if math.isnan(x) else x


def _row(key: tuple, runs: list[dict]) -> Row:
    setting, _, model, framework, objective, _ = key
    aucs = [r["metrics"]["roc_auc"] for r in runs]
    if len(runs) == 1:  # no seed spread: the run's own bootstrap over its test sequences
        low, high = runs[0]["metrics"].get("roc_auc_ci", [math.nan, math.nan])
        mean, kind = aucs[0], "bootstrap over test sequences"
    else:
        ci = mean_ci(aucs)
        mean, low, high, kind = ci.mean, ci.low, ci.high, "t over seeds"
    per_type: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        for t, v in r["metrics"].get("per_type", {}).items():
            per_type[t].append(v)
    timing = [r.get("timing", {}) for r in runs]
    return Row(
        setting=setting,
        model=model,
        framework=framework,
        objective=objective,
        seeds=[r["seed"] for r in runs],
        roc_auc=aucs,
        roc_auc_mean=mean,
        roc_auc_low=low,
        roc_auc_high=high,
        ci_kind=kind,
        pr_auc=_mean([r["metrics"]["pr_auc"] for r in runs]),
        f1=_mean([r["metrics"]["f1"] for r in runs]),
        recall_at_1pct_fpr=_mean([r["metrics"]["recall_at_1pct_fpr"] for r in runs]),
        per_type={t: _mean(v) for t, v in per_type.items()},
        train_seq_per_s=_median([train_rate(t) for t in timing]),
        infer_seq_per_s=_median([infer_rate(t) for t in timing]),
        latency_ms=_median([latency_of(r)[0] for r in runs]),
        n_params=runs[0].get("n_params"),
        peak_memory_mb=_median([t.get("peak_memory_mb") for t in timing]),
        run_dirs=[r.get("run_dir", "") for r in runs],
    )


def pareto_optimal(quality: list[float], cost: list[float]) -> list[bool]:
    """True where no other point has quality >= and cost <= with one of them strict."""
    out = []
    for i, (q, c) in enumerate(zip(quality, cost, strict=True)):
        dominated = any(
            q2 >= q and c2 <= c and (q2 > q or c2 < c)
            for j, (q2, c2) in enumerate(zip(quality, cost, strict=True))
            if j != i
        )
        out.append(not dominated)
    return out


def flag_pareto(rows: list[Row]) -> None:
    for attr, flag in (("latency_ms", "pareto_latency"), ("peak_memory_mb", "pareto_memory")):
        measured = [r for r in rows if getattr(r, attr) is not None]
        if len(measured) < len(rows) or not rows:
            continue  # a front over part of the candidates would mislead
        flags = pareto_optimal([r.roc_auc_mean for r in rows], [getattr(r, attr) for r in rows])
        for row, f in zip(rows, flags, strict=True):
            setattr(row, flag, f)


# ---------------------------------------------------------------- evidence and recommendations


@dataclass(frozen=True)
class TopComparison:
    best: str
    runner_up: str
    n_pairs: int
    difference: float
    wilcoxon_p: float | None
    t_p: float | None
    sufficient: bool
    sentence: str


def compare_top_two(rows: list[Row]) -> TopComparison | None:
    """Best vs runner-up of one setting, paired by seed."""
    ranked = sorted(rows, key=lambda r: r.rank)
    if len(ranked) < 2:
        return None
    a, b = ranked[0], ranked[1]
    seeds = sorted(set(a.seeds) & set(b.seeds))
    diff = a.roc_auc_mean - b.roc_auc_mean
    if len(seeds) < 2:
        overlap = a.roc_auc_low <= b.roc_auc_high
        sentence = (
            f"one seed only: {a.name} leads {b.name} by {diff:+.3f} ROC-AUC, a point estimate "
            f"(the 95% bootstrap intervals over test sequences "
            f"{'overlap' if overlap else 'do not overlap'}); run more seeds before trusting "
            "this order"
        )
        return TopComparison(a.name, b.name, len(seeds), diff, None, None, False, sentence)
    xa = [a.roc_auc[a.seeds.index(s)] for s in seeds]
    xb = [b.roc_auc[b.seeds.index(s)] for s in seeds]
    cmp = paired_comparison(xb, xa)
    sufficient = len(seeds) >= MIN_SEEDS_FOR_TESTS
    p = cmp.wilcoxon_pvalue
    verdict = (
        "significant at 0.05"
        if sufficient and not math.isnan(p) and p < 0.05
        else "not significant at 0.05"
        if sufficient
        else f"too few seeds for evidence (the exact test cannot go below p = "
        f"{cmp.min_wilcoxon_pvalue:.3f} with {len(seeds)} pairs; use at least "
        f"{MIN_SEEDS_FOR_TESTS})"
    )
    sentence = (
        f"{a.name} vs {b.name} over {len(seeds)} seeds: {cmp.difference.mean:+.4f} ROC-AUC "
        f"[{cmp.difference.low:+.4f}, {cmp.difference.high:+.4f}], Wilcoxon p = {p:.3f}, "
        f"paired t p = {cmp.t_pvalue:.3f}: {verdict}"
    )
    return TopComparison(a.name, b.name, len(seeds), diff, p, cmp.t_pvalue, sufficient, sentence)


def recommendations(rows: list[Row], hardware: str, latency: str = "latency") -> list[str]:
    """Per budget, the best ROC-AUC that fits it, with its interval and the evidence."""
    if not rows:
        return []
    ranked = sorted(rows, key=lambda r: r.rank)
    best = ranked[0]
    lines = [
        f"Best ROC-AUC: **{best.name}**, {best.roc_auc_mean:.3f} "
        f"[{best.roc_auc_low:.3f}, {best.roc_auc_high:.3f}] ({best.ci_kind}, "
        f"{len(best.seeds)} seed{'s' * (len(best.seeds) > 1)})."
    ]
    top = compare_top_two(rows)
    if top is not None:
        lines.append(f"Evidence: {top.sentence}.")
    lines += _budget_lines(ranked, "latency_ms", latency, "ms", hardware)
    lines += _budget_lines(ranked, "peak_memory_mb", "peak memory", "MB", hardware)
    return lines


def better_than_chance(row: Row) -> bool:
    """The ROC-AUC interval lies above 0.5 (a detector worth recommending at all)."""
    return not math.isnan(row.roc_auc_low) and row.roc_auc_low > 0.5


def _budget_lines(ranked: list[Row], attr: str, what: str, unit: str, hardware: str) -> list[str]:
    """One line per Pareto point better than chance: the best quality within that cost,
    cheapest first."""
    if any(getattr(r, attr) is None for r in ranked):
        return []
    on_front = (r.pareto_latency if attr == "latency_ms" else r.pareto_memory for r in ranked)
    front = sorted(
        (r for r, flag in zip(ranked, on_front, strict=True) if flag and better_than_chance(r)),
        key=lambda r: getattr(r, attr),
    )
    return [
        f"Best ROC-AUC with {what} <= {_ceil(getattr(r, attr))} {unit} on {hardware}: "
        f"**{r.name}** ({r.roc_auc_mean:.3f} [{r.roc_auc_low:.3f}, {r.roc_auc_high:.3f}], "
        f"{getattr(r, attr):.3g} {unit})."
        for r in front
    ]


def _ceil(x: float) -> str:
    """A round budget just above ``x`` (2 significant digits)."""
    if x <= 0:
        return "0"
    digits = 1 - math.floor(math.log10(x))
    step = 10.0**-digits
    return f"{math.ceil(x / step - 1e-9) * step:.{max(digits, 0)}f}"


@dataclass(frozen=True)
class CrossSetting:
    """Friedman/Nemenyi over settings and Holm-corrected Wilcoxon tests against the best."""

    friedman: Friedman | None
    holm: list[tuple[str, float, float]]  # (candidate, raw p, Holm-adjusted p) vs the best
    n_blocks: int
    note: str


def cross_setting(rows: list[Row]) -> CrossSetting:
    """Blocks are settings (seed means); candidates must appear in every setting."""
    settings = sorted({r.setting for r in rows})
    names = sorted({r.name for r in rows})
    table = {(r.setting, r.name): r for r in rows}
    common = [n for n in names if all((s, n) in table for s in settings)]
    n = len(settings)
    if len(common) < 3 or n < 2:
        return CrossSetting(
            None,
            [],
            n,
            f"{n} setting(s) with {len(common)} detector(s) present in all: "
            "the Friedman test needs at least 2 settings and 3 detectors",
        )
    values = np.array([[table[(s, c)].roc_auc_mean for c in common] for s in settings])
    result = friedman(values, common)
    best = common[int(np.argmin(result.average_ranks))]
    pairs = _paired_by_setting_and_seed(rows, best, common, settings)
    raw = [(c, p) for c, p in pairs if not math.isnan(p)]
    adjusted = holm([p for _, p in raw]) if raw else []
    note = (
        f"{n} settings: fewer than {MIN_BLOCKS_FOR_FRIEDMAN}, so the Friedman p-value and the "
        "critical difference are rough; treat the ranks as descriptive"
        if n < MIN_BLOCKS_FOR_FRIEDMAN
        else f"{n} settings"
    )
    return CrossSetting(
        result,
        [(c, p, float(a)) for (c, p), a in zip(raw, adjusted, strict=True)],
        n,
        note,
    )


def _paired_by_setting_and_seed(rows, best, common, settings) -> list[tuple[str, float]]:
    """Wilcoxon p of each candidate vs ``best`` over (setting, seed) pairs."""
    from scipy import stats

    table = {(r.setting, r.name): dict(zip(r.seeds, r.roc_auc, strict=True)) for r in rows}
    out = []
    for c in common:
        if c == best:
            continue
        a, b = [], []
        for s in settings:
            shared = sorted(set(table[(s, best)]) & set(table[(s, c)]))
            a += [table[(s, best)][k] for k in shared]
            b += [table[(s, c)][k] for k in shared]
        diff = np.subtract(a, b)
        if len(diff) < 2 or np.all(diff == 0):
            out.append((c, math.nan))
        else:
            out.append((c, float(stats.wilcoxon(a, b).pvalue)))
    return out
