"""Online detection: stateful scorers equal the offline pass on prefixes in both frameworks,
the stream is interleaved by time without look-ahead, and time to detection can be recomputed
from the saved per-event scores."""

from dataclasses import replace

import numpy as np
import pytest

from benchmark.config import Pool, check_config
from benchmark.detectors.adapters.jax_adapter import JaxDetector
from benchmark.detectors.adapters.torch_adapter import TorchDetector
from benchmark.detectors.baselines import MarkovDetector
from benchmark.errors import ConfigError
from benchmark.online.alarms import (
    attack_starts,
    delays,
    detection,
    fit_alarm_threshold,
    user_relative,
)
from benchmark.online.cost import scoring_cost
from benchmark.online.stream import (
    WindowScorer,
    event_times,
    micro_batches,
    online_scores,
    prefixes,
    replay,
    stream_order,
)
from benchmark.records.store import ONLINE_SCORES_FILE
from benchmark.run.data import prepare_data
from benchmark.run.experiment import run
from datasets.features import SequenceArrays

from .conftest import compose_typed, detector_spec

FRAMEWORKS = {"torch": TorchDetector, "jax": JaxDetector}
TOL = {"atol": 1e-5, "rtol": 1e-4}


@pytest.fixture(scope="module")
def world():
    config = compose_typed(["experiment=smoke", "model.dropout=0", "train.batch_size=32"])
    prepared = prepare_data(config.dataset, config.anomaly, 0)
    test = prepared.arrays["test"]
    # anomalous and normal sequences, the longest among them (most prefixes to score)
    by_length = np.argsort(-test.length, kind="stable")
    rows = np.concatenate(
        [by_length[test.label[by_length]][:5], by_length[~test.label[by_length]][:15]]
    )
    return config, prepared, test.take(np.sort(rows))


def detector(world, model: str, objective: str, framework: str, pool=Pool.mean, **model_fields):
    config, prepared, _ = world
    spec = detector_spec(config, prepared, model, objective, device="cpu")
    spec = replace(
        spec,
        framework=replace(spec.framework, name=framework),
        model=replace(spec.model, **model_fields),
        objective=replace(spec.objective, pool=pool),
    )
    return FRAMEWORKS[framework](spec)


def sequence_scores(d):
    return lambda arrays: d.score(arrays).sequence


@pytest.mark.parametrize(
    ("model", "objective", "framework"),
    [
        ("lstm", "classify", "torch"),
        ("lstm", "classify", "jax"),
        ("gru", "next_event", "jax"),
        ("lstm", "forecast", "torch"),
        pytest.param("gru", "next_event", "torch", marks=pytest.mark.slow),
        pytest.param("lstm", "classify_type", "jax", marks=pytest.mark.slow),
        pytest.param("gru", "classify", "jax", marks=pytest.mark.slow),
        pytest.param("lstm", "forecast", "jax", marks=pytest.mark.slow),
        pytest.param("lstm", "next_event", "torch", marks=pytest.mark.slow),
    ],
)
def test_carried_state_scores_equal_the_offline_pass_on_every_prefix(
    world, model, objective, framework
):
    """The recurrent scorer, fed the stream in time order one event per sequence per call,
    gives each event the score the offline pass gives the prefix ending there."""
    _, _, stream = world
    d = detector(world, model, objective, framework)
    scorer = d.stateful_scorer()
    assert scorer is not None
    assert scorer.kind == "carried state"
    offline = online_scores(sequence_scores(d), stream)
    online = replay(scorer, stream, most=16)
    np.testing.assert_allclose(online, offline, **TOL)
    # the prefix pass itself: a whole sequence's last event scores as the sequence does
    last = stream.offsets[1:] - 1
    np.testing.assert_allclose(offline[last], d.score(stream).sequence, **TOL)


@pytest.mark.parametrize("framework", ["torch", pytest.param("jax", marks=pytest.mark.slow)])
def test_a_max_pooled_score_carries_its_running_maximum(world, framework):
    """objective.pool=max (the third article's per-time-point threshold): the carried state
    keeps the largest event score so far, equal to the offline pass on every prefix."""
    _, _, stream = world
    d = detector(world, "lstm", "forecast", framework, pool=Pool.max)
    online = replay(d.stateful_scorer(), stream, most=16)
    np.testing.assert_allclose(online, online_scores(sequence_scores(d), stream), **TOL)
    mean = detector(world, "lstm", "forecast", framework)
    mean.load_weights(d.canonical_weights())
    assert not np.allclose(online, replay(mean.stateful_scorer(), stream, most=16), **TOL)


def test_a_lag_window_detector_rescans(world):
    """A lag window restarts the recurrence at every event: no state to carry."""
    assert detector(world, "gru", "forecast", "torch", lag_window=3).stateful_scorer() is None


@pytest.mark.parametrize("framework", ["torch", pytest.param("jax", marks=pytest.mark.slow)])
def test_attention_detectors_rescan_a_window_with_the_same_scores(world, framework):
    stream = world[2].take(np.arange(4))  # every event rescans: a few sequences suffice
    d = detector(world, "transformer", "classify", framework)
    assert d.stateful_scorer() is None
    scorer = WindowScorer(sequence_scores(d))
    np.testing.assert_allclose(
        replay(scorer, stream, most=64), online_scores(sequence_scores(d), stream), **TOL
    )


def test_state_bytes_are_the_carry_and_the_running_statistics(world):
    config, _, stream = world
    h, layers = config.model.hidden_dim, config.model.num_layers
    for model, carries in (("lstm", 2), ("gru", 1)):
        scorer = detector(world, model, "classify", "torch").stateful_scorer()
        scorer.start(stream, 10)
        # per layer h (and c), then the running maximum, the total and the count: float32
        assert scorer.state_bytes() == 4 * (layers * carries * h + h + 2)


def test_no_look_ahead_an_events_score_ignores_later_events(world):
    """Altering a sequence's later events leaves the online scores of its earlier ones as
    they were, for a bidirectional detector (whose whole-sequence states all change) and a
    baseline."""
    _, prepared, stream = world
    markov = MarkovDetector()
    markov.fit(prepared.arrays["train"], prepared.arrays["val"])
    transformer = detector(world, "transformer", "classify", "torch")
    long = int(np.argmax(stream.length))
    cut_at = int(stream.length[long]) // 2
    changed = dict(stream.events)
    later = np.arange(stream.offsets[long] + cut_at, stream.offsets[long + 1])
    donor = np.arange(len(later)) % int(stream.offsets[-1])  # other events' valid ids
    for name in ("item", "category", "event_type"):
        changed[name] = changed[name].copy()
        changed[name][later] = changed[name][donor[::-1]]
    altered = replace(stream, events=changed)
    for d in (transformer, markov):
        before = online_scores(sequence_scores(d), stream)
        after = online_scores(sequence_scores(d), altered)
        earlier = np.arange(stream.offsets[long], stream.offsets[long] + cut_at)
        np.testing.assert_array_equal(after[earlier], before[earlier])
        assert not np.allclose(after[later], before[later])  # the change is seen from there


def interleaved() -> SequenceArrays:
    """Three sequences whose events interleave in time: starts 0, 5, 5 s; gaps 10, 3, 4 s."""
    length = np.array([3, 2, 3])
    gaps = [[0, 10, 10], [0, 3, 0], [0, 4, 4]]
    log_gap = np.log1p(np.array(gaps, dtype=np.float64))
    padded = {"log_gap": log_gap, "event_type": np.full((3, 3), 2), "event_label": np.zeros((3, 3))}
    padded["event_label"][0, 2] = 1  # the first sequence's last event is injected
    padded["event_label"][2, 1:] = 1
    return SequenceArrays.from_padded(
        padded,
        length,
        label=np.array([True, False, True]),
        user_id=np.arange(3),
        session_id=np.arange(3),
        start_time=np.array([0.0, 5.0, 5.0]),
    )


def test_the_stream_interleaves_sequences_by_time():
    arrays = interleaved()
    # events (sequence, time): (0,0) (0,10) (0,20) (1,5) (1,8) (2,5) (2,9) (2,13)
    np.testing.assert_allclose(event_times(arrays), [0, 10, 20, 5, 8, 5, 9, 13], rtol=1e-6)
    # ties (5 s) by sequence
    assert stream_order(arrays).tolist() == [0, 3, 5, 4, 6, 1, 7, 2]
    runs = micro_batches(stream_order(arrays), np.array([0, 0, 0, 1, 1, 2, 2, 2]), most=2)
    assert [r.tolist() for r in runs] == [[0, 3], [5, 4], [6, 1], [7, 2]]
    prefix = prefixes(arrays)
    assert prefix.length.tolist() == [1, 2, 3, 1, 2, 1, 2, 3]
    assert prefix.label.tolist() == [True] * 3 + [False] * 2 + [True] * 3


def test_time_to_detection_from_first_injected_event_to_first_alarm_after_it():
    arrays = interleaved()
    assert attack_starts(arrays).tolist() == [2, 0, 1]
    times = event_times(arrays)
    # sequence 0 alarms at its first event (before its attack) and at its attack (delay 0);
    # sequence 1 (normal) at its second; sequence 2 never from its attack on
    scores = np.array([5.0, 0, 6, 0, 5, 0, 0, 0])
    d = delays(scores, arrays, times, threshold=5.0)
    assert d.alarm.tolist() == [2, 1, -1]
    assert d.early.tolist() == [True, False, False]
    np.testing.assert_allclose(d.seconds[0], 0.0, atol=1e-9)
    assert np.isnan(d.seconds[2])
    found = detection(d, np.array([0, 2]))
    assert (found.sequences, found.detected, found.detection_rate) == (2, 1, 0.5)
    assert found.within_events[:3] == [0.5, 0.5, 0.5]
    assert found.alarmed_before_attack == 1
    # one event later: the delay is counted in events and seconds
    later = delays(np.array([0, 0, 0, 0, 0, 0, 0, 7.0]), arrays, times, threshold=5.0)
    assert later.alarm[2] == 2
    np.testing.assert_allclose(later.seconds[2], 4.0, rtol=1e-6)
    curve = detection(later, np.array([2])).within_events
    assert curve[:3] == [0.0, 1.0, 1.0]


def test_the_per_user_score_subtracts_the_users_earlier_mean_in_stream_order():
    arrays = interleaved()  # sequences 0 and 2 belong to one user, 1 to another
    arrays = replace(arrays, user_id=np.array([7, 3, 7]))
    order = stream_order(arrays)  # rows 0, 3, 5, 4, 6, 1, 7, 2
    scores = np.array([1.0, 2, 3, 10, 20, 4, 5, 6])
    relative = user_relative(scores, arrays, order, start=0.5)
    # user 7 in stream order: rows 0 (1), 5 (4), 6 (5), 1 (2), 7 (6), 2 (3)
    expected = {0: 1 - 0.5, 5: 4 - 1, 6: 5 - 2.5, 1: 2 - 10 / 3, 7: 6 - 3, 2: 3 - 18 / 5}
    # user 3: rows 3 (10), 4 (20)
    expected.update({3: 10 - 0.5, 4: 20 - 10})
    np.testing.assert_allclose(relative, [expected[i] for i in range(8)])


def test_the_alarm_threshold_allows_the_false_alarm_share_on_validation():
    peaks = np.arange(100, dtype=np.float64)
    threshold = fit_alarm_threshold(peaks, 0.05)
    assert int((peaks >= threshold).sum()) == 5
    assert int((peaks >= fit_alarm_threshold(peaks, 0.0)).sum()) == 0


def test_scoring_cost_figures(world):
    _, _, stream = world
    scorer = detector(world, "gru", "classify", "torch").stateful_scorer()
    figures = scoring_cost(scorer, stream, users=300, most=64, seconds=0.05)
    assert figures["events_per_call"] == 64
    assert figures["calls"] >= 5
    assert figures["events_per_s"] > 0
    assert 0 < figures["latency_ms_p50"] <= figures["latency_ms_p99"]
    assert figures["state_bytes_per_user"] == scorer.state_bytes()


def test_a_run_records_online_figures_that_the_saved_scores_reproduce(compose_config, tmp_path):
    config = compose_config(
        [
            "experiment=smoke",
            f"results_dir={tmp_path}",
            "online.enabled=true",
            "online.cost_seconds=0.05",
            "online.concurrent_users=[1,50]",
        ]
    )
    record = run(config).record
    online = record.online
    assert record.status == "ok"
    assert online is not None
    assert "online" in record.phase_seconds
    assert [level["users"] for level in online.cost["levels"]] == [1, 50]
    saved = np.load(record.run_dir + "/" + ONLINE_SCORES_FILE)
    offsets, scores, times = saved["offsets"], saved["scores"], saved["times"]
    marked, label, threshold = saved["event_label"], saved["label"], float(saved["threshold"])
    assert sorted(saved["stream_order"].tolist()) == list(range(len(scores)))
    assert np.all(np.diff(times[saved["stream_order"]]) >= 0)  # time order
    # recomputed here with plain loops, from the file alone
    detected, delays_events, alarmed_normal = 0, [], 0
    for i in range(len(offsets) - 1):
        s, m = scores[offsets[i] : offsets[i + 1]], marked[offsets[i] : offsets[i + 1]]
        start = int(np.argmax(m)) if m.any() else 0
        alarms = [t for t in range(start, len(s)) if s[t] >= threshold]
        if label[i] and alarms:
            detected += 1
            delays_events.append(alarms[0] - start)
        if not label[i] and alarms:
            alarmed_normal += 1
    assert online.alarms.overall.detected == detected
    assert online.alarms.overall.sequences == int(label.sum())
    assert online.alarms.alarmed_normal_sequences == alarmed_normal
    if delays_events:
        assert online.alarms.overall.median_delay_events == float(np.median(delays_events))
    assert online.per_user is not None
    assert online.per_user.overall.sequences == int(label.sum())


def test_online_refuses_pca_scores():
    config = compose_typed(["experiment=smoke", "online.enabled=true", "pca.components=4"])
    with pytest.raises(ConfigError, match=r"online\.enabled=true"):
        check_config(config)
