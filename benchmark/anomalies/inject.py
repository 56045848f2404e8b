"""Injection configuration and the driver that applies it to one split."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from benchmark.anomalies import types as anomaly_types
from benchmark.anomalies.core import (
    INJECTORS,
    POSITIONS,
    Context,
    InjectionError,
    LabelledEvents,
    Session,
    assemble,
    changed_events,
    eligibility,
    fit_to_length,
    session_view,
    unlabelled,
)
from benchmark.anomalies.profile import NormalProfile
from datasets.schema import EventTable, session_offsets

ANOMALY_TYPES: tuple[str, ...] = tuple(anomaly_types.PARAMS)


@dataclass
class ContaminationConfig:
    """Share of sequences injected with an anomaly, per split (each in [0, 1))."""

    train: float = 0.05
    """0 keeps training data clean (the usual setting for self-supervised detectors)."""
    val: float = 0.1
    test: float = 0.1


@dataclass
class MixConfig:
    """Relative weight of each anomaly type among injected sequences (0 disables a type)."""

    click_flood: float = 1.0
    brushing: float = 1.0
    scraping: float = 1.0
    cart_abuse: float = 1.0
    account_takeover: float = 1.0
    price_outlier: float = 1.0
    timing_bot: float = 1.0
    session_hijack: float = 1.0
    funnel_violation: float = 1.0


@dataclass
class AnomalyParamsConfig:
    """Per-type parameters (see each injector's docstring)."""

    click_flood: anomaly_types.ClickFloodParams = field(
        default_factory=anomaly_types.ClickFloodParams
    )
    brushing: anomaly_types.BrushingParams = field(default_factory=anomaly_types.BrushingParams)
    scraping: anomaly_types.ScrapingParams = field(default_factory=anomaly_types.ScrapingParams)
    cart_abuse: anomaly_types.CartAbuseParams = field(default_factory=anomaly_types.CartAbuseParams)
    account_takeover: anomaly_types.AccountTakeoverParams = field(
        default_factory=anomaly_types.AccountTakeoverParams
    )
    price_outlier: anomaly_types.PriceOutlierParams = field(
        default_factory=anomaly_types.PriceOutlierParams
    )
    timing_bot: anomaly_types.TimingBotParams = field(default_factory=anomaly_types.TimingBotParams)
    session_hijack: anomaly_types.SessionHijackParams = field(
        default_factory=anomaly_types.SessionHijackParams
    )
    funnel_violation: anomaly_types.FunnelViolationParams = field(
        default_factory=anomaly_types.FunnelViolationParams
    )


@dataclass
class AnomalyConfig:
    """Which anomalies to inject, how many, and how blatant."""

    name: str = "mixed"
    """Label of this anomaly setting in results tables."""
    contamination: ContaminationConfig = field(default_factory=ContaminationConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    severity: float = 0.7
    """0 = looks normal, 1 = blatant."""
    severity_jitter: float = 0.0
    """Each sequence's severity is drawn uniformly from severity +- jitter (clipped to [0, 1])."""
    position: str = "random"
    """Where in a sequence the anomaly goes: random, start, middle or end."""
    params: AnomalyParamsConfig = field(default_factory=AnomalyParamsConfig)
    skip_unsupported: bool = True
    """Leave out of the mix the types no sequence of the dataset can host (e.g. price outliers
    in a views-only dataset), recorded in the run record; false makes that an error."""


def supported_mix(cfg: AnomalyConfig, events: EventTable) -> tuple[AnomalyConfig, dict[str, str]]:
    """The config with types that fit no sequence of ``events`` taken out of the mix (when
    ``skip_unsupported``), and why each was taken out."""
    weights = mix_weights(cfg.mix)
    offsets = session_offsets(events.session_id)
    fits = eligibility(events, offsets, ANOMALY_TYPES).any(axis=0)
    skipped = {
        name: _why_unsupported(name)
        for name, ok in zip(ANOMALY_TYPES, fits, strict=True)
        if weights.get(name, 0) > 0 and not ok
    }
    if not skipped or not cfg.skip_unsupported:
        return cfg, {}
    if len(skipped) == sum(w > 0 for w in weights.values()):
        raise InjectionError(
            f"no anomaly type of the mix fits this dataset ({skipped}); choose other types "
            "in anomaly.mix"
        )
    mix = replace(cfg.mix, **dict.fromkeys(skipped, 0.0))
    return replace(cfg, mix=mix), skipped


# What the eligibility rules of the types that have one ask of a sequence.
NEEDS = {
    "price_outlier": "a purchase with a known price",
    "funnel_violation": "a purchase after its first event",
}


def _why_unsupported(name: str) -> str:
    spec = INJECTORS[name]
    needs = f"at least {spec.min_length} event{'s' * (spec.min_length != 1)}"
    if name in NEEDS:
        needs += f" and {NEEDS[name]}"
    return f"no sequence has {needs}"


def check_anomaly_config(cfg: AnomalyConfig) -> None:
    """Raise :class:`InjectionError` with a one-line fix for any out-of-range value."""
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
    weights = mix_weights(cfg.mix)
    if any(w < 0 for w in weights.values()):
        raise InjectionError(f"anomaly.mix weights must be >= 0, got {weights}")
    rates = [getattr(cfg.contamination, s) for s in ("train", "val", "test")]
    if any(rates) and sum(weights.values()) <= 0:
        raise InjectionError(
            "anomaly.mix gives every type weight 0 but contamination is > 0; "
            f"set a weight for one of {list(ANOMALY_TYPES)}"
        )


def mix_weights(mix: MixConfig | dict) -> dict[str, float]:
    items = (
        mix.items()
        if isinstance(mix, dict)
        else ((f.name, getattr(mix, f.name)) for f in fields(mix))
    )
    weights = {k: float(v) for k, v in items}
    unknown = sorted(set(weights) - set(ANOMALY_TYPES))
    if unknown:
        raise InjectionError(f"unknown anomaly type(s) {unknown}; known: {list(ANOMALY_TYPES)}")
    return weights


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
) -> LabelledEvents:
    """Inject anomalies into ``rate`` of the sessions of ``events`` (sorted by session, time).

    Returns new arrays: the source table is never modified.
    """
    check_anomaly_config(cfg)
    offsets = session_offsets(events.session_id)
    n_sess = len(offsets) - 1
    counts = type_counts(round(rate * n_sess), mix_weights(cfg.mix))
    if not counts:
        return unlabelled(events, ANOMALY_TYPES)
    rng = np.random.default_rng(seed)
    eligible = eligibility(events, offsets, ANOMALY_TYPES)
    victims = _choose_victims(offsets, counts, eligible, rng, split)
    profile = NormalProfile.from_events(events)
    donor = _donor_sampler(events, offsets, np.array(sorted(victims)), rng)
    edited: dict[int, tuple[Session, np.ndarray]] = {}
    anomaly_type = np.full(n_sess, -1, dtype=np.int8)
    severity = np.full(n_sess, np.nan, dtype=np.float32)
    details = []
    for index in sorted(victims):
        name = victims[index]
        source = session_view(events, int(offsets[index]), int(offsets[index + 1]))
        sev = float(np.clip(cfg.severity + rng.uniform(-1, 1) * cfg.severity_jitter, 0.0, 1.0))
        ctx = Context(
            rng=rng,
            severity=sev,
            position=cfg.position,
            max_length=max_length,
            profile=profile,
            params=getattr(cfg.params, name),
            donor=lambda similar, index=index: donor(index, similar),
        )
        out = fit_to_length(INJECTORS[name].fn(source.copy(), ctx), max_length)
        label = changed_events(source, out)
        edited[index] = (out, label)
        anomaly_type[index] = ANOMALY_TYPES.index(name)
        severity[index] = sev
        details.append(
            {
                "session": int(events.session_id[offsets[index]]),
                "type": name,
                "severity": sev,
                "changed_events": int(label.sum()),
                "params": asdict(ctx.params),
                **ctx.record,
            }
        )
    new_events, event_label, origin = assemble(events, offsets, edited)
    return LabelledEvents(
        events=new_events,
        event_label=event_label,
        origin=origin,
        label=anomaly_type >= 0,
        anomaly_type=anomaly_type,
        severity=severity,
        details=tuple(details),
        type_names=ANOMALY_TYPES,
        eligible=eligible,
    )


def _choose_victims(
    offsets: np.ndarray,
    counts: dict[str, int],
    eligible: np.ndarray,
    rng: np.random.Generator,
    split: str,
) -> dict[int, str]:
    free = np.ones(len(offsets) - 1, dtype=bool)
    victims: dict[int, str] = {}
    for code, name in enumerate(ANOMALY_TYPES):
        if name not in counts:
            continue
        spec = INJECTORS[name]
        ok = free & eligible[:, code]
        pool = np.flatnonzero(ok)
        if len(pool) < counts[name]:
            raise InjectionError(
                f"anomaly type {name} needs {counts[name]} eligible sequences in the {split} "
                f"split but {len(pool)} qualify (length >= {spec.min_length}"
                f"{', a priced purchase' if name == 'price_outlier' else ''}); lower "
                f"anomaly.mix.{name} or anomaly.contamination.{split}"
            )
        chosen = rng.choice(pool, size=counts[name], replace=False)
        free[chosen] = False
        victims.update(dict.fromkeys(chosen.tolist(), name))
    return victims


def _donor_sampler(
    events: EventTable, offsets: np.ndarray, victims: np.ndarray, rng: np.random.Generator
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
        return session_view(events, int(offsets[i]), int(offsets[i + 1]))

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
    """Anomaly type -> its generative story (for docs and the run record)."""
    return {name: INJECTORS[name].story for name in ANOMALY_TYPES}
