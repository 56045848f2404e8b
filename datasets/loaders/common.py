"""Shared machinery of the public-dataset loaders: streaming CSV reads with bounded memory,
string interning, and the ``strict`` rule for bad rows.

Reading is two-speed. The fast path streams the file through pyarrow's CSV reader in blocks
(``BLOCK_BYTES``), converting each block to compact NumPy columns at once, so peak memory is the
output arrays plus one block. When pyarrow meets a row it cannot convert (a letter in a number
column, bytes that are not UTF-8), the file is read again on the exact path, line by line, which
names the file, line and column of every bad row: ``strict=True`` stops at the first with a
one-line :class:`DataFileError`; ``strict=False`` quarantines it (counted per reason, the first
examples kept) and goes on. Nothing is dropped silently: every skipped row is in the report.
"""

from __future__ import annotations

import codecs
import csv
import errno
import functools
import hashlib
import io
import itertools
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from datasets.schema import (
    MISSING_ID,
    EventTable,
    SchemaError,
    float_key_order,
    map_event_types,
    packed_session_time_sort,
)

BLOCK_BYTES = 16 << 20  # pyarrow CSV block: bounds the memory of one read step
EXACT_CHUNK_ROWS = 200_000  # rows buffered as Python objects on the exact path
MAX_EXAMPLES = 10
EPOCH_MIN, EPOCH_MAX = 0.0, 4_102_444_800.0  # 1970 .. 2100, in seconds
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# No item in a clickstream costs a billion currency units; a larger price is a unit or parsing
# error (1e300 prices once moved a detector's ROC-AUC from 1.0 to 0.70).
MAX_PRICE = 1e9
PRICE = (0.0, MAX_PRICE)


class DataFileError(SchemaError):
    """A data file that cannot be read as its documented format; the message names the file,
    line and column, and the fix."""


@dataclass(frozen=True)
class Column:
    """One CSV column: its name in the file (or the name given to it when there is no header),
    its ``kind`` and whether empty/NA values are allowed. Kinds: 'int' (ids, counts, flags and
    times: non-negative, within int64), 'float' (finite, within ``limits`` when given), 'code'
    (a string interned to a dense int64 code), 'hash' (a string key hashed to a 63-bit id, for
    high-cardinality keys: see :func:`hash_ids`), 'id' (numbers kept, other text hashed, value
    by value: :func:`mixed_ids`) and 'time' (a string parsed with
    ``time_format``, a strptime format read as UTC or ``ISO_8601``, to epoch seconds). A value
    outside its range is a bad row (named when strict, quarantined otherwise)."""

    name: str
    kind: str
    nullable: bool = False
    time_format: str | None = None
    time_zone: str = "UTC"  # of times written without an offset
    limits: tuple[float, float] | None = None  # e.g. PRICE


@dataclass(frozen=True)
class CsvFormat:
    delimiter: str
    columns: tuple[Column, ...]
    header: bool = True
    null_values: tuple[str, ...] = ("",)
    file_columns: tuple[str, ...] = ()
    """A file without a header: the name of each of its fields, in order, when ``columns``
    reads only some of them (empty: ``columns`` are all the fields)."""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def fields(self) -> list[str]:
        """Every field of a line, in order (headerless files)."""
        return list(self.file_columns) or self.names


@dataclass
class Quarantine:
    """Bad rows: an error (strict) or counted per reason with the first examples."""

    strict: bool
    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def reject(self, where: str, reason: str, kind: str) -> None:
        if self.strict:
            raise DataFileError(
                f"{where}: {reason}; fix the file, or set dataset.strict=false to quarantine "
                "such rows (counted in the run record)"
            )
        self.counts[kind] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")

    def drop(self, kind: str, n: int, examples: Iterable[str] = ()) -> None:
        """Rows removed by a documented rule (e.g. duplicates), counted in both modes; the
        first ``examples`` (their places and the rule) join the report's examples."""
        if n:
            self.counts[kind] += int(n)
        for example in itertools.islice(examples, max(0, MAX_EXAMPLES - len(self.examples))):
            self.examples.append(example)

    def report(self) -> dict:
        return {"quarantined": dict(self.counts), "examples": list(self.examples)}

    def merged(self, reports: Iterable[Mapping[str, Any]]) -> Quarantine:
        """A copy with other quarantines' reports (counts and examples) added."""
        out = Quarantine(self.strict, Counter(self.counts), list(self.examples))
        for report in reports:
            out.counts.update(report.get("quarantined") or {})
            room = max(0, MAX_EXAMPLES - len(out.examples))
            out.examples.extend(list(report.get("examples") or [])[:room])
        return out


class Interner:
    """Strings to dense int64 codes, stable across chunks (first seen gets the next code)."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.codes)

    def encode(self, values) -> np.ndarray:
        """Codes for an array of strings; None/empty become ``MISSING_ID``."""
        uniques, inverse = np.unique(
            np.asarray(values, dtype=object).astype(str), return_inverse=True
        )
        table = self.encode_unique(uniques.tolist())
        return table[inverse.reshape(-1)] if len(uniques) else np.zeros(0, dtype=np.int64)

    def encode_unique(self, values: list) -> np.ndarray:
        """Codes for distinct strings (a block's dictionary): no sort, one lookup each."""
        codes, setdefault = self.codes, self.codes.setdefault
        return np.fromiter(
            (MISSING_ID if not v or v == "None" else setdefault(v, len(codes)) for v in values),
            dtype=np.int64,
            count=len(values),
        )

    def names(self) -> list[str]:
        return list(self.codes)

    def truncate(self, size: int) -> None:
        """Forget every string interned after the first ``size`` (codes are given in order)."""
        self.codes = dict(list(self.codes.items())[:size])


def require_file(path: Path, what: str, fetch_hint: str) -> Path:
    """``path`` if it is a readable regular file; otherwise one line saying what it is
    instead (missing, a link loop, a dangling link, a named pipe, unreadable) and the fix."""
    problem = not_a_file(path)
    if problem == "missing":
        raise DataFileError(f"{what} not found at {path}: {fetch_hint}")
    if problem:
        raise DataFileError(f"{what} at {path}: {problem}")
    return path


def not_a_file(path: Path) -> str | None:
    """Why ``path`` is no readable regular file ("missing" when nothing is there), or None."""
    try:
        info = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a loop of symbolic links; point dataset.path at the real file"
        if err.errno == errno.EACCES:
            return "permission denied; make it readable"
        if os.path.lexists(path):
            target = os.readlink(path) if os.path.islink(path) else "?"
            return f"a symbolic link to {target}, which does not exist; fix or remove the link"
        return "missing"
    if stat.S_ISFIFO(info.st_mode):
        return (
            "a named pipe (FIFO), not a file: the loaders hash a file and may read it twice; "
            "save the stream to a file and give its path"
        )
    if stat.S_ISDIR(info.st_mode):
        return "missing"  # a folder without the expected file in it
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a device or socket?); give the path of the data file"
    if not os.access(path, os.R_OK):
        return "permission denied; make it readable"
    return None


def file_digest(path: Path) -> str:
    """SHA-256 of a file (streamed), the key of caches and provenance."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def cached_digest(path: Path) -> str:
    """``file_digest``, computed once per file version (path, size, mtime) in a process: the
    dataset cache's key and a run's provenance both need it, and sweeps reread the files."""
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_digest(Path(path))


@dataclass(frozen=True)
class LoadOptions:
    """Loader settings shared by every public dataset (``dataset.*`` in the config)."""

    name: str = "events"
    """The dataset's name (``dataset.name``): the generic event-table reader serves the user's
    own tables and the public datasets expressed as mappings (``dataset=taobao``)."""
    strict: bool = True
    """True: the first bad row stops the load with its file, line and column. False: bad rows
    are quarantined (skipped, counted per reason, first examples kept in the run record)."""
    max_rows: int | None = None
    """Read at most this many rows of each file (a quick look at a big download)."""
    on_unknown_event: str = "reject"
    """An event type outside the dataset's documented set: 'reject' (an error when strict, a
    quarantined row otherwise) or a vocabulary type to map it to."""
    timestamp_unit: str = "auto"
    """For formats whose copies differ ('auto', 's' or 'ms'): OTTO."""
    table: Any = None
    """The column mapping of a user's own event table (``datasets.loaders.table.TableMapping``,
    ``dataset=events``); None for the public datasets' own readers."""
    proxy_labels: bool = False
    """Use a dataset's proxy label as ground truth (TalkingData: an (ip, device, os) entity that
    never downloaded is anomalous), for ``anomaly=none`` runs."""


def events_table(
    session_id: np.ndarray,
    timestamp: np.ndarray,
    event_type: np.ndarray,
    item_id: np.ndarray,
    *,
    user_id: np.ndarray | None = None,
    category_id: np.ndarray | None = None,
    price: np.ndarray | None = None,
    query: np.ndarray | None = None,
) -> EventTable:
    """An EventTable with missing fields filled by the schema's 'unknown' values: no user ids
    means one user per session, no categories ``MISSING_ID``, no prices NaN."""
    n = len(session_id)
    return EventTable(
        session_id=session_id,
        user_id=session_id if user_id is None else user_id,
        timestamp=timestamp,
        event_type=event_type,
        item_id=item_id,
        category_id=np.full(n, MISSING_ID) if category_id is None else category_id,
        price=np.full(n, np.nan, dtype=np.float32) if price is None else price,
        query=query,
    )


def valid_id(value: int) -> bool:
    """An id a loader keeps: non-negative and within int64 (``MISSING_ID`` is -1)."""
    return 0 <= value <= INT64_MAX


def valid_events(
    seconds: np.ndarray,
    type_codes: np.ndarray,
    types: Interner,
    aliases: dict[str, str],
    options: LoadOptions,
    quarantine: Quarantine,
    where,
) -> tuple[np.ndarray, np.ndarray]:
    """The rules every event row passes: a time in range and a known event type. Returns the
    vocabulary codes and the mask of rows kept (rejected rows are named, or counted)."""
    ok = check_times(seconds, quarantine, where)
    codes, known = map_type_codes(type_codes, types, aliases, options, quarantine, where)
    return codes, ok & known


def map_type_codes(
    codes: np.ndarray,
    interner: Interner,
    aliases: dict[str, str],
    options: LoadOptions,
    quarantine: Quarantine,
    where,
) -> tuple[np.ndarray, np.ndarray]:
    """Vocabulary codes of an interned event-type column (``codes`` into ``interner``), and the
    mask of rows kept. Unknown spellings are rejected (strict: the first row's place is named)
    unless ``on_unknown_event`` maps them."""
    names = np.array(interner.names(), dtype=object)
    rule = "drop" if options.on_unknown_event == "reject" else options.on_unknown_event
    table = map_event_types(names, aliases=aliases, on_unknown=rule) if len(names) else None
    event = table[codes] if table is not None else np.zeros(0, dtype=np.int8)
    unknown = event < 0
    reject_rows(
        unknown,
        quarantine,
        lambda i: (
            where(i),
            f"unknown event type {str(names[codes[i]])[:30]!r} (known: {sorted(aliases)})",
        ),
        "unknown_event_type",
    )
    return event, ~unknown


def source_report(files: list[Path], rows_read: int, quarantine: Quarantine, **facts) -> dict:
    return {
        "files": [
            {"path": str(f), "bytes": f.stat().st_size, "sha256": file_digest(f)} for f in files
        ],
        "rows_read": int(rows_read),
        **quarantine.report(),
        **facts,
    }


# ------------------------------------------------------------------------------ CSV reading


def read_csv(
    path: Path,
    fmt: CsvFormat,
    quarantine: Quarantine,
    max_rows: int | None = None,
    interners: dict[str, Interner] | None = None,
    sink: BlockSink | None = None,
) -> dict[str, np.ndarray]:
    """The file's columns as compact NumPy arrays: 'int' and 'code' as int64 (nulls
    ``MISSING_ID``; 'code' columns interned through ``interners[name]``), 'float' and 'time'
    as float64 (NaN for nulls; 'time' in epoch seconds), and ``LINE``: each row's line in the
    file (exact when strict). No Python string survives a block. With a ``sink``, each block
    goes to it instead (memory bounded by a block) and the columns returned are empty."""
    import pyarrow as pa

    interners = {} if interners is None else interners
    for c in fmt.columns:
        if c.kind == "code":
            interners.setdefault(c.name, Interner())
    check_header(path, fmt)
    counts, examples = Counter(quarantine.counts), list(quarantine.examples)
    known = {c.name: len(interners[c.name]) for c in fmt.columns if c.kind == "code"}
    try:
        return _collect(_fast_chunks(path, fmt, quarantine, max_rows, interners), fmt, sink)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        # A row pyarrow cannot convert: read again line by line to name it or quarantine it
        # (what this file's fast pass counted, interned, or sent to the sink is taken back
        # first; an interner may be the caller's, shared with other files: kept in place).
        quarantine.counts, quarantine.examples = counts, examples
        for name, size in known.items():
            interners[name].truncate(size)
        if sink is not None:
            sink.restart()
        return _collect(_exact_chunks(path, fmt, quarantine, max_rows, interners), fmt, sink)


class BlockSink(Protocol):
    """Where a streaming read sends each converted block (and, when it has to read a file
    again from its start, ``restart``: forget what this file sent)."""

    def __call__(self, block: dict[str, np.ndarray]) -> None: ...

    def restart(self) -> None: ...


def _collect(
    chunks: Iterator[dict[str, np.ndarray]], fmt: CsvFormat, sink: BlockSink | None
) -> dict[str, np.ndarray]:
    if sink is None:
        return _concat(chunks, fmt)
    for chunk in chunks:
        sink(chunk)
    return _concat(iter(()), fmt)


# No clickstream row comes near this; a longer "line" is a broken or binary file, and reading it
# whole would defeat the loaders' bounded memory.
MAX_LINE_BYTES = 1 << 20


UTF16_MARKS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}


def as_downloaded(path: Path) -> Path:
    """``path``, or its compressed twin (``.gz``, ``.bz2``, ``.zst``) when only that exists:
    official downloads often come compressed, and every reader reads them as they are."""
    if path.exists():
        return path
    twins = (path.with_name(path.name + suffix) for suffix in COMPRESSION)
    return next((twin for twin in twins if twin.exists()), path)


def glob_data(folder: Path, pattern: str) -> list[Path]:
    """Files of ``folder`` matching ``pattern``, plain or compressed, in name order."""
    found = {p for suffix in ("", *COMPRESSION) for p in folder.glob(pattern + suffix)}
    return sorted(p for p in found if p.is_file())


def open_binary(path: Path):
    """A binary file object of ``path``'s bytes, decompressed when its name ends in .gz, .bz2
    or .zst (as pyarrow's readers do on their own)."""
    import pyarrow as pa

    codec = COMPRESSION.get(Path(path).suffix.lower())
    if codec is None:
        return open(path, "rb")
    return io.BufferedReader(pa.input_stream(str(path), compression=codec))


def check_header(path: Path, fmt: CsvFormat, settings: dict[str, str] | None = None) -> None:
    """One line naming what is wrong with a text table's first line: empty, UTF-16, not
    text, the wrong number of fields, missing columns (and the separator they suggest;
    ``settings``: the config key that names each column, said with a missing one)."""
    with open_binary(path) as f:
        raw = f.readline(MAX_LINE_BYTES)
    if raw.startswith(UTF16_MARKS):
        raise DataFileError(
            f"{path}: the file is UTF-16 text (it starts with a UTF-16 byte-order mark); "
            "save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)"
        )
    first = raw.removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="replace").rstrip("\r\n")
    if not first:
        raise DataFileError(f"{path}: the file is empty; check the path or re-download it")
    if not _looks_like_text(first):
        raise DataFileError(
            f"{path}: the first line is not text (a binary or compressed file?); "
            "decompress it or check the path"
        )
    if not fmt.header:
        fields = first.split(fmt.delimiter)
        if len(fields) != len(fmt.fields):
            raise DataFileError(
                f"{path}:1: expected {len(fmt.fields)} {_sep(fmt.delimiter)}-separated fields "
                f"({', '.join(fmt.fields)}), found {len(fields)}; is this the right file and "
                "format?"
            )
        return
    fields = [f.strip().strip('"') for f in first.split(fmt.delimiter)]
    missing = [c.name for c in fmt.columns if c.name not in fields]
    if missing:
        hint = ""
        for other in (",", ";", "\t", "|"):
            if other != fmt.delimiter and len(first.split(other)) > len(fields):
                hint = f" (the header looks {_sep(other)}-separated, not {_sep(fmt.delimiter)})"
        if settings:
            raise DataFileError(
                f"{path}: no column {missing[0]!r} ({settings[missing[0]]}); the file has "
                f"{fields[:20]}{hint}"
            )
        raise DataFileError(
            f"{path}:1: missing column(s) {missing} in the header {fields[:12]}{hint}; "
            "is this the right file and format?"
        )


def _looks_like_text(line: str) -> bool:
    """No replacement characters (bytes that are not UTF-8) and no control characters
    other than tabs, in the first 4 KiB."""
    head = line[:4096]
    return "\ufffd" not in head and all(ch.isprintable() or ch == "\t" for ch in head)


def _lines(f) -> Iterator[bytes | None]:
    """The file's lines; ``None`` in place of a line longer than ``MAX_LINE_BYTES`` (its
    bytes are skipped without being held in memory)."""
    while raw := f.readline(MAX_LINE_BYTES):
        if len(raw) < MAX_LINE_BYTES or raw.endswith(b"\n"):
            yield raw
            continue
        while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
            pass
        yield None


def _sep(d: str) -> str:
    return {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}.get(d, repr(d))


def _arrow_type(col: Column, stream: bool = False):
    """The Arrow type a column is read as; in a ``stream`` of blocks, text to be interned
    arrives dictionary-encoded (a block's few distinct strings, not one per row)."""
    import pyarrow as pa

    if stream and col.kind == "code":
        return pa.dictionary(pa.int32(), pa.string())
    return {"int": pa.int64(), "float": pa.float64()}.get(col.kind, pa.string())


def _fast_chunks(path, fmt, quarantine, max_rows, interners) -> Iterator[dict[str, np.ndarray]]:
    from pyarrow import csv as pacsv

    rows_seen = 0

    def bad_row(row) -> str:
        if quarantine.strict:
            return "error"  # the exact path then names the line
        quarantine.reject(
            f"{path}: row {row.text[:60]!r}",
            f"expected {row.expected_columns} fields, found {row.actual_columns}",
            "wrong_field_count",
        )
        return "skip"

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(
            block_size=BLOCK_BYTES,
            column_names=None if fmt.header else fmt.fields,
            use_threads=True,
        ),
        parse_options=pacsv.ParseOptions(delimiter=fmt.delimiter, invalid_row_handler=bad_row),
        convert_options=pacsv.ConvertOptions(
            column_types={c.name: _arrow_type(c, stream=True) for c in fmt.columns},
            include_columns=fmt.names,
            null_values=list(fmt.null_values),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    for batch in reader:
        if max_rows is not None and rows_seen >= max_rows:
            break
        if max_rows is not None:
            batch = batch.slice(0, max_rows - rows_seen)
        first_line = rows_seen + 1 + int(fmt.header)
        rows_seen += batch.num_rows
        arrays = {c.name: batch.column(c.name) for c in fmt.columns}
        lines = first_line + np.arange(batch.num_rows, dtype=np.int64)
        yield convert_block(arrays, lines, fmt, quarantine, interners, f"{path}:")


LINE = "_line"  # the source line of each row, carried so later checks can name it


def convert_block(
    arrays: dict, lines: np.ndarray, fmt: CsvFormat, quarantine, interners, place: str
) -> dict:
    """Arrow columns of one block to NumPy, plus each row's line number (``LINE``); rows with
    a bad time or a missing required value are rejected, naming their line."""
    bad = np.zeros(len(lines), dtype=bool)
    cols: dict[str, np.ndarray] = {LINE: lines}

    def where(i: int) -> str:  # 'file:line' (or 'file: row n', as ``place`` says)
        return f"{place}{lines[i]}"

    for c in fmt.columns:
        arr = arrays[c.name]
        # the common column without nulls skips a mask and its passes
        null = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
        if c.kind == "int":
            filled = arr.fill_null(MISSING_ID) if null is not None else arr
            values = filled.to_numpy().astype(np.int64, copy=False)
            bad |= _reject_outside(
                values, to_judge(null, bad), c, (0, INT64_MAX), quarantine, where
            )
        elif c.kind == "float":
            values = arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            limits = c.limits or (-np.inf, np.inf)
            bad |= _reject_outside(values, to_judge(null, bad), c, limits, quarantine, where)
        elif c.kind == "code":
            values = _codes(arr, interners[c.name])
        elif c.kind == "hash":
            values = hash_ids(arr)
        elif c.kind == "id":
            values = mixed_ids(arr)
            bad |= _reject_outside(
                values, to_judge(null, bad), c, (0, INT64_MAX), quarantine, where
            )
        else:  # time
            values = parse_times(arr, c.time_format, c.time_zone)
            bad |= _reject_bad_times(values, arr, c, to_judge(null, bad), quarantine, where)
        if not c.nullable and null is not None:
            missing = null & ~bad
            reject_rows(
                missing,
                quarantine,
                lambda i, c=c: (where(i), f"column {c.name!r} is empty"),
                "missing_value",
            )
            bad |= missing
        cols[c.name] = values
    return {k: v[~bad] for k, v in cols.items()} if bad.any() else cols


def _reject_bad_times(
    values: np.ndarray, arr, c: Column, judged: np.ndarray, quarantine, where: Callable[[int], str]
) -> np.ndarray:
    """Rows among ``judged`` whose time did not parse or lies outside the years 1970-2099,
    each rejected naming its line."""
    invalid = np.isnan(values) & judged
    reject_rows(
        invalid,
        quarantine,
        lambda i: (
            where(i),
            f"column {c.name!r}: {str(arr[i].as_py())[:40]!r} is not a time ({c.time_format})",
        ),
        "bad_value",
    )
    outside = judged & ~invalid & ((values < EPOCH_MIN) | (values > EPOCH_MAX))
    reject_rows(
        outside,
        quarantine,
        lambda i: (
            where(i),
            f"column {c.name!r}: {str(arr[i].as_py())[:40]!r} is outside the years 1970-2099",
        ),
        "time_out_of_range",
    )
    return invalid | outside


def to_judge(null: np.ndarray | None, bad: np.ndarray) -> np.ndarray:
    """Rows whose value is there and not rejected yet."""
    return ~bad if null is None else ~null & ~bad


def _reject_outside(values, judged, col: Column, limits, quarantine, where) -> np.ndarray:
    """Mask of the ``judged`` rows whose value is not finite or lies outside ``limits``
    (rejected, naming the row, column, value and range)."""
    low, high = limits
    with np.errstate(invalid="ignore"):
        outside = judged & ~(np.isfinite(values) & (values >= low) & (values <= high))
    reject_rows(
        outside,
        quarantine,
        lambda i: (
            where(i),
            f"column {col.name!r}: {values[i]:g} is outside [{low:g}, {high:g}]"
            + (" (a number must be finite)" if not np.isfinite(values[i]) else ""),
        ),
        "out_of_range",
    )
    return outside


_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
_SIGN_OFF = np.uint64(0x7FFF_FFFF_FFFF_FFFF)


INT64_TEXT = str(INT64_MAX)


def mixed_ids(arr) -> np.ndarray:
    """Ids of a text column that may hold numbers and words alike (YooChoose's categories are
    numbers and 'S'): a plain non-negative integer within int64 is kept as that number, any
    other text is hashed (:func:`hash_ids`), value by value, so no guess from the first rows
    can be wrong later in the file. Nulls are ``MISSING_ID``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    try:  # the usual block: numbers only (a negative one is then judged like an 'int')
        return arr.cast(pa.int64()).fill_null(MISSING_ID).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    numeric = pc.match_substring_regex(arr, r"^[0-9]{1,19}$").fill_null(False)
    too_big = pc.and_(pc.equal(pc.utf8_length(arr), 19), pc.greater(arr, INT64_TEXT))
    numeric = pc.and_(numeric, pc.invert(too_big.fill_null(False)))
    mask = numeric.to_numpy(zero_copy_only=False)
    out = np.empty(len(arr), dtype=np.int64)
    if mask.any():
        out[mask] = pc.cast(arr.filter(numeric), pa.int64()).to_numpy(zero_copy_only=False)
    if not mask.all():
        out[~mask] = hash_ids(arr.filter(pc.invert(numeric)))
    return out


def hash_ids(arr) -> np.ndarray:
    """Non-negative 63-bit ids of string keys with no dictionary in memory: UUID-like hex
    strings (32 hex digits, dashes ignored) are folded arithmetically, vectorised; anything
    else is hashed with BLAKE2b. Nulls are ``MISSING_ID``. For millions of distinct session ids
    (REES46's ``user_session``) this replaces a Python dict of strings; two keys collide with
    probability about n^2 / 2^64 (under 1e-5 for 10M keys)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    null = arr.is_null().to_numpy(zero_copy_only=False)
    digits = pc.replace_substring(arr, "-", "").fill_null("0" * 32)
    out = np.zeros(len(arr), dtype=np.uint64)
    offsets = np.frombuffer(digits.buffers()[1], dtype=np.int32)[
        digits.offset : digits.offset + len(digits) + 1
    ].astype(np.int64)
    data = np.frombuffer(digits.buffers()[2], dtype=np.uint8) if len(digits) else np.zeros(0)
    rows = np.flatnonzero(np.diff(offsets) == 32)  # per row, so a key's id never depends
    nibbles = _HEX[data[offsets[rows, None] + np.arange(32)]].reshape(len(rows), 2, 16)
    hexadecimal = np.zeros(len(arr), dtype=bool)
    ok = ~(nibbles == 255).any(axis=(1, 2))  # on its neighbours in the block
    hexadecimal[rows[ok]] = True
    packed = (nibbles[ok, :, ::2] << 4) | nibbles[ok, :, 1::2]  # (n, 2, 8) bytes
    halves = np.ascontiguousarray(packed).view(">u8").reshape(-1, 2)
    out[rows[ok]] = halves[:, 0] ^ halves[:, 1]
    for i in np.flatnonzero(~hexadecimal & ~null):  # the rare non-UUID key
        text = arr[int(i)].as_py().encode("utf-8")
        out[i] = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")
    ids = (out & _SIGN_OFF).astype(np.int64)
    ids[null] = MISSING_ID
    return ids


def _codes(arr, interner: Interner) -> np.ndarray:
    """Interned codes of a string column via its per-block dictionary (few Python strings)."""
    import pyarrow as pa

    encoded = arr.dictionary_encode() if not pa.types.is_dictionary(arr.type) else arr
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    table = interner.encode_unique(encoded.dictionary.to_pylist())
    if not encoded.indices.null_count and len(table):
        return table[encoded.indices.to_numpy()]
    index = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.where(
        index >= 0, table[np.maximum(index, 0)] if len(table) else MISSING_ID, MISSING_ID
    )


ISO_8601 = "iso8601"
_ISO_PATTERN = r"^\d{4}-\d\d-\d\d([T ]\d\d:\d\d:\d\d(\.\d{1,9})?Z?)?$"


def parse_times(arr, time_format: str | None, time_zone: str = "UTC") -> np.ndarray:
    """Epoch seconds (float64) of a string column: a strptime ``time_format`` or ``ISO_8601``
    (``2014-04-07T10:51:09.277Z``, or a space for the T, or a date alone: its midnight), read
    in ``time_zone`` (an IANA name;
    a format with ``%z`` carries its own offset); NaN where a value does not parse."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if time_format != ISO_8601:
        parsed = pc.strptime(arr, format=time_format, unit="s", error_is_null=True)
        return _seconds(_in_zone(parsed, time_zone), 1.0)
    valid = pc.match_substring_regex(arr, _ISO_PATTERN).fill_null(False)
    out = np.full(len(arr), np.nan)
    mask = valid.to_numpy(zero_copy_only=False)
    good = arr.filter(valid)
    try:
        parsed = pc.cast(pc.utf8_rtrim(good, characters="Z"), pa.timestamp("ms"))
        out[mask] = _seconds(_in_zone(parsed, time_zone), 1000.0)
    except pa.ArrowInvalid:  # well-formed but impossible (month 13): one by one
        out[mask] = [_one_iso(t) for t in good.to_pylist()]
    return out


def _in_zone(parsed, time_zone: str):
    """Naive times read as wall-clock times of ``time_zone`` (UTC: as they are). A time a
    daylight-saving change skips or repeats takes the earlier reading."""
    import pyarrow.compute as pc

    if time_zone == "UTC" or getattr(parsed.type, "tz", None):
        return parsed
    return pc.assume_timezone(
        parsed, timezone=time_zone, ambiguous="earliest", nonexistent="earliest"
    )


def _seconds(parsed, per_second: float) -> np.ndarray:
    import pyarrow as pa

    as_int = parsed.cast(pa.int64())
    return as_int.to_numpy(zero_copy_only=False).astype(np.float64) / per_second


def _one_iso(text: str) -> float:
    try:
        return float(np.datetime64(text.rstrip("Z"), "ms").astype(np.int64)) / 1000.0
    except ValueError:
        return float("nan")


def reject_rows(
    mask: np.ndarray,
    quarantine: Quarantine,
    describe: Callable[..., tuple[str, str]],
    kind: str,
) -> None:
    """Reject the rows of ``mask``: strict raises on the first (``describe(i)`` gives its
    place and reason); otherwise the first few become examples and all are counted."""
    index = np.flatnonzero(mask)
    for i in index[:MAX_EXAMPLES]:
        quarantine.reject(*describe(int(i)), kind)
    quarantine.drop(kind, max(0, len(index) - MAX_EXAMPLES))


def _exact_chunks(path, fmt, quarantine, max_rows, interners) -> Iterator[dict[str, np.ndarray]]:
    """Line by line: every bad row is named (file:line, column, value)."""
    import pyarrow as pa

    rows: list[list] = []
    lines: list[int] = []
    positions = [fmt.fields.index(name) for name in fmt.names]
    width = len(fmt.fields)

    def flush() -> dict[str, np.ndarray]:
        arrays = {
            c.name: pa.array([r[i] for r in rows], type=_arrow_type(c))
            for i, c in enumerate(fmt.columns)
        }
        at = np.array(lines, dtype=np.int64)
        rows.clear()
        lines.clear()
        return convert_block(arrays, at, fmt, quarantine, interners, f"{path}:")

    kept = 0
    with open_binary(path) as f:
        for line_no, raw in enumerate(_lines(f), start=1):
            if line_no == 1 and raw is not None:
                raw = raw.removeprefix(codecs.BOM_UTF8)  # as Excel writes UTF-8; pyarrow skips it
            if raw is None:
                where, size = f"{path}:{line_no}", f"{MAX_LINE_BYTES >> 20} MiB"
                quarantine.reject(where, f"a line longer than {size}", "line_too_long")
                continue
            if line_no == 1 and fmt.header:
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                header = next(csv.reader([text], delimiter=fmt.delimiter))
                positions, width = [header.index(c.name) for c in fmt.columns], len(header)
                continue
            if max_rows is not None and kept >= max_rows:
                break
            row = _parse_line(raw, f"{path}:{line_no}", fmt, (positions, width), quarantine)
            if row is None:
                continue
            rows.append(row)
            lines.append(line_no)
            kept += 1
            if len(rows) >= EXACT_CHUNK_ROWS:
                yield flush()
    if rows:
        yield flush()


KIND_WORDS = {"int": "an integer", "float": "a number"}


def _parse_line(raw: bytes, where: str, fmt, layout, quarantine) -> list | None:
    """One line's values in ``fmt`` column order (``layout``: each column's position in the
    line, and how many fields a line has), or None when it was rejected. Numbers are
    converted here (to name a bad one); strings stay for the block conversion."""
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        quarantine.reject(where, f"bytes that are not UTF-8 at offset {err.start}", "not_utf8")
        return None
    if not text.strip():
        return None
    try:
        fields = next(csv.reader(io.StringIO(text), delimiter=fmt.delimiter))
    except csv.Error as err:  # e.g. a field over the csv module's 128 KiB limit
        quarantine.reject(where, f"unreadable CSV ({err})", "bad_csv")
        return None
    positions, width = layout
    if len(fields) != width:
        quarantine.reject(
            where, f"expected {width} fields, found {len(fields)}", "wrong_field_count"
        )
        return None
    out: list[int | float | None] = []
    for col, value in zip(fmt.columns, (fields[i] for i in positions), strict=True):
        if value in fmt.null_values:
            out.append(None)  # missing: judged (nullable or not) in the block conversion
        elif col.kind in KIND_WORDS:
            try:
                number = int(value) if col.kind == "int" else float(value)
            except ValueError:
                quarantine.reject(
                    where,
                    f"column {col.name!r}: {value[:40]!r} is not {KIND_WORDS[col.kind]}",
                    "bad_value",
                )
                return None
            if col.kind == "int" and not INT64_MIN <= number <= INT64_MAX:
                quarantine.reject(
                    where,
                    f"column {col.name!r}: {value[:40]} is outside the 64-bit integer range",
                    "out_of_range",
                )
                return None
            out.append(number)
        else:
            out.append(value)
    return out


def _concat(chunks: Iterator[dict[str, np.ndarray]], fmt: CsvFormat) -> dict[str, np.ndarray]:
    parts = list(chunks)
    if not parts:
        dtypes = {"int": np.int64, "code": np.int64, "hash": np.int64, "id": np.int64}
        empty = {c.name: np.zeros(0, dtype=dtypes.get(c.kind, np.float64)) for c in fmt.columns}
        return {LINE: np.zeros(0, dtype=np.int64), **empty}
    if len(parts) == 1:
        return parts[0]
    return concat_columns(parts)


def concat_columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack blocks column by column, freeing each column's blocks as it goes (peak: the
    output plus one column), without a copy when there is a single block."""
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p.pop(name) for p in parts]) for name in list(parts[0])}


# ------------------------------------------------------------------------------ row rules


def check_times(
    seconds: np.ndarray,
    quarantine: Quarantine,
    where,
    low: float = EPOCH_MIN,
    high: float = EPOCH_MAX,
) -> np.ndarray:
    """Mask of rows whose time is finite and inside [low, high]; the others are rejected
    (``where(i)`` names row i's place, e.g. its file and line)."""
    ok = np.isfinite(seconds) & (seconds >= low) & (seconds <= high)
    reject_rows(
        ~ok,
        quarantine,
        lambda i: (where(i), f"time {float(seconds[i]):g} s is outside [{low:g}, {high:g}]"),
        "time_out_of_range",
    )
    return ok


def line_of(path: Path, cols: dict[str, np.ndarray]):
    """``where(i)``: 'file:line' of row i of columns read by :func:`read_csv`."""
    return lambda i: f"{path}:{cols[LINE][i]}"


def drop_duplicates(
    columns: dict[str, np.ndarray],
    keys: list[str],
    quarantine: Quarantine,
    where: Callable[[int], str] | None = None,
) -> dict:
    """Remove exact repeats of the ``keys`` fields (the first is kept), counted as
    ``duplicate_event`` in the report in both modes (``where(i)`` names row i for the
    examples)."""
    n = len(columns[keys[0]])
    if n < 2:
        return columns
    dup = np.zeros(n, dtype=bool)
    dup[repeats_among(columns, keys, np.arange(n))] = True
    _count_repeats(quarantine, np.flatnonzero(dup), where)
    return keep_rows(columns, ~dup)


def sorted_without_repeats(
    columns: dict[str, np.ndarray],
    session: str,
    time: str,
    keys: list[str],
    quarantine: Quarantine,
    where: Callable[[int], str] | None = None,
) -> dict:
    """The rows in EventTable order (``session``, then ``time``; stable, so ties keep their
    file order) without exact repeats of the ``keys`` fields, which must include both: the
    first in file order is kept, the others counted as :func:`drop_duplicates` does. One sort
    does both jobs: repeats tie on session and time, so only runs of tied rows are searched."""
    n = len(columns[session])
    if n < 2:
        return columns
    order, tied = _sort_with_ties(columns[session], columns[time])
    members = np.flatnonzero(np.r_[tied, False] | np.r_[False, tied])
    run = np.cumsum(np.r_[True, ~tied])[members]  # which run of ties each member is in
    dup = repeats_among(columns, keys, order[members], run)
    _count_repeats(quarantine, np.sort(order[members[dup]]), where)
    keep = np.ones(n, dtype=bool)
    keep[members[dup]] = False
    order = order[keep] if not keep.all() else order
    for name in list(columns):  # one column at a time: the peak is one extra column
        columns[name] = columns[name][order]
    return columns


def _sort_with_ties(session: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The session-time order and, per sorted row i + 1, whether it ties with row i."""
    packed = packed_session_time_sort(session, time)
    if packed is not None:
        order, keys = packed
        return order, keys[1:] == keys[:-1]
    order = float_key_order(session, time)
    s, t = session[order], time[order]
    return order, (s[1:] == s[:-1]) & (t[1:] == t[:-1])


def repeats_among(
    columns: dict[str, np.ndarray],
    keys: list[str],
    rows: np.ndarray,
    group: np.ndarray | None = None,
) -> np.ndarray:
    """Which of ``rows`` (in priority order) repeat the ``keys`` fields of an earlier one of
    the same ``group``: a bool mask over ``rows``. Rows are grouped by a 64-bit hash of the
    keys (one sort instead of a multi-key sort) and candidates compared field by field."""
    digest = np.zeros(len(rows), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in keys:
            v = np.ascontiguousarray(columns[k][rows])
            bits = v.view(np.uint64) if v.dtype.itemsize == 8 else v.astype(np.uint64)
            digest = digest * np.uint64(0x100000001B3) ^ bits
    # stable: equal rows end up adjacent, the earliest first
    order = np.argsort(digest, kind="stable") if group is None else np.lexsort((digest, group))
    d = digest[order]
    same = d[1:] == d[:-1]
    if group is not None:
        g = group[order]
        same &= g[1:] == g[:-1]
    first, second = rows[order[:-1]], rows[order[1:]]
    candidates = np.flatnonzero(same)
    for k in keys:
        v = columns[k]
        same[candidates] &= v[second[candidates]] == v[first[candidates]]
    repeat = np.zeros(len(rows), dtype=bool)
    repeat[order[1:][same]] = True
    return repeat


def _count_repeats(
    quarantine: Quarantine, rows: np.ndarray, where: Callable[[int], str] | None
) -> None:
    """Count repeated ``rows`` (file order) as ``duplicate_event``, naming the first ones."""
    named: Iterable[str] = ()
    if where is not None:
        name = where
        named = (f"{name(int(i))}: a repeat of an earlier event" for i in rows)
    quarantine.drop("duplicate_event", len(rows), named)


def per_session_min(session: np.ndarray, value: np.ndarray) -> np.ndarray:
    """For each row, the smallest ``value`` of its session (any order of rows)."""
    uniques, inverse = np.unique(session, return_inverse=True)
    low = np.full(len(uniques), np.inf)
    np.minimum.at(low, inverse, value)
    return low[inverse]


def latest_per_key(keys: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Row index of the latest row (by ``times``; file order breaks ties) of each key."""
    order = np.lexsort((times, keys))
    sorted_keys = keys[order]
    return order[np.r_[sorted_keys[1:] != sorted_keys[:-1], True]] if len(keys) else order


def lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``values`` of unique ``keys`` at ``queries``; ``MISSING_ID`` where a query is no key."""
    order = np.argsort(keys)
    keys, values = keys[order], values[order]
    pos = np.clip(np.searchsorted(keys, queries), 0, max(len(keys) - 1, 0))
    found = keys[pos] == queries if len(keys) else np.zeros(len(queries), dtype=bool)
    return np.where(found, values[pos] if len(keys) else MISSING_ID, MISSING_ID)


def keep_rows(columns: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of ``keep``, without copying when every row stays (the usual clean file)."""
    if keep.all():
        return dict(columns)
    return {k: v[keep] for k, v in columns.items()}
