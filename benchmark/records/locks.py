"""Advisory file locks (``flock``): one process at a time in a run folder or a report folder.

The kernel drops a lock when its owner dies, so a killed process never leaves a folder locked.
Linux carries ``flock`` across NFS (as a POSIX lock); where a file system has no locks at all,
:func:`try_lock` says so (``Lock.locked`` False) and callers fall back to what they can check
otherwise. Lock files are never deleted: deleting one while another process waits on it would
let two processes each hold "the" lock, on two different files.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import ResultsWriteError

_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
WRITER_LOCK = ".writer.lock"
WAIT_SECONDS = 600.0  # for another report writer: building a report takes seconds to minutes
log = logging.getLogger("benchmark")


@dataclass
class Lock:
    """An open lock file; ``locked`` is False where the file system has no locks."""

    fd: int
    locked: bool

    def release(self) -> None:
        os.close(self.fd)  # closing the last descriptor drops the flock


def try_lock(path: Path) -> Lock | None:
    """An exclusive lock on ``path`` (created if missing), or None while another process (or
    another open file of this one) holds it. Never waits."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as err:
        if err.errno not in _NO_LOCKS:
            os.close(fd)
            raise
        log.debug("no file locks for %s (%s)", path, err)
        return Lock(fd, locked=False)
    return Lock(fd, locked=True)


@contextmanager
def sole_writer(folder: Path, wait: float | None = None) -> Iterator[None]:
    """Write ``folder``'s files as its only writer: wait (up to ``wait`` seconds) for another
    process writing there, then remove the temporary files (``.<name>.*``, see
    ``benchmark.records.atomic``) that an earlier, killed writer left in it or below it."""
    folder.mkdir(parents=True, exist_ok=True)
    patience = WAIT_SECONDS if wait is None else wait
    deadline = time.monotonic() + patience
    while (lock := try_lock(folder / WRITER_LOCK)) is None:
        if time.monotonic() > deadline:
            raise ResultsWriteError(
                f"another process has been writing {folder} for over {patience:.0f} s: "
                "let it finish, then rerun"
            )
        time.sleep(0.2)
    try:
        if lock.locked:
            remove_temporaries(folder, recursive=True)
        yield
    finally:
        lock.release()


def remove_temporaries(folder: Path, recursive: bool = False) -> int:
    """Remove temporary files (``.<name>.*``) of atomic writes in ``folder``; call it only
    while holding the folder's lock (then they are a dead writer's). Returns how many."""
    pattern = "**/.*" if recursive else ".*"
    removed = 0
    for path in folder.glob(pattern):
        if path.is_file() and not path.name.endswith(".lock"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
