"""Batched editing: every victim of one anomaly type edited at once.

A :class:`Batch` holds the victims' sessions back to back in the gap representation of
:mod:`benchmark.anomalies.core` (each event carries the seconds since its predecessor), with
per-victim offsets. The operations here work on all victims with a fixed number of NumPy
calls whatever their number, so injecting into a 100M-event table costs array passes, not a
Python call per victim. A single session is a batch of one: the per-session API that plugin
types use (``core.Context``) calls the same operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.anomalies.profile import NormalProfile
from datasets.schema import EventTable, ragged_arange

# Victims per chunk when rebuilding timestamps (a padded (victims, length) block each).
_CUMSUM_CELLS = 1 << 22


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(lengths, dtype=np.int64)))


def owner_of(lengths: np.ndarray) -> np.ndarray:
    """The group of each element of groups of ``lengths`` laid back to back."""
    return np.repeat(np.arange(len(lengths)), lengths)


def first_per_group(group: np.ndarray, key: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups,) index of the element with the smallest ``key`` in each group (the earliest
    among ties); -1 for a group without elements."""
    order = np.lexsort((key, group))
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    out = np.full(n_groups, -1, dtype=np.int64)
    out[group[order][first]] = order[first]
    return out


@dataclass
class NewEvents:
    """Events to insert: for each victim a block of ``lengths[v]`` events, back to back."""

    cols: dict[str, np.ndarray]
    gap: np.ndarray
    lengths: np.ndarray

    def head(self, keep: np.ndarray) -> NewEvents:
        """Each victim's first ``keep[v]`` events."""
        rows = np.flatnonzero(ragged_arange(self.lengths) < np.repeat(keep, self.lengths))
        cols = {k: v[rows] for k, v in self.cols.items()}
        return NewEvents(cols, self.gap[rows], np.minimum(keep, self.lengths))


@dataclass
class Batch:
    """Victims' sessions back to back. ``cols`` holds every EventTable column except timestamp."""

    cols: dict[str, np.ndarray]
    gap: np.ndarray  # seconds since the previous event of the session; 0 for a first event
    origin: np.ndarray  # row of the source table each event came from, -1 if new
    offsets: np.ndarray  # (V + 1,)
    t0: np.ndarray  # (V,) time of each victim's first event

    def __len__(self) -> int:
        return len(self.t0)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def owner(self) -> np.ndarray:
        return owner_of(self.lengths)

    def position(self) -> np.ndarray:
        return ragged_arange(self.lengths)

    def gather(self, rows: np.ndarray, lengths: np.ndarray) -> Batch:
        """Rows ``rows`` (gaps travel with their events), ``lengths[v]`` of them per victim;
        a session's first event gets gap 0."""
        gap = self.gap[rows]
        offsets = offsets_of(lengths)
        gap[offsets[:-1][lengths > 0]] = 0.0
        cols = {k: v[rows] for k, v in self.cols.items()}
        return Batch(cols, gap, self.origin[rows], offsets, self.t0)

    def sessions(self, order: np.ndarray) -> Batch:
        """The victims in ``order`` (whole sessions)."""
        lengths = self.lengths[order]
        rows = np.repeat(self.offsets[:-1][order], lengths) + ragged_arange(lengths)
        return Batch(
            {k: v[rows] for k, v in self.cols.items()},
            self.gap[rows],
            self.origin[rows],
            offsets_of(lengths),
            self.t0[order],
        )

    def with_cols(self, **cols: np.ndarray) -> Batch:
        return Batch({**self.cols, **cols}, self.gap, self.origin, self.offsets, self.t0)

    def copy(self) -> Batch:
        return Batch(
            {k: v.copy() for k, v in self.cols.items()},
            self.gap.copy(),
            self.origin.copy(),
            self.offsets,
            self.t0,
        )

    def timestamps(self) -> np.ndarray:
        """``t0 + cumsum(gap)`` per session, summed in the same order as a per-session cumsum
        (padded blocks of victims, not one running sum, which would add rounding across
        sessions)."""
        out = np.empty(len(self.gap))
        lengths = self.lengths
        width = int(lengths.max()) if len(lengths) else 0
        step = max(1, _CUMSUM_CELLS // max(width, 1))
        for lo in range(0, len(self), step):
            hi = min(len(self), lo + step)
            a, b = int(self.offsets[lo]), int(self.offsets[hi])
            owner = owner_of(lengths[lo:hi])
            pos = ragged_arange(lengths[lo:hi])
            block = np.zeros((hi - lo, width))
            block[owner, pos] = self.gap[a:b]
            out[a:b] = self.t0[lo:hi][owner] + np.cumsum(block, axis=1)[owner, pos]
        return out

    @staticmethod
    def read(events: EventTable, offsets: np.ndarray, victims: np.ndarray) -> Batch:
        """The sessions ``victims`` (sorted indices) of a table sorted by session, then time."""
        lengths = offsets[victims + 1] - offsets[victims]
        rows = np.repeat(offsets[victims], lengths) + ragged_arange(lengths)
        ts = events.timestamp[rows]
        batch_offsets = offsets_of(lengths)
        gap = np.diff(ts, prepend=ts[:1])
        gap[batch_offsets[:-1][lengths > 0]] = 0.0
        cols = {k: v[rows] for k, v in events.columns().items() if k != "timestamp"}
        return Batch(cols, gap, rows.astype(np.int64), batch_offsets, ts[batch_offsets[:-1]])

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        return Batch(
            {k: np.concatenate([b.cols[k] for b in batches]) for k in batches[0].cols},
            np.concatenate([b.gap for b in batches]),
            np.concatenate([b.origin for b in batches]),
            offsets_of(np.concatenate([b.lengths for b in batches])),
            np.concatenate([b.t0 for b in batches]),
        )


def splice(batch: Batch, at: np.ndarray, n_remove: np.ndarray, new: NewEvents) -> Batch:
    """Replace each victim's events ``at .. at + n_remove - 1`` (1 <= at <= n) by its block of
    new events (with their own gaps); the events after the block keep theirs."""
    n_new = new.lengths
    lengths = batch.lengths - n_remove + n_new
    owner, pos = owner_of(lengths), ragged_arange(lengths)
    start, count = at[owner], n_new[owner]
    in_block = (pos >= start) & (pos < start + count)
    source = batch.offsets[:-1][owner] + np.where(pos < start, pos, pos - count + n_remove[owner])
    source, block = (
        source[~in_block],
        offsets_of(n_new)[:-1][owner][in_block] + (pos - start)[in_block],
    )

    def merged(old: np.ndarray, added: np.ndarray) -> np.ndarray:
        out = np.empty(len(pos), dtype=old.dtype)
        out[~in_block] = old[source]
        out[in_block] = added[block]
        return out

    cols = {k: merged(v, np.asarray(new.cols[k], dtype=v.dtype)) for k, v in batch.cols.items()}
    origin = merged(batch.origin, np.full(len(new.gap), -1, dtype=np.int64))
    return Batch(cols, merged(batch.gap, new.gap), origin, offsets_of(lengths), batch.t0)


@dataclass
class BatchContext:
    """What a batched injector may use besides its victims (``Batch``): per-victim severities
    and the draws every type shares."""

    rng: np.random.Generator
    severity: np.ndarray  # (V,)
    position: str
    max_length: int
    profile: NormalProfile
    params: Any  # the injector's own parameter dataclass
    donors: Any = None  # ``inject.Donors``: untouched sessions of other users (same split)
    record: dict[str, np.ndarray] = field(default_factory=dict)  # per victim, for the metadata

    def lerp(self, low: Any, high: Any) -> np.ndarray:
        """Per victim: ``low`` at severity 0, ``high`` at 1."""
        return low + (np.asarray(high) - low) * self.severity

    def loglerp(self, low: Any, high: Any, owner: np.ndarray | None = None) -> np.ndarray:
        """Geometric interpolation, per victim (or per event, with each event's ``owner``):
        severity 0 gives ``low`` exactly, 1 gives ``high``."""
        sev = self.severity if owner is None else self.severity[owner]
        low, high = np.broadcast_arrays(np.asarray(low, dtype=float), np.asarray(high, dtype=float))
        moved = np.exp(np.log(low) + (np.log(high) - np.log(low)) * sev)
        # exp(log(x)) can miss x by an ulp: a change, to the labels
        return np.where(sev == 0.0, low, moved)

    def rounded(self, low: float, high: float) -> np.ndarray:
        """``lerp`` rounded to whole numbers (half to even, as Python's ``round``)."""
        return np.round(self.lerp(low, high)).astype(np.int64)

    def insertion_point(self, n: np.ndarray, n_new: np.ndarray) -> np.ndarray:
        """Where to insert ``n_new`` events into ``n`` so each block fits within max_length."""
        latest = np.maximum(1, np.minimum(n, self.max_length - n_new))
        if self.position == "start":
            choice = np.ones_like(n)
        elif self.position == "middle":
            choice = np.maximum(1, n // 2)
        elif self.position == "end":
            choice = n
        else:
            choice = self.rng.integers(1, n + 1)
        return np.minimum(choice, latest)

    def room(self, wanted: np.ndarray) -> np.ndarray:
        """How many events an insertion may add (the block must fit in max_length)."""
        return np.maximum(1, np.minimum(wanted, self.max_length - 1)).astype(np.int64)

    def draws(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per draw (``counts[v]`` for victim v): its victim and a uniform number in [0, 1)."""
        owner = owner_of(counts)
        return owner, self.rng.random(len(owner))

    def session_items(self, batch: Batch, counts: np.ndarray) -> np.ndarray:
        """``counts[v]`` items such as victim v would browse: popular items of the categories
        it already visits (in proportion to its visits), or of any category if it has none."""
        with_item = np.flatnonzero(batch.cols["item_id"] >= 0)
        per_victim = np.bincount(batch.owner()[with_item], minlength=len(batch))
        first = offsets_of(per_victim)[:-1]
        owner, u = self.draws(counts)
        has = per_victim[owner] > 0
        pick = first[owner[has]] + (u[has] * per_victim[owner[has]]).astype(np.int64)
        items = np.empty(len(owner), dtype=np.int64)
        categories = batch.cols["category_id"][with_item[pick]]
        items[has] = self.profile.sample_items_like(categories, self.rng)
        items[~has] = self.profile.sample_items(int((~has).sum()), self.rng)
        return items

    def place(self, batch: Batch, at: np.ndarray, new: NewEvents) -> Batch:
        """Put each victim's block of new events at ``at``. A block takes the place of a share
        ``1 - severity`` of as many existing events as it holds (length alone must not give an
        anomaly away), and each of those survives unchanged with probability ``1 - severity``:
        at severity 1 a block is a pure insertion, at severity 0 nothing changes at all."""
        n = batch.lengths
        wanted = np.round((1.0 - self.severity) * new.lengths).astype(np.int64)
        at = np.maximum(1, np.minimum(at, n - wanted))  # at the end, step back to replace
        n_remove = np.minimum(n - at, wanted)
        # A session too short to absorb its block keeps only its inserted share beyond them.
        new = new.head(n_remove + new.lengths - wanted)
        out = self.keep_originals(batch, splice(batch, at, n_remove, new), at, n_remove)
        self.record.update(at=at, inserted=new.lengths, replaced=n_remove)
        return out

    def keep_originals(self, source: Batch, edited: Batch, at: np.ndarray, n: np.ndarray) -> Batch:
        """Restore each of the ``n[v]`` events of ``edited`` from ``at[v]`` on (which replaced
        ``source``'s events at the same rows) with probability ``1 - severity``.

        This makes severity 0 an anomaly label without an anomaly: what a detector scores
        above chance there it learnt from something other than the injected behaviour."""
        owner, u = self.draws(n)
        keep = u < 1.0 - self.severity[owner]
        step = ragged_arange(n)[keep] + at[owner[keep]]
        to, back = edited.offsets[owner[keep]] + step, source.offsets[owner[keep]] + step
        for name, col in edited.cols.items():
            col[to] = source.cols[name][back]
        edited.gap[to] = source.gap[back]
        edited.origin[to] = source.origin[back]
        self.record.update(kept_original=np.bincount(owner[keep], minlength=len(n)))
        return edited

    def pick_row(self, batch: Batch, candidate: np.ndarray) -> np.ndarray:
        """Per victim, the position of one event where ``candidate`` holds (every victim has
        one): a random one, or the one nearest the configured position."""
        rows = np.flatnonzero(candidate)
        owner, pos = batch.owner()[rows], batch.position()[rows]
        if self.position == "random":
            key = self.rng.random(len(rows))
        else:
            n = batch.lengths[owner]
            goal = {"start": 0 * n, "middle": n // 2, "end": n - 1}[self.position]
            key = np.abs(pos - goal).astype(float)
        return pos[first_per_group(owner, key, len(batch))]


def fit_to_length(batch: Batch, max_length: int) -> Batch:
    """Drop trailing events beyond ``max_length`` (never changes the gap of a kept event)."""
    if len(batch) == 0 or batch.lengths.max() <= max_length:
        return batch
    rows = np.flatnonzero(batch.position() < max_length)
    return batch.gather(rows, np.minimum(batch.lengths, max_length))
