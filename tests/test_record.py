"""The typed run record: its one JSON form, validation on the way in, and what readers skip."""

import json
import math

import pytest

from benchmark.records.record import (
    Metrics,
    OomRetry,
    RecordError,
    RunRecord,
    RunStatus,
    Timing,
    dumps,
    from_dict,
    load,
    loads,
)
from benchmark.report.table import load_records


def finished() -> RunRecord:
    return RunRecord(
        run_id="abc",
        status=RunStatus.ok,
        model="lstm",
        framework="torch",
        seed=3,
        metrics=Metrics(roc_auc=0.8, roc_auc_ci=(0.75, 0.85), per_type={"brushing": 0.9}),
        timing=Timing(train_seconds=2.0, latency_ms={"batch_1": {"p99": 1.5}}),
        oom_retry=OomRetry("CUDA out of memory", 64, 32),
        training={"epochs": 2, "pretraining": {"epochs": 3}},
    )


def test_a_record_survives_its_json_form_unchanged():
    record = finished()
    assert loads(dumps(record)) == record
    assert loads(dumps(record)).status is RunStatus.ok
    assert json.loads(dumps(record))["metrics"]["per_type"] == {"brushing": 0.9}


def test_non_finite_numbers_are_written_as_null_and_read_back_as_none():
    record = finished()
    record.metrics = Metrics(roc_auc=math.nan, pr_auc=math.inf)
    text = dumps(record)
    assert "NaN" not in text
    assert "Infinity" not in text
    assert (loads(text).result.roc_auc, loads(text).result.pr_auc) == (None, None)


def test_a_bad_field_is_named():
    with pytest.raises(RecordError, match=r"not a run record: seed: .*integer"):
        from_dict({"run_id": "x", "seed": "three"})
    with pytest.raises(RecordError, match=r"metrics\.roc_auc"):
        from_dict({"run_id": "x", "metrics": {"roc_auc": "high"}})
    with pytest.raises(RecordError, match="status"):
        from_dict({"run_id": "x", "status": "done"})
    with pytest.raises(RecordError, match="no JSON object"):
        loads("[1, 2]")
    with pytest.raises(RecordError, match="NaN is not JSON"):
        loads('{"run_id": "x", "wall_seconds": NaN}')


def test_unknown_keys_are_ignored_and_missing_ones_default():
    record = from_dict({"run_id": "x", "written_by": "a later version"})
    assert (record.status, record.metrics, record.timing) == (RunStatus.running, None, Timing())


def test_epochs_trained_counts_pretraining_and_result_needs_metrics():
    assert finished().epochs_trained() == 5
    with pytest.raises(ValueError, match="has no metrics"):
        _ = RunRecord("x", RunStatus.failed).result
    assert not RunRecord("x", RunStatus.ok).is_ok  # ok without metrics is nothing to rank


def test_reports_skip_a_file_that_is_no_record_and_say_which(tmp_path, capsys):
    good, bad = tmp_path / "e" / "abc", tmp_path / "e" / "zzz"
    for folder in (good, bad):
        folder.mkdir(parents=True)
    (good / "record.json").write_text(dumps(finished()))
    (bad / "record.json").write_text('{"run_id": "zzz", "seed": [1]}')
    assert [r.run_id for r in load_records(tmp_path)] == ["abc"]
    assert f"skipped {bad / 'record.json'}: not a run record: seed" in capsys.readouterr().err
    with pytest.raises(RecordError, match="zzz"):
        load(bad / "record.json")
