"""Anomaly types that live in the text and image modalities (the fifth article's setting).

They join a run only when ``anomaly.mix`` names them (``anomaly=multimodal`` does): the
default mix stays the nine behaviour types of ``types.py``. Data without queries cannot host
``query_stuffing``; data without items cannot host the other two (recorded as skipped).
Severity 0 changes nothing, as for every type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.anomalies.batch import Batch, BatchContext, owner_of, ragged_arange
from benchmark.anomalies.core import any_per_session, injector
from benchmark.anomalies.types import _foreign_category, _item_events, distinct_items
from datasets.schema import MISSING_ID, EventTable, EventType

E = EventType


@dataclass
class QueryStuffingParams:
    max_searches: int = 20
    """Inserted searches at severity 1 (1 at severity 0, which keeps none of them)."""
    bot_gap_s: float = 1.0
    """Median seconds between the inserted searches at severity 1."""


@dataclass
class ListingMismatchParams:
    pass


@dataclass
class InterestShiftParams:
    pass


def _has_query(events: EventTable, offsets: np.ndarray) -> np.ndarray:
    if events.query is None:
        return np.zeros(len(offsets) - 1, dtype=bool)
    return any_per_session(events.query >= 0, offsets)


def _has_item(events: EventTable, offsets: np.ndarray) -> np.ndarray:
    return any_per_session(events.item_id >= 0, offsets)


@injector(
    "query_stuffing",
    params=QueryStuffingParams,
    min_length=1,
    eligible=_has_query,
    batched=True,
)
def query_stuffing(b: Batch, ctx: BatchContext) -> Batch:
    """A keyword-spam bot searches for things unrelated to what the session views: each of
    the session's queries is swapped (with probability s) for one typed in another category,
    and a burst of up to ``max_searches`` searches with such queries is inserted at bot gaps."""
    p: QueryStuffingParams = ctx.params
    out = b.copy()
    owner = b.owner()
    typed = np.flatnonzero((b.cols["event_type"] == E.SEARCH) & (b.cols["query"] >= 0))
    swap = typed[ctx.rng.random(len(typed)) < ctx.severity[owner[typed]]]
    other = _other_category(ctx, b.cols["category_id"][swap])
    out.cols["query"][swap] = ctx.profile.sample_queries(other, ctx.rng)
    n_new = ctx.room(ctx.rounded(1, p.max_searches))
    at = ctx.insertion_point(b.lengths, n_new)
    spam = _other_category(ctx, b.cols["category_id"][b.offsets[:-1] + at - 1])
    new_owner = owner_of(n_new)
    types = np.full(len(new_owner), E.SEARCH, dtype=np.int8)
    gap = ctx.loglerp(
        ctx.profile.sample_gaps(types, ctx.rng),
        p.bot_gap_s * np.exp(ctx.rng.normal(0.0, 0.3, len(new_owner))),
        new_owner,
    )
    items = np.full(len(new_owner), MISSING_ID, dtype=np.int64)
    block = _item_events(out, ctx, at, types, items, gap, n_new)
    block.cols["category_id"] = spam[new_owner]
    block.cols["query"] = ctx.profile.sample_queries(spam[new_owner], ctx.rng)
    ctx.record.update(swapped_queries=np.bincount(owner[swap], minlength=len(b)))
    return ctx.place(out, at, block)


@injector(
    "listing_mismatch",
    params=ListingMismatchParams,
    min_length=1,
    eligible=_has_item,
    needs_catalogue=True,
    batched=True,
)
def listing_mismatch(b: Batch, ctx: BatchContext) -> Batch:
    """Mislisted items (a seller's wrong category, a stolen photo): each distinct item the
    session looks at is swapped (with probability s) for an item of another category, while
    the event keeps the category and price it was listed under, so the item's image and name
    disagree with its listing."""
    out = b.copy()
    rows = np.flatnonzero(b.cols["item_id"] >= 0)
    distinct, inverse, who = distinct_items(b, rows)
    swap = ctx.rng.random(len(distinct)) < ctx.severity[who]
    other = _other_category(ctx, b.cols["category_id"][rows[distinct]])
    drawn = ctx.profile.sample_items_like(other, ctx.rng)
    old = b.cols["item_id"][rows]
    out.cols["item_id"][rows] = np.where(swap, drawn, old[distinct])[inverse]
    ctx.record.update(mislisted_items=np.bincount(who[swap], minlength=len(b)))
    return out


@injector(
    "interest_shift",
    params=InterestShiftParams,
    min_length=3,
    eligible=_has_item,
    needs_catalogue=True,
    batched=True,
)
def interest_shift(b: Batch, ctx: BatchContext) -> Batch:
    """The session drifts away from everything the user ever looked at: from a point on,
    each event moves (with a probability rising from 0 to s by the session's end) to a
    category the user never visited in the split, its item, price and (for a search) its query
    with it, as a hijacked or resold account starts shopping for someone else."""
    n = b.lengths
    at = np.minimum(np.maximum(1, ctx.insertion_point(n, np.ones_like(n))), n - 1)
    owner, pos = b.owner(), b.position()
    seen_owner, seen = _user_categories(b, ctx)
    new_cat, _ = _foreign_category(b, ctx, seen_owner, seen)
    has_new = _visited_count(ctx, seen_owner, seen, len(b)) < len(ctx.profile.categories)
    ramp = (pos - at[owner] + 1) / np.maximum(n - at, 1)[owner]
    drift = (pos >= at[owner]) & has_new[owner]
    drift &= ctx.rng.random(len(pos)) < ctx.severity[owner] * ramp
    rows = np.flatnonzero(drift)
    out = b.copy()
    category = new_cat[owner[rows]]
    out.cols["category_id"][rows] = category
    with_item = rows[b.cols["item_id"][rows] >= 0]
    items = ctx.profile.sample_items_like(new_cat[owner[with_item]], ctx.rng)
    out.cols["item_id"][with_item] = items
    out.cols["price"][with_item] = ctx.profile.price_of(items)
    if "query" in out.cols:
        typed = rows[b.cols["query"][rows] >= 0]
        out.cols["query"][typed] = ctx.profile.sample_queries(new_cat[owner[typed]], ctx.rng)
    ctx.record.update(at=at, drifted_events=np.bincount(owner[rows], minlength=len(b)))
    return out


def _other_category(ctx: BatchContext, own: np.ndarray) -> np.ndarray:
    """Per element, a category of the profile other than ``own`` (uniformly)."""
    categories = ctx.profile.categories
    if len(categories) < 2:
        return np.asarray(own).copy()
    rank, known = ctx.profile.category_rank(own)
    r = (ctx.rng.random(len(own)) * (len(categories) - known)).astype(np.int64)
    return categories[np.where(known & (r >= rank), r + 1, r)]


def _user_categories(b: Batch, ctx: BatchContext) -> tuple[np.ndarray, np.ndarray]:
    """Every category each victim's user visited in the split: (victim, category) pairs."""
    events = ctx.donors.events
    users = b.cols["user_id"][b.offsets[:-1]]
    pairs = np.unique(np.stack([events.user_id, events.category_id]), axis=1)
    lo = np.searchsorted(pairs[0], users, side="left")
    hi = np.searchsorted(pairs[0], users, side="right")
    count = hi - lo
    return owner_of(count), pairs[1][np.repeat(lo, count) + ragged_arange(count)]


def _visited_count(ctx: BatchContext, owner: np.ndarray, seen: np.ndarray, n: int) -> np.ndarray:
    """Per victim, how many of the profile's categories its user visited."""
    categories = ctx.profile.categories
    width = max(len(categories), 1)
    rank, known = ctx.profile.category_rank(seen)
    return np.bincount(np.unique(owner[known] * width + rank[known]) // width, minlength=n)


# Registered here, joining a run only when anomaly.mix names them.
MODALITY_TYPES: tuple[str, ...] = ("query_stuffing", "listing_mismatch", "interest_shift")
