"""The batched injection machinery: one call per type, and each vectorised step against the
plain per-session computation it replaces."""

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from benchmark.anomalies import batch as batch_module
from benchmark.anomalies.batch import Batch, BatchContext, NewEvents, splice
from benchmark.anomalies.core import INJECTORS
from benchmark.anomalies.inject import ANOMALY_TYPES, AnomalyConfig, Donors, inject
from benchmark.anomalies.inject import _main_category as main_category
from benchmark.anomalies.profile import NormalProfile
from benchmark.anomalies.types import _foreign_category as foreign_category
from datasets.schema import EventType, session_offsets
from datasets.sessions import limit_lengths


def test_each_type_edits_all_its_victims_in_one_call(sessions, monkeypatch):
    calls: Counter[str] = Counter()
    for name in ANOMALY_TYPES:
        spec = INJECTORS[name]

        def counted(b, ctx, _fn=spec.fn, _name=name):
            calls[_name] += 1
            assert len(b) == len(ctx.severity) > 1
            return _fn(b, ctx)

        monkeypatch.setitem(INJECTORS, name, replace(spec, fn=counted))
    out = inject(sessions, AnomalyConfig(), rate=0.2, seed=0, max_length=50)
    per_type = Counter(out.type_names[t] for t in out.anomaly_type[out.label])
    assert calls == Counter(dict.fromkeys(per_type, 1))
    assert sum(per_type.values()) > 100


def test_timestamps_are_each_sessions_own_running_sum(sessions, monkeypatch):
    offsets = session_offsets(sessions.session_id)
    b = Batch.read(sessions, offsets, np.arange(0, len(offsets) - 1, 3))
    monkeypatch.setattr(batch_module, "_CUMSUM_CELLS", 7)  # many small blocks of victims
    expected = np.concatenate(
        [b.t0[v] + np.cumsum(b.gap[b.offsets[v] : b.offsets[v + 1]]) for v in range(len(b))]
    )
    assert np.array_equal(b.timestamps(), expected)
    assert np.allclose(expected, sessions.timestamp[b.origin])


def test_splice_equals_the_per_session_splice(sessions):
    offsets = session_offsets(sessions.session_id)
    b = Batch.read(sessions, offsets, np.arange(40))
    rng = np.random.default_rng(0)
    at = rng.integers(1, b.lengths + 1)
    n_remove = rng.integers(0, b.lengths - at + 1)
    n_new = rng.integers(0, 4, len(b))
    total = int(n_new.sum())
    cols = {k: np.full(total, -7, dtype=v.dtype) for k, v in b.cols.items()}
    new = NewEvents(cols, np.full(total, 9.5), n_new)
    out = splice(b, at, n_remove, new)
    for v in range(len(b)):
        old = b.gap[b.offsets[v] : b.offsets[v + 1]]
        a, r = int(at[v]), int(n_remove[v])
        want = np.concatenate([old[:a], np.full(n_new[v], 9.5), old[a + r :]])
        assert np.array_equal(out.gap[out.offsets[v] : out.offsets[v + 1]], want)
        got = out.origin[out.offsets[v] : out.offsets[v + 1]]
        src = b.origin[b.offsets[v] : b.offsets[v + 1]]
        assert np.array_equal(got, np.concatenate([src[:a], np.full(n_new[v], -1), src[a + r :]]))


def test_main_category_is_the_most_frequent_lowest_on_ties(sessions):
    offsets = session_offsets(sessions.session_id)
    main = main_category(sessions, offsets)
    for k in range(0, len(offsets) - 1, 7):
        counts = Counter(sessions.category_id[offsets[k] : offsets[k + 1]].tolist())
        top = max(counts.values())
        assert main[k] == min(c for c, n in counts.items() if n == top)


def test_foreignness_is_jaccard_distance_plus_a_device_change(sessions):
    offsets = session_offsets(sessions.session_id)
    rng = np.random.default_rng(1)
    victims = rng.choice(len(offsets) - 1, 30, replace=False)
    donors = rng.choice(len(offsets) - 1, (30, 4))
    distance = Donors(sessions, offsets, victims, rng).foreignness(victims, donors)

    def facts(k):
        rows = slice(offsets[k], offsets[k + 1])
        device = np.bincount(sessions.device[rows] + 1).argmax()
        return set(sessions.category_id[rows].tolist()), device

    for i, v in enumerate(victims):
        cats_v, dev_v = facts(v)
        for j, d in enumerate(donors[i]):
            cats_d, dev_d = facts(d)
            jaccard = len(cats_v & cats_d) / len(cats_v | cats_d)
            assert distance[i, j] == pytest.approx(1 - jaccard + (dev_v != dev_d))


def test_donors_come_from_other_users_and_from_the_victims_category(sessions):
    offsets = session_offsets(sessions.session_id)
    rng = np.random.default_rng(2)
    victims = np.arange(0, len(offsets) - 1, 5)
    donors = Donors(sessions, offsets, victims, rng)
    drawn = donors.draw(np.repeat(victims, 2), np.tile([True, False], len(victims)))
    users = sessions.user_id[offsets[:-1]]
    assert np.mean(users[drawn] != users[np.repeat(victims, 2)]) == 1.0
    assert not np.isin(drawn, victims).any()
    main = main_category(sessions, offsets)
    similar = drawn[::2]
    assert np.mean(main[similar] == main[victims]) > 0.95  # all but a category of one session


def test_a_foreign_category_is_uniform_among_those_not_visited(sessions):
    profile = NormalProfile.from_events(sessions)
    offsets = session_offsets(sessions.session_id)
    b = Batch.read(sessions, offsets, np.array([3, 3, 3] * 400))
    ctx = BatchContext(np.random.default_rng(3), np.ones(len(b)), "random", 50, profile, None)
    owner = b.owner()
    new_cat, switch = foreign_category(b, ctx, owner, b.cols["category_id"])
    seen = set(sessions.category_id[offsets[3] : offsets[4]].tolist())
    allowed = sorted(set(profile.categories.tolist()) - seen)
    assert switch.all()
    drawn = Counter(new_cat.tolist())
    assert set(drawn) == set(allowed)  # every unvisited category, and only those
    assert min(drawn.values()) > 0.5 * len(b) / len(allowed)


def test_new_searches_type_a_query_of_their_category_and_new_views_none(small_world):
    events, _ = limit_lengths(small_world.events.sorted(), min_length=2, max_length=50)
    cfg = AnomalyConfig(mix={"brushing": 1.0}, severity=1.0)
    out = inject(events, cfg, rate=0.2, seed=0, max_length=50)
    new = out.origin < 0
    e = out.events
    searches = new & (e.event_type == EventType.SEARCH)
    assert searches.sum() > 100
    assert (e.query[searches] >= 0).all()
    assert (e.query[new & (e.event_type != EventType.SEARCH)] == -1).all()
    # each query is one that a search of the same category typed in the source
    used = {
        (int(c), int(q)) for c, q in zip(events.category_id, events.query, strict=True) if q >= 0
    }
    typed = zip(e.category_id[searches].tolist(), e.query[searches].tolist(), strict=True)
    assert np.mean([pair in used for pair in typed]) > 0.95
