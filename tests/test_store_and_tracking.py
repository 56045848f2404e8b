"""The results store (append-only SQLite) and W&B logging (offline, read back from its log)."""

import json
import logging
import os
import sqlite3
import subprocess
import sys

import pytest

from benchmark.records.record import RunRecord, from_dict, to_dict
from benchmark.records.store import (
    StoreError,
    append,
    attempts,
    connect,
    ingest,
    records,
    store_path,
)
from benchmark.run.experiment import RECORD_FILE, run

from .wandb_log import read_run


@pytest.fixture
def smoke(compose_config, tmp_path):
    def _smoke(*overrides: str):
        return compose_config(["experiment=smoke", f"results_dir={tmp_path}", *overrides])

    return _smoke


def fake_record(run_id: str, started: str, status: str = "ok", auc: float = 0.5) -> RunRecord:
    return from_dict(
        {
            "run_id": run_id,
            "attempt_id": f"{run_id}-{started}",
            "experiment": "e",
            "status": status,
            "model": "lstm",
            "framework": "torch",
            "objective": "classify",
            "dataset": "synthetic",
            "anomaly": "mixed",
            "seed": 0,
            "started_at": started,
            "finished_at": started,
            "metrics": {"roc_auc": auc},
        }
    )


def test_store_keeps_every_attempt_and_serves_the_latest(tmp_path):
    path = store_path(tmp_path)
    assert append(path, fake_record("a", "t1", "failed"))
    assert append(path, fake_record("a", "t2", "ok", auc=0.8))
    assert append(path, fake_record("b", "t1"))
    assert not append(path, fake_record("b", "t1")), "the same attempt is stored once"
    assert [a.status for a in attempts(path, "a")] == ["failed", "ok"]
    assert attempts(path, "missing") == []
    latest = {r.run_id: r for r in records(path)}
    assert latest["a"].result.roc_auc == 0.8
    assert len(records(path, latest_only=False)) == 3


def test_store_refuses_updates_and_deletes(tmp_path):
    path = store_path(tmp_path)
    append(path, fake_record("a", "t1"))
    with sqlite3.connect(path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE runs SET status = 'ok'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM runs")
        # REPLACE deletes without firing DELETE triggers: the INSERT triggers stop it
        conn.execute(
            "INSERT OR REPLACE INTO runs (run_id, status, attempt, record) "
            "VALUES ('a', 'failed', 'a-t1', '{}')"
        )
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(
                "INSERT OR REPLACE INTO runs (id, run_id, status, attempt, record) "
                "VALUES (1, 'a', 'failed', 'other', '{}')"
            )
    (kept,) = records(path, latest_only=False)
    assert (kept.status, kept.result.roc_auc) == ("ok", 0.5)


def test_the_harness_connection_cannot_drop_the_store(tmp_path):
    path = store_path(tmp_path)
    append(path, fake_record("a", "t1"))
    with pytest.raises(StoreError, match="append-only"), connect(path) as conn:
        conn.execute("DROP TABLE runs")
    assert len(records(path, latest_only=False)) == 1


def test_readers_connect_read_only(tmp_path):
    path = store_path(tmp_path)
    append(path, fake_record("a", "t1"))
    with connect(path, read_only=True) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)
    with pytest.raises(StoreError), connect(path, read_only=True) as conn:
        conn.execute(
            "INSERT INTO runs (run_id, status, attempt, record) VALUES ('b', 'ok', 'x', '{}')"
        )
    assert len(records(path, latest_only=False)) == 1


def test_a_busy_store_says_so_and_never_suggests_moving_it(tmp_path, monkeypatch):
    from benchmark.records import store

    path = store_path(tmp_path)
    append(path, fake_record("a", "t1"))
    monkeypatch.setattr(store, "BUSY_SECONDS", 0.1)
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="is busy") as caught:
            append(path, fake_record("b", "t2"))
        assert "move it aside" not in str(caught.value)
    finally:
        holder.rollback()
        holder.close()
    assert append(path, fake_record("b", "t2"))


def test_a_corrupt_store_is_a_one_line_error_naming_the_fix(tmp_path):
    store_path(tmp_path).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"move it aside.*rebuilds"):
        append(store_path(tmp_path), fake_record("a", "t1"))


def test_store_is_queryable_with_sql_on_nested_fields(tmp_path):
    path = store_path(tmp_path)
    for i, auc in enumerate((0.6, 0.9, 0.7)):
        append(path, fake_record(f"r{i}", "t", auc=auc))
    with sqlite3.connect(path) as conn:
        best = conn.execute(
            "SELECT run_id FROM runs ORDER BY json_extract(record, '$.metrics.roc_auc') DESC"
        ).fetchone()
    assert best == ("r1",)


def test_runs_land_in_the_store_and_a_rerun_is_detected(smoke, tmp_path):
    first = run(smoke())
    assert run(smoke()).status == "skipped"  # resume=ok: a finished config is not rerun
    second = run(smoke("resume=none"))
    assert second.run_id == first.run_id
    assert first.record.previous_attempts == 0
    assert second.record.previous_attempts == 1
    stored = records(store_path(tmp_path), latest_only=False)
    assert [r.run_id for r in stored] == [first.run_id] * 2
    assert stored[-1].result.roc_auc == pytest.approx(second.record.result.roc_auc)


def test_ingest_rebuilds_a_store_from_run_folders(smoke, tmp_path):
    result = run(smoke())
    store_path(tmp_path).unlink()
    assert ingest(tmp_path) == (1, 0)
    assert ingest(tmp_path) == (0, 1)
    (stored,) = records(store_path(tmp_path))
    assert to_dict(stored) == json.loads((result.run_dir / RECORD_FILE).read_text())


def order_of_wandb_calls(monkeypatch) -> list[tuple[str, int]]:
    """The tracker's epoch and finish calls, in the order the run makes them."""
    from benchmark.records import tracking

    seen: list[tuple[str, int]] = []
    real_log, real_finish = tracking.LiveRun.log_epoch, tracking.LiveRun.finish

    def log_epoch(self, entry):
        seen.append(("epoch", int(entry["epoch"])))
        real_log(self, entry)

    def finish(self, record, run_dir):
        seen.append(("finish", 0))
        return real_finish(self, record, run_dir)

    monkeypatch.setattr(tracking.LiveRun, "log_epoch", log_epoch)
    monkeypatch.setattr(tracking.LiveRun, "finish", finish)
    return seen


def test_offline_wandb_run_holds_config_curves_and_metrics(smoke, tmp_path, monkeypatch):
    console = logging.StreamHandler(sys.stderr)  # as the command line logs (Hydra's setup)
    monkeypatch.setattr(logging.getLogger("benchmark"), "handlers", [console])
    monkeypatch.setattr(logging.getLogger("benchmark"), "level", logging.INFO)
    seen = order_of_wandb_calls(monkeypatch)
    result = run(smoke("logger=wandb_offline", "train.epochs=3"))
    record = result.record
    assert record.tracking["status"] == "ok", record.tracking
    # live curves: each epoch reaches W&B when it ends, before the run's results
    epochs = [("epoch", e + 1) for e in range(record.training["epochs"])]
    assert seen == [*epochs, ("finish", 0)]
    (run_dir,) = (tmp_path / "wandb").glob(f"offline-run-*-{record.tracking['id']}")
    logged = read_run(run_dir)
    assert logged["run"].run_group == "smoke"
    assert logged["run"].display_name == f"smoke/{result.run_id}"
    assert {"model:lstm", "framework:torch", "objective:classify"} <= set(logged["run"].tags)
    assert logged["config"]["model"]["name"] == "lstm"
    assert logged["config"]["provenance"]["git_sha"] == record.provenance.git_sha
    epochs = [h for h in logged["history"] if "epoch/train_loss" in h]
    assert [h["epoch/train_loss"] for h in epochs] == pytest.approx(
        [e["train_loss"] for e in record.training["history"]]
    )
    summary = logged["summary"]
    assert summary["metrics/roc_auc"] == pytest.approx(record.result.roc_auc)
    assert summary["metrics/per_type/click_flood"] == pytest.approx(
        record.result.per_type["click_flood"]
    )
    assert summary["timing/train_seconds"] == pytest.approx(record.timing.train_seconds)
    per_type = json.loads((run_dir / "files" / summary["per_type_roc_auc/path"]).read_text())
    assert dict(per_type["data"]) == pytest.approx(record.result.per_type)
    roc = json.loads((run_dir / "files" / summary["roc_curve_table/path"]).read_text())
    assert roc["columns"] == ["fpr", "tpr"]
    assert roc["data"][0] == [0.0, 0.0]
    assert roc["data"][-1] == [1.0, 1.0]
    # what its users expect besides: scores and weights as an artifact, the console kept, a
    # plain summary beside the run, nothing written outside the results folder
    assert logged["artifacts"][f"run-{result.run_id}"] == (
        "run-output",
        ["checkpoint.safetensors", "scores.npz"],
    )
    console = (run_dir / "files" / "output.log").read_text()
    assert "epoch 3/3: train loss" in console
    plain = json.loads((run_dir / "summary.json").read_text())
    assert plain["metrics/roc_auc"] == pytest.approx(record.result.roc_auc)
    assert plain["run_id"] == result.run_id
    assert record.tracking["dir"] == str(run_dir)


@pytest.mark.parametrize("broken", ["init", "log", "finish"])
def test_a_wandb_failure_leaves_the_record_intact(smoke, tmp_path, monkeypatch, broken):
    import wandb

    def fail(*args, **kwargs):
        raise OSError("No space left on device")

    if broken == "init":
        monkeypatch.setattr(wandb, "init", fail)
    else:
        real_init = wandb.init

        def init(*args, **kwargs):
            handle = real_init(*args, **kwargs)
            monkeypatch.setattr(handle, broken, fail)
            return handle

        monkeypatch.setattr(wandb, "init", init)
    result = run(smoke("logger=wandb_offline"))
    assert result.status == "ok"
    assert result.record.tracking["status"] == "failed"
    assert "No space left on device" in result.record.tracking["error"]
    on_disk = json.loads((result.run_dir / RECORD_FILE).read_text())
    assert on_disk["status"] == "ok"
    assert on_disk["metrics"]["roc_auc"] == pytest.approx(result.record.result.roc_auc)
    assert records(store_path(tmp_path))[0].tracking["status"] == "failed"


def test_a_run_writes_nothing_outside_its_results_folder(tmp_path):
    """The working folder and the home folder (where W&B keeps its settings, cache and
    artifact staging by default) stay empty: everything lands under results_dir."""
    cwd, home, results = tmp_path / "cwd", tmp_path / "home", tmp_path / "results"
    wandb_run = ("logger=wandb_offline", f"results_dir={results}")
    cwd.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    done = subprocess.run(
        [sys.executable, "-m", "benchmark", "experiment=smoke", "model=random", *wandb_run],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert list(cwd.rglob("*")) == []
    assert list(home.rglob("*")) == []
    assert list(results.glob("smoke/*/record.json"))
    assert list((results / "wandb").glob("offline-run-*"))
