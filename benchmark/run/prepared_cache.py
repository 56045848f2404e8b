"""A cache of prepared data: the encoded, injected splits of a data stage, keyed by everything
that made them, so that a sweep over detectors and training seeds prepares a big table once.

The key covers the dataset and anomaly configs (fields that change no array, such as
``workers``, left out), the data seed, the SHA-256 of every input file and the source of every
module that shapes the arrays (loaders, sessions, injection, encoding, and the anomaly plugins
named in the config): a changed file, option or line of that code is a different key, never a
stale hit. Stored as one uncompressed ``.npz`` (read back with ``allow_pickle=False``); a
damaged file is rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import zipfile
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Any, cast

import numpy as np

from benchmark.anomalies.core import SequenceLabels
from benchmark.anomalies.inject import AnomalyConfig
from benchmark.config import DatasetConfig
from benchmark.paths import PROJECT_ROOT
from benchmark.records import strict_json
from benchmark.records.atomic import atomic_path
from datasets.cache import input_files
from datasets.features import SequenceArrays, Vocabularies, Vocabulary
from datasets.loaders.common import cached_digest

log = logging.getLogger("benchmark")

# Fields of the dataset config that change how, not what, is prepared.
NOT_IN_KEY = ("cache", "cache_dir", "cache_min_mb", "workers")
# The code that shapes prepared arrays.
SOURCES = ("datasets", "benchmark/anomalies", "benchmark/run/data.py")
LABEL_ARRAYS = ("label", "anomaly_type", "severity", "eligible", "population")


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def code_digest(plugins: list[str] | tuple[str, ...] = ()) -> str:
    """SHA-256 of the source of the data stage's modules and of the named plugin modules."""
    digest = hashlib.sha256()
    files = sorted(
        path
        for source in SOURCES
        for path in (
            [PROJECT_ROOT / source]
            if source.endswith(".py")
            else (PROJECT_ROOT / source).rglob("*.py")
        )
    )
    for module in plugins:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin:
            files.append(Path(spec.origin))
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(cfg: DatasetConfig, anomaly: AnomalyConfig, seed: int, path: Path | None) -> str:
    dataset = {k: v for k, v in asdict(cfg).items() if k not in NOT_IN_KEY}
    files = (
        []
        if path is None
        else [(f.name, f.stat().st_size, cached_digest(f)) for f in input_files(path)]
    )
    blob = json.dumps(
        {
            "dataset": _plain(dataset),
            "anomaly": _plain(asdict(anomaly)),
            "seed": seed,
            "files": files,
            "code": code_digest(anomaly.plugins),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def write(file: Path, prepared: Any) -> None:
    """``prepared`` (a ``benchmark.run.data.PreparedData``) as one ``.npz``."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "dataset_name": prepared.dataset_name,
        "modalities": list(prepared.modalities),
        "summary": prepared.summary,
        "profile_cardinalities": list(prepared.profile_cardinalities),
        "splits": {},
    }
    for split, data in prepared.arrays.items():
        arrays.update({f"{split}/arrays/{k}": v for k, v in data.columns().items()})
        labels: SequenceLabels = prepared.labelled[split]
        for name in LABEL_ARRAYS:
            value = getattr(labels, name)
            if value is not None:
                arrays[f"{split}/labels/{name}"] = value
        meta["splits"][split] = {"details": list(labels.details), "types": list(labels.type_names)}
    vocabs = prepared.vocabs
    for name in ("item", "category", "brand"):
        vocabulary = getattr(vocabs, name)
        if vocabulary is not None:
            arrays[f"vocab/{name}"] = vocabulary.values
    arrays["meta"] = np.frombuffer(strict_json.dumps(meta).encode(), dtype=np.uint8)
    file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(file) as tmp:
        np.savez(tmp, **cast(dict[str, Any], arrays))  # the stub reads ** as allow_pickle


def read(file: Path) -> dict[str, Any] | None:
    """The fields of a ``PreparedData`` stored in ``file``; None when it is damaged (the
    caller prepares the data again and replaces it)."""
    try:
        with open(file, "rb") as f, np.load(f, allow_pickle=False) as saved:
            data = {k: saved[k] for k in saved.files}
        return _fields(data)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        log.warning("the prepared-data cache %s is unreadable (%s); preparing again", file, err)
        return None


def _fields(data: dict[str, np.ndarray]) -> dict[str, Any]:
    meta = json.loads(data.pop("meta").tobytes().decode())
    arrays, labelled = {}, {}
    for split, facts in meta["splits"].items():
        columns = {
            k.split("/", 2)[2]: v for k, v in data.items() if k.startswith(f"{split}/arrays/")
        }
        arrays[split] = SequenceArrays.from_columns(columns)
        stored = {n: data.get(f"{split}/labels/{n}") for n in LABEL_ARRAYS}
        labelled[split] = SequenceLabels(
            label=data[f"{split}/labels/label"],
            anomaly_type=data[f"{split}/labels/anomaly_type"],
            severity=data[f"{split}/labels/severity"],
            details=tuple(facts["details"]),
            type_names=tuple(facts["types"]),
            eligible=stored["eligible"],
            population=stored["population"],
        )
    vocabs = Vocabularies(
        item=Vocabulary(data["vocab/item"]),
        category=Vocabulary(data["vocab/category"]),
        brand=Vocabulary(data["vocab/brand"]) if "vocab/brand" in data else None,
    )
    return {
        "dataset_name": meta["dataset_name"],
        "modalities": tuple(meta["modalities"]),
        "labelled": labelled,
        "arrays": arrays,
        "vocabs": vocabs,
        "summary": meta["summary"],
        "profile_cardinalities": tuple(meta["profile_cardinalities"]),
    }
