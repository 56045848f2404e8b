"""A cache of loaded public datasets: the common-schema arrays of a download, keyed by the
SHA-256 of every input file and the load options, stored as ``.npz`` (no pickle: loaded with
``allow_pickle=False``). A 40M-row month of REES46 takes minutes to parse and seconds to
read back; any change to the files or the options is a different key, never a stale hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from datasets.loaders.common import LoadOptions, cached_digest
from datasets.schema import (
    Dataset,
    EventTable,
    ItemAttributes,
    SessionLabels,
    TokenLists,
    UserProfiles,
)

CACHE_VERSION = 1  # bump when a loader's output changes for the same input
log = logging.getLogger("datasets")
SIDE_TABLES = {"items": ItemAttributes, "profiles": UserProfiles, "session_labels": SessionLabels}


def input_files(path: Path) -> list[Path]:
    """Every file a loader may read under ``path`` (itself if it is a file)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def cache_key(name: str, path: Path, options: LoadOptions) -> str:
    files = [(f.name, f.stat().st_size, cached_digest(f)) for f in input_files(path)]
    blob = json.dumps(
        {"version": CACHE_VERSION, "dataset": name, "options": asdict(options), "files": files},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_load(
    name: str,
    path: Path,
    options: LoadOptions,
    loader: Callable[[Path, LoadOptions], Dataset],
    cache_dir: Path,
    min_bytes: int,
) -> Dataset:
    """``loader(path, options)``, through the cache when the inputs weigh ``min_bytes`` or more
    (small samples load faster than they hash)."""
    size = sum(f.stat().st_size for f in input_files(path)) if path.exists() else 0
    if size < min_bytes:
        return loader(path, options)
    key = cache_key(name, path, options)
    file = Path(cache_dir) / f"{name}-{key}.npz"
    dataset = read_intact(file) if file.exists() else None
    if dataset is not None:
        return replace(
            dataset, source={**dataset.source, "cache": {"status": "hit", "file": str(file)}}
        )
    dataset = loader(path, options)
    write(file, dataset)
    return replace(
        dataset, source={**dataset.source, "cache": {"status": "stored", "file": str(file)}}
    )


def read_intact(file: Path) -> Dataset | None:
    """The cached dataset, or None when the file is damaged (a truncated copy, a full disk
    while another tool copied it): the caller rebuilds it from the data files."""
    try:
        return read(file)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        log.warning("the dataset cache %s is unreadable (%s); rebuilding it", file, err)
        return None


def write(file: Path, dataset: Dataset) -> None:
    arrays: dict[str, np.ndarray] = {
        "name": np.array(dataset.name),
        "source": np.array(json.dumps(dataset.source, default=str)),
    }
    arrays.update({f"events.{k}": v for k, v in dataset.events.columns().items()})
    for table in SIDE_TABLES:
        value = getattr(dataset, table)
        if value is None:
            continue
        for f in fields(value):
            column = getattr(value, f.name)
            if isinstance(column, TokenLists):
                arrays.update(_token_arrays(f"{table}.{f.name}", column))
            elif column is not None:
                arrays[f"{table}.{f.name}"] = np.asarray(column)
    if dataset.queries is not None:
        arrays.update(_token_arrays("queries", dataset.queries))
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **cast(dict[str, Any], arrays))  # the stub reads ** as allow_pickle
        os.replace(tmp, file)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read(file: Path) -> Dataset:
    # Opened here, not by np.load, which leaves its file open when the archive is damaged.
    with open(file, "rb") as f, np.load(f, allow_pickle=False) as saved:
        data = {k: saved[k] for k in saved.files}
    events = EventTable(**{k[7:]: v for k, v in data.items() if k.startswith("events.")})
    side = {}
    for table, cls in SIDE_TABLES.items():
        columns = _side_columns(data, table)
        if columns:
            if "class_names" in columns:
                columns["class_names"] = tuple(str(c) for c in columns["class_names"])
                columns["by_user"] = bool(columns.get("by_user", False))
            side[table] = cls(**columns)
    return Dataset(
        str(data["name"]),
        events,
        side.get("profiles"),
        side.get("items"),
        json.loads(str(data["source"])),
        side.get("session_labels"),
        _token_lists(data, "queries"),
    )


def _token_arrays(prefix: str, lists: TokenLists) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.offsets": lists.offsets,
        f"{prefix}.tokens": lists.tokens,
        f"{prefix}.vocabulary": np.array(lists.vocabulary),
    }


def _token_lists(data: dict[str, np.ndarray], prefix: str) -> TokenLists | None:
    if f"{prefix}.offsets" not in data:
        return None
    return TokenLists(
        data[f"{prefix}.offsets"], data[f"{prefix}.tokens"], int(data[f"{prefix}.vocabulary"])
    )


def _side_columns(data: dict[str, np.ndarray], table: str) -> dict[str, Any]:
    """A side table's fields: plain columns, and token lists stored as three arrays."""
    columns: dict[str, Any] = {}
    for key, value in data.items():
        if not key.startswith(f"{table}."):
            continue
        name = key.split(".")[1]
        if key.count(".") == 1:
            columns[name] = value
        elif name not in columns:
            columns[name] = _token_lists(data, f"{table}.{name}")
    return columns
