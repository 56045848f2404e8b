"""Weights & Biases logging of a finished run, read from its record and saved scores.

The run writes its ``record.json`` first; only then is W&B called, so W&B can neither lose nor
corrupt a result. Any W&B failure (no network, disk full, bad key, a bug in wandb) becomes a
warning and ``tracking.status`` in the record; the run's own status is untouched.

``logger=wandb_offline`` (the default) writes runs under ``<results_dir>/wandb/`` without an
account or network; ``wandb sync <results_dir>/wandb/offline-run-*`` uploads them later.
``logger=wandb`` logs online (project and entity from config, else ``WANDB_PROJECT`` and
``WANDB_ENTITY``; the key from ``WANDB_API_KEY`` or ``wandb login``). ``logger=none`` skips W&B.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.evaluation.metrics import pr_curve, roc_curve
from benchmark.records.record import RunRecord, RunStatus, to_dict
from benchmark.records.store import SCORES_FILE

log = logging.getLogger("benchmark")

CURVE_POINTS = 200  # ROC/PR points sent to W&B: enough for a smooth curve, small to upload


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a/b": 1}; lists of numbers stay values (e.g. intervals)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        else:
            out[name] = value
    return out


def summary_of(record: RunRecord) -> dict[str, Any]:
    """The scalar results of a record as W&B summary keys (metrics/..., timing/..., ...)."""
    values = to_dict(record)
    keep = {k: values[k] for k in ("metrics", "timing", "n_params") if values[k] is not None}
    keep["status"] = record.status.value
    if record.error:
        keep["error"] = record.error
    flat = flatten(keep)
    training = {k: v for k, v in values["training"].items() if k != "history"}
    flat.update(flatten(training, "training/"))
    return flat


def tags_of(record: RunRecord, extra: list[str]) -> list[str]:
    fields = ("model", "framework", "objective", "dataset", "anomaly")
    return [f"{f}:{getattr(record, f)}" for f in fields] + list(extra)


def _downsample(*curves: np.ndarray, points: int = CURVE_POINTS) -> list[np.ndarray]:
    n = len(curves[0])
    index = np.unique(np.linspace(0, n - 1, min(points, n)).round().astype(int))
    return [c[index] for c in curves]


def track(logger_cfg, record: RunRecord, run_dir: Path, results_dir: Path) -> dict:
    """Log ``record`` (and its run folder's scores) to W&B as configured. Never raises:
    returns ``{"status": "ok"|"failed"|"off", ...}`` for the record."""
    if logger_cfg.name == "none":
        return {"status": "off"}
    run = None
    try:
        import wandb

        run = wandb.init(**init_kwargs(logger_cfg, record, results_dir))
        log_run(wandb, run, record, run_dir)
        info = {"status": "ok", "mode": _mode(logger_cfg), "id": run.id, "dir": str(run.dir)}
    except Exception as err:  # W&B must never fail a run
        log.warning("W&B logging failed, the local record is kept: %s", err)
        info = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    finally:
        if run is not None:
            try:
                run.finish()
            except Exception as err:
                log.warning("W&B finish failed: %s", err)
                info = {"status": "failed", "error": f"finish: {type(err).__name__}: {err}"}
    return info


def _mode(logger_cfg) -> str:
    return "offline" if logger_cfg.name == "wandb_offline" else "online"


def init_kwargs(logger_cfg, record: RunRecord, results_dir: Path) -> dict:
    import wandb

    wandb_dir = Path(results_dir)
    wandb_dir.mkdir(parents=True, exist_ok=True)
    return dict(
        mode=_mode(logger_cfg),
        project=logger_cfg.project or os.environ.get("WANDB_PROJECT"),
        entity=logger_cfg.entity or os.environ.get("WANDB_ENTITY"),
        dir=str(wandb_dir),
        name=f"{record.experiment}/{record.run_id}",
        group=logger_cfg.group or record.experiment,
        job_type=record.objective,
        tags=tags_of(record, list(logger_cfg.tags)),
        config={**record.config, "provenance": to_dict(record)["provenance"]},
        reinit="create_new",
        settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
    )


def log_run(wandb, run, record: RunRecord, run_dir: Path) -> None:
    """Per-epoch curves as history, results as summary, per-type metrics and curves as tables."""
    for row in record.training.get("history", []):
        run.log({f"epoch/{k}": v for k, v in row.items()}, step=int(row["epoch"]))
    for key, value in summary_of(record).items():
        run.summary[key] = value
    per_type = record.metrics.per_type if record.metrics else {}
    if per_type:
        table = wandb.Table(columns=["anomaly_type", "roc_auc"], data=list(per_type.items()))
        run.log({"per_type_roc_auc": table})
    scores = Path(run_dir) / SCORES_FILE
    if record.status == RunStatus.ok and scores.exists():
        log_curves(wandb, run, scores)


def log_curves(wandb, run, scores_file: Path) -> None:
    with np.load(scores_file, allow_pickle=False) as saved:
        labels, scores = saved["test_label"], saved["test_score"]
    fpr, tpr = _downsample(*roc_curve(labels, scores))
    recall, precision = _downsample(*pr_curve(labels, scores))
    roc = wandb.Table(columns=["fpr", "tpr"], data=np.c_[fpr, tpr].tolist())
    pr = wandb.Table(columns=["recall", "precision"], data=np.c_[recall, precision].tolist())
    run.log(
        {
            "roc_curve": wandb.plot.line(roc, "fpr", "tpr", title="ROC (test)"),
            "pr_curve": wandb.plot.line(pr, "recall", "precision", title="Precision-recall (test)"),
        }
    )
