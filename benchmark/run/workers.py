"""Files between the data stage and its worker processes (``partition_worker``).

Pickle is the transport, as in ``multiprocessing``; the only files read here are the ones the
parent and its workers wrote into the data stage's own private temporary folder (created 0700
for this run), never a user's file or a download.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from benchmark.records.atomic import atomic_path


def write_task(folder: Path, index: int, task: tuple) -> None:
    _write(folder / f"task-{index}.pickle", pickle.dumps(task, pickle.HIGHEST_PROTOCOL))


def read_task(folder: Path, index: int) -> tuple:
    path = folder / f"task-{index}.pickle"
    task = pickle.loads(path.read_bytes())
    path.unlink()
    return task


def write_result(folder: Path, index: int, result: Any) -> None:
    _write(folder / f"result-{index}.pickle", pickle.dumps(("ok", result), pickle.HIGHEST_PROTOCOL))


def write_error(folder: Path, index: int, error: Exception) -> None:
    try:
        payload = pickle.dumps(("error", error))
    except Exception:  # an exception that does not pickle travels as its message
        payload = pickle.dumps(("error", RuntimeError(f"{type(error).__name__}: {error}")))
    _write(folder / f"result-{index}.pickle", payload)


def worker_result(folder: Path, index: int, returncode: int) -> Any:
    """What worker ``index`` prepared; its error raised here; a worker that died without a
    result (killed, out of memory) is one line naming the fix."""
    path = folder / f"result-{index}.pickle"
    if not path.exists():
        raise MemoryError(
            f"a data-stage worker died (exit code {returncode}) before it finished its "
            "partition: lower dataset.memory_gb or dataset.workers"
        )
    status, value = pickle.loads(path.read_bytes())
    path.unlink()
    if status == "error":
        raise value
    return value


def _write(path: Path, payload: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
