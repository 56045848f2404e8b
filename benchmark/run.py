"""``run(cfg)``: one experiment from config to a run record on disk.

Stages: data (load -> sessions -> splits -> injection -> encoding), then detect (build the
detector from the registry, fit, score, fit the threshold on validation, evaluate on test).
Whatever happens, the run directory ends up with ``config.yaml`` and a ``record.json`` whose
``status`` is ``ok`` or ``failed`` (with the phase and the error): a result is never lost.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from benchmark.atomic import atomic_path, write_atomic
from benchmark.config import NOISE_KEYS, Config, check_config
from benchmark.data import PreparedData, prepare_data
from benchmark.detectors import BASELINES
from benchmark.identity import run_id as make_run_id
from benchmark.pipeline import detect, time_detector
from benchmark.store import RECORD_FILE, StoreError, append, attempts, store_path
from benchmark.tracking import track

CONFIG_FILE = "config.yaml"
log = logging.getLogger("benchmark")


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    record: dict


def as_config(cfg: DictConfig | Config) -> Config:
    """The typed config object from a Hydra DictConfig (or pass a Config through)."""
    if isinstance(cfg, Config):
        return cfg
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def plain_dict(cfg: DictConfig | Config) -> dict[str, Any]:
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def ignored_by(model: str) -> tuple[str, ...]:
    """Config sections a model ignores, left out of its run id: a baseline run is the same
    run whichever framework or objective the sweep around it names."""
    return ("framework", "objective") if model in BASELINES else ()


def run(cfg: DictConfig | Config) -> RunResult:
    config = as_config(cfg)
    check_config(config)
    resolved = plain_dict(cfg)
    rid = make_run_id(resolved, NOISE_KEYS + ignored_by(config.model.name.value))
    run_dir = Path(config.results_dir) / config.experiment_name / rid
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(resolved)))
    record = base_record(config, rid, run_dir)
    record["config"] = resolved
    record["previous_attempts"] = earlier_attempts(config, rid)
    phase = "data"
    try:
        data_seed = config.seed if config.data_seed is None else config.data_seed
        prepared = prepare_data(config.dataset, config.anomaly, data_seed)
        record["data"] = prepared.summary
        if config.save_arrays:
            save_arrays(prepared, run_dir)
        phase = "detect"
        detector = detect(config, prepared, run_dir, record)
        if config.timing.enabled:
            phase = "timing"  # the metrics are in the record already: a failure here keeps them
            record["timing"].update(time_detector(detector, prepared.arrays["test"], config))
        record["status"] = "ok"
    except BaseException as err:
        record.update(status="failed", failed_phase=phase, error=f"{type(err).__name__}: {err}")
        raise
    finally:
        record["finished_at"] = now()
        record["wall_seconds"] = time.perf_counter() - record.pop("_t0")
        write_record(run_dir, record)
        publish(config, record, run_dir)
    return RunResult(rid, run_dir, record["status"], record)


def write_record(run_dir: Path, record: dict) -> None:
    write_atomic(run_dir / RECORD_FILE, json.dumps(record, indent=2, default=_json_default))


def earlier_attempts(config: Config, rid: str) -> int:
    """How often this config (run id = config hash) ran before; says so when it did."""
    try:
        earlier = attempts(store_path(config.results_dir), rid)
    except StoreError as err:
        log.warning("%s", err)
        return 0
    if earlier:
        last = earlier[-1]
        log.info(
            "rerun of config %s: %d earlier record(s), the last %s (started %s); "
            "the results store keeps them all",
            rid,
            len(earlier),
            last.status,
            last.started_at,
        )
    return len(earlier)


def publish(config: Config, record: dict, run_dir: Path) -> None:
    """After the record is on disk: W&B, then the results store. Neither can fail the run
    or touch its result; a failure is a warning (and ``tracking`` in the record)."""
    record["tracking"] = track(config.logger, record, run_dir, Path(config.results_dir))
    write_record(run_dir, record)
    try:
        append(
            store_path(config.results_dir), json.loads(json.dumps(record, default=_json_default))
        )
    except StoreError as err:
        log.warning("%s; the run folder keeps the record", err)


def base_record(config: Config, rid: str, run_dir: Path) -> dict:
    return {
        "run_id": rid,
        "attempt_id": uuid.uuid4().hex,  # one per execution: reruns of a config differ here
        "experiment": config.experiment_name,
        "run_dir": str(run_dir),
        "status": "running",
        "error": None,
        "model": config.model.name.value,
        "framework": config.framework.name.value,
        "objective": config.objective.name.value,
        "dataset": config.dataset.name,
        "anomaly": config.anomaly.name,
        "seed": config.seed,
        "data_seed": config.seed if config.data_seed is None else config.data_seed,
        "started_at": now(),
        "provenance": provenance(),
        "_t0": time.perf_counter(),
    }


VERSIONED = ("numpy", "scipy", "scikit-learn", "hydra-core", "torch", "jax", "flax", "optax")


def provenance() -> dict:
    sha, dirty = code_state()
    return {
        "git_sha": sha,
        "git_dirty": dirty,
        "versions": {"python": platform.python_version(), **_versions()},
        "hardware": {
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "platform": platform.platform(),
        },
        "argv": sys.argv[1:],
    }


def _versions() -> dict[str, str | None]:
    """Installed package versions, read from metadata (imports nothing heavy)."""
    out: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def code_state() -> tuple[str | None, bool]:
    """Git SHA and dirty flag, read once per process: a sweep's runs all execute the code the
    process imported at its first run, even if the checkout moves on meanwhile."""
    return _git("rev-parse", "HEAD"), bool(_git("status", "--porcelain", "--untracked-files=no"))


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def save_arrays(prepared: PreparedData, run_dir: Path) -> None:
    """Encoded splits as ``<split>.npz`` and each injected sequence's metadata as
    ``<split>_anomalies.jsonl`` (type, severity, parameters, what the injector chose)."""
    for split, arrays in prepared.arrays.items():
        with atomic_path(run_dir / f"{split}.npz") as tmp:
            np.savez_compressed(tmp, **{k: v for k, v in asdict(arrays).items() if v is not None})
        lines = [json.dumps(d, default=_json_default) for d in prepared.labelled[split].details]
        write_atomic(run_dir / f"{split}_anomalies.jsonl", "\n".join(lines) + "\n")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
