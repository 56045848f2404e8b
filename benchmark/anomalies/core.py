"""The injection driver: choose victims, run injectors, label exactly what changed.

Injectors edit one session at a time in a *gap representation*: every event carries the seconds
since its predecessor (the first event carries 0) and timestamps are rebuilt as
``t0 + cumsum(gap)`` afterwards. Inserting or moving events therefore never alters the gap of an
untouched event: what a detector sees of an unlabelled event (its content and the time since the
event before it) is exactly what the source had.

Labels are then derived, not declared: an output event is anomalous when it is new
(``origin == -1``) or differs from its source event in any column or in its gap. A sequence is
labelled when it was selected for injection; at severity 0 a modifying anomaly may change
nothing, which is the point of severity 0 ("looks normal").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from benchmark.anomalies.profile import NormalProfile
from datasets.schema import EventTable, session_offsets

POSITIONS: tuple[str, ...] = ("random", "start", "middle", "end")


class InjectionError(ValueError):
    """An injection request the data cannot satisfy (a user-fixable configuration problem)."""


@dataclass
class Session:
    """One session being edited. ``cols`` holds every EventTable column except timestamp."""

    cols: dict[str, np.ndarray]
    gap: np.ndarray  # (n,) seconds since the previous event; gap[0] == 0
    t0: float
    origin: np.ndarray  # (n,) index of the source event this one came from, -1 if new

    def __len__(self) -> int:
        return len(self.gap)

    def splice(
        self, at: int, n_remove: int, cols: dict[str, np.ndarray], gap: np.ndarray
    ) -> Session:
        """Replace events ``at .. at + n_remove - 1`` (1 <= at <= n) by new events with their own
        gaps; the events after the block keep theirs."""
        n_new, end = len(gap), at + n_remove
        merged = {
            name: np.concatenate([col[:at], np.asarray(cols[name], dtype=col.dtype), col[end:]])
            for name, col in self.cols.items()
        }
        return Session(
            cols=merged,
            gap=np.concatenate([self.gap[:at], gap, self.gap[end:]]),
            t0=self.t0,
            origin=np.concatenate([self.origin[:at], np.full(n_new, -1), self.origin[end:]]),
        )

    def take(self, index: np.ndarray) -> Session:
        """Reorder or drop events; gaps travel with their events."""
        gap = self.gap[index].copy()
        gap[:1] = 0.0
        return Session(
            {k: v[index] for k, v in self.cols.items()}, gap, self.t0, self.origin[index]
        )

    def copy(self) -> Session:
        return Session(
            {k: v.copy() for k, v in self.cols.items()},
            self.gap.copy(),
            self.t0,
            self.origin.copy(),
        )

    def new_cols(self, n: int, like: int) -> dict[str, np.ndarray]:
        """``n`` events copying row ``like`` (ids, device), to be filled in by an injector."""
        return {name: np.repeat(col[like : like + 1], n) for name, col in self.cols.items()}


@dataclass
class Context:
    """What an injector may use besides the session itself."""

    rng: np.random.Generator
    severity: float
    position: str
    max_length: int
    profile: NormalProfile
    params: Any  # the injector's own parameter dataclass
    donor: Callable[[bool], Session]  # an untouched session of another user (same split);
    # with True, one sharing the victim's main category
    record: dict = field(default_factory=dict)  # what the injector chose, for the metadata

    def lerp(self, low: float, high: float) -> float:
        return low + (high - low) * self.severity

    def loglerp(self, low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
        """Geometric interpolation: severity 0 gives ``low`` (exactly), 1 gives ``high``."""
        if self.severity == 0.0:  # exp(log(x)) can miss x by an ulp: a change, to the labels
            return np.broadcast_to(low, np.broadcast(low, high).shape).astype(float)
        return np.exp(np.log(low) + (np.log(high) - np.log(low)) * self.severity)

    def insertion_point(self, n: int, n_new: int) -> int:
        """Where to insert ``n_new`` events into ``n`` so the block fits within max_length."""
        latest = max(1, min(n, self.max_length - n_new))
        choice = {
            "start": 1,
            "middle": max(1, n // 2),
            "end": n,
            "random": int(self.rng.integers(1, n + 1)),
        }[self.position]
        return min(choice, latest)

    def place(self, s: Session, at: int, cols: dict[str, np.ndarray], gap: np.ndarray) -> Session:
        """Put a block of new events at ``at``. It takes the place of a share ``1 - severity``
        of as many existing events as it holds (length alone must not give an anomaly away),
        and each of those survives unchanged with probability ``1 - severity``: at severity 1
        the block is a pure insertion, at severity 0 nothing changes at all."""
        wanted = round((1.0 - self.severity) * len(gap))
        at = max(1, min(at, len(s) - wanted))  # at the end, step back to have events to replace
        n_remove = min(len(s) - at, wanted)
        # A session too short to absorb the block keeps only its inserted share beyond them.
        n_block = n_remove + len(gap) - wanted
        cols = {name: col[:n_block] for name, col in cols.items()}
        gap = gap[:n_block]
        out = self.keep_originals(s, s.splice(at, n_remove, cols, gap), at, n_remove)
        self.record.update(at=at, inserted=len(gap), replaced=n_remove)
        return out

    def keep_originals(self, source: Session, edited: Session, at: int, n: int) -> Session:
        """Restore each of the ``n`` events of ``edited`` from ``at`` on (which replaced
        ``source``'s events at the same rows) with probability ``1 - severity``.

        This makes severity 0 an anomaly label without an anomaly: what a detector scores
        above chance there it learnt from something other than the injected behaviour."""
        rows = at + np.flatnonzero(self.rng.random(n) < 1.0 - self.severity)
        for name, col in edited.cols.items():
            col[rows] = source.cols[name][rows]
        edited.gap[rows] = source.gap[rows]
        edited.origin[rows] = source.origin[rows]
        self.record.update(kept_original=len(rows))
        return edited

    def session_items(self, s: Session, n: int) -> np.ndarray:
        """``n`` items such as this session would browse: popular items of the categories it
        already visits (in proportion to its visits), or of any category if it has none."""
        categories = s.cols["category_id"][s.cols["item_id"] >= 0]
        if len(categories) == 0:
            return self.profile.sample_items(n, self.rng)
        picks = categories[self.rng.integers(0, len(categories), n)]
        return self.profile.sample_items_like(picks, self.rng)

    def room(self, wanted: int) -> int:
        """How many events an insertion may add (the block must fit in max_length)."""
        return int(max(1, min(wanted, self.max_length - 1)))


Injector = Callable[[Session, Context], Session]


@dataclass
class NoParams:
    """A type without knobs of its own (severity, position and rate still apply)."""


@dataclass(frozen=True)
class InjectorSpec:
    name: str
    fn: Injector
    min_length: int  # shortest session it can work on
    eligible: (
        Callable[[EventTable, np.ndarray], np.ndarray] | None
    )  # (events, offsets) -> per session
    story: str
    params: type = NoParams  # a dataclass of the type's knobs, set by anomaly.params.<name>
    needs_catalogue: bool = False  # draws items from the data's catalogue (needs item ids)


INJECTORS: dict[str, InjectorSpec] = {}


def injector(
    name: str,
    *,
    params: type = NoParams,
    min_length: int = 1,
    eligible: Callable[[EventTable, np.ndarray], np.ndarray] | None = None,
    needs_catalogue: bool = False,
):
    """Register an anomaly type: the decorated function edits one session (``Session``,
    ``Context`` -> ``Session``); its docstring is the type's generative story; ``params`` is the
    dataclass of its knobs (``ctx.params``); ``min_length`` and ``eligible`` ((events, offsets)
    -> (n_sessions,) bool) say which sequences it can work on; ``needs_catalogue``: it draws
    items from the data's catalogue, so data without item ids cannot host it. A module of the
    user's, named in ``anomaly.plugins``, registers its own types this way without editing the
    package."""
    if not name.isidentifier():
        raise ValueError(f"anomaly type name {name!r} must be a Python identifier")

    def register(fn: Injector) -> Injector:
        known = INJECTORS.get(name)
        if known is not None and known.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"anomaly type {name!r} is registered already (by {known.fn})")
        story = (fn.__doc__ or "").strip()
        INJECTORS[name] = InjectorSpec(
            name, fn, min_length, eligible, story, params, needs_catalogue
        )
        return fn

    return register


def any_per_session(flag: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per session: does any of its events have ``flag``? (Sessions are never empty.)"""
    if len(offsets) < 2:
        return np.zeros(0, dtype=bool)
    return np.logical_or.reduceat(flag, offsets[:-1])


class SessionReader:
    """The sessions of one sorted table, each read as a :class:`Session` (views, no copies)."""

    def __init__(self, events: EventTable, offsets: np.ndarray) -> None:
        self.cols = {k: v for k, v in events.columns().items() if k != "timestamp"}
        self.timestamp = events.timestamp
        self.offsets = offsets

    def __call__(self, index: int) -> Session:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        ts = self.timestamp[start:end]
        gap = np.diff(ts, prepend=ts[0])
        cols = {k: v[start:end] for k, v in self.cols.items()}
        return Session(cols, gap, float(ts[0]), np.arange(end - start))


@dataclass(frozen=True)
class LabelledEvents:
    """Events after injection, with exact event labels and per-sequence metadata.

    Sequence arrays are aligned with the sessions of ``events`` in order (``session_offsets``).
    """

    events: EventTable
    event_label: np.ndarray  # (n_events,) bool: new or changed
    origin: np.ndarray  # (n_events,) int64: row of the source table it came from, -1 if new
    label: np.ndarray  # (n_sessions,) bool: selected for injection
    anomaly_type: np.ndarray  # (n_sessions,) int8 index into the type list, -1 for normal
    severity: np.ndarray  # (n_sessions,) float32, NaN for normal
    details: tuple[dict, ...]  # per injected session: type, severity, chosen parameters
    type_names: tuple[str, ...]
    # (n_sessions, n_types) bool: could the type have been injected into this session? Per-type
    # metrics compare a type with the normal sessions it could have hit, so a type that needs
    # (say) a purchase is not credited for "purchase sessions look unusual".
    eligible: np.ndarray | None = None
    # (n_sessions,) bool: could the sequence host any type of the mix? The reference
    # population of the overall metrics: a sequence no type could have hit is never a victim,
    # so comparing it with the victims would score eligibility, not detection.
    population: np.ndarray | None = None

    @property
    def offsets(self) -> np.ndarray:
        return session_offsets(self.events.session_id)

    def sequence_labels(self) -> SequenceLabels:
        """The per-sequence part, without the event table (what evaluation needs)."""
        return SequenceLabels(
            label=self.label,
            anomaly_type=self.anomaly_type,
            severity=self.severity,
            details=self.details,
            type_names=self.type_names,
            eligible=self.eligible,
            population=self.population,
        )


@dataclass(frozen=True)
class SequenceLabels:
    """Per sequence of a split: the ground truth and what the metrics compare it with (the
    fields of :class:`LabelledEvents` of the same names)."""

    label: np.ndarray
    anomaly_type: np.ndarray
    severity: np.ndarray
    details: tuple[dict, ...]
    type_names: tuple[str, ...]
    eligible: np.ndarray | None = None
    population: np.ndarray | None = None

    @staticmethod
    def concat(parts: list[SequenceLabels]) -> SequenceLabels:
        """The sequences of ``parts`` one after another (same types)."""
        if len(parts) == 1:
            return parts[0]

        def joined(name: str):
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        return SequenceLabels(
            label=np.concatenate([p.label for p in parts]),
            anomaly_type=np.concatenate([p.anomaly_type for p in parts]),
            severity=np.concatenate([p.severity for p in parts]),
            details=tuple(d for p in parts for d in p.details),
            type_names=parts[0].type_names,
            eligible=joined("eligible"),
            population=joined("population"),
        )


def eligibility(events: EventTable, offsets: np.ndarray, type_names: tuple[str, ...]) -> np.ndarray:
    """(n_sessions, n_types) bool: sessions each registered type can work on."""
    lengths = np.diff(offsets)
    columns = []
    for name in type_names:
        spec = INJECTORS[name]
        ok = lengths >= spec.min_length
        if spec.eligible is not None:
            ok = ok & spec.eligible(events, offsets)
        columns.append(ok)
    return np.stack(columns, axis=1)


def hosts_any(eligible: np.ndarray, type_names: tuple[str, ...], active: tuple[str, ...]):
    """(n_sessions,) bool: sequences that can host a type of ``active`` (all, when empty)."""
    if not active:
        return np.ones(len(eligible), dtype=bool)
    return eligible[:, [type_names.index(name) for name in active]].any(axis=1)


def unlabelled(
    events: EventTable,
    type_names: tuple[str, ...],
    active: tuple[str, ...] = (),
    eligible: np.ndarray | None = None,
) -> LabelledEvents:
    """``events`` without anomalies; the population is the sequences that could host a type of
    ``active`` (the mix), or every sequence when none is given. ``eligible``: the table's
    eligibility matrix when the caller has it already."""
    offsets = session_offsets(events.session_id)
    n_sess = len(offsets) - 1
    if eligible is None:
        eligible = eligibility(events, offsets, type_names)
    population = hosts_any(eligible, type_names, active)
    return LabelledEvents(
        events=events,
        event_label=np.zeros(len(events), dtype=bool),
        origin=np.arange(len(events), dtype=np.int64),
        label=np.zeros(n_sess, dtype=bool),
        anomaly_type=np.full(n_sess, -1, dtype=np.int8),
        severity=np.full(n_sess, np.nan, dtype=np.float32),
        details=(),
        type_names=type_names,
        eligible=eligible,
        population=population,
    )


def session_codes(events: EventTable, labels) -> np.ndarray:
    """(n_sessions,) int8: each session's class in ``labels`` (a
    ``datasets.schema.SessionLabels``), -1 for normal."""
    offsets = session_offsets(events.session_id)
    keys = events.user_id if labels.by_user else events.session_id
    code = labels.lookup(keys[offsets[:-1]])
    if np.any(code == -2):
        raise InjectionError("some sessions have no label; the loader should have left them out")
    return code.astype(np.int8)


def from_session_labels(events: EventTable, labels) -> LabelledEvents:
    """Real ground truth instead of injection: each session's class from ``labels`` (a
    ``datasets.schema.SessionLabels``); every event of an anomalous session is anomalous."""
    code = session_codes(events, labels)
    nothing = unlabelled(events, (), eligible=np.zeros((len(code), 0), dtype=bool))
    return with_real_labels(nothing, code, tuple(labels.class_names))


def with_real_labels(
    injected: LabelledEvents, code: np.ndarray, class_names: tuple[str, ...]
) -> LabelledEvents:
    """``injected`` (whose victims were drawn among the sessions ``code`` calls normal) with
    the real anomalies added as types after the injected ones: ``code`` is each session's real
    class (-1 normal), every event of a real anomaly is anomalous. The reference population
    is the injection's (sequences that could host a type of the mix) plus the real anomalies;
    real classes are compared with its normal sequences."""
    clash = sorted(set(class_names) & set(injected.type_names))
    if clash:
        raise InjectionError(
            f"the data's own label classes {clash} have the names of injected types: drop "
            "them from anomaly.mix or rename the classes in the label column"
        )
    eligible, population = injected.eligible, injected.population
    assert eligible is not None  # inject() and unlabelled() set both
    assert population is not None
    real, n_injected = code >= 0, len(injected.type_names)
    return replace(
        injected,
        event_label=injected.event_label | np.repeat(real, np.diff(injected.offsets)),
        label=injected.label | real,
        anomaly_type=np.where(real, n_injected + code, injected.anomaly_type).astype(np.int8),
        type_names=(*injected.type_names, *class_names),
        eligible=np.hstack([eligible, np.ones((len(code), len(class_names)), dtype=bool)]),
        population=population | real,
    )


def _moved(origin: np.ndarray) -> np.ndarray:
    """Events out of their source order: all but a longest increasing run of ``origin``."""
    if len(origin) < 2 or np.all(origin[1:] > origin[:-1]):
        return np.zeros(len(origin), dtype=bool)
    tails: list[int] = []  # tails[k]: index of the smallest tail of an increasing run of k + 1
    parent = np.full(len(origin), -1)
    for i, value in enumerate(origin):
        k = int(np.searchsorted(origin[tails], value)) if tails else 0
        parent[i] = tails[k - 1] if k > 0 else -1
        if k == len(tails):
            tails.append(i)
        else:
            tails[k] = i
    moved = np.ones(len(origin), dtype=bool)
    i = tails[-1] if tails else -1
    while i >= 0:
        moved[i] = False
        i = parent[i]
    return moved


def fit_to_length(s: Session, max_length: int) -> Session:
    """Drop trailing events beyond ``max_length`` (never changes the gap of a kept event)."""
    return s if len(s) <= max_length else s.take(np.arange(max_length))


def assemble(
    events: EventTable, offsets: np.ndarray, edited: dict[int, Session]
) -> tuple[EventTable, np.ndarray, np.ndarray]:
    """Rebuild a table with edited sessions swapped in: events, exact event labels (see
    :func:`event_labels`), source rows (-1 for a new event)."""
    names = [k for k in events.columns() if k != "timestamp"]
    pieces: dict[str, list[np.ndarray]] = {k: [] for k in [*names, "timestamp", "origin"]}
    gaps, starts, lengths = [], [], []  # the edited sessions' gaps and rows in the output
    cursor, out_rows = 0, 0
    for index in sorted(edited):
        start, end = int(offsets[index]), int(offsets[index + 1])
        out_rows += _append_rows(pieces, events, cursor, start)
        s = edited[index]
        for k in names:
            pieces[k].append(s.cols[k])
        pieces["timestamp"].append(s.t0 + np.cumsum(s.gap))
        pieces["origin"].append(np.where(s.origin >= 0, s.origin + start, -1))
        gaps.append(s.gap)
        starts.append(out_rows)
        lengths.append(len(s))
        out_rows += len(s)
        cursor = end
    _append_rows(pieces, events, cursor, len(events))
    merged = {k: np.concatenate(v) for k, v in pieces.items()}
    origin = merged.pop("origin").astype(np.int64)
    new_events = EventTable(**merged)
    label = event_labels(
        events,
        offsets,
        new_events,
        origin,
        np.asarray(starts, dtype=np.int64),
        np.asarray(lengths, dtype=np.int64),
        np.concatenate(gaps) if gaps else np.zeros(0),
    )
    return new_events, label, origin


def event_labels(
    source: EventTable,
    source_offsets: np.ndarray,
    edited: EventTable,
    origin: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    gaps: np.ndarray,
) -> np.ndarray:
    """Exact event labels of an assembled table, in one pass over every edited session (rows
    ``starts[i]:starts[i] + lengths[i]``, their gaps back to back in ``gaps``): an event is
    anomalous when it is new, differs from its source row in any column or in its gap (the
    gap as edited, not as rebuilt from timestamps), or is out of its source order."""
    label = origin < 0
    rows = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    kept = ~label[rows]
    at, src = rows[kept], origin[rows[kept]]
    first = np.zeros(len(source), dtype=bool)
    first[source_offsets[:-1]] = True
    source_gap = np.where(first[src], 0.0, source.timestamp[src] - source.timestamp[src - 1])
    differs = gaps[kept] != source_gap
    new_cols, old_cols = edited.columns(), source.columns()
    for name, col in new_cols.items():
        if name == "timestamp":
            continue
        a, b = col[at], old_cols[name][src]
        same = a == b
        if np.issubdtype(a.dtype, np.floating):
            same |= np.isnan(a) & np.isnan(b)
        differs |= ~same
    label[at] = differs
    _label_moved(label, origin, starts, lengths)
    return label


def _label_moved(
    label: np.ndarray, origin: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> None:
    """Label the events of an edited session that left their source order (rare: only a
    session whose kept events' sources do not increase is searched event by event)."""
    for start, n in zip(starts.tolist(), lengths.tolist(), strict=True):
        src = origin[start : start + n]
        kept = np.flatnonzero(src >= 0)
        if len(kept) > 1 and np.any(src[kept][1:] <= src[kept][:-1]):
            label[start + kept] |= _moved(src[kept])


def _append_rows(
    pieces: dict[str, list[np.ndarray]], events: EventTable, start: int, end: int
) -> int:
    if end <= start:
        return 0
    for k, col in events.columns().items():
        pieces[k].append(col[start:end])
    pieces["origin"].append(np.arange(start, end))
    return end - start


def with_session(s: Session, **cols: np.ndarray) -> Session:
    return replace(s, cols={**s.cols, **cols})
