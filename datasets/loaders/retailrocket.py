"""RetailRocket e-commerce dataset (Kaggle): ``events.csv``.

``,``-separated with a header: ``timestamp`` (epoch milliseconds), ``visitorid``, ``event``
(view, addtocart, transaction), ``itemid``, ``transactionid`` (empty except for transactions).
There are no sessions: use ``dataset.sequence.session_by=gap`` (the config does) to cut each
visitor's events at inactivity gaps. With a folder as ``dataset.path``, the
``item_properties_part*.csv`` files beside it (``timestamp,itemid,property,value``) give each
item's category (the ``categoryid`` property, its latest value); they are large (20M rows) and
streamed like the events.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.loaders.common import (
    Column,
    CsvFormat,
    Interner,
    LoadOptions,
    Quarantine,
    as_downloaded,
    drop_duplicates,
    events_table,
    latest_per_key,
    line_of,
    lookup,
    read_csv,
    require_file,
    source_report,
    valid_events,
)
from datasets.schema import MISSING_ID, Dataset

FETCH = "download RetailRocket from Kaggle (python -m datasets.fetch retailrocket says where)"
EVENTS = CsvFormat(
    ",",
    (
        Column("timestamp", "int"),
        Column("visitorid", "int"),
        Column("event", "code"),
        Column("itemid", "int"),
        Column("transactionid", "int", nullable=True),
    ),
)
PROPERTIES = CsvFormat(
    ",",
    (
        Column("timestamp", "int"),
        Column("itemid", "int"),
        Column("property", "code"),
        Column("value", "code", nullable=True),
    ),
)
TYPES = {"view": "view", "addtocart": "add_to_cart", "transaction": "purchase"}


def load(path: Path, options: LoadOptions) -> Dataset:
    path = Path(path)
    file = require_file(
        as_downloaded(path / "events.csv") if path.is_dir() else path,
        "RetailRocket events.csv",
        FETCH,
    )
    q = Quarantine(options.strict)
    interners: dict[str, Interner] = {}
    cols = read_csv(file, EVENTS, q, options.max_rows, interners)
    rows = len(cols["timestamp"])
    where = line_of(file, cols)
    seconds = cols["timestamp"] / 1000.0
    codes, keep = valid_events(seconds, cols["event"], interners["event"], TYPES, options, q, where)
    cols = drop_duplicates(
        {
            "visitor": cols["visitorid"][keep],
            "time": seconds[keep],
            "type": codes[keep],
            "item": cols["itemid"][keep],
        },
        ["visitor", "time", "type", "item"],
        q,
    )
    property_files = sorted(path.glob("item_properties_part*.csv")) if path.is_dir() else []
    category = _categories(property_files, cols["item"], options) if property_files else None
    events = events_table(
        session_id=cols["visitor"],  # sessionised by gap downstream
        timestamp=cols["time"],
        event_type=cols["type"],
        item_id=cols["item"],
        user_id=cols["visitor"],
        category_id=category,
    )
    report = source_report([file, *property_files], rows, q, sessions="by inactivity gap")
    return Dataset("retailrocket", events.sorted(), source=report)


def _categories(files: list[Path], items: np.ndarray, options: LoadOptions) -> np.ndarray:
    """Each item's latest ``categoryid`` property (``MISSING_ID`` when it has none)."""
    keys, times, values = [], [], []
    for f in files:
        interners: dict[str, Interner] = {}
        props = read_csv(f, PROPERTIES, Quarantine(options.strict), options.max_rows, interners)
        prop_names = interners["property"].codes
        is_cat = props["property"] == prop_names.get("categoryid", -2)
        names = np.array([*interners["value"].names(), ""], dtype=str)
        numeric = np.char.isdigit(names)
        as_int = np.where(numeric, np.where(numeric, names, "0").astype(np.int64), MISSING_ID)
        keys.append(props["itemid"][is_cat])
        times.append(props["timestamp"][is_cat])
        values.append(as_int[props["value"][is_cat]])
    key, t, value = (np.concatenate(x) for x in (keys, times, values))
    latest = latest_per_key(key, t)
    return lookup(key[latest], value[latest], items)
