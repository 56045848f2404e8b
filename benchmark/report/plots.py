"""Report figures (matplotlib, headless): each is written as PNG and SVG.

Inputs are selection rows, records and the scores each run saved beside its record; nothing
here touches a model. Every axis says what it measures and in which unit.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: reports are built on servers and in CI
import itertools

import matplotlib.pyplot as plt
import numpy as np

from benchmark.evaluation.metrics import per_type_roc_auc, pr_curve, roc_auc, roc_curve
from benchmark.evaluation.stats import Friedman
from benchmark.records.atomic import atomic_path
from benchmark.records.record import RunRecord
from benchmark.records.store import SCORES_FILE
from benchmark.report.online import OnlineRow
from benchmark.report.selection import Row, pareto_optimal


def save(fig, stem: Path) -> Path:
    """Write ``stem``.png and ``stem``.svg, each atomically (a killed report leaves the
    previous plot, never half of one); returns the PNG path."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    try:
        # the tight box measured once: "tight" would lay the figure out again for each format
        box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.1)
        for suffix, dpi in ((".png", 130), (".svg", None)):
            with atomic_path(stem.with_suffix(suffix)) as tmp:
                fig.savefig(tmp, dpi=dpi, bbox_inches=box, format=suffix[1:])
    finally:
        plt.close(fig)
    return stem.with_suffix(".png")


MARKERS = "osD^v<>Pp*Xh"


def pareto(rows: list[Row], cost: str, cost_label: str, title: str, stem: Path) -> Path | None:
    """ROC-AUC against a cost (log axis), the Pareto front joined. Each detector has its own
    colour and marker, named in a legend beside the axes (labels on the points would overlap
    wherever detectors lie close); Pareto-optimal points are filled, dominated ones hollow."""
    points = [r for r in rows if getattr(r, cost) is not None]
    if len(points) < 2:
        return None
    x = np.array([getattr(r, cost) for r in points])
    y = np.array([r.roc_auc_mean for r in points])
    front = np.array(pareto_optimal(list(y), list(x)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    err = np.array(
        [[r.roc_auc_mean - r.roc_auc_low, r.roc_auc_high - r.roc_auc_mean] for r in points]
    )
    ax.errorbar(x, y, yerr=np.nan_to_num(err.T), fmt="none", ecolor="0.8", capsize=2, zorder=1)
    order = np.argsort(x[front])
    ax.step(x[front][order], y[front][order], where="post", color="0.4", lw=1, zorder=2)
    colours = plt.get_cmap("tab20")
    for i, row in enumerate(points):
        colour = colours(i % 20)
        ax.scatter(
            x[i],
            y[i],
            marker=MARKERS[i % len(MARKERS)],
            s=45,
            facecolors=colour if front[i] else "none",
            edgecolors=colour,
            linewidths=1.4,
            label=row.name + ("  (Pareto)" if front[i] else ""),
            zorder=3,
        )
    ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel("ROC-AUC (test, higher is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save(fig, stem)


def _scores(row: Row) -> dict | None:
    """The first seed's saved test scores of a row, if its run folder still has them."""
    path = Path(row.run_dirs[0]) / SCORES_FILE if row.run_dirs else None
    if path is None or not path.exists():
        return None
    with np.load(path, allow_pickle=False) as saved:
        return {k: saved[k] for k in saved.files}


def roc_pr(rows: list[Row], title: str, stem: Path) -> Path | None:
    """ROC and precision-recall curves of the given rows (first seed of each)."""
    loaded = [(r, s) for r in rows if (s := _scores(r)) is not None]
    if not loaded:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    for i, (row, s) in enumerate(loaded):
        keep = s["test_population"].astype(bool) if "test_population" in s else slice(None)
        labels, scores = s["test_label"].astype(bool)[keep], s["test_score"][keep]
        fpr, tpr = roc_curve(labels, scores)
        recall, precision = pr_curve(labels, scores)
        auc = roc_auc(labels, scores)
        left.plot(fpr, tpr, color=f"C{i}", label=f"{row.name} (AUC {auc:.3f})")
        right.plot(recall, precision, color=f"C{i}", label=row.name)
        base = labels.mean()
    left.plot([0, 1], [0, 1], ls="--", color="0.6", label="chance")
    right.axhline(base, ls="--", color="0.6", label=f"chance (prevalence {base:.2f})")
    left.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    right.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
    right.set_ylim(0, 1.02)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if ax is left else "upper right")
    fig.suptitle(title, fontsize=10)
    return save(fig, stem)


SEVERITY_BINS = 4  # bins per type, at quantiles of the severities its victims received


def severity_edges(severity: np.ndarray, bins: int = SEVERITY_BINS) -> np.ndarray:
    """Bin edges at quantiles of the observed severities: every bin holds victims, whatever
    range the experiment's severity and jitter cover (the last edge is inclusive)."""
    edges = np.unique(np.quantile(severity, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) < 2:  # one severity for all: one bin around it
        edges = np.array([edges[0], edges[0]])
    edges[-1] = np.nextafter(edges[-1], np.inf)
    return edges


def auc_by_severity(scores: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per anomaly type: (mean severity of each bin, ROC-AUC of that type's sequences in the
    bin against the type's reference normals, as in the per-type table: the normal sequences
    it could have hit, matched to its victims' eligibility patterns); empty bins left out."""
    labels, s = scores["test_label"].astype(bool), scores["test_score"]
    types, severity = scores["test_type"], scores["test_severity"]
    names = [str(n) for n in scores["type_names"]]
    eligible = scores.get("test_eligible")
    out = {}
    for t, name in enumerate(names):
        victims = labels & (types == t)
        if not victims.any():
            continue
        centres, aucs = [], []
        for lo, hi in itertools.pairwise(severity_edges(severity[victims])):
            hit = victims & (severity >= lo) & (severity < hi)
            auc = per_type_roc_auc(labels, np.where(hit, t, -1), s, tuple(names), eligible)
            if auc.get(name) is not None:
                centres.append(float(severity[hit].mean()))
                aucs.append(auc[name])
        if centres:
            out[name] = (np.array(centres), np.array(aucs))
    return out


def severity(row: Row, title: str, stem: Path) -> Path | None:
    """ROC-AUC against injected severity, one line per anomaly type (pooled over seeds: the
    seeds' bins at the same rank averaged). The axis spans the severities injected; types
    with equal values are told apart by their markers."""
    pooled: dict[str, list] = {}
    for run_dir in row.run_dirs:
        path = Path(run_dir) / SCORES_FILE
        if not path.exists():
            continue
        with np.load(path, allow_pickle=False) as saved:
            for name, (c, a) in auc_by_severity({k: saved[k] for k in saved.files}).items():
                pooled.setdefault(name, []).append((c, a))
    if not pooled:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, parts) in enumerate(sorted(pooled.items())):
        n = min(len(p[0]) for p in parts)
        centres = np.mean([p[0][:n] for p in parts], axis=0)
        means = np.mean([p[1][:n] for p in parts], axis=0)
        ax.plot(centres, means, marker=MARKERS[i % len(MARKERS)], color=f"C{i % 10}", label=name)
    ax.axhline(0.5, ls="--", color="0.6", lw=1)
    ax.set_ylim(0, 1.04)
    ax.set_xlabel("injected severity (mean of each quantile bin; 0 = looks normal, 1 = blatant)")
    ax.set_ylabel("ROC-AUC vs the type's reference normals")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save(fig, stem)


def critical_difference(result: Friedman, stem: Path) -> Path:
    """Demsar's diagram: average ranks on a line; detectors closer than the Nemenyi critical
    difference are joined by a bar (no significant difference)."""
    ranks = np.array(result.average_ranks)
    order = np.argsort(ranks)
    k = len(ranks)
    cliques = _cliques(ranks[order], result.critical_difference)
    half = (k + 1) // 2
    first_label = -0.5 - 0.3 * len(cliques)
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.35 * half + 0.15 * len(cliques)))
    ax.set_xlim(0.8, k + 0.2)
    ax.set_ylim(first_label - 0.6 * half, 1.8)
    ax.axhline(0, xmin=0, xmax=1, color="k", lw=1)
    for r in range(1, k + 1):
        ax.plot([r, r], [0, 0.15], color="k", lw=1)
        ax.text(r, 0.3, str(r), ha="center", fontsize=8)
    for pos, j in enumerate(order):
        left = pos < half
        y = first_label - 0.6 * (pos if left else k - 1 - pos)
        x_end = 0.8 if left else k + 0.2
        ax.plot([ranks[j], ranks[j], x_end], [0, y, y], color="0.3", lw=0.8)
        ax.text(
            x_end + (-0.05 if left else 0.05),
            y,
            f"{result.names[j]} ({ranks[j]:.2f})",
            ha="right" if left else "left",
            va="center",
            fontsize=8,
            clip_on=False,
        )
    for depth, (lo, hi) in enumerate(cliques):
        y = -0.3 - 0.3 * depth
        ax.plot([ranks[order][lo] - 0.03, ranks[order][hi] + 0.03], [y, y], color="C3", lw=3)
    ax.plot([1, 1 + result.critical_difference], [1.0, 1.0], color="k", lw=2)
    ax.text(
        1 + result.critical_difference / 2,
        1.15,
        f"CD = {result.critical_difference:.2f}",
        ha="center",
        fontsize=8,
    )
    ax.set_title(
        f"Average rank by ROC-AUC over {result.n_blocks} settings (1 = best); Friedman p = "
        f"{result.pvalue:.3g}; bars join detectors not significantly different (Nemenyi, "
        f"alpha = {result.alpha})",
        fontsize=9,
    )
    ax.axis("off")
    return save(fig, stem)


def _cliques(sorted_ranks: np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Maximal runs of consecutive detectors whose rank spread is below ``cd``."""
    out: list[tuple[int, int]] = []
    for lo in range(len(sorted_ranks)):
        hi = lo
        while hi + 1 < len(sorted_ranks) and sorted_ranks[hi + 1] - sorted_ranks[lo] < cd:
            hi += 1
        if hi > lo and not any(a <= lo and hi <= b for a, b in out):
            out.append((lo, hi))
    return out


def training_curves(records: list[RunRecord], title: str, stem: Path) -> Path | None:
    """Training and validation loss per epoch of each deep run given (one panel per run)."""
    runs = [r for r in records if r.training.get("history")]
    if not runs:
        return None
    fig, axes = panel_grid(len(runs))
    for ax, r in zip(axes.ravel(), runs, strict=False):
        hist = r.training["history"]
        epochs = [h["epoch"] for h in hist]
        ax.plot(epochs, [h["train_loss"] for h in hist], marker=".", label="train")
        ax.plot(epochs, [h["val_loss"] for h in hist], marker=".", label="validation")
        best = r.training.get("best_epoch")
        if best:
            ax.axvline(best, ls=":", color="0.5", label="restored")
        ax.set_title(f"{r.model}/{r.framework}/{r.objective}", fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(f"{r.objective} loss", fontsize=8)
    return finish_panels(fig, axes, len(runs), title, stem, legend_size=7)


def detection_delay(rows: list[OnlineRow], title: str, stem: Path) -> Path | None:
    """Share of attacks detected vs events since the attack started: all attacks, then one
    panel per anomaly type, a line per detector."""
    if not rows:
        return None
    panels = list(dict.fromkeys(k for r in rows for k in r.curves))
    fig, axes = panel_grid(len(panels))
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        for r in rows:
            curve = r.curves.get(panel)
            if curve:
                ax.plot(range(1, len(curve) + 1), curve, marker=".", ms=3, label=r.name)
        ax.set_title("all attacks" if panel == "all" else panel, fontsize=8)
        ax.set_xlabel("events since the attack started", fontsize=8)
        ax.set_ylabel("share detected", fontsize=8)
        ax.set_ylim(0, 1)
    return finish_panels(fig, axes, len(panels), title, stem, legend_size=6)


def panel_grid(n: int):
    """A figure of ``n`` small panels, four to a row."""
    cols = min(4, n)
    rows = math.ceil(n / cols)
    return plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)


def finish_panels(fig, axes, n: int, title: str, stem: Path, legend_size: int) -> Path:
    """Small ticks and a grid on the ``n`` panels used, the rest hidden, the legend on the
    first, the title; written as ``stem``.png and .svg."""
    for ax in axes.ravel()[:n]:
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=legend_size)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, stem)
