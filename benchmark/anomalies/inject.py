"""Injection configuration and the driver that applies it to one split."""

from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from typing import Any

import numpy as np

from benchmark.anomalies.core import (
    INJECTORS,
    POSITIONS,
    Context,
    InjectionError,
    LabelledEvents,
    Session,
    SessionReader,
    assemble,
    eligibility,
    fit_to_length,
    hosts_any,
    unlabelled,
)
from benchmark.anomalies.profile import NormalProfile
from benchmark.anomalies.types import BUILTIN_TYPES
from datasets.schema import MISSING_ID, EventTable, session_offsets

ANOMALY_TYPES: tuple[str, ...] = BUILTIN_TYPES  # the package's own; plugins add more


@dataclass
class ContaminationConfig:
    """Share of sequences injected with an anomaly, per split (each in [0, 1)), among the
    sequences that could host a type of the mix (with the default mix: all of them)."""

    train: float = 0.05
    """0 keeps training data clean."""
    val: float = 0.1
    test: float = 0.1


@dataclass
class AnomalyConfig:
    """Which anomalies to inject, how many, and how blatant."""

    name: str = "mixed"
    """Label of this anomaly setting in results tables."""
    contamination: ContaminationConfig = field(default_factory=ContaminationConfig)
    mix: dict[str, float] = field(default_factory=dict)
    """Relative weight of each anomaly type among injected sequences; a type not listed gets 0
    (a preset names every type it uses, so a newly registered type never joins one silently).
    Empty: the package's nine types in equal shares."""
    severity: float = 0.7
    """0 = looks normal, 1 = blatant."""
    severity_jitter: float = 0.0
    """Each sequence's severity is drawn uniformly from severity +- jitter (clipped to [0, 1])."""
    position: str = "random"
    """Where in a sequence the anomaly goes: random, start, middle or end."""
    params: dict[str, Any] = field(default_factory=dict)
    """Per-type knobs, e.g. params.click_flood.max_events=60 (each type's parameter dataclass,
    ``benchmark/anomalies/types.py``, documents its fields and defaults)."""
    plugins: list[str] = field(default_factory=list)
    """Modules to import before injecting (e.g. [my_types]): each registers anomaly types of
    its own with ``benchmark.anomalies.injector`` (see docs/anomaly-types.md)."""
    holdout: list[str] = field(default_factory=list)
    """Types of the mix kept out of training and validation: injected into the test split
    only, so the per-type metrics show how each detector meets a type it never saw."""
    skip_unsupported: bool = True
    """Leave out of the mix the types no sequence of the dataset can host (e.g. price outliers
    in a views-only dataset), recorded in the run record; false makes that an error."""


def load_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import the user's modules that register anomaly types (idempotent)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise InjectionError(
                f"anomaly.plugins: cannot import {module!r} ({err}); put the module in the "
                "working directory or on PYTHONPATH"
            ) from err


def type_names(cfg: AnomalyConfig) -> tuple[str, ...]:
    """Every type list of a run: the package's types, then the mix's registered plugin types
    (sorted), so that codes mean the same in every split of a run."""
    extra = sorted(name for name in cfg.mix if name not in BUILTIN_TYPES)
    return (*BUILTIN_TYPES, *extra)


def type_params(cfg: AnomalyConfig, name: str) -> object:
    """The type's parameter dataclass with ``anomaly.params.<name>`` applied."""
    spec = INJECTORS[name]
    given = dict(cfg.params.get(name) or {})
    known = [f.name for f in fields(spec.params)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise InjectionError(f"anomaly.params.{name} has no field(s) {unknown}; known: {known}")
    return spec.params(**given)


def supported_mix(cfg: AnomalyConfig, events: EventTable) -> tuple[AnomalyConfig, dict[str, str]]:
    """The config with types that fit no sequence of ``events`` taken out of the mix (when
    ``skip_unsupported``), and why each was taken out."""
    weights = mix_weights(cfg)
    offsets = session_offsets(events.session_id)
    names = type_names(cfg)
    fits = eligibility(events, offsets, names).sum(axis=0) > 0
    no_items = not np.any(events.item_id != MISSING_ID)
    skipped = {
        name: _why_unsupported(name, no_items)
        for name, ok in zip(names, fits, strict=True)
        if weights.get(name, 0) > 0 and (not ok or (no_items and INJECTORS[name].needs_catalogue))
    }
    if not skipped:
        return cfg, {}
    if not cfg.skip_unsupported:
        raise InjectionError(
            f"anomaly type(s) of the mix fit no sequence of this dataset ({skipped}); take "
            "them out of anomaly.mix or set anomaly.skip_unsupported=true"
        )
    if len(skipped) == sum(w > 0 for w in weights.values()):
        raise InjectionError(
            f"no anomaly type of the mix fits this dataset ({skipped}); choose other types "
            "in anomaly.mix"
        )
    return replace(cfg, mix={**weights, **dict.fromkeys(skipped, 0.0)}), skipped


# What the eligibility rules of the types that have one ask of a sequence.
NEEDS = {
    "price_outlier": "a purchase with a known price",
    "funnel_violation": "a purchase after its first event",
}


def _why_unsupported(name: str, no_items: bool = False) -> str:
    spec = INJECTORS[name]
    if no_items and spec.needs_catalogue:
        return "the data has no item ids to draw from"
    needs = f"at least {spec.min_length} event{'s' * (spec.min_length != 1)}"
    if name in NEEDS:
        needs += f" and {NEEDS[name]}"
    return f"no sequence has {needs}"


def check_anomaly_config(cfg: AnomalyConfig) -> None:
    """Raise :class:`InjectionError` with a one-line fix for any out-of-range value (after
    importing ``anomaly.plugins``, whose types the mix may name)."""
    load_plugins(cfg.plugins)
    for split in ("train", "val", "test"):
        rate = getattr(cfg.contamination, split)
        if not 0.0 <= rate < 1.0:
            raise InjectionError(
                f"anomaly.contamination.{split}={rate} is outside [0, 1); use e.g. 0.05"
            )
    if not 0.0 <= cfg.severity <= 1.0:
        raise InjectionError(f"anomaly.severity={cfg.severity} is outside [0, 1]")
    if not 0.0 <= cfg.severity_jitter <= 1.0:
        raise InjectionError(f"anomaly.severity_jitter={cfg.severity_jitter} is outside [0, 1]")
    if cfg.position not in POSITIONS:
        raise InjectionError(
            f"anomaly.position={cfg.position!r} is unknown; use one of {list(POSITIONS)}"
        )
    weights = mix_weights(cfg)
    if not all(0 <= w < math.inf for w in weights.values()):  # NaN fails both comparisons
        raise InjectionError(f"anomaly.mix weights must be finite and >= 0, got {weights}")
    rates = [getattr(cfg.contamination, s) for s in ("train", "val", "test")]
    if any(rates) and sum(weights.values()) <= 0:
        raise InjectionError(
            "anomaly.mix gives every type weight 0 but contamination is > 0; "
            f"set a weight for one of {list(INJECTORS)}"
        )
    for name in weights:
        type_params(cfg, name)
    unknown = sorted(set(cfg.params) - set(weights))
    if unknown:
        raise InjectionError(
            f"anomaly.params names unknown type(s) {unknown}; known: {list(INJECTORS)}"
        )
    outside = sorted(set(cfg.holdout) - {n for n, w in weights.items() if w > 0})
    if outside:
        raise InjectionError(
            f"anomaly.holdout={outside} names types outside the mix; hold out some of "
            f"{[n for n, w in weights.items() if w > 0]}"
        )
    if cfg.holdout and all(w == 0 or n in cfg.holdout for n, w in weights.items()):
        raise InjectionError(
            "anomaly.holdout holds out every type of the mix: training would see none; keep "
            "at least one type out of anomaly.holdout"
        )


def mix_weights(cfg: AnomalyConfig) -> dict[str, float]:
    """Weight per type of ``type_names(cfg)`` (0 where the mix is silent); an empty mix is
    the package's types in equal shares. Unknown names fail, listing the registered ones."""
    unknown = sorted(set(cfg.mix) - set(INJECTORS))
    if unknown:
        raise InjectionError(
            f"unknown anomaly type(s) {unknown}; known: {list(INJECTORS)} (a type of your own "
            "needs its module in anomaly.plugins)"
        )
    mix = cfg.mix or dict.fromkeys(BUILTIN_TYPES, 1.0)
    return {name: float(mix.get(name, 0.0)) for name in type_names(cfg)}


def without_holdout(cfg: AnomalyConfig) -> AnomalyConfig:
    """The config for training and validation: the held-out types at weight 0."""
    if not cfg.holdout:
        return cfg
    return replace(cfg, mix={**mix_weights(cfg), **dict.fromkeys(cfg.holdout, 0.0)}, holdout=[])


def type_counts(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``total`` sequences among types in proportion to weights (largest remainder)."""
    active = {k: w for k, w in weights.items() if w > 0}
    if total == 0 or not active:
        return {}
    share = np.array(list(active.values())) / sum(active.values()) * total
    counts = np.floor(share).astype(int)
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return {k: int(c) for k, c in zip(active, counts, strict=True) if c > 0}


def inject(
    events: EventTable,
    cfg: AnomalyConfig,
    *,
    rate: float,
    seed: int,
    max_length: int,
    split: str = "data",
    exclude: np.ndarray | None = None,
) -> LabelledEvents:
    """Inject anomalies into ``rate`` of the sessions of ``events`` (sorted by session, time)
    that can host a type of the mix (the reference population; with the default mix, every
    session). ``exclude``: (n_sessions,) bool, sessions never chosen and outside the
    population (the data's own anomalies, when injecting on top of real labels).

    Returns new arrays: the source table is never modified.
    """
    check_anomaly_config(cfg)
    offsets = session_offsets(events.session_id)
    n_sess = len(offsets) - 1
    weights = mix_weights(cfg)
    names = type_names(cfg)
    active = tuple(name for name, w in weights.items() if w > 0)
    eligible = eligibility(events, offsets, names)
    hosts = eligible if exclude is None else eligible & ~exclude[:, None]
    population = hosts_any(hosts, names, active)
    if rate > 0 and active and not population.any():
        raise InjectionError(
            f"no sequence of the {split} split can host a type of the mix {list(active)}; "
            f"choose other types in anomaly.mix or set anomaly.contamination.{split}=0"
        )
    counts = type_counts(round(rate * int(population.sum())), weights)
    if not counts:
        return unlabelled(events, names, active, eligible)
    rng = np.random.default_rng(seed)
    victims = _choose_victims(counts, hosts, names, active, rng)
    params = {name: type_params(cfg, name) for name in active}
    profile = NormalProfile.from_events(events)
    read = SessionReader(events, offsets)
    donor = _donor_sampler(events, offsets, read, np.array(sorted(victims)), rng)
    edited: dict[int, Session] = {}
    anomaly_type = np.full(n_sess, -1, dtype=np.int8)
    severity = np.full(n_sess, np.nan, dtype=np.float32)
    details = []
    for index in sorted(victims):
        name = victims[index]
        source = read(index)
        sev = float(np.clip(cfg.severity + rng.uniform(-1, 1) * cfg.severity_jitter, 0.0, 1.0))
        ctx = Context(
            rng=rng,
            severity=sev,
            position=cfg.position,
            max_length=max_length,
            profile=profile,
            params=params[name],
            donor=partial(donor, index),
        )
        edited[index] = fit_to_length(INJECTORS[name].fn(source.copy(), ctx), max_length)
        anomaly_type[index] = names.index(name)
        severity[index] = sev
        details.append(
            {
                "session": int(events.session_id[offsets[index]]),
                "type": name,
                "severity": sev,
                "params": asdict(ctx.params),
                **ctx.record,
            }
        )
    new_events, event_label, origin = assemble(events, offsets, edited)
    changed = np.add.reduceat(event_label, session_offsets(new_events.session_id)[:-1])
    for entry, index in zip(details, sorted(victims), strict=True):
        entry["changed_events"] = int(changed[index])
    return LabelledEvents(
        events=new_events,
        event_label=event_label,
        origin=origin,
        label=anomaly_type >= 0,
        anomaly_type=anomaly_type,
        severity=severity,
        details=tuple(details),
        type_names=names,
        eligible=eligible,
        population=population,
    )


def _choose_victims(
    counts: dict[str, int],
    hosts: np.ndarray,
    type_list: tuple[str, ...],
    active: tuple[str, ...],
    rng: np.random.Generator,
) -> dict[int, str]:
    """Victims as a uniform random sample of the sequences that can host a type of the mix
    (``active``: the types with a weight), then a type for each (``assign_types``).

    Choosing victims first and types second keeps the anomalous sequences, before injection,
    distributed exactly like the normal ones: a type that needs (say) a purchase takes its
    victims from the purchase sequences *among the victims*, so purchase presence, length or
    any other eligibility feature cannot separate the classes by itself (at severity 0 every
    detector sits at chance). The price: a type can get fewer victims than its mix weight asks
    for when too few victims can host it (recorded in the split summary)."""
    can = hosts[:, [type_list.index(n) for n in active]]
    hostable = np.flatnonzero(hosts_any(hosts, type_list, active))  # >= sum(counts) long
    total = sum(counts.values())
    victims = np.sort(rng.choice(hostable, size=total, replace=False))
    target = np.array([counts.get(n, 0) for n in active])
    types = assign_types(can[victims], target, rng)
    return {int(v): active[t] for v, t in zip(victims, types, strict=True)}


def assign_types(can: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(V,) type index per victim from ``can`` ((V, k) bool: victim v can host type t),
    meeting ``target`` ((k,) victims per type) as far as eligibility allows.

    Round by round, each type still short of its target takes one free victim it can host,
    the scarcest type (fewest free hosts per victim still needed) first, preferring victims
    that the fewest other short types could use; a type with no free host left stops. Victims
    left over (their types' targets are met or out of reach) get a type they can host, drawn
    in proportion to the targets."""
    n_victims, k = can.shape
    out = np.full(n_victims, -1)
    need = target.astype(float).copy()
    free = np.ones(n_victims, dtype=bool)
    hosts_free = can.sum(axis=0)  # kept up to date as victims are taken (no O(V k) recount)
    wanted, other_uses = None, np.zeros(n_victims, dtype=np.int64)
    while True:
        at_round_start = hosts_free.copy()
        short = np.flatnonzero((need > 0) & (at_round_start > 0))
        if len(short) == 0:
            break
        for t in sorted(short, key=lambda t: at_round_start[t] / need[t]):
            pool = np.flatnonzero(free & can[:, t])
            if len(pool) == 0:  # a scarcer type took the last one this round
                continue
            if wanted is None or not np.array_equal(wanted, need > 0):
                wanted = need > 0  # recounted only when a type's target is met
                other_uses = (can & wanted).sum(axis=1)
            uses = other_uses[pool]
            best = pool[uses == uses.min()]
            taken = int(rng.choice(best))
            out[taken], free[taken] = t, False
            hosts_free -= can[taken]
            need[t] -= 1
    for v in np.flatnonzero(out < 0):
        weights = can[v] * np.maximum(target, 1e-9)
        out[v] = int(rng.choice(k, p=weights / weights.sum()))
    return out


def _donor_sampler(
    events: EventTable,
    offsets: np.ndarray,
    read: SessionReader,
    victims: np.ndarray,
    rng: np.random.Generator,
):
    """``draw(victim, similar)``: an untouched session of another user, from the sessions with
    the victim's main category when ``similar`` (any session when none qualifies)."""
    pool = np.setdiff1d(np.arange(len(offsets) - 1), victims)
    pool = pool if len(pool) else np.arange(len(offsets) - 1)
    users = events.user_id[offsets[:-1]]
    main = _main_category(events, offsets)
    by_main = np.argsort(main[pool], kind="stable")
    sorted_main = main[pool][by_main]

    def draw(victim: int, similar: bool) -> Session:
        candidates = pool
        if similar:
            lo, hi = (
                np.searchsorted(sorted_main, main[victim], side="left"),
                np.searchsorted(sorted_main, main[victim], side="right"),
            )
            candidates = pool[by_main[lo:hi]] if hi - lo > 1 else pool
        for _ in range(20):
            i = int(rng.choice(candidates))
            if users[i] != users[victim]:
                break
        return read(i)

    return draw


def _main_category(events: EventTable, offsets: np.ndarray) -> np.ndarray:
    """Each session's most frequent category."""
    session_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    pairs, counts = np.unique(
        np.stack([session_of, events.category_id]), axis=1, return_counts=True
    )
    order = np.lexsort((-counts, pairs[0]))  # per session, the most frequent category first
    first = np.concatenate(([True], np.diff(pairs[0][order]) != 0))
    main = np.empty(len(offsets) - 1, dtype=np.int64)
    main[pairs[0][order][first]] = pairs[1][order][first]
    return main


def describe_types() -> dict[str, str]:
    """Anomaly type -> its generative story, for every registered type (docs, the record)."""
    return {name: spec.story for name, spec in INJECTORS.items()}
