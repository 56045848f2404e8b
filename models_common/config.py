"""The configuration every detector implementation takes, in both frameworks."""

from __future__ import annotations

from dataclasses import dataclass

OBJECTIVES: tuple[str, ...] = ("classify", "next_event", "masked", "forecast")
# Objectives that predict event t+1 from events up to t need causal encoders.
CAUSAL_OBJECTIVES: tuple[str, ...] = ("next_event", "forecast")
# Forecast target per event: event-type one-hot (8), log1p(gap) / GAP_SCALE,
# log1p(price) / PRICE_SCALE, has-price. Fixed scales (nothing fitted, nothing leaks); the gap
# scale is the smaller so that timing errors weigh as much as a wrong event type.
FORECAST_DIM = 11
GAP_SCALE = 1.5
PRICE_SCALE = 5.0
N_TYPES = 8


@dataclass(frozen=True, kw_only=True)
class DetectorConfig:
    """Sizes of a detector. Vocabulary sizes include padding (0) and unknown (1)."""

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
    objective: str
    """One of OBJECTIVES: decides the heads and whether attention is causal."""
    embed_dim: int = 64
    """Width of the summed event embedding."""
    hidden_dim: int = 128
    """Recurrent state size, or model width for attention models."""
    num_layers: int = 2
    """Stacked recurrent or attention layers."""
    num_heads: int = 4
    """Attention heads (transformer, multimodal)."""
    ff_dim: int = 256
    """Feed-forward width of attention blocks."""
    dropout: float = 0.1
    """Dropout on embeddings and between layers (off in eval mode)."""
    profile_cardinalities: tuple[int, ...] = ()
    """Multimodal: vocabulary of each user-profile field (empty: no profile modality)."""
    n_brands: int = 0
    """Multimodal: brand vocabulary of the item-attribute modality (0: none)."""

    @property
    def causal(self) -> bool:
        return self.objective in CAUSAL_OBJECTIVES
