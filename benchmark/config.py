"""Structured-config schemas, registered with Hydra's ConfigStore.

Every YAML file under ``conf/`` merges into one of these dataclasses, so a misspelt key or a value
of the wrong type fails when the config is composed, naming the key. Range checks that types
cannot express live in :func:`check_config`; the range of every number is in
``benchmark.limits``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from enum import Enum, StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from benchmark.anomalies.inject import AnomalyConfig, check_anomaly_config
from benchmark.detectors.registry import BASELINES, supported_settings
from benchmark.errors import ConfigError
from benchmark.limits import first_problem
from datasets.loaders.table import TableMapping
from datasets.synthetic import SyntheticConfig, check_synthetic_config
from models_common.config import MODALITIES, ModelSizes


class ModelName(Enum):
    lstm = "lstm"
    gru = "gru"
    transformer = "transformer"
    multimodal = "multimodal"
    # Framework-neutral baselines (benchmark/detectors/baselines.py); they ignore `framework`.
    random = "random"
    iforest = "iforest"
    markov = "markov"
    lof = "lof"
    hgb = "hgb"
    logreg = "logreg"
    selection_probe = "selection_probe"
    knn = "knn"
    ocsvm = "ocsvm"
    mean_shift = "mean_shift"
    random_forest = "random_forest"
    decision_tree = "decision_tree"


class FrameworkName(Enum):
    torch = "torch"
    jax = "jax"


class DetectionSetting(Enum):
    """Which labels training may use (``benchmark/detectors/registry.py`` declares who supports
    which)."""

    unsupervised = "unsupervised"
    semi_supervised = "semi_supervised"
    supervised = "supervised"


class ObjectiveName(Enum):
    classify = "classify"
    classify_type = "classify_type"
    next_event = "next_event"
    masked = "masked"
    forecast = "forecast"


class Pool(StrEnum):
    """How a sequence's event scores become its score."""

    mean = "mean"
    max = "max"  # a sequence flagged when any of its events is: a per-event threshold


# Choices a config value takes; OmegaConf refuses any other at composition, naming the allowed
# ones. StrEnums compare equal to their values, so code and records read them as strings.
class SessionBy(StrEnum):
    session = "session"  # the dataset's session id
    gap = "gap"  # a user's events split at inactivity gaps


class Truncate(StrEnum):
    last = "last"
    first = "first"


class SplitBy(StrEnum):
    user = "user"
    session = "session"


class SplitMethod(StrEnum):
    random = "random"
    chronological = "chronological"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"


class CompileMode(StrEnum):
    default = "default"
    reduce_overhead = "reduce-overhead"
    max_autotune = "max-autotune"


class Attention(StrEnum):
    sdpa = "sdpa"
    math = "math"


class LstmKernel(StrEnum):
    scan = "scan"
    cudnn = "cudnn"


class Schedule(StrEnum):
    cosine = "cosine"
    constant = "constant"


class LoggerName(StrEnum):
    wandb_offline = "wandb_offline"
    wandb = "wandb"
    none = "none"


class ThresholdRule(StrEnum):
    max_f1 = "max_f1"
    fpr = "fpr"
    balanced = "balanced"
    fixed = "fixed"


class PCAStatistic(StrEnum):
    t2 = "t2"
    spe = "spe"


class Resume(StrEnum):
    ok = "ok"
    finished = "finished"
    none = "none"


@dataclass
class SequenceConfig:
    """How events become sequences."""

    session_by: SessionBy = SessionBy.session
    """'session': the dataset's session id; 'gap': split a user's events at inactivity gaps."""
    gap_minutes: float = 30.0
    """Inactivity gap that starts a new session when session_by='gap'."""
    min_length: int = 2
    """Sessions with fewer events are dropped."""
    max_length: int = 50
    """Longer sessions are truncated (see truncate)."""
    truncate: Truncate = Truncate.last
    """Which events a truncated session keeps: 'last' (most recent) or 'first'."""
    vocab_min_count: int = 1
    """Items and categories seen fewer times in training map to the unknown bucket."""
    max_items: int | None = None
    """Cap on the item vocabulary (most frequent kept); null for no cap."""


@dataclass
class SplitConfig:
    """Entity split: no user (or session) lands in two splits."""

    by: SplitBy = SplitBy.user
    """'user' or 'session'."""
    method: SplitMethod = SplitMethod.random
    """'random' or 'chronological' (by each entity's first event)."""
    train: float = 0.7
    val: float = 0.15
    test: float = 0.15


@dataclass
class DatasetConfig:
    """Fields every dataset shares; each dataset's schema extends it."""

    name: str = MISSING
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class SyntheticDatasetConfig(DatasetConfig):
    name: str = "synthetic"
    generator: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class PublicDatasetConfig(DatasetConfig):
    """A public dataset read from the files a user downloaded (or the shipped sample)."""

    path: str = MISSING
    """The dataset's file or folder; relative paths are tried from the working directory,
    then from the project root (where the shipped samples live)."""
    strict: bool = True
    """True: the first bad row stops the load, naming file, line and column. False: bad rows
    are quarantined (skipped, counted per reason in the record's data.source)."""
    max_rows: int | None = None
    """Read at most this many rows (lines for JSON Lines) of each file: a quick look."""
    on_unknown_event: str = "reject"
    """An undocumented event type: 'reject' (error, or quarantined when not strict) or the
    vocabulary type to map it to (e.g. 'view')."""
    timestamp_unit: str = "auto"
    """OTTO only: 'auto', 's' or 'ms'."""
    proxy_labels: bool = False
    """TalkingData only: real-label evaluation against the weak proxy "this (ip, device, os)
    never downloaded the app" (run with anomaly=none)."""
    cache: bool = True
    """Keep the loaded arrays of big downloads in ``cache_dir`` (keyed by the files' SHA-256
    and these options): later runs read them back in seconds."""
    cache_dir: str = ".cache/datasets"
    cache_min_mb: float = 64.0
    """Inputs smaller than this load directly (the shipped samples)."""


@dataclass
class EventsDatasetConfig(PublicDatasetConfig):
    """``dataset=events``: the user's own event table."""

    table: TableMapping = field(default_factory=TableMapping)
    """Which column of the table is which field (user, session, timestamp, event type, item,
    category, price, label), the time unit or format, event-type names
    (datasets/loaders/table.py)."""
    memory_gb: float | None = 2.0
    """The data stage's working set per partition: a table estimated beyond it is read once
    into user partitions (Parquet files under ``cache_dir``, removed afterwards), each
    prepared on its own; the prepared arrays (about 22 bytes per event) come on top. The
    partitions depend on the table and this budget only, so a config gives the same data on
    any machine. null: never partition."""
    download: str | None = None
    """A public dataset read through a mapping: how to get its files, said when the path is
    missing (e.g. 'python -m datasets.fetch taobao says where')."""
    workers: int = 0
    """Partitions prepared at a time, each in a process of its own holding up to
    ``memory_gb`` (0: one per CPU, as ``threads`` chooses; never more than the memory
    available holds)."""


@dataclass
class ModelConfig(ModelSizes):
    """A detector and its sizes (``ModelSizes``, shared with both frameworks' models)."""

    name: ModelName = MISSING
    standardize_inputs: bool = False
    """Multimodal: z-score the numeric input (log price) with the training split's mean and
    standard deviation (validation and test reuse them: nothing leaks)."""
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    """Multimodal: the modalities it may read (behaviour always; the modality ablation
    leaves the others out one by one). One the data lacks is left out whatever this says."""


@dataclass
class FrameworkConfig:
    name: FrameworkName = MISSING
    device: Device = Device.auto
    """'auto' (GPU when present), 'cpu' or 'cuda'."""
    precision: Precision = Precision.fp32
    """'fp32' or 'bf16' (bf16 only takes effect on GPU)."""
    compile: bool = False
    """torch.compile for PyTorch; for JAX, the whole train step under jax.jit (off: eager,
    for debugging only)."""
    compile_mode: CompileMode = CompileMode.default
    """PyTorch: torch.compile mode; 'reduce_overhead' replays CUDA graphs (small-batch
    latency), 'max_autotune' also searches kernels."""
    attention: Attention = Attention.sdpa
    """PyTorch: 'sdpa' (scaled_dot_product_attention picks flash / memory-efficient / cuDNN
    kernels) or 'math' (its unfused reference kernel, to show what the fused ones buy)."""
    tf32: bool = False
    """PyTorch on GPU: TF32 tensor cores for float32 matrix products and cuDNN RNNs."""
    fused_optimizer: bool = True
    """PyTorch: AdamW as one fused kernel over all parameters (``fused=True``, CPU and CUDA);
    false: PyTorch's default update (a loop over the parameters on CPU, ``foreach`` kernels on
    a GPU). The same update up to float rounding. JAX: no effect (XLA fuses the optax update
    inside the jitted step either way)."""
    scan_unroll: int = 1
    """JAX: time steps per iteration of the recurrent lax.scan (speed vs compile time)."""
    hoist_inputs: bool | None = None
    """JAX recurrent models: one matrix product for all time steps' input projections,
    outside the scan (false: inside each step, as a textbook cell does). null (default): per
    device - on for GPUs, off on CPU, where XLA's scan over the hoisted (T, B, gates*H)
    projections measured 1.6x slower than projecting inside each step (README, "Speed")."""
    lstm_kernel: LstmKernel = LstmKernel.scan
    """JAX LSTM: 'scan' (lax.scan of the cell) or 'cudnn' (jax.experimental.rnn: NVIDIA
    cuDNN's fused recurrence, on a GPU only; states after a sequence's last event are zero,
    every score the same). PyTorch's nn.LSTM runs cuDNN on a GPU already."""
    fused_dropout: bool = True
    """Dropout masks of four 16-bit decisions per 64 random bits. JAX: from a written-out
    Threefry hash, which XLA fuses with the masks' use (false: jax.random.bernoulli, as
    nnx.Dropout: 32 bits per decision, and on CPU a hash loop that fuses with nothing).
    PyTorch on CPU: from the generator's 64-bit draws, the attention weights dropped outside
    scaled_dot_product_attention (false: PyTorch's bernoulli_, one draw per decision); on a
    GPU PyTorch's own fused dropout either way. Same distribution (the rate rounded to a
    multiple of 2^-16), other random draws."""
    donate: bool = True
    """JAX: donate parameter and optimiser buffers to the train step (updated in place)."""
    dense_embedding_grad_rows: int | None = None
    """JAX: embedding tables up to this many rows take their gradient as a one-hot matrix
    product instead of a scatter-add (GPUs serialise a scatter's repeated ids); 0 = never.
    null (default): per device - 4096 on GPUs, 0 on CPU, where a scatter-add has no
    contention and building the one-hot matrices was the slower part of a training step."""
    deterministic: bool = False
    """GPU: deterministic kernels only (PyTorch: use_deterministic_algorithms, cuDNN
    deterministic, CUBLAS_WORKSPACE_CONFIG; JAX: --xla_gpu_deterministic_ops), so that a
    rerun is bit-identical, at some speed cost. CPU runs are deterministic either way."""


@dataclass
class ObjectiveConfig:
    name: ObjectiveName = MISSING
    mask_prob: float = 0.15
    """Share of events masked (masked objective)."""
    top_k: int = 10
    """k of the top-k miss rate (next_event objective)."""
    pool: Pool = Pool.mean
    """The objectives that score events (next_event, forecast, masked): a sequence's score is
    the mean of its events' scores, or their maximum (a threshold on it flags a sequence when
    any of its events exceeds it, as a per-time-point threshold does)."""


@dataclass
class TrainConfig:
    epochs: int = 6
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.01
    schedule: Schedule = Schedule.cosine
    """'cosine' (with warm-up) or 'constant'."""
    warmup: float = 0.1
    """Share of the run's optimiser steps spent in linear warm-up (in [0, 1)): a fraction,
    so that a short run on a small file is not all warm-up."""
    grad_clip: float = 1.0
    patience: int = 3
    """Epochs without validation improvement before early stopping."""
    pretrain_epochs: int = 0
    """Masked-event pretraining epochs (objective=masked on the same training split, labels
    unused) before the objective's own training; the encoder's weights carry over, the
    output heads start fresh. 0: no pretraining."""
    pretrain_lr: float = 1e-3
    """Learning rate of the pretraining (train.lr is the fine-tuning's)."""
    oom_retry: bool = True
    """On a device out-of-memory during training, retry once at half the batch size (the
    record's ``oom_retry`` says so); false lets the run fail at once."""


@dataclass
class TimingConfig:
    """The timing protocol (``benchmark/timing/protocol.py``), run on the test split after
    evaluation."""

    enabled: bool = True
    warmup_steps: int = 10
    """Untimed calls after the first (timed: compilation) one."""
    min_window_s: float = 1.0
    """Each throughput window lasts at least this long (one synchronisation at its end)."""
    windows: int = 3
    """Windows per figure: the median is reported, with the spread."""
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32, 256, 1024])
    """Inference throughput batch sizes."""
    latency_batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    latency_requests: int = 1000
    """End-to-end requests per latency distribution (p99.9 needs >= 1000)."""
    train: bool = True
    """Also time full optimiser steps at train.batch_size (weights restored afterwards)."""


@dataclass
class LoggerConfig:
    name: LoggerName = LoggerName.wandb_offline
    """'wandb_offline', 'wandb' or 'none'."""
    project: str = "clickstream-anomaly-bench"
    entity: str | None = None
    """W&B entity; from WANDB_ENTITY when null. Never commit a personal one."""
    group: str | None = None
    """W&B group; the experiment name when null (a sweep's runs share it)."""
    tags: list[str] = field(default_factory=list)
    """Extra W&B tags; model, framework, objective, dataset and anomaly are always tagged."""


@dataclass
class EvaluationConfig:
    threshold: ThresholdRule = ThresholdRule.max_f1
    """How the decision threshold is fitted on validation scores: 'max_f1', 'fpr' (see
    target_fpr), 'balanced' (false-positive rate = false-negative rate), or 'fixed' (not
    fitted: fixed_threshold)."""
    target_fpr: float = 0.01
    """Validation false-positive rate the 'fpr' rule aims for."""
    fixed_threshold: float = 0.0
    """The 'fixed' rule's threshold on the detector's score scale (classify scores are logits:
    0 is a sigmoid output of 0.5)."""
    bootstrap: int = 1000
    """Bootstrap resamples for the 95% intervals of ROC-AUC and PR-AUC."""


@dataclass
class PCAConfig:
    """Scores from the detector's pooled sequence representation reduced by PCA (article 4's
    setup; benchmark/detectors/pca.py), instead of the objective's own score."""

    components: int = 0
    """Principal components kept (fitted on the training split only); 0: no PCA, the
    objective's own score."""
    statistic: PCAStatistic = PCAStatistic.t2
    """'t2': Hotelling's T^2 inside the kept components; 'spe': the squared residual outside
    them. The other statistic and the objective's score are recorded as alternatives."""


@dataclass
class OnlineConfig:
    """Online detection (benchmark/online): the test traffic replayed event by event."""

    enabled: bool = False
    """Score every test event as the prefix of its sequence up to it, raise alarms at a
    threshold fitted on validation prefixes, and record time to detection."""
    false_alarm_rate: float = 0.05
    """Share of normal validation sequences allowed an alarm: fits the alarm threshold."""
    per_user: bool = True
    """Also alarm on each score minus its user's running level (the mean of their earlier
    scores in the stream): a per-user adaptive threshold, fitted the same way."""
    concurrent_users: list[int] = field(default_factory=lambda: [1, 1000, 100000])
    """What per-event scoring costs is measured with this many sequences in flight."""
    events_per_call: int = 1024
    """Most events the stateful scorer takes in one call (one per sequence in flight)."""
    cost_seconds: float = 2.0
    """Timed seconds per concurrency level (0: no cost figures)."""


@dataclass
class Config:
    dataset: Any = MISSING
    anomaly: AnomalyConfig = MISSING
    model: ModelConfig = MISSING
    framework: FrameworkConfig = MISSING
    objective: ObjectiveConfig = MISSING
    train: TrainConfig = MISSING
    timing: TimingConfig = MISSING
    logger: LoggerConfig = MISSING
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    pca: PCAConfig = field(default_factory=PCAConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    setting: DetectionSetting | None = None
    """Detection setting: 'unsupervised' (train on unlabelled, contaminated data),
    'semi_supervised' (train on the normal training sequences only) or 'supervised' (train on
    the labels). Chosen with the ``setting`` group, which also picks a fitting objective; null
    (``setting=auto``): the detector's own (supervised for the classify objectives and the
    supervised baselines, unsupervised otherwise), resolved before the run id is taken."""
    experiment_name: str = "default"
    """Results go to <results_dir>/<experiment_name>/<run_id>/."""
    seed: int = 0
    """Seeds model initialisation and training; also the data when data_seed is null."""
    data_seed: int | None = None
    """Seeds generation, splits and injection; null means use seed."""
    results_dir: str = "results"
    save_arrays: bool = False
    """Also write the encoded splits (npz) into the run directory."""
    checkpoint: str | None = None
    """Score with the weights of this checkpoint.safetensors (trained by either framework)
    instead of training: e.g. a PyTorch-trained model scored by its JAX twin."""
    resume: Resume = Resume.ok
    """Which earlier results a rerun keeps (the run folder is keyed by the config hash):
    'ok' skips configs whose record says ok and reruns failed and unfinished ones, 'finished'
    also skips failed ones, 'none' runs everything again."""
    dry_run: bool = False
    """Print what each run would do (run, rerun, skip) and why, without running anything."""
    threads: int = 0
    """CPU threads of the detector; 0 chooses (OMP_NUM_THREADS if set, else the CPUs this
    process may use, shared among a parallel launcher's jobs): see benchmark/run/threads.py.
    Left out of the run id, like the hardware; the record keeps the count used."""
    scale: str = "ci"
    """Size set of a reproduction experiment (conf/experiment/paper_*.yaml): 'ci' fits a
    2-core CPU in minutes, 'paper' is the article's sizes and epochs (for a GPU). The
    experiment's values read ``reproduction.sizes.<scale>``; other experiments ignore it."""
    reproduction: Any = None
    """A reproduction experiment's metadata: the article, what it claims (the one place
    claimed numbers live), the choices it leaves open, and ``sizes`` per scale."""


def name_of(value: Any) -> str:
    """``${name_of:${model.name}}``: an enum choice as a plain string, usable inside a key
    path (reproduction experiments look sizes up per model: ``sizes.ci.<model>``)."""
    return str(getattr(value, "value", value))


# Registered on import: Ray and submitit workers resolve configs in their own processes.
OmegaConf.register_new_resolver("name_of", name_of, replace=True)


INVOCATION = "BENCHMARK_INVOCATION"


def invocation() -> str:
    """``${invocation:}``: the id of the command's process, in Hydra's sweep folder name, so
    that two sweeps started in the same second never share (and overwrite) one folder. The
    command line sets it in the environment (:func:`mark_invocation`), so the worker
    processes of a Ray or submitit launcher resolve the same folder as the sweep itself."""
    return os.environ.get(INVOCATION) or f"p{os.getpid()}"


def mark_invocation() -> None:
    os.environ[INVOCATION] = f"p{os.getpid()}"


OmegaConf.register_new_resolver("invocation", invocation, replace=True)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="dataset", name="synthetic_schema", node=SyntheticDatasetConfig)
    cs.store(group="dataset", name="public_schema", node=PublicDatasetConfig)
    cs.store(group="dataset", name="events_schema", node=EventsDatasetConfig)


class NotApplicableError(ConfigError):
    """The detector does not run in the chosen detection setting (in a sweep: skipped)."""


def resolved_setting(cfg: Config) -> str:
    """``cfg.setting``, or the detector's own default when it is null."""
    if cfg.setting is not None:
        return cfg.setting.value
    return supported_settings(cfg.model.name.value, cfg.objective.name.value)[0]


def with_setting(cfg: Config) -> Config:
    """``cfg`` with its detection setting resolved (never null)."""
    return replace(cfg, setting=DetectionSetting(resolved_setting(cfg)))


def check_setting(cfg: Config) -> None:
    model, objective = cfg.model.name.value, cfg.objective.name.value
    supported = supported_settings(model, objective)
    setting = resolved_setting(cfg)
    if setting in supported:
        return
    what = f"model={model}" if model in BASELINES else f"objective={objective}"
    fix = (
        f"use setting={supported[0]}"
        if model in BASELINES
        else "use objective=classify"
        if setting == "supervised"
        else "use a self-supervised objective (next_event, masked, forecast)"
    )
    raise NotApplicableError(
        f"{what} runs in the {' and '.join(supported)} setting(s), not setting={setting}: {fix}"
    )


def path_problem(results_dir: str, experiment_name: str) -> str | None:
    """Why results could land outside ``results_dir`` (or nowhere), or None: the results
    folder must be named, and the experiment name must be one folder name inside it."""
    if not str(results_dir).strip():
        return "results_dir is empty: name the folder for results, e.g. results_dir=results"
    name = str(experiment_name)
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
        return (
            f"experiment_name={name!r} must be one folder name inside results_dir (no '/', "
            "'..' or empty name): e.g. experiment_name=my_study"
        )
    return None


def check_config(cfg: Config) -> None:
    """Range and choice checks that the schema types cannot express."""
    problem = path_problem(cfg.results_dir, cfg.experiment_name)
    if problem:
        raise ConfigError(problem)
    check_setting(cfg)
    ds = cfg.dataset
    if isinstance(ds, PublicDatasetConfig) and not ds.path.strip():
        raise ConfigError(
            f"dataset.path is empty: give the {ds.name} file or folder "
            f"(python -m datasets.fetch {ds.name} says where to get it)"
        )
    seq, split = ds.sequence, ds.split
    if cfg.framework.lstm_kernel == "cudnn" and (
        cfg.framework.name.value != "jax" or cfg.model.name.value != "lstm"
    ):
        raise ConfigError(
            "framework.lstm_kernel=cudnn applies to framework=jax model=lstm only (PyTorch's "
            "nn.LSTM runs cuDNN on a GPU already): drop it"
        )
    problem = first_problem(asdict(cfg))
    if problem:
        raise ConfigError(problem)
    _choice("scale", cfg.scale, ("ci", "paper"))
    if seq.min_length > seq.max_length:
        raise ConfigError(
            f"dataset.sequence.min_length={seq.min_length} must be between 1 and "
            f"dataset.sequence.max_length={seq.max_length}"
        )
    fractions = (split.train, split.val, split.test)
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"dataset.split fractions {list(fractions)} must be > 0 and sum to 1")
    if cfg.model.share_layers and cfg.model.name.value not in ("transformer", "multimodal"):
        raise ConfigError(
            f"model.share_layers=true applies to transformer and multimodal, not "
            f"{cfg.model.name.value}: drop it or pick model=transformer"
        )
    if cfg.model.lag_window and cfg.model.name.value in ("transformer", "multimodal"):
        raise ConfigError(
            f"model.lag_window={cfg.model.lag_window} applies to lstm and gru (the baselines "
            f"ignore it), not {cfg.model.name.value}: set it to 0 or pick model=lstm"
        )
    for key, value in (
        ("pca.components", cfg.pca.components),
        ("train.pretrain_epochs", cfg.train.pretrain_epochs),
    ):
        if value and cfg.model.name.value in BASELINES:
            raise ConfigError(
                f"{key} applies to the deep detectors, not the baseline "
                f"{cfg.model.name.value}: set it to 0"
            )
    if cfg.online.enabled and cfg.pca.components:
        raise ConfigError(
            "online.enabled=true replays the objective's own score; pca.components scores "
            "whole sequences: set one of them off"
        )
    check_heads(cfg)
    check_modalities(cfg.model.modalities)
    try:
        check_anomaly_config(cfg.anomaly)
        if isinstance(ds, SyntheticDatasetConfig):  # before any run: a sweep stops at once
            check_synthetic_config(ds.generator)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def check_modalities(chosen: list[str]) -> None:
    unknown = [m for m in chosen if m not in MODALITIES]
    if unknown or "behaviour" not in chosen:
        raise ConfigError(
            f"model.modalities={list(chosen)}: give behaviour and any of {list(MODALITIES[1:])}"
        )


def check_heads(cfg: Config) -> None:
    m = cfg.model
    if m.name.value in ("transformer", "multimodal") and m.hidden_dim % m.num_heads:
        raise ConfigError(
            f"model.hidden_dim={m.hidden_dim} must be divisible by model.num_heads="
            f"{m.num_heads}: e.g. model.num_heads={_divisor_near(m.hidden_dim, m.num_heads)}"
        )


def _divisor_near(width: int, heads: int) -> int:
    """The divisor of ``width`` closest to ``heads`` (a head count that fits)."""
    return min((d for d in range(1, width + 1) if width % d == 0), key=lambda d: abs(d - heads))


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; use one of {list(allowed)}")
