"""Your own event table (``dataset=events``): any CSV/TSV, Parquet or JSON Lines export, mapped
onto the common schema by naming its columns (:class:`TableMapping`, ``dataset.table`` in the
config).

Formats: CSV or TSV, plain or compressed (``.gz``, ``.bz2``, ``.zst``); Parquet (a file, a
folder, or a Hive-partitioned tree such as ``day=2024-01-01/part-0.parquet``); JSON Lines, plain
or compressed. A folder is read file by file in name order. Every format goes through the same
streaming conversion and validation as the public readers (``datasets.loaders.common``): ids
non-negative (string ids such as UUIDs are hashed to 63-bit ids), times in range, prices finite
and in [0, 10^9], event types known or mapped. Bad rows are named (``file:line`` for text,
``file: row n`` for Parquet) or quarantined with counts and examples (``dataset.strict=false``).

Labels the user already has (chargebacks, confirmed bots) come from a label column: per session,
per user, or per event (a session is anomalous when any of its events is; without a session
column, its user). Values in ``normal_labels`` are normal; every other value is an anomaly class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from datasets.loaders.common import (
    COMPRESSION,
    EPOCH_MAX,
    EPOCH_MIN,
    ISO_8601,
    LINE,
    PRICE,
    BlockSink,
    Column,
    CsvFormat,
    DataFileError,
    Interner,
    LoadOptions,
    Quarantine,
    check_header,
    concat_columns,
    convert_block,
    events_table,
    keep_rows,
    latest_per_key,
    map_type_codes,
    not_a_file,
    open_binary,
    read_csv,
    reject_rows,
    sorted_without_repeats,
    source_report,
)
from datasets.schema import (
    AGE_BANDS,
    DEVICES,
    EVENT_TYPE_ALIASES,
    GENDERS,
    MISSING_ID,
    Dataset,
    EventTable,
    EventType,
    ItemAttributes,
    SessionLabels,
    TokenLists,
    UserProfiles,
)

FORMATS = ("csv", "parquet", "jsonl")
UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
ROW_BATCH = 1 << 18  # Parquet and JSON rows converted at a time: bounds memory
SNIFF_ROWS = 10_000
HINT = "see docs/datasets.md#your-own-event-table"


@dataclass
class ProfileMapping:
    """Your users' profiles: a table of its own (CSV, Parquet or JSON Lines; a file or a
    folder), one row per user, joined to the events' users by ``key``. It gives the multimodal
    detector its profile modality; name the columns you have (null: absent)."""

    path: str | None = None
    """null: no profiles."""
    key: str = "user_id"
    """The user column, holding the same ids as the events' user column."""
    age: str | None = None
    """Age in years (a number; under 18 is unknown), or the band as text (18-24, 25-34, 35-44,
    45-54, 55-64, 65+)."""
    region: str | None = None
    """Any value (a country, a city, a region id): each distinct value is a region."""
    device: str | None = None
    """The user's usual device: desktop, mobile_web, ios_app, android_app, tablet (or a common
    spelling: pc, mobile, ios, android, ipad, ...); another value is unknown."""
    gender: str | None = None
    """female, male or other (or f, m, w, x, diverse, ...); another value is unknown."""
    signup: str | None = None
    """When the account was created (ISO 8601 text, a Parquet timestamp or epoch numbers): the
    tenure is the days from it to the user's first event in the table."""
    tenure_days: str | None = None
    """The account's age in days, when the table has it instead of ``signup``."""


@dataclass
class ItemMapping:
    """Your items: a table of their own (CSV, Parquet or JSON Lines; a file or a folder), one
    row per item, joined to the events' items by ``key``. It gives the multimodal detector the
    item attributes and, with ``name``, the item text; events without a category or price take
    their item's. Name the columns you have (null: absent)."""

    path: str | None = None
    """null: no item table."""
    key: str = "item_id"
    """The item column, holding the same ids as the events' item column."""
    category: str | None = None
    brand: str | None = None
    """A brand, a seller, a shop: any id or text."""
    price: str | None = None
    name: str | None = None
    """The item's title: its words (split at spaces and punctuation, lower-cased) become the
    item-text modality."""


PROFILE_FIELDS = ("age", "region", "device", "gender", "signup", "tenure_days")
ITEM_FIELDS = ("category", "brand", "price", "name")
# The config key that names the column of each role (said when the column is missing).
SETTINGS = {
    "profile_key": "dataset.table.profiles.key",
    **{f: f"dataset.table.profiles.{f}" for f in PROFILE_FIELDS},
    "item_key": "dataset.table.items.key",
    **{f"item_{f}": f"dataset.table.items.{f}" for f in ITEM_FIELDS},
}
NUMBER_LIMITS = {"age": (0.0, 150.0), "tenure_days": (0.0, 36_500.0)}  # a value outside: bad row
AGE_EDGES = np.array([18, 25, 35, 45, 55, 65])  # the lower bound of each of AGE_BANDS
DEVICE_ALIASES = {
    **{name: name for name in DEVICES},
    "pc": "desktop",
    "web": "desktop",
    "computer": "desktop",
    "mobile": "mobile_web",
    "mweb": "mobile_web",
    "ios": "ios_app",
    "iphone": "ios_app",
    "android": "android_app",
    "ipad": "tablet",
}
GENDER_ALIASES = {
    **{name: name for name in GENDERS},
    **dict.fromkeys(("f", "w", "woman", "women", "femme"), "female"),
    **dict.fromkeys(("m", "man", "men"), "male"),
    **dict.fromkeys(("x", "d", "diverse", "non-binary", "nonbinary"), "other"),
}


@dataclass
class TableMapping:
    """Which column of your table is which field of the common schema (null: absent)."""

    format: str = "auto"
    """'auto' (from the file names: .csv/.tsv/.txt, .parquet/.pq, .jsonl/.ndjson, each optionally
    .gz/.bz2/.zst), 'csv', 'parquet' or 'jsonl'."""
    delimiter: str = "auto"
    """CSV field separator; 'auto': a tab for .tsv files, else a comma."""
    column_names: list[str] | None = None
    """A CSV without a header line: the name of each field, in order (the names the mapping
    below refers to); null: the first line is the header."""
    user: str | None = None
    session: str | None = None
    """At least one of user and session. Without sessions, set dataset.sequence.session_by=gap
    (a user's events split at inactivity gaps)."""
    timestamp: str = "timestamp"
    event_type: str | None = "event_type"
    """null: a log of one kind of event (clicks, page views): every event is a view."""
    item: str | None = None
    category: str | None = None
    price: str | None = None
    brand: str | None = None
    """An item attribute (a brand, a seller): with it, each item's category, brand and latest
    price form the item table the multimodal detector reads (needs ``item``)."""
    label: str | None = None
    time_unit: str = "auto"
    """Numeric timestamps: 's', 'ms', 'us', 'ns' since the epoch, or 'auto' (by magnitude)."""
    time_format: str | None = None
    """Text timestamps: a strptime format (e.g. '%Y-%m-%d %H:%M:%S'); null: ISO 8601."""
    time_zone: str = "UTC"
    """The zone of text timestamps written without an offset (an IANA name)."""
    time_window: list[str] | None = None
    """[start, end): two ISO 8601 times (an offset, or read in ``time_zone``); rows outside are
    dropped as ``outside_window``, counted and named. null: every time is kept."""
    event_types: dict[str, str] = field(default_factory=dict)
    """Your event names -> the vocabulary (view, search, click, add_to_cart, remove_from_cart,
    favourite, purchase, review), on top of the common spellings (pv, cart, buy, ...)."""
    label_level: str = "session"
    """What a label column labels: 'session', 'user' or 'event'."""
    label_file: str | None = None
    """Labels in a table of their own (CSV, Parquet or JSON Lines) keyed by session or user
    (``label_level``), e.g. a chargeback list: ``label`` names its label column, ``label_key``
    its key column. Sessions (users) it does not list are normal."""
    label_key: str | None = None
    """The key column of ``label_file``; null: the session (or user) column's name."""
    normal_labels: list[str] = field(
        default_factory=lambda: ["0", "false", "normal", "human", "legit", "ok"]
    )
    """Label values (case-insensitive) that mean normal; any other value is an anomaly class."""
    profiles: ProfileMapping = field(default_factory=ProfileMapping)
    """A side table of user profiles (``ProfileMapping``)."""
    items: ItemMapping = field(default_factory=ItemMapping)
    """A side table of items (``ItemMapping``)."""


ROLES = (
    "user",
    "session",
    "timestamp",
    "event_type",
    "item",
    "category",
    "price",
    "brand",
    "label",
)
IDS = ("user", "session", "item", "category", "brand")
NULLS = ("", "NA", "NULL", "null")
FILE = "_file"  # each row's file (an index into the files read), for naming dropped rows


CONF_DATASETS = Path(__file__).resolve().parents[2] / "conf" / "dataset"


def mapped(name: str) -> Callable[[Path, LoadOptions], Dataset]:
    """The loader of a public dataset expressed as a mapping (``conf/dataset/<name>.yaml``'s
    ``table``): the run passes the composed mapping; called without one (a script, a test),
    it reads the config's."""

    def load_mapped(path: Path, options: LoadOptions) -> Dataset:
        if options.table is None:
            options = replace(options, name=name, table=config_mapping(name))
        return load(path, options)

    return load_mapped


def config_mapping(name: str) -> TableMapping:
    """``table`` of ``conf/dataset/<name>.yaml`` over the mapping's defaults."""
    from omegaconf import DictConfig, OmegaConf  # a config file is read only here

    config = OmegaConf.load(CONF_DATASETS / f"{name}.yaml")
    given = config.get("table", {}) if isinstance(config, DictConfig) else {}
    merged = OmegaConf.merge(OmegaConf.structured(TableMapping), given)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def load(path: Path, options: LoadOptions) -> Dataset:
    mapping = options.table or TableMapping()
    check_mapping(mapping)
    files = table_files(Path(path), mapping.format)
    q = Quarantine(options.strict)
    labels = Interner()
    parts = [read_one(f, mapping, q, options.max_rows, labels) for f in files]
    rows_read = sum(p.pop("_rows_read")[0] for p in parts)
    for index, part in enumerate(parts):
        part[FILE] = np.full(len(part[LINE]), index, dtype=np.int32)
    events, real, items, profiles = to_events(concat_columns(parts), files, mapping, q, labels)
    report = table_report(files, mapping, q, rows_read, real)
    return Dataset(options.name, events, profiles, items, source=report, session_labels=real)


def to_events(
    cols: dict[str, np.ndarray],
    files: list[Path],
    mapping: TableMapping,
    q: Quarantine,
    labels: Interner,
    check_label_keys: bool = True,
) -> tuple[EventTable, SessionLabels | None, ItemAttributes | None, UserProfiles | None]:
    """Read rows (every file's, or one partition's) as a sorted event table without repeats,
    with the labels, the item table and the user profiles the mapping names."""
    keys = [k for k in ("session", "user", "timestamp", "event_type", "item") if k in cols]
    places = [place_of(f, m=mapping) for f in files]
    by = "session" if "session" in cols else "user"
    where = partial(_place_of_row, places, cols.pop(FILE), cols.pop(LINE))
    cols = sorted_without_repeats(cols, by, "timestamp", keys, q, where)
    session = cols[by]
    events = events_table(
        session_id=session,
        timestamp=cols["timestamp"],
        event_type=cols["event_type"],
        item_id=cols.get("item", np.full(len(session), MISSING_ID)),
        user_id=cols.get("user"),
        category_id=cols.get("category"),
        price=cols["price"].astype(np.float32) if "price" in cols else None,
    )
    real = None
    if mapping.label_file and len(session):
        real = file_labels(mapping, cols, q, check_label_keys)
    elif "label" in cols and len(session):
        real = session_labels(cols, mapping, labels)
    items = item_table(cols) if "brand" in cols else None
    if mapping.items.path and len(session):
        items = item_side_table(mapping, q, np.unique(events.item_id))
        events = with_item_facts(events, items)
    profiles = None
    if mapping.profiles.path and len(session):
        profiles = user_profiles(mapping, events.user_id, events.timestamp, q)
    return events, real, items, profiles  # in session-time order: sorted_without_repeats


def _place_of_row(places: list[str], file: np.ndarray, line: np.ndarray, i: int) -> str:
    return f"{places[file[i]]}{line[i]}"


def item_table(cols: dict[str, np.ndarray]) -> ItemAttributes:
    """Per item (rows with one): its category, brand and price at its latest event."""
    has_item = cols["item"] != MISSING_ID
    item, time = cols["item"][has_item], cols["timestamp"][has_item]
    pick = latest_per_key(item, time)  # one row per item, in item order

    def attribute(role: str, missing) -> np.ndarray:
        return cols[role][has_item][pick] if role in cols else np.full(len(pick), missing)

    return ItemAttributes(
        item_id=item[pick],
        category_id=attribute("category", MISSING_ID),
        brand_id=attribute("brand", MISSING_ID),
        price=attribute("price", np.nan).astype(np.float32),
    )


def table_report(
    files: list[Path],
    mapping: TableMapping,
    q: Quarantine,
    rows_read: int,
    real: SessionLabels | None,
    **facts,
) -> dict:
    return source_report(
        files,
        rows_read,
        q,
        format=sorted({file_format(f, mapping.format) for f in files}),
        mapping={r: getattr(mapping, r) for r in ROLES if getattr(mapping, r)},
        **({"labels": real.counts()} if real is not None else {}),
        **({"time_window": list(mapping.time_window)} if mapping.time_window else {}),
        **facts,
    )


# What the whole data stage holds per source row at its peak (load, sessions, split,
# injection, encoding; measured on generated tables in the Taobao layout: results/cpu/README.md).
STAGE_BYTES_PER_ROW = 320
# Compressed text is estimated at this many times its size on disk (clickstream CSV: 3-6x).
TEXT_COMPRESSION_RATIO = 6


def estimated_rows(path: Path, mapping: TableMapping) -> int:
    """Rows of the table without reading it: Parquet metadata, or text bytes over the mean
    line length of the first MiB (compressed text: its size times TEXT_COMPRESSION_RATIO)."""
    import pyarrow.parquet as pq

    total = 0
    for file in table_files(Path(path), mapping.format):
        if file_format(file, mapping.format) == "parquet":
            total += pq.ParquetFile(file).metadata.num_rows
            continue
        with open_binary(file) as f:
            head = f.read(1 << 20)
        size = file.stat().st_size
        if file.suffix.lower() in COMPRESSION:
            size *= TEXT_COMPRESSION_RATIO
        total += int(size / max(1, len(head)) * max(1, head.count(b"\n")))
    return total


def partitions_for(path: Path, mapping: TableMapping, memory_gb: float) -> int:
    """How many user partitions keep one partition's working set within ``memory_gb`` (1: the
    table fits in one piece). It depends on the table and the budget alone, never on the
    machine, so the same config gives the same data anywhere."""
    budget_rows = memory_gb * 2**30 / STAGE_BYTES_PER_ROW
    return max(1, int(np.ceil(estimated_rows(path, mapping) / budget_rows)))


@dataclass
class PartitionedTable:
    """An event table read once and written as ``parts`` Parquet files, each holding every
    row of a disjoint set of users (sessions, without a user column) with the rows already
    converted and validated; each partition then loads as a table of its own. Splits are by
    user (or session), sessions never cross users and repeats share their user, so a
    partition needs nothing from another: memory is bounded by a partition, not the file."""

    files: list[Path]
    mapping: TableMapping
    quarantine: Quarantine  # the read's rejections, then each partition's dropped repeats
    labels: Interner
    rows_read: int
    part_files: list[list[Path]]  # per partition, its files (one per source file that had rows)
    name: str = "events"  # the dataset's

    def __len__(self) -> int:
        return len(self.part_files)

    def load(self, k: int) -> Dataset:
        import pyarrow.parquet as pq

        if self.part_files[k]:
            tables = [pq.read_table(f) for f in self.part_files[k]]
            cols = {
                name: np.concatenate([t.column(name).to_numpy() for t in tables])
                for name in tables[0].column_names
            }
        else:
            cols = self._empty()
        q = Quarantine(self.quarantine.strict)  # this partition's repeats, in its ``source``
        events, real, items, profiles = to_events(
            cols, self.files, self.mapping, q, self.labels, False
        )
        return Dataset(self.name, events, profiles, items, source=q.report(), session_labels=real)

    def _empty(self) -> dict[str, np.ndarray]:
        import pyarrow.parquet as pq

        first = next(f for files in self.part_files for f in files)
        return {
            n: np.zeros(0, dtype=t.to_pandas_dtype())
            for n, t in zip(pq.read_schema(first).names, pq.read_schema(first).types, strict=True)
        }

    def report(self, dropped: list[Mapping[str, Any]]) -> dict:
        """The source report: the read's rejections plus each partition's ``dropped`` rows
        (the ``source`` of the datasets :meth:`load` gave)."""
        q = self.quarantine.merged(dropped)
        return table_report(self.files, self.mapping, q, self.rows_read, None, partitions=len(self))


class _PartitionWriter:
    """Routes converted blocks to ``parts`` Parquet files by a hash of the user id (or of the
    session id, without a user column); one file per partition and source file, so that a
    file read again from its start takes back only its own rows."""

    def __init__(self, folder: Path, parts: int) -> None:
        self.folder, self.parts = folder, parts
        self.file_index = 0
        self.writers: dict[int, object] = {}
        self.done: list[list[Path]] = [[] for _ in range(parts)]

    def start_file(self, index: int) -> None:
        self.file_index = index
        self.writers = {}

    def _path(self, k: int) -> Path:
        return self.folder / f"part-{k:04d}-file-{self.file_index:05d}.parquet"

    def __call__(self, block: dict[str, np.ndarray]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        key = block["user"] if "user" in block else block["session"]
        part = (_mix64(key) % np.uint64(self.parts)).astype(np.int64)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.parts + 1))
        block = {**block, FILE: np.full(len(key), self.file_index, dtype=np.int32)}
        for k in range(self.parts):
            rows = order[bounds[k] : bounds[k + 1]]
            if len(rows) == 0:
                continue
            table = pa.table({name: column[rows] for name, column in block.items()})
            if k not in self.writers:
                self.writers[k] = pq.ParquetWriter(self._path(k), table.schema)
            self.writers[k].write_table(table)  # type: ignore[attr-defined]

    def restart(self) -> None:
        for k, writer in self.writers.items():
            writer.close()  # type: ignore[attr-defined]
            self._path(k).unlink()
        self.writers = {}

    def end_file(self) -> None:
        for k, writer in sorted(self.writers.items()):
            writer.close()  # type: ignore[attr-defined]
            self.done[k].append(self._path(k))
        self.writers = {}


def _mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: ids (often sequential) spread evenly over partitions."""
    x = values.astype(np.int64).view(np.uint64).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def partition(path: Path, options: LoadOptions, parts: int, folder: Path) -> PartitionedTable:
    """Read the table once, block by block, into ``parts`` user partitions under ``folder``."""
    mapping = options.table or TableMapping()
    check_mapping(mapping)
    files = table_files(Path(path), mapping.format)
    q = Quarantine(options.strict)
    labels = Interner()
    writer = _PartitionWriter(folder, parts)
    rows_read = 0
    for index, file in enumerate(files):
        writer.start_file(index)
        rows_read += stream_one(file, mapping, q, options.max_rows, labels, writer)
        writer.end_file()
    if not any(writer.done):
        raise DataFileError(f"{path}: every row was dropped ({dict(q.counts)}); {HINT}")
    return PartitionedTable(files, mapping, q, labels, rows_read, writer.done, options.name)


def check_mapping(m: TableMapping) -> None:
    if m.user is None and m.session is None:
        raise DataFileError(f"dataset.table needs a user or a session column; {HINT}")
    if m.brand is not None and m.item is None:
        raise DataFileError("dataset.table.brand is an item attribute: it needs dataset.table.item")
    if m.items.path and m.item is None:
        raise DataFileError("dataset.table.items is joined by item: it needs dataset.table.item")
    if m.label_file and (m.label is None or m.label_level == "event"):
        raise DataFileError(
            "dataset.table.label_file needs dataset.table.label (its label column) and "
            "label_level session or user"
        )
    choices = {
        "format": ("auto", *FORMATS),
        "time_unit": ("auto", *UNITS),
        "label_level": ("session", "user", "event"),
    }
    for key, allowed in choices.items():
        if getattr(m, key) not in allowed:
            raise DataFileError(
                f"dataset.table.{key}={getattr(m, key)!r}: use one of {list(allowed)}"
            )
    if m.time_window is not None:
        window_seconds(m)


def window_seconds(m: TableMapping) -> tuple[float, float] | None:
    """``time_window`` in epoch seconds, or None; a malformed window is one line."""
    if m.time_window is None:
        return None
    from datetime import datetime
    from zoneinfo import ZoneInfo

    problem = f"dataset.table.time_window={list(m.time_window)!r}"
    if len(m.time_window) != 2:
        raise DataFileError(f"{problem}: give [start, end], two ISO 8601 times")
    try:
        start, end = (datetime.fromisoformat(str(t)) for t in m.time_window)
    except ValueError as err:
        raise DataFileError(f"{problem}: {err} (ISO 8601, e.g. 2017-11-25T00:00+08:00)") from None
    zone = ZoneInfo(m.time_zone)
    start, end = (t if t.tzinfo else t.replace(tzinfo=zone) for t in (start, end))
    if end <= start:
        raise DataFileError(f"{problem}: the end must come after the start")
    return start.timestamp(), end.timestamp()


def table_files(path: Path, fmt: str) -> list[Path]:
    """The file, or a folder's data files (recursively: Hive partitions), in name order."""
    if path.is_dir():
        found = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and not p.name.startswith((".", "_"))
            and guess_format(p) is not None
            and fmt in ("auto", guess_format(p))
        )
        if not found:
            raise DataFileError(
                f"no CSV, Parquet or JSON Lines files under {path}; check dataset.path ({HINT})"
            )
        return found
    problem = not_a_file(path)
    if problem == "missing":
        raise DataFileError(f"event table not found at {path}: check dataset.path ({HINT})")
    if problem:
        raise DataFileError(f"event table at {path}: {problem}")
    return [path]


SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def guess_format(path: Path) -> str | None:
    """The format a file's name says (``events.csv.gz`` -> csv), or None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION:
        suffixes = suffixes[:-1]
    return SUFFIXES.get(suffixes[-1]) if suffixes else None


def file_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    guessed = guess_format(path)
    if guessed is None:
        raise DataFileError(
            f"{path}: cannot tell the format from the name; set dataset.table.format to one "
            f"of {list(FORMATS)}"
        )
    return guessed


def read_one(
    path: Path, m: TableMapping, q: Quarantine, max_rows: int | None, labels: Interner
) -> dict[str, np.ndarray]:
    """One file's mapped columns by role: validated, times in epoch seconds, event types in
    the vocabulary (``LINE`` keeps each row's line or row number)."""
    fmt = file_format(path, m.format)
    names, interners = _roles(m), {"event_type": Interner(), "label": labels}
    if fmt == "csv":
        cols, numeric_time = read_text(path, m, names, q, max_rows, interners)
    else:
        cols, numeric_time = read_batches(path, fmt, m, names, q, max_rows, interners)
    finish = _Finisher(path, fmt, m, q, interners["event_type"], numeric_time)
    rows_read = len(cols[LINE])
    return finish(cols) | {"_rows_read": np.array([rows_read])}


def stream_one(
    path: Path,
    m: TableMapping,
    q: Quarantine,
    max_rows: int | None,
    labels: Interner,
    sink: BlockSink,
) -> int:
    """:func:`read_one` block by block: each finished block goes to ``sink`` (memory bounded
    by a block); returns the rows read."""
    fmt = file_format(path, m.format)
    names, interners = _roles(m), {"event_type": Interner(), "label": labels}
    stream = _FinishingSink(_Finisher(path, fmt, m, q, interners["event_type"]), sink)
    if fmt == "csv":
        read_text(path, m, names, q, max_rows, interners, sink=stream)
    else:
        read_batches(path, fmt, m, names, q, max_rows, interners, sink=stream)
    return stream.rows_read


def _roles(m: TableMapping) -> dict[str, str]:
    names = {role: getattr(m, role) for role in ROLES if getattr(m, role)}
    if m.label_file:
        names.pop("label", None)  # the labels are in a file of their own
    return names


class _Finisher:
    """Read columns (a file's, or one block's) to their final form: numeric times in epoch
    seconds (an 'auto' unit fixed by the first rows it sees), event types in the vocabulary."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        m: TableMapping,
        q: Quarantine,
        events: Interner,
        numeric_time: bool | None = None,
    ) -> None:
        self.place, self.m, self.q, self.events = place_of(path, fmt), m, q, events
        self.numeric_time = numeric_time
        self.unit = m.time_unit
        self.aliases = {**EVENT_TYPE_ALIASES, **{k.lower(): v for k, v in m.event_types.items()}}
        self.window = window_seconds(m)

    def __call__(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.numeric_time:
            if self.unit == "auto" and len(cols["timestamp"]):
                self.unit = time_unit_of(cols["timestamp"])
            raw = cols["timestamp"]
            cols["timestamp"] = epoch_seconds(raw, self.unit)
            # numbers as times: the years 1970-2099, as text times and the public readers
            seconds = cols["timestamp"]
            outside = (seconds < EPOCH_MIN) | (seconds > EPOCH_MAX)
            reject_rows(
                outside,
                self.q,
                lambda i: (
                    f"{self.place}{cols[LINE][i]}",
                    f"time {raw[i]:g} read in {self.unit} is outside the years 1970-2099 "
                    "(is dataset.table.time_unit right?)",
                ),
                "time_out_of_range",
            )
            cols = keep_rows(cols, ~outside) if outside.any() else cols
        if self.window is not None:
            cols = self._inside_window(cols)
        if "event_type" not in cols:
            return cols | {"event_type": np.full(len(cols[LINE]), EventType.VIEW, dtype=np.int8)}
        codes, known = map_type_codes(
            cols["event_type"],
            self.events,
            self.aliases,
            LoadOptions(strict=self.q.strict),
            self.q,
            lambda i: f"{self.place}{cols[LINE][i]}",
        )
        return keep_rows(cols | {"event_type": codes}, known)

    def _inside_window(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.window is not None
        seconds = cols["timestamp"]
        inside = (seconds >= self.window[0]) & (seconds < self.window[1])
        if inside.all():
            return cols
        start, end = self.m.time_window or ("", "")
        rule = f"outside dataset.table.time_window [{start}, {end}) (null keeps every time)"
        dropped = np.flatnonzero(~inside)
        examples = (f"{self.place}{cols[LINE][i]}: {rule}" for i in dropped)
        self.q.drop("outside_window", len(dropped), examples)
        return keep_rows(cols, inside)


class _FinishingSink:
    """Finishes each block a reader streams (role-named columns) and passes it on."""

    def __init__(self, finish: _Finisher, sink: BlockSink) -> None:
        self.finish, self.sink, self.rows_read = finish, sink, 0

    def __call__(self, block: dict[str, np.ndarray]) -> None:
        self.rows_read += len(block[LINE])
        self.sink(self.finish(block))

    def restart(self) -> None:
        self.rows_read = 0
        self.sink.restart()


class _RenamingSink:
    """A CSV reader's blocks (columns by the file's names) as role-named blocks."""

    def __init__(self, columns: dict[str, Column], sink: _FinishingSink) -> None:
        self.columns, self.sink = columns, sink

    def __call__(self, block: dict[str, np.ndarray]) -> None:
        self.sink({role: block[c.name] for role, c in self.columns.items()} | {LINE: block[LINE]})

    def restart(self) -> None:
        self.sink.restart()


def place_of(path: Path, fmt: str | None = None, m: TableMapping | None = None) -> str:
    """How a row of ``path`` is named: 'file:' + line, or 'file: row ' + row for Parquet."""
    fmt = fmt or file_format(path, m.format if m else "auto")
    return f"{path}: row " if fmt == "parquet" else f"{path}:"


def columns_for(
    types: dict[str, str], names: dict[str, str], m: TableMapping, text: bool = False
) -> dict[str, Column]:
    """Each role's column, its kind chosen from what the file holds (``types``: role ->
    'int', 'float', 'timestamp' or 'string'). ``text``: a text file, where a column's first
    rows say nothing certain about the rest, so ids are read value by value."""
    cols = {}
    for role, kind in types.items():
        name = names[role]
        if role in IDS or role in ("profile_key", "item_key", "item_category", "item_brand"):
            # integer ids kept; text (UUIDs, SKUs) hashed
            chosen = "int" if kind == "int" and not text else "id"
            optional = ("item", "category", "brand", "item_category", "item_brand")
            cols[role] = Column(name, chosen, nullable=role in optional)
        elif role == "timestamp" and kind != "string":
            cols[role] = Column(name, "float")  # epoch numbers, scaled by time_unit
        elif role == "timestamp":
            fmt = m.time_format or ISO_8601
            cols[role] = Column(name, "time", time_format=fmt, time_zone=m.time_zone)
        elif role in ("price", "item_price"):
            cols[role] = Column(name, "float", nullable=True, limits=PRICE)
        elif role == "signup" and (kind in ("int", "float") or (kind == "timestamp" and not text)):
            cols[role] = Column(name, "float", nullable=True)  # epoch numbers or Parquet times
        elif role == "signup":
            cols[role] = Column(name, "time", True, ISO_8601, m.time_zone)
        elif role in NUMBER_LIMITS and kind in ("int", "float"):
            cols[role] = Column(name, "float", nullable=True, limits=NUMBER_LIMITS[role])
        elif role in PROFILE_FIELDS or role == "item_name":  # text: a band, a region, a title
            cols[role] = Column(name, "code", nullable=True)
        else:  # event_type, label: text interned to codes
            cols[role] = Column(name, "code", nullable=role == "label")
    return cols


def read_text(
    path, m, names, q, max_rows, interners, sink: _FinishingSink | None = None
) -> tuple[dict[str, np.ndarray], bool]:
    tsv = ".tsv" in [s.lower() for s in path.suffixes]
    delimiter = m.delimiter if m.delimiter != "auto" else ("\t" if tsv else ",")
    header = list(m.column_names) if m.column_names else None
    types = sniff_csv(path, delimiter, names, header)
    for role in ("timestamp", "signup"):
        if types.get(role) == "timestamp":  # text that pyarrow would parse: ours to parse
            types[role] = "string"
    columns = columns_for(types, names, m, text=True)
    fmt = CsvFormat(
        delimiter,
        tuple(columns.values()),
        header=header is None,
        null_values=NULLS,
        file_columns=tuple(header or ()),
    )
    by_name = {c.name: interners[r] for r, c in columns.items() if c.kind == "code"}
    numeric_time = types.get("timestamp") not in ("string", None)
    renaming = None
    if sink is not None:
        sink.finish.numeric_time = numeric_time
        renaming = _RenamingSink(columns, sink)
    raw = read_csv(path, fmt, q, max_rows, by_name, sink=renaming)
    out = {role: raw[c.name] for role, c in columns.items()}
    out[LINE] = raw[LINE]
    return out, numeric_time


def sniff_csv(
    path: Path, delimiter: str, names: dict[str, str], header: list[str] | None = None
) -> dict[str, str]:
    """Each role's type as pyarrow infers it from the first rows; a missing column is named
    with the columns the file has."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    mapped = tuple(Column(name, "code") for name in dict.fromkeys(names.values()))
    text_format = CsvFormat(
        delimiter, mapped, header=header is None, file_columns=tuple(header or ())
    )
    settings = {name: setting_of(role) for role, name in names.items()}
    check_header(path, text_format, settings)
    with open_binary(path) as f:
        head = b"".join(line for _, line in zip(range(SNIFF_ROWS + 1), f, strict=False))
    try:
        table = pacsv.read_csv(
            pa.BufferReader(head.removeprefix(b"\xef\xbb\xbf")),
            read_options=pacsv.ReadOptions(column_names=header),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=_skip),
            convert_options=pacsv.ConvertOptions(
                null_values=list(NULLS), strings_can_be_null=True, timestamp_parsers=[]
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise DataFileError(f"{path}: not a readable table ({err}); {HINT}") from err
    return {role: type_of(table.schema, name, role, path) for role, name in names.items()}


def _skip(row) -> str:
    return "skip"  # the full read names it


def setting_of(role: str) -> str:
    return SETTINGS.get(role, f"dataset.table.{role}")


def type_of(schema, name: str, role: str, path: Path) -> str:
    """'int', 'float', 'timestamp' or 'string': the column's type in the file."""
    import pyarrow as pa

    if schema.get_field_index(name) < 0:
        raise DataFileError(
            f"{path}: no column {name!r} ({setting_of(role)}); the file has {schema.names[:20]}"
        )
    t = schema.field(name).type
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    return "string"


def read_batches(
    path, fmt, m, names, q, max_rows, interners, sink: _FinishingSink | None = None
) -> tuple[dict, bool]:
    """Parquet and JSON Lines: record batches of the mapped columns, each cast to its kind's
    type and converted like a CSV block (with a ``sink``: each block goes there)."""
    place = place_of(path, fmt)
    parts, seen, columns, types = [], 0, None, {}
    coded = [names[r] for r in ("event_type", "label") if r in names]  # few distinct texts
    whole = sink is None and max_rows is None  # a head is read batch by batch, then stops
    for batch in record_batches(path, fmt, list(names.values()), coded, whole=whole):
        if max_rows is not None and seen >= max_rows:
            break
        if max_rows is not None:
            batch = batch.slice(0, max_rows - seen)
        if columns is None:
            types = {role: type_of(batch.schema, name, role, path) for role, name in names.items()}
            columns = columns_for(types, names, m)
        arrays = {c.name: as_kind(batch.column(c.name), c) for c in columns.values()}
        rows = seen + 1 + np.arange(batch.num_rows, dtype=np.int64)
        seen += batch.num_rows
        fmt_ = CsvFormat(",", tuple(columns.values()))
        by_name = {c.name: interners[r] for r, c in columns.items() if c.kind == "code"}
        block = convert_block(arrays, rows, fmt_, q, by_name, place)
        by_role = {role: block[c.name] for role, c in columns.items()} | {LINE: block[LINE]}
        if sink is None:
            parts.append(by_role)
        else:
            sink.finish.numeric_time = types.get("timestamp") not in ("string", None)
            sink(by_role)
    if columns is None:
        raise DataFileError(f"{path}: the table has no rows; check dataset.path")
    if sink is not None:
        return {}, False
    return concat_columns(parts), types.get("timestamp") not in ("string", None)


def record_batches(
    path: Path, fmt: str, columns: list[str], coded: Sequence[str] = (), whole: bool = False
) -> Iterator:
    """The file's ``columns`` in record batches of ``ROW_BATCH`` rows; with ``whole``, a
    Parquet source as one table (read by Arrow's threads, converted without stacking blocks:
    for a file that is held whole anyway). Parquet text columns named in ``coded`` arrive
    dictionary-encoded as they are stored: no string per row is built or hashed."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    from pyarrow import json as pajson

    try:
        if fmt == "parquet":
            read = ds.ParquetReadOptions(dictionary_columns=list(coded))
            data = ds.dataset(
                path, format=ds.ParquetFileFormat(read_options=read), partitioning="hive"
            )
            missing = [c for c in columns if c not in data.schema.names]
            if missing:
                raise DataFileError(
                    f"{path}: no column(s) {missing} (dataset.table); the file has "
                    f"{data.schema.names[:20]}"
                )
            if whole:
                yield data.to_table(columns=columns)
            else:
                yield from data.to_batches(columns=columns, batch_size=ROW_BATCH)
        else:
            yield from pajson.open_json(str(path))
    except (pa.ArrowInvalid, OSError) as err:
        raise DataFileError(f"{path}: not a readable {fmt} file ({err}); {HINT}") from err


def as_kind(arr, col: Column):
    """A batch column as the type its kind converts from: int64, float64 (timestamps as
    epoch seconds) or strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_date(t):
        return pc.multiply(
            pc.cast(pc.cast(arr, pa.date32()), pa.int32()).cast(pa.float64()), 86400.0
        )
    if pa.types.is_timestamp(t):
        return pc.divide(pc.cast(pc.cast(arr, pa.int64()), pa.float64()), UNITS[t.unit])
    if col.kind == "code" and pa.types.is_dictionary(t) and pa.types.is_string(t.value_type):
        return arr  # interned from its dictionary
    target = {"int": pa.int64(), "float": pa.float64()}.get(col.kind, pa.string())
    return arr if t == target else pc.cast(arr, target)


def epoch_seconds(values: np.ndarray, unit: str) -> np.ndarray:
    """Numeric times in epoch seconds: divided by ``unit`` ('auto': :func:`time_unit_of`)."""
    if unit == "auto":
        unit = time_unit_of(values)
    return values if UNITS[unit] == 1.0 else values / UNITS[unit]


def time_unit_of(values: np.ndarray) -> str:
    """The unit that puts the median time in the years 1970-2099."""
    median = float(np.nanmedian(np.abs(values))) if len(values) else 0.0
    return next((u for u, f in UNITS.items() if median / f < 4.2e9), "ns")


def session_labels(cols: dict, m: TableMapping, labels: Interner) -> SessionLabels:
    """Per session (or user) class codes: -1 normal, k for the k-th anomalous label value;
    an event-level label makes its session (or user) anomalous."""
    names = [str(n) for n in labels.names()]
    normal = {v.lower() for v in m.normal_labels}
    anomalous = sorted({n for n in names if n.lower() not in normal})
    table = np.array([anomalous.index(n) if n in anomalous else -1 for n in names] or [-1])
    raw = cols["label"]
    code = np.where(raw >= 0, table[np.maximum(raw, 0)], -1).astype(np.int16)
    by_user = m.label_level == "user" or "session" not in cols
    keys = cols["user"] if by_user else cols["session"]
    order = np.lexsort((-code, keys))  # per key, an anomalous label first
    first = np.r_[True, keys[order][1:] != keys[order][:-1]]
    return SessionLabels(
        session_id=keys[order][first].astype(np.int64),
        label_code=code[order][first].astype(np.int8),
        class_names=tuple(anomalous),
        by_user=by_user,
    )


def file_labels(
    m: TableMapping, cols: dict[str, np.ndarray], q: Quarantine, check_keys: bool = True
) -> SessionLabels:
    """Labels from ``m.label_file`` for every session (or user) of the events; the ones it
    does not list are normal. ``check_keys``: fail when the file names none of the events'
    keys (a partition of the events may well hold none of them)."""
    by_user = m.label_level == "user" or "session" not in cols
    role = "user" if by_user else "session"
    key_column = m.label_key or getattr(m, role)
    path = Path(str(m.label_file))
    labels = Interner()
    names = {role: key_column, "label": str(m.label)}
    parts = []
    for file in table_files(path, "auto"):  # a file, or a folder of label files
        fmt = file_format(file, "auto")
        reader = read_text if fmt == "csv" else partial(read_batches, fmt=fmt)
        parts.append(
            reader(file, m=m, names=names, q=q, max_rows=None, interners={"label": labels})[0]
        )
    read = concat_columns(parts)
    listed = session_labels(read, replace(m, label_level=role), labels)
    keys = np.unique(cols[role])
    found = listed.lookup(keys)
    if check_keys and len(keys) and not np.any(found != -2) and len(listed.session_id):
        raise DataFileError(
            f"{path}: none of its {len(listed.session_id):,} {role} keys ({key_column!r}) is a "
            f"{role} of the events; are both the same kind of id (numbers or text)?"
        )
    return SessionLabels(
        session_id=keys.astype(np.int64),
        label_code=np.where(found >= 0, found, -1).astype(np.int8),
        class_names=listed.class_names,
        by_user=by_user,
    )


def user_profiles(
    m: TableMapping, users: np.ndarray, times: np.ndarray, q: Quarantine
) -> UserProfiles:
    """The profiles of ``m.profiles`` for the users of the events (``users``, ``times``: each
    event's user and time), sorted by user; a user the table does not list has none."""
    p = m.profiles
    names = {"profile_key": p.key} | {f: getattr(p, f) for f in PROFILE_FIELDS if getattr(p, f)}
    interners = {role: Interner() for role in ("age", "region", "device", "gender")}
    side = replace(m, column_names=None, delimiter="auto", format="auto")
    parts = []
    for file in table_files(Path(str(p.path)), "auto"):  # a file, or a folder of them
        fmt = file_format(file, "auto")
        reader = read_text if fmt == "csv" else partial(read_batches, fmt=fmt)
        parts.append(reader(file, m=side, names=names, q=q, max_rows=None, interners=interners)[0])
    cols = concat_columns(parts)
    cols["user"] = cols.pop("profile_key")
    _refuse_repeated_keys(cols["user"], cols[LINE], Path(str(p.path)), "the profile of user")
    first_seen = _first_time_per_user(users, times)
    listed = np.isin(cols["user"], first_seen[0])
    cols = {k: v[listed] for k, v in cols.items()}
    order = np.argsort(cols["user"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    n = len(cols["user"])
    return UserProfiles(
        user_id=cols["user"].astype(np.int64),
        age_band=_age_bands(cols, interners["age"], n),
        region=_region_codes(cols, interners["region"], n),
        device=_named_codes(cols.get("device"), interners["device"], DEVICE_ALIASES, DEVICES, n),
        tenure_days=_tenure_days(cols, first_seen, n),
        gender=(
            _named_codes(cols["gender"], interners["gender"], GENDER_ALIASES, GENDERS, n)
            if "gender" in cols
            else None
        ),
    )


def _refuse_repeated_keys(key: np.ndarray, lines: np.ndarray, path: Path, what: str) -> None:
    """A side table lists each key once: the first repeat is one line naming it."""
    order = np.argsort(key, kind="stable")
    repeat = np.flatnonzero(key[order][1:] == key[order][:-1])
    if len(repeat):
        row = order[repeat[0] + 1]
        raise DataFileError(
            f"{path}: line or row {int(lines[row])} repeats {what} {int(key[row])}: a side "
            "table has one row per key"
        )


def _first_time_per_user(users: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The events' distinct users and each one's first event time."""
    distinct, inverse = np.unique(users, return_inverse=True)
    first = np.full(len(distinct), np.inf)
    np.minimum.at(first, inverse, times)
    return distinct, first


def _age_bands(cols: dict[str, np.ndarray], names: Interner, n: int) -> np.ndarray:
    """Index into AGE_BANDS per row (-1 unknown): from years, or from the band's text."""
    if "age" not in cols:
        return np.full(n, -1, dtype=np.int8)
    age = cols["age"]
    if age.dtype.kind == "f":
        band = np.searchsorted(AGE_EDGES, age, side="right") - 1
        return np.where(np.isfinite(age), band, -1).astype(np.int8)
    table = np.array([AGE_BANDS.index(v) if v in AGE_BANDS else -1 for v in names.names()] or [-1])
    return np.where(age >= 0, table[np.maximum(age, 0)], -1).astype(np.int8)


def _region_codes(cols: dict[str, np.ndarray], names: Interner, n: int) -> np.ndarray:
    if "region" not in cols:
        return np.full(n, -1, dtype=np.int16)
    if len(names) > np.iinfo(np.int16).max:
        raise DataFileError(
            f"dataset.table.profiles.region has {len(names):,} distinct values; the profile "
            "modality takes at most 32,767: map it to a coarser column"
        )
    return cols["region"].astype(np.int16)


def _named_codes(
    codes: np.ndarray | None,
    names: Interner,
    aliases: dict[str, str],
    vocabulary: tuple[str, ...],
    n: int,
) -> np.ndarray:
    """Index into ``vocabulary`` per row, through the common spellings (-1 unknown)."""
    if codes is None:
        return np.full(n, -1, dtype=np.int8)
    known = [aliases.get(v.strip().lower()) for v in names.names()]
    table = np.array([vocabulary.index(k) if k else -1 for k in known] or [-1])
    return np.where(codes >= 0, table[np.maximum(codes, 0)], -1).astype(np.int8)


def _tenure_days(
    cols: dict[str, np.ndarray], first_seen: tuple[np.ndarray, np.ndarray], n: int
) -> np.ndarray:
    """Days the account existed at the user's first event (NaN unknown; never negative)."""
    if "tenure_days" in cols:
        return cols["tenure_days"].astype(np.float32)
    if "signup" not in cols:
        return np.full(n, np.nan, dtype=np.float32)
    signup = cols["signup"].astype(np.float64)
    if len(signup) and np.nanmedian(signup) > 1e11:  # epoch numbers in ms, us or ns
        signup = epoch_seconds(signup, time_unit_of(signup[np.isfinite(signup)]))
    distinct, first = first_seen
    start = first[np.searchsorted(distinct, cols["user"])]
    return np.maximum((start - signup) / 86_400.0, 0.0).astype(np.float32)


def item_side_table(m: TableMapping, q: Quarantine, wanted: np.ndarray) -> ItemAttributes:
    """The items of ``m.items`` that the events have (``wanted``: their item ids), sorted by
    id, with their names' words when the table has names."""
    spec = m.items
    names = {"item_key": spec.key} | {
        f"item_{f}": getattr(spec, f) for f in ITEM_FIELDS if getattr(spec, f)
    }
    interners = {"item_name": Interner()}
    side = replace(m, column_names=None, delimiter="auto", format="auto")
    parts = []
    for file in table_files(Path(str(spec.path)), "auto"):
        fmt = file_format(file, "auto")
        reader = read_text if fmt == "csv" else partial(read_batches, fmt=fmt)
        parts.append(reader(file, m=side, names=names, q=q, max_rows=None, interners=interners)[0])
    cols = concat_columns(parts)
    key = cols.pop("item_key")
    _refuse_repeated_keys(key, cols[LINE], Path(str(spec.path)), "item")
    keep = np.isin(key, wanted)
    order = np.argsort(key[keep], kind="stable")
    rows = np.flatnonzero(keep)[order]
    n = len(rows)

    def column(role: str, missing, dtype) -> np.ndarray:
        return cols[role][rows].astype(dtype) if role in cols else np.full(n, missing, dtype)

    name = None
    if "item_name" in cols:
        name = _name_tokens(cols["item_name"][rows], interners["item_name"].names())
    return ItemAttributes(
        item_id=key[rows].astype(np.int64),
        category_id=column("item_category", MISSING_ID, np.int64),
        brand_id=column("item_brand", MISSING_ID, np.int64),
        price=column("item_price", np.nan, np.float32),
        name=name,
    )


def _name_tokens(codes: np.ndarray, texts: list[str]) -> TokenLists:
    """Each row's title (``codes`` into ``texts``; ``MISSING_ID``: none) as word ids over a
    vocabulary of the titles' lower-cased words."""
    import re

    vocabulary: dict[str, int] = {}
    per_text = [
        [vocabulary.setdefault(w, len(vocabulary)) for w in re.findall(r"\w+", t.lower())]
        for t in texts
    ]
    lists = [per_text[c] if c >= 0 else [] for c in codes.tolist()]
    lengths = np.array([len(x) for x in lists], dtype=np.int64)
    tokens = np.array([w for x in lists for w in x], dtype=np.int64)
    return TokenLists(np.concatenate(([0], np.cumsum(lengths))), tokens, max(len(vocabulary), 1))


def with_item_facts(events: EventTable, items: ItemAttributes) -> EventTable:
    """Events without a category or a price take their item's from the item table."""
    row = items.lookup(events.item_id)
    found = row >= 0
    category = events.category_id.copy()
    fill = found & (category == MISSING_ID)
    category[fill] = items.category_id[row[fill]]
    price = events.price.copy()
    fill = found & np.isnan(price)
    price[fill] = items.price[row[fill]]
    return events.with_columns(category_id=category, price=price)
