"""The configuration every detector implementation takes, in both frameworks, and the few
NumPy constants and tables both share."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import numpy as np

OBJECTIVES: tuple[str, ...] = ("classify", "classify_type", "next_event", "masked", "forecast")
# Supervised objectives: their heads read a pooled sequence summary (training accuracy exists).
CLASSIFY_OBJECTIVES: tuple[str, ...] = ("classify", "classify_type")
# Objectives that predict event t+1 from events up to t need causal encoders.
CAUSAL_OBJECTIVES: tuple[str, ...] = ("next_event", "forecast")
# Forecast target per event: event-type one-hot (8), log1p(gap) / GAP_SCALE,
# log1p(price) / PRICE_SCALE, has-price. Fixed scales (nothing fitted, nothing leaks); the gap
# scale is the smaller so that timing errors weigh as much as a wrong event type.
FORECAST_DIM = 11
GAP_SCALE = 1.5
PRICE_SCALE = 5.0
N_TYPES = 8


class Fusion(StrEnum):
    """How the multimodal detector joins its modalities."""

    early = "early"
    """Per event, before the encoder (the fifth article's E = X (+) U (+) P, then a
    Transformer): each modality projected to the model width and summed with weights a
    softmax gate computes from the event itself."""
    late = "late"
    """After the encoder: a profile-query attention over each modality's events, and a
    softmax gate over the modality summaries of the sequence."""


class Head(StrEnum):
    """What a sequence classifier's output layer reads."""

    pooled_max = "pooled_max"
    """The pooled summary beside the element-wise maximum of the events' states, so that an
    anomaly confined to a few events of a long sequence is not averaged (or forgotten) away."""
    pooled = "pooled"
    """The pooled summary alone: a recurrent model's state at the last event, an attention
    model's mean state (the articles' classifiers)."""


# The multimodal detector's modalities, in the order of its gates (both frameworks).
MODALITIES: tuple[str, ...] = (
    "behaviour",
    "item_attributes",
    "query_text",
    "item_image",
    "profile",
)


@dataclass(kw_only=True, unsafe_hash=True)
class ModelSizes:
    """Layer sizes of a detector: the schema of the ``model`` config group (which adds the
    detector's name), read as is by both frameworks. Mutable, as Hydra needs its schemas, yet
    hashed by value: JAX keys compiled programs on a model's static fields."""

    embed_dim: int = 64
    """Width of the summed event embedding."""
    hidden_dim: int = 128
    """Recurrent state size, or model width for attention models."""
    num_layers: int = 2
    """Stacked recurrent or attention layers."""
    share_layers: bool = False
    """Attention models: one block's weights applied num_layers times (ALBERT-style
    cross-layer sharing: the depth of num_layers at the parameters of one)."""
    num_heads: int = 4
    """Attention heads (transformer, multimodal)."""
    ff_dim: int = 256
    """Feed-forward width of attention blocks."""
    dropout: float = 0.1
    """Dropout on embeddings and between layers (off in eval mode)."""
    fusion: Fusion = Fusion.early
    """Multimodal: where the modalities meet (see Fusion)."""
    head: Head = Head.pooled_max
    """Sequence classifiers: what the output layer reads (see Head)."""
    event_head: bool = True
    """Binary classifier: a second output per event, trained on the injected events' labels
    beside the sequence label (its scores localise an anomaly); false: the sequence output
    alone."""
    head_dropout: float = 0.0
    """Sequence classifiers: dropout on the summary the output layer reads (training only)."""
    lag_window: int = 0
    """Recurrent models: each event's state from the last ``lag_window`` events alone (a
    fresh recurrence over that window, the earliest windows filled with zero inputs on the
    left); 0: from the whole history."""
    text_dim: int = 32
    """Multimodal: width of the query-word embeddings the text encoder averages (the
    fifth article: 100)."""


@dataclass(kw_only=True, unsafe_hash=True)
class Vocabulary:
    """What the data decides about a detector's inputs. Sizes include padding (0) and
    unknown (1)."""

    n_event_types: int
    """Event-type vocabulary (10: padding, unknown, eight types)."""
    n_items: int
    """Item vocabulary, fitted on training data."""
    n_categories: int
    """Category vocabulary, fitted on training data."""
    n_gap_buckets: int
    """Time-gap buckets (fixed log-spaced edges)."""
    n_price_buckets: int
    """Price buckets (fixed log-spaced edges)."""
    n_devices: int
    """Device/channel codes (fixed: padding, missing, 128 codes)."""
    max_length: int
    """Longest sequence (positions for attention models)."""
    profile_cardinalities: tuple[int, ...] = ()
    """Multimodal: vocabulary of each user-profile field (empty: no profile modality)."""
    n_brands: int = 0
    """Multimodal: brand vocabulary of the item-attribute modality (0: none)."""
    n_words: int = 0
    """Multimodal: query-word vocabulary (word id + 1; 0 pads); 0: no text modality."""
    image_dim: int = 0
    """Multimodal: width of the item image features; 0: no image modality."""
    n_anomaly_types: int = 0
    """classify_type: anomaly types the classifier tells apart (plus the class "normal")."""
    price_mean: float = 0.0
    """Multimodal: z-score of the log price input, (log_price - price_mean) / price_std,
    with the mean and deviation fitted on the training split (0 and 1: the raw value)."""
    price_std: float = 1.0


@dataclass(kw_only=True, unsafe_hash=True)
class DetectorConfig(ModelSizes, Vocabulary):
    """Everything a model's constructor takes: its sizes, the data's vocabularies and the
    objective, which decides the heads and whether attention is causal."""

    objective: str
    """One of OBJECTIVES."""

    @classmethod
    def of(cls, sizes: ModelSizes, vocabulary: Vocabulary, objective: str) -> DetectorConfig:
        return cls(
            **values(sizes, ModelSizes), **values(vocabulary, Vocabulary), objective=objective
        )

    @property
    def causal(self) -> bool:
        return self.objective in CAUSAL_OBJECTIVES

    @property
    def n_classes(self) -> int:
        """classify_type: "normal" (class 0) and each anomaly type (1 + its type index)."""
        return 1 + self.n_anomaly_types


def values(obj: object, schema: type) -> dict[str, Any]:
    """The fields of dataclass ``schema`` read from ``obj`` (an instance of it or a subclass)."""
    return {f.name: getattr(obj, f.name) for f in fields(schema)}


DROP_BITS = 16
"""Random bits per dropout decision in both frameworks' own dropout masks."""


def kept_decisions(rate: float) -> int:
    """Of the 2^16 values a 16-bit dropout decision takes, how many keep the element: the
    rate rounded to a multiple of 2^-16, alike in both frameworks. The share kept is this over
    2^16 (0.1 -> 0.899994); rescaling by that share keeps the expectation exact."""
    return 2**DROP_BITS - round(rate * 2**DROP_BITS)


def positional_table(max_length: int, width: int) -> np.ndarray:
    """Fixed sinusoidal positions (T, width) float32: nothing to learn, one definition for both
    frameworks."""
    position = np.arange(max_length, dtype=np.float32)[:, None]
    freq = np.exp(np.arange(0, width, 2, dtype=np.float32) * np.float32(-math.log(1e4) / width))
    table = np.zeros((max_length, width), dtype=np.float32)
    table[:, 0::2] = np.sin(position * freq)
    table[:, 1::2] = np.cos(position * freq[: width // 2])
    return table
