"""The anomaly types. Each injector's docstring is its generative story.

Severity ``s`` in [0, 1] moves every knob from what the data's own statistics give (``s = 0``:
the injected material is drawn from the split's normal profile, so it looks normal) to the
blatant end set by the type's parameters (``s = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.anomalies.core import Context, Session, any_per_session, injector, with_session
from datasets.schema import MISSING_ID, EventTable, EventType

E = EventType


@dataclass
class ClickFloodParams:
    max_events: int = 40
    """Views in a burst at severity 1 (2 at severity 0)."""
    bot_gap_s: float = 0.3
    """Median seconds between burst views at severity 1."""


@dataclass
class BrushingParams:
    max_orders: int = 6
    """Fake orders at severity 1 (1 at severity 0)."""
    order_gap_s: float = 3.0
    """Median seconds between steps of a fake order at severity 1."""


@dataclass
class ScrapingParams:
    max_events: int = 60
    """Catalogue pages visited at severity 1 (3 at severity 0)."""
    pace_s: float = 2.0
    """Seconds between pages at severity 1 (steady pace)."""


@dataclass
class CartAbuseParams:
    max_pairs: int = 15
    """Add/remove pairs at severity 1 (1 at severity 0)."""
    pair_gap_s: float = 1.5
    """Median seconds between cart actions at severity 1."""


@dataclass
class AccountTakeoverParams:
    price_factor: float = 8.0
    """Price level of the intruder's items relative to the victim's, at severity 1."""


@dataclass
class PriceOutlierParams:
    max_factor: float = 25.0
    """Multiplier (or divisor) on a purchase's price at severity 1."""
    p_up: float = 0.8
    """Probability the price is inflated rather than deflated."""


@dataclass
class TimingBotParams:
    jitter: float = 0.01
    """Relative spread of the bot's interval at severity 1."""


@dataclass
class SessionHijackParams:
    max_fraction: float = 0.6
    """Share of the session replaced by the spliced segment at severity 1 (0.2 at 0)."""
    candidates: int = 16
    """Donor sessions compared (half from the victim's main category) when picking how foreign
    the segment is."""


@dataclass
class FunnelViolationParams:
    pass


@injector("click_flood", needs_catalogue=True, params=ClickFloodParams, min_length=1)
def click_flood(s: Session, ctx: Context) -> Session:
    """A bot opens many product pages in a burst: 2 (s=0) to ``max_events`` views, a few target
    items hammered repeatedly, with gaps shrinking from human dwell times to ``bot_gap_s``."""
    p: ClickFloodParams = ctx.params
    n_new = ctx.room(round(ctx.lerp(2, p.max_events)))
    at = ctx.insertion_point(len(s), n_new)
    targets = ctx.profile.sample_items(3, ctx.rng)
    browsing = ctx.session_items(s, n_new)
    items = np.where(ctx.rng.random(n_new) < ctx.severity, ctx.rng.choice(targets, n_new), browsing)
    types = np.full(n_new, E.VIEW, dtype=np.int8)
    bot_gap = p.bot_gap_s * np.exp(ctx.rng.normal(0.0, 0.3, n_new))
    gap = ctx.loglerp(ctx.profile.sample_gaps(types, ctx.rng), bot_gap)
    return ctx.place(s, at, _item_events(s, ctx, at, types, items), gap)


@injector("brushing", needs_catalogue=True, params=BrushingParams, min_length=1)
def brushing(s: Session, ctx: Context) -> Session:
    """A brushing farm fakes orders to push a seller's items up the rankings: search, little or
    no browsing, purchase of the same one or two obscure items, repeated. At s=0 an order is an
    ordinary search-and-browse visit that buys at the data's own rate."""
    p: BrushingParams = ctx.params
    n_orders = round(ctx.lerp(1, p.max_orders))
    obscure = ctx.profile.sample_items(2, ctx.rng, popular=False)
    browse_n = round(ctx.lerp(5, 0))
    buy_p = ctx.lerp(min(1.0, ctx.profile.purchase_share * (browse_n + 2)), 1.0)
    # Every order drawn at once: its browsing, whether it buys, what, and whether the target.
    targets = obscure[ctx.rng.integers(0, len(obscure), n_orders)]
    browsed = ctx.session_items(s, n_orders * browse_n).reshape(n_orders, browse_n)
    buys = ctx.rng.random(n_orders) < buy_p
    on_target = ctx.rng.random(n_orders) < ctx.severity
    types, items = [], []
    for k in range(n_orders):
        types += [E.SEARCH] + [E.VIEW] * browse_n
        items += [MISSING_ID, *browsed[k].tolist()]
        if buys[k]:
            types.append(E.PURCHASE)
            items.append(targets[k] if on_target[k] else items[-1])
    types_arr = np.asarray(types[: ctx.room(len(types))], dtype=np.int8)
    items_arr = np.asarray(items[: len(types_arr)], dtype=np.int64)
    items_arr = _fill_missing_item(items_arr, types_arr, ctx)
    at = ctx.insertion_point(len(s), len(types_arr))
    gap = ctx.loglerp(ctx.profile.sample_gaps(types_arr, ctx.rng), p.order_gap_s)
    ctx.record.update(orders=n_orders)
    return ctx.place(s, at, _item_events(s, ctx, at, types_arr, items_arr), gap)


@injector("scraping", needs_catalogue=True, params=ScrapingParams, min_length=1)
def scraping(s: Session, ctx: Context) -> Session:
    """A scraper walks the catalogue in id order, category after category, at a steady pace. At
    s=0 the pages are popularity-drawn items at human gaps; at s=1 every page is the next item."""
    p: ScrapingParams = ctx.params
    n_new = ctx.room(round(ctx.lerp(3, p.max_events)))
    at = ctx.insertion_point(len(s), n_new)
    order = ctx.profile.by_category  # items by (category, id), sorted once per profile
    start = int(ctx.rng.integers(len(order)))
    walk = ctx.profile.items[order[(start + np.arange(n_new)) % len(order)]]
    random_items = ctx.session_items(s, n_new)
    items = np.where(ctx.rng.random(n_new) < ctx.severity, walk, random_items)
    types = np.full(n_new, E.VIEW, dtype=np.int8)
    human = ctx.profile.sample_gaps(types, ctx.rng)
    steady = p.pace_s * np.exp(ctx.rng.normal(0.0, 0.05, n_new))
    gap = ctx.loglerp(human, steady)
    return ctx.place(s, at, _item_events(s, ctx, at, types, items), gap)


@injector("cart_abuse", needs_catalogue=True, params=CartAbuseParams, min_length=1)
def cart_abuse(s: Session, ctx: Context) -> Session:
    """Inventory hoarding or coupon probing: items added to and removed from the cart again and
    again, and the session's purchases abandoned (turned into removals). At s=0 the pairs are
    plain views and purchases stand."""
    p: CartAbuseParams = ctx.params
    n_pairs = round(ctx.lerp(1, p.max_pairs))
    abusive = ctx.rng.random(n_pairs) < ctx.severity
    pair_items = ctx.session_items(s, n_pairs)
    first = np.where(abusive, E.ADD_TO_CART, E.VIEW)
    second = np.where(abusive, E.REMOVE_FROM_CART, E.VIEW)
    types = np.stack([first, second], axis=1).ravel()[: ctx.room(2 * n_pairs)].astype(np.int8)
    items = np.repeat(pair_items, 2)[: len(types)]
    at = ctx.insertion_point(len(s), len(types))
    gap = ctx.loglerp(ctx.profile.sample_gaps(types, ctx.rng), p.pair_gap_s)
    out = ctx.place(s, at, _item_events(s, ctx, at, types, items), gap)
    abandon = (out.cols["event_type"] == E.PURCHASE) & (ctx.rng.random(len(out)) < ctx.severity)
    etype = np.where(abandon, E.REMOVE_FROM_CART, out.cols["event_type"]).astype(np.int8)
    ctx.record.update(pairs=n_pairs, abusive_pairs=int(abusive.sum()))
    return with_session(out, event_type=etype)


@injector("account_takeover", needs_catalogue=True, params=AccountTakeoverParams, min_length=3)
def account_takeover(s: Session, ctx: Context) -> Session:
    """An intruder takes over mid-session: from the takeover point on, each item is replaced
    (with probability s) by one from another category (the whole tail switches category with
    probability s), prices rise up to ``price_factor`` times, and the device changes (with
    probability s). Each original item maps to one replacement, so the intruder's own funnel
    (view, cart, purchase of one item) stays consistent; at s=0 nothing changes."""
    p: AccountTakeoverParams = ctx.params
    n = len(s)
    at = min(max(1, ctx.insertion_point(n, 1)), n - 1)
    out = s.copy()
    tail = np.arange(at, n)
    categories = ctx.profile.categories
    seen = _positions_in(categories, s.cols["category_id"][:at])
    n_foreign = len(categories) - len(seen)
    switch = ctx.rng.random() < ctx.severity and n_foreign > 0
    new_cat = int(categories[_kth_outside(seen, int(ctx.rng.integers(n_foreign)))]) if switch else 0
    # Each distinct item of the tail gets the intruder's item for it, or (probability 1 - s)
    # keeps itself; the order of first appearance fixes which draw is whose.
    old = s.cols["item_id"][tail]
    has_item = old >= 0
    distinct, first, inverse = np.unique(old[has_item], return_index=True, return_inverse=True)
    by_appearance = np.argsort(first, kind="stable")
    replace = ctx.rng.random(len(distinct)) < ctx.severity
    cats = (
        np.full(len(distinct), new_cat) if switch else s.cols["category_id"][tail][has_item][first]
    )
    drawn = ctx.profile.sample_items_like(cats[by_appearance], ctx.rng)
    new = distinct.copy()
    new[by_appearance] = np.where(replace, drawn, distinct[by_appearance])
    out.cols["item_id"][tail[has_item]] = new[inverse]
    rows = tail[out.cols["item_id"][tail] != s.cols["item_id"][tail]]
    items = out.cols["item_id"][rows]
    out.cols["category_id"][rows] = ctx.profile.category_of(items)
    out.cols["price"][rows] = ctx.profile.price_of(items)
    if switch:
        out.cols["category_id"][tail[out.cols["item_id"][tail] < 0]] = new_cat
    level = float(ctx.loglerp(1.0, p.price_factor))
    priced = tail[np.isfinite(out.cols["price"][tail])]
    if level != 1.0:
        out.cols["price"][priced] = np.round(out.cols["price"][priced] * level, 2)
    if "device" in out.cols and len(ctx.profile.devices) > 1 and ctx.rng.random() < ctx.severity:
        current = out.cols["device"][at]
        others = ctx.profile.devices[ctx.profile.devices != current]
        out.cols["device"][tail] = ctx.rng.choice(others)
    ctx.record.update(at=at, switched_category=bool(switch))
    return out


def _positions_in(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sorted distinct positions in ``sorted_values`` of the ``values`` found there."""
    distinct = np.unique(values)
    pos = np.searchsorted(sorted_values, distinct)
    inside = pos < len(sorted_values)
    return pos[inside][sorted_values[pos[inside]] == distinct[inside]]


def _kth_outside(excluded: np.ndarray, k: int) -> int:
    """The index of the ``k``-th (from 0) position not in ``excluded`` (sorted, distinct)."""
    return k + int(np.searchsorted(excluded - np.arange(len(excluded)), k, side="right"))


def _has_priced_purchase(events: EventTable, offsets: np.ndarray) -> np.ndarray:
    flag = (events.event_type == E.PURCHASE) & np.isfinite(events.price)
    return any_per_session(flag, offsets)


@injector("price_outlier", params=PriceOutlierParams, min_length=1, eligible=_has_priced_purchase)
def price_outlier(s: Session, ctx: Context) -> Session:
    """A purchase at an amount far outside the item's usual price (card testing, a pricing
    exploit, laundering): one priced purchase is multiplied (or, with probability 1 - p_up,
    divided) by a factor rising from 1 (s=0) to ``max_factor`` (s=1)."""
    p: PriceOutlierParams = ctx.params
    rows = np.flatnonzero((s.cols["event_type"] == E.PURCHASE) & np.isfinite(s.cols["price"]))
    row = int(_pick_by_position(rows, len(s), ctx))
    factor = float(ctx.loglerp(1.0, p.max_factor))
    factor = factor if ctx.rng.random() < p.p_up else 1.0 / factor
    out = s.copy()
    out.cols["price"][row] = np.round(out.cols["price"][row] * factor, 2)
    ctx.record.update(row=row, factor=factor)
    return out


@injector("timing_bot", params=TimingBotParams, min_length=4)
def timing_bot(s: Session, ctx: Context) -> Session:
    """A script acts on a timer: from the takeover point on, every gap moves geometrically from
    the human one (s=0) to the session's median gap with ``jitter`` relative noise (s=1)."""
    p: TimingBotParams = ctx.params
    n = len(s)
    at = 1 if ctx.position in ("start", "random") else min(ctx.insertion_point(n, 1), n - 2)
    out = s.copy()
    human = np.maximum(s.gap[at:], 1e-3)
    interval = float(np.median(human)) * np.exp(ctx.rng.normal(0.0, p.jitter, len(human)))
    out.gap[at:] = ctx.loglerp(human, interval)
    ctx.record.update(at=at, interval_s=float(np.median(interval)))
    return out


@injector("session_hijack", params=SessionHijackParams, min_length=3)
def session_hijack(s: Session, ctx: Context) -> Session:
    """A segment of another user's session is spliced in place of part of this one (a stolen
    session cookie used in parallel). The donor is picked among ``candidates`` sessions by how
    foreign its categories and device are: the most similar at s=0, the least at s=1. Each
    spliced event keeps the original with probability 1 - s (at s=0 nothing changes)."""
    p: SessionHijackParams = ctx.params
    n = len(s)
    length = max(1, min(n - 1, round(ctx.lerp(0.2, p.max_fraction) * n)))
    k = max(2, p.candidates)
    donors = [ctx.donor(i % 2 == 0) for i in range(k)]
    distance = np.array([_foreignness(s, d) for d in donors])
    rank = round(ctx.severity * (len(donors) - 1))
    donor = donors[int(np.argsort(distance, kind="stable")[rank])]
    length = min(length, len(donor))
    at = min(ctx.insertion_point(n, 1), n - length)
    at = max(at, 1)
    q = int(ctx.rng.integers(0, len(donor) - length + 1))
    segment = donor.take(np.arange(q, q + length))
    keep = {k: v for k, v in segment.cols.items() if k not in ("session_id", "user_id")}
    cols = {**{k: v[at : at + length] for k, v in s.cols.items()}, **keep}
    gap = segment.gap.copy()
    gap[0] = s.gap[at]
    ctx.record.update(
        at=at,
        length=length,
        donor_foreignness=float(distance[np.argsort(distance, kind="stable")[rank]]),
    )
    return ctx.keep_originals(s, s.splice(at, length, cols, gap), at, length)


def _foreignness(a: Session, b: Session) -> float:
    cats_a, cats_b = set(a.cols["category_id"].tolist()), set(b.cols["category_id"].tolist())
    jaccard = len(cats_a & cats_b) / max(1, len(cats_a | cats_b))
    device_differs = 0.0
    if "device" in a.cols:
        device_differs = float(
            np.bincount(a.cols["device"] + 1).argmax() != np.bincount(b.cols["device"] + 1).argmax()
        )
    return (1.0 - jaccard) + device_differs


def _has_movable_purchase(events: EventTable, offsets: np.ndarray) -> np.ndarray:
    not_first = np.ones(len(events), dtype=bool)
    not_first[offsets[:-1]] = False
    return any_per_session((events.event_type == E.PURCHASE) & not_first, offsets)


@injector(
    "funnel_violation", params=FunnelViolationParams, min_length=2, eligible=_has_movable_purchase
)
def funnel_violation(s: Session, ctx: Context) -> Session:
    """Events out of funnel order (an order API called directly, replayed requests): a purchase
    moves earlier, by a share s of the way to the session's start, so at s=1 it precedes every
    view and cart of its item. At s=0 it stays where it was."""
    rows = np.flatnonzero(s.cols["event_type"] == E.PURCHASE)
    rows = rows[rows >= 1]
    row = int(_pick_by_position(rows, len(s), ctx))
    target = row - round(ctx.severity * row)
    order = np.concatenate(
        [np.arange(target), [row], np.arange(target, row), np.arange(row + 1, len(s))]
    ).astype(np.int64)
    gap = s.gap.copy()
    if target == 0:
        gap[0] = s.gap[row]  # the displaced first event needs a gap: the purchase's own
    out = Session(s.cols, gap, s.t0, s.origin).take(order)
    ctx.record.update(row=row, moved_to=target)
    return out


def _pick_by_position(rows: np.ndarray, n: int, ctx: Context) -> int:
    if ctx.position == "random":
        return int(ctx.rng.choice(rows))
    goal = {"start": 0, "middle": n // 2, "end": n - 1}[ctx.position]
    return int(rows[np.argmin(np.abs(rows - goal))])


def _item_events(
    s: Session, ctx: Context, at: int, types: np.ndarray, items: np.ndarray
) -> dict[str, np.ndarray]:
    """Columns for new events of ``types`` on ``items``, copying ids and device from a neighbour."""
    cols = s.new_cols(len(types), like=at - 1)
    has_item = items >= 0
    cols["event_type"] = types
    cols["item_id"] = items
    category = np.full(len(items), int(s.cols["category_id"][at - 1]), dtype=np.int64)
    category[has_item] = ctx.profile.category_of(items[has_item])
    cols["category_id"] = category
    price = np.full(len(items), np.nan, dtype=np.float32)
    price[has_item] = ctx.profile.price_of(items[has_item])
    cols["price"] = price
    if "dwell" in cols:
        cols["dwell"] = np.full(len(items), np.nan, dtype=np.float32)
    return cols


def _fill_missing_item(items: np.ndarray, types: np.ndarray, ctx: Context) -> np.ndarray:
    """A purchase needs an item: a purchase right after a search buys a popular item."""
    missing = (items < 0) & (types != E.SEARCH)
    items = items.copy()
    items[missing] = ctx.profile.sample_items(int(missing.sum()), ctx.rng)
    return items


# The package's own types, in the order of every type list (types registered by plugins follow).
BUILTIN_TYPES: tuple[str, ...] = (
    "click_flood",
    "brushing",
    "scraping",
    "cart_abuse",
    "account_takeover",
    "price_outlier",
    "timing_bot",
    "session_hijack",
    "funnel_violation",
)
