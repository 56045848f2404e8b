"""Diginetica (CIKM Cup 2016, track 2): ``train-item-views.csv``.

``;``-separated with a header: ``sessionId;userId;itemId;timeframe;eventdate`` (the shared
sample spells them ``session_id;user_id;item_id;...``; both are read). ``userId`` is the literal
``NA`` for anonymous sessions; ``timeframe`` is milliseconds since the session started, and
``eventdate`` the calendar day: there is no time of day. Rows are not time-ordered within a
session. Every row is an item view.

Event time = midnight UTC of the session's first ``eventdate`` + ``timeframe``: gaps inside a
session are exact, times of day are not (use the data for order and gaps, not for diurnal
features). Anonymous sessions get a user id of their own (one user per session). With a folder
as ``dataset.path``, ``product-categories.csv`` (``itemId;categoryId``) beside the views adds
categories.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.loaders.common import (
    Column,
    CsvFormat,
    LoadOptions,
    Quarantine,
    as_downloaded,
    check_times,
    drop_duplicates,
    events_table,
    glob_data,
    line_of,
    lookup,
    open_binary,
    per_session_min,
    read_csv,
    require_file,
    source_report,
)
from datasets.schema import MISSING_ID, Dataset, EventType

VIEWS = "train-item-views.csv"
CATEGORIES = "product-categories.csv"
FETCH = "download the CIKM Cup 2016 data (python -m datasets.fetch diginetica says where)"
SPELLINGS = (
    ("sessionId", "userId", "itemId", "timeframe", "eventdate"),
    ("session_id", "user_id", "item_id", "timeframe", "eventdate"),
)


def views_file(path: Path) -> Path:
    if path.is_dir():
        found = glob_data(path, "*item-views*.csv")
        path = found[0] if found else path / VIEWS
    return require_file(path, "Diginetica item views", FETCH)


def _format(path: Path) -> CsvFormat:
    with open_binary(path) as f:
        header = f.readline().decode("utf-8", "replace")
    names = SPELLINGS[1] if "session_id" in header else SPELLINGS[0]
    s, u, i, t, d = names
    return CsvFormat(
        ";",
        (
            Column(s, "int"),
            Column(u, "int", nullable=True),
            Column(i, "int"),
            Column(t, "int"),
            Column(d, "time", time_format="%Y-%m-%d"),
        ),
        null_values=("", "NA"),
    )


def load(path: Path, options: LoadOptions) -> Dataset:
    file = views_file(Path(path))
    fmt = _format(file)
    s, u, i, tf, day = fmt.names
    q = Quarantine(options.strict)
    cols = read_csv(file, fmt, q, options.max_rows)
    rows_read = len(cols[s])
    midnight = cols[day]
    ok = check_times(cols[tf] / 1000.0, q, line_of(file, cols), 0.0, 86400.0 * 7)
    cols = {k: v[ok] for k, v in cols.items()}
    midnight = midnight[ok]
    cols = cols | {"_day": midnight}
    cols = drop_duplicates(cols, [s, i, tf], q, line_of(file, cols))
    session = cols[s]
    first_day = per_session_min(session, cols["_day"])
    user = cols[u].copy()
    anonymous = user == MISSING_ID
    user[anonymous] = user.max(initial=0) + 1 + session[anonymous]  # one user per session
    category = _categories(Path(path), cols[i]) if Path(path).is_dir() else None
    events = events_table(
        session_id=session,
        timestamp=first_day + cols[tf] / 1000.0,
        event_type=np.full(len(session), EventType.VIEW, dtype=np.int8),
        item_id=cols[i],
        user_id=user,
        category_id=category,
    )
    report = source_report(
        [file], rows_read, q, anonymous_rows=int(anonymous.sum()), time_of_day="unknown"
    )
    return Dataset("diginetica", events.sorted(), source=report)


def _categories(folder: Path, items: np.ndarray) -> np.ndarray | None:
    file = as_downloaded(folder / CATEGORIES)
    if not file.is_file():
        return None
    fmt = CsvFormat(";", (Column("itemId", "int"), Column("categoryId", "int")))
    table = read_csv(file, fmt, Quarantine(strict=True))
    return lookup(table["itemId"], table["categoryId"], items)
