"""``run(cfg)``: one experiment from config to a run record on disk.

Stages: data (load -> sessions -> splits -> injection -> encoding), then detect (build the
detector from the registry, fit, score, fit the threshold on validation, evaluate on test).
Whatever happens, the run directory ends up with ``config.yaml`` and a ``record.json`` whose
``status`` is ``ok`` or ``failed`` (with the phase and the error): a result is never lost. A
``running`` record is written first, so a run killed outright (SIGKILL, power loss) is seen as
unfinished; every write is atomic (temporary file, fsync, rename).

Rerunning a config (same hash, same folder) first takes the folder's lease (another live
process running the same config keeps it: ``running elsewhere``), then reads the folder's record
and decides (``resume``): skip what finished, rerun what failed or never finished (``decide``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import numpy as np
import psutil
from omegaconf import DictConfig, OmegaConf

from benchmark.config import Config, check_config, resolved_setting, with_setting
from benchmark.detectors.registry import check_device, framework_of
from benchmark.errors import ResultsWriteError
from benchmark.records import strict_json
from benchmark.records.atomic import atomic_path, write_atomic
from benchmark.records.identity import NOISE_KEYS, identity_config
from benchmark.records.identity import run_id as make_run_id
from benchmark.records.locks import Lock, remove_temporaries
from benchmark.records.record import Provenance, RecordError, RunRecord, RunStatus
from benchmark.records.record import dumps as record_json
from benchmark.records.record import load as load_record
from benchmark.records.store import RECORD_FILE, StoreError, append, attempts, store_path
from benchmark.records.tracking import LiveRun
from benchmark.run.data import PreparedData, data_path, drops_text, prepare_data
from benchmark.run.detect import detect, time_detector
from benchmark.run.lease import heartbeat, held_elsewhere, holder, now, owner, try_lease
from benchmark.run.replay import online_line, replay
from benchmark.run.threads import resolve_threads
from benchmark.timing.protocol import nvidia_smi
from datasets.cache import input_files
from datasets.loaders.common import cached_digest

CONFIG_FILE = "config.yaml"
ELSEWHERE = "running elsewhere"  # a RunResult status: another live process holds the config
log = logging.getLogger("benchmark")


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    """'ok' or 'failed' for a run that ran; 'skipped' when ``resume`` kept an earlier
    result; 'planned' under ``dry_run``."""
    record: RunRecord | None  # None: a planned run, or a skipped one without a record
    decision: Decision | None = None


@dataclass(frozen=True)
class Decision:
    """What a (re)run of a config does with the folder's earlier record, and why."""

    action: str  # "run" (new config), "rerun" or "skip"
    reason: str


@dataclass(frozen=True)
class Quarantined:
    """A record file that was no run record, moved aside under ``name``."""

    name: str


def decide(previous: RunRecord | Quarantined | None, resume: str) -> Decision:
    """``resume='ok'`` skips configs that finished ok; ``'finished'`` also skips failed ones;
    ``'none'`` reruns everything. Unfinished (a ``running`` record left by a killed process)
    and unreadable records are always rerun."""
    if previous is None:
        return Decision("run", "new config")
    if isinstance(previous, Quarantined):
        return Decision("rerun", f"its record was unreadable, kept as {previous.name}")
    when = previous.finished_at or previous.started_at
    if previous.status == RunStatus.ok:
        if resume == "none":
            return Decision("rerun", f"finished ok at {when}; rerun as resume=none")
        return Decision("skip", f"finished ok at {when}; resume=none reruns it")
    if previous.status == RunStatus.failed:
        what = f"failed in phase {previous.failed_phase}: {previous.error}"
        if resume == "finished":
            return Decision("skip", f"{what}; resume=ok reruns it")
        return Decision("rerun", what)
    return Decision("rerun", f"unfinished: started at {previous.started_at}, never ended")


def peek_record(run_dir: Path) -> RunRecord | None:
    """The folder's record if it is a readable one (read without the lease: never moved)."""
    try:
        return load_record(run_dir / RECORD_FILE)
    except (OSError, RecordError):
        return None


def previous_record(run_dir: Path, move_aside: bool = True) -> RunRecord | Quarantined | None:
    """The folder's record, or None. A file that is no run record (written by something
    other than this harness, whose writes are atomic) is moved aside (when ``move_aside``),
    never overwritten."""
    path = run_dir / RECORD_FILE
    if not path.exists():
        return None
    try:
        return load_record(path)
    except RecordError as err:
        reason = str(err)
    if not move_aside:
        return Quarantined("record.json.corrupt-<time> (on a real run)")
    aside = path.with_name(f"{RECORD_FILE}.corrupt-{datetime.now(UTC):%Y%m%dT%H%M%S%f}")
    os.replace(path, aside)
    log.warning("%s; moved to %s, the config runs again", reason, aside.name)
    return Quarantined(aside.name)


def as_config(cfg: DictConfig | Config) -> Config:
    """The typed config object from a Hydra DictConfig (or pass a Config through)."""
    if isinstance(cfg, Config):
        return cfg
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def plain_dict(cfg: DictConfig | Config) -> dict[str, Any]:
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)  # type: ignore[return-value]


class Phase:
    """The stage a run is in: named in the record when the run fails there, announced when
    it starts, its duration logged and recorded (``phase_seconds``) when the next begins."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.name, self.seconds = "setup", seconds
        self.began = time.perf_counter()

    def __call__(self, name: str) -> None:
        self.end()
        log.info("%s ...", name)
        self.name, self.began = name, time.perf_counter()

    def end(self) -> None:
        self.seconds[self.name] = time.perf_counter() - self.began


def run(cfg: DictConfig | Config) -> RunResult:
    """One run. A failure is recorded (status, phase, error) and then re-raised with the
    written :class:`RunResult` attached as ``run_result``. A config whose folder another live
    process holds (``benchmark.run.lease``) is not touched: status ``running elsewhere``."""
    config = with_setting(as_config(cfg))
    check_config(config)
    resolved = {**plain_dict(cfg), "setting": resolved_setting(config)}
    framework = framework_of(config.model.name.value, config.framework.name.value)
    rid = make_run_id(identity_config(resolved, framework), NOISE_KEYS)
    run_dir = Path(config.results_dir) / config.experiment_name / rid
    if config.dry_run:
        previous = previous_record(run_dir, move_aside=False)
        decision = decide(previous, config.resume)
        log.debug("planned %s: %s (%s)", rid, decision.action, decision.reason)
        kept = previous if isinstance(previous, RunRecord) else None
        return RunResult(rid, run_dir, "planned", kept, decision)
    with writing(run_dir):
        lease = try_lease(run_dir)
    if lease is None:
        return elsewhere(rid, run_dir, holder(peek_record(run_dir)))
    try:
        return run_leased(config, resolved, rid, run_dir, lease)
    finally:
        lease.release()


def run_leased(
    config: Config, resolved: dict[str, Any], rid: str, run_dir: Path, lease: Lock
) -> RunResult:
    """The run, its folder held: decide from the earlier record, then skip or run."""
    previous = previous_record(run_dir)
    live = held_elsewhere(previous, lease)
    if live is not None:
        return elsewhere(rid, run_dir, live)
    remove_temporaries(run_dir)  # under the lease: files of dead attempts only
    decision = decide(previous, config.resume)
    if decision.action == "skip":
        log.debug("skipped %s: %s", rid, decision.reason)
        kept = previous if isinstance(previous, RunRecord) else None
        ensure_stored(config, kept)
        return RunResult(rid, run_dir, "skipped", kept, decision)
    if decision.action == "rerun":
        log.info("rerun of %s: %s", rid, decision.reason)
    result = execute(config, resolved, rid, run_dir)
    return replace(result, decision=decision)


def elsewhere(rid: str, run_dir: Path, why: str) -> RunResult:
    reason = f"{why}; rerun the same command once it has ended"
    log.debug("%s: %s", rid, reason)
    return RunResult(rid, run_dir, ELSEWHERE, None, Decision("skip", reason))


def execute(config: Config, resolved: dict[str, Any], rid: str, run_dir: Path) -> RunResult:
    """Run the config in its (leased) folder: a ``running`` record renewed by a heartbeat,
    then the data, the detector and the timing, then the final record."""
    started = time.perf_counter()
    record = base_record(config, rid, run_dir)
    record.config = resolved
    record.previous_attempts = earlier_attempts(config, rid)
    record.threads, why = resolve_threads(config.threads)
    log.info("%s: %d CPU thread(s) (%s)", rid, record.threads, why)
    with writing(run_dir):
        write_atomic(run_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(resolved)))
        write_record(run_dir, record)  # status "running": a killed run is seen as unfinished
    running = copy.deepcopy(record)  # what the heartbeat rewrites, apart from the beat

    def beat(at: str) -> None:
        assert running.owner is not None
        running.owner.heartbeat_at = at
        write_record(run_dir, running)

    phase, failure = Phase(record.phase_seconds), None
    tracker = LiveRun(config.logger, record, Path(config.results_dir))
    with heartbeat(beat):
        try:
            stages(config, record, run_dir, phase, tracker)
            record.status = RunStatus.ok
        except BaseException as err:
            record.status, record.failed_phase = RunStatus.failed, phase.name
            record.error = one_line(err)
            failure = err
    phase.end()
    record.finished_at = now()
    record.wall_seconds = time.perf_counter() - started
    log.info("%s: %s", record.status.value, phase_summary(record.phase_seconds))
    with writing(run_dir, failure):
        write_record(run_dir, record)
        publish(config, record, run_dir, tracker)
    result = RunResult(rid, run_dir, record.status.value, record)
    if failure is not None:
        failure.run_result = result  # type: ignore[attr-defined]
        raise failure
    return result


def stages(
    config: Config, record: RunRecord, run_dir: Path, phase: Phase, tracker: LiveRun
) -> None:
    """Data, detector (build, train, score, evaluate), online replay and timing, filling
    ``record``."""
    check_device(config.model.name.value, config.framework.name.value, config.framework.device)
    phase("data")
    data_seed = config.seed if config.data_seed is None else config.data_seed
    prepared = prepare_data(config.dataset, config.anomaly, data_seed)
    record.data = prepared.summary
    log.info("data: %s", data_line(prepared.summary))
    source = prepared.summary.get("source") or {}
    if source.get("quarantined"):
        log.info("data: rows dropped: %s (all in the record's data.source)", drops_text(source))
    record.provenance.data_files = data_files(config.dataset)
    record.provenance.injection_seeds = {
        k.removeprefix("inject_"): v for k, v in prepared.summary["seeds"].items() if "inj" in k
    }
    if config.save_arrays:
        save_arrays(prepared, run_dir)
    detector = detect(config, prepared, run_dir, record, phase, tracker.log_epoch)
    if config.online.enabled:
        phase("online")
        record.online = replay(detector, prepared, config.online, run_dir)
        log.info("online: %s", online_line(record.online))
    if config.timing.enabled:
        phase("timing")  # the metrics are in the record already: a failure here keeps them
        batch = record.oom_retry.retried_with if record.oom_retry else None
        figures = time_detector(
            detector,
            prepared.arrays["test"],
            config,
            train_batch_size=batch,
            rss_before_mb=record.rss_before_detector_mb,
        )
        record.timing = replace(record.timing, **figures)


def data_line(summary: dict) -> str:
    """'train 8,401 sequences (420 anomalous), val ..., test ...; ground truth: injected'."""
    splits = summary.get("splits", {})
    counts = ", ".join(
        f"{name} {s.get('sequences', 0):,} sequences ({s.get('anomalous_sequences', 0):,} "
        "anomalous)"
        for name, s in splits.items()
    )
    return f"{counts}; ground truth: {ground_truth(summary)}"


def ground_truth(summary: dict) -> str:
    """Where the run's labels come from: 'injected', 'the data's own labels' or both."""
    if not summary.get("real_labels"):
        return "injected anomalies"
    own = "the data's own labels"
    return f"{own} + injected anomalies" if summary.get("injected") else own


def phase_summary(seconds: dict[str, float]) -> str:
    """'data 3.1 s, train 74.2 s, ...' in the order the phases ran."""
    return ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items())


@contextlib.contextmanager
def writing(run_dir: Path, failure: BaseException | None = None) -> Iterator[None]:
    """File-system errors of the run folder as one-line user errors (the earlier record, if
    any, is intact: writes are atomic); ``failure`` is the run's own error, kept as cause."""
    try:
        yield
    except OSError as err:
        raise ResultsWriteError(
            f"cannot write the run folder {run_dir} ({err.strerror or err}): make results_dir "
            "writable or free disk space, then rerun the same command (unfinished runs rerun)"
        ) from (failure or err)


def ensure_stored(config: Config, record: RunRecord | None) -> None:
    """A kept record is in the results store too (a process killed between writing the
    record and appending it left it out; appending an attempt twice is a no-op)."""
    if record is None:
        return
    try:
        append(store_path(config.results_dir), record)
    except StoreError as err:
        log.warning("%s; the run folder keeps the record", err)


def one_line(err: BaseException) -> str:
    """``Type: message`` on one line (tracebacks and multi-line messages stay in the log)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def data_files(dataset: Any) -> list[dict]:
    """Path, size and SHA-256 of every file the dataset was read from (none for synthetic
    data: its generator config and seed are in the record)."""
    path = getattr(dataset, "path", None)
    if not path:
        return []
    root = data_path(path)
    return [
        {"path": str(f), "bytes": f.stat().st_size, "sha256": cached_digest(f)}
        for f in input_files(root)
    ]


def write_record(run_dir: Path, record: RunRecord) -> None:
    write_atomic(run_dir / RECORD_FILE, record_json(record))


def earlier_attempts(config: Config, rid: str) -> int:
    """How often this config (run id = config hash) ran before; says so when it did."""
    try:
        earlier = attempts(store_path(config.results_dir), rid)
    except StoreError as err:
        log.warning("%s", err)
        return 0
    if earlier:
        last = earlier[-1]
        log.debug(
            "rerun of config %s: %d earlier record(s), the last %s (started %s); "
            "the results store keeps them all",
            rid,
            len(earlier),
            last.status,
            last.started_at,
        )
    return len(earlier)


def publish(config: Config, record: RunRecord, run_dir: Path, tracker: LiveRun) -> None:
    """After the record is on disk: W&B's results, then the results store. Neither can fail
    the run or touch its result; a failure is a warning (and ``tracking`` in the record)."""
    record.tracking = tracker.finish(record, run_dir)
    write_record(run_dir, record)
    try:
        append(store_path(config.results_dir), record)
    except StoreError as err:
        log.warning("%s; the run folder keeps the record", err)


def base_record(config: Config, rid: str, run_dir: Path) -> RunRecord:
    return RunRecord(
        run_id=rid,
        attempt_id=uuid.uuid4().hex,
        experiment=config.experiment_name,
        run_dir=str(run_dir),
        model=config.model.name.value,
        framework=config.framework.name.value,
        objective=config.objective.name.value,
        setting=resolved_setting(config),
        dataset=config.dataset.name,
        anomaly=config.anomaly.name,
        seed=config.seed,
        data_seed=config.seed if config.data_seed is None else config.data_seed,
        started_at=now(),
        owner=owner(),
        provenance=provenance(),
    )


VERSIONED = ("numpy", "scipy", "scikit-learn", "hydra-core", "torch", "jax", "flax", "optax")


def provenance() -> Provenance:
    """Code (git SHA, dirty flag), package versions, hardware and the command line; the
    data files' hashes and the injection seeds are added once the data is loaded."""
    sha, dirty = code_state()
    hardware = _hardware()
    return Provenance(
        git_sha=sha,
        git_dirty=dirty,
        versions={"python": platform.python_version(), **_versions()},
        hardware=hardware,
        hardware_fingerprint=hashlib.sha1(
            json.dumps(hardware, sort_keys=True).encode()
        ).hexdigest()[:12],
        argv=sys.argv[1:],
    )


@functools.cache
def _hardware() -> dict:
    return {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "gpus": nvidia_smi("name,memory.total,driver_version"),
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
    here = Path(__file__).resolve().parent
    return _git(here, "rev-parse", "HEAD"), code_changed(here)


# Every tracked path of the checkout but the measurements under results/.
CODE_PATHS = (":(top)", ":(top,exclude)results")


def code_changed(checkout: Path) -> bool:
    """Whether tracked files of the checkout holding ``checkout`` differ from its commit.
    Files under ``results/`` do not count: re-running a committed experiment rewrites its
    committed report, and the code that ran is still the commit's."""
    status = _git(checkout, "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    return bool(status)


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=cwd,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def save_arrays(prepared: PreparedData, run_dir: Path) -> None:
    """Encoded splits as ``<split>.npz`` (ragged: ``SequenceArrays.columns``) and each injected
    sequence's metadata as ``<split>_anomalies.jsonl`` (type, severity, parameters, what the
    injector chose)."""
    for split, arrays in prepared.arrays.items():
        with atomic_path(run_dir / f"{split}.npz") as tmp:
            np.savez_compressed(tmp, **cast(dict[str, Any], arrays.columns()))  # stub: ** a flag
        lines = [strict_json.dumps(d) for d in prepared.labelled[split].details]
        write_atomic(run_dir / f"{split}_anomalies.jsonl", "\n".join(lines) + "\n")
