"""TalkingData AdTracking (Kaggle 2018): ad clicks with ``is_attributed``.

``,``-separated with a header: ``ip,app,device,os,channel,click_time,attributed_time,
is_attributed``; times ``YYYY-MM-DD HH:MM:SS`` UTC; ``attributed_time`` empty unless the click led
to an app download. There are no sessions: the entity is (ip, device, os), as in the
competition's feature work, and its clicks are cut into sessions at inactivity gaps by the
config (``dataset.sequence.session_by=gap``). Each row is a click on the advertised app (the
item; the channel is the category); a download adds a purchase event at ``attributed_time``.
``is_attributed`` is a proxy, not a fraud label (most clicks without a download are ordinary):
by default anomalies are injected as for other datasets; ``dataset.proxy_labels=true`` (with
``anomaly=none``) evaluates against the proxy instead, an entity that never downloaded being
anomalous. Encoded ips are shared by many users behind carrier gateways.
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
    concat_columns,
    events_table,
    line_of,
    read_csv,
    reject_rows,
    require_file,
    sorted_without_repeats,
    source_report,
)
from datasets.schema import Dataset, EventType, SessionLabels

FETCH = "download train.csv from Kaggle (python -m datasets.fetch talkingdata says where)"
TIME = "%Y-%m-%d %H:%M:%S"
FORMAT = CsvFormat(
    ",",
    (
        Column("ip", "int"),
        Column("app", "int"),
        Column("device", "int"),
        Column("os", "int"),
        Column("channel", "int"),
        Column("click_time", "time", time_format=TIME),
        Column("attributed_time", "time", nullable=True, time_format=TIME),
        Column("is_attributed", "int"),
    ),
)
FIELD_BITS = 16  # device and os ids each fit in 16 bits of the entity key


def load(path: Path, options: LoadOptions) -> Dataset:
    path = Path(path)
    file = require_file(
        as_downloaded(path / "train.csv") if path.is_dir() else path, "TalkingData train.csv", FETCH
    )
    q = Quarantine(options.strict)
    cols = read_csv(file, FORMAT, q, options.max_rows)
    rows = len(cols["ip"])
    where = line_of(file, cols)
    ok = check_times(cols["click_time"], q, where)
    too_big = (cols["device"] >= 1 << FIELD_BITS) | (cols["os"] >= 1 << FIELD_BITS)
    reject_rows(
        too_big & ok,
        q,
        lambda i, d=cols["device"], o=cols["os"]: (
            where(i),
            f"device {d[i]} or os {o[i]} >= 65536",
        ),
        "bad_value",
    )
    ok &= ~too_big
    entity = (cols["ip"] << 2 * FIELD_BITS) | (cols["device"] << FIELD_BITS) | cols["os"]
    clicks = {
        "entity": entity[ok],
        "time": cols["click_time"][ok],
        "type": np.full(int(ok.sum()), EventType.CLICK, dtype=np.int8),
        "item": cols["app"][ok],
        "category": cols["channel"][ok],
    }
    downloaded = ok & (cols["is_attributed"] == 1) & np.isfinite(cols["attributed_time"])
    installs = {
        "entity": entity[downloaded],
        "time": cols["attributed_time"][downloaded],
        "type": np.full(int(downloaded.sum()), EventType.PURCHASE, dtype=np.int8),
        "item": cols["app"][downloaded],
        "category": cols["channel"][downloaded],
    }
    del cols
    keys = ["entity", "time", "type", "item", "category"]
    events = sorted_without_repeats(concat_columns([clicks, installs]), "entity", "time", keys, q)
    table = events_table(
        session_id=events["entity"],  # sessionised by gap downstream
        timestamp=events["time"],
        event_type=events["type"],
        item_id=events["item"],
        user_id=events["entity"],
        category_id=events["category"],
    )
    labels = _no_download_labels(table) if options.proxy_labels else None
    report = source_report(
        [file],
        rows,
        q,
        downloads=int(downloaded.sum()),
        entity="(ip, device, os)",
        labels=labels.counts() if labels is not None else None,
    )
    return Dataset("talkingdata", table, source=report, session_labels=labels)


def _no_download_labels(events) -> SessionLabels:
    """The weak proxy: an entity that never downloaded is anomalous ("no_download"). Most
    such entities are ordinary users; click farms are among them."""
    entities, inverse = np.unique(events.user_id, return_inverse=True)
    downloads = np.zeros(len(entities), dtype=np.int64)
    np.add.at(downloads, inverse, events.event_type == EventType.PURCHASE)
    return SessionLabels(
        session_id=entities,
        label_code=np.where(downloads > 0, -1, 0).astype(np.int8),
        class_names=("no_download",),
        by_user=True,
    )
