"""REES46 "eCommerce behavior data from multi category store" (Kaggle, monthly CSVs such as
``2019-Oct.csv``, 40M+ rows each).

``,``-separated with a header: ``event_time`` (``YYYY-MM-DD HH:MM:SS UTC``), ``event_type``
(view, cart, purchase, remove_from_cart), ``product_id``, ``category_id`` (19 digits: read as
int64, never float), ``category_code`` and ``brand`` (empty = missing), ``price``, ``user_id``,
``user_session`` (a UUID; the session). A folder as ``dataset.path`` reads every ``*.csv`` in
it, in name order. Item attributes (category, brand, last price seen) feed the multimodal model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.loaders.common import (
    PRICE,
    Column,
    CsvFormat,
    Interner,
    LoadOptions,
    Quarantine,
    concat_columns,
    drop_duplicates,
    events_table,
    glob_data,
    keep_rows,
    latest_per_key,
    line_of,
    read_csv,
    reject_rows,
    require_file,
    sort_by_session_and_time,
    source_report,
    valid_events,
)
from datasets.schema import MISSING_ID, Dataset, ItemAttributes

FETCH = (
    "download a month from Kaggle's 'eCommerce behavior data from multi category store' "
    "(python -m datasets.fetch rees46 says where)"
)
FORMAT = CsvFormat(
    ",",
    (
        Column("event_time", "time", time_format="%Y-%m-%d %H:%M:%S UTC"),
        Column("event_type", "code"),
        Column("product_id", "int"),
        Column("category_id", "int"),
        Column("brand", "code", nullable=True),
        Column("price", "float", nullable=True, limits=PRICE),
        Column("user_id", "int"),
        Column("user_session", "hash", nullable=True),
    ),
)
TYPES = {
    "view": "view",
    "cart": "add_to_cart",
    "purchase": "purchase",
    "remove_from_cart": "remove_from_cart",
}


def files_of(path: Path) -> list[Path]:
    if path.is_dir():
        found = glob_data(path, "*.csv")
        if not found:
            raise FileNotFoundError
        return found
    return [require_file(path, "REES46 events file", FETCH)]


def load(path: Path, options: LoadOptions) -> Dataset:
    try:
        files = files_of(Path(path))
    except FileNotFoundError:
        require_file(Path(path) / "2019-Oct.csv", "REES46 events file", FETCH)
        raise
    q = Quarantine(options.strict)
    interners: dict[str, Interner] = {}
    parts, rows_read = [], 0
    for file in files:
        cols = read_csv(file, FORMAT, q, options.max_rows, interners)
        rows_read += len(cols["event_time"])
        parts.append(_events(file, cols, q, options, interners))
        del cols  # only the kept, renamed columns stay in memory
    cols = drop_duplicates(concat_columns(parts), ["session", "time", "type", "item"], q)
    del parts
    items = _items(cols)
    del cols["brand"]
    cols = sort_by_session_and_time(cols, "session", "time")
    events = events_table(
        session_id=cols.pop("session"),
        timestamp=cols.pop("time"),
        event_type=cols.pop("type"),
        item_id=cols.pop("item"),
        user_id=cols.pop("user"),
        category_id=cols.pop("category"),
        price=cols.pop("price").astype(np.float32),
    )
    report = source_report(files, rows_read, q, brands=len(interners["brand"]))
    return Dataset("rees46", events, items=items, source=report)


def _events(file, cols, q, options, interners: dict[str, Interner]) -> dict:
    where = line_of(file, cols)
    seconds = cols["event_time"]
    codes, valid = valid_events(
        seconds, cols["event_type"], interners["event_type"], TYPES, options, q, where
    )
    session = cols["user_session"]
    no_session = session == MISSING_ID
    reject_rows(
        no_session & valid, q, lambda i: (where(i), "user_session is empty"), "missing_value"
    )
    keep = valid & ~no_session
    renamed = {
        "session": session,
        "time": seconds,
        "type": codes,
        "item": cols["product_id"],
        "user": cols["user_id"],
        "category": cols["category_id"],
        "brand": cols["brand"],
        "price": cols["price"],
    }
    return keep_rows(renamed, keep)


def _items(cols: dict) -> ItemAttributes:
    """Per item: its category, brand and the last price seen (rows are time-ordered per file)."""
    pick = latest_per_key(cols["item"], cols["time"])
    return ItemAttributes(
        item_id=cols["item"][pick],
        category_id=cols["category"][pick],
        brand_id=cols["brand"][pick],
        price=cols["price"][pick].astype(np.float32),
    )
