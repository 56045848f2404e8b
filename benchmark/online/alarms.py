"""Alarms from online scores and how soon they come: the threshold fitted on validation
prefixes, time to detection, false alarms (NumPy only).

An alarm is an event whose online score reaches the threshold (as ``decide`` flags). An
attack starts at a sequence's first injected event (its first event when the ground truth
marks no single event, as real labels do); it is detected at the first alarm from there on,
``delay`` events later (0: the first attacked event raised it). A sequence never alarmed from
its start is undetected: counted and shown, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.evaluation.metrics import fpr_threshold, roc_auc
from benchmark.online.stream import event_positions, event_sequences
from benchmark.records.record import Alarms, Detection
from datasets.features import SequenceArrays

# Detection curves run to this many events after the attack's start.
CURVE_EVENTS = 20


def session_peaks(scores: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(N,) each sequence's highest online score (sequences hold at least one event)."""
    return np.maximum.reduceat(scores, offsets[:-1]) if len(offsets) > 1 else np.zeros(0)


def fit_alarm_threshold(peaks: np.ndarray, false_alarm_rate: float) -> float:
    """The lowest threshold at which at most ``false_alarm_rate`` of the (normal, validation)
    sequences with these ``peaks`` raise an alarm."""
    return fpr_threshold(np.zeros(len(peaks), dtype=bool), peaks, false_alarm_rate)


@dataclass(frozen=True)
class Delays:
    """Per sequence: where its attack starts and its first alarm from there (-1: none), as
    positions and as seconds."""

    start: np.ndarray  # (N,) position of the first attacked event (0 for normal sequences)
    alarm: np.ndarray  # (N,) position of the first alarm at or after start, -1 if none
    seconds: np.ndarray  # (N,) seconds from start to that alarm, NaN if none
    early: np.ndarray  # (N,) bool: an alarm before the start


def attack_starts(arrays: SequenceArrays) -> np.ndarray:
    """(N,) position of each sequence's first injected event (0 where none is marked)."""
    marked = arrays.events["event_label"].astype(bool)
    position = event_positions(arrays)
    first = np.where(marked, position, np.iinfo(np.int64).max)
    starts = np.minimum.reduceat(first, arrays.offsets[:-1]) if len(arrays) else first[:0]
    return np.where(starts == np.iinfo(np.int64).max, 0, starts)


def delays(
    scores: np.ndarray, arrays: SequenceArrays, times: np.ndarray, threshold: float
) -> Delays:
    """First alarms of every sequence, from online ``scores`` and event ``times``."""
    start = attack_starts(arrays)
    sequence, position = event_sequences(arrays), event_positions(arrays)
    alarm = scores >= threshold
    after = alarm & (position >= start[sequence])
    never = np.iinfo(np.int64).max
    first = np.where(after, position, never)
    first_alarm = np.minimum.reduceat(first, arrays.offsets[:-1]) if len(arrays) else first[:0]
    found = first_alarm != never
    alarm_row = arrays.offsets[:-1] + np.where(found, first_alarm, 0)
    start_row = arrays.offsets[:-1] + start
    seconds = np.where(found, times[alarm_row] - times[start_row], np.nan)
    early_rows = alarm & (position < start[sequence])
    early = np.bincount(sequence[early_rows], minlength=len(arrays)) > 0
    return Delays(start, np.where(found, first_alarm, -1), seconds, early)


def detection(d: Delays, rows: np.ndarray) -> Detection:
    """Time to detection over sequences ``rows`` (anomalous ones)."""
    alarm, start = d.alarm[rows], d.start[rows]
    found = alarm >= 0
    events = (alarm - start)[found]
    n = len(rows)
    curve = [
        float(np.mean(found & (alarm - start < k))) if n else None
        for k in range(1, CURVE_EVENTS + 1)
    ]
    return Detection(
        sequences=n,
        detected=int(found.sum()),
        detection_rate=float(found.mean()) if n else None,
        within_events=curve,
        median_delay_events=float(np.median(events)) if len(events) else None,
        mean_delay_events=float(np.mean(events)) if len(events) else None,
        median_delay_seconds=float(np.median(d.seconds[rows][found])) if len(events) else None,
        alarmed_before_attack=int(d.early[rows].sum()),
    )


def alarm_figures(
    scores: np.ndarray,
    arrays: SequenceArrays,
    times: np.ndarray,
    threshold: float,
    population: np.ndarray,
    types: np.ndarray,
    type_names: tuple[str, ...],
) -> Alarms:
    """Alarms at ``threshold`` on the stream: ``scores`` and ``times`` per flat event,
    ``population`` (N,) the sequences evaluated, ``types`` (N,) each one's anomaly type (-1:
    normal)."""
    d = delays(scores, arrays, times, threshold)
    label = arrays.label.astype(bool)
    normal = np.flatnonzero(population & ~label)
    anomalous = np.flatnonzero(population & label)
    alarmed_normal = int((d.alarm[normal] >= 0).sum())
    hours = traffic_hours(times)
    return Alarms(
        threshold=threshold,
        normal_sequences=len(normal),
        alarmed_normal_sequences=alarmed_normal,
        false_alarms_per_1000_sequences=(
            1000.0 * alarmed_normal / len(normal) if len(normal) else None
        ),
        false_alarms_per_hour=alarmed_normal / hours if hours > 0 else None,
        overall=detection(d, anomalous),
        per_type={
            name: detection(d, anomalous[types[anomalous] == t])
            for t, name in enumerate(type_names)
            if np.any(types[anomalous] == t)
        },
    )


def traffic_hours(times: np.ndarray) -> float:
    """The stream's span, first event to last, in hours."""
    return float(times.max() - times.min()) / 3600.0 if len(times) else 0.0


def event_roc_auc(scores: np.ndarray, arrays: SequenceArrays, population: np.ndarray):
    """Every evaluated event's online score against its injected flag (None: one class)."""
    events = np.repeat(population, arrays.length)
    auc = roc_auc(arrays.events["event_label"][events], scores[events])
    return None if np.isnan(auc) else auc


def user_relative(
    scores: np.ndarray, arrays: SequenceArrays, order: np.ndarray, start: float
) -> np.ndarray:
    """(events,) each online score minus the mean of its user's earlier scores in the stream
    ``order`` (all their earlier events, earlier sequences included), or minus ``start``
    where the user has none yet: the per-user adaptive score."""
    users = np.repeat(arrays.user_id, arrays.length)[order]
    by_user = np.lexsort((np.arange(len(order)), users))  # each user's events, in stream order
    values, owner = scores[order][by_user], users[by_user]
    opens = np.r_[True, owner[1:] != owner[:-1]]
    group_start = np.maximum.accumulate(np.where(opens, np.arange(len(owner)), 0))
    running = np.cumsum(values)
    before = running - values - np.where(group_start > 0, running[group_start - 1], 0.0)
    seen = np.arange(len(owner)) - group_start
    level = np.where(seen > 0, before / np.maximum(seen, 1), start)
    out = np.empty_like(scores)
    out[order[by_user]] = values - level
    return out
