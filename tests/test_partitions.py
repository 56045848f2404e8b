"""A table beyond dataset.memory_gb is prepared partition by partition: the same sequences as
the whole table in one piece, splits still disjoint by user, vocabularies still from the whole
training split, and nothing left on disk."""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from benchmark.run.data import prepare_data
from benchmark.speed.data_stage import TAOBAO_FIELDS, TAOBAO_MAPPING, write_taobao_layout
from datasets.features import FIRST_KNOWN

from .conftest import compose_typed


@pytest.fixture(scope="module")
def taobao(tmp_path_factory):
    folder = tmp_path_factory.mktemp("taobao")
    csv = folder / "UserBehavior.csv"
    write_taobao_layout(csv, 60_000, users=600)
    path = folder / "events.parquet"
    pq.write_table(pacsv.read_csv(csv, pacsv.ReadOptions(column_names=TAOBAO_FIELDS)), path)
    return path


def prepared(path, tmp_path, *overrides):
    cache = tmp_path / "cache"
    cfg = compose_typed(
        [*TAOBAO_MAPPING, f"dataset.path={path}", f"dataset.cache_dir={cache}", *overrides]
    )
    return prepare_data(cfg.dataset, cfg.anomaly, 0), cache


def test_partitions_give_the_same_sequences_as_the_whole_table(taobao, tmp_path):
    """Also under a chronological split, cut once for every partition: validation and test
    users start after every training user."""
    every_event = [
        "anomaly=none",
        "dataset.sequence.min_length=1",
        "dataset.sequence.max_length=1000",
        "dataset.split.method=chronological",
    ]
    whole, _ = prepared(taobao, tmp_path, *every_event, "dataset.memory_gb=null")
    parts, cache = prepared(taobao, tmp_path, *every_event, "dataset.memory_gb=0.005")
    assert whole.summary["partitions"] == 1
    assert parts.summary["partitions"] >= 3  # 60k rows over a 16k-row budget
    assert list(cache.iterdir()) == []  # the partition files are gone
    for key in ("source_events", "lengths"):
        assert parts.summary[key] == whole.summary[key], key

    def lengths(data) -> list[int]:
        every = np.concatenate([data.arrays[s].length for s in ("train", "val", "test")])
        return sorted(every.tolist())

    assert lengths(parts) == lengths(whole)  # gap sessions do not depend on the partition
    users = {s: set(parts.arrays[s].user_id.tolist()) for s in ("train", "val", "test")}
    assert not users["train"] & users["val"]
    assert not users["train"] & users["test"]
    assert not users["val"] & users["test"]
    table = pq.read_table(taobao)
    first: dict[int, int] = {}
    for u, t in zip(table["user"].to_pylist(), table["time"].to_pylist(), strict=True):
        first[u] = min(t, first.get(u, t))
    starts = {s: [first[u] for u in users[s]] for s in users}
    assert max(starts["train"]) <= min(starts["val"])
    assert max(starts["val"]) <= min(starts["test"])
    share = len(users["train"]) / sum(len(u) for u in users.values())
    assert share == pytest.approx(0.7, abs=0.02)
    sessions = np.concatenate([parts.arrays[s].session_id for s in ("train", "val", "test")])
    assert len(np.unique(sessions)) == len(sessions)
    # The item vocabulary holds exactly the items of the training users' events.
    source = pq.read_table(taobao)
    user, item = source["user"].to_numpy(), source["item"].to_numpy()
    train_items = len(np.unique(item[np.isin(user, list(users["train"]))]))
    assert len(parts.vocabs.item) == FIRST_KNOWN + train_items
    shares = [parts.summary["splits"][s]["users"] / 600 for s in ("train", "val", "test")]
    assert shares == pytest.approx([0.7, 0.15, 0.15], abs=0.06)


def test_partitions_inject_at_the_asked_rate_with_exact_labels(taobao, tmp_path):
    data, _ = prepared(taobao, tmp_path, "dataset.memory_gb=0.005", "dataset.workers=2")
    alone, _ = prepared(taobao, tmp_path, "dataset.memory_gb=0.005", "dataset.workers=1")
    for split in ("train", "val", "test"):  # worker processes change nothing
        a, b = data.arrays[split], alone.arrays[split]
        assert np.array_equal(a.session_id, b.session_id), split
        for name, column in a.events.items():
            assert np.array_equal(column, b.events[name]), (split, name)
    test = data.summary["splits"]["test"]
    asked = data.summary["per_type_asked"]["test"]
    assert test["anomalous_sequences"] == pytest.approx(sum(asked.values()), abs=3)
    assert test["contamination"] == pytest.approx(0.1, abs=0.02)
    arrays, labels = data.arrays["test"], data.labelled["test"]
    flagged = np.add.reduceat(arrays.events["event_label"], arrays.offsets[:-1]) > 0
    assert not np.any(flagged & ~labels.label)  # changed events only in labelled sequences
    assert len(labels.details) == labels.label.sum()


def test_the_users_own_labels_survive_partitioning(tmp_path):
    rows = ["user,ts,type,item,label"]
    rng = np.random.default_rng(1)
    for u in range(300):
        bot = u % 5 == 0
        for k in range(40):
            item = 7 if bot else int(rng.integers(1, 500))
            rows.append(f"{u},{1_700_000_000 + k * 7},view,{item},{'bot' if bot else 'human'}")
    path = tmp_path / "own.csv"
    path.write_text("\n".join(rows) + "\n")
    own = [
        "anomaly=none",
        "dataset.table.session=null",
        "dataset.table.user=user",
        "dataset.table.timestamp=ts",
        "dataset.table.event_type=type",
        "dataset.table.item=item",
        "dataset.table.category=null",
        "dataset.table.label=label",
        "dataset.table.label_level=user",
        "dataset.sequence.session_by=session",
        "dataset.sequence.max_length=50",
    ]
    whole, _ = prepared(path, tmp_path, *own, "dataset.memory_gb=null")
    parts, _ = prepared(path, tmp_path, *own, "dataset.memory_gb=0.001")
    assert parts.summary["partitions"] >= 3
    assert parts.summary["source"]["labels"] == whole.summary["source"]["labels"]
    assert parts.summary["source"]["labels"] == {"normal": 240, "bot": 60}
    for split in ("train", "val", "test"):
        arrays, labels = parts.arrays[split], parts.labelled[split]
        bots = arrays.user_id % 5 == 0
        assert np.array_equal(labels.label, bots), split


def test_a_workers_error_is_raised_as_its_own_and_a_dead_worker_names_the_fix(taobao, tmp_path):
    from dataclasses import replace

    from benchmark.run.data import prepare_partition, run_workers
    from benchmark.run.workers import worker_result
    from datasets.loaders.common import Interner, Quarantine
    from datasets.loaders.table import PartitionedTable, TableMapping

    cfg = compose_typed([*TAOBAO_MAPPING, f"dataset.path={taobao}"])
    missing = tmp_path / "gone.parquet"
    table = PartitionedTable([taobao], TableMapping(), Quarantine(True), Interner(), 0, [[]])
    broken = replace(table, part_files=[[missing], [missing]])
    tasks = [(prepare_partition, (broken, k, cfg.dataset, cfg.anomaly, {})) for k in (0, 1)]
    with pytest.raises(FileNotFoundError, match=r"gone\.parquet"):
        run_workers(tasks, 2, tmp_path)
    with pytest.raises(MemoryError, match=r"lower dataset\.memory_gb or dataset\.workers"):
        worker_result(tmp_path, 7, -9)


def test_prepared_data_is_cached_by_everything_that_made_it(taobao, tmp_path, caplog):
    cached = ["dataset.cache=true", "dataset.cache_min_mb=0"]
    first, cache = prepared(taobao, tmp_path, *cached)
    again, _ = prepared(taobao, tmp_path, *cached)
    assert first.summary["prepared_cache"]["status"] == "stored"
    assert again.summary["prepared_cache"]["status"] == "hit"
    for split in ("train", "val", "test"):
        a, b = first.arrays[split], again.arrays[split]
        assert a.width == b.width
        for name, column in a.columns().items():
            assert np.array_equal(column, b.columns()[name]), (split, name)
        assert again.labelled[split].details == first.labelled[split].details
        assert np.array_equal(again.labelled[split].eligible, first.labelled[split].eligible)
    assert np.array_equal(again.vocabs.item.values, first.vocabs.item.values)
    assert {k: v for k, v in again.summary.items() if k != "prepared_cache"} == {
        k: v for k, v in first.summary.items() if k != "prepared_cache"
    }
    other, _ = prepared(taobao, tmp_path, *cached, "anomaly.severity=0.5")
    assert other.summary["prepared_cache"]["status"] == "stored"  # another key
    assert len(list(cache.glob("prepared-*.npz"))) == 2
    stored = first.summary["prepared_cache"]["file"]
    with open(stored, "r+b") as f:  # a damaged copy is prepared again, with a warning
        f.truncate(1000)
    rebuilt, _ = prepared(taobao, tmp_path, *cached)
    assert rebuilt.summary["prepared_cache"]["status"] == "stored"
    assert "unreadable" in caplog.text


def test_the_card_of_a_partitioned_table_is_the_card_of_the_whole(taobao, tmp_path, capsys):
    from benchmark.run.describe import main

    base = [*TAOBAO_MAPPING, f"dataset.path={taobao}", f"dataset.cache_dir={tmp_path}"]
    assert main([*base, "dataset.memory_gb=null"]) == 0
    whole = capsys.readouterr().out.splitlines()
    assert main([*base, "dataset.memory_gb=0.005"]) == 0
    parts = capsys.readouterr().out.splitlines()
    facts = ("rows", "sessions", "users", "items", "categories", "event types", "session length")
    for fact in facts:
        line = next(x for x in whole if x.strip().startswith(fact))
        assert line in parts, fact
    assert "rows: 60,000" in "\n".join(whole)
    assert list(tmp_path.iterdir()) == []  # the partition files are gone
