"""The online stage of a run (``online.enabled``): the fitted detector scores every validation
and test prefix; the alarm threshold comes from the validation prefixes of normal sequences;
the test stream's figures go into the record and its per-event scores into
``online_scores.npz``, from which time to detection can be recomputed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.config import OnlineConfig
from benchmark.detectors.registry import Detector, NeuralDetector
from benchmark.online.alarms import (
    alarm_figures,
    event_roc_auc,
    fit_alarm_threshold,
    session_peaks,
    traffic_hours,
    user_relative,
)
from benchmark.online.cost import scoring_cost
from benchmark.online.stream import (
    StatefulScorer,
    WindowScorer,
    event_times,
    online_scores,
    stream_order,
)
from benchmark.records.atomic import atomic_path
from benchmark.records.record import Alarms, OnlineMetrics
from benchmark.records.store import ONLINE_SCORES_FILE
from benchmark.run.data import PreparedData
from benchmark.run.detect import population
from datasets.features import SequenceArrays


def replay(
    detector: Detector, prepared: PreparedData, cfg: OnlineConfig, run_dir: Path
) -> OnlineMetrics:
    def score(arrays: SequenceArrays) -> np.ndarray:
        return detector.score(arrays).sequence

    val, test = prepared.arrays["val"], prepared.arrays["test"]
    val_scores, test_scores = online_scores(score, val), online_scores(score, test)
    normal_val = population(prepared, "val") & ~val.label.astype(bool)
    threshold = fit_alarm_threshold(
        session_peaks(val_scores, val.offsets)[normal_val], cfg.false_alarm_rate
    )
    times = event_times(test)
    save_online_scores(run_dir / ONLINE_SCORES_FILE, test, test_scores, times, threshold)
    labelled, in_population = prepared.labelled["test"], population(prepared, "test")

    def alarms(scores: np.ndarray, at: float) -> Alarms:
        types = labelled.anomaly_type, labelled.type_names
        return alarm_figures(scores, test, times, at, in_population, *types)

    metrics = OnlineMetrics(
        false_alarm_target=cfg.false_alarm_rate,
        event_roc_auc=event_roc_auc(test_scores, test, in_population),
        traffic_hours=traffic_hours(times),
        events=int(np.repeat(in_population, test.length).sum()),
        alarms=alarms(test_scores, threshold),
    )
    if cfg.per_user:
        # a user without history starts from the typical normal validation event's score
        start = float(np.median(val_scores[np.repeat(normal_val, val.length)]))
        val_relative = user_relative(val_scores, val, stream_order(val), start)
        peaks = session_peaks(val_relative, val.offsets)[normal_val]
        relative = user_relative(test_scores, test, stream_order(test), start)
        metrics.per_user = alarms(relative, fit_alarm_threshold(peaks, cfg.false_alarm_rate))
    if cfg.cost_seconds > 0:
        metrics.cost = online_cost(stateful_scorer(detector), test, cfg)
    return metrics


def stateful_scorer(detector: Detector) -> StatefulScorer:
    """The detector's own scorer that carries state, or a window rescan of its score."""
    own = detector.stateful_scorer() if isinstance(detector, NeuralDetector) else None
    return own or WindowScorer(lambda arrays: detector.score(arrays).sequence)


def online_cost(scorer: StatefulScorer, test: SequenceArrays, cfg: OnlineConfig) -> dict:
    """The scorer's figures at each ``cfg.concurrent_users``, over the test sequences."""
    levels = [
        scoring_cost(scorer, test, users, cfg.events_per_call, cfg.cost_seconds)
        for users in cfg.concurrent_users
    ]
    return {
        "scorer": scorer.kind,
        "state_bytes_per_user": levels[0]["state_bytes_per_user"] if levels else None,
        "levels": levels,
    }


def save_online_scores(
    path: Path, test: SequenceArrays, scores: np.ndarray, times: np.ndarray, threshold: float
) -> None:
    """Per flat test event: its online score, time, injected flag and place in the stream;
    per sequence: offsets and label; the alarm threshold."""
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            scores=scores,
            times=times,
            event_label=test.events["event_label"],
            stream_order=stream_order(test),
            offsets=test.offsets,
            label=test.label,
            threshold=np.array(threshold),
        )


def online_line(online: OnlineMetrics) -> str:
    """'detected 151/177 (median 2 events after the attack began), 41 false alarms per 1,000
    normal sequences, per-event ROC-AUC 0.874'."""
    overall = online.alarms.overall
    delay = overall.median_delay_events
    median = "" if delay is None else f" (median {delay:g} events after the attack began)"
    per_1000 = online.alarms.false_alarms_per_1000_sequences
    alarms = "no normal sequences" if per_1000 is None else f"{per_1000:.0f} false alarms"
    auc = online.event_roc_auc
    return (
        f"detected {overall.detected}/{overall.sequences}{median}, {alarms} per 1,000 normal "
        f"sequences, per-event ROC-AUC {'n/a' if auc is None else f'{auc:.3f}'}"
    )
