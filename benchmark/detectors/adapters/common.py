"""What both framework adapters share, in NumPy: the detector config a spec implies, batch
slicing, the learning-rate schedule and the framework-neutral checkpoint file.

The checkpoint (``checkpoint.safetensors``) holds float32 arrays under PyTorch ``state_dict``
names and layouts whichever framework trained the model, plus metadata (framework, model,
objective); ``models_jax.convert`` maps those names onto the Flax twins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from benchmark.detectors.registry import DetectorSpec, Scores
from benchmark.errors import UserError
from benchmark.records.atomic import atomic_path
from benchmark.records.store import CHECKPOINT_FILE
from datasets.features import SequenceArrays
from models_common.config import CLASSIFY_OBJECTIVES, DetectorConfig

CHECKPOINT = CHECKPOINT_FILE
ID_FIELDS = (
    "event_type",
    "item",
    "category",
    "gap_bucket",
    "price_bucket",
    "device",
    "brand",
    "query",
    "query_tokens",
    "image",
    "profile",
    "anomaly_class",
)


# Model outputs that show how a detector reached a score (the multimodal detector's
# attention over events and modality gates), as ``inspect`` returns them.
INSPECTED = ("attention_weights", "gates", "event_gates")


# Objectives whose score a recurrent detector carries event by event (the masked objective
# hides events in passes, each pass with a carry of its own: it rescans a window instead).
STEPPED_OBJECTIVES = ("classify", "classify_type", "next_event", "forecast")
STEPPED_MODELS = ("lstm", "gru")


def steps_online(spec: DetectorSpec) -> bool:
    """Whether the detector scores online from a carried state (else: a window rescan; a lag
    window restarts the recurrence at every event, so it carries no state)."""
    return (
        spec.model.name.value in STEPPED_MODELS
        and spec.objective.name.value in STEPPED_OBJECTIVES
        and spec.model.lag_window == 0
    )


def event_rows(source: SequenceArrays, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Flat events ``rows`` of ``source`` as a batch of one-event sequences, (k, 1) each."""
    out = {name: column[rows][:, None] for name, column in source.events.items()}
    out["mask"] = np.ones((len(rows), 1), dtype=bool)
    return out


class CheckpointError(UserError):
    """A checkpoint file that is missing, unreadable or for another model."""


def detector_config(spec: DetectorSpec) -> DetectorConfig:
    """The model's sizes and the data's vocabularies; the profile, item attributes, query
    text, item images and price z-score reach the multimodal detector only (the others read
    the behaviour stream), and only those of ``model.modalities``."""
    vocabulary = spec.data
    chosen = spec.model.modalities if spec.model.name.value == "multimodal" else ["behaviour"]
    dropped: dict[str, dict[str, Any]] = {
        "profile": {"profile_cardinalities": ()},
        "item_attributes": {"n_brands": 0},
        "query_text": {"n_words": 0},
        "item_image": {"image_dim": 0},
    }
    for modality, sizes in dropped.items():
        if modality not in chosen:
            vocabulary = replace(vocabulary, **sizes)
    if not (spec.model.name.value == "multimodal" and spec.model.standardize_inputs):
        vocabulary = replace(vocabulary, price_mean=0.0, price_std=1.0)
    return DetectorConfig.of(spec.model, vocabulary, spec.objective.name.value)


def reads_media(cfg: DetectorConfig) -> bool:
    """Whether the model reads query words or item images (batches then carry them)."""
    return cfg.n_words > 0 or cfg.image_dim > 0


def epoch_entry(
    epoch: int, train_loss: float, val_loss: float, hits, n_train: int, cfg: DetectorConfig
) -> dict:
    """One epoch of the training history. Classifiers add ``train_accuracy``: the share of
    training sequences classified right while the epoch trained on them (as Keras logs it;
    ``hits`` is the framework's on-device count, read once per epoch)."""
    entry = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss}
    if cfg.objective in CLASSIFY_OBJECTIVES:
        entry["train_accuracy"] = int(hits) / max(1, n_train)
    return entry


def numpy_batch(
    arrays: SequenceArrays, index: np.ndarray, width: int | None = None, media: bool = False
) -> dict[str, np.ndarray]:
    """Rows ``index`` as a model batch, per-event fields cut (or zero-padded) to ``width``
    (default: the longest sequence among the rows; padding changes no score); with
    ``media``, each event's query words and item image."""
    return arrays.batch(index, width, media)


def length_buckets(max_length: int) -> tuple[int, ...]:
    """Padded widths a batch may take: powers of two from 8, and max_length itself (so a
    compiled step sees a handful of shapes, not one per longest sequence)."""
    widths = {max_length}
    width = 8
    while width < max_length:
        widths.add(width)
        width *= 2
    return tuple(sorted(widths))


def bucket_width(lengths: np.ndarray, buckets: tuple[int, ...]) -> int:
    longest = int(lengths.max())
    return next(w for w in buckets if w >= longest)


def warmup_steps(train, total_steps: int) -> int:
    """Optimiser steps of linear warm-up: ``train.warmup`` of the run's ``total_steps``."""
    return round(train.warmup * total_steps)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based): linear
    warm-up, then cosine decay to 0 at ``total`` (or constant)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def save_checkpoint(
    run_dir: Path | None, weights: dict[str, np.ndarray], metadata: dict[str, str]
) -> None:
    if run_dir is None:
        return
    with atomic_path(Path(run_dir) / CHECKPOINT) as tmp:
        save_file(weights, str(tmp), metadata=metadata)


def load_checkpoint(
    path: Path, model: str, objective: str
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Canonical weights and metadata of ``path``, checked to be for ``model`` trained with
    ``objective``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist: give the path of a run's {CHECKPOINT}"
        )
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
        weights = load_file(str(path))
    except Exception as error:  # safetensors raises several types for a damaged file
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file ({error})"
        ) from error
    found = (metadata.get("model"), metadata.get("objective"))
    if found != (model, objective):
        raise CheckpointError(
            f"checkpoint {path} holds model={found[0]} objective={found[1]}, but this run is "
            f"model={model} objective={objective}: pick the matching model and objective"
        )
    return weights, metadata


def reference_sizes(cfg: DetectorConfig, model: str) -> tuple[str, dict]:
    """The plain reference timed beside ``model`` (``models_*/reference.py``) and its
    constructor arguments at the detector's sizes: the same in both frameworks."""
    if model in ("lstm", "gru"):
        sizes = dict(embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_dim, layers=cfg.num_layers)
        return "PlainRNN", dict(cell=model, n_items=cfg.n_items, **sizes)
    return "PlainTransformer", dict(
        n_items=cfg.n_items,
        width=cfg.hidden_dim,
        heads=cfg.num_heads,
        ff_dim=cfg.ff_dim,
        layers=cfg.num_layers,
        max_length=cfg.max_length,
    )


# One batch's scores in NumPy: row index, sequence scores, event scores (None when the objective
# has none) and alternative sequence scores by name.
BatchScores = tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, np.ndarray]]


def gather_scores(n: int, event_shape: tuple[int, ...], batches: Iterable[BatchScores]) -> Scores:
    """A whole split's scores from its batches' (each batch's event scores may be narrower than
    the split's padded length: the rest stays 0, as on padding)."""
    sequence = np.zeros(n)
    event: np.ndarray | None = np.zeros(event_shape)
    alternatives: dict[str, np.ndarray] = {}
    for index, s, e, extra in batches:
        sequence[index] = s
        if e is None:
            event = None
        elif event is not None:
            width = min(e.shape[1], event.shape[1])
            event[index, :width] = e[:, :width]
        for name, values in extra.items():
            alternatives.setdefault(name, np.zeros(n))[index] = values
    return Scores(sequence, event, alternatives)
