"""Held-out anomaly types: absent from training and validation, present in test, and the
report's seen-vs-unseen table."""

import pytest

from benchmark.anomalies.core import InjectionError
from benchmark.anomalies.inject import check_anomaly_config
from benchmark.records.record import RunRecord, from_dict
from benchmark.report.page import unseen_table
from benchmark.report.selection import seen_vs_unseen
from benchmark.run.data import prepare_data

from .conftest import compose_typed


def test_held_out_types_reach_only_the_test_split():
    config = compose_typed(["experiment=smoke", "anomaly.holdout=[click_flood,scraping]"])
    prepared = prepare_data(config.dataset, config.anomaly, 0)
    splits = prepared.summary["splits"]
    for split in ("train", "val"):
        assert splits[split]["per_type"]["click_flood"] == 0
        assert splits[split]["per_type"]["scraping"] == 0
        assert splits[split]["per_type"]["brushing"] > 0
    assert splits["test"]["per_type"]["click_flood"] > 0
    assert splits["test"]["per_type"]["scraping"] > 0
    seen = prepared.summary["types_seen_in_training"]
    assert "click_flood" not in seen
    assert len(seen) == 7
    assert "click_flood" not in prepared.summary["per_type_asked"]["train"]
    assert prepared.summary["per_type_asked"]["test"]["click_flood"] > 0


@pytest.mark.parametrize(
    ("holdout", "message"),
    [
        (["bot"], r"anomaly.holdout=\['bot'\] names types outside the mix"),
        (["click_flood", "scraping"], r"holds out every type of the mix"),
    ],
)
def test_a_holdout_that_leaves_nothing_to_learn_is_refused(holdout, message):
    config = compose_typed(["experiment=smoke", "anomaly=bots"]).anomaly
    config.mix = {"click_flood": 1.0, "scraping": 1.0}
    config.holdout = holdout
    with pytest.raises(InjectionError, match=message):
        check_anomaly_config(config)


def record(model: str, holdout: str, per_type: dict[str, float], seed: int = 0) -> RunRecord:
    types = ["click_flood", "brushing", "scraping"]
    return from_dict(
        {
            "run_id": f"{model}-{holdout}-{seed}",
            "status": "ok",
            "model": model,
            "framework": "numpy",
            "objective": "classify",
            "setting": "supervised",
            "dataset": "synthetic",
            "anomaly": "mixed",
            "seed": seed,
            "config": {"anomaly": {"severity": 0.7, "holdout": [holdout]}},
            "data": {"types_seen_in_training": [t for t in types if t != holdout]},
            "metrics": {"roc_auc": 0.8, "per_type": per_type},
        }
    )


def test_seen_and_unseen_per_type_auc_from_a_leave_one_out_sweep():
    records = [
        record("hgb", "click_flood", {"click_flood": 0.6, "brushing": 0.9, "scraping": 0.95}),
        record("hgb", "brushing", {"click_flood": 1.0, "brushing": 0.5, "scraping": 0.9}),
        record("hgb", "scraping", {"click_flood": 0.98, "brushing": 0.92, "scraping": 0.7}),
    ]
    [entry] = seen_vs_unseen(records)
    assert entry.name == "hgb/numpy"
    assert entry.unseen == {"click_flood": 0.6, "brushing": 0.5, "scraping": 0.7}
    assert entry.seen["click_flood"] == pytest.approx(0.99)
    assert entry.seen["brushing"] == pytest.approx(0.91)
    assert entry.mean("unseen") == pytest.approx(0.6)
    header, [row] = unseen_table([entry])
    assert header[:5] == ["setting", "detector", "seen", "unseen", "gap"]
    assert row[4] == f"{0.6 - entry.mean('seen'):+.3f}"
    assert row[5] == "0.910 / 0.500"  # brushing, the first type in order


def test_runs_without_held_out_types_make_no_table():
    plain = record("hgb", "none", {"click_flood": 0.9})
    plain.data["types_seen_in_training"] = ["click_flood", "brushing", "scraping"]
    assert seen_vs_unseen([plain]) == []


def test_held_out_runs_of_other_configs_are_not_pooled():
    records = [
        record("hgb", "click_flood", {"click_flood": 0.6, "brushing": 0.9}),
        record("hgb", "brushing", {"click_flood": 1.0, "brushing": 0.5}),
    ]
    other = record("hgb", "brushing", {"click_flood": 0.7, "brushing": 0.1}, seed=1)
    other.run_id = "other-epochs"
    other.config = {**other.config, "train": {"epochs": 1}}
    entries = seen_vs_unseen([*records, other])
    assert [e.unseen for e in entries] == [{"click_flood": 0.6, "brushing": 0.5}]
