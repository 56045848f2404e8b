"""A run folder's lease: one process at a time runs, skips or cleans a config's folder.

Two sweeps may share a results folder (two terminals, two cluster jobs). Each config's folder
holds a ``lease`` file; a process that runs (or inspects, to skip) the config holds an
exclusive lock on it for that time (``benchmark.records.locks``). The kernel drops the lock
when its owner dies, so a killed run's lease is free at once and its ``running`` record is
taken over, while a live one's is respected. Where the lock may not reach (another host on a
file system without shared locks, or none at all), the running record names its owner (host,
pid) and a heartbeat that a live run renews every :data:`HEARTBEAT_SECONDS`: a record whose
owner is on another host with a fresh heartbeat, or on this host with a live pid while locks
are unavailable, counts as leased.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from benchmark.records.locks import Lock, try_lock
from benchmark.records.record import Owner, RunRecord, RunStatus

LEASE_FILE = "lease"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 300.0  # ten missed heartbeats: the owner is gone (or its host is)
log = logging.getLogger("benchmark")


def try_lease(run_dir: Path) -> Lock | None:
    """The folder's lease, or None while another process holds it. Never waits."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return try_lock(run_dir / LEASE_FILE)


def owner() -> Owner:
    """This process as the owner of a running record."""
    return Owner(host=socket.gethostname(), pid=os.getpid(), heartbeat_at=now())


def held_elsewhere(previous: object, lease: Lock) -> str | None:
    """Why a ``running`` record is still a live run's (we hold the folder's lock file, yet
    the owner may be alive where locks do not reach), or None when it is a dead one's."""
    if not isinstance(previous, RunRecord) or previous.status != RunStatus.running:
        return None
    who = previous.owner
    if who is None:
        return None
    if who.host != socket.gethostname():
        age = heartbeat_age(who)
        if age is not None and age < STALE_SECONDS:
            return f"running on {who.host} (pid {who.pid}, heartbeat {age:.0f} s ago)"
        return None
    if not lease.locked and who.pid != os.getpid() and pid_alive(who.pid):
        return f"running in process {who.pid} on this host"
    return None


def holder(running: RunRecord | None) -> str:
    """Who holds a lease, from the folder's running record (written just after the lease
    is taken, so it may not be there yet)."""
    if running is None or running.owner is None or running.status != RunStatus.running:
        return "running in another process"
    who = running.owner
    age = heartbeat_age(who)
    beat = f", heartbeat {age:.0f} s ago" if age is not None else ""
    return f"running in another process (host {who.host}, pid {who.pid}{beat})"


def heartbeat_age(who: Owner) -> float | None:
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(who.heartbeat_at)).total_seconds()
    except (TypeError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OverflowError:
        return False
    return True


@contextlib.contextmanager
def heartbeat(beat: Callable[[str], None], seconds: float | None = None) -> Iterator[None]:
    """Call ``beat(now)`` every ``seconds`` on a daemon thread while the block runs; the
    thread has stopped when the block exits (so the run's final write comes after the
    last beat). A failing beat (full disk) is a warning: the run itself goes on."""
    interval = HEARTBEAT_SECONDS if seconds is None else seconds
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                beat(now())
            except OSError as err:
                log.warning("could not renew the run's heartbeat (%s)", err)

    thread = threading.Thread(target=loop, name="lease-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def now() -> str:
    """UTC now, to the second: the times of run records and heartbeats."""
    return datetime.now(UTC).isoformat(timespec="seconds")
