"""Loaders of the public clickstream datasets into the common schema (one module each).

Each ``load(path, options) -> Dataset`` streams the files a user downloaded (or the sample
shipped under ``datasets/samples/``), validates every row under the ``strict`` rule, and
reports what it read in ``Dataset.source``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from datasets.loaders import (
    diginetica,
    jd_micro,
    otto,
    rees46,
    retailrocket,
    talkingdata,
    taobao,
    web_bots,
    yoochoose,
)
from datasets.loaders.common import DataFileError, LoadOptions
from datasets.schema import Dataset

LOADERS: dict[str, Callable[[Path, LoadOptions], Dataset]] = {
    "diginetica": diginetica.load,
    "yoochoose": yoochoose.load,
    "retailrocket": retailrocket.load,
    "taobao": taobao.load,
    "rees46": rees46.load,
    "otto": otto.load,
    "jd_micro": jd_micro.load,
    "web_bots": web_bots.load,
    "talkingdata": talkingdata.load,
}

__all__ = ["LOADERS", "DataFileError", "LoadOptions"]
