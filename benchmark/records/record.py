"""The run record: what one run of one config wrote, typed, and its one JSON form.

``benchmark.run`` fills a :class:`RunRecord` stage by stage; everything downstream (the results
store, W&B, reports, the reproduction table) reads it through these fields. :func:`dumps` and
:func:`from_dict` are the only translation to and from JSON: strict JSON (no NaN or Infinity,
``null`` for a missing number), validated on the way in, so a record written by hand or by
another tool fails with a line naming the bad field instead of a ``KeyError`` deep in a report.

The free-form parts stay dictionaries on purpose: ``config`` (the resolved config, the source
of the run id, so exactly what the run was given), ``data`` (the data stage's summary, whose
keys depend on the dataset), ``training`` (the detector's own fit report) and the timing
protocol's figures per batch size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from benchmark.errors import UserError
from benchmark.records import strict_json
from benchmark.records.identity import BASELINE_FRAMEWORK


class RunStatus(StrEnum):
    running = "running"  # written first: a run killed outright is seen as unfinished
    ok = "ok"
    failed = "failed"


@dataclass
class Provenance:
    """What produced the run: code, packages, hardware, command line, input files."""

    git_sha: str | None = None
    git_dirty: bool = False
    versions: dict[str, str | None] = field(default_factory=dict)
    hardware: dict[str, Any] = field(default_factory=dict)
    hardware_fingerprint: str = ""
    argv: list[str] = field(default_factory=list)
    data_files: list[dict[str, Any]] = field(default_factory=list)  # path, bytes, sha256
    injection_seeds: dict[str, int] = field(default_factory=dict)  # split -> seed


@dataclass
class Metrics:
    """Test-split metrics (``benchmark.evaluation.metrics.evaluate``); ``None`` where a
    metric is undefined (one class only)."""

    roc_auc: float | None = None
    pr_auc: float | None = None
    threshold: float | None = None  # fitted on validation scores
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    accuracy: float | None = None
    best_f1_oracle: float | None = None  # threshold fitted on test labels: an upper bound
    recall_at_1pct_fpr: float | None = None
    precision_at_n_anomalies: float | None = None
    roc_auc_ci: tuple[float | None, float | None] = (None, None)
    pr_auc_ci: tuple[float | None, float | None] = (None, None)
    per_type: dict[str, float | None] = field(default_factory=dict)
    event_roc_auc: float | None = None
    n_test: int = 0
    n_test_anomalies: int = 0
    n_test_outside_population: int = 0
    alternative_roc_auc: dict[str, float | None] = field(default_factory=dict)


@dataclass
class Timing:
    """The fit's and the evaluation pass's own times, then (``timing.enabled``) the timing
    protocol's figures (``benchmark.timing.protocol.measure``)."""

    train_seconds: float | None = None
    train_seq_per_s: float | None = None  # None when the weights came from a checkpoint
    infer_seconds: float | None = None
    infer_seq_per_s: float | None = None
    protocol: dict[str, Any] | None = None
    inference: dict[str, dict[str, Any]] = field(default_factory=dict)  # batch_<n> -> figures
    latency_ms: dict[str, dict[str, Any]] = field(default_factory=dict)  # batch_<n> -> figures
    train: dict[str, Any] | None = None
    memory_mb: dict[str, dict[str, Any]] = field(default_factory=dict)  # phase -> peaks
    peak_memory_mb: float | None = None
    environment: dict[str, Any] = field(default_factory=dict)

    def batch_1_latency(self) -> dict[str, Any]:
        """The batch-1 latency figures (empty when the protocol did not run)."""
        return self.latency_ms.get("batch_1", {})


@dataclass
class Detection:
    """Time to detection over anomalous test sequences (all, or one type): from the attack's
    first event to the first alarm at or after it (``benchmark.online.alarms``)."""

    sequences: int = 0
    detected: int = 0
    detection_rate: float | None = None
    within_events: list[float | None] = field(default_factory=list)  # [k - 1]: by k events
    median_delay_events: float | None = None  # of the detected
    mean_delay_events: float | None = None
    median_delay_seconds: float | None = None
    alarmed_before_attack: int = 0  # sequences with an alarm before their attack started


@dataclass
class Alarms:
    """Alarms at one threshold rule on the test stream: false alarms on normal sequences and
    time to detection of the anomalous ones (``benchmark.online.alarms``)."""

    threshold: float | None = None  # fitted on validation prefixes
    normal_sequences: int = 0
    alarmed_normal_sequences: int = 0
    false_alarms_per_1000_sequences: float | None = None
    false_alarms_per_hour: float | None = None
    overall: Detection = field(default_factory=Detection)
    per_type: dict[str, Detection] = field(default_factory=dict)


@dataclass
class OnlineMetrics:
    """The test stream replayed event by event (``online.enabled``): alarms at a threshold
    fitted on validation prefixes (``alarms``; ``per_user``: on each score minus its user's
    running level), the per-event ROC-AUC, and what per-event scoring costs (``cost``: the
    stateful scorer's figures)."""

    false_alarm_target: float = 0.0  # share of normal validation sequences alarmed
    event_roc_auc: float | None = None
    traffic_hours: float = 0.0
    events: int = 0
    alarms: Alarms = field(default_factory=Alarms)
    per_user: Alarms | None = None
    cost: dict[str, Any] = field(default_factory=dict)


@dataclass
class Owner:
    """The process that runs (or ran) the attempt; ``heartbeat_at`` is renewed while it runs
    (``benchmark.run.lease``)."""

    host: str
    pid: int
    heartbeat_at: str


@dataclass
class OomRetry:
    """A device out-of-memory at ``batch_size``, retried once at ``retried_with``."""

    error: str
    batch_size: int
    retried_with: int


@dataclass
class RunRecord:
    """One attempt of one config (run id = the config's hash)."""

    run_id: str
    status: RunStatus = RunStatus.running
    attempt_id: str = ""  # one per execution: reruns of a config differ here
    experiment: str = ""
    run_dir: str = ""
    error: str | None = None  # ``Type: message`` of a failure
    failed_phase: str | None = None  # setup, data, build, train, score, evaluate, online, timing
    model: str = ""
    framework: str = ""  # torch, jax, or numpy for the baselines
    objective: str = ""
    setting: str = ""  # supervised, semi_supervised, unsupervised
    dataset: str = ""
    anomaly: str = ""
    seed: int = 0
    data_seed: int = 0
    started_at: str | None = None
    owner: Owner | None = None
    finished_at: str | None = None
    wall_seconds: float | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)  # setup, data, ..., timing
    provenance: Provenance = field(default_factory=Provenance)
    config: dict[str, Any] = field(default_factory=dict)
    previous_attempts: int = 0
    threads: int = 0  # CPU threads the detector was given (see benchmark.run.threads)
    data: dict[str, Any] = field(default_factory=dict)
    rss_before_detector_mb: float | None = None
    training_sequences: int | None = None
    training: dict[str, Any] = field(default_factory=dict)
    oom_retry: OomRetry | None = None
    pca: dict[str, Any] | None = None
    metrics: Metrics | None = None  # None until the evaluate phase ends
    n_params: int | None = None
    modalities_used: list[str] = field(default_factory=list)
    online: OnlineMetrics | None = None  # online.enabled: the event-by-event replay
    timing: Timing = field(default_factory=Timing)
    tracking: dict[str, Any] = field(default_factory=dict)  # W&B: status, mode, id, dir

    @property
    def is_ok(self) -> bool:
        """Finished with metrics: what reports rank."""
        return self.status == RunStatus.ok and self.metrics is not None

    @property
    def result(self) -> Metrics:
        """The metrics of a run that has them (see ``is_ok``)."""
        if self.metrics is None:
            raise ValueError(f"run {self.run_id} ({self.status}) has no metrics")
        return self.metrics

    @property
    def is_baseline(self) -> bool:
        return self.framework == BASELINE_FRAMEWORK

    def epochs_trained(self) -> int:
        """Passes over the training split: the objective's epochs plus pretraining epochs."""
        pretraining = self.training.get("pretraining") or {}
        return int(self.training.get("epochs", 1)) + int(pretraining.get("epochs", 0))


_ADAPTER: TypeAdapter[RunRecord] = TypeAdapter(RunRecord)


class RecordError(UserError):
    """A record file that is not a run record of this harness."""


def to_dict(record: RunRecord) -> dict[str, Any]:
    """The record as JSON-ready values (non-finite numbers as None)."""
    return strict_json.finite_or_none(asdict(record))


def dumps(record: RunRecord, indent: int | None = 2) -> str:
    return strict_json.dumps(asdict(record), indent=indent)


def from_dict(values: dict[str, Any]) -> RunRecord:
    """A record from its JSON values (keys this version does not know are ignored);
    :class:`RecordError` naming the first bad field otherwise."""
    try:
        return _ADAPTER.validate_python(values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the record"
        raise RecordError(f"not a run record: {where}: {first['msg']}") from err


def loads(text: str) -> RunRecord:
    try:
        values = strict_json.loads(text)
    except ValueError as err:
        raise RecordError(f"not valid JSON ({err})") from err
    if not isinstance(values, dict):
        raise RecordError("not a run record: the file holds no JSON object")
    return from_dict(values)


def load(path: Path) -> RunRecord:
    """The record in ``path``; :class:`RecordError` (naming the file) when it is unreadable."""
    try:
        return loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise RecordError(f"{path}: not text ({err.reason})") from err
    except RecordError as err:
        raise RecordError(f"{path}: {err}") from err
