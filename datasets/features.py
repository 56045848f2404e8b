"""Sequences as padded arrays: vocabularies fitted on training data, bucketed time and price.

Index conventions shared by every model: 0 is padding, 1 is the unknown/rare bucket, known
values start at 2. Time gaps and prices use fixed log-spaced bucket edges, so they need no
fitting and cannot leak anything from validation or test data.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Any

import numpy as np

from datasets.schema import (
    AGE_BANDS,
    DEVICES,
    EVENT_TYPES,
    GENDERS,
    MISSING_ID,
    EventTable,
    ItemAttributes,
    UserProfiles,
    ragged_arange,
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
    """(N, F) profile codes per sequence (age band, region, device, tenure bucket, and gender
    when the profiles have it), each shifted
    by one so 0 means "no profile" (or this field unknown); and each field's cardinality. Fixed
    codes: nothing fitted."""
    rows = profiles.lookup(user_ids)
    r = np.maximum(rows, 0)
    fields = np.stack(
        [
            profiles.age_band[r].astype(np.int32) + 1,
            profiles.region[r].astype(np.int32) + 1,
            profiles.device[r].astype(np.int32) + 1,
            np.where(  # an unknown tenure is code 0, like every unknown field
                np.isnan(profiles.tenure_days[r]),
                0,
                np.searchsorted(TENURE_EDGES_DAYS, profiles.tenure_days[r]) + 1,
            ).astype(np.int32),
        ],
        axis=1,
    )
    cards: tuple[int, ...] = (
        len(AGE_BANDS) + 1,
        int(profiles.region.max()) + 2,
        len(DEVICES) + 1,
        len(TENURE_EDGES_DAYS) + 2,
    )
    if profiles.gender is not None:
        fields = np.column_stack([fields, profiles.gender[r].astype(np.int32) + 1])
        cards = (*cards, len(GENDERS) + 1)
    return np.where(rows[:, None] >= 0, fields, 0).astype(np.int32), cards


# Per-event columns as stored (narrow types: a split costs about 22 bytes per event instead of
# the ~1.7 kB per sequence that padding every sequence to max_length took) and as the models get
# them (int32 indices, float32 values, bool flags), padded per batch.
EVENT_COLUMNS: dict[str, type] = {
    "event_type": np.int8,
    "item": np.int32,
    "category": np.int32,
    "gap_bucket": np.int8,
    "price_bucket": np.int8,
    "device": np.int16,  # up to N_DEVICES (130): wider than int8
    "log_gap": np.float32,  # log1p(seconds since previous event), 0 at the first
    "log_price": np.float32,  # log1p(price), 0 where missing
    "event_label": np.bool_,
    "brand": np.int32,  # item-attribute modality (absent without item attributes)
    "query": np.int32,  # a search's query: its row of MediaTables.query_tokens (0 = none)
    "image": np.int32,  # the item's row of MediaTables.item_image (0 = none), by raw item id
}

# Per-sequence columns of SequenceArrays, besides the per-event ones.
PER_SEQUENCE = ("label", "user_id", "session_id", "profile", "anomaly_class", "start_time")

QUERY_TOKENS = 8  # words of a query a model reads (Diginetica's queries rarely hold more)


@dataclass(frozen=True, eq=False)
class MediaTables:
    """What the text and image modalities add, stored once and looked up per event by
    :meth:`SequenceArrays.batch`: each query's words and each item's image features."""

    query_tokens: np.ndarray | None = None  # (Q + 1, T) int32: word id + 1, 0 pads; row 0 empty
    item_image: np.ndarray | None = None  # (items + 1, D) float32: the item table's; row 0 zeros

    @staticmethod
    def build(queries, items) -> MediaTables | None:
        """From a dataset's queries (``TokenLists``) and items (``ItemAttributes``); None when
        it has neither. Images stay in the item table's order, so an item the training split
        never showed (outside the item vocabulary) still has its image: features of the
        catalogue, no label in them."""
        tokens = query_token_table(queries) if queries is not None else None
        images = None
        if items is not None and items.image is not None:
            images = np.zeros((len(items.image) + 1, items.image.shape[1]), dtype=np.float32)
            images[1:] = items.image
        if tokens is None and images is None:
            return None
        return MediaTables(tokens, images)


def query_token_table(queries, max_tokens: int = QUERY_TOKENS) -> np.ndarray:
    """(Q + 1, max_tokens) int32: row q + 1 holds query q's first words, each id + 1."""
    lengths = np.minimum(queries.lengths, max_tokens)
    row = np.repeat(np.arange(len(lengths)), lengths)
    within = ragged_arange(lengths)
    table = np.zeros((len(lengths) + 1, max_tokens), dtype=np.int32)
    table[row + 1, within] = queries.tokens[queries.offsets[:-1][row] + within] + 1
    return table


def _model_dtype(dtype: np.dtype) -> type:
    if dtype == np.bool_:
        return np.bool_
    return np.float32 if np.issubdtype(dtype, np.floating) else np.int32


@dataclass(frozen=True, eq=False)
class SequenceArrays:
    """A split's sequences, stored ragged: per-event columns back to back (``events``), sequence
    ``i`` at rows ``offsets[i]:offsets[i + 1]``; per-sequence columns alongside. Every model
    consumes :meth:`batch` (rows right-padded to a width); the whole-split padded views
    (``item``, ``mask``, ...) are built on first use, for the baselines and the evaluation."""

    events: dict[str, np.ndarray]  # name -> (n_events,) column of EVENT_COLUMNS
    offsets: np.ndarray  # (N + 1,) int64
    width: int  # the padded width: the configured max_length
    label: np.ndarray  # (N,) bool
    user_id: np.ndarray  # (N,) int64, for joining the user-profile side table
    session_id: np.ndarray  # (N,) int64
    profile: np.ndarray | None = None  # (N, F) int32, user-profile modality (0 = none)
    anomaly_class: np.ndarray | None = None  # (N,) int32, 0 normal, 1 + anomaly type index
    media: MediaTables | None = None  # the dataset's query words and item images (shared)
    start_time: np.ndarray | None = None  # (N,) float64 seconds of each first event

    def __post_init__(self) -> None:
        n_events = int(self.offsets[-1])
        for name, column in self.events.items():
            if name not in EVENT_COLUMNS or len(column) != n_events:
                raise ValueError(f"event column {name!r}: unknown, or not {n_events} long")
        if len(self) and int(self.length.max()) > self.width:
            raise ValueError(f"a sequence has {int(self.length.max())} events > width {self.width}")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @cached_property
    def length(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int32)

    def _gather(self, index: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, position, flat event row) of the first ``width`` events of sequences ``index``."""
        counts = np.minimum(self.length[index], width).astype(np.int64)
        row = np.repeat(np.arange(len(index)), counts)
        first = np.cumsum(counts) - counts
        position = np.arange(int(counts.sum())) - first[row]
        return row, position, self.offsets[:-1][index][row] + position

    def padded(self, name: str, index: np.ndarray | None = None, width: int | None = None):
        """Column ``name`` (or ``mask``) of rows ``index`` as a right-padded (rows, width) array."""
        index = np.arange(len(self)) if index is None else np.asarray(index)
        width = self.width if width is None else width
        row, position, flat = self._gather(index, width)
        return self._pad(name, row, position, flat, (len(index), width))

    def _pad(self, name: str, row, position, flat, shape) -> np.ndarray:
        if name == "mask":
            out = np.zeros(shape, dtype=bool)
            out[row, position] = True
            return out
        column = self.events[name]
        out = np.zeros(shape, dtype=_model_dtype(column.dtype))
        out[row, position] = column[flat]
        return out

    def batch(
        self, index: np.ndarray, width: int | None = None, media: bool = False
    ) -> dict[str, np.ndarray]:
        """A model batch: rows ``index``, per-event inputs right-padded to ``width`` (default:
        the longest sequence among the rows; padding changes no score), with ``mask``,
        ``label``, ``profile`` and ``anomaly_class`` where present; with ``media``, each
        event's query words (``query_tokens``, (B, W, T)) and item image (``item_image``,
        (B, W, D)) where the data has them."""
        index = np.asarray(index)
        if width is None:
            width = max(1, int(self.length[index].max()))
        row, position, flat = self._gather(index, width)
        shape = (len(index), width)
        out = {name: self._pad(name, row, position, flat, shape) for name in self.events}
        out["mask"] = self._pad("mask", row, position, flat, shape)
        out["label"] = self.label[index]
        for name in ("profile", "anomaly_class"):
            value = getattr(self, name)
            if value is not None:
                out[name] = np.ascontiguousarray(value[index])
        if media and self.media is not None:
            if self.media.query_tokens is not None and "query" in out:
                out["query_tokens"] = self.media.query_tokens[out["query"]]
            if self.media.item_image is not None and "image" in out:
                out["item_image"] = self.media.item_image[out["image"]]
        return out

    def take(self, index: np.ndarray) -> SequenceArrays:
        """Rows ``index`` (a copy) as a split of their own."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        _, _, flat = self._gather(index, self.width)
        offsets = np.concatenate(([0], np.cumsum(self.length[index], dtype=np.int64)))
        per_sequence: dict[str, Any] = {
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
            for f in fields(self)
            if f.name in PER_SEQUENCE
        }
        events = {name: column[flat] for name, column in self.events.items()}
        return SequenceArrays(events, offsets, self.width, **per_sequence, media=self.media)

    def without_labels(self) -> SequenceArrays:
        """The same sequences with every label erased (sequence, event and class)."""
        events = {**self.events, "event_label": np.zeros(int(self.offsets[-1]), dtype=bool)}
        cls = None if self.anomaly_class is None else np.zeros_like(self.anomaly_class)
        return replace(self, events=events, label=np.zeros_like(self.label), anomaly_class=cls)

    def columns(self) -> dict[str, np.ndarray]:
        """Every stored column, flat, for a ``.npz`` file: the per-event columns, ``offsets``,
        ``width`` and the per-sequence columns (see :meth:`from_columns`)."""
        per_sequence = {
            name: getattr(self, name) for name in PER_SEQUENCE if getattr(self, name) is not None
        }
        media = {}
        for name in ("query_tokens", "item_image"):
            table = getattr(self.media, name, None)
            if table is not None:
                media[f"media.{name}"] = table
        return {
            **self.events,
            "offsets": self.offsets,
            "width": np.array(self.width),
            **per_sequence,
            **media,
        }

    @staticmethod
    def from_columns(columns) -> SequenceArrays:
        """The inverse of :meth:`columns` (a dict, or an opened ``.npz`` file)."""
        names = set(columns.keys() if hasattr(columns, "keys") else columns)
        return SequenceArrays(
            events={name: columns[name] for name in EVENT_COLUMNS if name in names},
            offsets=columns["offsets"],
            width=int(columns["width"]),
            label=columns["label"],
            user_id=columns["user_id"],
            session_id=columns["session_id"],
            profile=columns["profile"] if "profile" in names else None,
            anomaly_class=columns["anomaly_class"] if "anomaly_class" in names else None,
            media=_media_of(columns, names),
            start_time=columns["start_time"] if "start_time" in names else None,
        )

    @staticmethod
    def concat(parts: list[SequenceArrays]) -> SequenceArrays:
        """The sequences of ``parts`` one after another (same columns and width)."""
        if len(parts) == 1:
            return parts[0]
        ends = np.cumsum([int(p.offsets[-1]) for p in parts])[:-1]
        offsets = np.concatenate(
            [parts[0].offsets, *(p.offsets[1:] + e for p, e in zip(parts[1:], ends, strict=True))]
        )

        def joined(name: str):
            values = [getattr(p, name) for p in parts]
            return None if values[0] is None else np.concatenate(values)

        return SequenceArrays(
            events={n: np.concatenate([p.events[n] for p in parts]) for n in parts[0].events},
            offsets=offsets,
            width=parts[0].width,
            label=np.concatenate([p.label for p in parts]),
            user_id=np.concatenate([p.user_id for p in parts]),
            session_id=np.concatenate([p.session_id for p in parts]),
            profile=joined("profile"),
            anomaly_class=joined("anomaly_class"),
            media=parts[0].media,
            start_time=joined("start_time"),
        )

    def with_vocabularies(self, vocabs: Vocabularies, items: Any = None) -> SequenceArrays:
        """Raw item, category and brand ids (as :func:`encode_sequences` leaves them without
        vocabularies) as vocabulary indices; with the dataset's ``items`` (``ItemAttributes``)
        holding images, each event's row of the image table (``image``), found by raw id."""
        encoded = {"item": vocabs.item.encode(self.events["item"])}
        if items is not None and items.image is not None:
            encoded["image"] = items.lookup(self.events["item"]) + 1  # -1 (none) becomes 0
        encoded["category"] = vocabs.category.encode(self.events["category"])
        if "brand" in self.events and vocabs.brand is not None:
            encoded["brand"] = vocabs.brand.encode(self.events["brand"])
        events = {**self.events, **{n: v.astype(EVENT_COLUMNS[n]) for n, v in encoded.items()}}
        return replace(self, events=events)

    @staticmethod
    def from_padded(
        padded: dict[str, np.ndarray], length: np.ndarray, **per_sequence: Any
    ) -> SequenceArrays:
        """From right-padded (N, T) columns and each row's length (tests, synthetic sources)."""
        width = next(iter(padded.values())).shape[1]
        mask = np.arange(width)[None, :] < np.asarray(length)[:, None]
        events: dict[str, np.ndarray] = {
            name: np.ascontiguousarray(value[mask]).astype(EVENT_COLUMNS[name])
            for name, value in padded.items()
        }
        offsets = np.concatenate(([0], np.cumsum(length, dtype=np.int64)))
        return SequenceArrays(events, offsets, width, **per_sequence)

    # Whole-split padded views (width columns), built once on first use.
    @cached_property
    def mask(self) -> np.ndarray:
        return self.padded("mask")

    @cached_property
    def event_type(self) -> np.ndarray:
        return self.padded("event_type")

    @cached_property
    def item(self) -> np.ndarray:
        return self.padded("item")

    @cached_property
    def category(self) -> np.ndarray:
        return self.padded("category")

    @cached_property
    def gap_bucket(self) -> np.ndarray:
        return self.padded("gap_bucket")

    @cached_property
    def price_bucket(self) -> np.ndarray:
        return self.padded("price_bucket")

    @cached_property
    def device(self) -> np.ndarray:
        return self.padded("device")

    @cached_property
    def log_gap(self) -> np.ndarray:
        return self.padded("log_gap")

    @cached_property
    def log_price(self) -> np.ndarray:
        return self.padded("log_price")

    @cached_property
    def event_label(self) -> np.ndarray:
        return self.padded("event_label")

    @cached_property
    def brand(self) -> np.ndarray | None:
        return self.padded("brand") if "brand" in self.events else None


def _media_of(columns, names: set[str]) -> MediaTables | None:
    tables = {
        n: columns[f"media.{n}"] for n in ("query_tokens", "item_image") if f"media.{n}" in names
    }
    return MediaTables(**tables) if tables else None


def encode_sequences(
    events: EventTable,
    vocabs: Vocabularies | None,
    *,
    max_length: int,
    event_label: np.ndarray | None = None,
    label: np.ndarray | None = None,
    brand_ids: np.ndarray | None = None,
    profile: np.ndarray | None = None,
) -> SequenceArrays:
    """Encode each session (sorted table; sessions at most ``max_length`` long) as a sequence.
    Without ``vocabs``, item, category and brand stay raw int64 ids, for
    :meth:`SequenceArrays.with_vocabularies` once the training split is known."""
    offsets = session_offsets(events.session_id)
    lengths = np.diff(offsets)
    if len(lengths) and lengths.max() > max_length:
        raise ValueError(
            f"a session has {lengths.max()} events > max_length {max_length}; "
            "apply limit_lengths first"
        )
    n = len(lengths)
    is_first = np.zeros(len(events), dtype=bool)
    is_first[offsets[:-1]] = True
    gaps = np.where(is_first, 0.0, np.diff(events.timestamp, prepend=events.timestamp[:1]))
    columns = {
        "event_type": events.event_type + FIRST_KNOWN,
        "item": events.item_id if vocabs is None else vocabs.item.encode(events.item_id),
        "category": (
            events.category_id if vocabs is None else vocabs.category.encode(events.category_id)
        ),
        "gap_bucket": gap_buckets(gaps, is_first),
        "price_bucket": price_buckets(events.price),
        "device": device_codes(events.device, len(events)),
        "log_gap": np.log1p(np.maximum(gaps, 0.0)),
        "log_price": np.log1p(np.nan_to_num(np.maximum(events.price, 0.0))),
        "event_label": np.zeros(len(events), dtype=bool) if event_label is None else event_label,
    }
    if events.query is not None:
        columns["query"] = events.query + 1  # MISSING_ID (-1) becomes 0: no query
    raw = ("item", "category", "brand") if vocabs is None else ()
    if brand_ids is not None and vocabs is None:
        columns["brand"] = brand_ids
    elif brand_ids is not None and vocabs is not None and vocabs.brand is not None:
        columns["brand"] = vocabs.brand.encode(brand_ids)
    return SequenceArrays(
        events={
            name: column if name in raw else column.astype(EVENT_COLUMNS[name])
            for name, column in columns.items()
        },
        offsets=offsets,
        width=max_length,
        label=np.zeros(n, dtype=bool) if label is None else np.asarray(label, dtype=bool),
        user_id=events.user_id[offsets[:-1]],
        session_id=events.session_id[offsets[:-1]],
        profile=profile,
        start_time=events.timestamp[offsets[:-1]].astype(np.float64),
    )
