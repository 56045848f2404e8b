from dataclasses import replace

import numpy as np
import pytest

from datasets.features import (
    FIRST_KNOWN,
    GAP_FIRST,
    PAD,
    UNKNOWN,
    SequenceArrays,
    Vocabularies,
    Vocabulary,
    encode_sequences,
    gap_buckets,
    price_buckets,
)
from datasets.schema import EventTable, EventType, SchemaError, session_offsets
from datasets.sessions import limit_lengths, sessionize, split_entities


def events_of(session, user, ts, item=None, price=None) -> EventTable:
    n = len(ts)
    return EventTable(
        session_id=session,
        user_id=user,
        timestamp=ts,
        event_type=np.zeros(n),
        item_id=np.arange(n) if item is None else item,
        category_id=np.zeros(n),
        price=np.ones(n) if price is None else price,
    )


def test_sessionize_by_gap_splits_at_inactivity_per_user():
    ev = events_of(
        session=[0] * 6, user=[1, 1, 1, 2, 2, 1], ts=[0.0, 100.0, 3000.0, 50.0, 60.0, 3100.0]
    )
    out = sessionize(ev, by="gap", gap_seconds=1800)
    # user 1: [0, 100] then [3000, 3100]; user 2: [50, 60]
    assert out.user_id.tolist() == [1, 1, 1, 1, 2, 2]
    assert out.session_id.tolist() == [0, 0, 1, 1, 2, 2]
    assert ev.session_id.tolist() == [0] * 6  # input untouched


def test_sessionize_rejects_unknown_rule():
    with pytest.raises(SchemaError, match="'session' or 'gap'"):
        sessionize(events_of([0], [0], [0.0]), by="day")


def test_limit_lengths_drops_short_and_keeps_most_recent_events():
    ev = events_of(
        session=[0, 0, 0, 0, 1, 2, 2], user=[0] * 7, ts=[1.0, 2, 3, 4, 1, 1, 2], item=np.arange(7)
    )
    out, report = limit_lengths(ev, min_length=2, max_length=3)
    assert out.item_id.tolist() == [1, 2, 3, 5, 6]
    assert (report.sessions_dropped_short, report.sessions_truncated) == (1, 1)
    assert report.events_dropped == 2
    first, _ = limit_lengths(ev, min_length=2, max_length=3, keep="first")
    assert first.item_id.tolist() == [0, 1, 2, 5, 6]


def test_limit_lengths_explains_when_nothing_is_long_enough():
    ev = events_of(session=[0, 1], user=[0, 0], ts=[1.0, 2.0])
    with pytest.raises(SchemaError, match=r"lower dataset\.sequence\.min_length"):
        limit_lengths(ev, min_length=3, max_length=5)


@pytest.mark.parametrize("by", ["user", "session"])
@pytest.mark.parametrize("method", ["random", "chronological"])
def test_splits_never_share_an_entity(sessions, by, method):
    splits = split_entities(sessions, by=by, method=method, seed=1)
    key = "user_id" if by == "user" else "session_id"
    sets = {name: set(getattr(t, key).tolist()) for name, t in splits.items()}
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert sum(len(t) for t in splits.values()) == len(sessions)
    share = len(sets["train"]) / sum(len(s) for s in sets.values())
    assert abs(share - 0.7) < 0.01


def test_chronological_split_puts_test_after_train(sessions):
    splits = split_entities(sessions, by="session", method="chronological")
    firsts = {}
    for name, t in splits.items():
        offsets = session_offsets(t.session_id)
        firsts[name] = t.timestamp[offsets[:-1]]
    assert firsts["train"].max() <= firsts["val"].min()
    assert firsts["val"].max() <= firsts["test"].min()


def test_split_rejects_bad_fractions(sessions):
    with pytest.raises(SchemaError, match="sum"):
        split_entities(sessions, fractions=(0.5, 0.5, 0.5))


def test_vocabulary_sees_only_training_ids():
    vocab = Vocabulary.fit(np.array([5, 5, 9, 3, -1]), min_count=1)
    assert vocab.encode(np.array([3, 5, 9, 7, -1])).tolist() == [3, 4, 5, UNKNOWN, 2]
    rare = Vocabulary.fit(np.array([5, 5, 9]), min_count=2)
    assert rare.encode(np.array([5, 9])).tolist() == [FIRST_KNOWN, UNKNOWN]
    capped = Vocabulary.fit(np.array([1, 1, 1, 2, 2, 3]), max_size=2)
    assert capped.encode(np.array([1, 2, 3])).tolist() == [2, 3, UNKNOWN]


def test_items_only_in_validation_map_to_unknown(sessions):
    splits = split_entities(sessions, seed=0)
    vocabs = Vocabularies.fit(splits["train"])
    val = splits["val"]
    unseen = ~np.isin(val.item_id, splits["train"].item_id)
    assert unseen.any()
    assert np.all(vocabs.item.encode(val.item_id[unseen]) == UNKNOWN)
    assert np.all(vocabs.item.encode(val.item_id[~unseen]) >= FIRST_KNOWN)


def test_gap_and_price_buckets_are_log_spaced():
    gaps = np.array([0.0, 0.7, 45.0, 100_000.0, 5.0])
    first = np.array([True, False, False, False, False])
    b = gap_buckets(gaps, first)
    assert b[0] == GAP_FIRST
    assert b[1] < b[4] < b[2] < b[3]
    p = price_buckets(np.array([np.nan, 1.0, 10.0, 1000.0], dtype=np.float32))
    assert p[0] == UNKNOWN
    assert p[1] < p[2] < p[3]


def test_encode_pads_right_and_masks():
    ev = events_of(
        session=[0, 0, 0, 1],
        user=[0, 0, 0, 1],
        ts=[0.0, 2.0, 62.0, 5.0],
        item=np.array([4, 4, 8, 9]),
        price=np.array([1.0, np.nan, 3.0, 4.0]),
    )
    vocabs = Vocabularies.fit(ev)
    labels = np.array([False, True, False, False])
    arr = encode_sequences(ev, vocabs, max_length=4, event_label=labels, label=[True, False])
    assert arr.length.tolist() == [3, 1]
    assert arr.mask.tolist() == [[True, True, True, False], [True, False, False, False]]
    assert arr.item[0, 3] == PAD
    assert arr.item[0, 0] == arr.item[0, 1]
    assert arr.gap_bucket[0, 0] == GAP_FIRST
    np.testing.assert_allclose(arr.log_gap[0, :3], np.log1p([0.0, 2.0, 60.0]), rtol=1e-6)
    assert arr.price_bucket[0, 1] == UNKNOWN
    assert arr.event_label[0].tolist() == [False, True, False, False]
    assert arr.label.tolist() == [True, False]
    with pytest.raises(ValueError, match="limit_lengths"):
        encode_sequences(ev, vocabs, max_length=2)


def test_the_fast_session_time_order_is_lexsort_exactly():
    """Grouped or not, whole seconds, milliseconds or times too close for the float key, with
    ties (which keep their file order): the same permutation as np.lexsort."""
    from datasets.schema import session_time_order

    rng = np.random.default_rng(1)
    for trial in range(200):
        n = int(rng.integers(2, 2000))
        session = rng.integers(0, int(rng.integers(1, 50)), n)
        if trial % 3 == 0:
            session = np.sort(session)
        if trial % 5 == 1:
            session = session * 2**58  # ids too wide to multiply by the time span: ranked
        time = rng.integers(0, int(rng.integers(1, 20)), n).astype(float)
        if trial % 2:
            time = 1.5e9 + time * rng.choice([1e-3, 1e-7, 1.0, 1e6])
        expected = np.lexsort((time, session))
        assert np.array_equal(session_time_order(session, time), expected), trial
    time[0] = np.nan
    assert np.array_equal(session_time_order(session, time), np.lexsort((time, session)))


def test_the_packed_sort_orders_whole_seconds_and_its_keys_tie_exactly_where_rows_do():
    """Whole seconds take the packed value sort: lexsort's order, and equal keys exactly where
    session and time are equal; fractional times and keys too wide for 63 bits decline it."""
    from datasets.schema import packed_session_time_sort

    rng = np.random.default_rng(2)
    session = rng.integers(0, 40, 5000) * 7 + 3
    time = (1.5e9 + rng.integers(0, 30, 5000)).astype(float)
    order, keys = packed_session_time_sort(session, time)
    assert np.array_equal(order, np.lexsort((time, session)))
    s, t = session[order], time[order]
    assert np.array_equal(keys[1:] == keys[:-1], (s[1:] == s[:-1]) & (t[1:] == t[:-1]))
    assert packed_session_time_sort(session, time + 0.5 * (session % 2)) is None
    many = np.arange(2048)  # 2^11 sessions x a 2^51 s span x 2^11 rows: beyond 63 bits
    assert packed_session_time_sort(many, np.where(many == 5, 2.0**51, 0.0)) is None


def test_ragged_storage_gives_the_padded_rows_a_batch_cut_and_take_expect():
    """Stored ragged, read padded: a batch is the padded view's rows cut to the batch width;
    take, columns and from_padded round-trip every value."""
    rng = np.random.default_rng(3)
    lengths = np.array([3, 1, 5, 2, 4])
    width = 6
    positions = np.arange(width)[None, :] < lengths[:, None]
    padded = {
        "item": np.where(positions, rng.integers(2, 90, (5, width)), 0),
        "log_gap": np.where(positions, rng.random((5, width)), 0.0).astype(np.float32),
        "event_label": positions & (rng.random((5, width)) < 0.5),
    }
    arrays = SequenceArrays.from_padded(
        padded,
        lengths,
        label=np.array([True, False, True, False, False]),
        user_id=np.arange(5, dtype=np.int64),
        session_id=np.arange(10, 15, dtype=np.int64),
    )
    assert arrays.events["item"].dtype == np.int32
    assert len(arrays.events["item"]) == 15
    np.testing.assert_array_equal(arrays.item, padded["item"])
    np.testing.assert_array_equal(arrays.mask, positions)
    rows = np.array([4, 0, 2])
    batch = arrays.batch(rows)
    assert batch["item"].shape == (3, 5)  # the longest of the three
    np.testing.assert_array_equal(batch["item"], padded["item"][rows, :5])
    np.testing.assert_array_equal(batch["log_gap"], padded["log_gap"][rows, :5])
    np.testing.assert_array_equal(batch["mask"], positions[rows, :5])
    np.testing.assert_array_equal(arrays.batch(rows, 2)["item"], padded["item"][rows, :2])
    np.testing.assert_array_equal(arrays.batch(rows, 8)["item"][:, 6:], 0)
    taken = arrays.take(np.array([False, True, True, False, True]))
    np.testing.assert_array_equal(taken.item, padded["item"][[1, 2, 4]])
    np.testing.assert_array_equal(taken.session_id, [11, 12, 14])
    again = SequenceArrays.from_columns(arrays.columns())
    np.testing.assert_array_equal(again.event_label, padded["event_label"])
    assert again.width == width
    erased = arrays.without_labels()
    assert not erased.label.any()
    assert not erased.event_label.any()
    assert arrays.label.any()


def test_a_batch_carries_each_events_query_words_and_item_image():
    """Media tables are stored once; a batch looks each event's query words and item image
    up: the words of the query its search typed, the image of the item it shows."""
    from benchmark.run.data import derive_seeds, prepare_data
    from datasets.synthetic import generate

    from .conftest import compose_typed

    cfg = compose_typed(["experiment=smoke", "anomaly=none"])
    prepared = prepare_data(cfg.dataset, cfg.anomaly, 0)
    test = prepared.arrays["test"]
    assert test.media is not None
    assert test.media is prepared.arrays["train"].media, "one table for every split"
    plain = test.batch(np.arange(len(test)))
    assert not {"query_tokens", "item_image"} & set(plain)  # only when asked for
    batch = test.batch(np.arange(len(test)), media=True)
    world = generate(cfg.dataset.generator, seed=derive_seeds(0, ("load",))["load"])
    mask = batch["mask"]
    searched = np.argwhere(mask & (batch["query"] > 0))
    assert len(searched) > 20
    for row, col in searched[:50]:
        words = world.queries.row(int(batch["query"][row, col]) - 1)[:8] + 1
        assert batch["query_tokens"][row, col][: len(words)].tolist() == words.tolist()
        assert not batch["query_tokens"][row, col][len(words) :].any()
    assert not batch["query_tokens"][mask & (batch["query"] == 0)].any()
    image = batch["item_image"]
    assert image.shape[2] == cfg.dataset.generator.image_dim
    search = batch["event_type"] == EventType.SEARCH + FIRST_KNOWN  # no item
    shown = mask & ~search
    assert np.abs(image[shown]).sum(axis=-1).min() > 0, "every item shown has its image"
    unseen = shown & (batch["item"] == UNKNOWN)
    assert unseen.any()
    assert np.abs(image[unseen]).sum(axis=-1).min() > 0, "also one training never showed"
    rows = batch["image"][shown] - 1
    np.testing.assert_array_equal(image[shown], world.items.image[rows])
    assert not image[mask & search].any()
    assert not image[~mask].any(), "padding has none"


def test_media_tables_hold_every_items_image_found_by_raw_id():
    from datasets.features import MediaTables
    from datasets.schema import ItemAttributes, TokenLists

    items = ItemAttributes(
        item_id=np.array([10, 20, 30]),
        category_id=np.zeros(3, dtype=np.int64),
        brand_id=np.zeros(3, dtype=np.int64),
        price=np.ones(3, dtype=np.float32),
        image=np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], dtype=np.float32),
    )
    queries = TokenLists(np.array([0, 2, 2, 12]), np.arange(12) % 5, vocabulary=5)
    media = MediaTables.build(queries, items)
    assert media.item_image.tolist() == [[0, 0], [1, 0], [0, 2], [3, 3]]
    # 10 is unseen in training (unknown to the vocabulary) yet keeps its image; 99 has none
    vocabs = Vocabularies(
        item=Vocabulary(values=np.array([20, 30, 99])), category=Vocabulary(values=np.array([0]))
    )
    raw = SequenceArrays.from_padded(
        {"item": np.array([[10, 20, 30, 99, -1]]), "category": np.zeros((1, 5), np.int64)},
        np.array([5]),
        label=np.zeros(1, bool),
        user_id=np.zeros(1, np.int64),
        session_id=np.zeros(1, np.int64),
    )
    encoded = replace(raw.with_vocabularies(vocabs, items), media=media)
    batch = encoded.batch(np.array([0]), media=True)
    assert batch["item"].tolist() == [[UNKNOWN, 2, 3, 4, UNKNOWN]]
    assert batch["image"].tolist() == [[1, 2, 3, 0, 0]]
    assert batch["item_image"][0].tolist() == [[1, 0], [0, 2], [3, 3], [0, 0], [0, 0]]
    assert media.query_tokens.shape == (4, 8)
    assert media.query_tokens[1].tolist() == [1, 2, 0, 0, 0, 0, 0, 0]
    assert not media.query_tokens[2].any()  # an empty query
    assert media.query_tokens[3].tolist() == [3, 4, 5, 1, 2, 3, 4, 5]  # the first 8 of 10 words
