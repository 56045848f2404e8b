import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from benchmark.anomalies.core import INJECTORS, InjectionError
from benchmark.anomalies.inject import (
    ANOMALY_TYPES,
    AnomalyConfig,
    ContaminationConfig,
    check_anomaly_config,
    inject,
)
from benchmark.anomalies.profile import NormalProfile
from datasets.schema import EventTable, EventType, map_event_types, session_offsets
from datasets.sessions import limit_lengths

from .anomaly_stats import per_session, statistic_for

REES46 = (
    Path(__file__).resolve().parent.parent / "datasets/samples/rees46/2019-Oct_head_sessions.csv"
)
MAX_LEN = 50


def only(name: str, **kwargs) -> AnomalyConfig:
    mix = dict(**{t: float(t == name) for t in ANOMALY_TYPES})
    return AnomalyConfig(mix=mix, **kwargs)


def gaps_of(events: EventTable) -> np.ndarray:
    offsets = session_offsets(events.session_id)
    gaps = np.diff(events.timestamp, prepend=0.0)
    gaps[offsets[:-1]] = 0.0
    return gaps


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both_nan = np.isnan(a) & np.isnan(b) if np.issubdtype(a.dtype, np.floating) else False
    return (a == b) | both_nan


def assert_labels_exact(source: EventTable, out, strict_changed: bool) -> None:
    """Unlabelled events are their source events, unchanged and in order; labelled ones are
    new or (when ``strict_changed``) differ from their source."""
    src_cols, out_cols = source.columns(), out.events.columns()
    assert src_cols.keys() == out_cols.keys()
    src_gap, out_gap = gaps_of(source), gaps_of(out.events)
    offsets = session_offsets(out.events.session_id)
    assert np.all(np.diff(offsets) <= MAX_LEN)
    session_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    assert not out.event_label[~out.label[session_of]].any(), "labels outside injected sessions"

    keep = np.flatnonzero(~out.event_label)
    src = out.origin[keep]
    assert np.all(src >= 0), "an unlabelled event must come from the source"
    same_session = session_of[keep][1:] == session_of[keep][:-1]
    assert np.all(np.diff(src)[same_session] > 0), "unlabelled events keep their order"
    for name in src_cols:
        if name != "timestamp":
            assert _same(out_cols[name][keep], src_cols[name][src]).all(), name
    np.testing.assert_allclose(out_gap[keep], src_gap[src], atol=1e-6, err_msg="gap")

    if strict_changed:
        changed = np.flatnonzero(out.event_label & (out.origin >= 0))
        s = out.origin[changed]
        differs = np.abs(out_gap[changed] - src_gap[s]) > 1e-6
        for name in src_cols:
            if name != "timestamp":
                differs |= ~_same(out_cols[name][changed], src_cols[name][s])
        first = np.isin(changed, offsets[:-1])
        moved = first | (out.origin[np.maximum(changed - 1, 0)] != s - 1)
        assert np.all(differs | moved), "a labelled event equals its source"


@pytest.mark.parametrize("severity", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("name", ANOMALY_TYPES)
def test_labels_mark_exactly_the_changed_events(sessions, name, severity):
    before = {k: v.copy() for k, v in sessions.columns().items()}
    out = inject(sessions, only(name, severity=severity), rate=0.05, seed=2, max_length=MAX_LEN)
    assert_labels_exact(sessions, out, strict_changed=severity == 1.0)
    for k, v in sessions.columns().items():  # the source is never modified
        np.testing.assert_array_equal(v, before[k])
    assert np.all(out.anomaly_type[out.label] == ANOMALY_TYPES.index(name))
    assert np.all(np.isnan(out.severity[~out.label]))
    per_session = np.add.reduceat(out.event_label, out.offsets[:-1])
    assert [d["changed_events"] for d in out.details] == per_session[out.label].tolist()
    if severity == 1.0:
        assert out.event_label.any()
        event_sessions = np.repeat(np.arange(len(out.label)), np.diff(out.offsets))
        assert set(event_sessions[out.event_label]) <= set(np.flatnonzero(out.label))


@pytest.mark.parametrize("name", ANOMALY_TYPES)
def test_severity_zero_labels_sequences_without_changing_them(sessions, name):
    """Severity 0 is a label without an anomaly: every column of every event stays as it was,
    so what a detector finds there above chance it learnt from something else."""
    config = only(name, severity=0.0, severity_jitter=0.0)
    out = inject(sessions, config, rate=0.05, seed=4, max_length=MAX_LEN)
    assert out.label.sum() > 0
    assert not out.event_label.any()
    for column, values in sessions.columns().items():
        np.testing.assert_array_equal(out.events.columns()[column], values, err_msg=column)


def test_contamination_rate_and_mix_are_honoured_exactly(sessions):
    n = len(session_offsets(sessions.session_id)) - 1
    cfg = AnomalyConfig(
        mix=dict(click_flood=2.0, brushing=1.0, scraping=1.0, **{t: 0.0 for t in ANOMALY_TYPES[3:]})
    )
    out = inject(sessions, cfg, rate=0.1, seed=0, max_length=MAX_LEN)
    assert out.label.sum() == round(0.1 * n)
    counts = np.bincount(out.anomaly_type[out.label], minlength=len(ANOMALY_TYPES))
    total = out.label.sum()
    assert abs(counts[0] - total / 2) <= 1
    assert abs(counts[1] - total / 4) <= 1
    assert abs(counts[2] - total / 4) <= 1
    assert counts[3:].sum() == 0
    assert len(out.details) == total
    assert {d["type"] for d in out.details} == {"click_flood", "brushing", "scraping"}


def test_zero_rate_returns_the_data_unlabelled(sessions):
    out = inject(sessions, AnomalyConfig(), rate=0.0, seed=0, max_length=MAX_LEN)
    assert not out.label.any()
    assert not out.event_label.any()
    np.testing.assert_array_equal(out.events.item_id, sessions.item_id)


def test_injection_is_deterministic_per_seed(sessions):
    a = inject(sessions, AnomalyConfig(), rate=0.1, seed=5, max_length=MAX_LEN)
    b = inject(sessions, AnomalyConfig(), rate=0.1, seed=5, max_length=MAX_LEN)
    c = inject(sessions, AnomalyConfig(), rate=0.1, seed=6, max_length=MAX_LEN)
    for name, col in a.events.columns().items():
        np.testing.assert_array_equal(col, b.events.columns()[name])
    np.testing.assert_array_equal(a.event_label, b.event_label)
    assert not np.array_equal(a.label, c.label)


def auc(x: np.ndarray, y: np.ndarray) -> float:
    return float(mannwhitneyu(x, y).statistic / (len(x) * len(y)))


@pytest.mark.parametrize("name", ANOMALY_TYPES)
def test_severity_zero_looks_normal_and_one_is_blatant(sessions, name):
    """On the type's signature statistic, severity 0 is indistinguishable from normal
    sequences (AUC near 0.5) and severity 1 separates them (AUC far from 0.5)."""
    stat = statistic_for(name, NormalProfile.from_events(sessions))
    offsets = session_offsets(sessions.session_id)
    eligible = np.diff(offsets) >= INJECTORS[name].min_length
    if INJECTORS[name].eligible is not None:
        eligible &= INJECTORS[name].eligible(sessions, offsets)
    separation = {}
    for severity in (0.0, 1.0):
        out = inject(sessions, only(name, severity=severity), rate=0.08, seed=1, max_length=MAX_LEN)
        x = per_session(out.events, stat)
        separation[severity] = abs(auc(x[out.label], x[~out.label & eligible]) - 0.5)
    assert separation[0.0] < 0.1, separation
    assert separation[1.0] > 0.4, separation


def test_types_the_data_cannot_support_fail_with_the_fix(sessions):
    no_prices = sessions.with_columns(price=np.full(len(sessions), np.nan, dtype=np.float32))
    message = r"no sequence of the test split can host a type of the mix \['price_outlier'\]"
    with pytest.raises(InjectionError, match=message):
        inject(
            no_prices, only("price_outlier"), rate=0.05, seed=0, max_length=MAX_LEN, split="test"
        )


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (AnomalyConfig(contamination=ContaminationConfig(test=1.0)), r"contamination.test=1.0"),
        (AnomalyConfig(contamination=ContaminationConfig(train=-0.1)), r"contamination.train"),
        (AnomalyConfig(severity=1.2), r"anomaly.severity=1.2 is outside \[0, 1\]"),
        (AnomalyConfig(position="somewhere"), r"position='somewhere' is unknown; use one of"),
        (AnomalyConfig(mix={"bot": 1.0}), r"unknown anomaly type\(s\) \['bot'\]; known:"),
        (AnomalyConfig(mix=dict(**dict.fromkeys(ANOMALY_TYPES, 0.0))), r"weight 0"),
    ],
)
def test_bad_anomaly_settings_name_the_key(cfg, message):
    with pytest.raises(InjectionError, match=message):
        check_anomaly_config(cfg)


@pytest.mark.parametrize("position", ["start", "middle", "end"])
def test_position_controls_where_insertions_land(sessions, position):
    out = inject(
        sessions, only("click_flood", position=position), rate=0.05, seed=3, max_length=MAX_LEN
    )
    starts = [d["at"] for d in out.details]
    if position == "start":
        assert set(starts) == {1}
    else:
        assert np.mean(starts) > 2


def rees46_events() -> EventTable:
    """The REES46 sample converted to the common schema (a held-back real dataset)."""
    with REES46.open() as f:
        rows = list(csv.DictReader(f))
    parse = lambda s: datetime.strptime(s, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)  # noqa: E731
    sessions = {s: i for i, s in enumerate(dict.fromkeys(r["user_session"] for r in rows))}
    return EventTable(
        session_id=[sessions[r["user_session"]] for r in rows],
        user_id=[int(r["user_id"]) for r in rows],
        timestamp=[parse(r["event_time"]).timestamp() for r in rows],
        event_type=map_event_types([r["event_type"] for r in rows]),
        item_id=[int(r["product_id"]) for r in rows],
        category_id=[int(r["category_id"]) for r in rows],
        price=[float(r["price"]) if r["price"] else np.nan for r in rows],
    ).sorted()


@pytest.mark.parametrize("name", ANOMALY_TYPES)
def test_injection_on_a_held_back_real_dataset_labels_what_it_changed(name):
    events, _ = limit_lengths(rees46_events(), min_length=1, max_length=MAX_LEN)
    offsets = session_offsets(events.session_id)
    eligible = np.diff(offsets) >= INJECTORS[name].min_length
    if INJECTORS[name].eligible is not None:
        eligible &= INJECTORS[name].eligible(events, offsets)
    assert eligible.sum() >= 4, f"the sample has too few sequences {name} can use"
    # the rate is a share of the sequences the type can use
    out = inject(events, only(name, severity=1.0), rate=0.3, seed=0, max_length=MAX_LEN)
    assert out.label.sum() >= 1
    assert_labels_exact(events, out, strict_changed=True)


@pytest.mark.parametrize("name", ["click_flood", "brushing", "scraping", "cart_abuse"])
def test_inserted_blocks_keep_the_length_at_severity_zero_and_add_at_one(sessions, name):
    source_len = np.diff(session_offsets(sessions.session_id))
    for severity in (0.0, 1.0):
        out = inject(
            sessions,
            only(name, severity=severity, position="start"),
            rate=0.05,
            seed=4,
            max_length=MAX_LEN,
        )
        new_len = np.diff(out.offsets)[out.label]
        old_len = source_len[out.label]
        inserted = np.array([d["inserted"] for d in out.details])
        room = old_len - 1 >= inserted  # the block fits in place of existing events
        if severity == 0.0:
            np.testing.assert_array_equal(new_len[room], old_len[room])
        else:
            grown = np.minimum(old_len + inserted, MAX_LEN)
            np.testing.assert_array_equal(new_len, grown)


def test_every_type_documents_its_generative_story_and_parameters():
    from dataclasses import fields

    from benchmark.anomalies.inject import describe_types

    stories = describe_types()
    assert tuple(stories)[: len(ANOMALY_TYPES)] == ANOMALY_TYPES
    for name in ANOMALY_TYPES:
        assert len(stories[name].split()) >= 20, name  # a real paragraph, not a label
        params = INJECTORS[name].params
        assert all(f.default is not None for f in fields(params)), name


def test_type_knobs_are_set_by_name_and_a_misspelt_knob_names_the_known_ones(sessions):
    cfg = only("click_flood", severity=1.0, params={"click_flood": {"max_events": 5}})
    out = inject(sessions, cfg, rate=0.05, seed=0, max_length=MAX_LEN)
    assert {d["params"]["max_events"] for d in out.details} == {5}
    assert max(d["inserted"] for d in out.details) <= 5
    bad = only("click_flood", params={"click_flood": {"max_event": 5}})
    with pytest.raises(InjectionError, match=r"no field\(s\) \['max_event'\]; known: \['max_"):
        inject(sessions, bad, rate=0.05, seed=0, max_length=MAX_LEN)


DRAW = {"rate": 0.1, "seed": 0, "max_length": MAX_LEN}


def test_a_price_outlier_can_be_far_above_the_users_usual_amount(sessions):
    """reference=user, increases only (the second article's anomaly): the altered purchase
    costs the user's median priced purchase in the table times the factor (25 at severity 1),
    not the item's own price times it."""
    knobs = {"price_outlier": {"reference": "user", "p_up": 1.0}}
    out = inject(sessions, only("price_outlier", severity=1.0, params=knobs), **DRAW)
    changed = np.flatnonzero(out.event_label)
    assert len(changed) == out.label.sum() > 10
    usual = NormalProfile.from_events(sessions).usual_purchase(out.events.user_id[changed])
    np.testing.assert_allclose(out.events.price[changed], np.round(usual * 25.0, 2))
    own = sessions.price[out.origin[changed]]  # the same for a user's one priced purchase
    assert np.mean(np.abs(out.events.price[changed] - np.round(own * 25.0, 2)) > 0.01) > 0.3
    bad = only("price_outlier", params={"price_outlier": {"reference": "users"}})
    with pytest.raises(ValueError, match="reference='users': use 'item' or 'user'"):
        inject(sessions, bad, **DRAW)


def test_eligibility_marks_the_sequences_each_type_can_use(sessions):
    out = inject(sessions, AnomalyConfig(), rate=0.1, seed=0, max_length=MAX_LEN)
    assert out.eligible.shape == (len(out.label), len(ANOMALY_TYPES))
    injected = np.flatnonzero(out.label)
    assert np.all(out.eligible[injected, out.anomaly_type[injected]])
    price = ANOMALY_TYPES.index("price_outlier")
    assert 0 < out.eligible[:, price].mean() < 1  # only sequences with a priced purchase
    assert out.eligible[:, ANOMALY_TYPES.index("click_flood")].all()


def test_victims_are_a_uniform_sample_whatever_the_types_need(sessions):
    """Types that need a purchase take their victims from the purchase sequences among the
    victims, so the victims hold purchase sequences (and long ones) at the population's rate."""
    offsets = session_offsets(sessions.session_id)
    has_purchase = np.logical_or.reduceat(sessions.event_type == EventType.PURCHASE, offsets[:-1])
    long = np.diff(offsets) >= 4
    picked = {"purchase": 0, "long": 0, "all": 0}
    for seed in range(20):
        out = inject(sessions, AnomalyConfig(severity=0.0), rate=0.1, seed=seed, max_length=MAX_LEN)
        picked["purchase"] += int(has_purchase[out.label].sum())
        picked["long"] += int(long[out.label].sum())
        picked["all"] += int(out.label.sum())
    for name, flag in (("purchase", has_purchase), ("long", long)):
        p, n = flag.mean(), picked["all"]
        # victims of one draw are without replacement: the binomial spread is an upper bound
        assert abs(picked[name] / n - p) < 4 * np.sqrt(p * (1 - p) / n), name


def greedy_assignment(can, target, rng):
    """The assignment rule written plainly (recounting everything at every step): the oracle
    for the incremental version the injector runs."""
    n_victims, k = can.shape
    out = np.full(n_victims, -1)
    need = target.astype(float).copy()
    while True:
        hosts_free = (can & (out < 0)[:, None]).sum(axis=0)
        short = np.flatnonzero((need > 0) & (hosts_free > 0))
        if len(short) == 0:
            break
        for t in sorted(short, key=lambda t: hosts_free[t] / need[t]):
            pool = np.flatnonzero((out < 0) & can[:, t])
            if len(pool) == 0:
                continue
            other_uses = (can[pool] & (need > 0)).sum(axis=1)
            out[int(rng.choice(pool[other_uses == other_uses.min()]))] = t
            need[t] -= 1
    for v in np.flatnonzero(out < 0):
        weights = can[v] * np.maximum(target, 1e-9)
        out[v] = int(rng.choice(k, p=weights / weights.sum()))
    return out


def test_type_assignment_follows_the_plain_greedy_rule():
    """The grouped, many-rounds-at-once rule against the rule written plainly, victim by
    victim: every victim gets a type it can host, and each type's count (and how many of its
    victims each eligibility group gives it) agrees over many draws."""
    from benchmark.anomalies.inject import assign_types

    g = np.random.default_rng(0)
    for trial in range(8):
        n, k = int(g.integers(20, 80)), int(g.integers(2, 7))
        can = g.random((n, k)) < g.uniform(0.1, 1.0, k)
        can[np.arange(n), g.integers(0, k, n)] = True
        target = g.multinomial(n, np.ones(k) / k) if trial % 2 else g.integers(0, n // 2 + 2, k)
        fast, plain = np.zeros((n, k)), np.zeros((n, k))
        for seed in range(40):
            a = assign_types(can, target, np.random.default_rng(seed))
            b = greedy_assignment(can, target, np.random.default_rng(seed))
            assert can[np.arange(n), a].all()
            fast[np.arange(n), a] += 1
            plain[np.arange(n), b] += 1
        np.testing.assert_allclose(fast.sum(axis=0), plain.sum(axis=0), atol=0.05 * 40 * n / k + 40)
        groups, group_of = np.unique(can, axis=0, return_inverse=True)
        for grp in range(len(groups)):
            rows = group_of.reshape(-1) == grp
            got, want = fast[rows].sum(axis=0), plain[rows].sum(axis=0)
            assert np.abs(got - want).max() <= 0.15 * rows.sum() * 40 + 20, (trial, grp)
