import numpy as np
import pytest
from scipy.stats import norm

from datasets.schema import EventType, session_offsets
from datasets.synthetic import (
    PersonaConfig,
    SyntheticConfig,
    SyntheticConfigError,
    generate,
    transition_matrix,
)

E = EventType


def single_persona(**rates) -> SyntheticConfig:
    persona = PersonaConfig(repeat_item=0.0, price_sensitivity=0.0, **rates)
    return SyntheticConfig(n_users=2000, personas={"only": persona})


def test_same_seed_gives_identical_arrays():
    a, b = generate(SyntheticConfig(n_users=300), 7), generate(SyntheticConfig(n_users=300), 7)
    for name, col in a.events.columns().items():
        np.testing.assert_array_equal(col, b.events.columns()[name], err_msg=name)
    np.testing.assert_array_equal(a.items.price, b.items.price)
    np.testing.assert_array_equal(a.profiles.age_band, b.profiles.age_band)


def test_different_seed_gives_different_arrays():
    a, b = generate(SyntheticConfig(n_users=300), 7), generate(SyntheticConfig(n_users=300), 8)
    assert len(a.events) != len(b.events) or not np.array_equal(a.events.item_id, b.events.item_id)


def transitions(events) -> np.ndarray:
    """Counts [a, b] of consecutive event pairs within sessions."""
    same = events.session_id[1:] == events.session_id[:-1]
    counts = np.zeros((8, 8))
    np.add.at(counts, (events.event_type[:-1][same], events.event_type[1:][same]), 1)
    return counts


@pytest.mark.parametrize(
    "rates",
    [
        dict(view_to_cart=0.10, cart_to_purchase=0.40, cart_to_remove=0.15, view_to_search=0.05),
        dict(view_to_cart=0.03, cart_to_purchase=0.70, cart_to_remove=0.05, view_to_search=0.12),
    ],
)
def test_funnel_transition_rates_match_config(rates):
    cfg = single_persona(**rates)
    counts = transitions(generate(cfg, 1).events)
    expected = transition_matrix(cfg.personas["only"])
    for a, b in [
        (E.VIEW, E.ADD_TO_CART),
        (E.ADD_TO_CART, E.PURCHASE),
        (E.ADD_TO_CART, E.REMOVE_FROM_CART),
        (E.VIEW, E.SEARCH),
    ]:
        n = counts[a].sum()
        p = expected[a, b]
        tolerance = 4 * np.sqrt(p * (1 - p) / n) + 1e-3  # 4 binomial standard errors
        assert abs(counts[a, b] / n - p) < tolerance, (EventType(a).name, EventType(b).name)


def test_session_lengths_follow_the_rounded_lognormal():
    cfg = single_persona(session_length_median=8, session_length_sigma=0.5)
    lengths = np.diff(session_offsets(generate(cfg, 2).events.session_id))
    for k in (3, 5, 8, 12, 20):
        expected = norm.cdf((np.log(k + 0.5) - np.log(8)) / 0.5)
        assert abs(np.mean(lengths <= k) - expected) < 0.025, k
    assert lengths.min() >= 1
    assert lengths.max() <= cfg.max_session_length


def test_item_popularity_has_the_configured_zipf_skew():
    cfg = single_persona()
    cfg.zipf_exponent = 1.1
    data = generate(cfg, 4)
    views = data.events.item_id[data.events.event_type == E.VIEW]
    category = data.items.category_id
    biggest = np.bincount(category).argmax()
    items = np.flatnonzero(category == biggest)  # catalogue order = popularity rank
    counts = np.bincount(views, minlength=len(category))[items[:20]]
    slope = np.polyfit(np.log(np.arange(1, 21)), np.log(counts), 1)[0]
    assert abs(-slope - 1.1) < 0.2


def test_funnel_events_refer_to_items_seen_earlier_in_the_session(small_world):
    ev = small_world.events
    offsets = session_offsets(ev.session_id)
    for a, b in zip(offsets[:-1][:2000], offsets[1:][:2000], strict=True):
        types, items = ev.event_type[a:b], ev.item_id[a:b]
        for i in np.flatnonzero(types == E.PURCHASE):
            assert items[i] in items[:i][types[:i] == E.ADD_TO_CART]
        for i in np.flatnonzero(types == E.ADD_TO_CART):
            assert items[i] in items[:i][np.isin(types[:i], (E.VIEW, E.CLICK, E.FAVOURITE))]
    assert np.all(ev.item_id[ev.event_type == E.SEARCH] == -1)
    assert np.all(np.isnan(ev.price[ev.event_type == E.SEARCH]))


def test_time_runs_forward_and_side_tables_cover_the_events(small_world):
    ev = small_world.events
    same = ev.session_id[1:] == ev.session_id[:-1]
    assert np.all(np.diff(ev.timestamp)[same] > 0)
    assert np.all(ev.dwell > 0)
    assert np.all(small_world.profiles.lookup(np.unique(ev.user_id)) >= 0)
    has_item = ev.item_id >= 0
    rows = small_world.items.lookup(ev.item_id[has_item])
    assert np.all(rows >= 0)
    np.testing.assert_array_equal(small_world.items.category_id[rows], ev.category_id[has_item])
    assert small_world.modalities == (
        "behaviour",
        "profile",
        "item_attributes",
        "query_text",
        "item_text",
        "item_image",
    )


def test_personas_shape_behaviour(small_world):
    """Deal hunters exist in the default mix and the funnel converts at realistic rates."""
    ev = small_world.events
    purchase_share = np.mean(ev.event_type == E.PURCHASE)
    view_share = np.mean(ev.event_type == E.VIEW)
    assert 0.003 < purchase_share < 0.05
    assert 0.5 < view_share < 0.9


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            SyntheticConfig(personas={"x": PersonaConfig(view_to_cart=0.9, view_to_search=0.5)}),
            r"generator\.personas\.x: .*sums above 1",
        ),
        (SyntheticConfig(n_users=0), r"generator\.n_users=0 must be >= 1"),
        (SyntheticConfig(n_items=5, n_categories=10), r"generator\.n_items=5 must be >="),
        (
            SyntheticConfig(personas={"x": PersonaConfig(focus=1.5)}),
            r"generator\.personas\.x\.focus=1\.5 is a probability",
        ),
        (SyntheticConfig(personas={"x": PersonaConfig(weight=0.0)}), r"weight > 0"),
        (SyntheticConfig(typo_rate=1.5), r"generator\.typo_rate=1\.5 is a share"),
        (SyntheticConfig(image_dim=0), r"generator\.image_dim=0 must be >= 1"),
    ],
)
def test_bad_generator_settings_name_the_setting(cfg, message):
    with pytest.raises(SyntheticConfigError, match=message):
        generate(cfg, 0)


# ------------------------------------------------------------- text, images and gender


def vocabulary_of(cfg: SyntheticConfig, world):
    from datasets.synthetic_text import Vocabulary

    n_brands = int(world.items.brand_id.max()) + 1
    return Vocabulary(cfg.generic_words, cfg.words_per_category, cfg.n_categories, n_brands)


def test_every_search_and_only_a_search_carries_a_query(small_world):
    e, queries = small_world.events, small_world.queries
    search = e.event_type == E.SEARCH
    assert (e.query[search] >= 0).all()
    assert (e.query[~search] == -1).all()
    assert len(queries) == int(search.sum()) > 500
    assert set(np.unique(queries.lengths).tolist()) == {1, 2, 3, 4}
    assert "query_text" in small_world.modalities


def test_a_query_is_written_for_the_item_viewed_next(small_world):
    """Query words are the next item's brand word, words of its category or generic words,
    except for the configured shares of typos and unrelated words."""
    cfg = SyntheticConfig(n_users=2000)
    vocab = vocabulary_of(cfg, small_world)
    e, queries, items = small_world.events, small_world.queries, small_world.items
    offsets = session_offsets(e.session_id)
    session_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    kinds = {"related": 0, "typo": 0, "other": 0}
    for row in np.flatnonzero(e.query >= 0)[:3000].tolist():
        later = np.flatnonzero((session_of == session_of[row]) & (e.item_id >= 0))
        later = later[later > row]
        if len(later) == 0:
            continue
        item = int(e.item_id[later[0]])
        category, brand = int(items.category_id[item]), int(items.brand_id[item])
        related = {int(vocab.brand_word(brand))}
        related |= set(vocab.category_word(category, np.arange(cfg.words_per_category)).tolist())
        related |= set(range(cfg.generic_words))
        for token in queries.row(int(e.query[row])).tolist():
            if token in related:
                kinds["related"] += 1
            elif token - vocab.base in related:
                kinds["typo"] += 1
            else:
                kinds["other"] += 1
    total = sum(kinds.values())
    assert kinds["typo"] / total == pytest.approx(cfg.typo_rate * 0.95, abs=0.015)
    assert kinds["other"] / total < 0.08  # unrelated words (5%), a few about the session's focus
    assert kinds["related"] / total > 0.85


def test_an_items_name_is_its_brand_and_its_categorys_words(small_world):
    cfg = SyntheticConfig(n_users=2000)
    vocab = vocabulary_of(cfg, small_world)
    items = small_world.items
    names = items.name
    assert len(names) == len(items.item_id)
    assert set(np.unique(names.lengths).tolist()) == {3, 4}
    first = names.tokens[names.offsets[:-1]]
    np.testing.assert_array_equal(first, vocab.brand_word(items.brand_id))
    second = names.tokens[names.offsets[:-1] + 1]
    in_category = (second - cfg.generic_words) // cfg.words_per_category
    np.testing.assert_array_equal(in_category, items.category_id)


def test_image_features_cluster_by_category(small_world):
    items = small_world.items
    image = items.image
    assert image.shape == (len(items.item_id), SyntheticConfig().image_dim)
    unit = image / np.linalg.norm(image, axis=1, keepdims=True)
    similarity = unit @ unit.T
    same = items.category_id[:, None] == items.category_id[None, :]
    off_diagonal = ~np.eye(len(unit), dtype=bool)
    assert similarity[same & off_diagonal].mean() > 0.5
    assert abs(similarity[~same].mean()) < 0.1


def test_gender_follows_its_shares_and_text_leaves_behaviour_alone(small_world):
    gender = small_world.profiles.gender
    shares = np.bincount(gender, minlength=3) / len(gender)
    np.testing.assert_allclose(shares, [0.49, 0.47, 0.04], atol=0.03)
    other = generate(SyntheticConfig(n_users=2000, typo_rate=0.3, image_dim=4), seed=3)
    for name, column in small_world.events.columns().items():
        if name != "query":
            np.testing.assert_array_equal(column, other.events.columns()[name], err_msg=name)
