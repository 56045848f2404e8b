"""The anomaly types. Each injector's docstring is its generative story.

Severity ``s`` in [0, 1] moves every knob from what the data's own statistics give (``s = 0``:
the injected material is drawn from the split's normal profile, so it looks normal) to the
blatant end set by the type's parameters (``s = 1``).

Each type edits all its victims at once (a ``Batch``; see ``benchmark/anomalies/batch.py``):
every knob and draw is an array with one entry per victim, or per new event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.anomalies.batch import (
    Batch,
    BatchContext,
    NewEvents,
    offsets_of,
    owner_of,
    ragged_arange,
    splice,
)
from benchmark.anomalies.core import any_per_session, injector
from benchmark.anomalies.profile import median_per_group
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
    reference: str = "item"
    """What the factor multiplies: 'item' (the purchase's own price) or 'user' (the median
    of the user's priced purchases in the split: an amount far above the user's usual; the
    purchase's own price for a user without another)."""


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


@injector("click_flood", needs_catalogue=True, params=ClickFloodParams, min_length=1, batched=True)
def click_flood(b: Batch, ctx: BatchContext) -> Batch:
    """A bot opens many product pages in a burst: 2 (s=0) to ``max_events`` views, a few target
    items hammered repeatedly, with gaps shrinking from human dwell times to ``bot_gap_s``."""
    p: ClickFloodParams = ctx.params
    n_new = ctx.room(ctx.rounded(2, p.max_events))
    at = ctx.insertion_point(b.lengths, n_new)
    targets = ctx.profile.sample_items(3 * len(b), ctx.rng).reshape(len(b), 3)
    browsing = ctx.session_items(b, n_new)
    owner, u = ctx.draws(n_new)
    hammered = targets[owner, ctx.rng.integers(0, 3, len(owner))]
    items = np.where(u < ctx.severity[owner], hammered, browsing)
    types = np.full(len(owner), E.VIEW, dtype=np.int8)
    bot_gap = p.bot_gap_s * np.exp(ctx.rng.normal(0.0, 0.3, len(owner)))
    gap = ctx.loglerp(ctx.profile.sample_gaps(types, ctx.rng), bot_gap, owner)
    return ctx.place(b, at, _item_events(b, ctx, at, types, items, gap, n_new))


@injector("brushing", needs_catalogue=True, params=BrushingParams, min_length=1, batched=True)
def brushing(b: Batch, ctx: BatchContext) -> Batch:
    """A brushing farm fakes orders to push a seller's items up the rankings: search, little or
    no browsing, purchase of the same one or two obscure items, repeated. At s=0 an order is an
    ordinary search-and-browse visit that buys at the data's own rate."""
    p: BrushingParams = ctx.params
    n_orders = ctx.rounded(1, p.max_orders)
    obscure = ctx.profile.sample_items(2 * len(b), ctx.rng, popular=False).reshape(len(b), 2)
    browse_n = ctx.rounded(5, 0)
    buy_p = ctx.lerp(np.minimum(1.0, ctx.profile.purchase_share * (browse_n + 2)), 1.0)
    # Every order drawn at once: its browsing, whether it buys, what, and whether the target.
    of_order = owner_of(n_orders)  # each order's victim
    targets = obscure[of_order, ctx.rng.integers(0, 2, len(of_order))]
    browsed = ctx.session_items(b, n_orders * browse_n)  # each order's views, in order
    buys = ctx.rng.random(len(of_order)) < buy_p[of_order]
    on_target = ctx.rng.random(len(of_order)) < ctx.severity[of_order]
    views = browse_n[of_order]
    # An order is a search, its views, and a purchase when it buys.
    order_length = 1 + views + buys
    order, step = owner_of(order_length), ragged_arange(order_length)
    types = np.where(step == 0, E.SEARCH, np.where(step <= views[order], E.VIEW, E.PURCHASE))
    first_view = offsets_of(views)[:-1][order]
    items = np.full(len(order), MISSING_ID, dtype=np.int64)
    viewing = types == E.VIEW
    items[viewing] = browsed[(first_view + step - 1)[viewing]]
    # a purchase buys the target, or else the order's last view (nothing after a bare search)
    buying = np.flatnonzero(types == E.PURCHASE)
    after_view = buying[views[order[buying]] > 0]
    items[after_view] = items[after_view - 1]
    items[buying] = np.where(on_target[order[buying]], targets[order[buying]], items[buying])
    # Each victim's orders, cut to the room its session has.
    per_victim = np.bincount(of_order, weights=order_length, minlength=len(b)).astype(np.int64)
    keep = ctx.room(per_victim)
    rows = np.flatnonzero(ragged_arange(per_victim) < np.repeat(keep, per_victim))
    types, items = types[rows].astype(np.int8), _fill_missing_item(items[rows], types[rows], ctx)
    at = ctx.insertion_point(b.lengths, keep)
    gap = ctx.loglerp(ctx.profile.sample_gaps(types, ctx.rng), p.order_gap_s, owner_of(keep))
    ctx.record.update(orders=n_orders)
    return ctx.place(b, at, _item_events(b, ctx, at, types, items, gap, keep))


@injector("scraping", needs_catalogue=True, params=ScrapingParams, min_length=1, batched=True)
def scraping(b: Batch, ctx: BatchContext) -> Batch:
    """A scraper walks the catalogue in id order, category after category, at a steady pace. At
    s=0 the pages are popularity-drawn items at human gaps; at s=1 every page is the next item."""
    p: ScrapingParams = ctx.params
    n_new = ctx.room(ctx.rounded(3, p.max_events))
    at = ctx.insertion_point(b.lengths, n_new)
    order = ctx.profile.by_category  # items by (category, id), sorted once per profile
    start = ctx.rng.integers(0, len(order), len(b))
    owner, u = ctx.draws(n_new)
    walk = ctx.profile.items[order[(start[owner] + ragged_arange(n_new)) % len(order)]]
    random_items = ctx.session_items(b, n_new)
    items = np.where(u < ctx.severity[owner], walk, random_items)
    types = np.full(len(owner), E.VIEW, dtype=np.int8)
    human = ctx.profile.sample_gaps(types, ctx.rng)
    steady = p.pace_s * np.exp(ctx.rng.normal(0.0, 0.05, len(owner)))
    gap = ctx.loglerp(human, steady, owner)
    return ctx.place(b, at, _item_events(b, ctx, at, types, items, gap, n_new))


@injector("cart_abuse", needs_catalogue=True, params=CartAbuseParams, min_length=1, batched=True)
def cart_abuse(b: Batch, ctx: BatchContext) -> Batch:
    """Inventory hoarding or coupon probing: items added to and removed from the cart again and
    again, and the session's purchases abandoned (turned into removals). At s=0 the pairs are
    plain views and purchases stand."""
    p: CartAbuseParams = ctx.params
    n_pairs = ctx.rounded(1, p.max_pairs)
    pair_owner, u = ctx.draws(n_pairs)
    abusive = u < ctx.severity[pair_owner]
    pair_items = ctx.session_items(b, n_pairs)
    first = np.where(abusive, E.ADD_TO_CART, E.VIEW)
    second = np.where(abusive, E.REMOVE_FROM_CART, E.VIEW)
    types = np.stack([first, second], axis=1).ravel().astype(np.int8)
    items = np.repeat(pair_items, 2)
    keep = ctx.room(2 * n_pairs)
    rows = np.flatnonzero(ragged_arange(2 * n_pairs) < np.repeat(keep, 2 * n_pairs))
    types, items = types[rows], items[rows]
    at = ctx.insertion_point(b.lengths, keep)
    gap = ctx.loglerp(ctx.profile.sample_gaps(types, ctx.rng), p.pair_gap_s, owner_of(keep))
    out = ctx.place(b, at, _item_events(b, ctx, at, types, items, gap, keep))
    owner, u = ctx.draws(out.lengths)
    abandon = (out.cols["event_type"] == E.PURCHASE) & (u < ctx.severity[owner])
    etype = np.where(abandon, E.REMOVE_FROM_CART, out.cols["event_type"]).astype(np.int8)
    ctx.record.update(
        pairs=n_pairs, abusive_pairs=np.bincount(pair_owner[abusive], minlength=len(b))
    )
    return out.with_cols(event_type=etype)


@injector(
    "account_takeover",
    needs_catalogue=True,
    params=AccountTakeoverParams,
    min_length=3,
    batched=True,
)
def account_takeover(b: Batch, ctx: BatchContext) -> Batch:
    """An intruder takes over mid-session: from the takeover point on, each item is replaced
    (with probability s) by one from another category (the whole tail switches category with
    probability s), prices rise up to ``price_factor`` times, and the device changes (with
    probability s). Each original item maps to one replacement, so the intruder's own funnel
    (view, cart, purchase of one item) stays consistent; at s=0 nothing changes."""
    p: AccountTakeoverParams = ctx.params
    n = b.lengths
    at = np.minimum(np.maximum(1, ctx.insertion_point(n, np.ones_like(n))), n - 1)
    out = b.copy()
    owner, pos = b.owner(), b.position()
    tail = pos >= at[owner]
    new_cat, switch = _foreign_category(b, ctx, owner[~tail], b.cols["category_id"][~tail])
    # Each distinct item of a victim's tail gets the intruder's item for it, or (probability
    # 1 - s) keeps itself.
    rows = np.flatnonzero(tail & (b.cols["item_id"] >= 0))
    old = b.cols["item_id"][rows]
    distinct, inverse, d_owner = distinct_items(b, rows)
    replace = ctx.rng.random(len(distinct)) < ctx.severity[d_owner]
    own_category = b.cols["category_id"][rows[distinct]]
    cats = np.where(switch[d_owner], new_cat[d_owner], own_category)
    drawn = ctx.profile.sample_items_like(cats, ctx.rng)
    out.cols["item_id"][rows] = np.where(replace, drawn, old[distinct])[inverse]
    changed = rows[out.cols["item_id"][rows] != old]
    items = out.cols["item_id"][changed]
    out.cols["category_id"][changed] = ctx.profile.category_of(items)
    out.cols["price"][changed] = ctx.profile.price_of(items)
    itemless = np.flatnonzero(tail & (out.cols["item_id"] < 0) & switch[owner])
    out.cols["category_id"][itemless] = new_cat[owner[itemless]]
    level = ctx.loglerp(1.0, p.price_factor)
    priced = np.flatnonzero(tail & np.isfinite(out.cols["price"]) & (level[owner] != 1.0))
    out.cols["price"][priced] = np.round(out.cols["price"][priced] * level[owner[priced]], 2)
    if "device" in out.cols and len(ctx.profile.devices) > 1:
        _change_device(out, ctx, at, tail, owner)
    ctx.record.update(at=at, switched_category=switch)
    return out


def distinct_items(b: Batch, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Among ``rows`` (rows with an item): the first appearance of each distinct (victim,
    item) pair (an index into ``rows``), each row's pair, and each pair's victim. An injector
    that swaps items swaps a pair once, so a victim's funnel on one item stays one item."""
    item, who = b.cols["item_id"][rows], b.owner()[rows]
    order = np.lexsort((item, who))
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (item[order][1:] != item[order][:-1]) | (who[order][1:] != who[order][:-1])
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    distinct = order[starts]
    return distinct, inverse, who[distinct]


def _foreign_category(
    b: Batch, ctx: BatchContext, owner: np.ndarray, seen_categories: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per victim, a category drawn uniformly among those it has not visited
    (``seen_categories`` of ``owner``: e.g. the events before a takeover), and whether its
    tail switches to it (probability s, when such a category exists)."""
    categories = ctx.profile.categories
    rank, known = ctx.profile.category_rank(seen_categories)
    seen = np.unique(owner[known] * len(categories) + rank[known])  # (victim, rank), sorted
    seen_owner, seen_rank = seen // max(len(categories), 1), seen % max(len(categories), 1)
    n_foreign = len(categories) - np.bincount(seen_owner, minlength=len(b))
    switch = (ctx.rng.random(len(b)) < ctx.severity) & (n_foreign > 0)
    k = (ctx.rng.random(len(b)) * n_foreign).astype(np.int64)
    # The k-th rank outside a victim's sorted seen ranks e_0 < e_1 < ...: k plus the number
    # of i with e_i - i <= k.
    index_in_victim = ragged_arange(np.bincount(seen_owner, minlength=len(b)))
    below = (seen_rank - index_in_victim) <= k[seen_owner]
    rank_out = k + np.bincount(seen_owner[below], minlength=len(b))
    new_cat = categories[np.minimum(rank_out, max(len(categories) - 1, 0))]
    return new_cat.astype(np.int64), switch


def _change_device(
    out: Batch, ctx: BatchContext, at: np.ndarray, tail: np.ndarray, owner: np.ndarray
) -> None:
    """With probability s, a victim's tail moves to another device (uniform among the
    others the data has)."""
    devices = ctx.profile.devices
    change = ctx.rng.random(len(out)) < ctx.severity
    current = out.cols["device"][out.offsets[:-1] + at]
    rank = np.searchsorted(devices, current)
    present = (rank < len(devices)) & (devices[np.minimum(rank, len(devices) - 1)] == current)
    others = len(devices) - present
    r = (ctx.rng.random(len(out)) * others).astype(np.int64)
    pick = devices[np.where(present & (r >= rank), r + 1, r)]
    rows = np.flatnonzero(tail & change[owner])
    out.cols["device"][rows] = pick[owner[rows]]


def _has_priced_purchase(events: EventTable, offsets: np.ndarray) -> np.ndarray:
    flag = (events.event_type == E.PURCHASE) & np.isfinite(events.price)
    return any_per_session(flag, offsets)


@injector(
    "price_outlier",
    params=PriceOutlierParams,
    min_length=1,
    eligible=_has_priced_purchase,
    batched=True,
)
def price_outlier(b: Batch, ctx: BatchContext) -> Batch:
    """A purchase at an amount far outside the usual (card testing, a pricing exploit,
    laundering): one priced purchase becomes its reference amount (the item's price, or the
    user's usual purchase: ``reference``) multiplied (or, with probability 1 - p_up, divided)
    by a factor rising from 1 (s=0) to ``max_factor`` (s=1)."""
    p: PriceOutlierParams = ctx.params
    if p.reference not in ("item", "user"):
        raise ValueError(
            f"anomaly.params.price_outlier.reference={p.reference!r}: use 'item' or 'user'"
        )
    priced = (b.cols["event_type"] == E.PURCHASE) & np.isfinite(b.cols["price"])
    at = ctx.pick_row(b, priced)
    factor = ctx.loglerp(1.0, p.max_factor)
    factor = np.where(ctx.rng.random(len(b)) < p.p_up, factor, 1.0 / factor)
    out = b.copy()
    rows = b.offsets[:-1] + at
    base = out.cols["price"][rows]
    if p.reference == "user":
        usual = ctx.profile.usual_purchase(b.cols["user_id"][rows])
        base = np.where(np.isfinite(usual), usual, base)
    out.cols["price"][rows] = np.round(base * factor, 2)
    ctx.record.update(row=at, factor=factor)
    return out


@injector("timing_bot", params=TimingBotParams, min_length=4, batched=True)
def timing_bot(b: Batch, ctx: BatchContext) -> Batch:
    """A script acts on a timer: from the takeover point on, every gap moves geometrically from
    the human one (s=0) to the session's median gap with ``jitter`` relative noise (s=1)."""
    p: TimingBotParams = ctx.params
    n = b.lengths
    if ctx.position in ("start", "random"):
        at = np.ones_like(n)
    else:
        at = np.minimum(ctx.insertion_point(n, np.ones_like(n)), n - 2)
    out = b.copy()
    owner = b.owner()
    rows = np.flatnonzero(b.position() >= at[owner])
    who = owner[rows]
    human = np.maximum(b.gap[rows], 1e-3)
    interval = median_per_group(human, who, len(b))[who]
    interval = interval * np.exp(ctx.rng.normal(0.0, p.jitter, len(rows)))
    # at s=0 every gap stays as it was (even one under the 1 ms floor)
    out.gap[rows] = np.where(ctx.severity[who] == 0, b.gap[rows], ctx.loglerp(human, interval, who))
    ctx.record.update(at=at, interval_s=median_per_group(interval, who, len(b)))
    return out


@injector("session_hijack", params=SessionHijackParams, min_length=3, batched=True)
def session_hijack(b: Batch, ctx: BatchContext) -> Batch:
    """A segment of another user's session is spliced in place of part of this one (a stolen
    session cookie used in parallel). The donor is picked among ``candidates`` sessions by how
    foreign its categories and device are: the most similar at s=0, the least at s=1. Each
    spliced event keeps the original with probability 1 - s (at s=0 nothing changes)."""
    p: SessionHijackParams = ctx.params
    n = b.lengths
    length = np.maximum(1, np.minimum(n - 1, np.round(ctx.lerp(0.2, p.max_fraction) * n)))
    k = max(2, p.candidates)
    similar = np.arange(k) % 2 == 0  # half the candidates share the victim's main category
    donors = ctx.donors.draw(np.repeat(ctx.donors.sessions, k), np.tile(similar, len(b)))
    donors = donors.reshape(len(b), k)
    distance = ctx.donors.foreignness(ctx.donors.sessions, donors)
    rank = np.round(ctx.severity * (k - 1)).astype(np.int64)
    chosen_col = np.argsort(distance, axis=1, kind="stable")[np.arange(len(b)), rank]
    donor = donors[np.arange(len(b)), chosen_col]
    donor_start, donor_length = ctx.donors.extent(donor)
    length = np.minimum(length, donor_length).astype(np.int64)
    at = np.maximum(np.minimum(ctx.insertion_point(n, np.ones_like(n)), n - length), 1)
    q = (ctx.rng.random(len(b)) * (donor_length - length + 1)).astype(np.int64)
    owner, step = owner_of(length), ragged_arange(length)
    segment = ctx.donors.rows_of(donor_start[owner] + q[owner] + step)
    own = b.offsets[:-1][owner] + at[owner] + step  # the victim's rows the segment replaces
    cols = {
        k: (b.cols[k][own] if k in ("session_id", "user_id") else segment.cols[k]) for k in b.cols
    }
    gap = np.where(step == 0, b.gap[own], segment.gap)
    ctx.record.update(
        at=at, length=length, donor_foreignness=distance[np.arange(len(b)), chosen_col]
    )
    edited = splice(b, at, length, NewEvents(cols, gap, length))
    return ctx.keep_originals(b, edited, at, length)


def _has_movable_purchase(events: EventTable, offsets: np.ndarray) -> np.ndarray:
    not_first = np.ones(len(events), dtype=bool)
    not_first[offsets[:-1]] = False
    return any_per_session((events.event_type == E.PURCHASE) & not_first, offsets)


@injector(
    "funnel_violation",
    params=FunnelViolationParams,
    min_length=2,
    eligible=_has_movable_purchase,
    batched=True,
)
def funnel_violation(b: Batch, ctx: BatchContext) -> Batch:
    """Events out of funnel order (an order API called directly, replayed requests): a purchase
    moves earlier, by a share s of the way to the session's start, so at s=1 it precedes every
    view and cart of its item. At s=0 it stays where it was."""
    row = ctx.pick_row(b, (b.cols["event_type"] == E.PURCHASE) & (b.position() >= 1))
    target = row - np.round(ctx.severity * row).astype(np.int64)
    owner, pos = b.owner(), b.position()
    r, t = row[owner], target[owner]
    # positions target..row shift: the purchase first, then the events it jumped over
    source = np.where((pos < t) | (pos > r), pos, np.where(pos == t, r, pos - 1))
    gap = b.gap.copy()
    displaced = b.offsets[:-1][target == 0]  # a displaced first event needs a gap: the purchase's
    gap[displaced] = b.gap[b.offsets[:-1][target == 0] + row[target == 0]]
    moved = Batch(b.cols, gap, b.origin, b.offsets, b.t0)
    ctx.record.update(row=row, moved_to=target)
    return moved.gather(b.offsets[:-1][owner] + source, b.lengths)


def _item_events(
    b: Batch,
    ctx: BatchContext,
    at: np.ndarray,
    types: np.ndarray,
    items: np.ndarray,
    gap: np.ndarray,
    lengths: np.ndarray,
) -> NewEvents:
    """New events of ``types`` on ``items`` (``lengths[v]`` per victim), copying ids and device
    from the event before each victim's insertion point."""
    like = (b.offsets[:-1] + at - 1)[owner_of(lengths)]
    cols = {name: col[like] for name, col in b.cols.items()}
    has_item = items >= 0
    cols["event_type"] = types.astype(np.int8)
    cols["item_id"] = items.astype(np.int64)
    cols["category_id"][has_item] = ctx.profile.category_of(items[has_item])
    price = np.full(len(items), np.nan, dtype=np.float32)
    price[has_item] = ctx.profile.price_of(items[has_item])
    cols["price"] = price
    if "dwell" in cols:
        cols["dwell"] = np.full(len(items), np.nan, dtype=np.float32)
    if "query" in cols:  # a new search types a query searches of its category used
        query = np.full(len(items), MISSING_ID, dtype=np.int64)
        search = types == E.SEARCH
        query[search] = ctx.profile.sample_queries(cols["category_id"][search], ctx.rng)
        cols["query"] = query
    return NewEvents(cols, gap, lengths)


def _fill_missing_item(items: np.ndarray, types: np.ndarray, ctx: BatchContext) -> np.ndarray:
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
