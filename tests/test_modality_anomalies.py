"""The anomaly types that live in text and images: exact labels, nothing changed at severity
0, and at severity 1 the change each story describes."""

import numpy as np
import pytest

from benchmark.anomalies.inject import AnomalyConfig, inject
from benchmark.anomalies.modality_types import MODALITY_TYPES
from datasets.schema import EventType

from .test_anomalies import MAX_LEN, assert_labels_exact


def only(name: str, **kwargs) -> AnomalyConfig:
    return AnomalyConfig(mix={name: 1.0}, **kwargs)


@pytest.mark.parametrize("severity", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("name", MODALITY_TYPES)
def test_labels_mark_exactly_what_changed(sessions, name, severity):
    out = inject(sessions, only(name, severity=severity), rate=0.1, seed=2, max_length=MAX_LEN)
    assert out.label.sum() > 100
    assert_labels_exact(sessions, out, strict_changed=True)
    if severity == 0.0:
        assert not out.event_label.any(), "severity 0 changes nothing"
    else:
        assert out.event_label[np.repeat(out.label, np.diff(out.offsets))].any()


def _category_of_items(world, items):
    return world.items.category_id[items]


def test_stuffed_queries_are_typed_for_other_categories(sessions, small_world):
    out = inject(sessions, only("query_stuffing", severity=1.0), rate=0.1, seed=0, max_length=50)
    e = out.events
    victim_event = np.repeat(out.label, np.diff(out.offsets))
    searches = (e.event_type == EventType.SEARCH) & (e.query >= 0)
    changed = searches & out.event_label & victim_event
    assert changed.sum() > 200
    # a query's category: the category of the search that typed it in the source
    source = {int(q): int(c) for q, c in zip(sessions.query, sessions.category_id, strict=True)}
    typed_for = np.array([source.get(int(q), -2) for q in e.query[changed]])
    # what the spam searched for is not what the session was about (its first event's
    # category, which injection never touches)
    session = np.repeat(np.arange(len(out.offsets) - 1), np.diff(out.offsets))
    first_category = e.category_id[out.offsets[:-1]][session[changed]]
    assert np.mean(typed_for != first_category) > 0.8
    normal = searches & ~victim_event  # an ordinary search is mostly about its session's topic
    ordinary_for = np.array([source[int(q)] for q in e.query[normal]])
    assert np.mean(ordinary_for == e.category_id[out.offsets[:-1]][session[normal]]) > 0.5


def test_mislisted_items_belong_to_another_category_than_their_listing(sessions, small_world):
    out = inject(sessions, only("listing_mismatch", severity=1.0), rate=0.1, seed=0, max_length=50)
    e = out.events
    swapped = out.event_label & (e.item_id >= 0)
    assert swapped.sum() > 300
    listed = e.category_id[swapped]
    actual = _category_of_items(small_world, e.item_id[swapped])
    assert np.all(listed != actual), "the item comes from another category"
    kept = ~out.event_label & (e.item_id >= 0)
    assert np.all(e.category_id[kept] == _category_of_items(small_world, e.item_id[kept]))


def test_a_shifted_session_drifts_to_categories_its_user_never_visited(sessions):
    out = inject(sessions, only("interest_shift", severity=1.0), rate=0.1, seed=0, max_length=50)
    e = out.events
    drifted = out.event_label
    assert drifted.sum() > 300
    visited = set(zip(sessions.user_id.tolist(), sessions.category_id.tolist(), strict=True))
    pairs = zip(e.user_id[drifted].tolist(), e.category_id[drifted].tolist(), strict=True)
    assert not any(pair in visited for pair in pairs)
    # the drift grows along the session: later events drift more often
    offsets = out.offsets
    pos = np.arange(len(e)) - np.repeat(offsets[:-1], np.diff(offsets))
    length = np.repeat(np.diff(offsets), np.diff(offsets))
    victim = np.repeat(out.label, np.diff(offsets))
    late = victim & (pos >= 0.75 * length)
    early = victim & (pos < 0.5 * length) & (pos > 0)
    assert drifted[late].mean() > drifted[early].mean() + 0.2


def test_data_without_queries_cannot_host_query_stuffing(sessions):
    from benchmark.anomalies.core import InjectionError
    from benchmark.anomalies.inject import supported_mix

    plain = sessions.with_columns(query=None)
    cfg, skipped = supported_mix(AnomalyConfig(mix={"query_stuffing": 1, "click_flood": 1}), plain)
    assert skipped == {
        "query_stuffing": "no sequence has at least 1 event and a search with a "
        "query (the data has no query text)"
    }
    assert cfg.mix["query_stuffing"] == 0.0
    with pytest.raises(InjectionError, match="query_stuffing"):
        supported_mix(AnomalyConfig(mix={"query_stuffing": 1.0}), plain)
