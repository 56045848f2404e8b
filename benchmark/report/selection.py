"""Model selection from run records: one row per detector and setting, aggregated over seeds,
with ranks, Pareto flags, budget recommendations and the statistics behind them.

Pure functions of run records (``benchmark.records.record``); NumPy and SciPy only.
A *candidate* is (model, framework, objective); a *setting* is (dataset, anomaly setting,
severity). Seeds are the replicates. Higher ROC-AUC is better; lower latency and memory are.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from benchmark.evaluation.stats import (
    UNIT_INTERVAL,
    Friedman,
    friedman,
    holm,
    mean_ci,
    paired_comparison,
)
from benchmark.records.identity import NOISE_KEYS, ignored_sections, replicate_key, run_id
from benchmark.records.record import RunRecord, RunStatus, Timing
from benchmark.timing.protocol import largest_batch

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
    variant: str = ""  # the config keys it differs on, shown only when two rows share a name
    records: list[RunRecord] = field(default_factory=list, repr=False)  # its runs, one per seed
    detection: str = ""  # the detection setting: supervised, semi_supervised, unsupervised
    latency_spread: tuple[float, float] | None = None  # lowest and highest block p99 (ms)
    latency_interference: bool = False  # a run's p99/p50 says the machine interfered

    @property
    def name(self) -> str:
        base = display_name(self.model, self.framework, self.objective)
        return base + (f" [{self.variant}]" if self.variant else "")


def display_name(model: str, framework: str, objective: str) -> str:
    """``model/framework/objective`` (a baseline, objective ``-``, has none)."""
    return "/".join([model, framework] + ([objective] if objective != "-" else []))


# What makes a setting: the data, its anomalies, and the detection setting (which labels
# training may use). Detectors are ranked within a setting only.
SETTING_SECTIONS = ("dataset", "anomaly", "data_seed", "setting")


def setting_key(record: RunRecord) -> str:
    """A short hash of the record's setting sections."""
    return run_id({k: record.config.get(k) for k in SETTING_SECTIONS}, (), length=6)


def detection_setting(record: RunRecord) -> str:
    """The record's detection setting (supervised, semi_supervised, unsupervised); records
    written before settings existed are classed by their objective."""
    if record.setting:
        return record.setting
    supervised = not record.is_baseline and record.objective in ("classify", "classify_type")
    return "supervised" if supervised else "unsupervised"


def setting_of(record: RunRecord) -> str:
    """'dataset / anomaly mix (severity s) / detection setting'; a run evaluated on the data's
    own labels says so, and names a mix only when one was injected on top of them."""
    severity = record.config.get("anomaly", {}).get("severity")
    mix = record.anomaly if severity is None else f"{record.anomaly} (severity {severity:g})"
    if record.data.get("real_labels"):
        # A record without "injected" injected nothing.
        mix = (
            f"the data's own labels + {mix}"
            if record.data.get("injected")
            else "the data's own labels"
        )
    return f"{record.dataset} / {mix} / {detection_setting(record)}"


def candidate_of(record: RunRecord) -> tuple[str, str, str]:
    return record.model, record.framework, "-" if record.is_baseline else record.objective


def latest_per_run(records: list[RunRecord]) -> list[RunRecord]:
    """One record per run id (the config hash): the last finished, so a config that appears
    in two experiment folders counts once."""
    latest: dict[str, RunRecord] = {}
    for r in records:
        if r.run_id not in latest or str(r.finished_at) >= str(latest[r.run_id].finished_at):
            latest[r.run_id] = r
    return list(latest.values())


def latency_of(record: RunRecord) -> tuple[float | None, str]:
    """(milliseconds, what it measures): batch-1 p99 when the timing protocol recorded it
    (the median of its blocks' p99, stable between identical runs, where recorded), else the
    mean time per sequence of the evaluation pass (batched, a throughput figure)."""
    batch_1 = record.timing.batch_1_latency()
    if batch_1.get("p99_block_median") is not None:
        return float(batch_1["p99_block_median"]), "p99 batch-1 latency (median of 5 blocks)"
    p99 = batch_1.get("p99")
    if p99 is not None:
        return float(p99), "p99 batch-1 latency"
    rate = record.timing.infer_seq_per_s
    if rate:
        return 1000.0 / rate, "mean time per sequence in batched scoring"
    return None, "not measured"


def latency_range(records: list[RunRecord]) -> tuple[float, float] | None:
    """The spread of the budget latency over a row's runs: the lowest and highest block p99
    of any of them (None without block figures)."""
    ranges = [x for r in records if (x := r.timing.batch_1_latency().get("p99_block_range"))]
    if not ranges:
        return None
    return min(x[0] for x in ranges), max(x[1] for x in ranges)


def interfered(records: list[RunRecord]) -> bool:
    """Any run's batch-1 latency flagged as interference (p99/p50 beyond the bound)."""
    return any(r.timing.batch_1_latency().get("interference") for r in records)


def train_rate(timing: Timing) -> float | None:
    """Training sequences/s: the timing protocol's figure (full optimiser steps, no host
    sync), else the fit's average (which includes validation and data handling)."""
    return (timing.train or {}).get("seq_per_s") or timing.train_seq_per_s


def infer_rate(timing: Timing) -> float | None:
    """Inference sequences/s: the protocol's figure at its largest batch size, else the
    evaluation pass's average."""
    if timing.inference:
        return timing.inference[str(largest_batch(timing.inference))]["seq_per_s"]
    return timing.infer_seq_per_s


def _number(value: float | None) -> float:
    """NaN for a metric that was undefined (``None`` in the record)."""
    return math.nan if value is None else float(value)


def _median(values: list) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.median(kept)) if kept else None


def _mean(values: list) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def ok_records(records: list[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.is_ok]


def failed_records(records: list[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.status == RunStatus.failed]


def aggregate(records: list[RunRecord]) -> list[Row]:
    """Rows per (setting, candidate), ranked within each setting, Pareto flags set. Runs pool
    as the seeds of one row only when their configs differ in the seed alone
    (``replicate_key``), one run per seed."""
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in ok_records(latest_per_run(records)):
        replicates = replicate_key(r.config, r.framework)
        key = (setting_of(r), setting_key(r), *candidate_of(r), replicates)
        groups[key].append(r)
    rows = [_row(key, one_per_seed(rs)) for key, rs in groups.items()]
    _disambiguate(rows, list(groups))
    by_setting: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_setting[row.setting].append(row)
    out = []
    for setting in sorted(by_setting):
        ranked = sorted(by_setting[setting], key=lambda r: (-nan_lowest(r.roc_auc_mean), r.name))
        for i, row in enumerate(ranked, start=1):
            row.rank = i
        flag_pareto(ranked)
        out.extend(ranked)
    return out


def one_per_seed(runs: list[RunRecord]) -> list[RunRecord]:
    """The latest finished run of each seed, in seed order."""
    latest: dict[int, RunRecord] = {}
    for r in sorted(runs, key=lambda r: str(r.finished_at)):
        latest[r.seed] = r
    return [latest[seed] for seed in sorted(latest)]


def flat_config(config: dict, prefix: str = "") -> dict[str, str]:
    """Dotted key -> JSON value of every leaf of a nested config."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_config(value, f"{name}."))
        else:
            out[name] = json.dumps(value, sort_keys=True, default=str)
    return out


def differing_keys(configs: list[dict], ignore: tuple[str, ...] = ()) -> list[str]:
    """For each config, ``key=value`` of the keys on which the configs disagree (a key one of
    them lacks reads ``absent``), ``ignore`` and their subkeys left out."""
    flats = [flat_config(c) for c in configs]
    keys = sorted(set().union(*flats))
    varying = [
        k
        for k in keys
        if len({f.get(k, "absent") for f in flats}) > 1
        and not any(k == i or k.startswith(f"{i}.") for i in ignore)
    ]
    return [", ".join(f"{k}={f.get(k, 'absent')}" for k in varying) for f in flats]


def _disambiguate(rows: list[Row], keys: list[tuple]) -> None:
    """Rows (or settings) that share a label but differ in config get the keys they differ
    on added to their name."""
    by_label: dict[str, dict[str, dict]] = defaultdict(dict)
    for row, key in zip(rows, keys, strict=True):
        by_label[key[0]].setdefault(key[1], row.records[0].config)
    setting_names = {}
    for label, configs in by_label.items():
        if len(configs) > 1:
            parts = [{k: c.get(k) for k in SETTING_SECTIONS} for c in configs.values()]
            for skey, diff in zip(configs, differing_keys(parts), strict=True):
                setting_names[(label, skey)] = f"{label} [{diff}]"
    for row, key in zip(rows, keys, strict=True):
        row.setting = setting_names.get((key[0], key[1]), row.setting)
    clashes: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        clashes[(row.setting, row.name)].append(row)
    for same in clashes.values():
        if len(same) > 1:
            same_configs = [r.records[0].config for r in same]
            ignore = ("seed", *NOISE_KEYS, *ignored_sections(same[0].framework))
            for row, diff in zip(same, differing_keys(same_configs, ignore), strict=True):
                row.variant = diff


def nan_lowest(x: float) -> float:
    """``x``, with NaN (a metric that could not be computed) below every number when sorting."""
    return -math.inf if math.isnan(x) else x


def _row(key: tuple, runs: list[RunRecord]) -> Row:
    setting, _, model, framework, objective, _ = key  # setting hash, replicate key unused
    metrics = [r.metrics for r in runs if r.metrics is not None]
    aucs = [_number(m.roc_auc) for m in metrics]
    if len(runs) == 1:  # no seed spread: the run's own bootstrap over its test sequences
        low, high = (_number(x) for x in metrics[0].roc_auc_ci)
        mean, kind = aucs[0], "bootstrap over test sequences"
    else:
        ci = mean_ci(aucs, bounds=UNIT_INTERVAL)
        mean, low, high, kind = ci.mean, ci.low, ci.high, "t over seeds"
    per_type: dict[str, list[float | None]] = defaultdict(list)
    for m in metrics:
        for t, v in m.per_type.items():
            per_type[t].append(v)
    timing = [r.timing for r in runs]
    return Row(
        setting=setting,
        model=model,
        framework=framework,
        objective=objective,
        seeds=[r.seed for r in runs],
        roc_auc=aucs,
        roc_auc_mean=mean,
        roc_auc_low=low,
        roc_auc_high=high,
        ci_kind=kind,
        pr_auc=_mean([m.pr_auc for m in metrics]),
        f1=_mean([m.f1 for m in metrics]),
        recall_at_1pct_fpr=_mean([m.recall_at_1pct_fpr for m in metrics]),
        per_type={t: _mean(v) for t, v in per_type.items()},
        train_seq_per_s=_median([train_rate(t) for t in timing]),
        infer_seq_per_s=_median([infer_rate(t) for t in timing]),
        latency_ms=_median([latency_of(r)[0] for r in runs]),
        n_params=runs[0].n_params,
        peak_memory_mb=_median([t.peak_memory_mb for t in timing]),
        run_dirs=[r.run_dir for r in runs],
        records=runs,
        detection=detection_setting(runs[0]),
        latency_spread=latency_range(runs),
        latency_interference=interfered(runs),
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


INVERSE_NOTE = "ranks anomalies inversely: undertrained or mis-signed; never recommended"
# Rows that check the benchmark rather than detect anything: ranked, never recommended.
CHECKS: tuple[str, ...] = ("selection_probe",)


def ranks_inversely(row: Row) -> bool:
    """The ROC-AUC interval lies below 0.5: the detector puts normal sequences first."""
    return not math.isnan(row.roc_auc_high) and row.roc_auc_high < 0.5


def recommendations(rows: list[Row], hardware: str, latency: str = "latency") -> list[str]:
    """Per budget, the best ROC-AUC that fits it, with its interval and the evidence; rows
    that rank anomalies inversely are named and never recommended."""
    if not rows:
        return []
    ranked = sorted(rows, key=lambda r: r.rank)
    inverse = [
        f"{r.name}: ROC-AUC {r.roc_auc_mean:.3f} [{r.roc_auc_low:.3f}, {r.roc_auc_high:.3f}] "
        f"{INVERSE_NOTE}."
        for r in ranked
        if ranks_inversely(r)
    ]
    usable = [r for r in ranked if not ranks_inversely(r) and r.model not in CHECKS]
    if not usable:
        return inverse
    best = usable[0]
    figure = (
        f"{best.roc_auc_mean:.3f} [{best.roc_auc_low:.3f}, {best.roc_auc_high:.3f}] "
        f"({best.ci_kind}, {len(best.seeds)} seed{'s' * (len(best.seeds) > 1)})"
    )
    if not better_than_chance(best):
        return [
            f"No detector is better than chance here: the best, {best.name}, has ROC-AUC "
            f"{figure}, an interval that does not lie above 0.5.",
            *inverse,
        ]
    lines = [f"Best ROC-AUC: **{best.name}**, {figure}."]
    top = compare_top_two(usable)
    if top is not None:
        lines.append(f"Evidence: {top.sentence}.")
    lines += _budget_lines(usable, "latency_ms", latency, "ms", hardware)
    lines += _budget_lines(usable, "peak_memory_mb", "peak memory", "MB", hardware)
    return lines + inverse


def better_than_chance(row: Row) -> bool:
    """The ROC-AUC interval lies above 0.5 (a detector worth recommending at all)."""
    return not math.isnan(row.roc_auc_low) and row.roc_auc_low > 0.5


def _budget_lines(ranked: list[Row], attr: str, what: str, unit: str, hardware: str) -> list[str]:
    """One line per Pareto point better than chance: the best quality within that cost,
    cheapest first. Latency points whose block spreads overlap are one tie: the best of them
    is named with the others beside it (which of them is faster is noise)."""
    if any(getattr(r, attr) is None for r in ranked):
        return []
    on_front = (r.pareto_latency if attr == "latency_ms" else r.pareto_memory for r in ranked)
    front = sorted(
        (r for r, flag in zip(ranked, on_front, strict=True) if flag and better_than_chance(r)),
        key=lambda r: getattr(r, attr),
    )
    groups = latency_ties(front) if attr == "latency_ms" else [[r] for r in front]
    lines = []
    for group in groups:
        best = max(group, key=lambda r: r.roc_auc_mean)
        cost = max(getattr(r, attr) for r in group)
        tied = [r.name for r in group if r is not best]
        note = f"; tied in {what} with {', '.join(tied)} (spreads overlap)" if tied else ""
        flag = "; latency disturbed by other load" if best.latency_interference else ""
        lines.append(
            f"Best ROC-AUC with {what} <= {_ceil(cost)} {unit} on {hardware}: "
            f"**{best.name}** ({best.roc_auc_mean:.3f} [{best.roc_auc_low:.3f}, "
            f"{best.roc_auc_high:.3f}], {getattr(best, attr):.3g} {unit}{note}{flag})."
        )
    return lines


def latency_ties(front: list[Row]) -> list[list[Row]]:
    """Consecutive rows (cheapest first) whose latency spreads overlap, as groups."""
    groups: list[list[Row]] = []
    for row in front:
        if groups and _overlap(groups[-1][-1], row):
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _overlap(a: Row, b: Row) -> bool:
    if a.latency_spread is None or b.latency_spread is None:
        return False
    return a.latency_spread[1] >= b.latency_spread[0] and b.latency_spread[1] >= a.latency_spread[0]


def _ceil(x: float) -> str:
    """A round budget just above ``x`` (2 significant digits)."""
    if x <= 0:
        return "0"
    digits = 1 - math.floor(math.log10(x))
    step = 10.0**-digits
    return f"{math.ceil(x / step - 1e-9) * step:.{max(digits, 0)}f}"


@dataclass(frozen=True)
class SeenUnseen:
    """One detector's per-type test ROC-AUC when the type was seen in training and when it
    was held out (``anomaly.holdout``), each the mean over the runs of that kind."""

    setting: str
    name: str
    seen: dict[str, float]  # type -> mean ROC-AUC over runs that trained on it
    unseen: dict[str, float]  # type -> mean ROC-AUC over runs that held it out

    @property
    def types(self) -> list[str]:
        return sorted(set(self.seen) & set(self.unseen))

    def mean(self, which: str) -> float:
        values = getattr(self, which)
        return _mean([values[t] for t in self.types])


def seen_vs_unseen(records: list[RunRecord]) -> list[SeenUnseen]:
    """Per setting and detector, for the types some run held out of training: per-type
    ROC-AUC seen vs unseen (a leave-one-type-out sweep gives both for every type). Runs pool
    only when their configs differ in the seed and ``anomaly.holdout`` alone."""
    found: dict[tuple[str, str, str], dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: {"seen": defaultdict(list), "unseen": defaultdict(list)}
    )
    for r in ok_records(latest_per_run(records)):
        seen = r.data.get("types_seen_in_training")
        if not seen or r.metrics is None:
            continue
        key = (setting_of(r), display_name(*candidate_of(r)), _key_without_holdout(r))
        for t, auc in r.metrics.per_type.items():
            if auc is not None:
                found[key]["unseen" if t not in seen else "seen"][t].append(auc)
    out = []
    for (setting, name, _), kinds in sorted(found.items()):
        entry = SeenUnseen(
            setting,
            name,
            {t: _mean(v) for t, v in kinds["seen"].items()},
            {t: _mean(v) for t, v in kinds["unseen"].items()},
        )
        if entry.types:
            out.append(entry)
    return out


@dataclass(frozen=True)
class Ablation:
    """One setting's multimodal rows that differ in the modalities the detector read
    (``model.modalities``): what each modality buys, overall and per anomaly type."""

    setting: str
    detector: str
    rows: list[Row]

    @staticmethod
    def modalities(row: Row) -> tuple[str, ...]:
        return tuple(row.records[0].modalities_used)

    @property
    def base(self) -> Row | None:
        """The row that read behaviour alone (what the others are compared with)."""
        return next((r for r in self.rows if self.modalities(r) == ("behaviour",)), None)

    @property
    def types(self) -> list[str]:
        return sorted({t for r in self.rows for t in r.per_type})


def modality_ablations(rows: list[Row]) -> list[Ablation]:
    """Per setting and multimodal framework/objective, the rows that read different sets of
    modalities (two at least), fewest modalities first."""
    groups: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for row in rows:
        if row.model == "multimodal" and row.records:
            groups[(row.setting, row.framework, row.objective)].append(row)
    out = []
    for (setting, framework, objective), members in sorted(groups.items()):
        if len({Ablation.modalities(r) for r in members}) < 2:
            continue
        members = sorted(members, key=lambda r: (len(Ablation.modalities(r)), r.name))
        out.append(Ablation(setting, display_name("multimodal", framework, objective), members))
    return out


def _key_without_holdout(record: RunRecord) -> str:
    config = record.config
    anomaly = {k: v for k, v in config.get("anomaly", {}).items() if k != "holdout"}
    return replicate_key({**config, "anomaly": anomaly}, record.framework)


@dataclass(frozen=True)
class CrossSetting:
    """Within one detection setting: Friedman/Nemenyi over data settings and Holm-corrected
    Wilcoxon tests against the best, one value (the mean over seeds) per detector and
    setting."""

    detection: str
    friedman: Friedman | None
    holm: list[tuple[str, float, float]]  # (candidate, raw p, Holm-adjusted p) vs the best
    n_blocks: int
    note: str


def cross_setting(rows: list[Row]) -> list[CrossSetting]:
    """One comparison per detection setting (detectors of different settings are never
    ranked together)."""
    by_detection: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_detection[row.detection].append(row)
    return [_cross(d, by_detection[d]) for d in sorted(by_detection)]


def _cross(detection: str, rows: list[Row]) -> CrossSetting:
    """Blocks are data settings (seed means); candidates must appear in every setting."""
    settings = sorted({r.setting for r in rows})
    names = sorted({r.name for r in rows})
    table = {(r.setting, r.name): r.roc_auc_mean for r in rows}
    common = [n for n in names if all((s, n) in table for s in settings)]
    n = len(settings)
    if len(common) < 3 or n < 2:
        return CrossSetting(
            detection,
            None,
            [],
            n,
            f"{n} setting(s) with {len(common)} detector(s) present in all: "
            "the Friedman test needs at least 2 settings and 3 detectors",
        )
    values = np.array([[table[(s, c)] for c in common] for s in settings])
    result = friedman(values, common)
    best = int(np.argmin(result.average_ranks))
    raw = [(c, _wilcoxon(values[:, best], values[:, j])) for j, c in enumerate(common) if j != best]
    raw = [(c, p) for c, p in raw if not math.isnan(p)]
    adjusted = list(holm([p for _, p in raw])) if raw else []
    note = (
        f"{n} settings: fewer than {MIN_BLOCKS_FOR_FRIEDMAN}, so the Friedman p-value and the "
        "critical difference are rough; treat the ranks as descriptive"
        if n < MIN_BLOCKS_FOR_FRIEDMAN
        else f"{n} settings"
    )
    return CrossSetting(
        detection,
        result,
        [(c, p, float(a)) for (c, p), a in zip(raw, adjusted, strict=True)],
        n,
        note,
    )


def _wilcoxon(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided signed-rank p of paired setting means; NaN when every difference is 0."""
    from scipy import stats

    if np.all(a == b):
        return math.nan
    return float(stats.wilcoxon(a, b).pvalue)
