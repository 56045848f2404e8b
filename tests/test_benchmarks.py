"""Speed and memory goals of the data stage, measured with pytest-benchmark (opt-in tier):

    make bench            # or: pytest -m benchmark --benchmark-enable

Goals (from the foundation issue): the generator produces at least 1M events/s on a 2-core CPU
and builds 1M sessions within 4 GB of memory.
"""

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.anomalies.inject import AnomalyConfig, inject
from benchmark.speed.data_stage import STAGE, TAOBAO_FIELDS, tree_peak, write_taobao_layout
from datasets.sessions import limit_lengths
from datasets.synthetic import SyntheticConfig, generate

from .conftest import compose_typed

pytestmark = pytest.mark.benchmark


def test_generator_throughput(benchmark):
    cfg = SyntheticConfig(n_users=100_000)  # about 3.7M events
    data = benchmark.pedantic(generate, args=(cfg, 0), rounds=3, warmup_rounds=1)
    events_per_s = len(data.events) / benchmark.stats.stats.median
    benchmark.extra_info["events"] = len(data.events)
    benchmark.extra_info["events_per_s"] = events_per_s
    assert events_per_s >= 1_000_000


def test_injection_throughput(benchmark):
    events, _ = limit_lengths(
        generate(SyntheticConfig(n_users=20_000), 0).events.sorted(), min_length=2, max_length=50
    )
    out = benchmark.pedantic(
        inject,
        args=(events, AnomalyConfig()),
        kwargs=dict(rate=0.1, seed=0, max_length=50),
        rounds=3,
        warmup_rounds=1,
    )
    benchmark.extra_info["injected_per_s"] = int(out.label.sum()) / benchmark.stats.stats.median


def _one_victim_at_a_time(batched):
    """A batched type's function called once per victim, as a per-session type is."""
    from benchmark.anomalies.batch import Batch, BatchContext
    from benchmark.anomalies.core import Session

    def edit(s, ctx):
        one = BatchContext(
            ctx.rng, np.array([ctx.severity]), ctx.position, ctx.max_length, ctx.profile, ctx.params
        )
        b = batched(Batch(s.cols, s.gap, s.origin, np.array([0, len(s)]), np.array([s.t0])), one)
        return Session(b.cols, b.gap, float(b.t0[0]), b.origin)

    return edit


@pytest.mark.parametrize("name", ["click_flood", "account_takeover"])
def test_batched_injection_against_one_call_per_victim(benchmark, monkeypatch, name):
    """Every victim of a type edited in one call, against the same function called once per
    victim (the per-session path plugin types take), in the same run: at least 5x faster."""
    from dataclasses import replace

    from benchmark.anomalies.core import INJECTORS

    events, _ = limit_lengths(
        generate(SyntheticConfig(n_users=20_000), 0).events.sorted(), min_length=3, max_length=50
    )
    cfg = AnomalyConfig(mix={name: 1.0})
    run = dict(rate=0.1, seed=0, max_length=50)
    batched = benchmark.pedantic(inject, args=(events, cfg), kwargs=run, rounds=3)
    spec = INJECTORS[name]
    per_victim = replace(spec, fn=_one_victim_at_a_time(spec.fn), batched=False)
    monkeypatch.setitem(INJECTORS, name, per_victim)
    start = time.perf_counter()
    one_by_one = inject(events, cfg, **run)
    looped = time.perf_counter() - start
    assert one_by_one.label.sum() == batched.label.sum() > 1000
    ratio = looped / benchmark.stats.stats.min
    benchmark.extra_info.update(victims=int(batched.label.sum()), speedup=ratio)
    assert ratio >= 5, f"batched only {ratio:.1f}x faster than one call per victim"


MEMORY_PROBE = """
import json, resource, sys
import numpy as np
from datasets.synthetic import SyntheticConfig, generate
data = generate(SyntheticConfig(n_users=int(sys.argv[1])), 0)
sessions = int(np.count_nonzero(np.diff(data.events.session_id)) + 1)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"sessions": sessions, "events": len(data.events), "peak_bytes": peak}))
"""


def test_one_million_sessions_fit_in_4_gb(benchmark):
    command = [sys.executable, "-c", MEMORY_PROBE, "340000"]
    result, peak = benchmark.pedantic(tree_peak, args=(command,), rounds=1, warmup_rounds=0)
    benchmark.extra_info.update(result, sampled_peak_bytes=peak)
    assert result["sessions"] >= 1_000_000
    assert peak < 4 * 1024**3


def write_taobao_file(path, rows: int, seed: int = 0, users: int = 1_000_000) -> None:
    """A UserBehavior.csv-format file (no header) of ``rows`` rows inside the documented window,
    from ``users`` users."""
    write_taobao_layout(Path(path), rows, users, seed)


def test_loader_ingest_rows_per_second(benchmark, tmp_path):
    from datasets.loaders.common import LoadOptions
    from datasets.loaders.registry import LOADERS

    path = tmp_path / "UserBehavior.csv"
    write_taobao_file(path, 1_000_000)
    mapping = compose_typed(["dataset=taobao"]).dataset.table
    data = benchmark.pedantic(
        LOADERS["taobao"], args=(path, LoadOptions(table=mapping)), rounds=3, warmup_rounds=1
    )
    rows_per_s = data.source["rows_read"] / benchmark.stats.stats.median
    benchmark.extra_info["rows_per_s"] = rows_per_s
    assert len(data.events) == 1_000_000 - data.source["quarantined"].get("duplicate_event", 0)
    assert rows_per_s >= 200_000


def timed(fn, rounds: int = 2) -> float:
    """The best of ``rounds`` wall times of ``fn()``: both sides of a ratio measured alike."""

    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("layout", ["csv", "parquet"])
def test_event_table_ingest_against_a_plain_pyarrow_read(benchmark, tmp_path, layout):
    """dataset=events reads, validates, maps, de-duplicates and sorts; a plain pyarrow read of
    the same file, in the same run, is the peer. Measured on the reference machine at 2M rows
    (quiet, two runs): CSV 2.7-3.1M rows/s (3.3-4.0x the plain read), Parquet 5.4-6.9M rows/s
    (4.0-4.5x; the goal is 5M). The bounds guard against regressions with room for a busy
    machine's noise."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from datasets.loaders.common import LoadOptions
    from datasets.loaders.table import TableMapping, load

    rows = 2_000_000
    path = tmp_path / "UserBehavior.csv"
    write_taobao_file(path, rows)
    names = pacsv.ReadOptions(column_names=TAOBAO_FIELDS)
    if layout == "parquet":
        pq.write_table(pacsv.read_csv(path, names), tmp_path / "events.parquet")
        path = tmp_path / "events.parquet"
    mapping = TableMapping(
        column_names=TAOBAO_FIELDS if layout == "csv" else None,
        user="user",
        item="item",
        category="category",
        event_type="behavior",
        timestamp="time",
        time_unit="s",
    )
    plain = timed(
        lambda: pq.read_table(path) if layout == "parquet" else pacsv.read_csv(path, names)
    )
    data = benchmark.pedantic(load, args=(path, LoadOptions(table=mapping)), rounds=2)
    ours = benchmark.stats.stats.min
    benchmark.extra_info.update(
        rows_per_s=rows / ours, pyarrow_rows_per_s=rows / plain, ratio=ours / plain
    )
    assert data.source["rows_read"] == rows
    assert ours / plain < (7.0 if layout == "csv" else 9.0), f"{ours / plain:.1f}x"


PLAIN_READ_PROBE = """
import json, resource, sys
import pyarrow.csv as pacsv
pacsv.read_csv(sys.argv[1], pacsv.ReadOptions(column_names=sys.argv[2].split(",")))
print(json.dumps({"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def test_events_data_stage_memory_against_a_plain_read(benchmark, tmp_path):
    """The whole data stage (load, gap sessions, split, inject, encode) of a 1M-row own table,
    each in a process of its own, against a plain pyarrow read of the same file; peaks
    sampled (a child's ``ru_maxrss`` starts at its parent's size when forked, so this test's
    own memory would leak into it). Measured on the reference machine: 6.4 s, 425 bytes per
    row at peak, 3.2x the plain read's (a table this size is prepared in one piece; bigger
    ones in partitions). The plain read is brief: a sample can miss its peak, hence the slack."""
    rows = 1_000_000
    path = tmp_path / "UserBehavior.csv"
    write_taobao_file(path, rows, users=rows // 100)  # about 100 events per user: real sessions
    plain_read = [sys.executable, "-c", PLAIN_READ_PROBE, str(path), ",".join(TAOBAO_FIELDS)]
    _, plain = tree_peak(plain_read)
    command = [sys.executable, "-c", STAGE, str(path)]
    stage, peak = benchmark.pedantic(tree_peak, args=(command,), rounds=1)
    benchmark.extra_info.update(stage, bytes_per_row=peak / rows, ratio_to_plain_read=peak / plain)
    assert peak / plain < 5, f"{peak / plain:.1f}x"


def test_events_data_stage_of_ten_million_rows_under_2_gb(benchmark, tmp_path):
    """The issue's bound for the whole data stage: a 10M-row own table (headerless CSV, Taobao
    layout) prepared under 2 GB, every process of it counted (it is read into user
    partitions, each prepared in a worker process: dataset.memory_gb). Measured on the
    reference machine: 79.5 s, 1.40 GiB."""
    rows = 10_000_000
    path = tmp_path / "UserBehavior.csv"
    write_taobao_file(path, rows, users=rows // 100)
    command = [sys.executable, "-c", STAGE, str(path), f"dataset.cache_dir={tmp_path}"]
    stage, peak = benchmark.pedantic(tree_peak, args=(command,), rounds=1)
    benchmark.extra_info.update(stage, tree_peak_bytes=peak)
    assert peak < 2 * 1024**3, f"{peak / 2**30:.2f} GiB"


LOADER_PROBE = """
import json, resource, sys
from pathlib import Path
from datasets.loaders.common import LoadOptions
from datasets.loaders.registry import LOADERS
data = LOADERS["taobao"](Path(sys.argv[1]), LoadOptions())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"rows": data.source["rows_read"], "peak_bytes": peak}))
"""


def test_ten_million_rows_stream_under_2_gb(benchmark, tmp_path):
    """The issue's bound: a 10M-row file ingested under 2 GB of RSS (whole process)."""
    path = tmp_path / "UserBehavior.csv"
    write_taobao_file(path, 10_000_000)

    command = [sys.executable, "-c", LOADER_PROBE, str(path)]
    result, peak = benchmark.pedantic(tree_peak, args=(command,), rounds=1, warmup_rounds=0)
    benchmark.extra_info.update(result, sampled_peak_bytes=peak)
    assert result["rows"] == 10_000_000
    assert peak < 2 * 1024**3


# --- detectors x frameworks, each beside its plain reference ------------------------------
# Sizes of benchmark.speed.table's "quick" preset (CPU-friendly); `python -m benchmark.speed
# --preset gpu` gives the full protocol at the GPU sizes. Every timed call synchronises itself.

SPEED_MODELS = ("lstm", "gru", "transformer", "multimodal")
ROUNDS = {
    "train_step": (20, 3),
    "infer_b32": (50, 5),
    "infer_b1024": (10, 2),
    "latency_b1": (200, 20),
}


@pytest.fixture(scope="module")
def speed_setups():
    """(model, framework) -> (config, detector, data), built once per module."""
    from benchmark.timing.protocol import pin_allocator

    pin_allocator()  # as the timing protocol does, so both measure the same way
    cache = {}

    def get(model: str, framework: str):
        from benchmark.speed.table import PRESETS, build

        key = (model, framework)
        if key not in cache:
            cache[key] = build(model, framework, [*PRESETS["quick"], "timing.batch_sizes=[1024]"])
        return cache[key]

    return get


def timed_call(probe, figure: str, train_batch: int):
    """A zero-argument function that does one unit of ``figure`` and waits for it."""
    if figure == "latency_b1":
        return probe.request(1)
    work = (
        probe.training(train_batch)
        if figure == "train_step"
        else probe.inference(int(figure.split("_b")[1]))
    )
    return lambda: work.sync(work.step())


@pytest.mark.parametrize("implementation", ["detector", "reference"])
@pytest.mark.parametrize("figure", list(ROUNDS))
@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("model", SPEED_MODELS)
def test_detector_speed(benchmark, speed_setups, model, framework, figure, implementation):
    from benchmark.detectors.registry import speed_probe

    config, detector, data = speed_setups(model, framework)
    probe = speed_probe(detector, data, framework, implementation)
    call = timed_call(probe, figure, config.train.batch_size)
    rounds, warmup = ROUNDS[figure]
    try:
        benchmark.pedantic(call, rounds=rounds, warmup_rounds=warmup, iterations=1)
    finally:
        probe.restore()
    sequences = (
        1
        if figure == "latency_b1"
        else int(figure.rsplit("b", 1)[-1])
        if "infer" in figure
        else config.train.batch_size
    )
    benchmark.extra_info["sequences_per_call"] = sequences
    benchmark.extra_info["seq_per_s"] = sequences / benchmark.stats.stats.median
    assert benchmark.stats.stats.median > 0


def test_carried_state_scores_events_faster_than_a_window_rescan(benchmark):
    """Per-event scoring with 1,000 sequences in flight: the LSTM's carried state against
    the Transformer's window rescan at the same width, measured in one process (a ratio, so
    the machine's own speed cancels)."""
    from benchmark.detectors.adapters.torch_adapter import TorchDetector
    from benchmark.online.cost import scoring_cost
    from benchmark.online.stream import WindowScorer
    from benchmark.run.data import prepare_data

    from .conftest import detector_spec

    config = compose_typed(["experiment=smoke"])
    prepared = prepare_data(config.dataset, config.anomaly, 0)
    test = prepared.arrays["test"]
    lstm = TorchDetector(detector_spec(config, prepared, "lstm", "classify", device="cpu"))
    transformer = TorchDetector(
        detector_spec(config, prepared, "transformer", "classify", device="cpu")
    )
    window = WindowScorer(lambda arrays: transformer.score(arrays).sequence)

    def both() -> tuple[dict, dict]:
        carried = scoring_cost(lstm.stateful_scorer(), test, 1000, 256, seconds=0.5)
        rescan = scoring_cost(window, test, 1000, 256, seconds=0.5)
        return carried, rescan

    carried, rescan = benchmark.pedantic(both, rounds=1, iterations=1)
    ratio = carried["events_per_s"] / rescan["events_per_s"]
    benchmark.extra_info.update(carried_state=carried, window_rescan=rescan, ratio=ratio)
    assert ratio > 2.0
    assert carried["state_bytes_per_user"] < rescan["state_bytes_per_user"]
