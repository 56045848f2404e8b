"""YooChoose (RecSys Challenge 2015), in its two common shapes.

- Raw: ``yoochoose-clicks.dat`` (``SessionID,Timestamp,ItemID,Category``, no header, ISO
  timestamps such as ``2014-04-07T10:51:09.277Z``) and, beside it, ``yoochoose-buys.dat``
  (``SessionID,Timestamp,ItemID,Price,Quantity``): clicks become views, buys purchases. In
  ``Category``, 1-12 are categories, ``S`` a special offer (category 13), ``0`` unknown, and
  longer numbers brands (left as unknown category).
- Prepared (session-based recommendation papers): TAB-separated ``SessionId ItemId Time`` with
  float epoch seconds, clicks only. These copies' ``Time`` is often **7200 s early** (made with
  ``datetime.timestamp()`` on naive UTC strings on a UTC+2 machine). Gaps are unaffected; the
  loader does not shift it (it cannot know which copy it has): add 7200 s yourself if wall-clock
  hours matter.

``dataset.path`` is a raw ``.dat`` file, a prepared ``.txt``/``.tsv``/``.csv`` file, or a folder
holding either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.loaders.common import (
    ISO_8601,
    PRICE,
    Column,
    CsvFormat,
    Interner,
    LoadOptions,
    Quarantine,
    as_downloaded,
    check_times,
    drop_duplicates,
    events_table,
    line_of,
    read_csv,
    require_file,
    source_report,
)
from datasets.schema import MISSING_ID, Dataset, EventType

FETCH = "download the RecSys 2015 data (python -m datasets.fetch yoochoose says where)"
PREPARED = CsvFormat(
    "\t", (Column("SessionId", "int"), Column("ItemId", "int"), Column("Time", "float"))
)
CLICKS = CsvFormat(
    ",",
    (
        Column("session", "int"),
        Column("timestamp", "time", time_format=ISO_8601),
        Column("item", "int"),
        Column("category", "code", nullable=True),
    ),
    header=False,
)
BUYS = CsvFormat(
    ",",
    (
        Column("session", "int"),
        Column("timestamp", "time", time_format=ISO_8601),
        Column("item", "int"),
        Column("price", "float", nullable=True, limits=PRICE),
        Column("quantity", "int", nullable=True),
    ),
    header=False,
)
SPECIAL_OFFER = 13


def _resolve(path: Path) -> tuple[str, Path]:
    if path.is_dir():
        for name in ("yoochoose-clicks.dat",):
            if (path / name).is_file():
                return "raw", path / name
        prepared = sorted(p for p in path.iterdir() if p.suffix in (".txt", ".tsv", ".csv"))
        if prepared:
            return "prepared", prepared[0]
        path = as_downloaded(path / "yoochoose-clicks.dat")
    require_file(path, "YooChoose clicks", FETCH)
    return ("raw" if path.suffix == ".dat" else "prepared"), path


def load(path: Path, options: LoadOptions) -> Dataset:
    shape, file = _resolve(Path(path))
    q = Quarantine(options.strict)
    if shape == "prepared":
        return _prepared(file, q, options)
    return _raw(file, q, options)


def _prepared(file: Path, q: Quarantine, options: LoadOptions) -> Dataset:
    cols = read_csv(file, PREPARED, q, options.max_rows)
    rows = len(cols["Time"])
    ok = check_times(cols["Time"], q, line_of(file, cols))
    cols = {k: v[ok] for k, v in cols.items()}
    cols = drop_duplicates(cols, ["SessionId", "Time", "ItemId"], q, line_of(file, cols))
    events = events_table(
        session_id=cols["SessionId"],
        timestamp=cols["Time"],
        event_type=np.full(len(cols["Time"]), EventType.VIEW, dtype=np.int8),
        item_id=cols["ItemId"],
    )
    report = source_report([file], rows, q, shape="prepared", time_note="may be 7200 s early")
    return Dataset("yoochoose", events.sorted(), source=report)


def _raw(file: Path, q: Quarantine, options: LoadOptions) -> Dataset:
    interners: dict[str, Interner] = {}
    clicks = read_csv(file, CLICKS, q, options.max_rows, interners)
    rows = len(clicks["session"])
    parts = [_rows(clicks, EventType.VIEW, interners["category"])]
    files = [file]
    buys_file = file.with_name("yoochoose-buys.dat")
    if buys_file.is_file():
        buys = read_csv(buys_file, BUYS, q, options.max_rows)
        rows += len(buys["session"])
        parts.append(_rows(buys, EventType.PURCHASE, None))
        files.append(buys_file)
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    cols = drop_duplicates(cols, ["session", "time", "type", "item"], q)
    events = events_table(
        session_id=cols["session"],
        timestamp=cols["time"],
        event_type=cols["type"],
        item_id=cols["item"],
        category_id=cols["category"],
        price=cols["price"].astype(np.float32),
    )
    return Dataset("yoochoose", events.sorted(), source=source_report(files, rows, q, shape="raw"))


def _rows(cols: dict, kind: EventType, categories: Interner | None) -> dict:
    n = len(cols["session"])
    category = _categories(cols["category"], categories) if categories else np.full(n, MISSING_ID)
    return {
        "session": cols["session"],
        "time": cols["timestamp"],
        "type": np.full(n, kind, dtype=np.int8),
        "item": cols["item"],
        "category": category,
        "price": cols["price"] if "price" in cols else np.full(n, np.nan),
    }


def _categories(codes: np.ndarray, interner: Interner) -> np.ndarray:
    """1-12 stay, 'S' (special offer) is 13, anything else (0, brand ids) is unknown."""
    names = interner.names()
    table = np.array(
        [int(n) if n in SMALL else SPECIAL_OFFER if n == "S" else MISSING_ID for n in names]
        + [MISSING_ID],
        dtype=np.int64,
    )
    return table[np.where(codes >= 0, codes, len(names))]


SMALL = {str(k) for k in range(1, 13)}
