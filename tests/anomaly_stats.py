"""Per-type signature statistics: one simple number per sequence that an anomaly of that type
pushes away from normal. Used by the severity tests (test-only helpers, NumPy)."""

from __future__ import annotations

import itertools

import numpy as np

from benchmark.anomalies.profile import NormalProfile
from datasets.schema import EventTable, EventType, session_offsets

E = EventType


def per_session(events: EventTable, fn) -> np.ndarray:
    offsets = session_offsets(events.session_id)
    cols = events.columns()
    return np.array(
        [fn({k: v[a:b] for k, v in cols.items()}) for a, b in itertools.pairwise(offsets)]
    )


def _gaps(s):
    return np.diff(s["timestamp"])


def fast_gap_share(s):
    g = _gaps(s)
    return float(np.mean(g < 1.0)) if len(g) else 0.0


def purchase_share(s):
    return float(np.mean(s["event_type"] == E.PURCHASE))


def remove_share(s):
    return float(np.mean(s["event_type"] == E.REMOVE_FROM_CART))


def log_gap_spread(s):
    g = _gaps(s)
    return float(np.std(np.log(np.maximum(g, 1e-3)))) if len(g) > 1 else 0.0


def device_and_price_shift(s):
    """Distinct devices plus the jump in mean log price between the two halves."""
    p = np.log(s["price"])
    half = len(p) // 2
    a, b = p[:half][np.isfinite(p[:half])], p[half:][np.isfinite(p[half:])]
    shift = abs(b.mean() - a.mean()) if len(a) and len(b) else 0.0
    return len(np.unique(s["device"])) + float(shift)


def distinct_devices_and_categories(s):
    return len(np.unique(s["device"])) + len(np.unique(s["category_id"])) / len(s["category_id"])


def orphan_purchases(s):
    """Purchases of an item with no earlier view, click or cart of it in the session."""
    count = 0
    for i in np.flatnonzero(s["event_type"] == E.PURCHASE):
        before = s["item_id"][:i][np.isin(s["event_type"][:i], (E.VIEW, E.CLICK, E.ADD_TO_CART))]
        count += int(s["item_id"][i] not in before)
    return float(count)


def make_successor_share(profile: NormalProfile):
    order = np.lexsort((profile.items, profile.item_category))
    walk = profile.items[order]
    successor = dict(zip(walk[:-1].tolist(), walk[1:].tolist(), strict=True))

    def successor_share(s):
        items = s["item_id"].tolist()
        pairs = list(itertools.pairwise(items))
        return float(np.mean([successor.get(a) == b for a, b in pairs])) if pairs else 0.0

    return successor_share


def make_price_deviation(profile: NormalProfile):
    def price_deviation(s):
        rows = (s["event_type"] == E.PURCHASE) & np.isfinite(s["price"])
        if not rows.any():
            return 0.0
        ref = profile.price_of(s["item_id"][rows])
        return float(np.max(np.abs(np.log(s["price"][rows] / ref))))

    return price_deviation


def statistic_for(name: str, profile: NormalProfile):
    return {
        "click_flood": fast_gap_share,
        "brushing": purchase_share,
        "scraping": make_successor_share(profile),
        "cart_abuse": remove_share,
        "account_takeover": device_and_price_shift,
        "price_outlier": make_price_deviation(profile),
        "timing_bot": log_gap_spread,
        "session_hijack": distinct_devices_and_categories,
        "funnel_violation": orphan_purchases,
    }[name]
