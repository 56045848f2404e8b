"""Injection configuration and the driver that applies it to one split."""

from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from typing import Any

import numpy as np

from benchmark.anomalies import modality_types  # noqa: F401  (registers the modality types)
from benchmark.anomalies.batch import (
    Batch,
    BatchContext,
    first_per_group,
    fit_to_length,
    offsets_of,
    owner_of,
    ragged_arange,
)
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
    "query_stuffing": "a search with a query (the data has no query text)",
    "listing_mismatch": "an event with an item",
    "interest_shift": "an event with an item",
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
    edits = _edit_victims(events, offsets, victims, names, cfg, max_length, rng)
    new_events, event_label, origin = assemble(events, offsets, edits.chosen, edits.edited)
    changed = np.add.reduceat(event_label, session_offsets(new_events.session_id)[:-1])
    return LabelledEvents(
        events=new_events,
        event_label=event_label,
        origin=origin,
        label=victims >= 0,
        anomaly_type=victims.astype(np.int8),
        severity=edits.severity.astype(np.float32),
        details=_details(events, offsets, edits, changed),
        type_names=names,
        eligible=eligible,
        population=population,
    )


@dataclass
class _Setting:
    """One type's injection into its victims: their severities and what the type draws from."""

    cfg: AnomalyConfig
    name: str
    severity: np.ndarray  # per victim
    max_length: int
    profile: NormalProfile
    donors: Donors
    rng: np.random.Generator

    def apply(
        self, events: EventTable, offsets: np.ndarray, chosen: np.ndarray
    ) -> tuple[Batch, list[dict]]:
        """The victims ``chosen`` (sorted sessions) edited, and what was chosen for each."""
        spec = INJECTORS[self.name]
        params = type_params(self.cfg, self.name)
        if spec.batched:
            ctx = BatchContext(
                self.rng,
                self.severity,
                self.cfg.position,
                self.max_length,
                self.profile,
                params,
                self.donors.of(chosen),
            )
            edited = spec.fn(Batch.read(events, offsets, chosen), ctx)
            fields = {k: np.asarray(v).tolist() for k, v in ctx.record.items()}
            values = [
                dict(zip(fields, row, strict=True)) for row in zip(*fields.values(), strict=True)
            ]
            return edited, self._entries(params, values or [{} for _ in chosen])
        edited, values = self._one_by_one(events, offsets, chosen, params)
        return edited, self._entries(params, values)

    def _entries(self, params: object, values: list[dict]) -> list[dict]:
        """The metadata of each victim: type, parameters, what the type chose."""
        knobs = asdict(params)  # type: ignore[call-overload]
        return [{"type": self.name, "params": dict(knobs), **chosen} for chosen in values]

    def _one_by_one(
        self, events: EventTable, offsets: np.ndarray, chosen: np.ndarray, params: object
    ) -> tuple[Batch, list[dict]]:
        """A per-session (plugin) type: its function called once per victim."""
        read = SessionReader(events, offsets)
        edited, chosen_values = [], []
        for index, sev in zip(chosen.tolist(), self.severity.tolist(), strict=True):
            ctx = Context(
                rng=self.rng,
                severity=sev,
                position=self.cfg.position,
                max_length=self.max_length,
                profile=self.profile,
                params=params,
                donor=partial(self.donors.session, read, index),
            )
            s = INJECTORS[self.name].fn(read(index).copy(), ctx)
            start = int(offsets[index])
            origin = np.where(s.origin >= 0, s.origin + start, -1)
            edited.append(Batch(s.cols, s.gap, origin, np.array([0, len(s)]), np.array([s.t0])))
            chosen_values.append(ctx.record)
        return Batch.concat(edited), chosen_values


@dataclass(frozen=True)
class _Edits:
    """The victims' edited sessions, in session order."""

    chosen: np.ndarray  # victim sessions, ascending
    edited: Batch  # their edited events, one session per victim, fitted to the length
    records: list[dict]  # per victim: its type and what the type chose for it
    severity: np.ndarray  # (n_sessions,) each victim's severity, NaN elsewhere


def _edit_victims(
    events: EventTable,
    offsets: np.ndarray,
    victims: np.ndarray,
    names: tuple[str, ...],
    cfg: AnomalyConfig,
    max_length: int,
    rng: np.random.Generator,
) -> _Edits:
    """Apply each type to its victims (``victims``: (n_sessions,) type code, -1 for none) at
    a severity jittered per victim."""
    donors = Donors(events, offsets, np.flatnonzero(victims >= 0), rng)
    profile = NormalProfile.from_events(events)
    parts, sessions, records = [], [], []
    severity = np.full(len(offsets) - 1, np.nan)
    for code, name in enumerate(names):
        chosen = np.flatnonzero(victims == code)
        if len(chosen) == 0:
            continue
        jitter = rng.uniform(-1, 1, len(chosen)) * cfg.severity_jitter
        sev = np.clip(cfg.severity + jitter, 0.0, 1.0)
        setting = _Setting(cfg, name, sev, max_length, profile, donors, rng)
        edited, record = setting.apply(events, offsets, chosen)
        parts.append(fit_to_length(edited, max_length))
        sessions.append(chosen)
        records.append(record)
        severity[chosen] = sev
    order = np.argsort(np.concatenate(sessions), kind="stable")
    flat = [entry for record in records for entry in record]  # type by type, like sessions
    return _Edits(
        np.concatenate(sessions)[order],
        Batch.concat(parts).sessions(order),
        [flat[k] for k in order.tolist()],
        severity,
    )


def _details(
    events: EventTable, offsets: np.ndarray, edits: _Edits, changed: np.ndarray
) -> tuple[dict, ...]:
    """Per injected session, in session order: its type, severity, the type's parameters and
    what the type chose for it, and how many of its events changed."""
    return tuple(
        {
            "session": int(events.session_id[offsets[index]]),
            "type": record.pop("type"),
            "severity": float(edits.severity[index]),
            **record,
            "changed_events": int(changed[index]),
        }
        for record, index in zip(edits.records, edits.chosen.tolist(), strict=True)
    )


def _choose_victims(
    counts: dict[str, int],
    hosts: np.ndarray,
    type_list: tuple[str, ...],
    active: tuple[str, ...],
    rng: np.random.Generator,
) -> np.ndarray:
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
    code = np.full(len(hosts), -1, dtype=np.int64)  # per sequence: its type in ``type_list``
    code[victims] = np.array([type_list.index(name) for name in active])[types]
    return code


def assign_types(can: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(V,) type index per victim from ``can`` ((V, k) bool: victim v can host type t),
    meeting ``target`` ((k,) victims per type) as far as eligibility allows.

    Round by round, each type still short of its target takes one free victim it can host,
    the scarcest type (fewest free hosts per victim still needed) first, preferring victims
    that the fewest other short types could use (a uniform draw among those); a type with no
    free host left stops. Victims left over (their types' targets are met or out of reach) get
    a type they can host, drawn in proportion to the targets.

    Victims that can host the same types are interchangeable, so the rule runs on those
    groups' counts (and many identical rounds at once while no group runs out and no target is
    met); each group's victims then get its types in a random order. The cost grows with the
    number of groups and rounds that change something, not with the victims."""
    groups, group_of = np.unique(can.reshape(len(can), -1), axis=0, return_inverse=True)
    group_of = group_of.reshape(-1)
    free = np.bincount(group_of, minlength=len(groups))
    taken = np.zeros(groups.shape, dtype=np.int64)  # (groups, k) victims given each type
    need = target.astype(np.int64).copy()
    while True:
        hosts_free = free @ groups
        short = np.flatnonzero((need > 0) & (hosts_free > 0))
        if len(short) == 0:
            break
        other_uses = (groups & (need > 0)).sum(axis=1)
        preferred = {int(t): _preferred(groups[:, t], free, other_uses) for t in short}
        takers = np.zeros(len(groups), dtype=np.int64)
        for pool in preferred.values():
            takers[pool] += 1
        users = takers > 0
        rounds = min(int(need[short].min()), int((free[users] // takers[users]).min()))
        if rounds >= 1:  # identical rounds: every preferred group can serve every taker
            for t, pool in preferred.items():
                got = rng.multivariate_hypergeometric(free[pool], rounds)
                taken[pool, t] += got
                free[pool] -= got
                need[t] -= rounds
            continue
        for t in sorted(short.tolist(), key=lambda t: hosts_free[t] / need[t]):
            pool = _preferred(groups[:, t], free, other_uses)
            if len(pool) == 0:  # a scarcer type took the last one this round
                continue
            g = int(pool[rng.choice(len(pool), p=free[pool] / free[pool].sum())])
            taken[g, t] += 1
            free[g] -= 1
            need[t] -= 1
    return _hand_out(groups, group_of, taken, free, target, rng)


def _preferred(hosts: np.ndarray, free: np.ndarray, other_uses: np.ndarray) -> np.ndarray:
    """The groups with free victims that can host the type, with the fewest other uses."""
    ok = hosts & (free > 0)
    if not ok.any():
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(ok & (other_uses == other_uses[ok].min()))


def _hand_out(
    groups: np.ndarray,
    group_of: np.ndarray,
    taken: np.ndarray,
    left: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Each group's victims, in a random order, get the types the rule gave the group, then
    (those left) a type they can host drawn in proportion to the targets."""
    out = np.full(len(group_of), -1, dtype=np.int64)
    k = groups.shape[1]
    by_group = np.argsort(group_of, kind="stable")
    starts = np.searchsorted(group_of[by_group], np.arange(len(groups) + 1))
    for g in range(len(groups)):
        members = rng.permutation(by_group[starts[g] : starts[g + 1]])
        weights = groups[g] * np.maximum(target, 1e-9)
        rest = rng.choice(k, size=int(left[g]), p=weights / weights.sum())
        out[members] = np.concatenate([np.repeat(np.arange(k), taken[g]), rest])
    return out


class Donors:
    """Untouched sessions of other users to splice from (``session_hijack``): drawn among the
    sessions no type edits, from those with the victim's main category when asked."""

    def __init__(
        self,
        events: EventTable,
        offsets: np.ndarray,
        victims: np.ndarray,
        rng: np.random.Generator,
        sessions: np.ndarray | None = None,
    ) -> None:
        self.events, self.offsets, self.rng = events, offsets, rng
        self._victims = victims
        self.sessions = sessions  # the victims of the type at hand, in batch order
        self._index: dict[str, np.ndarray] = {}  # shared by every type's copy

    def of(self, sessions: np.ndarray) -> Donors:
        """The same donors, for a type whose victims are ``sessions``."""
        donors = Donors(self.events, self.offsets, self._victims, self.rng, sessions)
        donors._index = self._index
        return donors

    def _by_category_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Built on first use (only ``session_hijack`` needs it): the pool, each session's
        main category, the pool ordered by it, and that order's categories."""
        if not self._index:
            n = len(self.offsets) - 1
            pool = np.setdiff1d(np.arange(n), self._victims)
            pool = pool if len(pool) else np.arange(n)
            main = _main_category(self.events, self.offsets)
            by_main = np.argsort(main[pool], kind="stable")
            self._index.update(pool=pool, main=main, by_main=by_main, sorted=main[pool][by_main])
        i = self._index
        return i["pool"], i["main"], i["by_main"], i["sorted"]

    def draw(self, victims: np.ndarray, similar: np.ndarray) -> np.ndarray:
        """A donor session per (victim, similar) pair: another user's, sharing the victim's
        main category when ``similar`` (any session when no other one shares it); a draw of
        the victim's own user is redrawn, up to 20 times."""
        pool, main, by_main, sorted_main = self._by_category_index()
        lo = np.searchsorted(sorted_main, main[victims], side="left")
        hi = np.searchsorted(sorted_main, main[victims], side="right")
        same_category = similar & (hi - lo > 1)
        users = self.events.user_id[self.offsets[:-1]]
        out = np.empty(len(victims), dtype=np.int64)
        todo = np.arange(len(victims))
        for _ in range(20):
            u = self.rng.random(len(todo))
            in_category = pool[by_main[lo[todo] + (u * (hi - lo)[todo]).astype(np.int64)]]
            anywhere = pool[(u * len(pool)).astype(np.int64)]
            out[todo] = np.where(same_category[todo], in_category, anywhere)
            todo = todo[users[out[todo]] == users[victims[todo]]]
            if len(todo) == 0:
                break
        return out

    def session(self, read: SessionReader, victim: int, similar: bool) -> Session:
        """One donor as a ``Session`` (the per-session API's ``ctx.donor``)."""
        return read(int(self.draw(np.array([victim]), np.array([similar]))[0]))

    def extent(self, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First row and length of each session."""
        return self.offsets[sessions], self.offsets[sessions + 1] - self.offsets[sessions]

    def rows_of(self, rows: np.ndarray) -> Batch:
        """Source rows as new events: their columns and the gap to the row before (0 for a
        session's first row)."""
        ts = self.events.timestamp
        first = np.isin(rows, self.offsets[:-1])
        gap = np.where(first, 0.0, ts[rows] - ts[np.maximum(rows - 1, 0)])
        cols = {k: v[rows] for k, v in self.events.columns().items() if k != "timestamp"}
        return Batch(cols, gap, rows, np.array([0, len(rows)]), ts[:1])

    def foreignness(self, victims: np.ndarray, donors: np.ndarray) -> np.ndarray:
        """(V, k) how foreign each donor is to its victim: 1 - Jaccard similarity of their
        category sets, plus 1 when their most used devices differ."""
        pairs_a, pairs_b = np.repeat(victims, donors.shape[1]), donors.ravel()
        involved, local = np.unique(np.concatenate([pairs_a, pairs_b]), return_inverse=True)
        a, b = local[: len(pairs_a)], local[len(pairs_a) :]
        start, length = self.extent(involved)
        rows = np.repeat(start, length) + ragged_arange(length)
        owner = owner_of(length)
        _, rank = np.unique(self.events.category_id[rows], return_inverse=True)
        width = int(rank.max()) + 1 if len(rank) else 1
        keys = np.unique(owner * width + rank)  # distinct (session, category), sorted
        key_session = keys // width
        size = np.bincount(key_session, minlength=len(involved))
        # each pair's donor categories, looked up among its victim's
        first = offsets_of(size)[:-1]
        pair = owner_of(size[b])
        donor_keys = keys[np.repeat(first[b], size[b]) + ragged_arange(size[b])]
        wanted = a[pair] * width + donor_keys % width
        found = np.searchsorted(keys, wanted)
        hit = found < len(keys)
        hit[hit] = keys[found[hit]] == wanted[hit]
        shared = np.bincount(pair[hit], minlength=len(a))
        jaccard = shared / np.maximum(1, size[a] + size[b] - shared)
        distance = 1.0 - jaccard
        if self.events.device is not None:
            device = self.events.device[rows].astype(np.int64) + 1
            counts = np.zeros((len(involved), int(device.max()) + 1 if len(device) else 1))
            np.add.at(counts, (owner, device), 1)
            usual = counts.argmax(axis=1)  # the first most used (lowest code) on a tie
            distance = distance + (usual[a] != usual[b])
        return distance.reshape(donors.shape)


def _main_category(events: EventTable, offsets: np.ndarray) -> np.ndarray:
    """Each session's most frequent category (the lowest id on a tie)."""
    session_of = owner_of(np.diff(offsets))
    order = np.lexsort((events.category_id, session_of))
    sess, cat = session_of[order], events.category_id[order]
    run_start = np.flatnonzero(
        np.concatenate(([True], (sess[1:] != sess[:-1]) | (cat[1:] != cat[:-1])))
    )
    run_length = np.diff(np.append(run_start, len(order)))
    best = first_per_group(sess[run_start], -run_length, len(offsets) - 1)
    return cat[run_start[best]]


def describe_types() -> dict[str, str]:
    """Anomaly type -> its generative story, for every registered type (docs, the record)."""
    return {name: spec.story for name, spec in INJECTORS.items()}
