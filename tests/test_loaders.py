"""Public-dataset loaders: the shipped real samples, files written in the documented formats,
and bad files (strict: one-line error naming file, line and column; else counted quarantine)."""

import json
from dataclasses import replace

import numpy as np
import pytest

from benchmark.run.experiment import run
from datasets.loaders.common import DataFileError, LoadOptions
from datasets.loaders.registry import LOADERS
from datasets.schema import MISSING_ID, EventType, session_offsets

from .conftest import ROOT, compose_typed

SAMPLES = ROOT / "datasets" / "samples"
STRICT, LENIENT = LoadOptions(), LoadOptions(strict=False)


def load(name, path, options=STRICT):
    """The dataset's reader; a dataset read through a mapping gets its config's mapping."""
    table = getattr(compose_typed([f"dataset={name}"]).dataset, "table", None)
    if table is not None and options.table is None:
        options = replace(options, table=table)
    return LOADERS[name](path, options)


def sessions_sorted_by_time(events) -> bool:
    offsets = session_offsets(events.session_id)
    same = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    step = np.diff(events.timestamp)
    return bool(np.all(step[same[1:] == same[:-1]] >= 0))


# ------------------------------------------------------------------ shipped samples, real data


def test_diginetica_sample_matches_its_documented_statistics():
    """The views sample with the real purchases of its sessions and its items' categories
    (the cuts shipped beside it)."""
    d = load("diginetica", SAMPLES / "diginetica" / "sample_train-item-views.csv")
    e = d.events
    views, purchases = e.event_type == EventType.VIEW, e.event_type == EventType.PURCHASE
    assert (views.sum(), purchases.sum(), len(e)) == (12_391, 256, 12_647)
    assert len(np.unique(e.session_id)) == 2_986
    assert len(np.unique(e.item_id[views])) == 7_139
    assert sessions_sorted_by_time(e), "rows are re-ordered by timeframe within each session"
    assert d.source["anonymous_rows"] == 7_681 + 135  # views, then purchases, without a user
    assert np.all(e.category_id != MISSING_ID), "every item of the sample has its category"
    assert len(d.source["files"]) == 2  # views and purchases (categories are a lookup)


def test_diginetica_event_time_is_first_day_plus_timeframe(tmp_path):
    f = tmp_path / "train-item-views.csv"
    f.write_text(
        "sessionId;userId;itemId;timeframe;eventdate\n"
        "7;NA;11;5000;2016-05-09\n7;NA;12;1000;2016-05-09\n8;42;13;2000;2016-05-10\n"
    )
    (tmp_path / "product-categories.csv").write_text("itemId;categoryId\n11;3\n12;4\n")
    e = load("diginetica", tmp_path).events
    day = float(np.datetime64("2016-05-09", "s").astype(np.int64))
    assert e.item_id.tolist() == [12, 11, 13]
    assert e.timestamp[:2].tolist() == [day + 1.0, day + 5.0]
    assert e.category_id.tolist() == [4, 3, MISSING_ID]
    assert e.user_id[2] == 42
    assert e.user_id[0] != 42


def write_diginetica_text(folder) -> None:
    """Views with the release's query and product files beside them (the layout of
    ``train-queries.csv`` and ``products.csv``; hashed word ids as the release has them)."""
    (folder / "train-item-views.csv").write_text(
        "sessionId;userId;itemId;timeframe;eventdate\n"
        "7;NA;11;5000;2016-05-09\n7;NA;12;9000;2016-05-09\n8;42;13;2000;2016-05-10\n"
    )
    (folder / "train-queries.csv").write_text(
        "queryId;sessionId;userId;timeframe;duration;eventdate;searchstring.tokens;"
        "categoryId;items;is.test\n"
        "1;7;NA;1000;300;2016-05-09;16655,41551;;11,12,40;FALSE\n"
        "2;8;42;500;120;2016-05-10;;1096;13,14;FALSE\n"
        "3;99;NA;700;100;2016-05-11;41551;;15;TRUE\n"
    )
    (folder / "products.csv").write_text(
        "itemId;pricelog2;product.name.tokens\n11;4;16655,7\n12;6;41551,16655,7\n13;3;900\n"
    )


def test_diginetica_queries_and_product_names_share_one_vocabulary(tmp_path):
    write_diginetica_text(tmp_path)
    d = load("diginetica", tmp_path, LENIENT)
    e = d.events
    assert d.modalities == ("behaviour", "item_attributes", "query_text", "item_text")
    search = np.flatnonzero(e.event_type == EventType.SEARCH)
    assert len(search) == 2  # the third query's session has no views: dropped and named
    assert d.source["quarantined"] == {"query_outside_views": 1}
    assert "train-queries.csv:4: a query in a session without views" in d.source["examples"][0]
    first = search[e.session_id[search] == 7][0]
    assert e.timestamp[first] < e.timestamp[first + 1], "the search came before the views"
    words = {w: i for i, w in enumerate([7, 900, 16655, 41551])}  # dense ids in word order
    query = d.queries.row(int(e.query[first])).tolist()
    assert query == [words[16655], words[41551]]
    browse = search[e.session_id[search] == 8][0]
    assert d.queries.row(int(e.query[browse])).tolist() == []  # a category browse: no words
    assert e.category_id[browse] == 1096
    names = d.items.name
    assert [names.row(i).tolist() for i in range(3)] == [
        [words[16655], words[7]],
        [words[41551], words[16655], words[7]],
        [words[900]],
    ]
    np.testing.assert_allclose(d.items.price, [15.0, 63.0, 7.0])
    views = e.event_type == EventType.VIEW
    np.testing.assert_allclose(e.price[views & (e.item_id == 12)], [63.0])


def test_yoochoose_prepared_sample_keeps_its_times_as_stored():
    d = load("yoochoose", SAMPLES / "yoochoose" / "yoochoose-clicks-100k_test.txt")
    e = d.events
    assert len(e) == 13_568
    assert len(np.unique(e.session_id)) == 3_416
    # documented: raw 2014-04-07T10:51:09.277Z is stored 7200 s early, and is not shifted
    first = e.timestamp[e.session_id == 1].min()
    assert first == pytest.approx(1396860669.277)
    assert d.source["shape"] == "prepared"


def test_yoochoose_raw_clicks_and_buys(tmp_path):
    (tmp_path / "yoochoose-clicks.dat").write_text(
        "1,2014-04-07T10:51:09.277Z,214536502,0\n"
        "1,2014-04-07T10:54:09.580Z,214536500,S\n"
        "2,2014-04-07T13:56:37.614Z,214662742,3\n"
    )
    (tmp_path / "yoochoose-buys.dat").write_text("1,2014-04-07T10:55:00.000Z,214536500,2299,1\n")
    e = load("yoochoose", tmp_path).events
    assert e.timestamp[0] == pytest.approx(1396867869.277)  # true UTC from the raw string
    assert e.event_type.tolist() == [EventType.VIEW, EventType.VIEW, EventType.PURCHASE, 0]
    assert e.category_id.tolist() == [MISSING_ID, 13, MISSING_ID, 3]
    assert e.price[2] == 2299


def test_rees46_sample_types_categories_and_items():
    d = load("rees46", SAMPLES / "rees46" / "2019-Oct_head_sessions.csv")
    e = d.events
    assert len(e) == 1_475
    assert len(np.unique(e.session_id)) == 701
    assert len(np.unique(e.user_id)) == 652
    counts = np.bincount(e.event_type, minlength=7)
    assert (
        counts[EventType.VIEW] + counts[EventType.ADD_TO_CART] + counts[EventType.PURCHASE] == 1_475
    )
    assert counts[EventType.PURCHASE] > 0
    assert 2103807459595387724 in set(e.category_id.tolist()), "19-digit ids stay exact"
    assert d.modalities == ("behaviour", "item_attributes")
    assert len(d.items.item_id) == 798
    assert e.timestamp.min() == float(np.datetime64("2019-10-01T00:00:00", "s").astype(np.int64))
    assert sessions_sorted_by_time(e)


def test_otto_sample_and_a_seconds_copy(tmp_path):
    d = load("otto", SAMPLES / "otto" / "train_sample_20_sessions.jsonl")
    assert len(d.events) == 862
    assert np.bincount(d.events.event_type, minlength=7)[[2, 3, 6]].tolist() == [800, 52, 10]
    assert d.source["timestamp_unit"] == "ms"
    seconds = tmp_path / "s.jsonl"
    seconds.write_text(
        json.dumps(
            {
                "session": 1,
                "events": [
                    {"aid": 5, "ts": 1659304800, "type": "clicks"},
                    {"aid": 6, "ts": 1659304860, "type": "orders"},
                ],
            }
        )
        + "\n"
    )
    s = load("otto", seconds)
    assert s.source["timestamp_unit"] == "s"
    assert s.events.timestamp.tolist() == [1659304800.0, 1659304860.0]
    forced = load("otto", seconds, LoadOptions(timestamp_unit="ms"))
    assert forced.events.timestamp[0] == pytest.approx(1659304.8)


def test_jd_micro_samples_relative_times_and_dwell():
    d = load("jd_micro", SAMPLES / "jd_micro")
    e = d.events
    assert len(np.unique(e.session_id)) == 2_000
    assert len(e) + d.source["quarantined"]["duplicate_event"] == 57_332 + 43_014
    counts = np.bincount(e.event_type, minlength=7)
    assert counts[EventType.PURCHASE] == 183 + 102
    # first Appliances line: 879089+5+753+180+180 877096+5+753+35+35 879089+5+753+8+67 ...
    first = e.session_id == e.session_id.min()
    assert e.timestamp[first][:4].tolist() == [0.0, 180.0, 215.0, 223.0]
    assert e.dwell[first][:3].tolist() == [180.0, 35.0, 67.0]
    assert e.item_id[first][:2].tolist() == [879089, 877096]


def test_jd_micro_reads_upstream_files_without_extension(tmp_path):
    (tmp_path / "JD_Computers").write_text("1+5+7+3+3 2+9+7+1+1\n")
    (tmp_path / "SOURCE.md").write_text("not data\n")
    d = load("jd_micro", tmp_path)
    assert d.events.event_type.tolist() == [EventType.VIEW, EventType.ADD_TO_CART]
    assert d.events.timestamp.tolist() == [0.0, 3.0]


def test_jd_micro_bad_token_names_line_and_token(tmp_path):
    f = tmp_path / "JD_x.txt"
    f.write_text("1+5+7+3+3 2+9+7+1+1\n1+5+7+3+3 2+11+7+1+1\n")
    with pytest.raises(DataFileError, match=r"JD_x.txt:2: token 2 '2\+11\+7\+1\+1' is not"):
        load("jd_micro", f)
    lenient = load("jd_micro", f, LENIENT)
    assert lenient.source["quarantined"] == {"bad_token": 1}
    assert len(np.unique(lenient.events.session_id)) == 1


# ------------------------------------------------------------- documented formats, no sample


def test_retailrocket_events_and_categories(tmp_path):
    (tmp_path / "events.csv").write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,view,248676,\n"
        "1433221955914,257597,addtocart,355908,\n"
        "1433222000000,257597,transaction,355908,4000\n"
    )
    (tmp_path / "item_properties_part1.csv").write_text(
        "timestamp,itemid,property,value\n"
        "1435460400000,355908,categoryid,1173\n"
        "1441508400000,355908,categoryid,1200\n"
        "1439089200000,248676,790,n5028.000\n"
    )
    e = load("retailrocket", tmp_path).events
    assert e.user_id.tolist() == [257597, 257597, 257597, 992329]
    assert e.event_type.tolist() == [
        EventType.VIEW,
        EventType.ADD_TO_CART,
        EventType.PURCHASE,
        EventType.VIEW,
    ]
    assert e.category_id.tolist() == [1200, 1200, 1200, MISSING_ID], "latest categoryid wins"
    assert e.timestamp[0] == pytest.approx(1433221332.117)


def test_taobao_without_header_and_its_time_window(tmp_path):
    f = tmp_path / "UserBehavior.csv"
    f.write_text(
        "1,2268318,2520377,pv,1511544070\n"
        "1,2333346,2520771,pv,1511561733\n"
        "1,2576651,149192,buy,1511572885\n"
        "2,3830808,4181361,cart,1511593493\n"
        "2,4365585,2520377,fav,1511596146\n"
        "3,1,1,pv,1000000000\n"
    )
    d = load("taobao", f)
    mapping = compose_typed(["dataset=taobao"]).dataset.table
    assert len(d.events) == 5
    assert d.source["quarantined"] == {"outside_window": 1}
    window = "[2017-11-25T00:00:00+08:00, 2017-12-04T00:00:00+08:00)"
    assert d.source["examples"] == [
        f"{f}:6: outside dataset.table.time_window {window} (null keeps every time)"
    ]
    assert d.events.event_type.tolist() == [
        EventType.VIEW,
        EventType.VIEW,
        EventType.PURCHASE,
        EventType.ADD_TO_CART,
        EventType.FAVOURITE,
    ]
    every_time = LoadOptions(table=replace(mapping, time_window=None))
    assert len(load("taobao", f, every_time).events) == 6
    assert d.events.user_id.tolist() == [1, 1, 1, 2, 2]
    assert d.events.item_id.tolist() == [2268318, 2333346, 2576651, 3830808, 4365585]


def test_taobao_download_missing_says_where_to_get_it_and_reads_it_compressed(tmp_path):
    import gzip

    base = ["experiment=smoke", "dataset=taobao", f"results_dir={tmp_path}"]
    cfg = compose_typed([*base, f"dataset.path={tmp_path / 'UserBehavior.csv'}"])
    from benchmark.run.data import prepare_data
    from datasets.loaders.table import partition

    with pytest.raises(DataFileError, match=r"python -m datasets\.fetch taobao says where"):
        prepare_data(cfg.dataset, cfg.anomaly, 0)
    rows = "".join(
        f"{u},{u * 7 + k},3,pv,{1511544070 + 60 * k}\n" for u in range(1, 41) for k in range(6)
    )
    with gzip.open(tmp_path / "UserBehavior.csv.gz", "wt") as f:  # as Tianchi ships it
        f.write(rows)
    prepared = prepare_data(cfg.dataset, cfg.anomaly, 0)
    assert prepared.dataset_name == "taobao"
    assert prepared.summary["source_events"] == 240
    # a table beyond dataset.memory_gb: its partitions are taobao's too
    options = LoadOptions(name="taobao", table=cfg.dataset.table)
    parts = partition(tmp_path / "UserBehavior.csv.gz", options, 2, tmp_path)
    assert [parts.load(k).name for k in range(2)] == ["taobao", "taobao"]
    assert sum(len(parts.load(k).events) for k in range(2)) == 240


# ------------------------------------------------------------------------------- bad files

REES_HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
)
REES_ROW = (
    "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,s1\n"
)


def rees(tmp_path, *rows: str, header: str = REES_HEADER) -> object:
    f = tmp_path / "month.csv"
    f.write_bytes(
        (header + REES_ROW + "".join(rows)).encode("utf-8") if isinstance(header, str) else header
    )
    return f


@pytest.mark.parametrize(
    ("rows", "message", "kind"),
    [
        (
            ["2019-10-01 00:00:01 UTC,view,1,2,,,1.0,5\n"],
            ":3: expected 9 fields, found 8",
            "wrong_field_count",
        ),
        (
            ["2019-10-01 00:00:01 UTC,view,1,2,,,abc,5,s1\n"],
            ":3: column 'price': 'abc' is not a number",
            "bad_value",
        ),
        (
            ["2019-10-01 00:00:01 UTC,teleport,1,2,,,1.0,5,s1\n"],
            ":3: unknown event type 'teleport'",
            "unknown_event_type",
        ),
        (
            ["2019-10-01 00:00:01 UTC,view,1,2,,,1.0,,s1\n"],
            ":3: column 'user_id' is empty",
            "missing_value",
        ),
        (
            ["1969-12-31 23:59:59 UTC,view,1,2,,,1.0,5,s1\n"],
            ":3: column 'event_time': '1969-12-31 23:59:59 UTC' is outside the years 1970-2099",
            "time_out_of_range",
        ),
        (
            ["yesterday,view,1,2,,,1.0,5,s1\n"],
            ":3: column 'event_time': 'yesterday' is not a time",
            "bad_value",
        ),
    ],
)
def test_bad_rows_name_file_line_and_column_or_are_quarantined(tmp_path, rows, message, kind):
    f = rees(tmp_path, *rows, "2019-10-01 00:00:02 UTC,cart,7,2,,,1.0,5,s1\n")
    with pytest.raises(DataFileError, match=r"dataset\.strict=false") as err:
        load("rees46", f)
    assert f"{f}{message}" in str(err.value)
    assert "\n" not in str(err.value)
    lenient = load("rees46", f, LENIENT)
    assert lenient.source["quarantined"] == {kind: 1}
    assert len(lenient.events) == 2, "the good rows around the bad one are kept"
    assert message.split(": ", 1)[1][:20] in lenient.source["examples"][0]


def test_bytes_that_are_not_utf8(tmp_path):
    f = tmp_path / "month.csv"
    f.write_bytes(
        (REES_HEADER + REES_ROW).encode() + b"2019-10-01 00:00:01 UTC,view,1,2,,caf\xe9,1.0,5,s1\n"
    )
    with pytest.raises(DataFileError, match=r"month.csv:3: bytes that are not UTF-8"):
        load("rees46", f)
    assert load("rees46", f, LENIENT).source["quarantined"] == {"not_utf8": 1}


def test_wrong_separator_and_missing_columns_are_named(tmp_path):
    f = tmp_path / "month.csv"
    f.write_text(REES_HEADER.replace(",", ";") + REES_ROW.replace(",", ";"))
    with pytest.raises(DataFileError, match="looks semicolon-separated, not comma"):
        load("rees46", f)
    f.write_text(REES_HEADER.replace("user_session", "session") + REES_ROW)
    with pytest.raises(DataFileError, match=r"no column 'user_session' \(dataset.table.session\)"):
        load("rees46", f)


def test_taobao_with_the_wrong_field_count_says_so(tmp_path):
    f = tmp_path / "UserBehavior.csv"
    f.write_text("user_id,item_id,category_id,behavior_type,timestamp,extra\n")
    with pytest.raises(DataFileError, match=r"UserBehavior.csv:1: expected 5 comma-separated"):
        load("taobao", f)


def test_a_dropped_duplicate_is_named_by_its_line(tmp_path):
    f = tmp_path / "views.csv"
    f.write_text(
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "1;NA;81766;526309;2016-05-09\n1;NA;81766;526309;2016-05-09\n"
    )
    d = load("diginetica", f)
    assert d.source["quarantined"] == {"duplicate_event": 1}
    assert d.source["examples"] == [f"{f}:3: a repeat of an earlier event"]


def test_duplicated_events_are_dropped_and_counted_in_both_modes(tmp_path):
    f = rees(tmp_path, REES_ROW, REES_ROW)
    for options in (STRICT, LENIENT):
        d = load("rees46", f, options)
        assert len(d.events) == 1
        assert d.source["quarantined"] == {"duplicate_event": 2}


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataFileError, match="the file is empty"):
        load("rees46", empty)
    with pytest.raises(
        DataFileError, match=r"not found at .*: download .*datasets.fetch retailrocket"
    ):
        load("retailrocket", tmp_path / "nowhere")


def test_a_broken_otto_line_is_named(tmp_path):
    f = tmp_path / "train.jsonl"
    good = json.dumps({"session": 1, "events": [{"aid": 5, "ts": 1659304800000, "type": "clicks"}]})
    f.write_text(good + "\n" + '{"session": 2, "events": [{"aid": 5}]}\n' + "not json\n")
    with pytest.raises(DataFileError, match=r"train.jsonl:2: not an OTTO session object"):
        load("otto", f)
    lenient = load("otto", f, LENIENT)
    assert lenient.source["quarantined"] == {"bad_line": 2}
    assert len(lenient.events) == 1


def test_max_rows_reads_the_head_only():
    d = load("rees46", SAMPLES / "rees46" / "2019-Oct_head_sessions.csv", LoadOptions(max_rows=100))
    assert d.source["rows_read"] == 100


# ------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize(
    "dataset", ["diginetica", "yoochoose", "rees46", "otto", "jd_micro", "talkingdata"]
)
@pytest.mark.parametrize("model", ["iforest", "lstm"])
def test_each_shipped_sample_runs_end_to_end(compose_config, tmp_path, dataset, model):
    # The samples are small: larger evaluation splits and contamination keep at least 5
    # anomalies in each split (the samples experiment does the same).
    enough = [
        "dataset.split.train=0.5",
        "dataset.split.val=0.25",
        "dataset.split.test=0.25",
        "anomaly.contamination={train: 0.2, val: 0.3, test: 0.3}",
    ]
    overrides = ["experiment=smoke", f"dataset={dataset}", f"model={model}", *enough]
    result = run(compose_config([*overrides, f"results_dir={tmp_path}"]))
    record = result.record
    assert record.status == "ok"
    assert record.dataset == dataset
    assert record.data["source"]["files"][0]["sha256"]
    assert 0.0 <= record.result.roc_auc <= 1.0
    assert record.data["splits"]["test"]["anomalous_sequences"] > 0
    if dataset == "yoochoose":  # views only: no purchase to tamper with
        assert set(record.data["anomaly_types_skipped"]) == {"price_outlier", "funnel_violation"}
    if dataset == "diginetica":  # purchases, but no prices
        assert set(record.data["anomaly_types_skipped"]) == {"price_outlier"}


# ------------------------------------------------------------------ dataset card and fetch


def test_dataset_card_of_a_sample(capsys):
    from benchmark.run.describe import main

    assert main(["dataset=rees46"]) == 0
    out = capsys.readouterr().out
    assert "rows: 1,475" in out
    assert "sessions: 701" in out
    assert "event types: view 98.9%, add_to_cart 0.2%, purchase 0.9%" in out
    assert "time span (UTC): 2019-10-01T00:00:00+00:00 .. 2019-10-01T02:20:00+00:00" in out


def test_dataset_card_lists_the_dropped_rows_by_rule_with_their_lines(capsys, tmp_path):
    from benchmark.run.describe import main

    f = tmp_path / "views.csv"
    f.write_text(
        "session_id;user_id;item_id;timeframe;eventdate\n1;NA;8;5;2016-05-09\n"
        "1;NA;8;5;2016-05-09\n1;NA;9;7;2016-05-09\n1;NA;abc;9;2016-05-09\n"
    )
    assert main(["dataset=diginetica", f"dataset.path={f}", "dataset.strict=false"]) == 0
    out = capsys.readouterr().out
    assert "  rows dropped: 1 bad_value, 1 duplicate_event\n" in out
    assert f"    {f}:5: column 'item_id': 'abc' is not an integer" in out
    assert f"    {f}:3: a repeat of an earlier event" in out


def test_dataset_card_of_a_missing_download_is_one_line(capsys, tmp_path):
    from benchmark.run.describe import main

    assert main(["dataset=taobao", f"dataset.path={tmp_path / 'UserBehavior.csv'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "python -m datasets.fetch taobao" in err[0]


def test_fetch_checks_the_digest_and_says_when_offline(tmp_path):
    import hashlib

    from datasets.fetch import SOURCES, FetchError, download, instructions

    src = tmp_path / "src.bin"
    src.write_bytes(b"clicks" * 1000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert download(src.as_uri(), tmp_path / "out" / "a.bin", digest) == digest
    assert (tmp_path / "out" / "a.bin").read_bytes() == src.read_bytes()
    with pytest.raises(FetchError, match="does not match the pinned"):
        download(src.as_uri(), tmp_path / "out" / "b.bin", "0" * 64)
    assert not (tmp_path / "out" / "b.bin").exists()
    with pytest.raises(FetchError, match="may be offline: download it elsewhere and put it at"):
        download((tmp_path / "missing.bin").as_uri(), tmp_path / "out" / "c.bin")
    assert set(SOURCES) | {"events"} == set(LOADERS)  # events: the user's own table
    for source in SOURCES.values():
        assert f"dataset={source.name}" in instructions(source)


def test_dedup_matches_a_reference_on_random_rows():
    from datasets.loaders.common import Quarantine, drop_duplicates

    rng = np.random.default_rng(4)
    cols = {
        "a": rng.integers(0, 5, 2000),
        "t": rng.integers(0, 4, 2000).astype(np.float64),
        "b": rng.integers(0, 3, 2000),
    }
    q = Quarantine(strict=True)
    out = drop_duplicates(cols, ["a", "t", "b"], q)
    rows = np.stack([cols["a"], cols["t"], cols["b"]], axis=1)
    _, first = np.unique(rows, axis=0, return_index=True)
    assert sorted(np.stack([out["a"], out["t"], out["b"]], axis=1).tolist()) == sorted(
        rows[np.sort(first)].tolist()
    )
    assert q.counts["duplicate_event"] == 2000 - len(first)


def test_one_sort_orders_and_deduplicates_as_dedup_then_lexsort():
    """sorted_without_repeats keeps each row's first copy in file order, orders the rest as a
    stable lexsort by session and time, and names the repeats in file order."""
    from datasets.loaders.common import Quarantine, sorted_without_repeats

    rng = np.random.default_rng(5)
    for trial in range(20):
        n = int(rng.integers(2, 3000))
        cols = {
            "user": rng.integers(0, int(rng.integers(1, 40)), n),
            "t": rng.integers(0, int(rng.integers(1, 8)), n) * rng.choice([1.0, 1e-3]),
            "item": rng.integers(0, 3, n),
            "row": np.arange(n),  # not a key: shows which copy was kept
        }
        if trial % 4 == 0:
            cols["user"] = cols["user"] * (2**58)  # ids too wide to be their own ranks
        keys = ["user", "t", "item"]
        rows = np.stack([cols[k] for k in keys], axis=1)
        _, first = np.unique(rows, axis=0, return_index=True)
        kept = np.sort(first)
        expected = kept[np.lexsort((cols["t"][kept], cols["user"][kept]))]
        q = Quarantine(strict=True)
        out = sorted_without_repeats(
            {k: v.copy() for k, v in cols.items()}, "user", "t", keys, q, lambda i: f"row {i}"
        )
        assert np.array_equal(out["row"], expected), trial
        assert q.counts["duplicate_event"] == n - len(kept)
        repeats = np.setdiff1d(np.arange(n), kept)[:10]
        assert q.examples == [f"row {i}: a repeat of an earlier event" for i in repeats]


def test_types_a_views_only_dataset_cannot_host_are_an_error_when_asked(compose_config, tmp_path):
    from benchmark.anomalies.core import InjectionError

    cfg = compose_config(
        [
            "experiment=smoke",
            "dataset=diginetica",
            "anomaly.skip_unsupported=false",
            f"results_dir={tmp_path}",
        ]
    )
    with pytest.raises(InjectionError, match=r"fit no sequence of this dataset \(\{'price_outl"):
        run(cfg)


def test_hash_ids_are_stable_distinct_and_ignore_dashes():
    import uuid

    import pyarrow as pa

    from datasets.loaders.common import hash_ids

    keys = [str(uuid.UUID(int=int(x))) for x in np.random.default_rng(0).integers(0, 2**62, 5000)]
    ids = hash_ids(pa.array(keys))
    assert len(np.unique(ids)) == 5000
    assert np.all(ids >= 0)
    again = hash_ids(pa.array([k.replace("-", "") for k in keys[:10]] + [None, "not-a-uuid"]))
    assert again[:10].tolist() == ids[:10].tolist()
    assert again[10] == MISSING_ID
    assert again[11] >= 0
    assert hash_ids(pa.array(["not-a-uuid"]))[0] == again[11]


# ------------------------------------------------------------------ real labels: web bots


def test_web_bots_sample_labels_and_leak_guard():
    d = load("web_bots", SAMPLES / "web_bots")
    e = d.events
    assert len(e) == 12_227
    assert len(np.unique(e.session_id)) == 67
    assert d.session_labels.counts() == {"normal": 16, "moderate_bot": 33, "advanced_bot": 18}
    offsets = session_offsets(e.session_id)
    assert np.all(e.timestamp[offsets[:-1]] == 0.0), "absolute dates removed: sessions start at 0"
    assert e.timestamp.max() < 3600
    assert set(np.unique(e.event_type)) == {EventType.VIEW, EventType.CLICK}


def test_web_bots_runs_on_its_real_labels(compose_config, tmp_path):
    from benchmark.errors import EvaluationError

    base = ["experiment=smoke", "dataset=web_bots", "model=iforest", f"results_dir={tmp_path}"]
    # 67 labelled sessions, 16 of them human: a 15% test split holds 2, too few to evaluate
    small = ["dataset.split.train=0.7", "dataset.split.val=0.15", "dataset.split.test=0.15"]
    with pytest.raises(EvaluationError, match=r"the test split has \d+ anomalous and 2 normal"):
        run(compose_config([*base, "anomaly=none", *small]))
    record = run(compose_config([*base, "anomaly=none"])).record
    assert record.status == "ok"
    test = record.data["splits"]["test"]
    assert set(test["per_type"]) == {"moderate_bot", "advanced_bot"}
    assert test["anomalous_sequences"] == sum(test["per_type"].values()) > 0
    assert set(record.result.per_type) <= {"moderate_bot", "advanced_bot"}


def test_talkingdata_sample_entities_and_downloads():
    d = load("talkingdata", SAMPLES / "talkingdata" / "train_sample.csv")
    e = d.events
    assert d.source["rows_read"] == 100_000
    assert d.source["downloads"] == 227
    counts = np.bincount(e.event_type, minlength=7)
    assert counts[EventType.PURCHASE] == 227
    assert counts[EventType.CLICK] == 100_000 - d.source["quarantined"]["duplicate_event"]
    assert len(np.unique(e.item_id)) == 161
    assert sessions_sorted_by_time(e)
    # an install follows its click on the same app, for the same (ip, device, os)
    first = np.flatnonzero(e.event_type == EventType.PURCHASE)[0]
    same = (e.session_id == e.session_id[first]) & (e.item_id == e.item_id[first])
    assert e.timestamp[same & (e.event_type == EventType.CLICK)].min() < e.timestamp[first]


@pytest.mark.parametrize("dataset", ["rees46", "web_bots"])
def test_cache_round_trip_and_key(tmp_path, dataset):
    from datasets.cache import cached_load

    path = {
        "rees46": SAMPLES / "rees46" / "2019-Oct_head_sessions.csv",
        "web_bots": SAMPLES / "web_bots",
    }[dataset]
    calls = []

    def loader(p, options):
        calls.append(p)
        return LOADERS[dataset](p, options)

    first = cached_load(dataset, path, STRICT, loader, tmp_path, min_bytes=0)
    second = cached_load(dataset, path, STRICT, loader, tmp_path, min_bytes=0)
    assert len(calls) == 1, "the second load is a cache hit"
    assert first.source["cache"]["status"] == "stored"
    assert second.source["cache"]["status"] == "hit"
    for name, column in first.events.columns().items():
        np.testing.assert_array_equal(second.events.columns()[name], column)
    assert second.modalities == first.modalities
    if dataset == "web_bots":
        assert second.session_labels.counts() == first.session_labels.counts()
    cached_load(dataset, path, LoadOptions(max_rows=10), loader, tmp_path, min_bytes=0)
    assert len(calls) == 2, "other options, other key"
    cached_load(dataset, path, STRICT, loader, tmp_path, min_bytes=10**12)
    assert len(calls) == 3, "small inputs bypass the cache"


def test_talkingdata_proxy_labels_mark_entities_that_never_downloaded(compose_config, tmp_path):
    d = load(
        "talkingdata", SAMPLES / "talkingdata" / "train_sample.csv", LoadOptions(proxy_labels=True)
    )
    labels = d.session_labels
    assert labels.by_user
    downloaded = np.unique(d.events.user_id[d.events.event_type == EventType.PURCHASE])
    assert labels.counts()["normal"] == len(downloaded)
    assert np.all(labels.lookup(downloaded) == -1)
    record = run(
        compose_config(
            [
                "experiment=smoke",
                "dataset=talkingdata",
                "dataset.proxy_labels=true",
                "anomaly=none",
                "model=iforest",
                f"results_dir={tmp_path}",
            ]
        )
    ).record
    test = record.data["splits"]["test"]
    assert test["per_type"] == {"no_download": test["anomalous_sequences"]}
    assert 0 < test["anomalous_sequences"] < test["sequences"]


@pytest.mark.parametrize(
    ("name", "sample", "as_folder"),
    [
        ("rees46", "rees46/2019-Oct_head_sessions.csv", True),
        ("rees46", "rees46/2019-Oct_head_sessions.csv", False),
        ("otto", "otto/train_sample_20_sessions.jsonl", True),
        ("diginetica", "diginetica/sample_train-item-views.csv", False),
        ("jd_micro", "jd_micro/JD_Computers_sample.txt", False),
    ],
)
def test_official_compressed_downloads_read_as_they_come(tmp_path, name, sample, as_folder):
    import gzip

    plain = ROOT / "datasets/samples" / sample
    for data in plain.parent.iterdir():  # the sample and the files read beside it
        if data.name != "SOURCE.md":
            (tmp_path / (data.name + ".gz")).write_bytes(gzip.compress(data.read_bytes()))
    packed = tmp_path / (plain.name + ".gz")
    read = load(name, tmp_path if as_folder else packed).events
    expected = load(name, plain).events
    assert len(read) == len(expected) > 0
    assert np.array_equal(read.item_id, expected.item_id)
    assert np.array_equal(read.timestamp, expected.timestamp)


def test_the_cache_keeps_text_images_and_queries(tmp_path):
    from datasets.cache import read, write
    from datasets.synthetic import SyntheticConfig, generate

    world = generate(SyntheticConfig(n_users=200), 0)
    write(tmp_path / "world.npz", world)
    back = read(tmp_path / "world.npz")
    assert back.modalities == world.modalities
    np.testing.assert_array_equal(back.events.query, world.events.query)
    np.testing.assert_array_equal(back.queries.tokens, world.queries.tokens)
    np.testing.assert_array_equal(back.items.name.offsets, world.items.name.offsets)
    np.testing.assert_array_equal(back.items.image, world.items.image)
    np.testing.assert_array_equal(back.profiles.gender, world.profiles.gender)
