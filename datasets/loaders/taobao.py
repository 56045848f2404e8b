"""Taobao UserBehavior (Alibaba Tianchi dataset 649): ``UserBehavior.csv``, about 100M rows.

**No header**; columns ``user_id,item_id,category_id,behavior_type,timestamp``; behaviour is pv
(view), buy, cart or fav; ``timestamp`` in epoch seconds. The documented window is 2017-11-25 to
2017-12-03 in China time (UTC+8), i.e. [1511539200, 1512316800) in epoch seconds; the file holds
rows outside it (some years off). ``dataset.window=true`` keeps the window and counts the rest as
``outside_window``. There are no sessions: the config sessionises each user's events by
inactivity gap (``dataset.sequence.session_by=gap``).
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
    check_times,
    drop_duplicates,
    events_table,
    keep_rows,
    line_of,
    map_type_codes,
    read_csv,
    require_file,
    sort_by_session_and_time,
    source_report,
)
from datasets.schema import Dataset

FETCH = "download UserBehavior.csv from Tianchi (python -m datasets.fetch taobao says where)"
FORMAT = CsvFormat(
    ",",
    (
        Column("user_id", "int"),
        Column("item_id", "int"),
        Column("category_id", "int"),
        Column("behavior_type", "code"),
        Column("timestamp", "int"),
    ),
    header=False,
)
TYPES = {"pv": "view", "buy": "purchase", "cart": "add_to_cart", "fav": "favourite"}
WINDOW = (1_511_539_200, 1_512_316_800)  # 2017-11-25 00:00 to 2017-12-04 00:00, UTC+8


def load(path: Path, options: LoadOptions) -> Dataset:
    path = Path(path)
    file = require_file(
        as_downloaded(path / "UserBehavior.csv") if path.is_dir() else path,
        "Taobao UserBehavior.csv",
        FETCH,
    )
    q = Quarantine(options.strict)
    interners: dict[str, Interner] = {}
    cols = read_csv(file, FORMAT, q, options.max_rows, interners)
    rows = len(cols["timestamp"])
    where = line_of(file, cols)
    seconds = cols["timestamp"].astype(np.float64)
    ok = check_times(seconds, q, where)
    codes, known = map_type_codes(
        cols["behavior_type"], interners["behavior_type"], TYPES, options, q, where
    )
    keep = ok & known
    outside = 0
    if options.window:
        inside = (seconds >= WINDOW[0]) & (seconds < WINDOW[1])
        dropped = np.flatnonzero(keep & ~inside)
        outside = len(dropped)
        rule = "outside the documented window 2017-11-25..12-03 (UTC+8; dataset.window=false)"
        q.drop("outside_window", outside, (f"{where(int(i))}: {rule}" for i in dropped))
        keep &= inside
    cols = keep_rows(
        {
            "user": cols["user_id"],
            "time": seconds,
            "type": codes,
            "item": cols["item_id"],
            "category": cols["category_id"],
        },
        keep,
    )
    cols = drop_duplicates(cols, ["user", "time", "type", "item"], q)
    cols = sort_by_session_and_time(cols, "user", "time")
    events = events_table(
        session_id=cols["user"],  # sessionised by gap downstream
        timestamp=cols.pop("time"),
        event_type=cols.pop("type"),
        item_id=cols.pop("item"),
        user_id=cols.pop("user"),
        category_id=cols.pop("category"),
    )
    report = source_report(
        [file], rows, q, window_utc8="2017-11-25..2017-12-03" if options.window else None
    )
    return Dataset("taobao", events, source=report)
