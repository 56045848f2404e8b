"""The test traffic as a site sees it, and each event's online score.

An event's online score is the detector's score of its sequence cut just after it: what a
scorer that has seen the sequence so far, and nothing later, says at that moment. Scoring each
prefix as a sequence of its own gives every detector and baseline that score with nothing to
re-implement, and no look-ahead by construction; the stateful scorers reach the same numbers
event by event (tested). Events are replayed across sequences in time order, interleaved as
they arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from benchmark.errors import EvaluationError
from datasets.features import PER_SEQUENCE, SequenceArrays
from datasets.schema import ragged_arange

# Sequences whose prefixes are scored in one call: a sequence of L events has L(L + 1) / 2
# prefix events, so this bounds the prefix copy to about 1,300 x this many events.
PREFIX_CHUNK = 512

SequenceScorer = Callable[[SequenceArrays], np.ndarray]  # (N,) scores of N sequences


def event_sequences(arrays: SequenceArrays) -> np.ndarray:
    """(events,) the sequence each flat event belongs to."""
    return np.repeat(np.arange(len(arrays)), arrays.length)


def event_positions(arrays: SequenceArrays) -> np.ndarray:
    """(events,) each event's position in its sequence (0 = first)."""
    return ragged_arange(arrays.length)


def event_times(arrays: SequenceArrays) -> np.ndarray:
    """(events,) float64 seconds of every event: its sequence's start plus the gaps before it
    (read back from ``log_gap``, float32: a relative error of about 1e-7)."""
    if arrays.start_time is None:
        raise EvaluationError(
            "online evaluation needs each sequence's start time, which these arrays lack "
            "(prepared by an older version): delete the prepared-data cache and rerun"
        )
    gaps = np.expm1(arrays.events["log_gap"].astype(np.float64))
    elapsed = np.cumsum(gaps)
    first = arrays.offsets[:-1]
    # a sequence's first gap is 0, so elapsed at its first event is what came before it
    since_start = elapsed - np.repeat(elapsed[first] if len(first) else elapsed, arrays.length)
    return np.repeat(arrays.start_time, arrays.length) + since_start


def stream_order(arrays: SequenceArrays) -> np.ndarray:
    """Flat event rows in the order a site receives them: by time; ties by sequence, then
    position (so a sequence's events stay in their own order)."""
    return np.lexsort((event_positions(arrays), event_sequences(arrays), event_times(arrays)))


def cut(arrays: SequenceArrays, index: np.ndarray, lengths: np.ndarray) -> SequenceArrays:
    """Sequences ``index`` cut to their first ``lengths`` events (>= 1 each), as sequences of
    their own; per-sequence columns (label, profile, ...) are their sequence's."""
    rows = np.repeat(arrays.offsets[:-1][index], lengths) + ragged_arange(lengths)
    per_sequence = {
        name: getattr(arrays, name)[index]
        for name in PER_SEQUENCE
        if getattr(arrays, name) is not None
    }
    return SequenceArrays(
        events={name: column[rows] for name, column in arrays.events.items()},
        offsets=np.concatenate(([0], np.cumsum(lengths, dtype=np.int64))),
        width=arrays.width,
        **per_sequence,
        media=arrays.media,
    )


def prefixes(arrays: SequenceArrays) -> SequenceArrays:
    """Every prefix of every sequence as a sequence of its own, in flat event order: prefix
    ``j`` ends at flat event ``j``."""
    return cut(arrays, event_sequences(arrays), event_positions(arrays) + 1)


def online_scores(
    score: SequenceScorer, arrays: SequenceArrays, chunk: int = PREFIX_CHUNK
) -> np.ndarray:
    """(events,) float64: each event's online score, the score of the prefix ending there."""
    out = np.empty(int(arrays.offsets[-1]), dtype=np.float64)
    for start in range(0, len(arrays), chunk):
        stop = min(len(arrays), start + chunk)
        part = arrays.take(np.arange(start, stop))
        out[arrays.offsets[start] : arrays.offsets[stop]] = score(prefixes(part))
    if not np.all(np.isfinite(out)):
        raise EvaluationError("a detector gave a non-finite online score")
    return out


def micro_batches(order: np.ndarray, sequence: np.ndarray, most: int) -> list[np.ndarray]:
    """The stream ``order`` (flat event rows) in consecutive runs of at most ``most`` events
    of distinct sequences: what a scorer can take in one call without reordering anything."""
    runs: list[np.ndarray] = []
    current: list[int] = []
    seen: set[int] = set()
    for row in order.tolist():
        s = int(sequence[row])
        if s in seen or len(current) == most:
            runs.append(np.array(current, dtype=np.int64))
            current, seen = [], set()
        current.append(row)
        seen.add(s)
    if current:
        runs.append(np.array(current, dtype=np.int64))
    return runs


def replay(scorer: StatefulScorer, arrays: SequenceArrays, most: int) -> np.ndarray:
    """(events,) online scores from ``scorer`` fed the stream in time order, one slot per
    sequence, in calls of at most ``most`` events."""
    sequence, position = event_sequences(arrays), event_positions(arrays)
    scorer.start(arrays, len(arrays))
    out = np.empty(int(arrays.offsets[-1]), dtype=np.float64)
    for rows in micro_batches(stream_order(arrays), sequence, most):
        out[rows] = scorer.push(sequence[rows], rows, position[rows] == 0)
    return out


class StatefulScorer(Protocol):
    """Scores events as they arrive, holding what it needs of each sequence in a slot."""

    kind: str  # how it keeps a sequence's past: "carried state" or "window rescan"

    def start(self, source: SequenceArrays, slots: int) -> None:
        """Empty state for ``slots`` sequences whose events are rows of ``source``."""

    def push(self, slots: np.ndarray, rows: np.ndarray, first: np.ndarray) -> np.ndarray:
        """One event (a flat row of the source) for each of the distinct ``slots``
        (``first``: the event opens its slot's sequence); their online scores."""
        ...

    def state_bytes(self) -> int:
        """Bytes one slot holds."""
        ...


class WindowScorer:
    """The online scorer of a detector that carries no state (the attention detectors, the
    masked objective, the baselines): each new event rescores its sequence so far, at most
    ``dataset.sequence.max_length`` events, as a whole. Bidirectional attention changes
    every earlier state when an event arrives, so nothing can be carried; a slot holds the
    window of events (here the replayed source holds them: an event's window is its
    sequence up to it)."""

    kind = "window rescan"

    def __init__(self, score: SequenceScorer) -> None:
        self.score = score

    def start(self, source: SequenceArrays, slots: int) -> None:
        self.source = source
        self.sequence_of = event_sequences(source)

    def state_bytes(self) -> int:
        """A window of events: every per-event column at its width, and a length."""
        per_event = sum(c.dtype.itemsize for c in self.source.events.values())
        return self.source.width * per_event + np.dtype(np.int64).itemsize

    def push(self, slots: np.ndarray, rows: np.ndarray, first: np.ndarray) -> np.ndarray:
        sequence = self.sequence_of[rows]
        lengths = rows - self.source.offsets[sequence] + 1
        return self.score(cut(self.source, sequence, lengths))
