"""Diginetica (CIKM Cup 2016, track 2): ``train-item-views.csv`` and the files beside it.

``;``-separated with a header: ``sessionId;userId;itemId;timeframe;eventdate`` (the shared
sample spells them ``session_id;user_id;item_id;...``; both are read). ``userId`` is the literal
``NA`` for anonymous sessions; ``timeframe`` is milliseconds since the session started, and
``eventdate`` the calendar day: there is no time of day. Rows are not time-ordered within a
session. Every row is an item view.

Event time = midnight UTC of the session's first ``eventdate`` + ``timeframe``: gaps inside a
session are exact, times of day are not (use the data for order and gaps, not for diurnal
features). Anonymous sessions get a user id of their own (one user per session).

Beside the views (the views file's folder), each optional, plain or compressed:
``product-categories.csv`` (``itemId;categoryId``) adds categories; ``train-purchases.csv``
(``sessionId;userId;timeframe;eventdate;ordernumber;itemId``) adds the real purchases;
``train-queries.csv`` (``queryId;sessionId;userId;timeframe;duration;eventdate;
searchstring.tokens;categoryId;items;is.test``) adds search events with their hashed words;
``products.csv`` (``itemId;pricelog2;product.name.tokens``) adds prices and item names. Query
and name words share one hashed vocabulary, mapped to dense ids. Purchases and queries of
sessions the views do not have are dropped and named (``purchase_outside_views``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.loaders.common import (
    LINE,
    Column,
    CsvFormat,
    DataFileError,
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
    parse_times,
    per_session_min,
    read_csv,
    require_file,
    source_report,
)
from datasets.schema import (
    MISSING_ID,
    Dataset,
    EventType,
    ItemAttributes,
    TokenLists,
    ragged_arange,
)

VIEWS = "train-item-views.csv"
CATEGORIES = "product-categories.csv"
PURCHASES = "train-purchases.csv"
QUERIES = "train-queries.csv"
PRODUCTS = "products.csv"
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
    folder = file.parent
    q = Quarantine(options.strict)
    views, rows_read = _views(file, q, options)
    known = np.unique(views["session"])
    parts, files = [views], [file]
    for side, read in ((PURCHASES, _purchases), (QUERIES, _queries)):
        side_file = as_downloaded(folder / side)
        if side_file.is_file():
            part, n = read(side_file, q, options, known)
            parts.append(part)
            files.append(side_file)
            rows_read += n
    cols = {k: np.concatenate([p[k] for p in parts]) for k in views}
    session = cols["session"]
    user = cols["user"].copy()
    anonymous = user == MISSING_ID
    user[anonymous] = user.max(initial=0) + 1 + session[anonymous]  # one user per session
    items = cols["item"]
    category = _categories(folder, items)  # a search keeps the category it browsed, if any
    category = (
        cols["category"] if category is None else np.where(items >= 0, category, cols["category"])
    )
    searched = next((p["_tokens"] for p in parts if "_tokens" in p), None)
    products = as_downloaded(folder / PRODUCTS)
    named = _products(products) if products.is_file() else None
    if named is not None:
        files.append(products)
    queries, names = _shared_vocabulary(searched, named[2] if named else None)
    item_table = None
    if named is not None:
        item_ids, item_price, _ = named
        item_category = _categories(folder, item_ids)
        item_table = ItemAttributes(
            item_id=item_ids,
            category_id=np.full(len(item_ids), MISSING_ID)
            if item_category is None
            else item_category,
            brand_id=np.full(len(item_ids), MISSING_ID),
            price=item_price,
            name=names,
        )
    price = _prices(item_table, items) if item_table is not None else None
    query = cols["query"] if searched is not None else None
    events = events_table(
        session_id=session,
        timestamp=per_session_min(session, cols["day"]) + cols["seconds"],
        event_type=cols["type"],
        item_id=items,
        user_id=user,
        category_id=category,
        price=price,
        query=query,
    )
    report = source_report(
        files, rows_read, q, anonymous_rows=int(anonymous.sum()), time_of_day="unknown"
    )
    return Dataset("diginetica", events.sorted(), items=item_table, source=report, queries=queries)


def _views(file: Path, q: Quarantine, options: LoadOptions) -> tuple[dict, int]:
    fmt = _format(file)
    s, u, i, tf, day = fmt.names
    cols = read_csv(file, fmt, q, options.max_rows)
    rows_read = len(cols[s])
    ok = check_times(cols[tf] / 1000.0, q, line_of(file, cols), 0.0, 86400.0 * 7)
    cols = {k: v[ok] for k, v in cols.items()}
    cols = drop_duplicates(cols, [s, i, tf], q, line_of(file, cols))
    n = len(cols[s])
    return _rows(cols[s], cols[u], cols[i], cols[tf], cols[day], EventType.VIEW, n), rows_read


def _rows(session, user, item, timeframe, day, kind: EventType, n: int, **extra) -> dict:
    """One part's events: session, user, item, day (midnight UTC), seconds into the session."""
    return {
        "session": session,
        "user": user,
        "item": item,
        "day": day,
        "seconds": timeframe / 1000.0,
        "type": np.full(n, kind, dtype=np.int8),
        "category": extra.get("category", np.full(n, MISSING_ID, dtype=np.int64)),
        "query": extra.get("query", np.full(n, MISSING_ID, dtype=np.int64)),
    }


def _in_views(
    cols: dict, session: str, known: np.ndarray, file: Path, q: Quarantine, what: str
) -> dict:
    """The rows of sessions the views have; the others dropped, counted and named."""
    inside = np.isin(cols[session], known)
    where = line_of(file, cols)
    dropped = np.flatnonzero(~inside)
    examples = (f"{where(int(i))}: a {what} in a session without views" for i in dropped)
    q.drop(f"{what}_outside_views", len(dropped), examples)
    return {k: v[inside] for k, v in cols.items()}


def _purchases(file: Path, q: Quarantine, options: LoadOptions, known) -> tuple[dict, int]:
    """``train-purchases.csv``: one row per purchased item, times as the views'."""
    fmt = CsvFormat(
        ";",
        (
            Column("sessionId", "int"),
            Column("userId", "int", nullable=True),
            Column("timeframe", "int"),
            Column("eventdate", "time", time_format="%Y-%m-%d"),
            Column("ordernumber", "int"),
            Column("itemId", "int"),
        ),
        null_values=("", "NA"),
    )
    cols = read_csv(file, fmt, q, options.max_rows)
    rows_read = len(cols["sessionId"])
    # The release records purchases up to 153 days into their session (1,206 of 18,025 after
    # more than a week): kept as they are, within a year.
    ok = check_times(cols["timeframe"] / 1000.0, q, line_of(file, cols), 0.0, 86400.0 * 366)
    cols = {k: v[ok] for k, v in cols.items()}
    keys = ["sessionId", "itemId", "timeframe", "ordernumber"]
    cols = drop_duplicates(cols, keys, q, line_of(file, cols))
    cols = _in_views(cols, "sessionId", known, file, q, "purchase")
    n = len(cols["sessionId"])
    part = _rows(
        cols["sessionId"],
        cols["userId"],
        cols["itemId"],
        cols["timeframe"],
        cols["eventdate"],
        EventType.PURCHASE,
        n,
    )
    return part, rows_read


def _queries(file: Path, q: Quarantine, options: LoadOptions, known) -> tuple[dict, int]:
    """``train-queries.csv``: each query a search event (at its ``timeframe``) carrying its
    hashed words (``searchstring.tokens``; none for a category browse, whose ``categoryId``
    becomes the event's category)."""
    table = _side_table(file, QUERY_COLUMNS, options.max_rows)
    cols = {
        "sessionId": _ints(table, "sessionId", file),
        "userId": _ints(table, "userId", file, missing=True),
        "timeframe": _ints(table, "timeframe", file),
        "categoryId": _ints(table, "categoryId", file, missing=True),
        "eventdate": parse_times(table["eventdate"], "%Y-%m-%d"),
        LINE: np.arange(2, table.num_rows + 2),
    }
    lengths, tokens = token_lists(table["searchstring.tokens"], file)
    cols["_row"] = np.arange(table.num_rows)
    cols = _in_views(cols, "sessionId", known, file, q, "query")
    kept = cols["_row"]
    n = len(kept)
    part = _rows(
        cols["sessionId"],
        cols["userId"],
        np.full(n, MISSING_ID, dtype=np.int64),
        cols["timeframe"],
        cols["eventdate"],
        EventType.SEARCH,
        n,
        category=cols["categoryId"],
        query=np.arange(n, dtype=np.int64),
    )
    part["_tokens"] = _take_lists(lengths, tokens, kept)
    return part, table.num_rows


QUERY_COLUMNS = (
    "sessionId",
    "userId",
    "timeframe",
    "eventdate",
    "searchstring.tokens",
    "categoryId",
)
PRODUCT_COLUMNS = ("itemId", "pricelog2", "product.name.tokens")


def _products(file: Path) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """``products.csv``: item ids (sorted), prices (``2 ** pricelog2 - 1``: the file keeps
    log2 price buckets) and each name's hashed words."""
    table = _side_table(file, PRODUCT_COLUMNS, None)
    item = _ints(table, "itemId", file)
    order = np.argsort(item, kind="stable")
    log2 = table["pricelog2"].to_numpy(zero_copy_only=False).astype(np.float64)
    lengths, tokens = token_lists(table["product.name.tokens"], file)
    price = (2.0 ** log2[order] - 1.0).astype(np.float32)
    return item[order], price, _take_lists(lengths, tokens, order)


def _take_lists(
    lengths: np.ndarray, tokens: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The token lists ``rows`` (of lists of ``lengths`` back to back), in that order."""
    starts = np.concatenate(([0], np.cumsum(lengths)))[rows]
    kept = lengths[rows]
    return kept, tokens[np.repeat(starts, kept) + ragged_arange(kept)]


def _shared_vocabulary(
    *lists: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[TokenLists | None, ...]:
    """Token lists over one dense vocabulary: queries and product names hash their words
    alike, so the same word is the same id in both."""
    present = [t for _, t in (x for x in lists if x is not None)]
    if not present:
        return tuple(None for _ in lists)
    words, dense = np.unique(np.concatenate(present), return_inverse=True)
    out: list[TokenLists | None] = []
    at = 0
    for x in lists:
        if x is None:
            out.append(None)
            continue
        lengths, tokens = x
        ids = dense[at : at + len(tokens)]
        at += len(tokens)
        out.append(TokenLists(np.concatenate(([0], np.cumsum(lengths))), ids, max(len(words), 1)))
    return tuple(out)


def _prices(items: ItemAttributes, item_ids: np.ndarray) -> np.ndarray:
    row = items.lookup(item_ids)
    return np.where(row >= 0, items.price[np.maximum(row, 0)], np.nan).astype(np.float32)


def _side_table(file: Path, columns: tuple[str, ...], max_rows: int | None):
    """A ``;``-separated side file's columns as text, or one line naming what is wrong."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        with open_binary(file) as f:
            table = pacsv.read_csv(
                f,
                parse_options=pacsv.ParseOptions(delimiter=";"),
                convert_options=pacsv.ConvertOptions(
                    include_columns=list(columns),
                    column_types=dict.fromkeys(columns, pa.string()),
                    strings_can_be_null=False,
                ),
            )
    except (pa.ArrowInvalid, KeyError) as err:
        raise DataFileError(
            f"{file}: not a Diginetica file with columns {list(columns)} ({err})"
        ) from err
    return table.slice(0, max_rows) if max_rows is not None else table


def _ints(table, name: str, file: Path, missing: bool = False) -> np.ndarray:
    """An integer column of a side file (``NA`` or empty is ``MISSING_ID`` where allowed)."""
    text = table[name].to_numpy(zero_copy_only=False).astype(str)
    blank = np.isin(text, ["", "NA"])
    if blank.any() and not missing:
        row = int(np.flatnonzero(blank)[0]) + 2
        raise DataFileError(f"{file}:{row}: column {name!r} is empty")
    try:
        return np.where(blank, MISSING_ID, np.where(blank, "0", text).astype(np.int64))
    except ValueError as err:
        raise DataFileError(
            f"{file}: column {name!r} holds a value that is not an integer"
        ) from err


def token_lists(column, file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Comma-separated integer word ids per row: (n,) lengths and the ids back to back."""
    import pyarrow.compute as pc

    lists = pc.split_pattern(column, ",")
    flat = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(str)
    owner = np.repeat(np.arange(len(column)), pc.list_value_length(lists).to_numpy())
    word = flat != ""
    try:
        tokens = flat[word].astype(np.int64)
    except ValueError as err:
        raise DataFileError(f"{file}: a token list holds a word id that is not an integer") from err
    return np.bincount(owner[word], minlength=len(column)), tokens


def _categories(folder: Path, items: np.ndarray) -> np.ndarray | None:
    file = as_downloaded(folder / CATEGORIES)
    if not file.is_file():
        return None
    fmt = CsvFormat(";", (Column("itemId", "int"), Column("categoryId", "int")))
    table = read_csv(file, fmt, Quarantine(strict=True))
    return lookup(table["itemId"], table["categoryId"], items)
