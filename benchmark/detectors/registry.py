"""The one boundary between the harness and any detector: a NumPy-only protocol and a registry
keyed by (framework, model).

Framework code registers itself from its adapter module; the registry imports an adapter only
when a run asks for its framework, so a NumPy baseline run never imports torch or jax.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from benchmark.errors import ConfigError
from benchmark.online.stream import StatefulScorer
from benchmark.timing.protocol import ScoreProbe, SpeedProbe
from datasets.features import SequenceArrays
from models_common.config import Vocabulary

# Where each framework's detectors register themselves (explicit: no directory scanning).
ADAPTERS: dict[str, str] = {
    "numpy": "benchmark.detectors.baselines",
    "torch": "benchmark.detectors.adapters.torch_adapter",
    "jax": "benchmark.detectors.adapters.jax_adapter",
}
# Each framework's timing probes, imported only when a run is timed.
SPEED_PROBES: dict[str, str] = {
    "torch": "benchmark.detectors.adapters.torch_speed",
    "jax": "benchmark.detectors.adapters.jax_speed",
}
BASELINES: tuple[str, ...] = (
    "random",
    "iforest",
    "markov",
    "lof",
    "hgb",
    "logreg",
    "selection_probe",
    "knn",
    "ocsvm",
    "mean_shift",
    "random_forest",
    "decision_tree",
)

# Detection settings: which labels training may use. Detectors are ranked within one only.
UNSUPERVISED = "unsupervised"  # training data unlabelled and contaminated
SEMI_SUPERVISED = "semi_supervised"  # training data known to be normal (anomalies removed)
SUPERVISED = "supervised"  # training labels used
SETTINGS: tuple[str, ...] = (UNSUPERVISED, SEMI_SUPERVISED, SUPERVISED)
UNLABELLED = (UNSUPERVISED, SEMI_SUPERVISED)

# The settings each deep objective and each baseline supports (the first is its default).
OBJECTIVE_SETTINGS: dict[str, tuple[str, ...]] = {
    "classify": (SUPERVISED,),
    "classify_type": (SUPERVISED,),
    "next_event": UNLABELLED,
    "masked": UNLABELLED,
    "forecast": UNLABELLED,
}
BASELINE_SETTINGS: dict[str, tuple[str, ...]] = {
    "random": SETTINGS,
    "iforest": UNLABELLED,
    "markov": UNLABELLED,
    "lof": UNLABELLED,
    "hgb": (SUPERVISED,),
    "logreg": (SUPERVISED,),
    "selection_probe": (SUPERVISED,),
    "knn": UNLABELLED,
    "ocsvm": UNLABELLED,
    "mean_shift": UNLABELLED,
    "random_forest": (SUPERVISED,),
    "decision_tree": (SUPERVISED,),
}


def supported_settings(model: str, objective: str) -> tuple[str, ...]:
    """The detection settings ``model`` (with ``objective``, for a deep detector) runs in."""
    if model in BASELINES:
        return BASELINE_SETTINGS[model]
    return OBJECTIVE_SETTINGS[objective]


@dataclass(frozen=True)
class Scores:
    """Anomaly scores, higher = more anomalous."""

    sequence: np.ndarray  # (N,) float64
    event: np.ndarray | None = None  # (N, T) float64, 0 on padding; None if not localised
    alternatives: dict[str, np.ndarray] = field(default_factory=dict)  # other (N,) scores


@dataclass(kw_only=True, unsafe_hash=True)
class DataInfo(Vocabulary):
    """What a detector may know about the data before seeing it: its vocabularies and which
    modalities it holds."""

    modalities: tuple[str, ...]


@dataclass(frozen=True)
class DetectorSpec:
    """Everything a factory needs; config sections are passed as their dataclasses."""

    model: Any
    objective: Any
    train: Any
    framework: Any
    data: DataInfo
    seed: int
    run_dir: Any = None  # where checkpoints may be written
    threads: int = 0  # CPU threads the framework may use (0: its own default)
    on_epoch: Any = None  # called with each epoch's history entry as it ends (live tracking)
    extra: dict = field(default_factory=dict)


@runtime_checkable
class Detector(Protocol):
    """What the harness asks of every detector; its timing probe comes from ``speed_probe``."""

    def fit(self, train: SequenceArrays, val: SequenceArrays) -> dict:
        """Train; returns a JSON-ready report (epochs, losses, seconds, ...)."""
        ...

    def score(self, data: SequenceArrays) -> Scores: ...

    @property
    def n_params(self) -> int: ...

    @property
    def modalities_used(self) -> tuple[str, ...]: ...


@runtime_checkable
class NeuralDetector(Detector, Protocol):
    """A deep detector: also sequence representations and framework-neutral weights."""

    def represent(self, data: SequenceArrays) -> np.ndarray:
        """(N, H) pooled sequence representations."""
        ...

    def canonical_weights(self) -> dict[str, np.ndarray]:
        """Float32 arrays under PyTorch ``state_dict`` names, whichever framework trained it."""
        ...

    def load_weights(self, weights: dict[str, np.ndarray]) -> None: ...

    def inspect(self, data: SequenceArrays, index: np.ndarray) -> dict[str, np.ndarray]:
        """What the model shows of how it scored rows ``index`` (attention over events,
        modality gates), by output name; empty for a model that shows nothing."""
        ...

    def stateful_scorer(self) -> StatefulScorer | None:
        """A scorer that carries each sequence's state event by event (the recurrent
        detectors); None: online scoring rescans a window (``WindowScorer``)."""
        ...


def as_neural(detector: Detector, what: str) -> NeuralDetector:
    """``detector`` as a deep detector, or one line saying ``what`` needs one."""
    if not isinstance(detector, NeuralDetector):
        raise ConfigError(
            f"{what} applies to the deep detectors (lstm, gru, transformer, multimodal)"
        )
    return detector


Factory = Callable[[DetectorSpec], Detector]
_REGISTRY: dict[tuple[str, str], Factory] = {}


def register(framework: str, model: str) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        _REGISTRY[(framework, model)] = factory
        return factory

    return add


def framework_of(model: str, framework: str) -> str:
    """Baselines are framework-neutral NumPy code whatever ``framework`` says."""
    return "numpy" if model in BASELINES else framework


def create(model: str, framework: str, spec: DetectorSpec) -> Detector:
    framework = framework_of(model, framework)
    if framework not in ADAPTERS:
        raise ConfigError(
            f"framework={framework!r} has no detectors yet; known: {sorted(ADAPTERS)}"
        )
    importlib.import_module(ADAPTERS[framework])
    factory = _REGISTRY.get((framework, model))
    if factory is None:
        known = sorted(m for f, m in _REGISTRY if f == framework)
        raise ConfigError(
            f"model={model!r} is not implemented for framework={framework!r}; available: {known}"
        )
    return factory(spec)


def check_device(model: str, framework: str, device: str) -> None:
    """Raise ConfigError when ``framework.device`` names an accelerator the framework cannot
    see: asked before the data is read, so a missing GPU is said in seconds, not after the
    data stage. A baseline, or a device the framework chooses itself, imports nothing."""
    framework = framework_of(model, framework)
    if device != "cuda" or framework not in SPEED_PROBES:
        return
    importlib.import_module(ADAPTERS[framework]).pick_device(device)


def speed_probe(
    detector: Detector, data: SequenceArrays, framework: str, implementation: str = "detector"
) -> SpeedProbe:
    """What the timing protocol times on ``data``: a baseline's score call; for a deep detector,
    its framework's probe of the detector or (``implementation="reference"``) of a plain
    reference model of the same sizes."""
    if framework == "numpy":
        return ScoreProbe(detector, data)
    module = importlib.import_module(SPEED_PROBES[framework])
    probe = module.DetectorProbe if implementation == "detector" else module.ReferenceProbe
    return probe(detector, data)
