"""How many CPU threads a run's detector may use (``threads=``), chosen so that jobs do not
oversubscribe the machine. One thread per job is often much faster than several when other
work shares the cores: a CPU-bound thread that waits for a busy core stalls its whole step.

Choice, in order: ``threads=N`` (N >= 1) as given; else ``OMP_NUM_THREADS`` when set (the
usual way to pin a job's threads, which numpy and scikit-learn honour too); else the CPUs this
process may run on, divided among the jobs a parallel launcher runs side by side on them.
PyTorch applies any count (``torch.set_num_threads``); JAX's CPU backend takes its thread pool
once per process, at its first computation, and can only be limited to one thread
(``XLA_FLAGS``), so JAX gets one thread when the choice is 1 and every core otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def resolve_threads(requested: int, jobs_side_by_side: int = 1) -> tuple[int, str]:
    """(thread count, why) for ``threads=requested`` (0: choose)."""
    if requested > 0:
        return requested, f"threads={requested}"
    pinned = os.environ.get("OMP_NUM_THREADS", "")
    if pinned.isdigit() and int(pinned) > 0:
        return int(pinned), f"OMP_NUM_THREADS={pinned}"
    cpus = available_cpus()
    if jobs_side_by_side > 1:
        share = max(1, cpus // jobs_side_by_side)
        return share, f"{cpus} CPUs shared by {jobs_side_by_side} jobs at a time"
    return cpus, f"{cpus} CPUs available to this process"


def launcher_threads(launcher: Mapping[str, Any]) -> int:
    """Threads per job that a parallel launcher's own settings imply (0: none implied):
    submitit's ``cpus_per_task``, Ray's ``ray.remote.num_cpus``, joblib's ``n_jobs`` (the
    machine's CPUs shared among them)."""
    per_task = launcher.get("cpus_per_task")
    if isinstance(per_task, int) and per_task >= 1:
        return per_task
    ray_cpus = ((launcher.get("ray") or {}).get("remote") or {}).get("num_cpus")
    if isinstance(ray_cpus, int | float) and ray_cpus >= 1:
        return int(ray_cpus)
    n_jobs = launcher.get("n_jobs")
    if isinstance(n_jobs, int) and n_jobs > 1:
        return resolve_threads(0, n_jobs)[0]
    return 0
