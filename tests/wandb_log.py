"""Read back what an offline W&B run wrote: its ``run-<id>.wandb`` transaction log.

The file is a LevelDB-style log (a 7-byte ``:W&B`` header, then 32 KiB blocks of records with a
7-byte header each: CRC, little-endian length, type) whose payloads are ``wandb.proto``
``Record`` messages. Tests parse it so they check what was logged, not that a folder exists.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            out.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            out.append(pending + chunk)
            pending = b""
    return out


def _items(items) -> dict:
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


def read_run(run_dir: Path) -> dict:
    """{"run": Run message, "config": {...}, "history": [{...}], "summary": {...},
    "artifacts": {name: (type, [file, ...])}}."""
    from wandb.proto import wandb_internal_pb2 as pb

    (log_file,) = Path(run_dir).glob("run-*.wandb")
    out: dict = {"run": None, "config": {}, "history": [], "summary": {}, "artifacts": {}}
    for payload in payloads(log_file):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"].update(_items(record.run.config.update))
        elif kind == "config":
            out["config"].update(_items(record.config.update))
        elif kind == "history":
            out["history"].append(_items(record.history.item))
        elif kind == "summary":
            out["summary"].update(_items(record.summary.update))
        elif kind == "artifact":
            art = record.artifact
            out["artifacts"][art.name] = (art.type, sorted(m.path for m in art.manifest.contents))
    return out
