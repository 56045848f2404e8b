"""A ranked table of finished runs: a pure function of run records (never of models).

python -m benchmark.report.table results/default      # print the table for one experiment
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from benchmark.records.store import RECORD_FILE
from benchmark.report import render

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


def load_records(root: Path) -> list[dict]:
    """Every record.json under ``root`` (one experiment folder or a whole results tree), each
    with ``run_dir`` where it was found: a tree copied from another machine, or read from
    another directory, still finds its scores."""
    return [
        {**json.loads(p.read_text()), "run_dir": str(p.parent)}
        for p in sorted(Path(root).rglob(RECORD_FILE))
    ]


def rows(records: list[dict]) -> list[dict]:
    """One row per successful run with metrics, best ROC-AUC first."""
    done = [r for r in records if r.get("status") == "ok" and "metrics" in r]
    done.sort(key=lambda r: -_number(r["metrics"]["roc_auc"]))
    out = []
    for rank, r in enumerate(done, start=1):
        m, t = r["metrics"], r["timing"]
        low, high = m["roc_auc_ci"]
        event = m.get("event_roc_auc")
        out.append(
            {
                "rank": rank,
                "model": r["model"],
                "framework": r["framework"],
                "objective": r["objective"] if r["framework"] != "numpy" else "-",
                "roc_auc": m["roc_auc"],
                "roc_auc_95ci": f"[{low:.3f}, {high:.3f}]",
                "pr_auc": m["pr_auc"],
                "f1@val_thr": m["f1"],
                "best_f1_oracle": m["best_f1_oracle"],
                "recall@1%fpr": m["recall_at_1pct_fpr"],
                "event_auc": "-" if event is None else f"{event:.3f}",
                "params": r["n_params"],
                "train_s": t["train_seconds"],
                "infer_seq/s": t["infer_seq_per_s"],
            }
        )
    return out


def _number(x) -> float:
    return x if isinstance(x, int | float) and not math.isnan(x) else -math.inf


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
    failed = [r for r in records if r.get("status") != "ok"]
    print(markdown(rows(records)))
    for r in failed:
        print(f"failed: {r.get('model')} {r.get('run_id')}: {r.get('error')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
