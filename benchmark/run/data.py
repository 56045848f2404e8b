"""The data stage of a run: load, sessionise, split, inject, encode.

Order matters for soundness: entities are split *before* injection (each split is injected at its
own contamination rate, and session-hijack donors come from the same split) and vocabularies are
fitted on the training split only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmark.anomalies.core import (
    LabelledEvents,
    SequenceLabels,
    from_session_labels,
    session_codes,
    with_real_labels,
)
from benchmark.anomalies.inject import (
    AnomalyConfig,
    inject,
    mix_weights,
    supported_mix,
    type_counts,
    without_holdout,
)
from benchmark.config import (
    DatasetConfig,
    EventsDatasetConfig,
    PublicDatasetConfig,
    SplitBy,
    SplitMethod,
    SyntheticDatasetConfig,
)
from benchmark.errors import ConfigError
from benchmark.paths import PROJECT_ROOT
from benchmark.run import prepared_cache
from benchmark.run.threads import resolve_threads
from benchmark.run.workers import worker_result, write_task
from datasets.cache import cached_load, input_files
from datasets.features import (
    UNKNOWN,
    MediaTables,
    SequenceArrays,
    Vocabularies,
    Vocabulary,
    encode_profiles,
    encode_sequences,
    event_brands,
)
from datasets.loaders.common import DataFileError, LoadOptions, as_downloaded
from datasets.loaders.registry import LOADERS as PUBLIC_LOADERS
from datasets.loaders.table import PartitionedTable, partition, partitions_for
from datasets.schema import Dataset, EventTable, SchemaError, SessionLabels
from datasets.sessions import (
    SPLITS,
    LengthReport,
    chronological_cuts,
    first_event_times,
    limit_lengths,
    sessionize,
    split_entities,
)
from datasets.synthetic import generate


def _load_synthetic(cfg: DatasetConfig, seed: int) -> Dataset:
    assert isinstance(cfg, SyntheticDatasetConfig)
    return generate(cfg.generator, seed)


def data_path(path: str) -> Path:
    """A configured data path: as given when it exists (absolute, or relative to the working
    directory), else relative to the project root (the shipped samples)."""
    given = Path(path).expanduser()
    if given.exists() or given.is_absolute():
        return given
    return PROJECT_ROOT / given


def _load_public(cfg: DatasetConfig, seed: int) -> Dataset:
    if not isinstance(cfg, PublicDatasetConfig):
        raise ConfigError(
            f"dataset={cfg.name} needs dataset.path: use conf/dataset/{cfg.name}.yaml"
        )
    # Every load option has a dataset config field of the same name (``table``: events only).
    given = {f.name: getattr(cfg, f.name) for f in fields(LoadOptions) if hasattr(cfg, f.name)}
    options = LoadOptions(**given)
    loader, path = PUBLIC_LOADERS[cfg.name], table_path(cfg)
    if not cfg.cache:
        return loader(path, options)
    min_bytes = int(cfg.cache_min_mb * 2**20)
    return cached_load(cfg.name, path, options, loader, Path(cfg.cache_dir), min_bytes)


LOADERS: dict[str, Callable[[DatasetConfig, int], Dataset]] = {
    "synthetic": _load_synthetic,
    **dict.fromkeys(PUBLIC_LOADERS, _load_public),
}


@dataclass(frozen=True)
class PreparedData:
    dataset_name: str
    modalities: tuple[str, ...]
    labelled: dict[str, SequenceLabels]  # split -> ground truth per sequence
    arrays: dict[str, SequenceArrays]  # split -> model inputs (ragged)
    vocabs: Vocabularies
    summary: dict  # JSON-ready facts for the run record
    profile_cardinalities: tuple[int, ...] = ()  # per profile field; empty without profiles
    # split -> the injected event table, kept only when asked (``keep_events``): it costs
    # about as much memory as the source table
    events: dict[str, LabelledEvents] | None = None


def derive_seeds(seed: int, names: tuple[str, ...]) -> dict[str, int]:
    """Independent, reproducible sub-seeds for each named stage."""
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1)[0]) for n, c in zip(names, children, strict=True)}


def load_dataset(cfg: DatasetConfig, seed: int) -> Dataset:
    if cfg.name not in LOADERS:
        raise ConfigError(f"dataset.name={cfg.name!r} has no loader; known: {sorted(LOADERS)}")
    dataset = LOADERS[cfg.name](cfg, seed)
    dropped = dataset.source.get("quarantined") or {}
    if len(dataset.events) == 0 and dropped:
        raise SchemaError(
            f"every row was dropped ({drops_text(dataset.source)}); fix the file or the "
            "dataset.table mapping"
        )
    dataset.events.validate()
    return dataset


def drops_text(source: Mapping[str, Any]) -> str:
    """'3 out_of_range, 2 duplicate_event; e.g. file:4: column 'price': -5 is outside ...'."""
    examples = source.get("examples") or []
    text = drop_counts(source)
    return f"{text}; e.g. {examples[0]}" if examples else text


def drop_counts(source: Mapping[str, Any]) -> str:
    """Rows dropped per rule, most first: '3 out_of_range, 2 duplicate_event'."""
    counts = source.get("quarantined") or {}
    ranked = sorted(counts.items(), key=lambda x: (-x[1], x[0]))
    return ", ".join(f"{n:,} {rule}" for rule, n in ranked)


class _Source:
    """What the data stage reads: one table, or the user partitions of a table too big for
    ``dataset.memory_gb`` (``datasets.loaders.table.PartitionedTable``)."""

    def __init__(self, cfg: DatasetConfig, seed: int, parts: int, folder: Path) -> None:
        self.folder = folder
        self.table: PartitionedTable | None = None
        self.whole: Dataset | None = None
        if parts > 1:
            assert isinstance(cfg, EventsDatasetConfig)
            options = LoadOptions(
                name=cfg.name, strict=cfg.strict, max_rows=cfg.max_rows, table=cfg.table
            )
            self.table = partition(table_path(cfg), options, parts, folder)
        else:
            self.whole = load_dataset(cfg, seed)

    def __len__(self) -> int:
        return 1 if self.table is None else len(self.table)

    def load(self, k: int) -> Dataset:
        if self.table is not None:
            return self.table.load(k)
        assert self.whole is not None
        whole, self.whole = self.whole, None  # let the table go once a part has it
        return whole

    def report(self, parts: list[_Part]) -> dict:
        """The record's ``source``: what was read, dropped and labelled."""
        return self.merged([p.source for p in parts], [p.label_counts for p in parts])

    def merged(
        self, sources: Sequence[Mapping[str, Any]], label_counts: list[dict[str, int] | None]
    ) -> dict:
        """One ``source`` report of the parts' reports and real label counts."""
        if self.table is None:
            return dict(sources[0])
        report = self.table.report(list(sources))
        if label_counts[0] is not None:
            counts: Counter[str] = Counter()
            for part in label_counts:
                counts.update(part or {})
            report["labels"] = dict(counts)
        return report


@contextmanager
def partitions_of(cfg: DatasetConfig, seed: int) -> Iterator[_Source]:
    """The dataset as the data stage reads it: one table, or (beyond ``dataset.memory_gb``)
    its user partitions, loaded one at a time with ``load(k)``; the partition files are
    removed when the block ends."""
    count = _partitions(cfg)
    scratch = _scratch(cfg) if count > 1 else None
    with tempfile.TemporaryDirectory(prefix="partitions-", dir=scratch) as folder:
        yield _Source(cfg, seed, count, Path(folder))


def _workers(cfg: DatasetConfig) -> int:
    """Partitions prepared at a time: ``dataset.workers`` (0: one per CPU, as ``threads``
    chooses), never more than the memory available holds at ``dataset.memory_gb`` each."""
    assert isinstance(cfg, EventsDatasetConfig)
    assert cfg.memory_gb is not None
    wanted = resolve_threads(cfg.workers)[0]
    fits = int(psutil.virtual_memory().available // (cfg.memory_gb * 2**30))
    return max(1, min(wanted, fits))


def _partitions(cfg: DatasetConfig) -> int:
    """User partitions the data stage needs (1: the table fits ``dataset.memory_gb``)."""
    if not isinstance(cfg, EventsDatasetConfig) or cfg.memory_gb is None:
        return 1
    return partitions_for(table_path(cfg), cfg.table, cfg.memory_gb)


def table_path(cfg: PublicDatasetConfig) -> Path:
    """The configured file or folder (a file's compressed twin when only that exists); a
    public dataset read through a mapping names where to download it when it is missing."""
    path = as_downloaded(data_path(cfg.path))
    if isinstance(cfg, EventsDatasetConfig) and cfg.download and not path.exists():
        raise DataFileError(f"{cfg.name} data not found at {path}: {cfg.download}")
    return path


@dataclass
class _Part:
    """One table's (or partition's) prepared splits, item and category ids still raw."""

    arrays: dict[str, SequenceArrays]
    labels: dict[str, SequenceLabels]
    lengths: LengthReport
    source_events: int
    sessions: int  # gap sessions are numbered 0 .. sessions - 1 in each part
    load_seconds: float
    inject_seconds: float
    dataset: str
    modalities: tuple[str, ...]
    source: Mapping[str, Any]
    label_counts: dict[str, int] | None  # real labels per class; None without
    anomaly: AnomalyConfig  # the mix as injected (types the data cannot host left out)
    skipped: dict[str, str]
    profile_cardinalities: tuple[int, ...]
    kept: dict[str, LabelledEvents]
    media: tuple[Any, Any] = (None, None)  # the dataset's queries and items, for MediaTables


def prepare_data(
    cfg: DatasetConfig, anomaly: AnomalyConfig, seed: int, *, keep_events: bool = False
) -> PreparedData:
    """:func:`prepare_fresh`, through the prepared-data cache (``benchmark.run.prepared_cache``)
    when ``dataset.cache`` is on and the input files weigh ``dataset.cache_min_mb`` or more."""
    file = None if keep_events else _prepared_file(cfg, anomaly, seed)
    stored = prepared_cache.read(file) if file is not None and file.exists() else None
    if file is not None and stored is not None:
        cache = {"status": "hit", "file": str(file)}
        return PreparedData(**{**stored, "summary": {**stored["summary"], "prepared_cache": cache}})
    prepared = prepare_fresh(cfg, anomaly, seed, keep_events=keep_events)
    if file is not None:
        prepared_cache.write(file, prepared)
        prepared.summary["prepared_cache"] = {"status": "stored", "file": str(file)}
    return prepared


def _prepared_file(cfg: DatasetConfig, anomaly: AnomalyConfig, seed: int) -> Path | None:
    if not isinstance(cfg, PublicDatasetConfig) or not cfg.cache:
        return None
    path = table_path(cfg)
    size = sum(f.stat().st_size for f in input_files(path)) if path.exists() else 0
    if size < cfg.cache_min_mb * 2**20:
        return None
    key = prepared_cache.cache_key(cfg, anomaly, seed, path)
    return data_path(cfg.cache_dir) / f"prepared-{cfg.name}-{key}.npz"


def prepare_fresh(
    cfg: DatasetConfig, anomaly: AnomalyConfig, seed: int, *, keep_events: bool = False
) -> PreparedData:
    """Load, sessionise, split, inject and encode. A table beyond ``dataset.memory_gb`` is read
    once into user partitions, each prepared on its own (its own seeds; splits, sessions and
    injection never need another user's events), ``dataset.workers`` at a time; vocabularies
    are then fitted on the whole training split. Each event table is let go as soon as the
    next step has its output. ``keep_events``: keep each split's injected event table (a
    table in one piece only)."""
    seeds = derive_seeds(seed, ("load", "split", *(f"inject_{s}" for s in SPLITS)))
    t0 = time.perf_counter()
    with partitions_of(cfg, seeds["load"]) as source:
        read_s = time.perf_counter() - t0
        if source.table is None:
            parts = [_prepare_part(partial(source.load, 0), cfg, anomaly, seeds, keep_events)]
        else:
            parts = _partitioned(source.table, cfg, anomaly, seed, seeds, source.folder)
        report = source.report(parts)
    return _merge(cfg, parts, seeds, report, read_s, keep_events)


def _partitioned(
    table: PartitionedTable,
    cfg: DatasetConfig,
    anomaly: AnomalyConfig,
    seed: int,
    seeds: dict,
    folder: Path,
) -> list[_Part]:
    """Every partition, each in a worker process of its own (``python -m
    benchmark.run.partition_worker``: a fresh interpreter, so no fork of a process that may
    hold torch or JAX threads, no re-run of the caller's script, and a partition's memory is
    the system's again when it ends): the first alone, to settle the anomaly mix the data can
    host, then the others ``dataset.workers`` at a time."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()  # what the partitioning read cached
    workers = min(_workers(cfg), max(1, len(table) - 1))
    cuts = _chronological_cuts(table, cfg, folder, workers)
    first = run_workers([(prepare_partition, (table, 0, cfg, anomaly, seeds, cuts))], 1, folder)
    tasks = [
        (
            prepare_partition,
            (
                table,
                k,
                cfg,
                first[0].anomaly,
                derive_seeds(_part_seed(seed, k), tuple(seeds)),
                cuts,
            ),
        )
        for k in range(1, len(table))
    ]
    return [first[0], *run_workers(tasks, workers, folder)]


def _chronological_cuts(
    table: PartitionedTable, cfg: DatasetConfig, folder: Path, workers: int
) -> tuple[float, float] | None:
    """A chronological split of a partitioned table: its boundary times, found on every
    partition's entities together (a first pass), so that every validation and test entity
    of every partition starts after every training entity; None for a random split."""
    if cfg.split.method != SplitMethod.chronological:
        return None
    tasks = [(entity_first_events, (table, k, cfg)) for k in range(len(table))]
    first_seen = np.concatenate(run_workers(tasks, workers, folder))
    split = cfg.split
    return chronological_cuts(first_seen, (split.train, split.val, split.test))


def entity_first_events(table: PartitionedTable, k: int, cfg: DatasetConfig) -> np.ndarray:
    """The first event time of each entity (user or session, as the split takes them) of
    partition ``k``, after sessions and length limits, as the split sees them."""
    seq = cfg.sequence
    events = sessionize(table.load(k).events, by=seq.session_by, gap_seconds=seq.gap_minutes * 60)
    events, _ = limit_lengths(
        events, min_length=seq.min_length, max_length=seq.max_length, keep=seq.truncate
    )
    key = events.user_id if cfg.split.by == SplitBy.user else events.session_id
    return first_event_times(key, events.timestamp)


def prepare_partition(
    table: PartitionedTable,
    k: int,
    cfg: DatasetConfig,
    anomaly: AnomalyConfig,
    seeds: dict,
    cuts: tuple[float, float] | None = None,
) -> _Part:
    """Partition ``k`` of ``table`` prepared (a worker process's whole job)."""
    return _prepare_part(partial(table.load, k), cfg, anomaly, seeds, False, cuts)


def run_workers(tasks: list[tuple[Callable, tuple]], workers: int, folder: Path) -> list:
    """Each task's function called with its arguments (``(function, arguments)``; the
    function at a module's top level), ``workers`` processes at a time, results in
    task order. A worker's error is raised here as it was raised there; a worker that dies
    (killed, out of memory) is one line naming the fix."""
    if not tasks:
        return []
    pending = list(enumerate(tasks))
    running: dict[int, subprocess.Popen] = {}
    results: dict[int, Any] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                index, task = pending.pop(0)
                write_task(folder, index, task)
                running[index] = _start_worker(folder, index)
            for index, process in list(running.items()):
                if process.poll() is None:
                    continue
                del running[index]
                results[index] = worker_result(folder, index, process.returncode)
            time.sleep(0.05)
    finally:
        for process in running.values():
            process.kill()
            process.wait()
    return [results[i] for i in range(len(tasks))]


def _start_worker(folder: Path, index: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path[1:]])}
    command = [sys.executable, "-m", "benchmark.run.partition_worker", str(folder), str(index)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)


def _scratch(cfg: DatasetConfig) -> Path:
    """Where partitions are written: the dataset cache folder."""
    folder = data_path(getattr(cfg, "cache_dir", ".cache/datasets"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _part_seed(seed: int, k: int) -> int:
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def _prepare_part(
    load: Callable[[], Dataset],
    cfg: DatasetConfig,
    anomaly: AnomalyConfig,
    seeds: dict[str, int],
    keep_events: bool,
    cuts: tuple[float, float] | None = None,
) -> _Part:
    """Sessions, splits, injection and encoding (raw ids) of one table (or partition), read
    here by ``load`` so that no caller holds the table while it is prepared (``cuts``: a
    partition's chronological split boundaries, found on the whole table)."""
    seq = cfg.sequence
    t0 = time.perf_counter()
    dataset = load()
    load_s = time.perf_counter() - t0
    real = dataset.session_labels
    source_events = len(dataset.events)
    events = sessionize(dataset.events, by=seq.session_by, gap_seconds=seq.gap_minutes * 60)
    dataset = replace(dataset, events=events.take(np.zeros(0, dtype=np.int64)))
    sessions = int(events.session_id.max()) + 1 if len(events) else 0
    events, lengths = limit_lengths(
        events, min_length=seq.min_length, max_length=seq.max_length, keep=seq.truncate
    )
    skipped: dict[str, str] = {}
    if _injects(anomaly):
        anomaly, skipped = supported_mix(anomaly, events)
    split_cfg = cfg.split
    splits = split_entities(
        events,
        by=split_cfg.by,
        method=split_cfg.method,
        fractions=(split_cfg.train, split_cfg.val, split_cfg.test),
        seed=seeds["split"],
        cuts=cuts,
    )
    del events
    inject_s = 0.0
    arrays: dict[str, SequenceArrays] = {}
    labels: dict[str, SequenceLabels] = {}
    kept: dict[str, LabelledEvents] = {}
    cards: tuple[int, ...] = ()
    for name in SPLITS:
        t1 = time.perf_counter()
        lab = _ground_truth(splits.pop(name), name, real, anomaly, seeds, seq.max_length)
        inject_s += time.perf_counter() - t1
        arrays[name], split_cards = _encode_split(lab, dataset, seq.max_length)
        cards = split_cards or cards
        labels[name] = lab.sequence_labels()
        if keep_events:
            kept[name] = lab
        del lab
    return _Part(
        arrays=arrays,
        labels=labels,
        lengths=lengths,
        source_events=source_events,
        sessions=sessions,
        load_seconds=load_s,
        inject_seconds=inject_s,
        dataset=dataset.name,
        modalities=dataset.modalities,
        source=dataset.source,
        label_counts=real.counts() if real is not None else None,
        anomaly=anomaly,
        skipped=skipped,
        profile_cardinalities=cards,
        kept=kept,
        media=(dataset.queries, dataset.items),
    )


def _encode_split(
    lab: LabelledEvents, dataset: Dataset, max_length: int
) -> tuple[SequenceArrays, tuple[int, ...]]:
    """A split's labelled events as sequence arrays (raw ids), with its items' brands and its
    users' profiles where the data has them; the profile columns' cardinalities."""
    brands = event_brands(dataset.items, lab.events.item_id) if dataset.items is not None else None
    profile = None
    cards: tuple[int, ...] = ()
    if dataset.profiles is not None:
        profile, cards = encode_profiles(dataset.profiles, lab.events.user_id[lab.offsets[:-1]])
    encoded = encode_sequences(
        lab.events,
        None,
        max_length=max_length,
        event_label=lab.event_label,
        label=lab.label,
        brand_ids=brands,
        profile=profile,
    )
    # The class of the type classifier (objective=classify_type): 0 normal, 1 + type.
    return replace(encoded, anomaly_class=lab.anomaly_type.astype(np.int32) + 1), cards


def _ground_truth(
    events: EventTable,
    split: str,
    real: SessionLabels | None,
    anomaly: AnomalyConfig,
    seeds: dict[str, int],
    max_length: int,
) -> LabelledEvents:
    """The split's labelled events: the data's own labels, injected anomalies, or both (the
    victims then drawn among the sessions the data's labels call normal)."""
    if real is None:
        return _injected(events, split, anomaly, seeds, max_length)
    if not _injects(anomaly):
        return from_session_labels(events, real)
    code = session_codes(events, real)
    injected = _injected(events, split, anomaly, seeds, max_length, exclude=code >= 0)
    return with_real_labels(injected, code, tuple(real.class_names))


def _injected(
    events: EventTable,
    split: str,
    anomaly: AnomalyConfig,
    seeds: dict[str, int],
    max_length: int,
    exclude: np.ndarray | None = None,
) -> LabelledEvents:
    """The split's events with anomalies injected at its contamination rate (the held-out
    types in the test split only); never into ``exclude``."""
    return inject(
        events,
        anomaly if split == "test" else without_holdout(anomaly),
        rate=getattr(anomaly.contamination, split),
        seed=seeds[f"inject_{split}"],
        max_length=max_length,
        split=split,
        exclude=exclude,
    )


def _merge(
    cfg: DatasetConfig,
    parts: list[_Part],
    seeds: dict[str, int],
    report: dict,
    read_s: float,
    keep_events: bool,
) -> PreparedData:
    """The parts' splits joined: vocabularies fitted on the whole training split, each part's
    raw ids encoded with them (raw ids of one part at a time beside the encoded ones), then
    the encoded parts concatenated."""
    seq, first = cfg.sequence, parts[0]
    anomaly, real, injected = first.anomaly, first.label_counts is not None, _injects(first.anomaly)
    real_classes = [c for c in first.label_counts or {} if c != "normal"]
    if seq.session_by == "gap":
        _number_sessions_apart(parts)
    labels = {s: SequenceLabels.concat([p.labels[s] for p in parts]) for s in SPLITS}
    vocabs = _fit_vocabularies(cfg, [p.arrays["train"] for p in parts])
    queries, items = first.media
    media = MediaTables.build(queries, items)
    for part in parts:  # encoded part by part: raw ids of one part alive at a time
        part.arrays = {
            s: replace(a.with_vocabularies(vocabs, items), media=media)
            for s, a in part.arrays.items()
        }
    arrays = {s: SequenceArrays.concat([p.arrays.pop(s) for p in parts]) for s in SPLITS}
    source_events = sum(p.source_events for p in parts)
    load_s = read_s + sum(p.load_seconds for p in parts)
    summary = {
        "dataset": first.dataset,
        "source": report,
        "modalities": list(first.modalities),
        "source_events": source_events,
        "load_seconds": load_s,
        "load_events_per_second": source_events / max(load_s, 1e-9),
        "inject_seconds": sum(p.inject_seconds for p in parts),
        "partitions": len(parts),
        "anomaly_types_skipped": first.skipped,
        "real_labels": real,
        "injected": injected,
        # Types in training and validation: a test type not among them is unseen.
        "types_seen_in_training": _seen_types(anomaly, real_classes) if injected else [],
        "lengths": {
            f.name: sum(getattr(p.lengths, f.name) for p in parts) for f in fields(LengthReport)
        },
        "vocab": {"items": len(vocabs.item), "categories": len(vocabs.category)},
        "seeds": seeds,
        "splits": {s: split_summary(labels[s], arrays[s]) for s in SPLITS},
        "per_type_asked": {
            s: _asked(anomaly if s == "test" else without_holdout(anomaly), s, labels[s])
            for s in SPLITS
            if injected
        },
    }
    kept = first.kept if keep_events and len(parts) == 1 else None
    # each partition counts the regions of its own users: the widest covers every code
    widths = [p.profile_cardinalities for p in parts if p.profile_cardinalities]
    cards = tuple(max(c) for c in zip(*widths, strict=True)) if widths else ()
    return PreparedData(
        first.dataset, first.modalities, labels, arrays, vocabs, summary, cards, kept
    )


def _fit_vocabularies(cfg: DatasetConfig, train: list[SequenceArrays]) -> Vocabularies:
    """Vocabularies of the whole training split, from its parts' raw ids."""
    seq = cfg.sequence

    def column(name: str) -> np.ndarray:
        return np.concatenate([part.events[name] for part in train])

    return Vocabularies(
        item=Vocabulary.fit(column("item"), min_count=seq.vocab_min_count, max_size=seq.max_items),
        category=Vocabulary.fit(column("category"), min_count=seq.vocab_min_count),
        brand=Vocabulary.fit(column("brand")) if "brand" in train[0].events else None,
    )


def _number_sessions_apart(parts: list[_Part]) -> None:
    """Gap sessions are numbered from 0 in each part: shift each part's past the ones before
    (the arrays' session ids and the injection metadata's)."""
    base = 0
    for part in parts:
        for split in SPLITS:
            arrays = part.arrays[split]
            part.arrays[split] = replace(arrays, session_id=arrays.session_id + base)
            for entry in part.labels[split].details:
                entry["session"] += base
        base += part.sessions


def _asked(anomaly: AnomalyConfig, split: str, lab: SequenceLabels) -> dict[str, int]:
    """Sequences per type the mix asked for in ``split``; a type that fewer victims could
    host gets fewer (``splits.<split>.per_type``): victims are drawn first, types second."""
    rate, weights = getattr(anomaly.contamination, split), mix_weights(anomaly)
    hosts = np.ones(len(lab.label), dtype=bool) if lab.population is None else lab.population
    # The data's own anomalies (types after the injected ones) were never candidate victims.
    real = lab.anomaly_type >= len(weights)
    return type_counts(round(rate * int(np.sum(hosts & ~real))), weights)


def _seen_types(anomaly: AnomalyConfig, real_classes: list[str]) -> list[str]:
    weights = mix_weights(without_holdout(anomaly))
    return [name for name, w in weights.items() if w > 0] + real_classes


def _injects(anomaly: AnomalyConfig) -> bool:
    c = anomaly.contamination
    return max(c.train, c.val, c.test) > 0


def split_summary(lab: SequenceLabels, arrays: SequenceArrays) -> dict:
    names = lab.type_names
    per_type = np.bincount(lab.anomaly_type[lab.anomaly_type >= 0], minlength=len(names))
    return {
        "sequences": len(arrays),
        "events": int(arrays.offsets[-1]),
        "users": len(np.unique(arrays.user_id)),
        "anomalous_sequences": int(lab.label.sum()),
        "contamination": float(lab.label.mean()) if len(lab.label) else 0.0,
        "anomalous_events": int(arrays.events["event_label"].sum()),
        "per_type": {name: int(c) for name, c in zip(names, per_type, strict=True)},
        "unknown_item_share": float(np.mean(arrays.events["item"] == UNKNOWN)),
        "mean_length": float(arrays.length.mean()) if len(arrays) else 0.0,
    }
