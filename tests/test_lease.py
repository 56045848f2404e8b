"""Run-folder leases: a config that a live process is running is left alone (not rerun, its
temporary files untouched); a dead process's lease is taken over; the running record names
its owner and renews a heartbeat."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmark.records import locks
from benchmark.records.record import Owner, RunStatus
from benchmark.records.record import dumps as record_json
from benchmark.records.store import records, store_path
from benchmark.run import experiment as run_module
from benchmark.run import lease as lease_module
from benchmark.run.experiment import ELSEWHERE, RECORD_FILE, run
from benchmark.run.lease import LEASE_FILE, heartbeat, try_lease


@pytest.fixture
def smoke(compose_config, tmp_path):
    def _smoke(*overrides: str):
        return compose_config(
            ["experiment=smoke", f"results_dir={tmp_path}", "model=random", *overrides]
        )

    return _smoke


def paused_in_data_phase(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """(entered, go): the next run signals ``entered`` in its data phase, then waits for ``go``."""
    entered, go = threading.Event(), threading.Event()
    real = run_module.prepare_data

    def gated(*args, **kwargs):
        if not entered.is_set():
            entered.set()
            assert go.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "prepare_data", gated)
    return entered, go


def test_a_config_another_run_holds_is_left_alone_then_skipped_once_it_ends(smoke, monkeypatch):
    """A forced race: the same config started while a first run of it is in its data phase."""
    entered, go = paused_in_data_phase(monkeypatch)
    results = {}
    first = threading.Thread(target=lambda: results.update(first=run(smoke())))
    first.start()
    assert entered.wait(60)
    run_dir = next(Path(smoke().results_dir).glob("smoke/*"))
    in_flight = run_dir / ".record.json.in-flight"  # as the first run's atomic write leaves it
    in_flight.write_text("{")

    second = run(smoke())
    assert second.status == ELSEWHERE
    assert second.record is None
    reason = second.decision.reason
    assert f"pid {os.getpid()}" in reason
    assert "rerun the same command" in reason
    assert in_flight.exists(), "a live run's temporary file was deleted"
    assert json.loads((run_dir / RECORD_FILE).read_text())["status"] == "running"

    go.set()
    first.join(60)
    assert results["first"].status == "ok"
    third = run(smoke())
    assert third.status == "skipped"
    assert third.record.attempt_id == results["first"].record.attempt_id
    assert not in_flight.exists(), "an ended attempt's temporary file stays"
    assert [r.status for r in records(store_path(smoke().results_dir), latest_only=False)] == ["ok"]


def test_the_running_record_names_its_owner(smoke, monkeypatch):
    entered, go = paused_in_data_phase(monkeypatch)
    thread = threading.Thread(target=lambda: run(smoke()))
    thread.start()
    assert entered.wait(60)
    run_dir = next(Path(smoke().results_dir).glob("smoke/*"))
    owner = json.loads((run_dir / RECORD_FILE).read_text())["owner"]
    go.set()
    thread.join(60)
    assert owner["pid"] == os.getpid()
    assert owner["host"] == lease_module.socket.gethostname()
    assert (run_dir / LEASE_FILE).exists()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def left_running(smoke, owner: Owner) -> Path:
    """A run folder whose record says ``running`` under ``owner``, its lease not held."""
    done = run(smoke())
    running = replace(done.record, status=RunStatus.running, finished_at=None, owner=owner)
    (done.run_dir / RECORD_FILE).write_text(record_json(running))
    return done.run_dir


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="seconds")


def test_a_killed_runs_lease_is_taken_over(smoke):
    host = lease_module.socket.gethostname()
    left_running(smoke, Owner(host, dead_pid(), ago(5)))
    again = run(smoke())
    assert again.status == "ok"
    assert again.decision.action == "rerun"
    assert "never ended" in again.decision.reason


@pytest.mark.parametrize(("age", "status"), [(5, ELSEWHERE), (3600, "ok")])
def test_a_run_on_another_host_counts_while_its_heartbeat_is_fresh(smoke, age, status):
    """Where the lock does not reach another host, the heartbeat decides."""
    left_running(smoke, Owner("another-host", 4242, ago(age)))
    again = run(smoke())
    assert again.status == status
    if status == ELSEWHERE:
        assert "running on another-host (pid 4242, heartbeat" in again.decision.reason


def test_without_file_locks_a_live_pid_on_this_host_holds_the_config(smoke, monkeypatch):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        left_running(smoke, Owner(lease_module.socket.gethostname(), live.pid, ago(1)))

        def no_locks(fd, flags):
            raise OSError(errno.ENOLCK, "No locks available")

        monkeypatch.setattr(locks.fcntl, "flock", no_locks)
        assert run(smoke()).status == ELSEWHERE
    finally:
        live.kill()
        live.wait()
    assert run(smoke()).status == "ok"  # its owner has gone: taken over


def test_the_lease_is_exclusive_across_open_files_and_free_once_released(tmp_path):
    held = try_lease(tmp_path)
    assert held is not None
    assert held.locked
    assert try_lease(tmp_path) is None  # flock is per open file: a second open is refused
    held.release()
    again = try_lease(tmp_path)
    assert again is not None
    again.release()


def test_the_heartbeat_beats_until_the_block_ends():
    beats: list[str] = []
    with heartbeat(beats.append, seconds=0.01):
        deadline = time.monotonic() + 10
        while len(beats) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    count = len(beats)
    time.sleep(0.05)
    assert count >= 3
    assert len(beats) == count, "a beat after the block ended"
    assert all(datetime.fromisoformat(b) for b in beats)


def test_a_run_renews_the_heartbeat_of_its_running_record(smoke, monkeypatch):
    monkeypatch.setattr(lease_module, "HEARTBEAT_SECONDS", 0.05)
    entered, go = paused_in_data_phase(monkeypatch)
    thread = threading.Thread(target=lambda: run(smoke()))
    thread.start()
    assert entered.wait(60)
    run_dir = next(Path(smoke().results_dir).glob("smoke/*"))
    first = (run_dir / RECORD_FILE).stat().st_mtime_ns
    deadline = time.monotonic() + 10
    while (run_dir / RECORD_FILE).stat().st_mtime_ns == first and time.monotonic() < deadline:
        time.sleep(0.02)
    beaten = json.loads((run_dir / RECORD_FILE).read_text())
    go.set()
    thread.join(60)
    assert (run_dir / RECORD_FILE).stat().st_mtime_ns != first, "no heartbeat written"
    assert beaten["status"] == "running"
    assert beaten["owner"]["pid"] == os.getpid()
    assert json.loads((run_dir / RECORD_FILE).read_text())["status"] == "ok"
