"""The data stage of a run: load, sessionise, split, inject, encode.

Order matters for soundness: entities are split *before* injection (each split is injected at its
own contamination rate, and session-hijack donors come from the same split) and vocabularies are
fitted on the training split only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.anomalies.core import LabelledEvents, SequenceLabels, from_session_labels
from benchmark.anomalies.inject import (
    AnomalyConfig,
    inject,
    mix_weights,
    supported_mix,
    type_counts,
    without_holdout,
)
from benchmark.config import DatasetConfig, PublicDatasetConfig, SyntheticDatasetConfig
from benchmark.errors import ConfigError
from benchmark.paths import PROJECT_ROOT
from datasets.cache import cached_load
from datasets.features import (
    UNKNOWN,
    SequenceArrays,
    Vocabularies,
    encode_profiles,
    encode_sequences,
    event_brands,
)
from datasets.loaders.common import LoadOptions
from datasets.loaders.registry import LOADERS as PUBLIC_LOADERS
from datasets.schema import Dataset, SchemaError
from datasets.sessions import SPLITS, limit_lengths, sessionize, split_entities
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
    loader, path = PUBLIC_LOADERS[cfg.name], data_path(cfg.path)
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


def prepare_data(
    cfg: DatasetConfig, anomaly: AnomalyConfig, seed: int, *, keep_events: bool = False
) -> PreparedData:
    """Load, sessionise, split, inject and encode. Each event table is let go as soon as the
    next step has its output, so the peak holds about two copies of the events, not five."""
    seeds = derive_seeds(seed, ("load", "split", *(f"inject_{s}" for s in SPLITS)))
    seq = cfg.sequence
    t0 = time.perf_counter()
    dataset = load_dataset(cfg, seeds["load"])
    load_s = time.perf_counter() - t0
    source_events = len(dataset.events)
    events = sessionize(dataset.events, by=seq.session_by, gap_seconds=seq.gap_minutes * 60)
    dataset = replace(dataset, events=events.take(np.zeros(0, dtype=np.int64)))
    events, lengths = limit_lengths(
        events, min_length=seq.min_length, max_length=seq.max_length, keep=seq.truncate
    )
    real = dataset.session_labels
    if real is not None:
        _check_no_injection(cfg.name, anomaly)
    skipped: dict[str, str] = {}
    if real is None and _injects(anomaly):
        anomaly, skipped = supported_mix(anomaly, events)
    split_cfg = cfg.split
    splits = split_entities(
        events,
        by=split_cfg.by,
        method=split_cfg.method,
        fractions=(split_cfg.train, split_cfg.val, split_cfg.test),
        seed=seeds["split"],
    )
    del events
    inject_s = 0.0
    vocabs: Vocabularies | None = None
    arrays: dict[str, SequenceArrays] = {}
    labels: dict[str, SequenceLabels] = {}
    kept: dict[str, LabelledEvents] = {}
    facts: dict[str, dict] = {}
    cards: tuple[int, ...] = ()
    for name in SPLITS:  # train first: the vocabularies are fitted on it
        t1 = time.perf_counter()
        lab = (
            from_session_labels(splits.pop(name), real)
            if real is not None
            else inject(
                splits.pop(name),
                anomaly if name == "test" else without_holdout(anomaly),
                rate=getattr(anomaly.contamination, name),
                seed=seeds[f"inject_{name}"],
                max_length=seq.max_length,
                split=name,
            )
        )
        inject_s += time.perf_counter() - t1
        brands = (
            event_brands(dataset.items, lab.events.item_id) if dataset.items is not None else None
        )
        if vocabs is None:
            vocabs = Vocabularies.fit(
                lab.events,
                min_count=seq.vocab_min_count,
                max_items=seq.max_items,
                train_brands=brands,
            )
        profile = None
        if dataset.profiles is not None:
            profile, cards = encode_profiles(dataset.profiles, lab.events.user_id[lab.offsets[:-1]])
        encoded = encode_sequences(
            lab.events,
            vocabs,
            max_length=seq.max_length,
            event_label=lab.event_label,
            label=lab.label,
            brand_ids=brands,
            profile=profile,
        )
        # The class of the type classifier (objective=classify_type): 0 normal, 1 + type.
        arrays[name] = replace(encoded, anomaly_class=lab.anomaly_type.astype(np.int32) + 1)
        labels[name] = lab.sequence_labels()
        facts[name] = split_summary(lab, arrays[name])
        if keep_events:
            kept[name] = lab
        del lab, brands, encoded
    assert vocabs is not None
    summary = {
        "dataset": dataset.name,
        "source": dict(dataset.source),
        "modalities": list(dataset.modalities),
        "source_events": source_events,
        "load_seconds": load_s,
        "load_events_per_second": source_events / max(load_s, 1e-9),
        "inject_seconds": inject_s,
        "anomaly_types_skipped": skipped,
        "real_labels": real is not None,
        # Types injected into training and validation: a test type not among them is unseen.
        "types_seen_in_training": [] if real is not None else _seen_types(anomaly),
        "lengths": asdict(lengths),
        "vocab": {"items": len(vocabs.item), "categories": len(vocabs.category)},
        "seeds": seeds,
        "splits": facts,
        "per_type_asked": {
            name: _asked(anomaly if name == "test" else without_holdout(anomaly), name, lab)
            for name, lab in labels.items()
            if real is None
        },
    }
    return PreparedData(
        dataset.name,
        dataset.modalities,
        labels,
        arrays,
        vocabs,
        summary,
        cards,
        kept if keep_events else None,
    )


def _asked(anomaly: AnomalyConfig, split: str, lab: SequenceLabels) -> dict[str, int]:
    """Sequences per type the mix asked for in ``split``; a type that fewer victims could
    host gets fewer (``splits.<split>.per_type``): victims are drawn first, types second."""
    rate = getattr(anomaly.contamination, split)
    hostable = len(lab.label) if lab.population is None else int(lab.population.sum())
    return type_counts(round(rate * hostable), mix_weights(anomaly))


def _seen_types(anomaly: AnomalyConfig) -> list[str]:
    weights = mix_weights(without_holdout(anomaly))
    return [name for name, w in weights.items() if w > 0]


def _injects(anomaly: AnomalyConfig) -> bool:
    c = anomaly.contamination
    return max(c.train, c.val, c.test) > 0


def _check_no_injection(name: str, anomaly: AnomalyConfig) -> None:
    if _injects(anomaly):
        raise ConfigError(
            f"dataset={name} carries real labels: run it with anomaly=none (injected anomalies "
            "would mix a second ground truth into the real one)"
        )


def split_summary(lab: LabelledEvents, arrays: SequenceArrays) -> dict:
    names = lab.type_names
    per_type = np.bincount(lab.anomaly_type[lab.anomaly_type >= 0], minlength=len(names))
    return {
        "sequences": len(arrays),
        "events": len(lab.events),
        "users": len(np.unique(lab.events.user_id)),
        "anomalous_sequences": int(lab.label.sum()),
        "contamination": float(lab.label.mean()) if len(lab.label) else 0.0,
        "anomalous_events": int(lab.event_label.sum()),
        "per_type": {name: int(c) for name, c in zip(names, per_type, strict=True)},
        "unknown_item_share": float(np.mean(arrays.events["item"] == UNKNOWN)),
        "mean_length": float(arrays.length.mean()) if len(arrays) else 0.0,
    }
