"""Every public dataset's loader by its config name (``dataset=<name>``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from datasets.loaders import (
    diginetica,
    jd_micro,
    otto,
    retailrocket,
    table,
    talkingdata,
    web_bots,
    yoochoose,
)
from datasets.loaders.common import LoadOptions
from datasets.schema import Dataset

LOADERS: dict[str, Callable[[Path, LoadOptions], Dataset]] = {
    "diginetica": diginetica.load,
    "yoochoose": yoochoose.load,
    "retailrocket": retailrocket.load,
    # public datasets expressed as mappings (conf/dataset/<name>.yaml) over the event-table reader
    "taobao": table.mapped("taobao"),
    "rees46": table.mapped("rees46"),
    "otto": otto.load,
    "jd_micro": jd_micro.load,
    "web_bots": web_bots.load,
    "talkingdata": talkingdata.load,
    "events": table.load,  # the user's own table, mapped in dataset.table
}
