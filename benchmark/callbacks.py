"""Hydra callbacks: after a sweep (``python -m benchmark -m ...``), write the model-selection
report of its experiment and print the compact ranked table with the report's path."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("benchmark")


class ReportAfterSweep(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from benchmark.report import build, console, write

        root = Path(config.results_dir) / config.experiment_name
        try:
            report = build(root)
            if report.sections or report.failures:
                print(console(report, write(report)), end="")
        except Exception as err:  # the runs' records are safe; only the report is missing
            log.warning(
                "could not write the report (%s); retry with `python -m benchmark.report %s`",
                err,
                root,
            )
