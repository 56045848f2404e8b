"""Hydra callbacks: after a sweep (``python -m benchmark -m ...``), summarise what each job
did (read from the ``outcome.json`` every job leaves in its Hydra folder, wherever it ran),
write the model-selection report of its experiment and print the compact ranked table."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("benchmark")
OUTCOME_FILE = "outcome.json"
_LAST_SWEEP: dict[str, int] = {}


def outcomes(sweep_dir: Path) -> list[dict]:
    """Every job's outcome under ``sweep_dir`` (a job killed before it wrote one is absent)."""
    found = []
    for file in sorted(Path(sweep_dir).glob(f"*/{OUTCOME_FILE}")):
        try:
            found.append(json.loads(file.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as err:
            log.warning("unreadable job outcome %s (%s)", file, err)
    return found


def summary(found: list[dict]) -> str:
    """One line of counts (by status, and by planned action for a dry run), then one line
    per failed run."""
    counts = Counter(o.get("status", "?") for o in found)
    actions = Counter(o["action"] for o in found if o.get("status") == "planned")
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    if actions:
        parts.append("would " + ", ".join(f"{a} {n}" for a, n in sorted(actions.items())))
    lines = [f"sweep: {len(found)} jobs: {', '.join(parts)}"]
    lines += [
        f"  failed: {o.get('run_id', '?')} [{o.get('overrides')}] in phase "
        f"{o.get('failed_phase', '?')}: {o.get('error')}"
        for o in found
        if o.get("status") == "failed"
    ]
    return "\n".join(lines) + "\n"


def sweep_failed() -> bool:
    """Whether the last sweep of this process had a failed run (the CLI's exit code)."""
    return _LAST_SWEEP.get("failed", 0) > 0


class ReportAfterSweep(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        found = outcomes(Path(config.hydra.sweep.dir))
        _LAST_SWEEP.update(failed=sum(o.get("status") == "failed" for o in found))
        print(summary(found), end="")
        if config.get("dry_run"):
            return
        self.report(Path(config.results_dir) / config.experiment_name)

    @staticmethod
    def report(root: Path) -> None:
        from benchmark.report.page import console, publish

        try:
            report, paths = publish(root)
            if paths is not None:
                print(console(report, paths), end="")
        except Exception as err:  # the runs' records are safe; only the report is missing
            log.warning(
                "could not write the report (%s); retry with `python -m benchmark.report %s`",
                err,
                root,
            )
