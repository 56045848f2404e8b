"""From raw events to sessions: sessionisation, length limits and entity splits.

All functions return new tables (inputs are never mutated) sorted by session, then time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.schema import EventTable, SchemaError, session_offsets

SPLITS: tuple[str, ...] = ("train", "val", "test")


def sessionize(
    events: EventTable, *, by: str = "session", gap_seconds: float = 1800.0
) -> EventTable:
    """Assign sessions by the dataset's own id (``by="session"``) or by inactivity gap.

    With ``by="gap"`` a user's events start a new session whenever more than ``gap_seconds`` pass
    between consecutive events (30 minutes by default, the usual web-analytics rule); session ids
    are renumbered 0..n-1 in (user, time) order.
    """
    if by == "session":
        return events.sorted()
    if by != "gap":
        raise SchemaError(f"sessionize by={by!r} is unknown; use 'session' or 'gap'")
    if gap_seconds <= 0:
        raise SchemaError(f"gap_seconds={gap_seconds} must be positive")
    order = np.lexsort((events.timestamp, events.user_id))
    ordered = events.take(order)
    new_user = np.diff(ordered.user_id, prepend=ordered.user_id[:1] - 1) != 0
    long_gap = np.diff(ordered.timestamp, prepend=-np.inf) > gap_seconds
    session = np.cumsum(new_user | long_gap) - 1
    return ordered.with_columns(session_id=session.astype(np.int64))


@dataclass(frozen=True)
class LengthReport:
    """What :func:`limit_lengths` did, for the run record."""

    sessions_in: int
    sessions_dropped_short: int
    sessions_truncated: int
    events_dropped: int


def limit_lengths(
    events: EventTable, *, min_length: int, max_length: int, keep: str = "last"
) -> tuple[EventTable, LengthReport]:
    """Drop sessions shorter than ``min_length``; cut longer than ``max_length`` events.

    Truncation keeps the ``max_length`` most recent events (``keep="last"``, the convention of
    session-based recommendation, where the end of a session is what a live detector sees) or the
    first ones (``keep="first"``). ``events`` must be sorted by session, then time.
    """
    if not 1 <= min_length <= max_length:
        raise SchemaError(f"need 1 <= min_length ({min_length}) <= max_length ({max_length})")
    if keep not in ("last", "first"):
        raise SchemaError(f"keep={keep!r} is unknown; use 'last' or 'first'")
    offsets = session_offsets(events.session_id)
    lengths = np.diff(offsets)
    session_of = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(events)) - offsets[session_of]
    if keep == "last":
        position = lengths[session_of] - 1 - position  # count from the session's end
    keep_row = (lengths[session_of] >= min_length) & (position < max_length)
    if len(events) and not keep_row.any():
        raise SchemaError(
            f"no session has at least {min_length} events (longest: {lengths.max()}); "
            f"lower dataset.sequence.min_length"
        )
    report = LengthReport(
        sessions_in=len(lengths),
        sessions_dropped_short=int(np.sum(lengths < min_length)),
        sessions_truncated=int(np.sum((lengths >= min_length) & (lengths > max_length))),
        events_dropped=int(np.sum(~keep_row)),
    )
    return events.take(keep_row), report


def split_entities(
    events: EventTable,
    *,
    by: str = "user",
    method: str = "random",
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    cuts: tuple[float, float] | None = None,
) -> dict[str, EventTable]:
    """Split into train/val/test so that no user (or session) appears in two splits.

    ``method="random"`` shuffles entities with ``seed``; ``method="chronological"`` orders them by
    their first event, so validation and test come after training in time. ``cuts``: for a part
    of a larger table, the chronological split's two boundary times found on the whole
    (:func:`chronological_cuts`): an entity whose first event is before the first goes to
    training, before the second to validation, else to test.
    """
    if by not in ("user", "session"):
        raise SchemaError(f"split by={by!r} is unknown; use 'user' or 'session'")
    if method not in ("random", "chronological"):
        raise SchemaError(f"split method={method!r} is unknown; use 'random' or 'chronological'")
    frac = np.asarray(fractions, dtype=np.float64)
    if len(frac) != 3 or np.any(frac <= 0) or not np.isclose(frac.sum(), 1.0):
        raise SchemaError(
            f"split fractions {list(fractions)} must be 3 positive numbers summing to 1"
        )
    key = events.user_id if by == "user" else events.session_id
    entities, inverse = np.unique(key, return_inverse=True)
    if len(entities) < 3:
        raise SchemaError(f"need at least 3 {by}s to split, found {len(entities)}")
    if method == "chronological" and cuts is not None:
        first_seen = first_event_times(key, events.timestamp)
        split_of_entity = np.searchsorted(np.asarray(cuts), first_seen, side="right")
        split_of_row = split_of_entity[inverse]
        return {name: events.take(split_of_row == i) for i, name in enumerate(SPLITS)}
    if method == "random":
        rank = np.random.default_rng(seed).permutation(len(entities))
    else:
        first_seen = first_event_times(key, events.timestamp)
        rank = np.empty(len(entities), dtype=np.int64)
        rank[np.lexsort((entities, first_seen))] = np.arange(len(entities))
    bounds = _bounds(frac, len(entities))
    split_of_entity = np.searchsorted(bounds, rank, side="right")
    split_of_row = split_of_entity[inverse]
    return {name: events.take(split_of_row == i) for i, name in enumerate(SPLITS)}


def _bounds(fractions: np.ndarray, n: int) -> np.ndarray:
    """Ranks where validation and test start (every split gets an entity)."""
    bounds = np.round(np.cumsum(fractions)[:-1] * n).astype(np.int64)
    return np.clip(bounds, [1, 2], n - 1)


def first_event_times(key: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Each entity's first event time, entities in sorted order of ``key``."""
    entities, inverse = np.unique(key, return_inverse=True)
    first_seen = np.full(len(entities), np.inf)
    np.minimum.at(first_seen, inverse, timestamp)
    return first_seen


def chronological_cuts(
    first_seen: np.ndarray, fractions: tuple[float, float, float]
) -> tuple[float, float]:
    """The boundary times of a chronological split of entities whose first events are
    ``first_seen`` (all parts of a table together): the first event of the first validation
    entity and of the first test entity. Entities tied with a boundary go to the later split,
    so every validation and test entity starts no earlier than every training entity."""
    if len(first_seen) < 3:
        raise SchemaError(f"need at least 3 entities to split, found {len(first_seen)}")
    ordered = np.sort(first_seen)
    b1, b2 = _bounds(np.asarray(fractions, dtype=np.float64), len(ordered))
    return float(ordered[b1]), float(ordered[b2])
