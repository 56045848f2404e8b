"""The timing protocol: throughput, latency, first-call (compile) time and peak memory.

Framework-neutral: it times ``Workload`` objects that the framework adapters build
(``benchmark.detectors.adapters.*_speed``) and never imports torch or jax. The rules, so that
numbers from different detectors, frameworks and machines mean the same thing:

* Every clock read follows a synchronisation (``Workload.sync``: CUDA synchronise, JAX
  ``block_until_ready``); work launched asynchronously is never counted as done.
* The first call is timed on its own (it includes compilation / autotuning) and reported as
  ``first_call_s``; then ``warmup`` calls run untimed.
* Throughput: the calls of a window are launched back to back with one synchronisation at its
  end (no per-step host sync), a window lasts at least ``min_window_s``; the figure is the
  median over ``windows`` windows, with the spread beside it.
* Latency: each request is timed end to end (host batch in, host scores out, so the copies in
  both directions are included) over at least ``requests`` requests. A tail percentile of one
  series moves with whatever else the machine does at that moment (a p99 of 30 ms in one run,
  550 ms in the next, identical config): the requests are also cut into ``LATENCY_BLOCKS``
  consecutive blocks, and the figure budgets are judged on is the median of the blocks' p99
  (``p99_block_median``) with the blocks' range beside it; a p99/p50 ratio above
  ``INTERFERENCE_RATIO`` is flagged as interference.
* Memory: device peaks come from the adapter; on CPU the figure is the detector's own: the
  process's peak RSS over the measured phase (Linux resets the high-water mark through
  ``/proc/self/clear_refs``) minus the RSS before the detector was built (``Plan.rss_before_mb``;
  memory the allocator kept from earlier runs of a sweep can only lower it).
* The C allocator is pinned before measuring (``pin_allocator``): glibc otherwise maps large
  blocks afresh on each call, or not, depending on the process's allocation history, and the
  page faults that follow made one configuration differ by 1.4x between two fresh processes.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("benchmark")

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}
LATENCY_BLOCKS = 5  # consecutive blocks of the requests, each with its own p99
# p99 more than this many times p50: the tail is the machine's (another process, a page-cache
# flush), not the detector's. Batch-1 scoring on an idle CPU stays within 2-4x.
INTERFERENCE_RATIO = 10.0


@dataclass(frozen=True)
class TimingProtocol:
    """How long and how often to measure (``conf/timing``)."""

    warmup: int = 10
    min_window_s: float = 1.0
    windows: int = 5
    latency_requests: int = 1000


@dataclass(frozen=True)
class Workload:
    """One unit of work, launched by ``step`` (which must not wait for it) and awaited by
    ``sync`` on the handle ``step`` returned. ``sequences``/``events`` are per step."""

    step: Callable[[], Any]
    sync: Callable[[Any], None]
    sequences: int
    events: int


def _timed_call(workload: Workload) -> float:
    """One synchronised call: the first one includes compilation and autotuning."""
    start = time.perf_counter()
    workload.sync(workload.step())
    return time.perf_counter() - start


def _run_window(workload: Workload, calls: int) -> float:
    """Seconds for ``calls`` back-to-back steps, synchronised once at the end."""
    start = time.perf_counter()
    handle = None
    for _ in range(calls):
        handle = workload.step()
    workload.sync(handle)
    return time.perf_counter() - start


def calls_per_window(workload: Workload, min_window_s: float, start: int = 1) -> int:
    """Enough calls that a window lasts at least ``min_window_s``: from ``start`` (an
    estimate), scaled up until a trial window is long enough."""
    calls = max(1, start)
    while True:
        seconds = _run_window(workload, calls)
        if seconds >= min_window_s:
            return calls
        # Aim a little past the target so the measured windows do not fall just short.
        guess = math.ceil(calls * 1.2 * min_window_s / max(seconds, 1e-9))
        calls = max(calls * 2, min(guess, calls * 1000))


def _windows(workload: Workload, calls: int, protocol: TimingProtocol) -> tuple[int, list[float]]:
    """``protocol.windows`` timed windows of ``calls`` steps each. A window that comes in
    under ``min_window_s`` (the device sped up after calibration) restarts the set with more
    calls, so every reported window is long enough; after a few tries the last set stands."""
    for _ in range(_MAX_RECALIBRATIONS):
        seconds = []
        for _ in range(protocol.windows):
            seconds.append(_run_window(workload, calls))
            if seconds[-1] < protocol.min_window_s:
                break
        else:
            return calls, seconds
        calls = math.ceil(calls * 1.2 * protocol.min_window_s / max(seconds[-1], 1e-9))
    return calls, [_run_window(workload, calls) for _ in range(protocol.windows)]


_MAX_RECALIBRATIONS = 4


def spread(values: list[float]) -> dict[str, float]:
    """Median, inter-quartile range, min and max of repeated measurements."""
    a = np.asarray(values, dtype=float)
    q1, q3 = np.percentile(a, [25, 75])
    return {
        "median": float(np.median(a)),
        "iqr": float(q3 - q1),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def throughput(workload: Workload, protocol: TimingProtocol) -> dict:
    """Sequences and events per second over ``protocol.windows`` windows, plus the first
    call's time (compilation included) and how many calls a window held."""
    first_call_s = _timed_call(workload)
    estimate = 1
    if protocol.warmup:
        warmup_s = _run_window(workload, protocol.warmup)
        per_call = warmup_s / protocol.warmup
        estimate = math.ceil(1.1 * protocol.min_window_s / max(per_call, 1e-9))
    calls = calls_per_window(workload, protocol.min_window_s, estimate)
    calls, seconds = _windows(workload, calls, protocol)
    seq_rates = [calls * workload.sequences / s for s in seconds]
    return {
        "seq_per_s": float(np.median(seq_rates)),
        "events_per_s": float(np.median(seq_rates)) * workload.events / workload.sequences,
        "seq_per_s_spread": spread(seq_rates),
        "window_s": spread(seconds),
        "calls_per_window": calls,
        "first_call_s": first_call_s,
        "sequences_per_call": workload.sequences,
    }


def latency(request: Callable[[], Any], protocol: TimingProtocol) -> dict:
    """Per-request wall time in milliseconds (``request`` returns host data, so it is
    synchronous by construction): percentiles, max and mean over the requests."""
    for _ in range(protocol.warmup):
        request()
    times = np.empty(protocol.latency_requests)
    for i in range(protocol.latency_requests):
        start = time.perf_counter_ns()
        request()
        times[i] = time.perf_counter_ns() - start
    ms = times / 1e6
    out = {name: float(np.percentile(ms, q)) for name, q in PERCENTILES.items()}
    out.update(min=float(ms.min()), max=float(ms.max()), mean=float(ms.mean()), requests=len(ms))
    return out | robust_tail(ms)


def robust_tail(ms: np.ndarray, blocks: int = LATENCY_BLOCKS) -> dict:
    """The p99 of each of ``blocks`` consecutive blocks of requests: their median (stable
    between identical runs; one burst of interference moves one block) and range, and whether
    the whole series' p99/p50 says the machine interfered."""
    parts = [p for p in np.array_split(ms, min(blocks, len(ms))) if len(p)]
    p99s = [float(np.percentile(p, 99.0)) for p in parts]
    p50 = float(np.percentile(ms, 50.0))
    ratio = float(np.percentile(ms, 99.0)) / p50 if p50 > 0 else math.inf
    return {
        "p99_block_median": float(np.median(p99s)),
        "p99_block_range": [min(p99s), max(p99s)],
        "p99_over_p50": ratio if math.isfinite(ratio) else None,
        "interference": bool(ratio > INTERFERENCE_RATIO),
    }


def work_rate(workload: Workload, work_per_call: float, protocol: TimingProtocol) -> dict:
    """Work units per second of a ``Workload`` under the throughput protocol (a device
    ceiling: FLOPs of a large matrix product, bytes of a large copy): median and spread."""
    pin_allocator()
    figures = throughput(workload, protocol)
    calls_per_s = figures["seq_per_s"] / workload.sequences
    scale = work_per_call / workload.sequences
    return {
        "per_s": calls_per_s * work_per_call,
        "per_s_spread": {k: v * scale for k, v in figures["seq_per_s_spread"].items()},
        "work_per_call": work_per_call,
        "calls_per_window": figures["calls_per_window"],
    }


# --- the C allocator --------------------------------------------------------------------

# mallopt parameters (glibc's malloc.h). The mmap threshold is glibc's largest allowed value
# on 64-bit systems; the trim threshold keeps freed heap memory for the next call.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2**30


def pin_allocator() -> dict[str, Any]:
    """Fix glibc malloc's mmap and trim thresholds in this process; what was set.

    Why: glibc serves a block above its mmap threshold with a fresh ``mmap`` (and unmaps it on
    free), and it raises that threshold as mapped blocks are freed, so whether a model's
    activations are reused from the heap or faulted in page by page on every call depends on
    what the process allocated before. The same PyTorch LSTM detector at batch 256 ran at 11.7k
    seq/s with 305 page faults per call in one fresh process and at 8.5k seq/s with 4,170 in
    another. Fixed thresholds make a figure independent of that history (the same reason CPU
    tuning guides preload jemalloc or tcmalloc). Other C libraries are left as they are and
    reported as such.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return {"allocator": "system default (no mallopt)"}
    pinned = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    pinned = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and pinned
    if not pinned:
        return {"allocator": "system default (mallopt refused)"}
    return {
        "allocator": "malloc, thresholds pinned",
        "mmap_threshold": MMAP_THRESHOLD,
        "trim_threshold": TRIM_THRESHOLD,
    }


# --- CPU memory --------------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Reset the process's peak-RSS mark to its current RSS (Linux >= 4.0); False if the
    kernel does not allow it (then the peak is the process's lifetime peak)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The process's peak resident set size since start or the last ``reset_peak_rss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # not on Windows; fine: the Linux path above is the normal one

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the machine ------------------------------------------------------------------------


def nvidia_smi(fields: str) -> list[str]:
    """One CSV line per NVIDIA GPU with the ``--query-gpu`` ``fields`` (empty where there is
    no driver)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def gpu_driver() -> str | None:
    """The NVIDIA driver version (None where there is none)."""
    return next(iter(nvidia_smi("driver_version")), None)


def threads() -> dict[str, str | int | None]:
    """CPU threading settings that change CPU timings."""
    return {
        "cpu_count": os.cpu_count(),
        **{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")},
    }


# --- one detector, every figure ---------------------------------------------------------


def batch_key(batch_size: int) -> str:
    """How figures per batch size are keyed in a record (``inference``, ``latency_ms``)."""
    return f"batch_{batch_size}"


def batch_size_of(key: str) -> int:
    return int(key.removeprefix("batch_"))


def largest_batch(by_batch: dict) -> str | None:
    """The key of the largest batch size measured (None when nothing was)."""
    return max(by_batch, key=batch_size_of) if by_batch else None


class SpeedProbe(Protocol):
    """What an adapter offers the protocol for one fitted detector on one data set."""

    def inference(self, batch_size: int) -> Workload:
        """Scoring of a batch already on the device (model throughput)."""
        ...

    def request(self, batch_size: int) -> Callable[[], Any]:
        """Host batch -> device -> scores -> host arrays: one end-to-end request."""
        ...

    def training(self, batch_size: int) -> Workload | None:
        """Full optimiser steps (None for detectors not trained by steps)."""
        ...

    def restore(self) -> None:
        """Put back the weights the training steps changed."""
        ...

    def reset_memory(self) -> None: ...

    def device_memory_mb(self) -> dict[str, float]:
        """Device peaks since ``reset_memory`` (empty on CPU)."""
        ...

    def environment(self) -> dict:
        """Device, versions, precision settings and which fast paths are on."""
        ...


@dataclass(frozen=True)
class Plan:
    """Which figures to take (``conf/timing``)."""

    protocol: TimingProtocol
    batch_sizes: tuple[int, ...] = (1, 32, 256, 1024)
    latency_batch_sizes: tuple[int, ...] = (1, 32)
    train_batch_size: int | None = 128  # None: no training figure
    rss_before_mb: float | None = None  # the process's RSS before the detector was built


def measure(probe: SpeedProbe, plan: Plan) -> dict:
    """Every figure of the protocol for one detector; memory per phase."""
    allocator = pin_allocator()
    out: dict[str, Any] = {
        "protocol": plan.protocol.__dict__ | {"clock": "perf_counter", **allocator}
    }
    phase = functools.partial(_phase, rss_before_mb=plan.rss_before_mb)
    out["inference"], memory_inference = phase(
        probe,
        lambda: {
            batch_key(b): announced(f"inference throughput, batch {b}", throughput)(
                probe.inference(b), plan.protocol
            )
            for b in plan.batch_sizes
        },
    )
    out["latency_ms"], _ = phase(
        probe,
        lambda: {
            batch_key(b): announced(f"request latency, batch {b}", latency)(
                probe.request(b), plan.protocol
            )
            for b in plan.latency_batch_sizes
        },
    )
    memory = {"inference": memory_inference}
    if plan.train_batch_size and (work := probe.training(plan.train_batch_size)) is not None:
        try:
            timed = announced(f"training throughput, batch {plan.train_batch_size}", throughput)
            out["train"], memory["train"] = phase(probe, lambda: timed(work, plan.protocol))
        finally:
            probe.restore()
    out["memory_mb"] = memory
    out["peak_memory_mb"] = peak_of(memory)
    out["environment"] = probe.environment() | {"driver": gpu_driver(), "threads": threads()}
    return out


def announced(what: str, measurement: Callable[..., dict]) -> Callable[..., dict]:
    """``measurement`` that logs what it measures and how long measuring took (the protocol
    runs for minutes on a CPU; a user should see which part)."""

    def measured(*args: Any) -> dict:
        start = time.perf_counter()
        figures = measurement(*args)
        log.info("timing: %s measured in %.1f s", what, time.perf_counter() - start)
        return figures

    return measured


def _phase(
    probe: SpeedProbe, body: Callable[[], Any], rss_before_mb: float | None = None
) -> tuple[Any, dict[str, float]]:
    probe.reset_memory()
    exact = reset_peak_rss()
    result = body()
    memory = {"cpu_peak_rss": peak_rss_mb(), **probe.device_memory_mb()}
    if rss_before_mb is not None:
        memory["cpu_peak_over_start"] = max(0.0, memory["cpu_peak_rss"] - rss_before_mb)
    if not exact:
        memory["cpu_peak_rss_is_lifetime"] = True
    return result, memory


def peak_of(memory: dict[str, dict[str, float]]) -> float:
    """The headline peak: device memory allocated where there is a device, else the CPU
    RSS the detector added (else, without a starting point, the process's RSS)."""
    phases = list(memory.values())
    key = next(
        k
        for k in ("device_peak_allocated", "cpu_peak_over_start", "cpu_peak_rss")
        if k in phases[0]
    )
    return max(float(p[key]) for p in phases if key in p)


def current_rss_mb() -> float:
    """The process's resident set size now."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def as_reference(environment: dict, module: str) -> dict:
    """A detector's environment re-labelled for the plain reference timed beside it: same
    device and precision, none of the detector's fast paths."""
    return environment | {"implementation": f"plain reference ({module})", "fast_paths": {}}


class ScoreProbe:
    """The probe of a detector that offers only ``score`` (the NumPy baselines): host code,
    synchronous, so throughput and latency both time ``score`` on the rows; no training
    figure (these detectors do not train by optimiser steps)."""

    def __init__(self, detector: Any, data: Any) -> None:
        self.detector = detector
        self.data = data

    def _rows(self, batch_size: int) -> Any:
        return self.data.take(np.arange(batch_size) % len(self.data))

    def inference(self, batch_size: int) -> Workload:
        rows = self._rows(batch_size)
        return Workload(
            lambda: self.detector.score(rows),
            lambda _: None,
            batch_size,
            int(rows.length.sum()),
        )

    def request(self, batch_size: int) -> Callable[[], Any]:
        rows = self._rows(batch_size)
        return lambda: self.detector.score(rows)

    def training(self, batch_size: int) -> None:
        return None

    def restore(self) -> None:
        pass

    def reset_memory(self) -> None:
        pass

    def device_memory_mb(self) -> dict[str, float]:
        return {}

    def environment(self) -> dict:
        return {"framework": "numpy", "version": np.__version__, "device": "cpu"}
