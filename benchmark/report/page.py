"""The model-selection report: tables, recommendations, statistics and plots from run records.

python -m benchmark.report results/default        # one experiment
python -m benchmark.report results                # every experiment under results/

Writes ``<dir>/report/selection.{md,csv,tex,html}`` and ``<dir>/report/plots/*.{png,svg}``,
then prints a compact ranked table and the report's path. Reads records and saved scores only.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.records.record import RunRecord
from benchmark.records.store import EXPLANATIONS_FILE
from benchmark.report import plots, render
from benchmark.report.online import (
    ONLINE_NOTE,
    OnlineRow,
    cost_table,
    detection_table,
    online_recommendations,
    online_rows,
)
from benchmark.report.selection import (
    Ablation,
    CrossSetting,
    Row,
    SeenUnseen,
    aggregate,
    cross_setting,
    failed_records,
    latency_of,
    modality_ablations,
    ok_records,
    ranks_inversely,
    recommendations,
    seen_vs_unseen,
)
from benchmark.report.table import load_records, results_dir_arg
from benchmark.timing.protocol import batch_size_of

REPORT_DIR = "report"
TOP_CURVES = 3  # ROC/PR curves drawn per setting


@dataclass(frozen=True)
class Column:
    """A column of the selection tables, declared once: its label, its cell text (Markdown,
    HTML, LaTeX), its raw CSV value, and which outputs show it."""

    key: str
    label: str
    text: Callable[[Row], str] | None  # None: CSV only
    raw: Callable[[Row], Any] | None = None  # None: not in the CSV
    in_tex: bool = True
    in_summary: bool = False  # in the short table a reader sees first
    in_table: bool = True  # in the full table (the summary's joined name is not)


def _attr(name: str) -> Callable[[Row], Any]:
    return lambda row: getattr(row, name)


def fmt(value, digits: int = 3) -> str:
    """Table cell text: '-' for missing, thousands separators for big numbers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _figure(
    key: str, label: str, in_tex: bool = True, in_summary: bool = False, text=None
) -> Column:
    """A number of the row: formatted in tables (``fmt`` unless ``text`` says how), raw in
    the CSV."""
    shown = text or fmt
    return Column(key, label, lambda row: shown(getattr(row, key)), _attr(key), in_tex, in_summary)


def _model_text(row: Row) -> str:
    return row.model + (f" [{row.variant}]" if row.variant else "")


def _auc_text(row: Row) -> str:
    return fmt(row.roc_auc_mean) + (" (inverse)" if ranks_inversely(row) else "")


def magnitude(value: float | None) -> str:
    """A measured quantity (rates, milliseconds, megabytes) to three significant digits,
    thousands separated: '24.4' and '1,015' cannot be mistaken for each other."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


COLUMNS: tuple[Column, ...] = (
    Column("setting", "setting", None, _attr("setting")),
    Column("rank", "rank", lambda r: str(r.rank), _attr("rank"), in_summary=True),
    Column("detector", "detector", _attr("name"), None, False, True, in_table=False),
    Column("model", "model", _model_text, _attr("model")),
    Column("framework", "framework", _attr("framework"), _attr("framework")),
    Column("objective", "objective", _attr("objective"), _attr("objective")),
    Column("seeds", "seeds", lambda r: str(len(r.seeds)), lambda r: len(r.seeds), True, True),
    Column("roc_auc", "ROC-AUC", _auc_text, _attr("roc_auc_mean"), in_summary=True),
    Column(
        "roc_auc_95ci",
        "95% CI",
        lambda r: f"[{fmt(r.roc_auc_low)}, {fmt(r.roc_auc_high)}]",
        in_summary=True,
    ),
    Column("roc_auc_low", "", None, _attr("roc_auc_low")),
    Column("roc_auc_high", "", None, _attr("roc_auc_high")),
    Column("ci_kind", "", None, _attr("ci_kind")),
    _figure("pr_auc", "PR-AUC", in_summary=True),
    _figure("f1", "F1@val thr", in_summary=True),
    _figure("recall_at_1pct_fpr", "recall@1%FPR"),
    _figure("train_seq_per_s", "train seq/s", in_tex=False, text=magnitude),
    _figure("infer_seq_per_s", "infer seq/s", text=magnitude),
    _figure("latency_ms", "latency ms", in_summary=True, text=magnitude),
    _figure("n_params", "params"),
    _figure("peak_memory_mb", "peak MB", in_tex=False, in_summary=True, text=magnitude),
    _figure("pareto_latency", "Pareto lat.", in_tex=False),
    _figure("pareto_memory", "Pareto mem.", in_tex=False),
)
TABLE_COLUMNS = tuple(c for c in COLUMNS if c.text is not None and c.in_table)
SUMMARY_COLUMNS = tuple(c for c in COLUMNS if c.in_summary)
TEX_COLUMNS = tuple(c for c in TABLE_COLUMNS if c.in_tex)
CSV_COLUMNS = tuple(c for c in COLUMNS if c.raw is not None)


def cells(row: Row) -> dict[str, str]:
    """A row's cell text by column key."""
    return {c.key: c.text(row) for c in COLUMNS if c.text is not None}


def table_rows(rows: list[Row], columns: tuple[Column, ...]) -> list[list[str]]:
    return [[c.text(r) for c in columns if c.text is not None] for r in rows]


SPEED_NOTE = (
    "Throughput: median of timed windows (>= timing.min_window_s each, one synchronisation "
    "per window) on batches already on the device; latency: end-to-end requests (host rows in, "
    "host scores out); first call: the slowest first call (compilation) over the batch sizes; "
    "peak MB: device memory allocated on GPU, else the process's peak RSS."
)


@dataclass
class Section:
    """One setting's part of the report."""

    setting: str
    rows: list[Row]
    latency_measure: str
    recommendations: list[str]
    plots: dict[str, Path] = field(default_factory=dict)
    speed: tuple[list[str], list[list[str]]] = ([], [])


@dataclass(frozen=True)
class Explained:
    """A row's first run's ``explanations.json``: its top test sequences, each event's
    attention and the modality weights."""

    setting: str
    name: str
    found: dict


def explained(rows: list[Row]) -> list[Explained]:
    """The explanations of every row whose first run left one (an unreadable file is
    skipped: the report still shows everything else)."""
    out = []
    for row in rows:
        path = Path(row.run_dirs[0]) / EXPLANATIONS_FILE if row.run_dirs else None
        if path is None or not path.exists():
            continue
        try:
            out.append(Explained(row.setting, row.name, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    return out


@dataclass
class Report:
    root: Path
    out_dir: Path
    sections: list[Section]
    cross: list[CrossSetting]  # one per detection setting
    unseen: list[SeenUnseen]  # per-type ROC-AUC seen vs held out of training
    ablations: list[Ablation]  # multimodal rows that read different modalities
    cd_plots: dict[str, Path]  # detection setting -> critical-difference diagram
    failures: list[RunRecord]
    hardware: str
    explained: list[Explained] = field(default_factory=list)  # top sequences' attention
    online: list[OnlineRow] = field(default_factory=list)  # rows that replayed the stream
    online_plots: dict[str, Path] = field(default_factory=dict)  # setting -> delay plot


def fast_paths_text(environment: dict) -> str:
    """The switches that were on, as short text ('compile(default), bf16, sdpa')."""
    on = []
    for name, value in environment.get("fast_paths", {}).items():
        if value is True:
            on.append(name)
        elif isinstance(value, str | int) and value not in (False, 0) and name != "recurrence":
            on.append(f"{name}={value}")
    return ", ".join(on) or "-"


def speed_table(runs: list[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """The timing protocol's figures per candidate (first seed each): throughput per batch
    size, latency percentiles, first-call time, peak memory, precision and fast paths."""
    timed = [r for r in _first_seed_each(runs) if r.timing.inference]
    batches = sorted({k for r in timed for k in r.timing.inference}, key=batch_size_of)
    header = [
        "model",
        *[f"infer seq/s b{batch_size_of(b)}" for b in batches],
        "train seq/s",
        "p50 / p99 ms b1",
        "p99 ms b32",
        "first call s",
        "peak MB",
        "device",
        "precision",
        "fast paths",
    ]
    body = []
    for r in sorted(timed, key=lambda r: (r.model, r.framework)):
        t = r.timing
        b1, b32 = t.batch_1_latency(), t.latency_ms.get("batch_32", {})
        env = t.environment
        first = max((v["first_call_s"] for v in t.inference.values()), default=None)
        body.append(
            [
                f"{r.model}/{r.framework}",
                *[fmt(t.inference.get(b, {}).get("seq_per_s")) for b in batches],
                fmt((t.train or {}).get("seq_per_s")),
                f"{fmt(b1.get('p50'))} / {fmt(b1.get('p99'))}",
                fmt(b32.get("p99")),
                fmt(first),
                fmt(t.peak_memory_mb),
                str(env.get("device", "-")),
                str(env.get("precision", {}).get("compute", "-")),
                fast_paths_text(env),
            ]
        )
    return header, body


def hardware_of(records: list[RunRecord]) -> str:
    """The most common device description among the records (e.g. 'CPU: AMD EPYC ... x2')."""
    names: Counter[str] = Counter()
    for r in records:
        hw = r.provenance.hardware
        device = r.timing.environment.get("device")
        gpu = device if device and device != "cpu" else None
        names[gpu or f"CPU: {hw.get('cpu', '?')} x{hw.get('cpu_count', '?')}"] += 1
    return names.most_common(1)[0][0] if names else "unknown hardware"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def build(root: Path, out_dir: Path | None = None) -> Report:
    """Aggregate every record under ``root`` and draw the plots; writes nothing else."""
    records = load_records(root)
    out_dir = Path(out_dir or Path(root) / REPORT_DIR)
    plot_dir = out_dir / "plots"
    rows = aggregate(records)
    hardware = hardware_of(ok_records(records))
    sections = []
    for setting in sorted({r.setting for r in rows}):
        mine = [r for r in rows if r.setting == setting]
        runs = [run for row in mine for run in row.records]
        measure = " / ".join(sorted({latency_of(r)[1] for r in runs}))
        section = Section(setting, mine, measure, recommendations(mine, hardware, measure))
        section.speed = speed_table(runs)
        section.plots = draw_section(section, runs, plot_dir / slug(setting))
        sections.append(section)
    cross = cross_setting(rows)
    cd_plots = {
        c.detection: plots.critical_difference(
            c.friedman, plot_dir / f"critical-difference-{slug(c.detection)}"
        )
        for c in cross
        if c.friedman is not None
    }
    unseen = seen_vs_unseen(records)
    online = online_rows(rows)
    online_plots = {
        setting: plots.detection_delay(
            [o for o in online if o.setting == setting],
            f"Time to detection: {setting}",
            plot_dir / f"detection-delay-{slug(setting)}",
        )
        for setting in sorted({o.setting for o in online})
    }
    return Report(
        Path(root),
        out_dir,
        sections,
        cross,
        unseen,
        modality_ablations(rows),
        cd_plots,
        failed_records(records),
        hardware,
        explained(rows),
        online,
        {k: v for k, v in online_plots.items() if v is not None},
    )


def draw_section(section: Section, runs: list[RunRecord], stem: Path) -> dict[str, Path]:
    ranked = sorted(section.rows, key=lambda r: r.rank)
    drawn = {
        "pareto_latency": plots.pareto(
            ranked,
            "latency_ms",
            f"{section.latency_measure}, ms (log scale; lower is better)",
            f"Quality vs latency: {section.setting}",
            stem.with_name(stem.name + "-pareto-latency"),
        ),
        "pareto_memory": plots.pareto(
            ranked,
            "peak_memory_mb",
            "peak memory, MB (log scale; lower is better)",
            f"Quality vs memory: {section.setting}",
            stem.with_name(stem.name + "-pareto-memory"),
        ),
        "roc_pr": plots.roc_pr(
            ranked[:TOP_CURVES],
            f"Top {min(TOP_CURVES, len(ranked))} by ROC-AUC: {section.setting}",
            stem.with_name(stem.name + "-roc-pr"),
        ),
        "severity": plots.severity(
            ranked[0],
            f"ROC-AUC by severity and type, {ranked[0].name}: {section.setting}",
            stem.with_name(stem.name + "-severity"),
        ),
        "training": plots.training_curves(
            _first_seed_each(runs),
            f"Training curves (first seed of each detector): {section.setting}",
            stem.with_name(stem.name + "-training"),
        ),
    }
    return {k: v for k, v in drawn.items() if v is not None}


def _first_seed_each(runs: list[RunRecord]) -> list[RunRecord]:
    seen, out = set(), []
    for r in sorted(runs, key=lambda r: (r.model, r.framework, r.objective, r.seed)):
        key = (r.model, r.framework, r.objective)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


# ------------------------------------------------------------------------------------ writers


def type_names(rows: list[Row]) -> list[str]:
    names: list[str] = []
    for r in rows:
        names += [t for t in r.per_type if t not in names]
    return names


# The reference population of each metric, named on every page that shows it.
POPULATIONS = (
    "ROC-AUC, PR-AUC, F1 and recall are over the test sequences that could host an anomaly "
    "type of the mix (with the default mix, every test sequence); F1 uses the threshold "
    "fitted on validation scores of the same population."
)
PER_TYPE_POPULATION = (
    "each type against the normal test sequences that could have hosted it, weighted to its "
    "victims' mix of eligibility patterns; the severity plot uses the same reference"
)


def to_markdown(report: Report) -> str:
    out = [
        "# Model selection",
        "",
        f"Records under `{report.root}`; hardware: {report.hardware}. {POPULATIONS} Intervals "
        "are 95%: over seeds (Student t) when a detector has several, else the run's bootstrap "
        "over test sequences. Detection settings are ranked apart.",
    ]
    for s in report.sections:
        out += _md_setting(s)
    if report.unseen:
        out += ["", "## Unseen anomaly types", "", UNSEEN_NOTE, ""]
        out += [render.markdown(*unseen_table(report.unseen))]
    for e in report.explained:
        out += ["", f"## Why it flagged them: {e.name}, {e.setting}", "", EXPLAINED_NOTE, ""]
        out += [f"- {line}" for line in explanation_lines(e.found, SHOWN_SEQUENCES)]
    for setting, mine in online_by_setting(report.online):
        out += _md_online(setting, mine)
    for a in report.ablations:
        out += ["", f"## What each modality buys: {a.detector}, {a.setting}", "", ABLATION_NOTE]
        out += ["", render.markdown(*ablation_table(a))]
    for c in report.cross:
        out += ["", f"## Across settings: {c.detection}", "", cross_text(c)]
    if report.failures:
        out += ["", "## Failed runs", ""]
        out += [failure_line(f) for f in report.failures]
    return "\n".join(out) + "\n"


def _md_setting(s: Section) -> list[str]:
    """A setting's recommendation, ranking, per-type and speed tables, as Markdown lines."""
    out = ["", f"## {s.setting}", "", "### Recommendation", ""]
    out += [f"- {line}" for line in s.recommendations]
    out += ["", "### Ranking", "", f"Latency column: {s.latency_measure}. {ALL_COLUMNS}", ""]
    out.append(
        render.markdown([c.label for c in SUMMARY_COLUMNS], table_rows(s.rows, SUMMARY_COLUMNS))
    )
    types = type_names(s.rows)
    if types:
        out += ["", f"Per-type ROC-AUC ({PER_TYPE_POPULATION}):", ""]
        out.append(render.markdown(*per_type_table(s.rows, types)))
    if s.speed[1]:
        out += ["", "### Speed (timing protocol)", "", SPEED_NOTE, "", render.markdown(*s.speed)]
    return out


def _md_online(setting: str, mine: list[OnlineRow]) -> list[str]:
    """A setting's online detection: recommendation, detection, cost and per-type tables."""
    out = ["", f"## Online detection: {setting}", "", ONLINE_NOTE, "", "### Recommendation"]
    out += ["", *(f"- {line}" for line in online_recommendations(mine))]
    out += ["", render.markdown(*detection_table(mine))]
    out += ["", "What scoring each event costs:", "", render.markdown(*cost_table(mine))]
    types = online_types(mine)
    if types:
        out += ["", "Share of attacks detected, per type:", ""]
        out += [render.markdown(*online_type_table(mine, types))]
    return out


def per_type_table(rows: list[Row], types: list[str]) -> tuple[list[str], list[list[str]]]:
    """Each detector's ROC-AUC per anomaly type."""
    return ["model", *types], [[r.name] + [fmt(r.per_type.get(t)) for t in types] for r in rows]


def online_types(rows: list[OnlineRow]) -> list[str]:
    return sorted({t for r in rows for t in r.per_type_rate})


ALL_COLUMNS = (
    "Every column (framework, objective, recall at 1% FPR, throughput, parameters, Pareto "
    "flags, the interval's kind) is in selection.csv and in the HTML page."
)


def failure_line(r: RunRecord) -> str:
    """One markdown bullet for a failed run: which run, where it stopped and why."""
    return (
        f"- `{r.run_id}` {r.dataset} {r.model}/{r.framework}/{r.objective} seed {r.seed}: "
        f"{r.failed_phase or '?'} phase, {r.error}"
    )


UNSEEN_NOTE = (
    "Per-type test ROC-AUC of each detector on the types it trained on (seen) and on the types "
    "held out of its training and validation (anomaly.holdout; unseen), each the mean over the "
    "runs of that kind, over the types that were both; gap = unseen - seen."
)


SHOWN_SEQUENCES = 5
EXPLAINED_NOTE = (
    "The highest-scored test sequences of the detector's first seed: each event shaded by the "
    "attention the sequence summary paid it (darker: more; underlined: changed by an injected "
    "anomaly), and the weight each modality had in the sequence (the softmax gates)."
)


def modality_weights_text(weights: dict[str, float]) -> str:
    return ", ".join(f"{m.replace('_', ' ')} {w:.2f}" for m, w in weights.items() if w > 0)


def sequence_heading(sequence: dict) -> str:
    kind = sequence["type"] or ("anomalous" if sequence["anomalous"] else "normal")
    return f"#{sequence['rank']}, score {sequence['score']:.3g}, {kind}"


def explanation_lines(found: dict, shown: int) -> list[str]:
    """One line per sequence: what it was, its three most attended events, its weights."""
    lines = []
    for sequence in found["sequences"][:shown]:
        events = sorted(sequence["events"], key=lambda e: -e["attention"])[:3]
        attended = ", ".join(
            f"{e['event_type']} at {e['position']}{' (injected)' if e['injected'] else ''} "
            f"{e['attention']:.2f}"
            for e in events
        )
        weights = modality_weights_text(sequence.get("modality_weights", {}))
        lines.append(f"{sequence_heading(sequence)}: most attended {attended}; weights: {weights}")
    return lines


def explanation_html(found: dict, shown: int) -> str:
    """Per sequence: a heading, its modality weights and its events as a strip of cells
    shaded by attention (each cell's title says the event in full)."""
    parts = []
    for sequence in found["sequences"][:shown]:
        top = max((e["attention"] for e in sequence["events"]), default=0.0) or 1.0
        cells = []
        for e in sequence["events"]:
            shade = e["attention"] / top
            title = (
                f"position {e['position']}: {e['event_type']}, item {e['item']}, category "
                f"{e['category']}, {e['seconds_since_previous']:.0f} s after the previous, "
                f"attention {e['attention']:.3f}"
                + (
                    f"; weights {modality_weights_text(e['modality_weights'])}"
                    if "modality_weights" in e
                    else ""
                )
            )
            style = f"background:rgba(200,40,40,{shade:.2f});" + (
                "text-decoration:underline;" if e["injected"] else ""
            )
            query = "<small> (query)</small>" if e["searched"] else ""  # text: no emoji font needed
            cells.append(
                f'<span class="event" style="{style}" title="{html.escape(title)}">'
                f"{html.escape(e['event_type'])}{query}</span>"
            )
        weights = modality_weights_text(sequence.get("modality_weights", {}))
        parts.append(
            f"<h4>{html.escape(sequence_heading(sequence))}</h4>"
            f"<p>Modality weights: {html.escape(weights)}</p>"
            f'<p class="events">{" ".join(cells)}</p>'
        )
    return "\n".join(parts)


ABLATION_NOTE = (
    "The multimodal detector reading some of its modalities (model.modalities; those the "
    "data lacks are never read): ROC-AUC with its 95% interval, and per anomaly type the mean "
    "ROC-AUC over seeds, each with its difference from the detector reading behaviour alone."
)


def online_by_setting(rows: list[OnlineRow]) -> list[tuple[str, list[OnlineRow]]]:
    return [(s, [r for r in rows if r.setting == s]) for s in sorted({r.setting for r in rows})]


def online_type_table(rows: list[OnlineRow], types: list[str]) -> tuple[list[str], list[list[str]]]:
    return ["detector", *types], [
        [r.name, *(fmt(r.per_type_rate.get(t)) for t in types)] for r in rows
    ]


def ablation_table(a: Ablation) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one modality ablation: overall and per-type ROC-AUC per set of
    modalities, each beside its difference from behaviour alone."""
    base = a.base

    def cell(value: float | None, reference: float | None) -> str:
        if value is None or math.isnan(value):
            return "-"
        if reference is None or math.isnan(reference) or base is None:
            return fmt(value)
        return f"{fmt(value)} ({value - reference:+.3f})"

    body = []
    for r in a.rows:
        label = " + ".join(m.replace("_", " ") for m in Ablation.modalities(r))
        other = re.sub(r"model\.modalities=\[[^\]]*\](, )?", "", r.variant).strip(", ")
        overall = cell(r.roc_auc_mean, base.roc_auc_mean if base else None)
        body.append(
            [
                label + (f" [{other}]" if other else ""),  # what else tells rows apart
                str(len(r.seeds)),
                f"{overall} [{fmt(r.roc_auc_low)}, {fmt(r.roc_auc_high)}]",
                *(cell(r.per_type.get(t), base.per_type.get(t) if base else None) for t in a.types),
            ]
        )
    return ["modalities read", "seeds", "ROC-AUC [95% CI]", *a.types], body


def unseen_table(entries: list[SeenUnseen]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the seen-vs-unseen table."""
    types = sorted({t for e in entries for t in e.types})
    body = [
        [
            e.setting,
            e.name,
            fmt(e.mean("seen")),
            fmt(e.mean("unseen")),
            f"{e.mean('unseen') - e.mean('seen'):+.3f}",
            *(f"{fmt(e.seen[t])} / {fmt(e.unseen[t])}" if t in e.types else "-" for t in types),
        ]
        for e in entries
    ]
    per_type = (f"{t} (seen / unseen)" for t in types)
    return ["setting", "detector", "seen", "unseen", "gap", *per_type], body


Block = str | tuple[list[str], list[list[str]]]  # a paragraph, or a table's header and rows


def cross_blocks(cross: CrossSetting) -> list[Block]:
    """The cross-setting statistics as paragraphs and tables, for any output format."""
    if cross.friedman is None:
        return [f"No cross-setting ranking of the {cross.detection} detectors: {cross.note}."]
    f = cross.friedman
    blocks: list[Block] = [
        f"Friedman test over {f.n_blocks} settings: chi2 = {f.statistic:.3f}, p = {f.pvalue:.3g} "
        f"({cross.note}). Nemenyi critical difference at alpha {f.alpha}: "
        f"{f.critical_difference:.2f} ranks.",
        (
            ["detector", "average rank"],
            [[n, f"{r:.2f}"] for r, n in sorted(zip(f.average_ranks, f.names, strict=True))],
        ),
    ]
    if cross.holm:
        blocks += [
            "Wilcoxon signed-rank vs the best average rank over the settings' means (one "
            "value per detector and setting), Holm-corrected:",
            (["detector", "p", "Holm p"], [[c, f"{p:.4f}", f"{a:.4f}"] for c, p, a in cross.holm]),
        ]
    return blocks


def cross_text(cross: CrossSetting) -> str:
    parts = [b if isinstance(b, str) else render.markdown(*b) for b in cross_blocks(cross)]
    return "\n\n".join(parts)


def cross_html(cross: CrossSetting) -> str:
    return "".join(
        f"<p>{html.escape(b)}</p>" if isinstance(b, str) else render.html_table(*b)
        for b in cross_blocks(cross)
    )


def to_csv(report: Report, path: Path) -> None:
    """One row per detector and setting, raw numbers (no formatting), per-type columns."""
    rows = [r for s in report.sections for r in s.rows]
    types = type_names(rows)
    header = [*(c.key for c in CSV_COLUMNS), *(f"roc_auc_{t}" for t in types)]
    body = [
        [*(c.raw(r) for c in CSV_COLUMNS if c.raw), *(r.per_type.get(t) for t in types)]
        for r in rows
    ]
    path.write_text(render.csv_text(header, body), encoding="utf-8")


def to_latex(report: Report) -> str:
    """One booktabs table per setting, the best ROC-AUC in bold."""
    header = [c.label for c in TEX_COLUMNS]
    auc = [c.key for c in TEX_COLUMNS].index("roc_auc")
    out = ["% Generated by python -m benchmark.report; needs \\usepackage{booktabs}"]
    for s in report.sections:
        body = table_rows(s.rows, TEX_COLUMNS)
        bold = frozenset((i, auc) for i, r in enumerate(s.rows) if r.rank == 1)
        caption = f"Model selection: {s.setting}"
        out += [render.latex(header, body, caption, left_columns=5, bold=bold), ""]
    return "\n".join(out)


def _img(path: Path | None, alt: str) -> str:
    if path is None:
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    svg = path.with_suffix(".svg").name
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f'<figcaption>{html.escape(alt)} (<a href="plots/{svg}">SVG</a>)</figcaption></figure>'
    )


def _md_inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


# Tables fit a 1024 px window: headers wrap (per-type names are long), cells do not, and a
# table wider than the page scrolls inside its own box rather than the page.
CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;
color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px;display:block;overflow-x:auto;
max-width:100%}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3;max-width:8em;overflow-wrap:anywhere;vertical-align:bottom}
td{white-space:nowrap}td:nth-child(-n+2){text-align:left}
details{margin:0.5em 0}summary{cursor:pointer;color:#555}
figure{display:inline-block;margin:0.5em}img{max-width:100%;border:1px solid #eee}
figcaption{font-size:12px;color:#555}"""


def to_html(report: Report) -> str:
    """A self-contained page: tables, recommendations and the plots inlined as PNG."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Model selection</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Model selection</h1>",
        f"<p>Records under <code>{html.escape(str(report.root))}</code>; hardware: "
        f"{html.escape(report.hardware)}. {html.escape(POPULATIONS)} Intervals are 95%: over "
        "seeds (Student t) when a detector has several, else the run's bootstrap over test "
        "sequences. Detection settings are ranked apart.</p>",
    ]
    for s in report.sections:
        parts += _html_setting(s)
    if report.unseen:
        parts += [
            "<h2>Unseen anomaly types</h2>",
            f"<p>{html.escape(UNSEEN_NOTE)}</p>",
            render.html_table(*unseen_table(report.unseen)),
        ]
    for e in report.explained:
        parts += [
            f"<h2>Why it flagged them: {html.escape(e.name)}, {html.escape(e.setting)}</h2>",
            f"<p>{html.escape(EXPLAINED_NOTE)}</p>",
            explanation_html(e.found, SHOWN_SEQUENCES),
        ]
    for setting, mine in online_by_setting(report.online):
        parts += _html_online(setting, mine, report.online_plots.get(setting))
    for a in report.ablations:
        parts += [
            f"<h2>What each modality buys: {html.escape(a.detector)}, "
            f"{html.escape(a.setting)}</h2>",
            f"<p>{html.escape(ABLATION_NOTE)}</p>",
            render.html_table(*ablation_table(a)),
        ]
    for c in report.cross:
        parts += [f"<h2>Across settings: {html.escape(c.detection)}</h2>", cross_html(c)]
        parts.append(_img(report.cd_plots.get(c.detection), "critical difference diagram"))
    parts += _html_failures(report.failures)
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_setting(s: Section) -> list[str]:
    """A setting's recommendation, ranking (all columns folded away), per-type and speed
    tables and its plots, as HTML."""
    parts = [f"<h2>{html.escape(s.setting)}</h2>", "<h3>Recommendation</h3><ul>"]
    parts += [f"<li>{_md_inline(line)}</li>" for line in s.recommendations]
    parts += [
        "</ul><h3>Ranking</h3>",
        f"<p>Latency column: {html.escape(s.latency_measure)}.</p>",
        render.html_table([c.label for c in SUMMARY_COLUMNS], table_rows(s.rows, SUMMARY_COLUMNS)),
        "<details><summary>All columns</summary>",
        render.html_table([c.label for c in TABLE_COLUMNS], table_rows(s.rows, TABLE_COLUMNS)),
        "</details>",
    ]
    types = type_names(s.rows)
    if types:
        parts += [
            "<h3>Per-type ROC-AUC</h3>",
            f"<p>{html.escape(PER_TYPE_POPULATION)}.</p>",
            render.html_table(*per_type_table(s.rows, types)),
        ]
    if s.speed[1]:
        parts += [
            "<h3>Speed (timing protocol)</h3>",
            f"<p>{html.escape(SPEED_NOTE)}</p>",
            render.html_table(*s.speed),
        ]
    return parts + [_img(p, name.replace("_", " ")) for name, p in s.plots.items()]


def _html_online(setting: str, mine: list[OnlineRow], plot: Path | None) -> list[str]:
    """A setting's online detection as HTML, with its detection-delay plot."""
    parts = [
        f"<h2>Online detection: {html.escape(setting)}</h2>",
        f"<p>{html.escape(ONLINE_NOTE)}</p>",
        "<h3>Recommendation</h3><ul>",
        *(f"<li>{_md_inline(line)}</li>" for line in online_recommendations(mine)),
        "</ul>",
        render.html_table(*detection_table(mine)),
        "<h3>What scoring each event costs</h3>",
        render.html_table(*cost_table(mine)),
    ]
    types = online_types(mine)
    if types:
        parts += [
            "<h3>Share of attacks detected, per type</h3>",
            render.html_table(*online_type_table(mine, types)),
        ]
    return [*parts, _img(plot, "time to detection")]


def _html_failures(failures: list[RunRecord]) -> list[str]:
    if not failures:
        return []
    items = [
        f"<li><code>{html.escape(f.run_id)}</code> {html.escape(f.model)}: "
        f"{html.escape(str(f.error))}</li>"
        for f in failures
    ]
    return ["<h2>Failed runs</h2><ul>", *items, "</ul>"]


def publish(root: Path) -> tuple[Report, dict[str, Path] | None]:
    """Build the report of ``root`` and write it (when there is anything to report) as the
    report folder's only writer: two sweeps ending together write one after the other, and
    temporary files of a killed writer are removed first."""
    from benchmark.records.locks import sole_writer

    out_dir = Path(root) / REPORT_DIR
    with sole_writer(out_dir):
        report = build(root, out_dir)
        if not report.sections and not report.failures:
            return report, None
        return report, write(report)


def write(report: Report) -> dict[str, Path]:
    """Write the four report files (each atomically); returns their paths."""
    from benchmark.records.atomic import atomic_path, write_atomic

    report.out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: report.out_dir / f"selection.{ext}" for ext in ("md", "csv", "tex", "html")}
    write_atomic(paths["md"], to_markdown(report))
    with atomic_path(paths["csv"]) as tmp:
        to_csv(report, tmp)
    write_atomic(paths["tex"], to_latex(report))
    write_atomic(paths["html"], to_html(report))
    return paths


def console(report: Report, paths: dict[str, Path]) -> str:
    """A compact ranked table per setting (rich), then where the report is."""
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    term = Console(file=buffer, width=120, force_terminal=False)
    for s in report.sections:
        table = Table(title=s.setting, title_justify="left")
        for col in ("#", "detector", "seeds", "ROC-AUC", "95% CI", "PR-AUC", "F1", "latency ms"):
            table.add_column(col, justify="left" if col == "detector" else "right")
        for r in s.rows:
            c = cells(r)
            table.add_row(
                c["rank"],
                r.name,
                c["seeds"],
                c["roc_auc"],
                c["roc_auc_95ci"],
                c["pr_auc"],
                c["f1"],
                c["latency_ms"],
            )
        term.print(table)
        if s.recommendations:
            term.print(re.sub(r"\*\*", "", s.recommendations[0]))
    if report.failures:
        term.print(f"{len(report.failures)} failed run(s): see the report")
    term.print(f"report: {paths['html']} (also .md, .csv, .tex)")
    return buffer.getvalue()


def main(argv: list[str]) -> int:
    root = results_dir_arg(argv, "benchmark.report")
    if root is None:
        return 2
    report, paths = publish(root)
    if paths is None:
        print(
            f"error: no run records under {root}: run `python -m benchmark` first", file=sys.stderr
        )
        return 2
    print(console(report, paths), end="")
    return 0
