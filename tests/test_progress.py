"""The sweep clock: job i/N, time spent, and the estimate of what is left."""

import pytest

from benchmark.run import progress
from benchmark.run.preflight import sweep_size
from benchmark.run.progress import SweepClock, duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4.4, "4 s"), (59.4, "59 s"), (61, "1 min"), (3 * 3600 + 125, "3 h 2 min")],
)
def test_durations_read_as_a_person_says_them(seconds, text):
    assert duration(seconds) == text


def test_the_estimate_counts_only_jobs_that_ran(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    clock = SweepClock(total=5, started=100.0)
    assert clock.job_line(0, "model=a") == "job 1/5 (0 s elapsed): model=a"
    clock.job_done(0.1, ran=False)  # skipped: no time, no evidence of a job's length
    clock.job_done(60.0, ran=True)
    clock.job_done(120.0, ran=True)
    now[0] = 280.0
    assert clock.seconds_left() == pytest.approx(2 * 90.0)
    assert clock.job_line(3, "model=d") == "job 4/5 (3 min elapsed, about 3 min left): model=d"


def test_sweep_size_is_the_product_of_the_swept_values():
    assert sweep_size(["seed=0,1,2", "model=lstm,gru", "train.epochs=3"]) == 6
    assert sweep_size(["seed=range(0,4)"]) == 4
    assert sweep_size(["seed=glob(*)"]) is None  # only Hydra's sweeper can list it
