"""Weights & Biases logging of a run: opened when the run starts (live epoch curves, the
console kept), its results logged once the record is on disk.

The run writes its ``record.json`` before W&B sees any result, so W&B can neither lose nor
corrupt one. Any W&B failure (no network, disk full, bad key, a bug in wandb) becomes a
warning and ``tracking.status`` in the record; the run's own status is untouched. Beside each
offline run, ``summary.json`` holds its results as plain JSON; its scores and checkpoint are
a ``run-output`` artifact; ``wandb leet <results_dir>/wandb`` browses the runs in a terminal.

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
from benchmark.records import strict_json
from benchmark.records.record import RunRecord, RunStatus, to_dict
from benchmark.records.store import CHECKPOINT_FILE, ONLINE_SCORES_FILE, SCORES_FILE

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
    keep = {
        k: values[k] for k in ("metrics", "online", "timing", "n_params") if values[k] is not None
    }
    if "online" in keep:  # cost levels keyed by users in flight, so that each is a scalar key
        cost = keep["online"].get("cost") or {}
        levels = {f"users_{lv['users']}": lv for lv in cost.pop("levels", [])}
        keep["online"]["cost"] = {**cost, **levels}
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


class LiveRun:
    """The W&B run of one harness run, opened when the run starts: epochs are logged as they
    end (live curves, a runtime that is the run's), the console is kept, and when the record
    is on disk its results, tables, curves and artifacts follow. Every W&B call is guarded: a
    failure becomes a warning and ``tracking.status: failed``; the run goes on untouched."""

    def __init__(self, logger_cfg, record: RunRecord, results_dir: Path) -> None:
        self.cfg, self.run = logger_cfg, None
        self.error: str | None = None
        if logger_cfg.name == "none":
            return
        try:
            import wandb

            keep_files_under(Path(results_dir) / "wandb")
            self.run = wandb.init(**init_kwargs(logger_cfg, record, results_dir))
        except Exception as err:  # W&B must never fail a run
            self.failed("init", err)

    def failed(self, where: str, err: BaseException) -> None:
        log.warning("W&B logging failed (%s), the local record is kept: %s", where, err)
        self.error = self.error or f"{where}: {type(err).__name__}: {err}"

    def log_epoch(self, entry: dict) -> None:
        """One epoch of the training history, as it ends."""
        if self.run is None:
            return
        try:
            self.run.log({f"epoch/{k}": v for k, v in entry.items()}, step=int(entry["epoch"]))
        except Exception as err:
            self.failed("epoch", err)

    def finish(self, record: RunRecord, run_dir: Path) -> dict:
        """Results, tables, curves and the run's files; ``{"status": ok|failed|off, ...}``
        for the record."""
        if self.cfg.name == "none":
            return {"status": "off"}
        if self.run is not None:
            try:
                import wandb

                log_run(wandb, self.run, record, run_dir)
                write_summary(self.run, record)
            except Exception as err:
                self.failed("results", err)
            try:
                self.run.finish()
            except Exception as err:
                self.failed("finish", err)
        if self.error or self.run is None:
            return {"status": "failed", "error": self.error or "no W&B run"}
        return {
            "status": "ok",
            "mode": _mode(self.cfg),
            "id": self.run.id,
            "dir": str(Path(self.run.dir).parent),
        }


_SET_HERE: set[str] = set()  # W&B folder variables this module set (the others are the user's)


def keep_files_under(folder: Path) -> None:
    """W&B's caches, artifact staging and settings under ``folder`` (this run's results
    folder's ``wandb/``) unless the user's environment names them: nothing is written to the
    home folder."""
    for variable, sub in (
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
        ("WANDB_CONFIG_DIR", "settings"),
    ):
        if variable not in os.environ or variable in _SET_HERE:
            os.environ[variable] = str(folder / sub)
            _SET_HERE.add(variable)


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
        settings=wandb.Settings(console="wrap", silent=True),
    )


def log_run(wandb, run, record: RunRecord, run_dir: Path) -> None:
    """Results as summary, per-type metrics and curves as tables, scores and checkpoint as an
    artifact (the epochs were logged live)."""
    run.config.update({"provenance": to_dict(record)["provenance"]}, allow_val_change=True)
    for key, value in summary_of(record).items():
        run.summary[key] = value
    per_type = record.metrics.per_type if record.metrics else {}
    if per_type:
        table = wandb.Table(columns=["anomaly_type", "roc_auc"], data=list(per_type.items()))
        run.log({"per_type_roc_auc": table})
    scores = Path(run_dir) / SCORES_FILE
    if record.status == RunStatus.ok and scores.exists():
        log_curves(wandb, run, scores)
    outputs = (scores, Path(run_dir) / ONLINE_SCORES_FILE, Path(run_dir) / CHECKPOINT_FILE)
    files = [f for f in outputs if f.exists()]
    if files:
        artifact = wandb.Artifact(
            f"run-{record.run_id}", type="run-output", metadata={"status": record.status.value}
        )
        for file in files:
            artifact.add_file(str(file))
        run.log_artifact(artifact)


SUMMARY_FILE = "summary.json"


def write_summary(run, record: RunRecord) -> None:
    """``summary.json`` beside the offline run: its results as plain JSON, readable without
    W&B."""
    values = {"run_id": record.run_id, "experiment": record.experiment, **summary_of(record)}
    text = strict_json.dumps(values, indent=2, sort_keys=True)
    (Path(run.dir).parent / SUMMARY_FILE).write_text(text, encoding="utf-8")


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
