"""The speed gate (benchmark/speed/compare.py): ratios from alternating rounds, and a failure
on an injected slowdown."""

import subprocess
import sys

import pytest

from benchmark.speed.compare import compare, figures_of

from .conftest import ROOT


def job(infer: float, train: float, p50: float) -> dict:
    timing = {
        "inference": {"batch_32": {"seq_per_s": infer}},
        "train": {"seq_per_s": train},
        "latency_ms": {"batch_1": {"min": p50}},
    }
    entry = {"model": "lstm", "framework": "torch", "implementation": "detector"}
    return {"entries": [entry | {"timing": timing}]}


def test_latency_is_inverted_so_every_ratio_reads_higher_is_faster():
    figures = figures_of(job(100.0, 50.0, 2.0))
    assert figures["lstm/torch/detector: best latency b1"] == pytest.approx(0.5)


def test_the_median_ratio_decides_and_the_spread_is_kept():
    rounds = [
        (job(100, 100, 1.0), job(99, 70, 1.0)),
        (job(100, 100, 1.0), job(101, 80, 1.0)),
        (job(100, 100, 1.0), job(60, 75, 1.0)),  # one noisy round does not decide
    ]
    rows, ok = compare(rounds, threshold=0.15)
    by_name = {r["benchmark"].split(": ")[1]: r for r in rows}
    assert by_name["infer seq/s"]["median_ratio"] == pytest.approx(0.99)
    assert by_name["infer seq/s"]["min"] == pytest.approx(0.6)
    assert by_name["infer seq/s"]["verdict"] == "ok"
    assert by_name["train seq/s"]["verdict"] == "SLOWER"  # median 0.75 < 0.85
    assert not ok


@pytest.mark.slow
def test_an_injected_slowdown_fails_the_gate(tmp_path):
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    adapter = clone / "benchmark" / "detectors" / "adapters" / "torch_adapter.py"
    text = adapter.read_text()
    marker = "        o = self.spec.objective\n        with self._context():"
    assert text.count(marker) == 1
    slower = "        __import__('time').sleep(0.003)\n"
    adapter.write_text(text.replace(marker, slower + marker))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "commit", "-qam", "slower scoring"], cwd=clone, check=True)
    gate = ["-m", "benchmark.speed.compare", "--ref", "HEAD~1", "--rounds", "2"]
    scope = ["--models", "lstm", "--frameworks", "torch"]
    short = ["timing.windows=2", "timing.min_window_s=0.2", "timing.latency_requests=50"]
    done = subprocess.run(
        [sys.executable, *gate, *scope, *short],
        cwd=clone,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    infer = next(line for line in done.stdout.splitlines() if "infer seq/s" in line)
    assert "SLOWER" in infer
    assert float(infer.split()[-4]) < 0.85  # the median ratio current / reference
