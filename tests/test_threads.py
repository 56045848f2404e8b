"""Threads: chosen so that jobs do not oversubscribe the CPUs, applied, recorded, not in the id."""

from dataclasses import replace

import pytest

from benchmark.records.identity import NOISE_KEYS, run_id
from benchmark.run import threads
from benchmark.run.data import prepare_data
from benchmark.run.experiment import plain_dict
from benchmark.run.threads import launcher_threads, resolve_threads

from .conftest import compose_typed, detector_spec


def test_an_explicit_count_wins_then_omp_num_threads_then_the_cpus(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads(5) == (5, "threads=5")
    assert resolve_threads(0) == (3, "OMP_NUM_THREADS=3")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    assert resolve_threads(0) == (8, "8 CPUs available to this process")
    assert resolve_threads(0, jobs_side_by_side=3) == (2, "8 CPUs shared by 3 jobs at a time")
    assert resolve_threads(0, jobs_side_by_side=16)[0] == 1


def test_parallel_launchers_imply_threads_per_job(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    assert launcher_threads({"cpus_per_task": 4}) == 4  # submitit
    assert launcher_threads({"ray": {"remote": {"num_cpus": 2}}}) == 2
    assert launcher_threads({"n_jobs": 4}) == 2  # joblib: 8 CPUs among 4 jobs
    assert launcher_threads({"n_jobs": 1}) == 0  # one job at a time: nothing implied
    assert launcher_threads({"ray": {"init": {}}}) == 0


def test_threads_stay_out_of_the_run_id(compose_config):
    base = plain_dict(compose_config(["experiment=smoke"]))
    pinned = plain_dict(compose_config(["experiment=smoke", "threads=1"]))
    assert run_id(base, NOISE_KEYS) == run_id(pinned, NOISE_KEYS)


def test_the_torch_detector_takes_its_thread_count():
    torch = pytest.importorskip("torch")
    from benchmark.detectors.registry import create

    config = compose_typed(["experiment=smoke", "dataset.generator.n_users=200"])
    prepared = prepare_data(config.dataset, config.anomaly, 0)
    before = torch.get_num_threads()
    wanted = 3 if before != 3 else 2
    try:
        create("gru", "torch", replace(detector_spec(config, prepared), threads=wanted))
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)
