"""Web Bot Detection dataset (Iliou et al., 2021), phase 1: web server logs whose sessions are
labelled human / moderate_bot / advanced_bot. The one public, session-labelled, request-level
bot dataset; not e-commerce (a research server hosting Wikipedia pages).

``*.log`` files hold Apache "combined"-like lines with the PHP session id before the user agent::

    - - [30/Oct/2019:12:57:36 +0000] "GET /css/main.css HTTP/1.1" 200 764 "https://..." <sid> "<UA>"

and ``labels.csv`` maps ``session_id`` to ``label``. Each request becomes an event: GET a view,
POST a click (most POSTs are the site's mouse-telemetry uploads); the item is the path (query
string dropped), the category its first segment.

**Leak guard.** In this dataset the user agent and the recording day separate the classes on
their own (every human used one browser build, every bot another; humans, moderate and advanced
bots were recorded on different days). So the user agent is parsed and discarded, and each
session's times are shifted to start at 0 s: only order and gaps remain. Labels: humans are
normal, ``moderate_bot`` and ``advanced_bot`` are the anomaly types (per-type ROC-AUC reports
each). Use it with ``anomaly=none``: the ground truth is real, nothing is injected.
"""

from __future__ import annotations

import csv
import re
from datetime import datetime
from pathlib import Path

import numpy as np

from datasets.loaders.common import (
    DataFileError,
    Interner,
    LoadOptions,
    Quarantine,
    events_table,
    open_binary,
    per_session_min,
    require_file,
    source_report,
)
from datasets.schema import Dataset, EventType, SessionLabels

FETCH = "get the Web Bot Detection logs (python -m datasets.fetch web_bots says where)"
LINE = re.compile(r'^(\S+) (\S+) \[([^\]]+)\] "([^"]*)" (\d{3}) (\S+) "([^"]*)" (\S+) "([^"]*)"$')
CLASSES = ("moderate_bot", "advanced_bot")  # "human" is normal
LABELS = "labels.csv"


def load(path: Path, options: LoadOptions) -> Dataset:
    folder = Path(path)
    if not folder.is_dir():
        raise DataFileError(f"{folder}: dataset.path must be the folder with *.log and {LABELS}")
    logs = sorted(folder.glob("*.log"))
    if not logs:
        require_file(folder / "humans.log", "Web Bot Detection logs (*.log)", FETCH)
    labels_file = require_file(folder / LABELS, "Web Bot Detection labels.csv", FETCH)
    q = Quarantine(options.strict)
    sessions, paths, sections = Interner(), Interner(), Interner()
    rows: dict[str, list] = {"session": [], "time": [], "type": [], "item": [], "section": []}
    lines_read = 0
    stamps: dict[str, float] = {}
    for log in logs:
        lines_read += _read_log(log, q, options, rows, stamps)
    session = sessions.encode(np.array(rows["session"], dtype=object))
    cols = {
        "session": session,
        "time": np.array(rows["time"], dtype=np.float64),
        "type": np.array(rows["type"], dtype=np.int8),
        "item": paths.encode(np.array(rows["item"], dtype=object)),
        "category": sections.encode(np.array(rows["section"], dtype=object)),
    }
    labels = _labels(labels_file, sessions, q)
    known = np.isin(cols["session"], labels.session_id)
    q.drop("unlabelled_session", int((~known).sum()))
    # No de-duplication: requests repeated within one second are real, separate requests
    # (second resolution), and how often they repeat is part of what tells bots apart.
    cols = {k: v[known] for k, v in cols.items()}
    cols["time"] = _from_session_start(cols["session"], cols["time"])
    events = events_table(
        session_id=cols["session"],
        timestamp=cols["time"],
        event_type=cols["type"],
        item_id=cols["item"],
        category_id=cols["category"],
    )
    report = source_report(
        [*logs, labels_file],
        lines_read,
        q,
        leak_guard="user agent discarded; session times start at 0 s",
        time_origin="each session starts at 0 s (leak guard)",
        sessions_per_label=labels.counts(),
    )
    return Dataset("web_bots", events.sorted(), source=report, session_labels=labels)


def _read_log(log: Path, q: Quarantine, options: LoadOptions, rows: dict, stamps: dict) -> int:
    lines = 0
    with open_binary(log) as f:
        for line_no, raw in enumerate(f, start=1):
            if options.max_rows is not None and lines >= options.max_rows:
                break
            lines += 1
            where = f"{log}:{line_no}"
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                q.reject(where, f"bytes that are not UTF-8 at offset {err.start}", "not_utf8")
                continue
            if not text:
                continue
            match = LINE.match(text)
            if match is None:
                q.reject(where, "not a combined log line with a session id", "bad_line")
                continue
            _, _, stamp, request, _, _, _, session, _user_agent = match.groups()
            seconds = stamps.get(stamp)
            if seconds is None:
                seconds = stamps[stamp] = _seconds(stamp)
            parts = request.split(" ")
            if seconds is None or len(parts) < 2:
                q.reject(where, f"bad time {stamp!r} or request {request[:40]!r}", "bad_value")
                continue
            method, target = parts[0], parts[1].split("?", 1)[0]
            rows["session"].append(session)
            rows["time"].append(seconds)
            rows["type"].append(EventType.CLICK if method == "POST" else EventType.VIEW)
            rows["item"].append(target)
            rows["section"].append(target.strip("/").split("/", 1)[0] or "/")
    return lines


def _seconds(stamp: str) -> float | None:
    try:
        return datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp()
    except ValueError:
        return None


def _labels(file: Path, sessions: Interner, q: Quarantine) -> SessionLabels:
    """Session codes (through the same interner as the events) with their class."""
    ids, codes = [], []
    with open(file, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"session_id", "label"} - set(reader.fieldnames or ())
        if missing:
            raise DataFileError(f"{file}:1: missing column(s) {sorted(missing)}")
        for line_no, row in enumerate(reader, start=2):
            label = row["label"].strip()
            if label != "human" and label not in CLASSES:
                q.reject(f"{file}:{line_no}", f"unknown label {label!r}", "bad_label")
                continue
            sid = row["session_id"].strip()
            if sid not in sessions.codes:
                continue  # annotated but not in the logs given (a sample, or a trimmed log)
            ids.append(sessions.codes[sid])
            codes.append(-1 if label == "human" else CLASSES.index(label))
    order = np.argsort(ids)
    return SessionLabels(
        session_id=np.array(ids, dtype=np.int64)[order],
        label_code=np.array(codes, dtype=np.int8)[order],
        class_names=CLASSES,
    )


def _from_session_start(session: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Times relative to each session's first request (the leak guard on absolute dates)."""
    return time - per_session_min(session, time)
