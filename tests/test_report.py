"""Model-selection report: aggregation, ranks, Pareto flags, statistics, files and plots,
from fixture records whose answers are known."""

import base64
import csv
import json
import math
import re
import subprocess
import sys
import threading
import time
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pytest
from pydantic import TypeAdapter
from scipy import stats

from benchmark.errors import ResultsWriteError
from benchmark.evaluation.stats import friedman, holm, mean_ci, nemenyi_critical_difference
from benchmark.records.locks import WRITER_LOCK, sole_writer, try_lock
from benchmark.records.record import OnlineMetrics, RunRecord, dumps, from_dict
from benchmark.records.store import RECORD_FILE, SCORES_FILE
from benchmark.report.page import (
    Report,
    ablation_table,
    build,
    cells,
    console,
    magnitude,
    main,
    publish,
    to_html,
    to_markdown,
    write,
)
from benchmark.report.selection import (
    INVERSE_NOTE,
    aggregate,
    compare_top_two,
    cross_setting,
    modality_ablations,
    pareto_optimal,
    ranks_inversely,
    recommendations,
)

from .conftest import ROOT

TYPES = ["click_flood", "brushing"]


def record(
    model,
    seed,
    auc,
    *,
    framework="torch",
    dataset="synthetic",
    latency=None,
    memory=None,
    setting="supervised",
) -> RunRecord:
    timing: dict = {"train_seq_per_s": 100.0, "infer_seq_per_s": 1000.0, "train_seconds": 1.0}
    if latency is not None:
        timing["latency_ms"] = {"batch_1": {"p50": latency / 2, "p99": latency}}
    if memory is not None:
        timing["peak_memory_mb"] = memory
    return from_dict(
        {
            "run_id": f"{dataset}-{model}-{framework}-{seed}-{setting}",
            "status": "ok",
            "model": model,
            "framework": framework,
            "objective": "classify",
            "setting": setting,
            "dataset": dataset,
            "anomaly": "mixed",
            "seed": seed,
            "config": {"anomaly": {"severity": 0.7}, "setting": setting},
            "provenance": {"hardware": {"cpu": "Test CPU", "cpu_count": 2}},
            "metrics": {
                "roc_auc": auc,
                "roc_auc_ci": [auc - 0.05, auc + 0.05],
                "pr_auc": auc / 2,
                "f1": auc / 3,
                "recall_at_1pct_fpr": auc / 4,
                "per_type": {"click_flood": 1.0, "brushing": auc},
            },
            "n_params": 1000,
            "timing": timing,
            "training": {"history": [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1}]},
        }
    )


def test_rows_aggregate_seeds_rank_and_use_the_right_interval():
    records = [record("lstm", s, a) for s, a in enumerate((0.80, 0.82, 0.84))]
    records += [record("gru", 0, 0.90), record("random", 0, 0.5, framework="numpy")]
    records.append(replace(record("transformer", 0, 0.99), status="failed"))
    rows = {r.name: r for r in aggregate(records)}
    assert set(rows) == {"lstm/torch/classify", "gru/torch/classify", "random/numpy"}
    lstm = rows["lstm/torch/classify"]
    expected = mean_ci([0.80, 0.82, 0.84])
    assert (lstm.roc_auc_mean, lstm.roc_auc_low, lstm.roc_auc_high) == pytest.approx(
        (expected.mean, expected.low, expected.high)
    )
    assert lstm.ci_kind == "t over seeds"
    gru = rows["gru/torch/classify"]
    assert (gru.roc_auc_low, gru.roc_auc_high) == pytest.approx((0.85, 0.95))
    assert gru.ci_kind == "bootstrap over test sequences"
    assert [gru.rank, lstm.rank, rows["random/numpy"].rank] == [1, 2, 3]
    assert lstm.per_type["brushing"] == pytest.approx(0.82)
    assert lstm.latency_ms == pytest.approx(1.0)  # 1000 seq/s, no timing protocol figure


def test_the_modality_ablation_shows_what_each_modality_buys_per_type():
    """Multimodal runs differing only in model.modalities: one table row per set of
    modalities (fewest first), each overall and per-type figure beside its difference from
    behaviour alone; a detector read with one set of modalities only has no table."""

    def reading(modalities: list[str], seed: int, auc: float, brushing: float) -> RunRecord:
        r = record("multimodal", seed, auc)
        config = {**r.config, "model": {"modalities": modalities}}
        per_type = {"click_flood": 1.0, "brushing": brushing}
        metrics = replace(r.metrics, per_type=per_type)
        run_id = f"{r.run_id}-{'-'.join(modalities)}"
        return replace(r, run_id=run_id, config=config, modalities_used=modalities, metrics=metrics)

    alone, text = ["behaviour"], ["behaviour", "query_text"]
    records = [reading(alone, s, 0.70 + 0.02 * s, 0.60) for s in range(3)]
    records += [reading(text, s, 0.80 + 0.02 * s, 0.90) for s in range(3)]
    records += [record("lstm", 0, 0.75)]
    (ablation,) = modality_ablations(aggregate(records))
    header, body = ablation_table(ablation)
    assert header == ["modalities read", "seeds", "ROC-AUC [95% CI]", "brushing", "click_flood"]
    assert [row[0] for row in body] == ["behaviour", "behaviour + query text"]
    assert body[0][2].startswith("0.720 (+0.000) [")
    assert body[1][2].startswith("0.820 (+0.100) [")
    assert body[1][3:] == ["0.900 (+0.300)", "1.000 (+0.000)"]
    assert modality_ablations(aggregate(records[:3] + records[-1:])) == []
    page = Report(ROOT, ROOT, [], [], [], [ablation], {}, [], "test")
    assert "## What each modality buys: multimodal/torch/classify" in to_markdown(page)
    assert "<td>0.900 (+0.300)</td>" in to_html(page)


def test_settings_are_ranked_separately():
    records = [record("lstm", 0, 0.9), record("gru", 0, 0.8)]
    records += [record("lstm", 0, 0.6, dataset="other"), record("gru", 0, 0.7, dataset="other")]
    ranks = {(r.setting.split(" ")[0], r.model): r.rank for r in aggregate(records)}
    assert ranks == {("synthetic", "lstm"): 1, ("synthetic", "gru"): 2} | {
        ("other", "gru"): 1,
        ("other", "lstm"): 2,
    }


def test_only_runs_of_one_config_pool_as_seeds():
    small = [record("lstm", s, 0.8) for s in range(2)]
    big = [record("lstm", s, 0.9) for s in range(2)]
    for r in big:
        r.run_id += "-big"
        r.config["model"] = {"hidden_dim": 256}
    copy = replace(small[0], experiment="other")  # the same run id seen in a second folder
    rows = aggregate([*small, *big, copy])
    assert sorted(len(r.seeds) for r in rows) == [2, 2]
    assert sorted(r.name for r in rows) == [
        "lstm/torch/classify [model.hidden_dim=256]",
        "lstm/torch/classify [model.hidden_dim=absent]",
    ]


@pytest.mark.parametrize(
    "change",
    [{"save_arrays": True}, {"pca": {"components": 4}}, {"data_seed": 7}, {"train": {"epochs": 1}}],
)
def test_runs_that_differ_in_more_than_the_seed_never_pool(change):
    """A rerun of seed 0 with one other key changed is a row of its own, named by that key; the
    row of the unchanged runs keeps one run per seed."""
    base = [record("lstm", s, 0.8) for s in range(3)]
    other = replace(record("lstm", 0, 0.6), run_id="changed", finished_at="z")
    other.config = {**other.config, **change}
    rows = aggregate([*base, other])
    assert sorted(r.seeds for r in rows) == [[0], [0, 1, 2]]
    key = next(iter(change))
    changed = next(r for r in rows if r.seeds == [0])
    assert f"[{key}" in changed.name + changed.setting
    assert changed.roc_auc == [0.6]


def test_settings_are_ranked_and_compared_apart():
    records = [
        record(m, s, auc + 0.01 * s, dataset=d, setting=setting)
        for setting in ("supervised", "unsupervised")
        for d in ("a", "b")
        for m, auc in (("lstm", 0.9), ("gru", 0.8), ("transformer", 0.7))
        for s in range(2)
    ]
    rows = aggregate(records)
    assert {r.setting for r in rows} == {
        f"{d} / mixed (severity 0.7) / {s}" for d in "ab" for s in ("supervised", "unsupervised")
    }
    assert sorted(r.rank for r in rows if r.setting.startswith("a") and "/ unsup" in r.setting) == [
        1,
        2,
        3,
    ]
    assert [c.detection for c in cross_setting(rows)] == ["supervised", "unsupervised"]


def test_pareto_front_of_a_constructed_set():
    quality = [0.90, 0.85, 0.80, 0.70, 0.85, 0.60]
    cost = [10.0, 5.0, 1.0, 0.5, 6.0, 0.5]
    # 4 (0.85 @ 6) is dominated by 1 (0.85 @ 5); 5 (0.60 @ 0.5) by 3 (0.70 @ 0.5)
    assert pareto_optimal(quality, cost) == [True, True, True, True, False, False]
    assert pareto_optimal([0.8, 0.8], [1.0, 1.0]) == [True, True], "equal points both stay"


def test_pareto_flags_and_budget_recommendations_use_p99_latency():
    records = [
        record("transformer", 0, 0.92, latency=8.0, memory=900),
        record("lstm", 0, 0.90, latency=2.0, memory=300),
        record("gru", 0, 0.88, latency=3.0, memory=200),
        record("random", 0, 0.50, framework="numpy", latency=0.01, memory=1),
    ]
    rows = aggregate(records)
    flags = {r.model: (r.pareto_latency, r.pareto_memory) for r in rows}
    assert flags == {
        "transformer": (True, True),
        "lstm": (True, True),
        "gru": (False, True),
        "random": (True, True),
    }
    lines = recommendations(rows, "Test GPU", "p99 batch-1 latency")
    budget = [line for line in lines if "latency <=" in line]
    # random is on the front but no better than chance: never recommended
    assert [re.search(r"\*\*(.+?)\*\*", line).group(1) for line in budget] == [
        "lstm/torch/classify",
        "transformer/torch/classify",
    ]
    assert "p99 batch-1 latency <= 2.0 ms on Test GPU" in budget[0]
    assert "latency <= 8.0 ms" in budget[1]
    memory = [line for line in lines if "memory <=" in line]
    assert [re.search(r"\*\*(.+?)\*\*", line).group(1) for line in memory] == [
        "gru/torch/classify",
        "lstm/torch/classify",
        "transformer/torch/classify",
    ]


def test_no_front_when_a_candidate_lacks_the_cost():
    rows = aggregate([record("lstm", 0, 0.9, memory=10), record("gru", 0, 0.8)])
    assert {r.pareto_memory for r in rows} == {None}


def test_top_two_with_one_or_few_seeds_is_called_insufficient():
    one = compare_top_two(aggregate([record("lstm", 0, 0.9), record("gru", 0, 0.8)]))
    assert not one.sufficient
    assert "one seed only" in one.sentence
    three = compare_top_two(
        aggregate(
            [record(m, s, a + s / 100) for s in range(3) for m, a in (("lstm", 0.9), ("gru", 0.8))]
        )
    )
    assert not three.sufficient
    assert "too few seeds" in three.sentence
    assert three.wilcoxon_p == pytest.approx(0.25)


def test_top_two_with_six_seeds_is_tested_and_matches_scipy():
    rng = np.random.default_rng(0)
    base = 0.8 + rng.normal(0, 0.01, 6)
    gain = np.array([0.02, 0.03, 0.01, 0.025, 0.015, 0.04])
    records = [record("lstm", s, base[s] + gain[s]) for s in range(6)]
    records += [record("gru", s, base[s]) for s in range(6)]
    top = compare_top_two(aggregate(records))
    assert top.sufficient
    assert top.best == "lstm/torch/classify"
    assert top.wilcoxon_p == pytest.approx(stats.wilcoxon(base + gain, base).pvalue)
    assert top.wilcoxon_p == pytest.approx(2 / 2**6)
    assert "significant at 0.05" in top.sentence
    assert "not significant" not in top.sentence


def test_friedman_and_nemenyi_against_scipy_and_demsar():
    values = np.array(
        [[0.90, 0.85, 0.80], [0.88, 0.86, 0.70], [0.70, 0.75, 0.60], [0.95, 0.90, 0.91]]
    )
    result = friedman(values, ["a", "b", "c"])
    reference = stats.friedmanchisquare(*values.T)
    assert result.statistic == pytest.approx(reference.statistic)
    assert result.pvalue == pytest.approx(reference.pvalue)
    # ranks per row (1 = best): a 1,1,2,1  b 2,2,1,3  c 3,3,3,2
    assert result.average_ranks == pytest.approx([1.25, 2.0, 2.75])
    # Demsar (2006), Table 5: q_0.05 = 2.343 for k = 3, 2.569 for k = 4
    assert result.critical_difference == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * 4)), abs=2e-3)
    assert nemenyi_critical_difference(4, 14) == pytest.approx(2.569 * math.sqrt(20 / 84), abs=2e-3)


def test_holm_adjustment_by_hand():
    # sorted p 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, made monotone: 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # 0.5 * 2 = 1.0, then 0.9 * 1 = 0.9 raised to 1.0 to stay monotone
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_cross_setting_statistics_need_enough_settings():
    [one] = cross_setting(aggregate([record(m, 0, 0.8) for m in ("lstm", "gru", "transformer")]))
    assert one.friedman is None
    assert "needs at least 2 settings" in one.note
    records = [
        record(m, s, auc + 0.01 * s, dataset=d)
        for d, shift in (("a", 0.0), ("b", 0.05), ("c", -0.05))
        for m, auc in (("lstm", 0.9 + shift), ("gru", 0.85 + shift), ("transformer", 0.8))
        for s in range(2)
    ]
    [cross] = cross_setting(aggregate(records))
    assert cross.detection == "supervised"
    assert cross.friedman.names == [
        "gru/torch/classify",
        "lstm/torch/classify",
        "transformer/torch/classify",
    ]
    assert cross.friedman.average_ranks[1] == pytest.approx(1.0)
    assert "fewer than 5" in cross.note
    assert {name for name, _, _ in cross.holm} == {
        "gru/torch/classify",
        "transformer/torch/classify",
    }
    for _, p, adjusted in cross.holm:
        assert adjusted >= p


def write_runs(root, records, with_scores=True):
    rng = np.random.default_rng(1)
    for r in records:
        run_dir = root / (r.experiment or "exp") / r.run_id
        run_dir.mkdir(parents=True)
        r.run_dir = str(run_dir)
        (run_dir / RECORD_FILE).write_text(dumps(r))
        if with_scores and r.status == "ok":
            labels = rng.random(200) < 0.2
            types = np.where(labels, rng.integers(0, 2, 200), -1)
            np.savez(
                run_dir / SCORES_FILE,
                test_score=rng.normal(size=200) + labels * 2 * r.result.roc_auc,
                test_label=labels,
                test_type=types,
                test_severity=np.where(labels, rng.random(200), 0.0),
                type_names=np.array(TYPES),
            )


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tables, self.headings = [], 0, []
        self._in_h = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        self.tables += tag == "table"
        self._in_h = tag in ("h1", "h2")

    def handle_data(self, data):
        if self._in_h:
            self.headings.append(data)
            self._in_h = False


def two_settings(seeds: int) -> list[RunRecord]:
    """Three detectors with latency and memory in two data settings, ``seeds`` seeds each."""
    return [
        record(m, s, auc + 0.01 * s, dataset=d, latency=lat, memory=mem)
        for d in ("a", "b")
        for m, auc, lat, mem in (
            ("lstm", 0.9, 2.0, 300),
            ("gru", 0.85, 1.0, 200),
            ("transformer", 0.8, 5.0, 900),
        )
        for s in range(seeds)
    ]


def test_report_files_tables_and_plots(tmp_path):
    records = two_settings(seeds=2)
    failed = replace(
        record("multimodal", 0, 0.0),
        status="failed",
        error="RuntimeError: boom",
        failed_phase="detect",
    )
    write_runs(tmp_path, [*records, failed])
    report = build(tmp_path)
    paths = write(report)

    with open(paths["csv"], newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6
    lstm_a = next(r for r in table if r["model"] == "lstm" and r["setting"].startswith("a "))
    assert float(lstm_a["roc_auc"]) == pytest.approx(0.905)
    assert lstm_a["rank"] == "1"
    assert float(lstm_a["roc_auc_brushing"]) == pytest.approx(0.905)

    md = paths["md"].read_text()
    first = md.index("| 1 | lstm/torch/classify |")
    assert first < md.index("| 2 | gru/torch/classify |") < md.index("| 3 | transformer/torch/")
    assert md.index("### Recommendation") < md.index("### Ranking") < first  # advice first
    header = next(line for line in md.splitlines() if line.startswith("| rank |"))
    assert header.count("|") - 1 == 9, "the first table keeps the columns a reader needs"
    assert "Friedman test over 2 settings" in md
    assert "RuntimeError: boom" in md

    tex = paths["tex"].read_text()
    assert tex.count("\\begin{tabular}") == 2
    assert "\\textbf{0.905}" in tex

    page = _Page()
    page.feed(paths["html"].read_text())
    assert "<details><summary>All columns</summary>" in paths["html"].read_text()
    assert page.tables >= 4
    assert "Failed runs" in page.headings
    assert len(page.images) == 2 * 5 + 1  # 5 plots per setting, the CD diagram
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    plots = sorted(p.name for p in (tmp_path / "report" / "plots").iterdir())
    assert not [p for p in plots if p.startswith(".")], "plots are written atomically"
    assert len([p for p in plots if p.endswith(".svg")]) == len(page.images)
    assert "critical-difference-supervised.png" in plots

    text = console(report, paths)
    assert "lstm/torch/classify" in text
    assert f"report: {paths['html']}" in text


def test_report_writers_take_turns_and_clear_a_killed_writers_leftovers(tmp_path):
    write_runs(tmp_path, two_settings(seeds=1)[:3])  # one setting: its plots are enough
    out = tmp_path / "report"
    (out / "plots" / "a").mkdir(parents=True)
    leftovers = [out / ".selection.html.x1y2", out / "plots" / "a" / ".roc_pr.png.k9.png"]
    for path in leftovers:
        path.write_text("half")
    other = try_lock(out / WRITER_LOCK)  # another process writing the report
    written = threading.Thread(target=publish, args=(tmp_path,))
    written.start()
    time.sleep(1.0)
    assert not (out / "selection.md").exists(), "wrote while another writer held the folder"
    assert all(p.exists() for p in leftovers), "removed another live writer's files"
    other.release()
    written.join(120)
    assert (out / "selection.md").exists()
    assert not [p for p in leftovers if p.exists()]
    held = try_lock(out / WRITER_LOCK)
    with (
        pytest.raises(ResultsWriteError, match="another process has been writing"),
        sole_writer(out, wait=0.3),
    ):
        pass
    held.release()


def test_report_command_on_an_empty_folder_says_what_to_do(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no run records" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2


def test_a_sweep_ends_with_the_report_and_the_ranked_table(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "-m",
            "experiment=smoke",
            "model=markov,random,hgb",  # NumPy baselines: the sweep path, in seconds
            "setting=unsupervised",  # hgb is supervised only: listed, not run
            f"results_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report_dir = tmp_path / "smoke" / "report"
    assert f"report: {report_dir / 'selection.html'}" in result.stdout
    assert "markov/numpy" in result.stdout
    assert "sweep: 3 jobs: 1 not applicable, 2 ok" in result.stdout
    assert "not applicable: experiment=smoke model=hgb" in result.stdout
    with open(report_dir / "selection.csv", newline="") as f:
        table = {r["model"]: r for r in csv.DictReader(f)}
    assert set(table) == {"markov", "random"}
    for run_dir in (tmp_path / "smoke").iterdir():
        if run_dir.name != "report":
            rec = json.loads((run_dir / RECORD_FILE).read_text())
            assert float(table[rec["model"]]["roc_auc"]) == pytest.approx(rec["metrics"]["roc_auc"])


def test_severity_bins_follow_the_injected_spread():
    from benchmark.report.plots import severity_edges

    spread = np.random.default_rng(0).uniform(0.5, 0.9, 400)
    edges = severity_edges(spread)
    assert len(edges) == 5
    assert edges[0] == spread.min()
    assert edges[-1] > spread.max()  # the last edge includes the largest severity
    counts = np.histogram(spread, edges)[0]
    assert counts.min() >= 90  # quantile bins: every bin holds about a quarter
    assert list(severity_edges(np.full(7, 0.7))) == [0.7, np.nextafter(0.7, 1)]


@pytest.mark.parametrize(
    ("value", "text"),
    [(24.403, "24.4"), (1015.2, "1,015"), (0.000621, "0.000621"), (None, "-"), (math.inf, "-")],
)
def test_measured_quantities_read_by_magnitude(value, text):
    assert magnitude(value) == text


def test_a_detector_ranking_anomalies_inversely_is_flagged_and_never_recommended():
    rows = aggregate(
        [
            record("gru", 0, 0.3),  # its interval [0.25, 0.35] lies below chance
            record("lstm", 0, 0.7, latency=1.0, memory=10),
            record("random", 0, 0.5, framework="numpy", latency=0.1, memory=1),
        ]
    )
    gru = next(r for r in rows if r.model == "gru")
    assert ranks_inversely(gru)
    assert cells(gru)["roc_auc"] == "0.300 (inverse)"
    lines = recommendations(rows, "Test CPU")
    assert lines[0].startswith("Best ROC-AUC: **lstm/torch/classify**")
    assert [line for line in lines if "gru" in line] == [
        f"gru/torch/classify: ROC-AUC 0.300 [0.250, 0.350] {INVERSE_NOTE}."
    ]


def test_detectors_whose_latency_spreads_overlap_are_called_tied():
    """Two runs of identical configs must not flip a budget recommendation: the faster of two
    detectors within each other's latency spread is no recommendation of its own."""
    records = [record("lstm", 0, 0.8, latency=1.0, memory=10), record("gru", 0, 0.7, latency=0.9)]
    records[1].timing.peak_memory_mb = 20
    for r, (median, low, high) in zip(records, [(1.0, 0.9, 1.4), (0.9, 0.8, 1.2)], strict=True):
        r.timing.latency_ms["batch_1"].update(
            p99_block_median=median, p99_block_range=[low, high], interference=False
        )
    lines = [line for line in recommendations(aggregate(records), "Test CPU") if "latency" in line]
    assert lines == [
        "Best ROC-AUC with latency <= 1.0 ms on Test CPU: **lstm/torch/classify** (0.800 "
        "[0.750, 0.850], 1 ms; tied in latency with gru/torch/classify (spreads overlap))."
    ]
    records[1].timing.latency_ms["batch_1"]["p99_block_range"] = [0.5, 0.6]
    lines = [line for line in recommendations(aggregate(records), "Test CPU") if "latency" in line]
    assert len(lines) == 2
    assert "**gru/torch/classify**" in lines[0]


def test_the_selection_probe_is_ranked_but_never_recommended():
    rows = aggregate(
        [
            record("selection_probe", 0, 0.9, framework="numpy", latency=0.01, memory=1),
            record("lstm", 0, 0.8, latency=1.0, memory=10),
        ]
    )
    assert [r.model for r in sorted(rows, key=lambda r: r.rank)] == ["selection_probe", "lstm"]
    lines = recommendations(rows, "Test CPU")
    assert lines[0].startswith("Best ROC-AUC: **lstm/torch/classify**")
    assert not any("selection_probe" in line for line in lines)


def test_no_recommendation_when_no_detector_beats_chance():
    rows = aggregate([record("lstm", s, 0.5 + 0.02 * (s - 1)) for s in range(3)])
    [line] = recommendations(rows, "Test CPU")
    assert line.startswith("No detector is better than chance here: the best, lstm/torch/classify")


def test_records_know_the_folder_they_were_found_in(tmp_path):
    """A results tree copied from another machine keeps its scores reachable: a record's
    ``run_dir`` is where it lies now, not where it was written."""
    import json

    from benchmark.report.table import load_records

    folder = tmp_path / "copied" / "default" / "abc123"
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps({"run_id": "abc123", "run_dir": "gone/abc"}))
    assert [r.run_dir for r in load_records(tmp_path / "copied")] == [str(folder)]


def online_figures(within5: float, p99: float, users_rate: float) -> dict:
    curve = [within5 * min(1.0, k / 5) for k in range(1, 21)]
    detected = {"sequences": 10, "detected": 9, "detection_rate": 0.9, "within_events": curve}
    alarms = {
        "threshold": 1.0,
        "false_alarms_per_1000_sequences": 40.0,
        "false_alarms_per_hour": 0.25,
        "overall": {**detected, "median_delay_events": 2.0, "median_delay_seconds": 30.0},
        "per_type": {"brushing": detected},
    }
    return {
        "false_alarm_target": 0.05,
        "event_roc_auc": 0.8,
        "alarms": alarms,
        "per_user": {**alarms, "false_alarms_per_1000_sequences": 30.0},
        "cost": {
            "scorer": "carried state",
            "state_bytes_per_user": 392,
            "levels": [
                {"users": 1, "events_per_s": 900.0, "latency_ms_p99": p99},
                {"users": 1000, "events_per_s": users_rate, "latency_ms_p99": 9.0},
            ],
        },
    }


def test_the_online_section_ranks_time_to_detection_within_latency_budgets(tmp_path):
    """Detectors that replayed the stream get a table (detection within k events, false
    alarms, cost per concurrency level), a delay plot, and per latency budget the detector
    that detects most attacks within 5 events among those whose p99 fits it."""
    fast = replace(record("gru", 0, 0.8), online=from_dict_online(online_figures(0.5, 0.4, 9e4)))
    slow = replace(
        record("transformer", 0, 0.9), online=from_dict_online(online_figures(0.8, 20.0, 2e3))
    )
    write_runs(tmp_path, [fast, slow, record("lstm", 0, 0.7)], with_scores=False)
    report = build(tmp_path)
    assert [o.name for o in report.online] == ["transformer/torch/classify", "gru/torch/classify"]
    md = to_markdown(report)
    section = md[md.index("## Online detection") :]
    assert "p99 per event <= 1 ms: **gru/torch/classify** detects 50% of attacks" in section
    assert "p99 per event <= 100 ms: **transformer/torch/classify** detects 80%" in section
    row = next(line for line in section.splitlines() if line.startswith("| gru/torch"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:7] == ["0.900 [0.900, 0.900]", "0.100", "0.300", "0.500", "0.500"]
    assert cells[-5:-3] == ["40", "0.25"]  # false alarms per 1,000 normal sequences, per hour
    assert cells[-2:] == ["0.500", "30"]  # the per-user rule: within 5 events, false alarms
    cost = [line for line in section.splitlines() if line.startswith("| gru/torch")][1]
    assert [c.strip() for c in cost.strip("|").split("|")][1:] == [
        "carried state",
        "392",
        "0.40",
        "900",
        "90,000",  # events/s at 1 and 1,000 users
    ]
    assert "| events/s, 1 user | events/s, 1,000 users |" in section
    assert "lstm/torch" not in section  # no online figures, no online row
    assert report.online_plots
    assert all(p.exists() for p in report.online_plots.values())


def from_dict_online(values: dict) -> OnlineMetrics:
    return TypeAdapter(OnlineMetrics).validate_python(values)
