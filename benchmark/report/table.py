"""A ranked table of finished runs: a pure function of run records (never of models).

python -m benchmark.report.table results/default      # print the table for one experiment
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

from benchmark.records.record import RecordError, RunRecord, RunStatus, load
from benchmark.records.store import RECORD_FILE
from benchmark.report import render
from benchmark.report.selection import candidate_of, display_name

COLUMNS = (
    ("rank", "{}"),
    ("model", "{}"),
    ("framework", "{}"),
    ("objective", "{}"),
    ("roc_auc", "{:.3f}"),
    ("roc_auc_95ci", "{}"),
    ("pr_auc", "{:.3f}"),
    ("f1@val_thr", "{:.3f}"),
    ("best_f1_oracle", "{:.3f}"),
    ("recall@1%fpr", "{:.3f}"),
    ("event_auc", "{}"),
    ("params", "{:,}"),
    ("train_s", "{:.1f}"),
    ("infer_seq/s", "{:,.0f}"),
)


def load_records(root: Path) -> list[RunRecord]:
    """Every record.json under ``root`` (one experiment folder or a whole results tree), each
    with ``run_dir`` where it was found: a tree copied from another machine, or read from
    another directory, still finds its scores. A file that is no run record is named on
    stderr and left out."""
    out = []
    for path in sorted(Path(root).rglob(RECORD_FILE)):
        try:
            out.append(replace(load(path), run_dir=str(path.parent)))
        except (OSError, RecordError) as err:
            print(f"warning: skipped {err}", file=sys.stderr)
    return out


def rows(records: list[RunRecord]) -> list[dict]:
    """One row per successful run with metrics, best ROC-AUC first."""
    done = [(r, r.metrics) for r in records if r.metrics is not None and r.is_ok]
    done.sort(key=lambda pair: -_number(pair[1].roc_auc))
    out = []
    for rank, (r, m) in enumerate(done, start=1):
        low, high = (_text(x) for x in m.roc_auc_ci)
        out.append(
            {
                "rank": rank,
                "model": r.model,
                "framework": r.framework,
                "objective": "-" if r.is_baseline else r.objective,
                "roc_auc": m.roc_auc,
                "roc_auc_95ci": f"[{low}, {high}]",
                "pr_auc": m.pr_auc,
                "f1@val_thr": m.f1,
                "best_f1_oracle": m.best_f1_oracle,
                "recall@1%fpr": m.recall_at_1pct_fpr,
                "event_auc": _text(m.event_roc_auc),
                "params": r.n_params,
                "train_s": r.timing.train_seconds,
                "infer_seq/s": r.timing.infer_seq_per_s,
            }
        )
    return out


def headline(record: RunRecord) -> str:
    """The run's detector and headline metrics on one line (its error when it failed)."""
    name = display_name(*candidate_of(record))
    if record.metrics is None:
        return f"{name}  {record.error or 'no metrics'}"
    m = record.metrics
    low, high = (_text(x) for x in m.roc_auc_ci)
    return (
        f"{name}  ROC-AUC {_text(m.roc_auc)} [{low}, {high}]  PR-AUC {_text(m.pr_auc)}  "
        f"F1 {_text(m.f1)} (threshold fitted on validation)"
    )


def _number(x: float | None) -> float:
    return x if isinstance(x, int | float) and not math.isnan(x) else -math.inf


def _text(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def markdown(table: list[dict]) -> str:
    header = [name for name, _ in COLUMNS]
    return render.markdown(
        header, [[fmt.format(row[name]) for name, fmt in COLUMNS] for row in table]
    )


def results_dir_arg(argv: list[str], command: str) -> Path | None:
    """The single ``<results dir>`` argument of a report command, or None (after saying why
    on stderr) when it is missing or not a directory."""
    if len(argv) != 1:
        print(f"usage: python -m {command} <results dir>", file=sys.stderr)
        return None
    root = Path(argv[0])
    if not root.is_dir():
        print(
            f"error: {root} is not a directory of run records; run `make run` first",
            file=sys.stderr,
        )
        return None
    return root


def main(argv: list[str]) -> int:
    root = results_dir_arg(argv, "benchmark.report.table")
    if root is None:
        return 2
    records = load_records(root)
    print(markdown(rows(records)))
    for r in records:
        if r.status == RunStatus.failed:
            print(f"failed: {r.model} {r.run_id}: {r.error}")
        elif r.status == RunStatus.running:
            print(
                f"running (or killed before it ended): {r.model} {r.run_id}, since {r.started_at}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
