"""dataset=events: a user's own table in any supported layout, mapped by column names, reads
to the events an independent count finds; labels the user has become the ground truth; bad
rows are named in every format."""

from __future__ import annotations

import bz2
import gzip
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from benchmark.anomalies.inject import ANOMALY_TYPES
from datasets.loaders.common import DataFileError, LoadOptions
from datasets.loaders.registry import LOADERS
from datasets.loaders.table import ProfileMapping, TableMapping
from datasets.schema import EventType

from .conftest import ROOT, compose_typed

SAMPLE = ROOT / "datasets/samples/rees46/2019-Oct_head_sessions.csv"
MAPPING = TableMapping(
    user="user_id",
    session="user_session",
    timestamp="event_time",
    time_format="%Y-%m-%d %H:%M:%S UTC",
    event_type="event_type",
    item="product_id",
    category="category_id",
    price="price",
)
FIELDS = ("session_id", "user_id", "timestamp", "event_type", "item_id", "category_id", "price")


def read(path: Path, mapping: TableMapping = MAPPING, **options):
    return LOADERS["events"](path, LoadOptions(table=mapping, **options))


@pytest.fixture(scope="module")
def reference():
    return read(SAMPLE).events


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return pacsv.read_csv(SAMPLE, convert_options=pacsv.ConvertOptions(timestamp_parsers=[]))


def same_events(a, b) -> None:
    assert len(a) == len(b) > 1000
    for name in FIELDS:
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name


def write_jsonl(table: pa.Table, path: Path, opener=open) -> Path:
    import json

    with opener(path, "wt") as f:
        for row in table.to_pylist():
            f.write(json.dumps(row) + "\n")
    return path


def test_the_mapping_reads_what_an_independent_count_finds(reference, table):
    """Events, sessions, users and event types of the REES46 sample counted with pyarrow
    alone (exact repeats of session, user, time, type and item counted once)."""
    keys = ["user_session", "user_id", "event_time", "event_type", "product_id"]
    distinct = table.group_by(keys).aggregate([])
    assert len(reference) == distinct.num_rows == 1_475
    assert len(np.unique(reference.session_id)) == len(pc.unique(table["user_session"])) == 701
    assert len(np.unique(reference.user_id)) == len(pc.unique(table["user_id"])) == 652
    by_type = distinct.group_by("event_type").aggregate([([], "count_all")]).to_pylist()
    names = {"view": "VIEW", "cart": "ADD_TO_CART", "purchase": "PURCHASE"}
    counts = np.bincount(reference.event_type, minlength=8)
    for row in by_type:
        assert counts[EventType[names[row["event_type"]]]] == row["count_all"]
    assert LOADERS["rees46"](SAMPLE, LoadOptions()).events.session_id.tolist() == (
        reference.session_id.tolist()
    ), "dataset=rees46 is this mapping with the brand added"


def test_a_brand_column_gives_each_items_latest_category_brand_and_price(table):
    """The item table against pyarrow: each item's attributes at its latest event (the
    later row on a tie); brands are hashed, so the same items share a brand."""
    got = LOADERS["rees46"](SAMPLE, LoadOptions())
    assert got.modalities == ("behaviour", "item_attributes")
    items = got.items
    assert items is not None
    rows = table.to_pylist()
    latest: dict[int, dict] = {}
    for row in rows:  # file order: a later row replaces an earlier one at the same time
        known = latest.get(row["product_id"])
        if known is None or row["event_time"] >= known["event_time"]:
            latest[row["product_id"]] = row
    assert items.item_id.tolist() == sorted(latest)
    want = [latest[i] for i in sorted(latest)]
    assert items.category_id.tolist() == [r["category_id"] for r in want]
    np.testing.assert_allclose(items.price, [r["price"] for r in want], rtol=1e-6)
    pairs = {(b, r["brand"]) for b, r in zip(items.brand_id.tolist(), want, strict=True)}
    assert len(pairs) == len({r["brand"] for r in want}) > 50, "one hash per brand"
    with pytest.raises(DataFileError, match="brand is an item attribute: it needs"):
        read(SAMPLE, replace(MAPPING, item=None, brand="brand"))


@pytest.mark.parametrize(
    "layout", ["csv.gz", "csv.bz2", "csv.zst", "tsv", "parquet", "hive", "jsonl", "jsonl.gz"]
)
def test_every_layout_reads_to_the_same_events(tmp_path, table, reference, layout):
    if layout.startswith("csv"):
        data = SAMPLE.read_bytes()
        path = tmp_path / f"events.{layout}"
        if layout == "csv.gz":
            path.write_bytes(gzip.compress(data))
        elif layout == "csv.bz2":
            path.write_bytes(bz2.compress(data))
        else:
            with pa.output_stream(str(path), compression="zstd") as out:
                out.write(data)
    elif layout == "tsv":
        path = tmp_path / "events.tsv"
        pacsv.write_csv(table, path, pacsv.WriteOptions(delimiter="\t"))
    elif layout == "parquet":
        path = tmp_path / "events.parquet"
        pq.write_table(table, path, row_group_size=300)
    elif layout == "hive":  # a partitioned warehouse export: one folder per event type
        path = tmp_path / "export"
        ds.write_dataset(
            table, path, format="parquet", partitioning=["event_type"], partitioning_flavor="hive"
        )
    else:
        opener = gzip.open if layout.endswith(".gz") else open
        path = write_jsonl(table, tmp_path / f"events.{layout}", opener)
    same_events(read(path).events, reference)


def test_native_timestamps_and_epoch_numbers_give_the_same_times(tmp_path, table, reference):
    text = table.column("event_time")
    stamps = pc.strptime(text, format="%Y-%m-%d %H:%M:%S UTC", unit="s")
    typed = table.set_column(table.schema.get_field_index("event_time"), "event_time", stamps)
    pq.write_table(typed, tmp_path / "typed.parquet")
    mapping = replace(MAPPING, time_format=None)
    same_events(read(tmp_path / "typed.parquet", mapping).events, reference)
    millis = pc.multiply(stamps.cast(pa.int64()), 1000)
    as_ms = table.set_column(table.schema.get_field_index("event_time"), "event_time", millis)
    pacsv.write_csv(as_ms, tmp_path / "ms.csv")
    same_events(read(tmp_path / "ms.csv", mapping).events, reference)  # unit found: ms
    seconds = read(tmp_path / "ms.csv", replace(mapping, time_unit="ms")).events.timestamp
    assert np.allclose(seconds, reference.timestamp)
    with pytest.raises(DataFileError, match=r"ms\.csv:2: .* read in s is outside the years"):
        read(tmp_path / "ms.csv", replace(mapping, time_unit="s"))  # milliseconds as seconds


def test_a_time_zone_moves_wall_clock_times_to_utc(tmp_path):
    path = tmp_path / "local.csv"
    path.write_text("user,time,type\n1,2024-07-01 10:00:00,view\n1,2024-07-01 10:05:00,buy\n")
    mapping = TableMapping(
        user="user",
        timestamp="time",
        event_type="type",
        time_format="%Y-%m-%d %H:%M:%S",
        time_zone="Europe/Berlin",
    )
    events = read(path, mapping).events
    assert events.timestamp.tolist() == [1719820800.0, 1719821100.0]  # 08:00 and 08:05 UTC
    assert events.event_type.tolist() == [0, 6]  # view, purchase ('buy' is a known spelling)


def test_own_event_names_map_onto_the_vocabulary(tmp_path):
    path = tmp_path / "own.csv"
    path.write_text("sid,ts,action\na,1,seen\na,2,checkout\n")
    mapping = TableMapping(
        session="sid",
        timestamp="ts",
        event_type="action",
        event_types={"seen": "view", "checkout": "purchase"},
    )
    assert read(path, mapping).events.event_type.tolist() == [0, 6]
    with pytest.raises(DataFileError, match=r"own.csv:3: unknown event type 'checkout'"):
        read(path, replace(mapping, event_types={"seen": "view"}))


@pytest.mark.parametrize(
    ("level", "rows", "counts"),
    [
        ("session", ["s1,u1,1,view,0", "s1,u1,2,view,0", "s2,u2,1,view,bot"], [1, 1]),
        ("event", ["s1,u1,1,view,0", "s1,u1,2,view,fraud", "s2,u2,1,view,0"], [1, 1]),
        ("user", ["s1,u1,1,view,bot", "s2,u1,2,view,bot", "s3,u2,1,view,"], [1, 1]),
    ],
)
def test_the_users_own_labels_become_the_ground_truth(tmp_path, level, rows, counts):
    path = tmp_path / "labelled.csv"
    path.write_text("session,user,ts,type,label\n" + "\n".join(rows) + "\n")
    mapping = TableMapping(
        session="session",
        user="user",
        timestamp="ts",
        event_type="type",
        label="label",
        label_level=level,
    )
    dataset = read(path, mapping)
    labels = dataset.session_labels
    assert labels.by_user == (level == "user")
    assert list(labels.counts().values()) == counts
    assert dataset.source["labels"] == labels.counts()


def test_bad_rows_are_named_in_parquet_by_row_and_quarantined_when_asked(tmp_path, table):
    items = table.column("product_id").to_pylist()
    items[2] = -1
    bad = table.set_column(
        table.schema.get_field_index("product_id"), "product_id", pa.array(items)
    )
    pq.write_table(bad, tmp_path / "bad.parquet")
    message = r"bad.parquet: row 3: column 'product_id': -1 is outside \[0, "
    with pytest.raises(DataFileError, match=message):
        read(tmp_path / "bad.parquet")
    kept = read(tmp_path / "bad.parquet", strict=False)
    assert kept.source["quarantined"] == {"out_of_range": 1}
    assert len(kept.events) == len(table) - 1


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (replace(MAPPING, item="sku"), r"no column 'sku' \(dataset.table.item\); the file has"),
        (replace(MAPPING, user=None, session=None), "needs a user or a session column"),
        (replace(MAPPING, time_unit="minutes"), r"time_unit='minutes': use one of"),
    ],
)
def test_a_wrong_mapping_is_one_line_naming_the_fix(mapping, message):
    with pytest.raises(DataFileError, match=message):
        read(SAMPLE, mapping)


def test_a_folder_without_tables_and_a_nameless_format_say_so(tmp_path):
    (tmp_path / "notes.md").write_text("not data")
    with pytest.raises(DataFileError, match="no CSV, Parquet or JSON Lines files under"):
        read(tmp_path)
    (tmp_path / "events.dat").write_text("a,b\n")
    with pytest.raises(DataFileError, match=r"set dataset\.table\.format"):
        read(tmp_path / "events.dat")


def labelled_table(path: Path) -> Path:
    """400 sessions of 6 views; every fourth a bot (one item, 1 s apart), labelled 'bot'."""
    rows = ["session,ts,type,item,label"]
    rng = np.random.default_rng(0)
    for s in range(400):
        bot = s % 4 == 0
        for k in range(6):
            item = 7 if bot else int(rng.integers(1, 60))
            rows.append(
                f"s{s},{1_700_000_000 + s * 100 + k * (1 if bot else 20)},view,{item},"
                f"{'bot' if bot else 'human'}"
            )
    path.write_text("\n".join(rows) + "\n")
    return path


LABELLED = [
    "experiment=smoke",
    "model=markov",
    "dataset=events",
    "dataset.table.session=session",
    "dataset.table.user=null",
    "dataset.table.timestamp=ts",
    "dataset.table.event_type=type",
    "dataset.table.item=item",
    "dataset.table.category=null",
    "dataset.table.price=null",
    "dataset.table.label=label",
    "dataset.table.time_format=null",
    "dataset.split.by=session",
]


def test_a_run_evaluates_on_the_users_labels(compose_config, tmp_path):
    from benchmark.report.selection import setting_of
    from benchmark.run.experiment import run

    path = labelled_table(tmp_path / "own.csv")
    cfg = compose_config(
        [*LABELLED, "anomaly=none", f"dataset.path={path}", f"results_dir={tmp_path / 'r'}"]
    )
    record = run(cfg).record
    assert record.data["real_labels"] is True
    assert record.data["injected"] is False
    assert record.result.n_test_anomalies > 0
    assert set(record.result.per_type) == {"bot"}
    assert setting_of(record) == "events / the data's own labels / unsupervised"


def test_anomalies_injected_on_top_of_the_users_labels_hit_only_its_normal_sessions(
    compose_config, tmp_path, caplog
):
    from benchmark.report.selection import setting_of
    from benchmark.run.data import prepare_data
    from benchmark.run.experiment import run

    path = labelled_table(tmp_path / "own.csv")
    two_types = [
        f"anomaly.mix.{t}={float(t in ('click_flood', 'scraping'))}" for t in ANOMALY_TYPES
    ]
    overrides = [*LABELLED, f"dataset.path={path}", *two_types]
    cfg = compose_config([*overrides, f"results_dir={tmp_path / 'r'}"])
    typed = compose_typed(overrides)
    prepared = prepare_data(typed.dataset, typed.anomaly, typed.data_seed, keep_events=True)
    for split, lab in prepared.labelled.items():
        names, events = lab.type_names, prepared.events[split]
        bot = names.index("bot")
        real_bot = np.logical_and.reduceat(events.events.item_id == 7, events.offsets[:-1])
        # the data's own anomalies keep their class, every event of them anomalous; victims
        # of injection are drawn among the sessions the labels call normal
        assert np.array_equal(lab.anomaly_type == bot, real_bot), split
        per_session = np.add.reduceat(events.event_label, events.offsets[:-1])
        assert np.array_equal(per_session[real_bot], np.diff(events.offsets)[real_bot])
        injected = lab.label & ~real_bot
        assert set(names[t] for t in lab.anomaly_type[injected]) <= {"click_flood", "scraping"}
        assert lab.population[real_bot].all()
        if split == "test":
            hosts = int(np.sum(lab.population & ~real_bot))
            asked = prepared.summary["per_type_asked"]["test"]
            assert sum(asked.values()) == round(typed.anomaly.contamination.test * hosts) > 0
            assert injected.sum() == sum(asked.values())
    caplog.set_level("INFO")
    record = run(cfg).record
    assert record.data["real_labels"] is True
    assert record.data["injected"] is True
    assert {"bot", "click_flood", "scraping"} <= set(record.result.per_type)
    assert "bot" in record.data["types_seen_in_training"]
    assert setting_of(record).startswith("events / the data's own labels + ")
    assert any("ground truth: the data's own labels + injected" in m for m in caplog.messages)


def test_a_label_class_named_like_an_injected_type_is_refused(tmp_path):
    from benchmark.anomalies.core import InjectionError
    from benchmark.run.data import prepare_data

    path = labelled_table(tmp_path / "own.csv")
    path.write_text(path.read_text().replace(",bot\n", ",scraping\n"))
    cfg = compose_typed([*LABELLED, f"dataset.path={path}"])
    with pytest.raises(InjectionError, match=r"\['scraping'\] have the names of injected types"):
        prepare_data(cfg.dataset, cfg.anomaly, cfg.data_seed)


OWN = [
    "dataset=events",
    "dataset.table.session=sid",
    "dataset.table.user=null",
    "dataset.table.timestamp=ts",
    "dataset.table.event_type=type",
    "dataset.table.item=null",
    "dataset.table.category=null",
    "dataset.table.price=null",
    "dataset.table.time_format=null",
]


def test_when_every_row_is_dropped_the_counts_are_the_message(compose_config, tmp_path):
    from benchmark.run.experiment import run

    path = tmp_path / "all_bad.csv"
    path.write_text("sid,ts,type\na,1,teleport\na,2,teleport\nb,3,fly\n")
    cfg = compose_config(
        [
            "experiment=smoke",
            "model=random",
            *OWN,
            f"dataset.path={path}",
            "dataset.strict=false",
            f"results_dir={tmp_path / 'r'}",
        ]
    )
    with pytest.raises(ValueError, match=r"every row was dropped \(3 unknown_event_type; e\.g\. "):
        run(cfg)


def test_a_run_says_which_rows_it_dropped(compose_config, tmp_path, caplog):
    import logging

    from benchmark.run.experiment import run

    rows = ["sid,ts,type,item"] + [
        f"s{s},{1_700_000_000 + s * 60 + k},view,{(s * 7 + k) % 50}"
        for s in range(1000)
        for k in range(5)
    ]
    rows += ["s1,1700000060,view,7", "s2,1700000121,teleport,3"]  # a duplicate, an unknown type
    path = tmp_path / "dirty.csv"
    path.write_text("\n".join(rows) + "\n")
    cfg = compose_config(
        [
            "experiment=smoke",
            "model=random",
            *OWN,
            f"dataset.path={path}",
            "dataset.table.item=item",
            "dataset.strict=false",
            "dataset.split.by=session",
            f"results_dir={tmp_path / 'r'}",
        ]
    )
    with caplog.at_level(logging.INFO, logger="benchmark"):
        source = run(cfg).record.data["source"]
    assert source["quarantined"] == {"duplicate_event": 1, "unknown_event_type": 1}
    line = next(r.message for r in caplog.records if "rows dropped" in r.message)
    assert "1 duplicate_event" in line
    assert f"{path}:5003: unknown event type 'teleport'" in line


def test_labels_in_a_file_of_their_own_mark_the_listed_sessions(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("sid,uid,ts,type\na,1,1,view\na,1,2,view\nb,2,1,view\nc,3,1,view\n")
    labels = tmp_path / "chargebacks.csv"
    labels.write_text("visit,reason\nb,chargeback\nzz,chargeback\n")
    mapping = TableMapping(
        session="sid",
        user="uid",
        timestamp="ts",
        event_type="type",
        label="reason",
        label_file=str(labels),
        label_key="visit",
    )
    real = read(events, mapping).session_labels
    assert real.class_names == ("chargeback",)
    assert real.counts() == {"normal": 2, "chargeback": 1}  # a and c: not listed, so normal
    pq.write_table(pa.table({"uid": [3], "kind": ["bot"]}), tmp_path / "bots.parquet")
    by_user = replace(
        mapping,
        label="kind",
        label_file=str(tmp_path / "bots.parquet"),
        label_key=None,
        label_level="user",
    )
    real = read(events, by_user).session_labels
    assert real.by_user
    assert real.lookup(np.array([1, 2, 3])).tolist() == [-1, -1, 0]


def test_a_label_file_whose_keys_match_nothing_says_so(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("sid,ts,type\na,1,view\nb,1,view\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("sid,label\n17,bot\n")  # numbers, while the events' sessions are text
    mapping = TableMapping(
        session="sid", timestamp="ts", event_type="type", label="label", label_file=str(labels)
    )
    with pytest.raises(DataFileError, match=r"none of its 1 session keys \('sid'\) is a session"):
        read(events, mapping)


def test_a_click_log_through_the_generic_mapping_matches_its_reader():
    """A click log without event types (YooChoose's prepared TSV), read only through a mapping,
    gives what the dedicated reader gives."""
    clicks = ROOT / "datasets/samples/yoochoose/yoochoose-clicks-100k_test.txt"
    mapping = TableMapping(
        delimiter="\t",
        session="SessionId",
        timestamp="Time",
        event_type=None,
        item="ItemId",
        time_unit="s",
    )
    mapped = read(clicks, mapping).events
    same = LOADERS["yoochoose"](clicks, LoadOptions()).events
    assert len(mapped) == len(same) > 10_000
    for name in ("session_id", "timestamp", "event_type", "item_id"):
        assert np.array_equal(getattr(mapped, name), getattr(same, name)), name


def test_an_id_column_that_turns_textual_late_in_the_file_is_read(tmp_path):
    """YooChoose's categories are numbers and 'S' (a special offer); the first rows say nothing
    about the rest, so ids are read value by value: numbers kept, other text hashed alike."""
    rows = ["sid,ts,cat"] + [f"s{i // 4},{i},{i % 7}" for i in range(20_000)]
    rows += ["x,1,S", "x,2,S", "y,3,12"]
    path = tmp_path / "clicks.csv"
    path.write_text("\n".join(rows) + "\n")
    mapping = TableMapping(session="sid", timestamp="ts", event_type=None, category="cat")
    events = read(path, mapping).events
    assert len(events) == 20_003
    categories = set(events.category_id.tolist())
    assert set(range(7)) | {12} <= categories
    odd = categories - set(range(7)) - {12}
    assert len(odd) == 1, "both 'S' rows share one hashed id"
    assert next(iter(odd)) >= 0


def test_a_folder_of_label_files_is_read_whole(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("sid,ts,type\na,1,view\nb,1,view\nc,1,view\n")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "june.csv").write_text("sid,label\na,bot\n")
    (tmp_path / "labels" / "july.csv").write_text("sid,label\nc,fraud\n")
    mapping = TableMapping(
        session="sid",
        timestamp="ts",
        event_type="type",
        label="label",
        label_file=str(tmp_path / "labels"),
    )
    real = read(events, mapping).session_labels
    assert real.class_names == ("bot", "fraud")
    assert real.counts() == {"normal": 1, "bot": 1, "fraud": 1}


def test_numeric_times_outside_the_years_1970_2099_are_named(tmp_path):
    path = tmp_path / "own.csv"
    path.write_text("sid,ts,type\ns1,1700000000,view\ns1,1700000060,view\ns2,99999999999,view\n")
    mapping = TableMapping(
        session="sid",
        user=None,
        timestamp="ts",
        time_unit="s",
        event_type="type",
        item=None,
        category=None,
        price=None,
        time_format=None,
    )
    with pytest.raises(DataFileError, match=r"own\.csv:4: time 1e\+11 read in s is outside"):
        read(path, mapping)
    data = read(path, mapping, strict=False)
    assert len(data.events) == 2
    assert data.source["quarantined"] == {"time_out_of_range": 1}


def write_profiles(path: Path, users: list[int]) -> dict[int, dict]:
    """A profile table for ``users`` (every third left out), as a user's CRM export: age in
    years, a country, a platform name, the signup date."""
    rows = {}
    platforms = ["iOS", "android", "Desktop", "smart_fridge"]
    for k, user in enumerate(users):
        if k % 3 == 2:
            continue
        rows[user] = {
            "customer_id": user,
            "age": [17, 22, 30, 41, 70][k % 5],
            "country": ["DE", "FR", "PL", "ES"][k % 4],
            "platform": platforms[k % 4],
            "created": f"2019-0{1 + k % 9}-15",
        }
    table = pa.Table.from_pylist(list(rows.values()))
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return rows


PROFILES = {"key": "customer_id", "age": "age", "region": "country", "device": "platform"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_profile_table_joins_its_users_to_the_events(tmp_path, reference, suffix):
    users = np.unique(reference.user_id).tolist()
    rows = write_profiles(tmp_path / f"customers{suffix}", users)
    profiles = ProfileMapping(str(tmp_path / f"customers{suffix}"), signup="created", **PROFILES)
    got = read(SAMPLE, replace(MAPPING, profiles=profiles))
    assert got.modalities == ("behaviour", "profile")
    p = got.profiles
    assert p is not None
    assert p.user_id.tolist() == sorted(rows)
    first = {u: reference.timestamp[reference.user_id == u].min() for u in rows}
    bands = {17: -1, 22: 0, 30: 1, 41: 2, 70: 5}
    devices = {"iOS": 2, "android": 3, "Desktop": 0, "smart_fridge": -1}
    for i, user in enumerate(p.user_id.tolist()):
        row = rows[user]
        assert p.age_band[i] == bands[row["age"]]
        assert p.device[i] == devices[row["platform"]]
        signup = np.datetime64(row["created"]).astype("datetime64[s]").astype(float)
        assert p.tenure_days[i] == pytest.approx((first[user] - signup) / 86_400, rel=1e-6)
    regions = {r["country"]: p.region[i] for i, r in enumerate(rows[u] for u in p.user_id)}
    assert sorted(regions.values()) == [0, 1, 2, 3], "one code per country"
    missing = [u for u in users if u not in rows]
    assert (p.lookup(np.array(missing)) == -1).all(), "a user the table leaves out has none"


def test_profiles_reach_the_prepared_sequences(tmp_path):
    from benchmark.run.data import prepare_data

    path = tmp_path / "customers.csv"
    events = LOADERS["rees46"](SAMPLE, LoadOptions()).events
    rows = write_profiles(path, np.unique(events.user_id).tolist())
    overrides = [
        "dataset=events",
        "anomaly=none",
        f"dataset.table.profiles.path={path}",
        *[f"dataset.table.profiles.{k}={v}" for k, v in PROFILES.items()],
    ]
    cfg = compose_typed(overrides)
    prepared = prepare_data(cfg.dataset, cfg.anomaly, cfg.data_seed)
    assert "profile" in prepared.modalities
    codes = np.concatenate([prepared.arrays[s].profile for s in ("train", "val", "test")])
    users = np.concatenate([prepared.arrays[s].user_id for s in ("train", "val", "test")])
    has = np.isin(users, list(rows))
    assert (codes[~has] == 0).all()
    assert (codes[has, 1] > 0).all()  # the region is known for every listed user
    assert prepared.profile_cardinalities[1] == 4 + 1  # four countries and "none"


def test_a_user_listed_twice_or_a_missing_profile_column_is_one_line(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("customer_id,age\n541312140,30\n541312140,31\n")
    profiles = ProfileMapping(str(path), key="customer_id", age="age")
    with pytest.raises(DataFileError, match="line or row 3 repeats the profile of user 541312140"):
        read(SAMPLE, replace(MAPPING, profiles=profiles))
    with pytest.raises(DataFileError, match=r"no column 'gender' \(dataset.table.profiles.age\)"):
        read(SAMPLE, replace(MAPPING, profiles=replace(profiles, age="gender")))


def test_an_item_table_gives_attributes_names_and_missing_categories(tmp_path, table):
    """A catalogue export joined by item: events without a category take their item's; the
    titles become the item text; items the events never show are left out."""
    from datasets.loaders.table import ItemMapping

    products = sorted(set(table["product_id"].to_pylist()))
    rows = ["sku,cat,seller,title"]
    for k, sku in enumerate(products[:-1]):  # the last item is not in the catalogue
        rows.append(f"{sku},{k % 7},shop-{k % 3},Phone case {k % 5} Black")
    rows.append("999999999,1,shop-0,Never viewed")
    (tmp_path / "items.csv").write_text("\n".join(rows) + "\n")
    spec = ItemMapping(str(tmp_path / "items.csv"), "sku", "cat", "seller", None, "title")
    got = read(SAMPLE, replace(MAPPING, category=None, items=spec))
    assert got.modalities == ("behaviour", "item_attributes", "item_text")
    items = got.items
    assert items.item_id.tolist() == products[:-1]
    index = {sku: k for k, sku in enumerate(products[:-1])}
    e = got.events
    listed = np.isin(e.item_id, products[:-1])
    expected = [index[i] % 7 for i in e.item_id[listed].tolist()]
    assert e.category_id[listed].tolist() == expected
    assert (e.category_id[~listed] == -1).all()
    words = {w: i for i, w in enumerate(["phone", "case", "0", "black"])}
    assert items.name.row(0).tolist() == [words["phone"], words["case"], words["0"], words["black"]]
    assert len(set(items.brand_id.tolist())) == 3  # three sellers, each its own id
    (tmp_path / "items.csv").write_text("sku,cat\n44600062,1\n44600062,2\n")
    with pytest.raises(DataFileError, match="line or row 3 repeats item 44600062"):
        read(SAMPLE, replace(MAPPING, items=ItemMapping(str(tmp_path / "items.csv"), "sku", "cat")))
