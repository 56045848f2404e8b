"""Sequences as padded arrays: vocabularies fitted on training data, bucketed time and price.

Index conventions shared by every model: 0 is padding, 1 is the unknown/rare bucket, known
values start at 2. Time gaps and prices use fixed log-spaced bucket edges, so they need no
fitting and cannot leak anything from validation or test data.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from datasets.schema import (
    AGE_BANDS,
    DEVICES,
    EVENT_TYPES,
    MISSING_ID,
    EventTable,
    ItemAttributes,
    UserProfiles,
    session_offsets,
)

PAD = 0
UNKNOWN = 1
FIRST_KNOWN = 2

# Gap buckets: 2 = first event of a sequence (no gap); then edges in seconds, log-spaced.
GAP_EDGES_S = np.array(
    [0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400]
)
GAP_FIRST = 2
N_GAP_BUCKETS = GAP_FIRST + 1 + len(GAP_EDGES_S) + 1
# Price buckets: 1 = missing price; then log-spaced edges in the dataset's currency units.
PRICE_EDGES = np.geomspace(0.5, 50_000, 31)
N_PRICE_BUCKETS = FIRST_KNOWN + len(PRICE_EDGES) + 1
N_EVENT_TYPES = FIRST_KNOWN + len(EVENT_TYPES)
# Device/channel codes are int8 in the schema: index = code + 2, 1 = missing (fixed, not fitted).
N_DEVICES = FIRST_KNOWN + 128


@dataclass(frozen=True)
class Vocabulary:
    """Maps raw ids to dense indices; fitted on training data only.

    Values seen fewer than ``min_count`` times in training map to :data:`UNKNOWN`, as do values
    never seen there (new items in validation or test). ``MISSING_ID`` (an event without an item,
    such as a search) is an ordinary value with its own index.
    """

    values: np.ndarray  # known raw ids, sorted

    @staticmethod
    def fit(ids: np.ndarray, *, min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        values, counts = np.unique(ids, return_counts=True)
        keep = counts >= min_count
        values, counts = values[keep], counts[keep]
        if max_size is not None and len(values) > max_size:
            top = np.argsort(-counts, kind="stable")[:max_size]
            values = np.sort(values[top])
        return Vocabulary(values=values)

    def __len__(self) -> int:
        """Size of the index space, padding and unknown included."""
        return FIRST_KNOWN + len(self.values)

    def encode(self, ids: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.values, ids)
        pos_c = np.minimum(pos, max(len(self.values) - 1, 0))
        known = (
            (pos < len(self.values)) & (self.values[pos_c] == ids)
            if len(self.values)
            else (np.zeros(len(ids), dtype=bool))
        )
        return np.where(known, pos_c + FIRST_KNOWN, UNKNOWN).astype(np.int32)


def gap_buckets(gaps: np.ndarray, is_first: np.ndarray) -> np.ndarray:
    bucket = GAP_FIRST + 1 + np.searchsorted(GAP_EDGES_S, np.maximum(gaps, 0.0), side="right")
    return np.where(is_first, GAP_FIRST, bucket).astype(np.int32)


def price_buckets(prices: np.ndarray) -> np.ndarray:
    bucket = FIRST_KNOWN + np.searchsorted(PRICE_EDGES, np.nan_to_num(prices), side="right")
    return np.where(np.isfinite(prices), bucket, UNKNOWN).astype(np.int32)


def device_codes(device: np.ndarray | None, n: int) -> np.ndarray:
    if device is None:
        return np.full(n, UNKNOWN, dtype=np.int32)
    return np.where(device >= 0, device.astype(np.int32) + FIRST_KNOWN, UNKNOWN)


@dataclass(frozen=True)
class Vocabularies:
    item: Vocabulary
    category: Vocabulary
    brand: Vocabulary | None = None  # present when the dataset has item attributes

    @staticmethod
    def fit(
        train: EventTable,
        *,
        min_count: int = 1,
        max_items: int | None = None,
        train_brands: np.ndarray | None = None,
    ) -> Vocabularies:
        return Vocabularies(
            item=Vocabulary.fit(train.item_id, min_count=min_count, max_size=max_items),
            category=Vocabulary.fit(train.category_id, min_count=min_count),
            brand=None if train_brands is None else Vocabulary.fit(train_brands),
        )


def event_brands(items: ItemAttributes, item_ids: np.ndarray) -> np.ndarray:
    """Raw brand id of each event's item (MISSING_ID when the item or its brand is unknown)."""
    rows = items.lookup(item_ids)
    return np.where(rows >= 0, items.brand_id[np.maximum(rows, 0)], MISSING_ID)


TENURE_EDGES_DAYS = np.array([30, 90, 180, 365, 730, 1460])


def encode_profiles(
    profiles: UserProfiles, user_ids: np.ndarray
) -> tuple[np.ndarray, tuple[int, ...]]:
    """(N, 4) profile codes per sequence (age band, region, device, tenure bucket), each shifted
    by one so 0 means "no profile"; and each field's cardinality. Fixed codes: nothing fitted."""
    rows = profiles.lookup(user_ids)
    r = np.maximum(rows, 0)
    fields = np.stack(
        [
            profiles.age_band[r].astype(np.int32) + 1,
            profiles.region[r].astype(np.int32) + 1,
            profiles.device[r].astype(np.int32) + 1,
            np.searchsorted(TENURE_EDGES_DAYS, profiles.tenure_days[r]).astype(np.int32) + 1,
        ],
        axis=1,
    )
    cards = (
        len(AGE_BANDS) + 1,
        int(profiles.region.max()) + 2,
        len(DEVICES) + 1,
        len(TENURE_EDGES_DAYS) + 2,
    )
    return np.where(rows[:, None] >= 0, fields, 0).astype(np.int32), cards


@dataclass(frozen=True)
class SequenceArrays:
    """A split as right-padded (N, T) arrays; every model consumes exactly this."""

    event_type: np.ndarray  # (N, T) int32
    item: np.ndarray  # (N, T) int32
    category: np.ndarray  # (N, T) int32
    gap_bucket: np.ndarray  # (N, T) int32
    price_bucket: np.ndarray  # (N, T) int32
    device: np.ndarray  # (N, T) int32, device code + 2 (1 when the dataset has none)
    log_gap: np.ndarray  # (N, T) float32, log1p(seconds since previous event), 0 at the first
    log_price: np.ndarray  # (N, T) float32, log1p(price), 0 where missing
    mask: np.ndarray  # (N, T) bool, True on real events
    length: np.ndarray  # (N,) int32
    event_label: np.ndarray  # (N, T) bool
    label: np.ndarray  # (N,) bool
    user_id: np.ndarray  # (N,) int64, for joining the user-profile side table
    session_id: np.ndarray  # (N,) int64
    brand: np.ndarray | None = None  # (N, T) int32, item-attribute modality
    profile: np.ndarray | None = None  # (N, F) int32, user-profile modality (0 = none)
    anomaly_class: np.ndarray | None = None  # (N,) int32, 0 normal, 1 + anomaly type index

    def take(self, index: np.ndarray) -> SequenceArrays:
        """Rows ``index`` (a copy) as a split of their own."""
        columns: dict[str, Any] = {
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
            for f in fields(self)
        }
        return SequenceArrays(**columns)

    def __len__(self) -> int:
        return len(self.length)


def encode_sequences(
    events: EventTable,
    vocabs: Vocabularies,
    *,
    max_length: int,
    event_label: np.ndarray | None = None,
    label: np.ndarray | None = None,
    brand_ids: np.ndarray | None = None,
    profile: np.ndarray | None = None,
) -> SequenceArrays:
    """Pad each session (sorted table; sessions at most ``max_length`` long) into a row."""
    offsets = session_offsets(events.session_id)
    lengths = np.diff(offsets)
    if len(lengths) and lengths.max() > max_length:
        raise ValueError(
            f"a session has {lengths.max()} events > max_length {max_length}; "
            "apply limit_lengths first"
        )
    n = len(lengths)
    session_of = np.repeat(np.arange(n), lengths)
    position = np.arange(len(events)) - offsets[session_of]
    is_first = position == 0
    gaps = np.where(is_first, 0.0, np.diff(events.timestamp, prepend=events.timestamp[:1]))

    def pad(values: np.ndarray, dtype) -> np.ndarray:
        out = np.zeros((n, max_length), dtype=dtype)
        out[session_of, position] = values
        return out

    labels = np.zeros(len(events), dtype=bool) if event_label is None else event_label
    return SequenceArrays(
        event_type=pad(events.event_type.astype(np.int32) + FIRST_KNOWN, np.int32),
        item=pad(vocabs.item.encode(events.item_id), np.int32),
        category=pad(vocabs.category.encode(events.category_id), np.int32),
        gap_bucket=pad(gap_buckets(gaps, is_first), np.int32),
        price_bucket=pad(price_buckets(events.price), np.int32),
        device=pad(device_codes(events.device, len(events)), np.int32),
        log_gap=pad(np.log1p(np.maximum(gaps, 0.0)), np.float32),
        log_price=pad(np.log1p(np.nan_to_num(np.maximum(events.price, 0.0))), np.float32),
        mask=pad(np.ones(len(events), dtype=bool), bool),
        length=lengths.astype(np.int32),
        event_label=pad(labels, bool),
        label=np.zeros(n, dtype=bool) if label is None else np.asarray(label, dtype=bool),
        user_id=events.user_id[offsets[:-1]],
        session_id=events.session_id[offsets[:-1]],
        brand=(
            pad(vocabs.brand.encode(brand_ids), np.int32)
            if brand_ids is not None and vocabs.brand is not None
            else None
        ),
        profile=profile,
    )
