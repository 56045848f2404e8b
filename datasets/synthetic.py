"""Synthetic e-commerce clickstreams: personas, a catalogue and a funnel process.

The generative story, in order:

1. **Catalogue.** ``n_categories`` categories whose sizes fall off as a power law; each item has a
   brand from its category's brand pool, a lognormal price (each category has its own price level
   and spread) and a popularity weight ``rank ** -zipf_exponent`` within its category.
2. **Users.** Each user draws a persona (browser, focused buyer, comparer, deal hunter, ...) from
   the configured mix, a profile (age band, region, primary device, tenure) and a handful of
   favourite categories (category affinity).
3. **Sessions.** A user has ``1 + Poisson(sessions_per_user - 1)`` sessions, each starting at a
   random day and a diurnal hour, on the user's primary device most of the time. Its length is
   ``round(lognormal(median, sigma))`` clipped to ``[1, max_session_length]``.
4. **Funnel.** Event types follow a first-order Markov chain whose transition rates are the
   persona's (``view_to_cart``, ``cart_to_purchase``, ...; see :func:`transition_matrix`).
5. **Items.** Browsing events (view, click) pick an item from the session's focus category (with
   probability ``focus``) or from the user's affinity, by popularity; a view repeats the previous
   item with probability ``repeat_item``. Funnel events refer back: add-to-cart and favourite to
   the last viewed item, purchase and remove to the last carted one, review to the last purchase.
   Price-sensitive personas pick the cheaper of two candidates.
6. **Time.** Dwell time on each event is lognormal with a per-type median scaled by the persona;
   the next event starts when the dwell ends.

Everything is vectorised over events except a loop over positions in a session (at most
``max_session_length`` steps), and all randomness comes from one ``numpy.random.Generator``
seeded by ``seed``: the same config and seed give identical arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from datasets.schema import (
    AGE_BANDS,
    DEVICES,
    GENDERS,
    MISSING_ID,
    Dataset,
    EventTable,
    EventType,
    ItemAttributes,
    UserProfiles,
)
from datasets.synthetic_text import (
    TextWorld,
    Vocabulary,
    image_features,
    item_names,
    search_queries,
    search_targets,
    word_popularity,
)

N_TYPES = len(EventType)


@dataclass
class PersonaConfig:
    """Behaviour of one kind of user. Rates are per-event transition probabilities."""

    weight: float = 1.0
    """Share of users with this persona (normalised over all personas)."""
    session_length_median: float = 8.0
    """Median events per session (lognormal)."""
    session_length_sigma: float = 0.6
    """Log-scale spread of session lengths."""
    sessions_per_user: float = 3.0
    """Mean sessions per user (at least one)."""
    view_to_cart: float = 0.05
    """P(next = add_to_cart | view)."""
    view_to_favourite: float = 0.02
    """P(next = favourite | view)."""
    view_to_search: float = 0.08
    """P(next = search | view)."""
    cart_to_purchase: float = 0.3
    """P(next = purchase | add_to_cart)."""
    cart_to_remove: float = 0.1
    """P(next = remove_from_cart | add_to_cart)."""
    purchase_to_review: float = 0.05
    """P(next = review | purchase)."""
    start_with_search: float = 0.3
    """P(first event is a search); otherwise a view."""
    repeat_item: float = 0.15
    """P(a view stays on the previous item)."""
    focus: float = 0.75
    """P(a browsed item comes from the session's focus category)."""
    dwell_scale: float = 1.0
    """Multiplier on every dwell time."""
    price_sensitivity: float = 0.0
    """P(choosing the cheaper of two candidate items)."""


def default_personas() -> dict[str, PersonaConfig]:
    return {
        "browser": PersonaConfig(
            weight=0.4,
            session_length_median=10,
            session_length_sigma=0.7,
            view_to_cart=0.02,
            view_to_favourite=0.03,
            view_to_search=0.1,
            cart_to_purchase=0.15,
            cart_to_remove=0.2,
            repeat_item=0.1,
            focus=0.5,
        ),
        "focused_buyer": PersonaConfig(
            weight=0.25,
            session_length_median=6,
            session_length_sigma=0.5,
            view_to_cart=0.12,
            view_to_favourite=0.01,
            view_to_search=0.05,
            cart_to_purchase=0.55,
            cart_to_remove=0.05,
            purchase_to_review=0.1,
            start_with_search=0.6,
            repeat_item=0.2,
            focus=0.9,
            dwell_scale=0.8,
        ),
        "comparer": PersonaConfig(
            weight=0.2,
            session_length_median=14,
            session_length_sigma=0.6,
            view_to_cart=0.06,
            view_to_favourite=0.08,
            view_to_search=0.06,
            cart_to_purchase=0.25,
            cart_to_remove=0.3,
            repeat_item=0.3,
            focus=0.9,
            dwell_scale=1.3,
        ),
        "deal_hunter": PersonaConfig(
            weight=0.15,
            session_length_median=12,
            session_length_sigma=0.6,
            view_to_cart=0.08,
            view_to_favourite=0.04,
            view_to_search=0.12,
            cart_to_purchase=0.3,
            cart_to_remove=0.25,
            repeat_item=0.1,
            focus=0.6,
            price_sensitivity=0.8,
        ),
    }


@dataclass
class SyntheticConfig:
    """Size and shape of the synthetic world. Defaults give about 110k events."""

    n_users: int = 4000
    """Number of users (sessions follow from each persona's sessions_per_user)."""
    n_items: int = 5000
    """Catalogue size."""
    n_categories: int = 40
    """Number of item categories."""
    brands_per_category: int = 8
    """Size of each category's brand pool."""
    zipf_exponent: float = 1.1
    """Popularity skew within a category: weight of the item ranked r is r ** -zipf_exponent."""
    category_skew: float = 0.8
    """Popularity skew across categories (same power law)."""
    favourite_categories: int = 3
    """Categories in each user's affinity set."""
    days: int = 30
    """Length of the simulated period."""
    start_time: float = 1_696_118_400.0
    """Epoch seconds of the first day (2023-10-01 UTC)."""
    max_session_length: int = 200
    """Hard cap on generated session length."""
    n_regions: int = 20
    """Number of user regions."""
    personas: dict[str, PersonaConfig] = field(default_factory=default_personas)
    """Persona name -> behaviour."""
    generic_words: int = 40
    """Words any item name or query may hold (cheap, new, sale, ...)."""
    words_per_category: int = 12
    """Words of each category's own vocabulary (Zipf-popular), from which names and queries
    draw; every brand has a word of its own and every word a misspelt twin."""
    typo_rate: float = 0.05
    """Share of query words misspelt (written as the word's twin)."""
    query_noise: float = 0.05
    """Share of query words unrelated to what the user looks for (any word)."""
    image_dim: int = 16
    """Length of each item's image feature vector (the fifth article's CNN features are 512)."""


# Median dwell seconds per event type (index = EventType), before the persona's dwell_scale.
DWELL_MEDIAN_S = np.array([25.0, 12.0, 4.0, 8.0, 6.0, 5.0, 60.0, 90.0])
DWELL_SIGMA = 1.0
# Relative frequency of each hour of the day (an evening-peaked diurnal curve).
DIURNAL = 1.0 + 0.8 * np.sin((np.arange(24) - 13) / 24 * 2 * np.pi) ** 2 * (np.arange(24) >= 7)


def transition_matrix(p: PersonaConfig) -> np.ndarray:
    """Row-stochastic (8, 8) matrix: entry [a, b] = P(next type b | current type a)."""
    E = EventType
    m = np.zeros((N_TYPES, N_TYPES))
    m[E.VIEW, [E.ADD_TO_CART, E.FAVOURITE, E.SEARCH, E.CLICK]] = [
        p.view_to_cart,
        p.view_to_favourite,
        p.view_to_search,
        0.05,
    ]
    m[E.VIEW, E.VIEW] = 1.0 - m[E.VIEW].sum()
    m[E.SEARCH, [E.CLICK, E.VIEW, E.SEARCH]] = [0.3, 0.62, 0.08]
    m[E.CLICK, [E.VIEW, E.SEARCH, E.ADD_TO_CART]] = [0.9, 0.05, 0.05]
    m[E.ADD_TO_CART, [E.PURCHASE, E.REMOVE_FROM_CART, E.SEARCH]] = [
        p.cart_to_purchase,
        p.cart_to_remove,
        0.05,
    ]
    m[E.ADD_TO_CART, E.VIEW] = 1.0 - m[E.ADD_TO_CART].sum()
    m[E.REMOVE_FROM_CART, [E.VIEW, E.SEARCH]] = [0.8, 0.2]
    m[E.FAVOURITE, [E.VIEW, E.ADD_TO_CART, E.SEARCH]] = [0.85, 0.1, 0.05]
    m[E.PURCHASE, E.REVIEW] = p.purchase_to_review
    m[E.PURCHASE, [E.VIEW, E.SEARCH]] = np.array([0.6, 0.4]) * (1.0 - p.purchase_to_review)
    m[E.REVIEW, [E.VIEW, E.SEARCH]] = [0.7, 0.3]
    if np.any(m < 0) or not np.allclose(m.sum(axis=1), 1.0):
        raise ValueError("persona transition rates are too large: a row of rates sums above 1")
    return m


@dataclass(frozen=True)
class _Catalogue:
    category: np.ndarray  # (n_items,) items sorted by category, then popularity rank
    price: np.ndarray
    brand: np.ndarray
    cat_start: np.ndarray  # (n_categories + 1,) item offsets per category
    cdf: np.ndarray  # (n_items,) within-category popularity CDF shifted by the category index
    category_weight: np.ndarray


@dataclass(frozen=True)
class _Users:
    persona: np.ndarray
    favourites: np.ndarray  # (n_users, favourite_categories)
    profiles: UserProfiles


@dataclass(frozen=True)
class _Sessions:
    user: np.ndarray  # (n_sessions,) numbered by user, then start time
    start: np.ndarray  # unix seconds
    length: np.ndarray
    device: np.ndarray
    focus: np.ndarray  # the category the session is about
    persona: np.ndarray
    offsets: np.ndarray  # (n_sessions + 1,) each session's first event
    of_event: np.ndarray  # (n_events,) each event's session

    def of(self, values: np.ndarray) -> np.ndarray:
        """A per-session array spread to the events."""
        return values[self.of_event]


def generate(cfg: SyntheticConfig, seed: int) -> Dataset:
    """Generate a dataset; identical output for identical ``cfg`` and ``seed``."""
    check_synthetic_config(cfg)
    rng = np.random.default_rng(seed)
    personas = list(cfg.personas.values())
    catalogue = _make_catalogue(cfg, rng)
    users = _make_users(cfg, personas, catalogue, rng)
    sessions = _make_sessions(cfg, personas, users, catalogue, rng)
    etype = _event_types(personas, sessions, rng)
    item = _event_items(personas, catalogue, users, sessions, etype, rng)
    dwell = _dwell(personas, etype, sessions.of(sessions.persona), rng)
    timestamp = _timestamps(dwell, sessions)
    has_item = item >= 0
    price_factor = sessions.of(np.exp(rng.normal(0.0, 0.05, len(sessions.length))))
    price = np.where(has_item, catalogue.price[np.maximum(item, 0)] * price_factor, np.nan)
    category = np.where(
        has_item, catalogue.category[np.maximum(item, 0)], sessions.of(sessions.focus)
    )
    # Text, images and gender from a stream of their own: the behaviour above stays as it was.
    media = np.random.default_rng([seed, 1])
    text = TextWorld(
        Vocabulary(
            cfg.generic_words,
            cfg.words_per_category,
            cfg.n_categories,
            int(catalogue.brand.max()) + 1,
        ),
        word_popularity(cfg.words_per_category),
        catalogue.category,
        catalogue.brand,
    )
    popular_item = catalogue.cat_start[:-1]  # each category's most popular item comes first
    searches, intended = search_targets(
        etype, item, sessions.of_event, sessions.focus, popular_item
    )
    query, queries = search_queries(
        text, len(etype), searches, intended, cfg.typo_rate, cfg.query_noise, media
    )
    events = EventTable(
        session_id=sessions.of_event,
        user_id=sessions.of(sessions.user),
        timestamp=timestamp,
        event_type=etype,
        item_id=item,
        category_id=category,
        price=np.round(price, 2),
        device=sessions.of(sessions.device),
        dwell=dwell,
        query=query,
    )
    items = ItemAttributes(
        item_id=np.arange(cfg.n_items),
        category_id=catalogue.category,
        brand_id=catalogue.brand,
        price=catalogue.price,
        name=item_names(text, media),
        image=image_features(
            catalogue.category, catalogue.brand, cfg.n_categories, cfg.image_dim, media
        ),
    )
    gender = media.choice(len(GENDERS), size=cfg.n_users, p=[0.49, 0.47, 0.04]).astype(np.int8)
    profiles = replace(users.profiles, gender=gender)
    return Dataset("synthetic", events, profiles, items, queries=queries)


class SyntheticConfigError(ValueError):
    """A generator setting out of range; the message names the setting."""


def check_synthetic_config(cfg: SyntheticConfig) -> None:
    """Raise :class:`SyntheticConfigError` naming the first setting out of range."""
    minimum = {
        "n_users": 1,
        "n_categories": 1,
        "brands_per_category": 1,
        "days": 1,
        "max_session_length": 1,
        "n_regions": 1,
        "favourite_categories": 1,
    }
    for key, low in minimum.items():
        if getattr(cfg, key) < low:
            raise SyntheticConfigError(f"generator.{key}={getattr(cfg, key)} must be >= {low}")
    if cfg.n_items < cfg.n_categories:
        raise SyntheticConfigError(
            f"generator.n_items={cfg.n_items} must be >= generator.n_categories={cfg.n_categories}"
        )
    for key in ("generic_words", "words_per_category", "image_dim"):
        if getattr(cfg, key) < 1:
            raise SyntheticConfigError(f"generator.{key}={getattr(cfg, key)} must be >= 1")
    for key in ("typo_rate", "query_noise"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise SyntheticConfigError(
                f"generator.{key}={getattr(cfg, key)} is a share: use a value in [0, 1]"
            )
    if cfg.zipf_exponent < 0 or cfg.category_skew < 0:
        raise SyntheticConfigError("generator.zipf_exponent and category_skew must be >= 0")
    if not cfg.personas or sum(p.weight for p in cfg.personas.values()) <= 0:
        raise SyntheticConfigError("generator.personas needs one persona with weight > 0")
    for name, p in cfg.personas.items():
        rates = {
            k: v
            for k, v in vars(p).items()
            if k
            not in (
                "weight",
                "session_length_median",
                "session_length_sigma",
                "sessions_per_user",
                "dwell_scale",
            )
        }
        for key, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise SyntheticConfigError(
                    f"generator.personas.{name}.{key}={value} is a "
                    "probability: use a value in [0, 1]"
                )
        if p.session_length_median < 1 or p.sessions_per_user < 1 or p.weight < 0:
            raise SyntheticConfigError(
                f"generator.personas.{name}: session_length_median and "
                "sessions_per_user must be >= 1, weight >= 0"
            )
        if p.session_length_sigma < 0 or p.dwell_scale <= 0:
            raise SyntheticConfigError(
                f"generator.personas.{name}: session_length_sigma must be >= 0 and dwell_scale > 0"
            )
        try:
            transition_matrix(p)
        except ValueError as err:
            raise SyntheticConfigError(f"generator.personas.{name}: {err}") from err


def _power_law(n: int, exponent: float) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return w / w.sum()


def _make_catalogue(cfg: SyntheticConfig, rng: np.random.Generator) -> _Catalogue:
    n_cat = cfg.n_categories
    # Category sizes: a power law with every category holding at least one item.
    extra = rng.multinomial(cfg.n_items - n_cat, _power_law(n_cat, 0.7))
    sizes = 1 + extra
    cat_start = np.concatenate(([0], np.cumsum(sizes)))
    category = np.repeat(np.arange(n_cat), sizes)
    rank = np.arange(cfg.n_items) - cat_start[category] + 1
    weight = rank.astype(np.float64) ** -cfg.zipf_exponent
    cum = np.cumsum(weight)
    before = np.concatenate(([0.0], cum[cat_start[1:-1] - 1]))
    total = cum[cat_start[1:] - 1] - before
    cdf = (cum - before[category]) / total[category] + category
    mu = rng.normal(np.log(30.0), 1.0, n_cat)
    sigma = rng.uniform(0.3, 0.7, n_cat)
    price = np.round(np.exp(rng.normal(mu[category], sigma[category])), 2).astype(np.float32)
    price = np.maximum(price, np.float32(0.01))
    brand = category * cfg.brands_per_category + rng.integers(
        0, cfg.brands_per_category, cfg.n_items
    )
    category_weight = _power_law(n_cat, cfg.category_skew)[rng.permutation(n_cat)]
    return _Catalogue(category, price, brand.astype(np.int64), cat_start, cdf, category_weight)


def _make_users(
    cfg: SyntheticConfig,
    personas: list[PersonaConfig],
    catalogue: _Catalogue,
    rng: np.random.Generator,
) -> _Users:
    n = cfg.n_users
    mix = np.array([p.weight for p in personas], dtype=np.float64)
    persona = rng.choice(len(personas), size=n, p=mix / mix.sum())
    # Buyers skew older, browsers younger: shift the age distribution by persona index.
    age_base = np.array([0.15, 0.28, 0.24, 0.17, 0.1, 0.06])
    age = np.clip(
        rng.choice(len(AGE_BANDS), size=n, p=age_base) + (persona % 2), 0, len(AGE_BANDS) - 1
    )
    region = rng.choice(cfg.n_regions, size=n, p=_power_law(cfg.n_regions, 0.6))
    device = rng.choice(len(DEVICES), size=n, p=[0.35, 0.25, 0.2, 0.15, 0.05])
    tenure = rng.lognormal(np.log(400.0), 1.0, n).astype(np.float32)
    k = min(cfg.favourite_categories, cfg.n_categories)
    # Gumbel top-k: k distinct favourite categories per user, weighted by category popularity.
    keys = np.log(catalogue.category_weight)[None, :] + rng.gumbel(size=(n, cfg.n_categories))
    favourites = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    profiles = UserProfiles(
        user_id=np.arange(n, dtype=np.int64),
        age_band=age.astype(np.int8),
        region=region.astype(np.int16),
        device=device.astype(np.int8),
        tenure_days=tenure,
    )
    return _Users(persona, favourites, profiles)


def _make_sessions(
    cfg: SyntheticConfig,
    personas: list[PersonaConfig],
    users: _Users,
    catalogue: _Catalogue,
    rng: np.random.Generator,
) -> _Sessions:
    spu = np.array([p.sessions_per_user for p in personas])[users.persona]
    n_sess = 1 + rng.poisson(np.maximum(spu - 1.0, 0.0))
    sess_user = np.repeat(np.arange(cfg.n_users), n_sess)
    n = len(sess_user)
    day = rng.integers(0, cfg.days, n)
    hour = rng.choice(24, size=n, p=DIURNAL / DIURNAL.sum())
    start = cfg.start_time + day * 86400.0 + hour * 3600.0 + rng.uniform(0, 3600.0, n)
    order = np.lexsort((start, sess_user))  # sessions numbered by user, then start time
    sess_user, start = sess_user[order], start[order]
    persona = users.persona[sess_user]
    median = np.array([p.session_length_median for p in personas])[persona]
    sigma = np.array([p.session_length_sigma for p in personas])[persona]
    length = np.rint(np.exp(rng.normal(np.log(median), sigma)))
    length = np.clip(length, 1, cfg.max_session_length).astype(np.int64)
    primary = users.profiles.device[sess_user]
    other = rng.integers(0, len(DEVICES), n).astype(np.int8)
    device = np.where(rng.random(n) < 0.85, primary, other).astype(np.int8)
    k = users.favourites.shape[1]
    fav_pick = users.favourites[sess_user, rng.integers(0, k, n)]
    global_pick = rng.choice(cfg.n_categories, size=n, p=catalogue.category_weight)
    focus = np.where(rng.random(n) < 0.8, fav_pick, global_pick)
    offsets = np.concatenate(([0], np.cumsum(length))).astype(np.int64)
    of_event = np.repeat(np.arange(n), length)
    return _Sessions(sess_user, start, length, device, focus, persona, offsets, of_event)


def _event_types(
    personas: list[PersonaConfig], sessions: _Sessions, rng: np.random.Generator
) -> np.ndarray:
    """Run every session's Markov chain one position at a time, vectorised across sessions."""
    sess_persona, sess_len, offsets = sessions.persona, sessions.length, sessions.offsets
    cum = np.cumsum(np.stack([transition_matrix(p) for p in personas]), axis=2)
    cum[..., -1] = 1.0  # guard the last bin against rounding
    p_search = np.array([p.start_with_search for p in personas])[sess_persona]
    by_len = np.argsort(-sess_len, kind="stable")  # active sessions form a prefix at each step
    sorted_len = sess_len[by_len]
    out = np.empty(int(offsets[-1]), dtype=np.int8)
    state = np.where(
        rng.random(len(by_len)) < p_search[by_len], EventType.SEARCH, EventType.VIEW
    ).astype(np.int8)
    for t in range(int(sorted_len[0]) if len(sorted_len) else 0):
        n_active = int(np.searchsorted(-sorted_len, -t, side="left"))  # sessions longer than t
        active = by_len[:n_active]
        if t > 0:
            rows = cum[sess_persona[active], state[:n_active]]  # (n_active, 8)
            u = rng.random(n_active)
            state = (u[:, None] > rows).sum(axis=1).astype(np.int8)
        out[offsets[active] + t] = state[:n_active]
    return out


def _event_items(
    personas: list[PersonaConfig],
    catalogue: _Catalogue,
    users: _Users,
    sessions: _Sessions,
    etype: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    E = EventType
    n = len(etype)
    session_start = sessions.of(sessions.offsets)
    repeat_p = np.array([p.repeat_item for p in personas], dtype=np.float32)[sessions.persona]
    browse = (etype == E.VIEW) | (etype == E.CLICK)
    repeat = (etype == E.VIEW) & (rng.random(n, dtype=np.float32) < sessions.of(repeat_p))
    fresh = browse & ~repeat
    item = np.full(n, MISSING_ID, dtype=np.int64)
    rows = np.flatnonzero(fresh)
    item[rows] = _browse_items(personas, catalogue, users, sessions, rows, rng)
    # A repeated view shows the most recent fresh browse item of its session (or a new one).
    source = _last_where(fresh, session_start)
    first = np.flatnonzero(repeat & (source < 0))
    item[first] = _browse_items(personas, catalogue, users, sessions, first, rng)
    late = np.flatnonzero(repeat & (source >= 0))
    item[late] = item[source[late]]
    # Funnel events refer back to the item they act on.
    for kinds, flag in (
        ((E.ADD_TO_CART, E.FAVOURITE), browse),
        ((E.PURCHASE, E.REMOVE_FROM_CART), etype == E.ADD_TO_CART),
        ((E.REVIEW,), etype == E.PURCHASE),
    ):
        rows = np.flatnonzero(np.isin(etype, kinds))
        ref = _last_where(flag, session_start)[rows]
        item[rows[ref >= 0]] = item[ref[ref >= 0]]
        orphans = rows[ref < 0]
        item[orphans] = _browse_items(personas, catalogue, users, sessions, orphans, rng)
    return item


def _browse_items(
    personas: list[PersonaConfig],
    catalogue: _Catalogue,
    users: _Users,
    sessions: _Sessions,
    rows: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """New items for event ``rows``: focus category or affinity, popularity, price sensitivity."""
    sess = sessions.of_event[rows]
    persona = sessions.persona[sess]
    focus_p = np.array([p.focus for p in personas], dtype=np.float32)[persona]
    k = users.favourites.shape[1]
    affinity = users.favourites.ravel()[sessions.user[sess] * k + rng.integers(0, k, len(rows))]
    category = np.where(
        rng.random(len(rows), dtype=np.float32) < focus_p, sessions.focus[sess], affinity
    )
    item = _sample_items(catalogue, category, rng)
    cheap_p = np.array([p.price_sensitivity for p in personas], dtype=np.float32)[persona]
    picky = np.flatnonzero(rng.random(len(rows), dtype=np.float32) < cheap_p)
    second = _sample_items(catalogue, category[picky], rng)
    item[picky] = np.where(
        catalogue.price[second] < catalogue.price[item[picky]], second, item[picky]
    )
    return item


def _sample_items(
    catalogue: _Catalogue, category: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw one item per entry of ``category`` by within-category popularity."""
    target = category + rng.random(len(category))
    idx = np.searchsorted(catalogue.cdf, target, side="left")
    return np.clip(idx, catalogue.cat_start[category], catalogue.cat_start[category + 1] - 1)


def _last_where(
    flag: np.ndarray, session_start: np.ndarray, fallback_self: bool = False
) -> np.ndarray:
    """Index of the most recent earlier row (same session) where ``flag`` holds, else -1.

    With ``fallback_self`` the row itself counts, so a flagged row maps to itself.
    """
    idx = np.where(flag, np.arange(len(flag)), -1)
    if not fallback_self:
        idx = np.concatenate(([-1], idx[:-1]))
    last = np.maximum.accumulate(idx) if len(idx) else idx
    return np.where(last >= session_start, last, -1)


def _dwell(
    personas: list[PersonaConfig], etype: np.ndarray, persona: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    scale = np.array([p.dwell_scale for p in personas], dtype=np.float32)[persona]
    median = DWELL_MEDIAN_S.astype(np.float32)[etype] * scale
    noise = rng.standard_normal(len(etype), dtype=np.float32) * np.float32(DWELL_SIGMA)
    return median * np.exp(noise)


def _timestamps(dwell: np.ndarray, sessions: _Sessions) -> np.ndarray:
    """Each event starts when the previous event's dwell ends."""
    elapsed = np.cumsum(dwell, dtype=np.float64)
    before = np.concatenate(([0.0], elapsed[:-1]))
    session_base = before[sessions.offsets[:-1]]
    return sessions.of(sessions.start) + before - sessions.of(session_base)
