"""What scoring events as they arrive costs: events per second and per-call latency of a
stateful scorer holding ``users`` concurrent sequences, and the bytes each one holds.

Each of ``users`` slots replays a sequence of the source (drawn at random, a new one when it
ends), from a random point of it, so that the sequences in flight are as far along as in a
steady stream (a window rescan's cost grows with that); a call takes the next event of up to
``most`` slots, round robin, as a server batching the events that arrived in one tick would.
Events/s counts the time spent in the scorer's calls only. An event waits for its whole call,
so the call's latency is each of its events' latency. Timed with ``time.perf_counter`` after
warm-up calls (which compile what the framework compiles); wall time, so compare within one
run.
"""

from __future__ import annotations

import time

import numpy as np

from benchmark.online.stream import StatefulScorer
from datasets.features import SequenceArrays

WARMUP_CALLS = 3
MIN_CALLS = 5


def scoring_cost(
    scorer: StatefulScorer,
    source: SequenceArrays,
    users: int,
    most: int,
    seconds: float,
    seed: int = 0,
) -> dict[str, float | int]:
    """Figures of ``scorer`` at ``users`` concurrent sequences: events/s, latency per call
    (p50, p99, ms), events per call and bytes of state per user."""
    rng = np.random.default_rng(seed)
    scorer.start(source, users)
    sequence = rng.integers(0, len(source), users)
    position = (rng.random(users) * source.length[sequence]).astype(np.int64)
    per_call = min(users, most)
    cursor, latencies, events = 0, [], 0
    started = None
    for call in range(10**9):
        slots = (cursor + np.arange(per_call)) % users
        cursor = (cursor + per_call) % users
        rows = source.offsets[sequence[slots]] + position[slots]
        tick = time.perf_counter()
        scorer.push(slots, rows, position[slots] == 0)
        elapsed = time.perf_counter() - tick
        position[slots] += 1
        ended = slots[position[slots] >= source.length[sequence[slots]]]
        sequence[ended], position[ended] = rng.integers(0, len(source), len(ended)), 0
        if call < WARMUP_CALLS:
            continue
        started = started or tick
        latencies.append(elapsed)
        events += per_call
        if len(latencies) >= MIN_CALLS and time.perf_counter() - started >= seconds:
            break
    busy = float(np.sum(latencies))
    return {
        "users": users,
        "events_per_call": per_call,
        "calls": len(latencies),
        "events_per_s": events / busy,
        "latency_ms_p50": float(np.percentile(latencies, 50)) * 1e3,
        "latency_ms_p99": float(np.percentile(latencies, 99)) * 1e3,
        "state_bytes_per_user": scorer.state_bytes(),
    }
