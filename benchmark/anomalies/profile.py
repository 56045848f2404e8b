"""What "normal" looks like in a split, measured from its events.

Injectors draw severity-0 material from these statistics, so that an anomaly at severity 0 looks
like the data it is injected into, whatever dataset that is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.schema import MISSING_ID, EventTable, EventType, session_offsets


@dataclass(frozen=True)
class NormalProfile:
    """Empirical statistics of one event table (sorted by session, then time)."""

    log_gaps_by_type: tuple[np.ndarray, ...]  # per event type: log seconds since the previous event
    log_gaps: np.ndarray  # all types pooled
    items: np.ndarray  # distinct item ids, sorted
    item_category: np.ndarray  # category of each item in ``items``
    item_price: np.ndarray  # median observed price of each item (NaN if never priced)
    item_count: np.ndarray  # events per item (popularity)
    categories: np.ndarray  # distinct category ids, sorted
    purchase_share: float  # fraction of events that are purchases
    devices: np.ndarray  # distinct device codes (empty when the table has no device column)
    by_category: np.ndarray  # item indices ordered by (category, item)
    category_start: np.ndarray  # offsets of each category of ``categories`` in ``by_category``
    popularity_cdf: np.ndarray  # within-category cumulative popularity, plus the category's rank
    global_cdf: np.ndarray  # cumulative popularity over ``by_category`` (ends at 1)
    gap_pool: np.ndarray  # log gaps grouped by event type (a type never seen: all types pooled)
    gap_start: np.ndarray  # (n_types + 1,) offsets of each type's group in ``gap_pool``
    query_pool: np.ndarray  # the searches' queries (rows of the dataset's queries), by category
    query_category: np.ndarray  # the category of each search in ``query_pool`` (sorted)
    buyers: np.ndarray  # distinct users with a priced purchase, sorted
    buyer_price: np.ndarray  # median price of each buyer's priced purchases

    @staticmethod
    def from_events(events: EventTable) -> NormalProfile:
        offsets = session_offsets(events.session_id)
        gaps = np.diff(events.timestamp, prepend=np.nan)
        gaps[offsets[:-1]] = np.nan  # the first event of a session has no gap
        log_gaps = np.log(np.maximum(gaps, 1e-3))
        ok = np.isfinite(log_gaps)
        by_type = tuple(log_gaps[ok & (events.event_type == t)] for t in EventType)
        pooled = log_gaps[ok] if ok.any() else np.log(np.array([30.0]))
        groups = [pool if len(pool) else pooled for pool in by_type]
        has_item = events.item_id >= 0
        items, inverse, counts = np.unique(
            events.item_id[has_item], return_inverse=True, return_counts=True
        )
        category = np.empty(len(items), dtype=np.int64)
        category[inverse] = events.category_id[has_item]
        devices = (
            np.unique(events.device[events.device >= 0])
            if events.device is not None
            else np.empty(0, dtype=np.int8)
        )
        categories = np.unique(category)
        by_category = np.lexsort((items, category))
        cat_rank = np.searchsorted(categories, category[by_category])
        category_start = np.searchsorted(cat_rank, np.arange(len(categories) + 1))
        cum = np.cumsum(counts[by_category].astype(np.float64))
        before = np.concatenate(([0.0], cum))[category_start[:-1]]
        total = cum[category_start[1:] - 1] - before
        cdf = (cum - before[cat_rank]) / total[cat_rank] + cat_rank
        return NormalProfile(
            log_gaps_by_type=by_type,
            log_gaps=pooled,
            items=items,
            item_category=category,
            item_price=median_per_group(events.price[has_item], inverse, len(items)),
            item_count=counts,
            categories=categories,
            purchase_share=float(np.mean(events.event_type == EventType.PURCHASE)),
            devices=devices,
            by_category=by_category,
            category_start=category_start,
            popularity_cdf=cdf,
            global_cdf=cum / cum[-1] if len(cum) else cum,
            gap_pool=np.concatenate(groups),
            gap_start=np.concatenate(([0], np.cumsum([len(g) for g in groups]))),
            **_query_pool(events),
            **_buyers(events),
        )

    def usual_purchase(self, users: np.ndarray) -> np.ndarray:
        """Each user's median purchase price in this table (NaN: no priced purchase)."""
        if not len(self.buyers):
            return np.full(len(users), np.nan)
        at = np.minimum(np.searchsorted(self.buyers, users), len(self.buyers) - 1)
        return np.where(self.buyers[at] == users, self.buyer_price[at], np.nan)

    def sample_gaps(self, event_types: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Seconds before each event, drawn from the gaps seen before events of its type."""
        t = np.asarray(event_types, dtype=np.int64)
        lo, size = self.gap_start[t], np.diff(self.gap_start)[t]
        pick = lo + (rng.random(len(t)) * size).astype(np.int64)
        return np.exp(self.gap_pool[np.minimum(pick, lo + size - 1)])

    def sample_items(
        self, n: int, rng: np.random.Generator, category: int | None = None, popular: bool = True
    ) -> np.ndarray:
        """Items drawn by popularity (or uniformly), from one category or from all."""
        if category is None:
            return self._sample_any(n, rng, popular)
        rank = int(np.searchsorted(self.categories, category))
        if rank >= len(self.categories) or self.categories[rank] != category:
            return self._sample_any(n, rng, popular)
        lo, hi = self.category_start[rank], self.category_start[rank + 1]
        if popular:
            pos = np.searchsorted(self.popularity_cdf[lo:hi], rank + rng.random(n)) + lo
        else:
            pos = rng.integers(lo, hi, n)
        return self.items[self.by_category[np.minimum(pos, hi - 1)]]

    def sample_items_like(
        self, categories: np.ndarray, rng: np.random.Generator, popular: bool = True
    ) -> np.ndarray:
        """One item per element of ``categories``, drawn by popularity (or uniformly) from that
        category (from all, for a category the profile has not seen); vectorised: a draw per
        element, no loop over categories."""
        u = rng.random(len(categories))
        rank_c, known = self.category_rank(categories)
        lo = np.where(known, self.category_start[rank_c], 0)
        hi = np.where(known, self.category_start[rank_c + 1], len(self.items))
        if popular:
            # the within-category CDFs are stacked (offset by the category's rank), so one
            # search finds every draw; an unseen category searches the global CDF
            pos = np.where(
                known,
                np.searchsorted(self.popularity_cdf, rank_c + u),
                np.searchsorted(self.global_cdf, u, side="right"),
            )
        else:
            pos = lo + (u * (hi - lo)).astype(np.int64)
        return self.items[self.by_category[np.clip(pos, lo, hi - 1)]]

    def _sample_any(self, n: int, rng: np.random.Generator, popular: bool) -> np.ndarray:
        if not popular:
            return self.items[rng.integers(0, len(self.items), n)]
        pos = np.searchsorted(self.global_cdf, rng.random(n), side="right")
        return self.items[self.by_category[np.minimum(pos, len(self.items) - 1)]]

    def sample_queries(self, categories: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A query per element of ``categories``: one a search of that category used (any
        search's, for a category without one); ``MISSING_ID`` when the data has no queries."""
        if len(self.query_pool) == 0:
            return np.full(len(categories), MISSING_ID, dtype=np.int64)
        lo = np.searchsorted(self.query_category, categories, side="left")
        hi = np.searchsorted(self.query_category, categories, side="right")
        lo, hi = np.where(hi > lo, lo, 0), np.where(hi > lo, hi, len(self.query_pool))
        pick = lo + (rng.random(len(categories)) * (hi - lo)).astype(np.int64)
        return self.query_pool[np.minimum(pick, hi - 1)]

    def category_rank(self, categories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each category's position in ``self.categories`` (clipped into range) and whether
        the profile has it."""
        categories = np.asarray(categories)
        rank = np.searchsorted(self.categories, categories)
        rank_c = np.minimum(rank, max(len(self.categories) - 1, 0))
        if len(self.categories) == 0:
            return rank_c, np.zeros(len(categories), dtype=bool)
        return rank_c, (rank < len(self.categories)) & (self.categories[rank_c] == categories)

    def category_of(self, items: np.ndarray) -> np.ndarray:
        return self.item_category[np.searchsorted(self.items, items)]

    def price_of(self, items: np.ndarray) -> np.ndarray:
        return self.item_price[np.searchsorted(self.items, items)]


def _buyers(events: EventTable) -> dict[str, np.ndarray]:
    priced = (events.event_type == EventType.PURCHASE) & np.isfinite(events.price)
    buyers, which = np.unique(events.user_id[priced], return_inverse=True)
    return {
        "buyers": buyers,
        "buyer_price": median_per_group(events.price[priced], which, len(buyers)),
    }


def median_per_group(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of the finite ``values`` per group (NaN for groups without one)."""
    ok = np.isfinite(values)
    values, group = values[ok], group[ok]
    if len(values) == 0:
        return np.full(n_groups, np.nan)
    order = np.lexsort((values, group))
    values, group = values[order], group[order]
    starts = np.searchsorted(group, np.arange(n_groups), side="left")
    ends = np.searchsorted(group, np.arange(n_groups), side="right")
    last = len(values) - 1
    mid_lo = values[np.clip((starts + ends - 1) // 2, 0, last)]
    mid_hi = values[np.clip((starts + ends) // 2, 0, last)]
    median = (np.asarray(mid_lo, dtype=np.float64) + mid_hi) / 2
    return np.where(ends > starts, median, np.nan)


def _query_pool(events: EventTable) -> dict[str, np.ndarray]:
    """The queries searches used, ordered by the search's category."""
    if events.query is None:
        return {"query_pool": np.zeros(0, dtype=np.int64), "query_category": np.zeros(0)}
    rows = np.flatnonzero(events.query >= 0)
    order = np.argsort(events.category_id[rows], kind="stable")
    return {
        "query_pool": events.query[rows][order],
        "query_category": events.category_id[rows][order],
    }
