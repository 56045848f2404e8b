"""Where a sweep is: "job i/N", the time spent and an estimate of the time left.

The estimate is the mean duration of the jobs that ran in this process (skipped jobs take no
time and are not counted) times the jobs still to come; it is printed before each job. Jobs a
parallel launcher runs in other processes print their index alone.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field


def duration(seconds: float) -> str:
    """'45 s', '12 min', '1 h 10 min'."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


@dataclass
class SweepClock:
    total: int | None  # jobs in the sweep (None when Hydra alone can list them)
    started: float = field(default_factory=time.perf_counter)
    ran: list[float] = field(default_factory=list)  # seconds of each job that ran
    finished: int = 0

    def job_line(self, index: int, overrides: str) -> str:
        of = f"/{self.total}" if self.total else ""
        spent = duration(time.perf_counter() - self.started)
        left = self.seconds_left()
        estimate = "" if left is None else f", about {duration(left)} left"
        return f"job {index + 1}{of} ({spent} elapsed{estimate}): {overrides}"

    def seconds_left(self) -> float | None:
        if not self.total or not self.ran:
            return None
        return max(0, self.total - self.finished) * statistics.fmean(self.ran)

    def job_done(self, seconds: float, ran: bool) -> None:
        self.finished += 1
        if ran:
            self.ran.append(seconds)
