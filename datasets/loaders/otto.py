"""OTTO session-based recommendation data (Kaggle / GitHub ``otto-group/recsys-dataset``).

JSON Lines, one session per line: ``{"session": int, "events": [{"aid": int, "ts": int, "type":
"clicks"|"carts"|"orders"}, ...]}``. ``ts`` is in milliseconds in the official files and in
seconds in some re-releases: ``dataset.timestamp_unit=auto`` decides per file from the first
timestamps (values above 1e11 are milliseconds), or set ``s``/``ms``. An OTTO session is a
user's history over four weeks, not a 30-minute visit: ``dataset.sequence.session_by=gap``
splits it. The full train file (12.9M sessions, 216M events) streams line by line: memory holds
the output columns and one chunk of parsed lines.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import numpy as np

from datasets.loaders.common import (
    EXACT_CHUNK_ROWS,
    DataFileError,
    Interner,
    LoadOptions,
    Quarantine,
    as_downloaded,
    drop_duplicates,
    events_table,
    glob_data,
    open_binary,
    require_file,
    source_report,
    valid_events,
    valid_id,
)
from datasets.schema import Dataset

FETCH = "download OTTO's train.jsonl (python -m datasets.fetch otto says where)"
TYPES = {"clicks": "click", "carts": "add_to_cart", "orders": "purchase"}
MS_THRESHOLD = 1e11  # epoch seconds pass 1e11 in the year 5138; epoch ms did in 1973


def jsonl_file(path: Path) -> Path:
    if path.is_dir():
        found = glob_data(path, "*.jsonl")
        path = found[0] if found else as_downloaded(path / "train.jsonl")
    return require_file(path, "OTTO sessions (.jsonl)", FETCH)


def load(path: Path, options: LoadOptions) -> Dataset:
    file = jsonl_file(Path(path))
    q = Quarantine(options.strict)
    parts: list = []
    lines: dict[str, list] = {"session": [], "line": [], "aid": [], "ts": [], "type": []}
    n_lines = 0
    with open_binary(file) as f:
        for line_no, raw in enumerate(f, start=1):
            if options.max_rows is not None and n_lines >= options.max_rows:
                break
            n_lines += 1
            _parse(raw, line_no, file, q, lines)
            if len(lines["ts"]) >= EXACT_CHUNK_ROWS:
                parts.append(_flush(lines))
    parts.append(_flush(lines))
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    unit = _unit(cols["ts"], options.timestamp_unit)
    seconds = cols["ts"] / (1000.0 if unit == "ms" else 1.0)
    where = lambda i: f"{file}:{cols['line'][i]}"  # noqa: E731
    types = Interner()
    codes, keep = valid_events(seconds, types.encode(cols["type"]), types, TYPES, options, q, where)
    cols = drop_duplicates(
        {
            "session": cols["session"][keep],
            "time": seconds[keep],
            "type": codes[keep],
            "item": cols["aid"][keep],
        },
        ["session", "time", "type", "item"],
        q,
    )
    events = events_table(cols["session"], cols["time"], cols["type"], cols["item"])
    report = source_report([file], n_lines, q, sessions_read=n_lines, timestamp_unit=unit)
    return Dataset("otto", events.sorted(), source=report)


def _parse(raw: bytes, line_no: int, file: Path, q: Quarantine, out: dict) -> None:
    where = f"{file}:{line_no}"
    if not raw.strip():
        return
    try:
        session = json.loads(raw.removeprefix(codecs.BOM_UTF8) if line_no == 1 else raw)
        sid, events = int(session["session"]), session["events"]
        rows = [(int(e["aid"]), int(e["ts"]), str(e["type"])) for e in events]
        named = [("session", sid)] + [
            (k, v) for aid, ts, _ in rows for k, v in (("aid", aid), ("ts", ts))
        ]
        bad = next(((k, v) for k, v in named if not valid_id(v)), None)
        if bad is not None:
            raise ValueError(f"{bad[0]} {bad[1]} is negative or beyond int64")
    except UnicodeDecodeError:
        q.reject(where, "bytes that are not UTF-8", "not_utf8")
        return
    except (ValueError, KeyError, TypeError) as err:
        q.reject(
            where, f"not an OTTO session object ({type(err).__name__}: {err})"[:160], "bad_line"
        )
        return
    for aid, ts, kind in rows:
        out["session"].append(sid)
        out["line"].append(line_no)
        out["aid"].append(aid)
        out["ts"].append(ts)
        out["type"].append(kind)


def _flush(lines: dict) -> dict:
    out = {
        "session": np.array(lines["session"], dtype=np.int64),
        "line": np.array(lines["line"], dtype=np.int64),
        "aid": np.array(lines["aid"], dtype=np.int64),
        "ts": np.array(lines["ts"], dtype=np.float64),
        "type": np.array(lines["type"], dtype=object),
    }
    for v in lines.values():
        v.clear()
    return out


def _unit(ts: np.ndarray, configured: str) -> str:
    if configured in ("s", "ms"):
        return configured
    if configured != "auto":
        raise DataFileError(f"dataset.timestamp_unit={configured!r}: use 'auto', 's' or 'ms'")
    return "ms" if len(ts) and np.median(ts[:1000]) > MS_THRESHOLD else "s"
