"""JD micro-behaviour sessions (Gu et al., "Hierarchical User Profiling for E-commerce
Recommender Systems", WSDM 2020; files such as ``JD_Computers.txt``).

One session per line; micro-behaviours separated by spaces, each ``sku+type+category+
time_interval+dwell_time`` (five integers joined by ``+``). No header, no user or session ids
(the line is the session) and no absolute time: ``time_interval`` is the gap in seconds to the
*next* micro-behaviour, so event times are cumulative sums from 0 at each session's start (the
last token's interval points outside the data and is ignored). ``dwell_time`` becomes the
schema's ``dwell``. Behaviour types: 1-5 arrive on a product page (home, category list, sale,
cart, search list: views), 6-8 act on the detail page (comments, specification, scroll to
bottom: clicks), 9 adds to cart, 10 orders. A folder as ``dataset.path`` reads every ``*.txt``
in it (and the upstream files without extension); each file's sessions get ids of their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.loaders.common import (
    EXACT_CHUNK_ROWS,
    DataFileError,
    LoadOptions,
    Quarantine,
    concat_columns,
    drop_duplicates,
    events_table,
    open_binary,
    require_file,
    source_report,
    valid_id,
)
from datasets.schema import Dataset, EventType

FETCH = "get the JD micro-behaviour files (python -m datasets.fetch jd_micro says where)"
TYPES = np.array(
    [-1]
    + [EventType.VIEW] * 5
    + [EventType.CLICK] * 3
    + [EventType.ADD_TO_CART, EventType.PURCHASE],
    dtype=np.int8,
)
SESSIONS_PER_FILE = 1 << 40  # session id = file index * this + line number


def files_of(path: Path) -> list[Path]:
    """A file, or every session file of a folder: ``*.txt`` and the upstream files, which have
    no extension (``JD_Computers``); other files (``SOURCE.md``, hidden ones) are left out."""
    if path.is_dir():
        found = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix in ("", ".txt") and not p.name.startswith(".")
        )
        if found:
            return found
        path = path / "JD_Computers"
    return [require_file(path, "JD micro-behaviour sessions", FETCH)]


def load(path: Path, options: LoadOptions) -> Dataset:
    files = files_of(Path(path))
    q = Quarantine(options.strict)
    parts, lines_read = [], 0
    for index, file in enumerate(files):
        for part in _read(file, index, q, options):
            lines_read += int(part.pop("_lines"))
            parts.append(part)
    if not parts:
        raise DataFileError(f"{path}: no sessions in the JD micro-behaviour file(s)")
    cols = drop_duplicates(concat_columns(parts), ["session", "time", "type", "item"], q)
    n = len(cols["session"])
    events = events_table(
        session_id=cols["session"],
        timestamp=cols["time"],
        event_type=cols["type"],
        item_id=cols["item"],
        category_id=cols["category"],
    ).with_columns(dwell=cols["dwell"].astype(np.float32), device=None)
    report = source_report(files, lines_read, q, time_origin="each session starts at 0 s")
    return Dataset("jd_micro", events.sorted() if n else events, source=report)


def _read(file: Path, index: int, q: Quarantine, options: LoadOptions):
    """Blocks of parsed sessions; a malformed token rejects its whole line (session)."""
    rows: list[list[int]] = []
    sessions: list[int] = []
    lines = 0
    with open_binary(file) as f:
        for line_no, raw in enumerate(f, start=1):
            if options.max_rows is not None and lines >= options.max_rows:
                break
            lines += 1
            parsed = _parse(raw, f"{file}:{line_no}", q)
            if parsed:
                rows.extend(parsed)
                sessions.extend([index * SESSIONS_PER_FILE + line_no] * len(parsed))
            if len(rows) >= EXACT_CHUNK_ROWS:
                yield _block(rows, sessions, lines)
                rows, sessions, lines = [], [], 0
    if rows or lines:
        yield _block(rows, sessions, lines)


def _parse(raw: bytes, where: str, q: Quarantine) -> list[list[int]] | None:
    try:
        tokens = raw.decode("ascii").split()
    except UnicodeDecodeError:
        q.reject(where, "bytes that are not ASCII", "not_utf8")
        return None
    out = []
    for k, token in enumerate(tokens, start=1):
        fields = token.split("+")
        try:
            values = [int(v) for v in fields]
        except ValueError:
            values = []
        if len(values) != 5 or not 1 <= values[1] <= 10 or not all(map(valid_id, values)):
            q.reject(
                where,
                f"token {k} {token[:40]!r} is not sku+type(1-10)+category+interval+dwell",
                "bad_token",
            )
            return None
        out.append(values)
    return out


def _block(rows: list[list[int]], sessions: list[int], lines: int) -> dict:
    a = np.array(rows, dtype=np.int64).reshape(-1, 5)
    session = np.array(sessions, dtype=np.int64)
    gap = a[:, 3].astype(np.float64)
    start = np.r_[True, session[1:] != session[:-1]] if len(session) else np.zeros(0, bool)
    # time of event k = sum of the gaps of events before it within its session
    before = np.cumsum(gap) - gap
    time = before - np.maximum.accumulate(np.where(start, before, 0.0)) if len(gap) else gap
    return {
        "session": session,
        "time": time,
        "type": TYPES[a[:, 1]],
        "item": a[:, 0],
        "category": a[:, 2],
        "dwell": a[:, 4].astype(np.float64),
        "_lines": np.int64(lines),
    }
