"""The timing protocol (benchmark/timing/protocol.py) and the probes the adapters give it.

Fake workloads run on a one-thread executor, which behaves like a device stream: ``step``
returns at once, the work finishes later, ``sync`` waits for it. A protocol that read the
clock without synchronising would report rates far above what the work allows.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from benchmark.detectors.registry import speed_probe
from benchmark.errors import ConfigError
from benchmark.timing.protocol import (
    TimingProtocol,
    Workload,
    calls_per_window,
    latency,
    peak_rss_mb,
    reset_peak_rss,
    robust_tail,
    throughput,
)

FAST = TimingProtocol(warmup=2, min_window_s=0.1, windows=3, latency_requests=50)


@pytest.fixture
def stream():
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def async_workload(pool, seconds: float, sequences: int = 8) -> Workload:
    return Workload(
        step=lambda: pool.submit(time.sleep, seconds),
        sync=lambda handle: handle.result(),
        sequences=sequences,
        events=sequences * 10,
    )


def test_throughput_waits_for_asynchronous_work(stream):
    result = throughput(async_workload(stream, 0.005), FAST)
    # 8 sequences per 5 ms at most: 1,600 seq/s (a sleep never ends early; a busy machine only
    # lowers the rate, so there is no lower bound here).
    assert result["seq_per_s"] <= 1600
    assert result["events_per_s"] == pytest.approx(10 * result["seq_per_s"])
    assert result["window_s"]["min"] >= FAST.min_window_s


def test_windows_stay_long_enough_when_the_device_speeds_up_after_calibration(stream):
    """Calibration sees 10 ms steps, the windows 4 ms ones (a clock boost, a warm cache):
    the windows must grow rather than report sub-minimum windows."""
    calls = {"n": 0}

    def step():
        calls["n"] += 1
        return stream.submit(time.sleep, 0.010 if calls["n"] <= 14 else 0.004)

    result = throughput(Workload(step, lambda h: h.result(), 8, 80), FAST)
    assert result["window_s"]["min"] >= FAST.min_window_s
    assert result["calls_per_window"] > 11  # the calibrated 11 calls were too few


@pytest.mark.slow  # a wall-clock bound: on a busy machine it measures the machine
def test_a_missing_sync_would_be_caught(stream):
    """The same work with a sync that does not wait: the rate the protocol reports jumps,
    which is what the previous test guards against."""
    unsynced = Workload(lambda: stream.submit(time.sleep, 0.005), lambda _: None, 8, 80)
    assert throughput(unsynced, FAST)["seq_per_s"] > 10 * 1600
    stream.shutdown(wait=False, cancel_futures=True)  # drop the backlog it queued


@pytest.mark.slow  # a wall-clock bound: on a busy machine it measures the machine
def test_first_call_is_reported_apart_from_the_steady_rate():
    calls = {"n": 0}

    def step():
        calls["n"] += 1
        time.sleep(0.3 if calls["n"] == 1 else 0.002)

    result = throughput(Workload(step, lambda _: None, 1, 1), FAST)
    assert result["first_call_s"] >= 0.3
    assert result["seq_per_s"] > 200  # the slow first call is not in the windows


@pytest.mark.slow  # a wall-clock bound: on a busy machine it measures the machine
def test_windows_last_at_least_the_minimum():
    work = Workload(lambda: time.sleep(0.001), lambda _: None, 1, 1)
    calls = calls_per_window(work, 0.05)
    start = time.perf_counter()
    for _ in range(calls):
        work.step()
    assert time.perf_counter() - start >= 0.05


@pytest.mark.slow  # a wall-clock bound: on a busy machine it measures the machine
def test_latency_percentiles_are_ordered_and_measure_the_request():
    protocol = TimingProtocol(warmup=1, latency_requests=40)
    result = latency(lambda: time.sleep(0.002), protocol)
    assert result["requests"] == 40
    assert 2.0 <= result["p50"] < 10.0
    assert result["p50"] <= result["p90"] <= result["p99"] <= result["p99_9"] <= result["max"]


# Allocates a block larger than glibc's starting mmap threshold (128 KiB) in a fresh process
# and reads the IS_MMAPPED bit of its chunk header (the size word just before the pointer).
MAPPED_BIT_OF_A_NEW_BLOCK = """
import ctypes, sys
from benchmark.timing.protocol import pin_allocator
pinned = pin_allocator() if sys.argv[1] == "pinned" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(8 * 2**20)
print(ctypes.c_size_t.from_address(block - ctypes.sizeof(ctypes.c_size_t)).value & 2, pinned)
"""


def test_pinned_allocator_keeps_large_blocks_on_the_heap():
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the thresholds are glibc's")

    def mapped_bit(mode: str) -> str:
        command = [sys.executable, "-c", MAPPED_BIT_OF_A_NEW_BLOCK, mode]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    assert mapped_bit("default").split()[0] == "2"  # glibc's own choice: a fresh mapping
    bit, pinned = mapped_bit("pinned").split(maxsplit=1)
    assert bit == "0"
    assert "'mmap_threshold': 33554432" in pinned


def test_peak_rss_is_reset_per_phase():
    if not reset_peak_rss():
        pytest.skip("this kernel does not allow resetting the peak RSS")
    before = peak_rss_mb()
    block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
    grown = peak_rss_mb()
    del block
    reset_peak_rss()
    assert grown - before > 50
    assert peak_rss_mb() < grown - 50


@pytest.mark.parametrize(
    "override",
    ["timing.windows=0", "timing.min_window_s=0", "timing.batch_sizes=[0,32]"],
)
def test_bad_timing_values_are_config_errors(compose_config, override):
    from benchmark.config import check_config
    from benchmark.run.experiment import as_config

    with pytest.raises(ConfigError, match=override.split("=")[0]):
        check_config(as_config(compose_config([override])))


# --- the probes on real detectors -----------------------------------------------------


def small_detector(framework: str, model: str = "lstm"):
    from benchmark.speed.table import PRESETS, build

    return build(model, framework, PRESETS["quick"])


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_timing_a_training_step_leaves_the_weights_as_they_were(framework):
    _, detector, data = small_detector(framework)
    before = detector.canonical_weights()
    probe = speed_probe(detector, data, framework)
    work = probe.training(16)
    for _ in range(3):
        work.sync(work.step())
    probe.restore()
    after = detector.canonical_weights()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_timed_pytorch_scoring_records_no_autograd_graph():
    """Detector and plain reference are timed alike: neither builds a backward graph (a
    scoring pass that did would pay for it in every inference figure)."""
    _, detector, data = small_detector("torch")
    scores, events, _ = speed_probe(detector, data, "torch").inference(4).step()
    assert scores.grad_fn is None
    assert events.grad_fn is None
    assert speed_probe(detector, data, "torch", "reference").inference(4).step().grad_fn is None


@pytest.mark.slow  # a wall-clock bound: on a busy machine it measures the machine
def test_protocol_figure_agrees_with_an_independent_timing():
    """The protocol's inference rate against a plain loop over the same call: the two
    measure the same thing, so they agree within the noise of a shared machine."""
    _, detector, data = small_detector("torch")
    work = speed_probe(detector, data, "torch").inference(32)
    protocol_rate = throughput(work, FAST)["seq_per_s"]
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 0.3:
        work.sync(work.step())
        n += 1
    loop_rate = n * 32 / (time.perf_counter() - start)
    assert 0.6 < protocol_rate / loop_rate < 1.6


def test_dense_embedding_gradient_equals_the_scatter_gradient():
    jax = pytest.importorskip("jax")
    from flax import nnx

    from models_jax.layers import Embedding

    ids = jax.numpy.array([[1, 2, 2, 0], [3, 3, 3, 1]])
    grads = []
    for rows in (0, 4096):
        graph, params = nnx.split(Embedding(5, 4, nnx.Rngs(0), dense_grad_rows=rows))

        def loss(p, graph=graph):
            return (nnx.merge(graph, p)(ids) ** 2).sum()

        grads.append(np.asarray(jax.grad(loss)(params)["embedding"][...]))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-7)
    assert not grads[0][0].any()  # padding row gets no gradient
    assert grads[0][4].sum() == 0  # an id never looked up gets none either


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_hoisting_the_input_projection_changes_speed_not_results(model):
    from benchmark.speed.table import PRESETS, build

    scores = []
    for hoist in ("true", "false"):
        overrides = [
            *PRESETS["quick"],
            f"framework.hoist_inputs={hoist}",
            "framework.scan_unroll=2",
        ]
        _, detector, data = build(model, "jax", overrides)
        scores.append(detector.score(data.take(np.arange(16))).sequence)
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("setting", "expected"), [("null", False), ("true", True)])
def test_hoisting_is_decided_per_device_unless_set(setting, expected):
    from benchmark.detectors.adapters.jax_speed import environment
    from benchmark.speed.table import PRESETS, build

    _, detector, _ = build("gru", "jax", [*PRESETS["quick"], f"framework.hoist_inputs={setting}"])
    assert detector.device.platform == "cpu"  # null: off on CPU, where it measured slower
    assert detector.speed.hoist is expected
    assert environment(detector)["fast_paths"]["hoisted_input_projection"] is expected


@pytest.mark.parametrize(("setting", "expected"), [("null", 0), ("64", 64)])
def test_one_hot_embedding_gradients_are_decided_per_device_unless_set(setting, expected):
    from benchmark.detectors.adapters.jax_speed import environment
    from benchmark.speed.table import PRESETS, build

    override = f"framework.dense_embedding_grad_rows={setting}"
    _, detector, _ = build("multimodal", "jax", [*PRESETS["quick"], override])
    assert detector.device.platform == "cpu"  # null: scatter-adds on CPU, where they were faster
    assert detector.speed.dense_grad_rows == expected
    assert environment(detector)["fast_paths"]["dense_embedding_grad_rows"] == expected


TINY_TIMING = [
    "timing=default",
    "timing.min_window_s=0.02",
    "timing.windows=2",
    "timing.warmup_steps=2",
    "timing.latency_requests=20",
    "timing.batch_sizes=[1,32]",
]


def test_a_run_records_the_protocol_and_the_report_shows_it(compose_config, tmp_path, caplog):
    from benchmark.report.page import build, fmt, to_markdown
    from benchmark.run.experiment import run

    caplog.set_level("INFO", logger="benchmark")
    cfg = compose_config(["experiment=smoke", f"results_dir={tmp_path}", *TINY_TIMING])
    record = run(cfg).record
    measured = [m.split(" measured in ")[0] for m in caplog.messages if " measured in " in m]
    assert measured == [  # the protocol says which part it is measuring
        "timing: inference throughput, batch 1",
        "timing: inference throughput, batch 32",
        "timing: request latency, batch 1",
        "timing: request latency, batch 32",
        "timing: training throughput, batch 32",
    ]
    timing = record.timing
    assert set(timing.inference) == {"batch_1", "batch_32"}
    assert timing.inference["batch_32"]["seq_per_s"] > 0
    assert timing.train is not None
    assert timing.train["sequences_per_call"] == 32  # the smoke experiment's batch size
    latency_b1 = timing.batch_1_latency()
    assert latency_b1["requests"] == 20
    assert latency_b1["p50"] <= latency_b1["p99"]
    # the detector's own memory: the phases' peak over the RSS before it was built
    phases = timing.memory_mb.values()
    assert timing.peak_memory_mb == max(p["cpu_peak_over_start"] for p in phases)
    start = record.rss_before_detector_mb
    for p in phases:
        assert p["cpu_peak_over_start"] == pytest.approx(max(0.0, p["cpu_peak_rss"] - start))
    assert timing.protocol is not None
    assert timing.protocol["allocator"].startswith(("malloc, thresholds pinned", "system"))
    env = timing.environment
    assert env["framework"] == "torch"
    assert env["precision"]["compute"] == "fp32"
    assert "compile" in env["fast_paths"]
    report = to_markdown(build(tmp_path / "smoke"))
    assert "Speed (timing protocol)" in report
    assert f"{fmt(latency_b1['p50'])} / {fmt(latency_b1['p99'])}" in report  # the record's


def test_speed_table_ratios_come_from_its_entries(tmp_path):
    import json

    from benchmark.speed.table import main, write_outputs

    out = tmp_path / "speed"
    args = ["--preset", "quick", "--models", "gru", "--frameworks", "torch", "--in-process"]
    # the ceilings are measured here in this process (a table measures them in a fresh one)
    ceilings = tmp_path / "ceilings.json"
    assert main(["--ceilings", "--json", str(ceilings), *TINY_TIMING[1:]]) == 0
    assert main([*args, "--out", str(out), "--no-ceilings", *TINY_TIMING[1:]]) == 0
    entries = {
        e["implementation"]: e for e in json.loads(out.with_suffix(".json").read_text())["entries"]
    }
    detector = entries["detector"]["timing"]["inference"]["batch_32"]["seq_per_s"]
    plain = entries["reference"]["timing"]["inference"]["batch_32"]["seq_per_s"]
    row = next(
        r for r in out.with_suffix(".md").read_text().splitlines() if r.startswith("| gru | torch")
    )
    assert f"{detector / plain:.3g}" in row.split("|")[9]
    assert "Ceilings not measured in this job" in out.with_suffix(".md").read_text()
    roofs = json.loads(ceilings.read_text())
    assert roofs["matmul"]["per_s"] > 1e8  # any CPU multiplies faster than 0.1 GFLOP/s
    assert roofs["copy"]["per_s"] > 1e8
    entries = json.loads(out.with_suffix(".json").read_text())["entries"]
    text = write_outputs(tmp_path / "with-roofs", "quick", [], entries, roofs)
    assert f"Matrix-product ceiling: {roofs['matmul']['per_s'] / 1e9:,.1f} GFLOP/s" in text


@pytest.mark.slow  # a wall-clock bound: on a busy machine it measures the machine
def test_work_rate_is_work_per_call_over_the_measured_time():
    from benchmark.timing.protocol import TimingProtocol, Workload, work_rate

    nap = Workload(lambda: time.sleep(0.01), lambda _: None, 1, 0)
    rate = work_rate(nap, 1e6, TimingProtocol(warmup=1, min_window_s=0.1, windows=3))
    # 1e6 units per 10 ms call: at most 1e8/s (a sleep never ends early), not far below.
    assert 0.6e8 < rate["per_s"] <= 1.0e8
    assert rate["per_s_spread"]["min"] <= rate["per_s"] <= rate["per_s_spread"]["max"]


def speed_entry(impl: str, round_no: int, infer: float, framework: str = "torch") -> dict:
    """A benchmark.speed.table entry with the figures its table reads."""
    return {
        "model": "gru",
        "framework": framework,
        "implementation": impl,
        "round": round_no,
        "timing": {
            "inference": {"batch_32": {"seq_per_s": infer, "first_call_s": 0.1}},
            "train": {"seq_per_s": infer / 4},
            "latency_ms": {},
            "peak_memory_mb": 100.0,
        },
    }


def test_speed_ratios_pair_each_round_with_its_own_reference():
    from benchmark.speed.table import table

    # Round ratios 0.5, 1.5, 0.9: median 0.9. Medians of the figures (100 / 200) would say 0.5.
    pairs = [(100.0, 200.0), (300.0, 200.0), (90.0, 100.0)]
    entries = [
        speed_entry(impl, r, infer)
        for r, (mine, plain) in enumerate(pairs)
        for impl, infer in (("detector", mine), ("reference", plain))
    ]
    row = next(r for r in table(entries).splitlines() if r.startswith("| gru | torch"))
    cells = [c.strip() for c in row.split("|")]
    assert cells[3] == "100"  # the detector's median figure
    assert cells[9] == "0.9 (0.5-1.5)"  # infer / plain: median of the same-round ratios
    assert cells[10] == "0.9 (0.5-1.5)"


def test_speed_schedule_measures_pairs_back_to_back_and_flips_their_order():
    from benchmark.speed.table import schedule

    order = schedule(2, ["lstm"], ["torch", "jax"], ["detector", "reference"])
    assert order == [
        (0, "lstm", "torch", "detector"),
        (0, "lstm", "torch", "reference"),
        (0, "lstm", "jax", "detector"),
        (0, "lstm", "jax", "reference"),
        (1, "lstm", "torch", "reference"),
        (1, "lstm", "torch", "detector"),
        (1, "lstm", "jax", "reference"),
        (1, "lstm", "jax", "detector"),
    ]


def test_a_burst_of_interference_moves_one_block_not_the_budget_figure():
    """Two identical series but for a burst of slow requests in one of them: the plain p99
    jumps, the median of the blocks' p99 stays, and the burst is flagged."""
    rng = np.random.default_rng(0)
    quiet = 1.0 + 0.1 * rng.random(1000)
    burst = quiet.copy()
    burst[300:315] = 500.0  # 1.5% of the requests, all inside the second block
    a, b = robust_tail(quiet), robust_tail(burst)
    assert np.percentile(burst, 99) > 100 * np.percentile(quiet, 99)
    assert b["p99_block_median"] == pytest.approx(a["p99_block_median"], rel=0.05)
    assert b["p99_block_range"][1] == 500.0
    assert (a["interference"], b["interference"]) == (False, True)
    assert a["p99_over_p50"] == pytest.approx(np.percentile(quiet, 99) / np.median(quiet))
