import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from benchmark.anomalies.core import InjectionError
from benchmark.anomalies.inject import ANOMALY_TYPES
from benchmark.records.record import load
from benchmark.run.data import prepare_data
from benchmark.run.experiment import CONFIG_FILE, RECORD_FILE, as_config, run
from datasets.features import SequenceArrays

from .conftest import only_type


@pytest.fixture
def smoke(compose_config, tmp_path):
    def _smoke(*overrides: str):
        return compose_config(["experiment=smoke", f"results_dir={tmp_path}", *overrides])

    return _smoke


def test_run_writes_config_and_record_under_experiment_and_run_id(smoke, tmp_path, caplog):
    caplog.set_level("INFO", logger="benchmark")
    result = run(smoke())
    assert result.status == "ok"
    # progress: every phase announced and timed, every epoch a line of its own
    phases = ["setup", "data", "build", "train", "score", "evaluate"]
    assert list(result.record.phase_seconds) == phases
    assert all(s >= 0 for s in result.record.phase_seconds.values())
    assert [f"{p} ..." for p in phases[1:]] == [m for m in caplog.messages if m.endswith(" ...")]
    train = result.record.data["splits"]["train"]
    data_line = f"data: train {train['sequences']:,} sequences ({train['anomalous_sequences']:,} "
    assert any(m.startswith(data_line + "anomalous), val ") for m in caplog.messages)
    epochs = result.record.training["epochs"]
    epoch_lines = [m for m in caplog.messages if m.startswith("epoch ")]
    assert len(epoch_lines) == epochs
    assert epoch_lines[0].startswith(f"epoch 1/{smoke().train.epochs}: train loss ")
    assert result.run_dir == tmp_path / "smoke" / result.run_id
    saved = OmegaConf.load(result.run_dir / CONFIG_FILE)
    assert saved["experiment_name"] == "smoke"
    assert saved["model"]["name"] == "lstm"
    record = load(result.run_dir / RECORD_FILE)
    assert record.status == "ok"
    assert record.run_id == result.run_id
    splits = record.data["splits"]
    assert set(splits) == {"train", "val", "test"}
    assert splits["test"]["anomalous_sequences"] == round(0.1 * splits["test"]["sequences"])
    assert sum(splits["test"]["per_type"].values()) == splits["test"]["anomalous_sequences"]
    assert set(splits["test"]["per_type"]) == set(ANOMALY_TYPES)
    assert record.provenance.versions["python"].startswith("3.11")
    assert record.provenance.versions["numpy"] == np.__version__
    assert record.provenance.hardware["cpu_count"] >= 1
    assert record.error is None
    assert record.threads >= 1  # the CPU threads chosen for the detector
    assert record.config["experiment_name"] == "smoke"


def test_rerun_of_the_same_config_lands_in_the_same_place(smoke):
    first, second = run(smoke()), run(smoke())
    assert first.run_id == second.run_id
    assert run(smoke("seed=1")).run_id != first.run_id


def test_data_seed_fixes_the_data_while_seed_varies(smoke):
    a = prepare_data(
        as_config(smoke("seed=1", "data_seed=9")).dataset, as_config(smoke()).anomaly, 9
    )
    b = run(smoke("seed=2", "data_seed=9"))
    assert b.record.data["splits"]["test"]["events"] == a.arrays["test"].length.sum()


def test_a_failed_run_still_writes_its_record(smoke, tmp_path):
    # A views-only dataset and a mix of price outliers alone: injection cannot comply.
    cfg = smoke("dataset=diginetica", "anomaly.skip_unsupported=false", *only_type("price_outlier"))
    with pytest.raises(InjectionError, match="price_outlier"):
        run(cfg)
    records = list(tmp_path.glob("smoke/*/record.json"))
    assert len(records) == 1
    record = load(records[0])
    assert record.status == "failed"
    assert record.failed_phase == "data"
    assert "price_outlier" in record.error


def test_splits_share_no_user_and_vocab_comes_from_train(smoke):
    config = as_config(smoke())
    data = prepare_data(config.dataset, config.anomaly, 0, keep_events=True)
    assert data.events is not None
    users = {name: set(lab.events.user_id.tolist()) for name, lab in data.events.items()}
    assert not users["train"] & users["val"]
    assert not users["train"] & users["test"]
    train_items = set(data.events["train"].events.item_id.tolist())
    test_items = data.events["test"].events.item_id
    unseen = ~np.isin(test_items, list(train_items))
    encoded = data.vocabs.item.encode(test_items)
    assert np.all(encoded[unseen] == 1)
    assert data.arrays["train"].label.sum() == data.labelled["train"].label.sum()


def test_save_arrays_keeps_inputs_labels_and_anomaly_metadata(smoke):
    result = run(smoke("save_arrays=true"))
    test = np.load(result.run_dir / "test.npz")
    assert test["item"].shape == (test["offsets"][-1],)
    arrays = SequenceArrays.from_columns(test)
    assert arrays.length.sum() == result.record.data["splits"]["test"]["events"]
    assert arrays.item.shape == arrays.mask.shape == (len(arrays), int(test["width"]))
    assert test["label"].sum() == result.record.data["splits"]["test"]["anomalous_sequences"]
    lines = (result.run_dir / "test_anomalies.jsonl").read_text().splitlines()
    meta = [json.loads(line) for line in lines]
    assert len(meta) == test["label"].sum()
    assert {m["type"] for m in meta} <= set(ANOMALY_TYPES)
    assert all(0.0 <= m["severity"] <= 1.0 and "params" in m for m in meta)
    flagged = set(test["session_id"][test["label"]].tolist())
    assert {m["session"] for m in meta} == flagged


def test_atomic_write_leaves_the_old_file_and_no_debris_on_failure(tmp_path):
    from benchmark.records.atomic import atomic_path, write_atomic

    target = tmp_path / "record.json"
    write_atomic(target, "old")

    def crash_mid_write() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        crash_mid_write()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]
    with atomic_path(tmp_path / "x.npz") as tmp:
        np.savez(tmp, a=np.arange(3))  # the suffix is kept: numpy appends nothing
    np.testing.assert_array_equal(np.load(tmp_path / "x.npz")["a"], np.arange(3))
