"""Sweeps: resume after a crash, failure isolation, out-of-memory retry, provenance and the
Ray / submitit launchers. CLI sweeps use the NumPy baselines on the smoke data (seconds)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.records.locks import WRITER_LOCK
from benchmark.records.record import RunRecord, RunStatus
from benchmark.records.store import SCORES_FILE, records, store_path
from benchmark.run import detect
from benchmark.run import experiment as run_module
from benchmark.run.experiment import RECORD_FILE, Quarantined, decide, previous_record, run

from .conftest import only_type

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def smoke(compose_config, tmp_path):
    def _smoke(*overrides: str):
        return compose_config(["experiment=smoke", f"results_dir={tmp_path}", *overrides])

    return _smoke


# --- what a rerun does ------------------------------------------------------------------


FAILED = RunRecord("r", RunStatus.failed, failed_phase="train", error="boom")
OK = RunRecord("r", RunStatus.ok)
RUNNING = RunRecord("r", RunStatus.running, started_at="t")


@pytest.mark.parametrize(
    ("previous", "resume", "action"),
    [
        (None, "ok", "run"),
        (OK, "ok", "skip"),
        (OK, "finished", "skip"),
        (OK, "none", "rerun"),
        (FAILED, "ok", "rerun"),
        (FAILED, "finished", "skip"),
        (FAILED, "none", "rerun"),
        (RUNNING, "ok", "rerun"),
        (RUNNING, "finished", "rerun"),
        (Quarantined("x"), "finished", "rerun"),
    ],
)
def test_decide(previous, resume, action):
    assert decide(previous, resume).action == action


def test_a_failed_record_is_rerun_with_its_reason():
    assert "failed in phase train: boom" in decide(FAILED, "ok").reason


def test_an_unreadable_record_is_moved_aside_not_overwritten(tmp_path):
    (tmp_path / RECORD_FILE).write_text('{"status": "ok", "metr')
    previous = previous_record(tmp_path)
    assert isinstance(previous, Quarantined)
    aside = tmp_path / previous.name
    assert aside.read_text() == '{"status": "ok", "metr'
    assert not (tmp_path / RECORD_FILE).exists()


def test_a_json_file_that_is_no_run_record_is_moved_aside_too(tmp_path, caplog):
    """Valid JSON of the wrong shape (another tool's file) is not trusted as a record."""
    (tmp_path / RECORD_FILE).write_text('{"run_id": "x", "status": "done", "seed": "one"}')
    previous = previous_record(tmp_path)
    assert isinstance(previous, Quarantined)
    assert "not a run record: status" in caplog.text
    assert decide(previous, "ok").action == "rerun"


PRICE_ONLY = tuple(only_type("price_outlier"))  # on Diginetica (no prices): fails in phase data


def test_resume_skips_ok_and_reruns_failed_runs(smoke, tmp_path):
    first = run(smoke("model=random"))
    again = run(smoke("model=random"))
    assert (first.status, again.status) == ("ok", "skipped")
    assert again.record.attempt_id == first.record.attempt_id
    assert run(smoke("model=random", "resume=none")).status == "ok"
    bad = ("model=random", "dataset=diginetica", "anomaly.skip_unsupported=false", *PRICE_ONLY)
    with pytest.raises(Exception, match="price_outlier"):
        run(smoke(*bad))
    assert run(smoke(*bad, "resume=finished")).status == "skipped"
    with pytest.raises(Exception, match="price_outlier"):
        run(smoke(*bad))  # resume=ok (the default) tries a failed config again
    assert len(records(store_path(tmp_path), latest_only=False)) == 4


def test_dry_run_changes_nothing(smoke, tmp_path):
    planned = run(smoke("model=random", "dry_run=true"))
    assert (planned.status, planned.decision.action) == ("planned", "run")
    assert not planned.run_dir.exists()
    assert run(smoke("model=random", "dry_run=true")).run_id == planned.run_id


def test_a_running_record_is_on_disk_before_the_run_starts(smoke, monkeypatch):
    seen = {}
    real = run_module.prepare_data

    def spy(*args, **kwargs):
        run_dirs = list(Path(seen["root"]).glob("smoke/*"))
        seen["record"] = json.loads((run_dirs[0] / RECORD_FILE).read_text())
        return real(*args, **kwargs)

    cfg = smoke("model=random")
    seen["root"] = cfg.results_dir
    monkeypatch.setattr(run_module, "prepare_data", spy)
    result = run(cfg)
    assert seen["record"]["status"] == "running"
    assert seen["record"]["attempt_id"] == result.record.attempt_id
    assert result.record.status == "ok"
    assert result.record.timing.train_seq_per_s is None  # no parameters: nothing trained


# --- failures name their phase; out of memory is retried once ---------------------------


class FlakyDetector:
    """Wraps a real detector; fails the way it is told."""

    def __init__(self, inner, spec, fail):
        self.inner, self.spec, self.fail = inner, spec, fail

    def fit(self, train, val):
        if self.fail == "oom" and self.spec.train.batch_size > 16:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner.fit(train, val)

    def score(self, data):
        if self.fail == "score":
            raise RuntimeError("scoring broke")
        return self.inner.score(data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def flaky(monkeypatch, fail: str) -> list[int]:
    batch_sizes = []
    real = detect.create

    def create(model, framework, spec):
        batch_sizes.append(spec.train.batch_size)
        return FlakyDetector(real(model, framework, spec), spec, fail)

    monkeypatch.setattr(detect, "create", create)
    return batch_sizes


def test_a_failure_names_its_phase(smoke, monkeypatch):
    flaky(monkeypatch, "score")
    with pytest.raises(RuntimeError, match="scoring broke") as caught:
        run(smoke("model=markov"))
    record = caught.value.run_result.record
    assert (record.status, record.failed_phase) == ("failed", "score")
    assert record.error == "RuntimeError: scoring broke"


def test_out_of_memory_retries_once_at_half_the_batch(smoke, monkeypatch):
    batch_sizes = flaky(monkeypatch, "oom")
    result = run(smoke("model=markov"))  # smoke trains at batch 32
    assert result.status == "ok"
    assert batch_sizes == [32, 16]
    assert result.record.oom_retry.batch_size == 32
    assert result.record.oom_retry.retried_with == 16
    assert "out of memory" in result.record.oom_retry.error


def test_out_of_memory_twice_fails_and_no_retry_when_disabled(smoke, monkeypatch):
    batch_sizes = flaky(monkeypatch, "oom")
    with pytest.raises(RuntimeError, match="out of memory"):
        run(smoke("model=markov", "train.batch_size=64"))
    assert batch_sizes == [64, 32]
    batch_sizes.clear()
    with pytest.raises(RuntimeError, match="out of memory"):
        run(smoke("model=markov", "train.oom_retry=false"))
    assert batch_sizes == [32]


def test_divergence_is_a_failed_run_with_the_fix_named(smoke):
    with pytest.raises(FloatingPointError, match=r"lower train\.lr") as caught:
        run(smoke("model=gru", "train.lr=1e30", "train.warmup=0", "train.epochs=1"))
    record = caught.value.run_result.record
    assert (record.status, record.failed_phase) == ("failed", "train")


# --- determinism ------------------------------------------------------------------------


@pytest.fixture
def deterministic_process_state(monkeypatch):
    """The switches a deterministic run sets process-wide, restored afterwards."""
    for name in ("XLA_FLAGS", "CUBLAS_WORKSPACE_CONFIG"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    yield
    import torch

    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_two_identical_cpu_runs_give_identical_metrics_and_scores(
    smoke, framework, deterministic_process_state
):
    args = ("model=gru", f"framework={framework}", "framework.device=cpu", "train.epochs=1")
    args += ("framework.deterministic=true",)
    first = run(smoke(*args))
    with np.load(first.run_dir / SCORES_FILE) as saved:
        first_scores = saved["test_score"].copy()
    second = run(smoke(*args, "resume=none"))
    assert second.record.attempt_id != first.record.attempt_id
    assert second.record.result == first.record.result
    assert second.record.training["history"] == first.record.training["history"]
    with np.load(second.run_dir / SCORES_FILE) as saved:
        np.testing.assert_array_equal(saved["test_score"], first_scores)


# --- provenance -------------------------------------------------------------------------


def test_provenance_names_code_data_files_seeds_and_hardware(smoke):
    record = run(smoke("dataset=diginetica", "model=random")).record
    prov = record.provenance
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert prov.git_sha == (head.stdout.strip() if head.returncode == 0 else None)
    assert isinstance(prov.git_dirty, bool)
    assert prov.versions["hydra-core"] == "1.3.8"
    files = prov.data_files
    assert files, "the sample's files are listed"
    for f in files:
        assert hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest() == f["sha256"]
        assert Path(f["path"]).stat().st_size == f["bytes"]
    assert set(prov.injection_seeds) == {"train", "val", "test"}
    assert len(prov.hardware_fingerprint) == 12
    assert prov.hardware["memory_gb"] > 0


def test_the_dirty_flag_counts_code_changes_not_rewritten_measurements(tmp_path):
    def git(*args: str) -> None:
        identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(["git", *identity, *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "pkg").mkdir()
    (tmp_path / "results" / "default").mkdir(parents=True)
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "default" / "selection.md").write_text("| a |\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    package = tmp_path / "pkg"
    assert not run_module.code_changed(package)
    (tmp_path / "results" / "default" / "selection.md").write_text("| b |\n")
    (tmp_path / "pkg" / "notes.txt").write_text("untracked\n")
    assert not run_module.code_changed(package)
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")
    assert run_module.code_changed(package)


# --- sweeps from the command line -------------------------------------------------------


def sweep(tmp_path: Path, *args: str, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "benchmark", "-m", "experiment=smoke"]
    return subprocess.Popen(
        [*command, f"results_dir={tmp_path}", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def run_records(root: Path) -> dict[str, dict]:
    """run id -> record of every run folder (each must parse)."""
    return {p.parent.name: json.loads(p.read_text()) for p in root.glob("smoke/*/record.json")}


def test_a_failed_run_does_not_stop_the_sweep_and_the_exit_code_says_so(tmp_path):
    # price outliers in the mix: the real sample's purchases carry no price (a failure in
    # phase data on it, while the synthetic data hosts them)
    mix = (*only_type("click_flood"), "anomaly.mix.price_outlier=1.0")
    strict = ("anomaly.skip_unsupported=false", *mix)
    prices = ("dataset=synthetic_small,diginetica", *strict)
    code, out = finish(sweep(tmp_path, "model=random", *prices))
    assert code == 1, out
    assert "sweep: 2 jobs: 1 failed, 1 ok" in out
    assert "job 1/2 (" in out  # where the sweep is, before each job
    assert re.search(r"job 2/2 \(\d+ s elapsed, about \d+ s left\): ", out)
    assert "in phase data: InjectionError: anomaly type(s) of the mix fit no sequence" in out
    assert "'price_outlier': 'no sequence has at least 1 event and a purchase with a known" in out
    statuses = sorted(r["status"] for r in run_records(tmp_path).values())
    assert statuses == ["failed", "ok"]
    before = sorted(tmp_path.rglob("*"))
    code, out = finish(sweep(tmp_path, "model=random", *prices, "dry_run=true"))
    assert code == 0, out
    assert "sweep: 2 jobs: 2 planned, would rerun 1, skip 1" in out
    assert sorted(tmp_path.rglob("*")) == before, "a dry run writes nothing, Hydra included"


def test_two_sweeps_started_together_run_each_config_once_in_their_own_hydra_folders(tmp_path):
    """Both sweeps walk the same two configs in the same order: each config runs in exactly
    one of them (the other finds it running or finished). Hydra names a sweep folder by the
    second it started; the process id beside it keeps the two sweeps' job outcomes apart."""
    quiet = "~hydra.callbacks.report"  # the report after each sweep is not what is tested
    first = sweep(tmp_path, "model=random", "seed=0,1", quiet)
    second = sweep(tmp_path, "model=random", "seed=0,1", quiet)
    outputs = [finish(first), finish(second)]
    for code, out in outputs:
        assert code == 0, out
    ok = sum(len(re.findall(r"^ok: ", out, re.M)) for _, out in outputs)
    passed = sum(
        len(re.findall(r"^(skipped|running elsewhere): ", out, re.M)) for _, out in outputs
    )
    assert (ok, passed) == (2, 2), outputs
    stored = records(store_path(tmp_path), latest_only=False)
    assert sorted(r.run_id for r in stored) == sorted(run_records(tmp_path)), "a config ran twice"
    assert all(r["status"] == "ok" for r in run_records(tmp_path).values())
    folders = sorted((tmp_path / ".hydra" / "smoke").glob("multirun-*"))
    assert len(folders) == 2
    assert {f.name.rsplit("-p", 1)[1] for f in folders} == {str(first.pid), str(second.pid)}
    for folder in folders:
        assert len(list(folder.glob("*/outcome.json"))) == 2


GRID = ("model=random,markov,iforest", "seed=0,1,2,3")


@pytest.mark.slow  # a dozen killed processes
def test_a_sweep_killed_at_random_moments_resumes_to_exactly_one_valid_record_per_run(tmp_path):
    rng = random.Random(7)
    for _ in range(2):
        proc = sweep(tmp_path, *GRID, start_new_session=True)
        time.sleep(rng.uniform(1.5, 5.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    code, out = finish(sweep(tmp_path, *GRID))
    assert code == 0, out
    assert "sweep: 12 jobs:" in out
    found = run_records(tmp_path)  # json.loads on every record: none is half-written
    assert len(found) == 12
    assert all(r["status"] == "ok" for r in found.values())
    assert {(r["model"], r["seed"]) for r in found.values()} == {
        (m, s) for m in ("random", "markov", "iforest") for s in range(4)
    }
    leftovers = [p for p in tmp_path.glob("smoke/*/.*") if p.name != WRITER_LOCK]
    assert not leftovers, "temporary files left behind"
    latest = records(store_path(tmp_path))
    assert sorted(r.run_id for r in latest if r.status == "ok") == sorted(found)
    stored_attempts = {r.attempt_id for r in records(store_path(tmp_path), latest_only=False)}
    assert {r["attempt_id"] for r in found.values()} <= stored_attempts


@pytest.mark.slow  # each launcher starts its own processes
@pytest.mark.parametrize("launcher", ["ray_local", "submitit_local"])
def test_a_tiny_sweep_completes_on_a_scale_out_launcher(tmp_path, launcher):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    code, out = finish(
        sweep(tmp_path, f"hydra/launcher={launcher}", "model=random,markov", env=env)
    )
    assert code == 0, out
    assert "sweep: 2 jobs: 2 ok" in out
    found = run_records(tmp_path)
    assert sorted(r["model"] for r in found.values()) == ["markov", "random"]
    assert all(r["status"] == "ok" for r in found.values())
