"""The injection driver: choose victims, run injectors, label exactly what changed.

Injectors edit sessions (all victims of a type at once, ``batch.py``; or one session at a time,
for a type of the user's) in a *gap representation*: every event carries the seconds
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

from benchmark.anomalies.batch import (
    Batch,
    BatchContext,
    NewEvents,
    offsets_of,
    owner_of,
    ragged_arange,
)
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
    """What a per-session injector (a plugin type) may use besides the session itself. Its
    operations are the batched ones (``benchmark/anomalies/batch.py``) on a batch of one."""

    rng: np.random.Generator
    severity: float
    position: str
    max_length: int
    profile: NormalProfile
    params: Any  # the injector's own parameter dataclass
    donor: Callable[[bool], Session]  # an untouched session of another user (same split);
    # with True, one sharing the victim's main category
    record: dict = field(default_factory=dict)  # what the injector chose, for the metadata

    def _one(self) -> BatchContext:
        return BatchContext(
            self.rng,
            np.array([self.severity]),
            self.position,
            self.max_length,
            self.profile,
            self.params,
        )

    def _keep(self, batched: BatchContext) -> None:
        self.record.update({k: np.asarray(v)[0].item() for k, v in batched.record.items()})

    def lerp(self, low: float, high: float) -> float:
        return low + (high - low) * self.severity

    def loglerp(self, low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
        """Geometric interpolation: severity 0 gives ``low`` (exactly), 1 gives ``high``."""
        shape = np.broadcast(np.asarray(low), np.asarray(high)).shape
        return self._one().loglerp(low, high, np.zeros(shape, dtype=np.int64))

    def insertion_point(self, n: int, n_new: int) -> int:
        """Where to insert ``n_new`` events into ``n`` so the block fits within max_length."""
        return int(self._one().insertion_point(np.array([n]), np.array([n_new]))[0])

    def place(self, s: Session, at: int, cols: dict[str, np.ndarray], gap: np.ndarray) -> Session:
        """Put a block of new events at ``at`` (``BatchContext.place``: at severity 0 nothing
        changes at all, at severity 1 the block is a pure insertion)."""
        one = self._one()
        block = NewEvents(cols, np.asarray(gap, dtype=float), np.array([len(gap)]))
        out = one.place(_batch_of(s), np.array([at]), block)
        self._keep(one)
        return _session_of(out)

    def keep_originals(self, source: Session, edited: Session, at: int, n: int) -> Session:
        """Restore each of the ``n`` events of ``edited`` from ``at`` on (which replaced
        ``source``'s events at the same rows) with probability ``1 - severity``."""
        one = self._one()
        out = one.keep_originals(
            _batch_of(source), _batch_of(edited), np.array([at]), np.array([n])
        )
        self._keep(one)
        return _session_of(out)

    def session_items(self, s: Session, n: int) -> np.ndarray:
        """``n`` items such as this session would browse: popular items of the categories it
        already visits (in proportion to its visits), or of any category if it has none."""
        return self._one().session_items(_batch_of(s), np.array([n]))

    def room(self, wanted: int) -> int:
        """How many events an insertion may add (the block must fit in max_length)."""
        return int(self._one().room(np.array([wanted]))[0])


def _batch_of(s: Session) -> Batch:
    return Batch(s.cols, s.gap, s.origin, np.array([0, len(s)]), np.array([s.t0]))


def _session_of(b: Batch) -> Session:
    return Session(b.cols, b.gap, float(b.t0[0]), b.origin)


Injector = Callable[..., Any]  # (Session, Context) -> Session, or batched (Batch, BatchContext)


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
    batched: bool = False  # ``fn`` edits every victim at once (Batch, BatchContext) -> Batch


INJECTORS: dict[str, InjectorSpec] = {}


def injector(
    name: str,
    *,
    params: type = NoParams,
    min_length: int = 1,
    eligible: Callable[[EventTable, np.ndarray], np.ndarray] | None = None,
    needs_catalogue: bool = False,
    batched: bool = False,
):
    """Register an anomaly type: the decorated function edits one session (``Session``,
    ``Context`` -> ``Session``); its docstring is the type's generative story; ``params`` is the
    dataclass of its knobs (``ctx.params``); ``min_length`` and ``eligible`` ((events, offsets)
    -> (n_sessions,) bool) say which sequences it can work on; ``needs_catalogue``: it draws
    items from the data's catalogue, so data without item ids cannot host it; ``batched``: the
    function edits every victim of the type at once (``Batch``, ``BatchContext`` -> ``Batch``,
    as the built-in types do). A module of the user's, named in ``anomaly.plugins``, registers
    its own types this way without editing the package."""
    if not name.isidentifier():
        raise ValueError(f"anomaly type name {name!r} must be a Python identifier")

    def register(fn: Injector) -> Injector:
        known = INJECTORS.get(name)
        if known is not None and known.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"anomaly type {name!r} is registered already (by {known.fn})")
        story = (fn.__doc__ or "").strip()
        INJECTORS[name] = InjectorSpec(
            name, fn, min_length, eligible, story, params, needs_catalogue, batched
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


def assemble(
    events: EventTable, offsets: np.ndarray, victims: np.ndarray, edited: Batch
) -> tuple[EventTable, np.ndarray, np.ndarray]:
    """Rebuild a table with the sessions ``victims`` (sorted) replaced by ``edited`` (their
    edited versions, in the same order; ``origin``: source rows): events, exact event labels
    (see :func:`event_labels`), source rows (-1 for a new event)."""
    lengths = np.diff(offsets)
    out_lengths = lengths.copy()
    out_lengths[victims] = edited.lengths
    touched = np.zeros(len(lengths), dtype=bool)
    touched[victims] = True
    from_edit = np.repeat(touched, out_lengths)  # output rows that come from ``edited``
    kept_rows = np.flatnonzero(~np.repeat(touched, lengths))  # source rows copied as they are

    def merged(source: np.ndarray, replacement: np.ndarray) -> np.ndarray:
        out = np.empty(len(from_edit), dtype=source.dtype)
        out[~from_edit] = source[kept_rows]
        out[from_edit] = replacement
        return out

    columns = {
        k: merged(v, edited.timestamps() if k == "timestamp" else edited.cols[k])
        for k, v in events.columns().items()
    }
    origin = merged(np.arange(len(events), dtype=np.int64), edited.origin)
    new_events = EventTable(**columns)
    starts = offsets_of(out_lengths)[victims]
    label = event_labels(events, offsets, new_events, origin, starts, edited.lengths, edited.gap)
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
    rows = np.repeat(starts, lengths) + ragged_arange(lengths)
    kept = rows[origin[rows] >= 0]
    session = owner_of(lengths)[origin[rows] >= 0]
    back = (session[1:] == session[:-1]) & (origin[kept][1:] <= origin[kept][:-1])
    for k in np.unique(session[1:][back]).tolist():
        start, n = int(starts[k]), int(lengths[k])
        src = origin[start : start + n]
        at = np.flatnonzero(src >= 0)
        label[start + at] |= _moved(src[at])
