"""The bad-input corpus: what a user can get wrong, across the command line, config values,
data files, the results directory and checkpoints. Each case must end in one clear line that
names the fix (exit code 2 on the command line) or a documented quarantine, and must never
lose or corrupt a record that was already written."""

from __future__ import annotations

import ast
import codecs
import errno
import json
import os
import pickle
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmark.config import check_config
from benchmark.errors import ResultsWriteError, user_error_types
from benchmark.records import atomic
from benchmark.records.atomic import write_atomic
from benchmark.records.record import RunRecord, load
from benchmark.records.store import STORE_FILE
from benchmark.run.experiment import RECORD_FILE, as_config, run
from datasets.loaders.common import LoadOptions
from datasets.loaders.registry import LOADERS

from .conftest import ROOT, cli

SAMPLE = ROOT / "datasets/samples/diginetica/sample_train-item-views.csv"
HEADER = SAMPLE.read_text().splitlines()[0]
ROW = "1;NA;81766;526309;2016-05-09"
DIGINETICA = ("experiment=smoke", "model=random", "dataset=diginetica")


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text, text
    assert "Traceback" not in text
    return text


# How a case ended. The corpus counts them (see ``pytest_terminal_summary`` in conftest.py):
# every case must end in a clean line or a documented quarantine / recovery.
CLEAN, QUARANTINED, RECOVERED = "clean line", "quarantined", "read or recovered"
WRONG, TRACEBACK, ACCEPTED, HANG = "wrong line", "traceback", "accepted nonsense", "hang"


def call_outcome(action, expected: str) -> tuple[str, str]:
    """(outcome, text) of an in-process call that should fail with one line containing
    ``expected``."""
    try:
        action()
    except user_error_types() as err:
        text = str(err)
        return (CLEAN if expected in text and "\n" not in text else WRONG), text
    except Exception as err:
        return TRACEBACK, f"{type(err).__name__}: {err}"
    return ACCEPTED, "no error"


def cli_outcome(args: list[str], expected: str, cwd: Path) -> tuple[str, str]:
    """(outcome, stderr) of ``python -m benchmark *args`` that should exit 2 with one line."""
    try:
        result = cli(*args, cwd=cwd)
    except subprocess.TimeoutExpired:
        return HANG, "no answer in 120 s"
    return judge_cli(result.returncode, result.stdout, result.stderr, expected)


def judge_cli(code: int, stdout: str, stderr: str, expected: str) -> tuple[str, str]:
    lines = stderr.strip().splitlines()
    if "Traceback" in stderr or code not in (0, 2):
        return TRACEBACK, stderr
    if code == 0:
        return ACCEPTED, stdout[-500:]
    one = len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    return (CLEAN if one else WRONG), stderr


def refused_before_hydra(args: list[str], monkeypatch, capsys) -> tuple[int, str, str] | None:
    """(exit code, stdout, stderr) of the command's entry point run in this process, when its
    preflight refuses the arguments: the entry point then exits before Hydra starts (no global
    state of Hydra's touched), so the process would do the same, minus its start-up seconds.
    None when the preflight lets them through: those run in a subprocess."""
    import sys

    from benchmark.__main__ import CONF_DIR
    from benchmark.__main__ import cli as entry_point
    from benchmark.config import INVOCATION, register_configs
    from benchmark.run.preflight import preflight

    register_configs()
    if preflight(args, CONF_DIR) is None:
        return None
    monkeypatch.delenv(INVOCATION, raising=False)  # restored after the test
    monkeypatch.setattr(sys, "argv", ["benchmark", *args])
    capsys.readouterr()
    try:
        entry_point()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def judge(record_property, outcome: str, text: str, allowed: str = CLEAN) -> None:
    record_property("bad_input", outcome)
    assert outcome == allowed, text


HAS_CUDA = bool(shutil.which("nvidia-smi"))


def records_under(root: Path) -> list[RunRecord]:
    """Every record under ``root``, each parsed (a half-written one would fail here)."""
    return [load(p) for p in root.rglob(RECORD_FILE)]


# --- the command line: one line on stderr, exit code 2 ------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model.hiden_dim=3"], "unknown config key 'model.hiden_dim'; allowed here: ["),
        (["model=lsmt"], "Could not find 'model/lsmt'; available: ['decision_tree', 'gru', 'hgb'"),
        (["train.epochs=abc"], "bad value for 'train.epochs'"),
        (
            ["model.name=foo"],
            "expected one of [lstm, gru, transformer, multimodal, random, iforest, markov, lof",
        ),
        (["model.name=os.system"], "expected one of [lstm, gru"),  # a registry name, no import
        (["anomaly.mix.clik_flood=1"], "set already here: ['account_takeover', 'brushing'"),
        (["+anomaly.mix.clik_flood=1"], "unknown anomaly type(s) ['clik_flood']; known:"),
        (["anomaly.severity=1.5"], "anomaly.severity=1.5 is outside [0, 1]"),
        (["anomaly.contamination.test=1.0"], "anomaly.contamination.test=1.0 is outside [0, 1)"),
        (["experiment=nope"], "available: ['clean_train', 'default'"),
        (["hydra/launcher=slurmish"], "Could not find 'hydra/launcher/slurmish'"),
        (["dataset.sequence.min_length=40"], "min_length=40 must be between 1 and"),
        (["dataset.generator.n_users=0"], "generator.n_users=0 must be >= 1"),
        (["dataset.generator.personas.browser.focus=2"], "focus=2.0 is a probability"),
        (["dataset=retailrocket"], "RetailRocket events.csv not found at"),
        (["dataset=rees46", "dataset.path=nowhere.csv"], "python -m datasets.fetch rees46"),
        (["resume=maybe"], "'resume': Invalid value 'maybe', expected one of [ok, finished, none]"),
        (["results_dir=README.md"], "cannot write results_dir README.md (File exists)"),
        (["seed=-1"], "seed=-1 is outside [0, 4294967295]"),
        (["seed=1180591620717411303424"], "seed=1180591620717411303424 is outside"),
        (["data_seed=-3"], "data_seed=-3 is outside"),
        (["model=transformer", "model.num_heads=3"], "must be divisible by model.num_heads=3"),
        (["model.num_heads=0"], "model.num_heads=0 must be >= 1"),
        (["evaluation.bootstrap=-5"], "evaluation.bootstrap=-5 must be >= 0"),
        (["objective.top_k=0"], "objective.top_k=0 must be >= 1"),
        (["train.patience=-1"], "train.patience=-1 must be >= 1"),
        (["evaluation.fixed_threshold=nan"], "evaluation.fixed_threshold=nan must be a finite"),
        (["train.grad_clip=-1"], "train.grad_clip=-1.0 must be >= 0"),
        pytest.param(
            ["framework.device=cuda"],
            "framework.device=cuda but PyTorch sees no CUDA device",
            marks=pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA device"),
        ),
        # nothing lands outside results_dir: checked before Hydra writes its own folder
        (["results_dir="], "results_dir is empty: name the folder for results"),
        (["experiment_name=../../x"], "experiment_name='../../x' must be one folder name"),
        (["experiment_name=a/b"], "experiment_name='a/b' must be one folder name"),
        (["-m", "seed=0,1", "experiment_name=.."], "experiment_name='..' must be one folder"),
        # inside a sweep: every swept value is checked before the first job starts
        (["-m", "model=random,markov", "model.hiden_dim=3"], "unknown config key 'model.hid"),
        (
            ["-m", "model=random,lsmt"],
            "Could not find 'model/lsmt'; available: ['decision_tree', 'gru'",
        ),
        (["-m", "seed=0,1", "train.epochs=1,x"], "bad value for 'train.epochs'"),
        (["-m", "seed=0,-1"], "seed=-1 is outside [0, 4294967295]"),
    ],
)
def test_cli_user_errors_are_one_line_with_exit_code_2(
    tmp_path, args, expected, record_property, monkeypatch, capsys
):
    own_results = any(a.startswith("results_dir=") for a in args)
    results = [] if own_results else [f"results_dir={tmp_path}"]
    argv = ["experiment=smoke", *results, *args]
    monkeypatch.chdir(ROOT)
    refused = refused_before_hydra(argv, monkeypatch, capsys)
    if refused is None:
        judge(record_property, *cli_outcome(argv, expected, ROOT))
    else:
        judge(record_property, *judge_cli(*refused, expected))


def test_a_refused_command_line_exits_2_with_one_line_from_a_process_of_its_own(tmp_path):
    """The in-process shortcut above checked against a real process on one refused case."""
    args = ["experiment=smoke", f"results_dir={tmp_path}", "model.hiden_dim=3"]
    outcome, text = cli_outcome(args, "unknown config key 'model.hiden_dim'", ROOT)
    assert outcome == CLEAN, text


# --- config values out of range: ConfigError naming the key --------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.sequence.min_length=0"], "min_length=0"),
        (["dataset.split.train=0.9"], "sum to 1"),
        (["train.epochs=0"], "train.epochs=0 must be >= 1"),
        (["train.batch_size=-4"], "train.batch_size=-4 must be >= 1"),
        (["train.lr=0"], "train.lr=0.0 must be > 0"),
        (["model.dropout=1.0"], "model.dropout=1.0"),
        (["anomaly.severity=-0.5"], "anomaly.severity=-0.5"),
        (["anomaly.contamination.val=1.5"], "anomaly.contamination.val=1.5"),
        (["model=lstm", "framework.lstm_kernel=cudnn"], "framework=jax model=lstm only"),
        (["model=gru", "framework=jax", "framework.lstm_kernel=cudnn"], "model=lstm only"),
        (["timing.batch_sizes=[32,0]"], "timing.batch_sizes[1]=0 must be >= 1"),
        (["timing.latency_batch_sizes=[0]"], "timing.latency_batch_sizes[0]=0 must be >= 1"),
        (["timing.warmup_steps=-5"], "timing.warmup_steps=-5 must be >= 0"),
        (["timing.windows=0"], "timing.windows=0 must be >= 1"),
        (["timing.min_window_s=0"], "timing.min_window_s=0.0 must be > 0 (seconds)"),
        (["dataset.sequence.max_items=0"], "dataset.sequence.max_items=0 must be >= 1 (null"),
        (["dataset.sequence.vocab_min_count=0"], "vocab_min_count=0 must be >= 1"),
        (["dataset.sequence.gap_minutes=-30"], "gap_minutes=-30.0 must be > 0"),
        (["dataset.split.val=-0.1"], "dataset.split.val=-0.1 is outside (0, 1)"),
        (["dataset=rees46", "dataset.max_rows=-5"], "dataset.max_rows=-5 must be >= 1 (null"),
        (["dataset=rees46", "dataset.max_rows=0"], "dataset.max_rows=0 must be >= 1"),
        (["dataset=rees46", "dataset.cache_min_mb=-1"], "dataset.cache_min_mb=-1.0 must be >= 0"),
        (["dataset=rees46", "dataset.path="], "dataset.path is empty: give the rees46 file"),
        (["dataset=rees46", "dataset.path=' '"], "dataset.path is empty"),
        (["model.dropout=nan"], "model.dropout=nan must be a finite number"),
        (["model.embed_dim=0"], "model.embed_dim=0 must be >= 1"),
        (["train.lr=inf"], "train.lr=inf must be a finite number"),
        (["train.lr=nan"], "train.lr=nan must be a finite number"),
        (["train.pretrain_lr=0"], "train.pretrain_lr=0.0 must be > 0"),
        (["train.weight_decay=-1e-4"], "train.weight_decay=-0.0001 must be >= 0"),
        (["threads=-2"], "threads=-2 must be >= 0 (0 chooses for you)"),
        (["evaluation.target_fpr=1.0"], "evaluation.target_fpr=1.0 is outside [0, 1)"),
        (["evaluation.fixed_threshold=-inf"], "fixed_threshold=-inf must be a finite number"),
        (["objective.mask_prob=1.0"], "objective.mask_prob=1.0 is outside (0, 1)"),
        (["pca.components=-1"], "pca.components=-1 must be >= 0 (0: no PCA)"),
        (["framework.scan_unroll=0"], "framework.scan_unroll=0 must be >= 1"),
        (["framework.dense_embedding_grad_rows=-1"], "dense_embedding_grad_rows=-1 must be >= 0"),
        (["anomaly.mix.brushing=nan"], "anomaly.mix weights must be finite and >= 0"),
        (["anomaly.mix.brushing=inf"], "anomaly.mix weights must be finite and >= 0"),
        (["anomaly.severity_jitter=2"], "anomaly.severity_jitter=2.0 is outside [0, 1]"),
    ],
)
def test_out_of_range_values_name_the_key(compose_config, overrides, message, record_property):
    action = lambda: check_config(as_config(compose_config(overrides)))  # noqa: E731
    judge(record_property, *call_outcome(action, message))


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("dataset.sequence.session_by=day", "[session, gap]"),
        ("logger.name=tensorboard", "[wandb_offline, wandb, none]"),
        ("framework.precision=fp8", "[fp32, bf16]"),
        ("framework.lstm_kernel=fused", "[scan, cudnn]"),
        ("framework.compile_mode=fast", "[default, reduce_overhead, max_autotune]"),
        ("evaluation.threshold=median", "[max_f1, fpr, balanced, fixed]"),
        ("pca.statistic=q", "[t2, spe]"),
    ],
)
def test_a_value_outside_its_choices_is_refused_at_composition(override, allowed):
    """Enum-typed fields: OmegaConf refuses the value while composing, and the one line names
    the key and every allowed value."""
    from benchmark.paths import CONF_DIR
    from benchmark.run.preflight import compose_config

    cfg, problem = compose_config(["experiment=smoke", override], str(CONF_DIR))
    key, value = override.split("=")
    assert cfg is None
    assert problem == f"bad value for {key!r}: Invalid value {value!r}, expected one of {allowed}"


# --- data files: the run fails in phase "data" with the file (and line) named ---------------


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


DATA_FILES = {
    "empty": ("", "the file is empty"),
    "header_only": (HEADER + "\n", "the dataset has no events"),
    "binary": (bytes(range(256)) * 64, "the first line is not text"),
    "gzip_not_decompressed": (b"\x1f\x8b\x08\x00" + bytes(500), "not text"),
    "wrong_separator": (HEADER.replace(";", ",") + "\n" + ROW.replace(";", ","), "comma-sep"),
    "missing_column": (HEADER.replace(";eventdate", "") + "\n" + ROW, "missing column(s)"),
    "bad_value": (f"{HEADER}\n{ROW}\n1;NA;abc;5;2016-05-09\n", ":3: column 'item_id'"),
    "not_utf8": (f"{HEADER}\n{ROW}\n".encode() + b"1;NA;\xff\xfe;5;2016-05-09\n", "UTF-8"),
    "wrong_field_count": (f"{HEADER}\n{ROW}\n1;NA;5\n", ":3: expected 5 fields, found 3"),
    "huge_line": (f"{HEADER}\n{ROW}\n1;NA;{'7' * 1_200_000};5;2016-05-09\n", "longer than 1 MiB"),
    "utf16": (f"{HEADER}\n{ROW}\n".encode("utf-16"), "UTF-16 text (it starts with a UTF-16"),
    "negative_id": (f"{HEADER}\n{ROW}\n1;NA;-1;5;2016-05-09\n", ":3: column 'item_id': -1 is"),
    "id_beyond_int64": (f"{HEADER}\n{ROW}\n1;NA;{10**20};5;2016-05-09\n", "64-bit integer range"),
    "session_id_1e20": (f"{HEADER}\n{ROW}\n1e20;NA;5;5;2016-05-09\n", "'1e20' is not an integer"),
    "year_2150": (f"{HEADER}\n{ROW}\n1;NA;5;5;2150-01-01\n", "'2150-01-01' is outside the years"),
    "negative_timeframe": (f"{HEADER}\n{ROW}\n1;NA;5;-9;2016-05-09\n", "'timeframe': -9 is"),
}


@pytest.mark.parametrize("case", sorted(DATA_FILES))
def test_a_bad_data_file_fails_the_run_in_one_line_with_the_file_named(
    compose_config, tmp_path, case, record_property
):
    content, message = DATA_FILES[case]
    path = write(tmp_path / f"{case}.csv", content)
    cfg = compose_config(
        [*DIGINETICA, f"dataset.path={path}", f"results_dir={tmp_path / 'results'}"]
    )
    judge(record_property, *call_outcome(lambda: run(cfg), message))
    (record,) = records_under(tmp_path / "results")
    assert (record.status, record.failed_phase) == ("failed", "data")


def test_a_bad_row_can_be_quarantined_instead(compose_config, tmp_path):
    lines = SAMPLE.read_text().splitlines()
    lines.insert(2, "1;NA;abc;5;2016-05-09")
    path = write(tmp_path / "rows.csv", "\n".join(lines) + "\n")
    cfg = compose_config(
        [*DIGINETICA, f"dataset.path={path}", "dataset.strict=false", f"results_dir={tmp_path}"]
    )
    source = run(cfg).record.data["source"]
    assert source["quarantined"] == {"bad_value": 1}
    assert ":3: column 'item_id'" in source["examples"][0]


def fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "pipe.csv")
    return tmp_path / "pipe.csv"


def link_loop(tmp_path: Path) -> Path:
    os.symlink(tmp_path / "b.csv", tmp_path / "a.csv")
    os.symlink(tmp_path / "a.csv", tmp_path / "b.csv")
    return tmp_path / "a.csv"


def dangling_link(tmp_path: Path) -> Path:
    os.symlink(tmp_path / "moved-away.csv", tmp_path / "link.csv")
    return tmp_path / "link.csv"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (fifo, "a named pipe (FIFO), not a file"),
        (link_loop, "a loop of symbolic links; point dataset.path at the real file"),
        (dangling_link, "moved-away.csv, which does not exist; fix or remove the link"),
    ],
)
def test_a_data_path_that_is_no_file_says_what_it_is(
    compose_config, tmp_path, make, message, record_property
):
    path = make(tmp_path)
    cfg = compose_config([*DIGINETICA, f"dataset.path={path}", f"results_dir={tmp_path / 'r'}"])
    judge(record_property, *call_outcome(lambda: run(cfg), message))


@pytest.mark.parametrize("where", ["missing.csv", "a_directory"])
def test_a_missing_data_path_names_the_download(compose_config, tmp_path, where):
    (tmp_path / "a_directory").mkdir()
    cfg = compose_config(
        [*DIGINETICA, f"dataset.path={tmp_path / where}", f"results_dir={tmp_path}"]
    )
    with pytest.raises(user_error_types(), match=r"python -m datasets\.fetch diginetica") as caught:
        run(cfg)
    one_line(caught.value)


# --- data values the readers refuse, in any format, strict or quarantined ----------------

REES46 = ROOT / "datasets/samples/rees46/2019-Oct_head_sessions.csv"


def rees46_with_prices(tmp_path: Path, *prices: str) -> Path:
    """The REES46 sample with its first rows' prices replaced (lines 2, 3, ...)."""
    lines = REES46.read_text().splitlines()
    for n, price in enumerate(prices, start=1):
        fields = lines[n].split(",")
        fields[6] = price
        lines[n] = ",".join(fields)
    return write(tmp_path / "2019-Oct.csv", "\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("price", "message"),
    [
        ("nan", "column 'price': nan is outside [0, 1e+09] (a number must be finite)"),
        ("inf", "column 'price': inf is outside [0, 1e+09] (a number must be finite)"),
        ("-5", "column 'price': -5 is outside [0, 1e+09]"),
        ("1e300", "column 'price': 1e+300 is outside [0, 1e+09]"),
    ],
)
def test_a_price_outside_its_range_is_named_with_its_line(
    tmp_path, price, message, record_property
):
    path = rees46_with_prices(tmp_path, price)
    action = lambda: LOADERS["rees46"](path, LoadOptions())  # noqa: E731
    outcome, text = call_outcome(action, f"{path}:2: {message}")
    judge(record_property, outcome, text)
    assert "dataset.strict=false" in text


def test_bad_prices_are_quarantined_with_counts_and_lines(tmp_path, record_property):
    path = rees46_with_prices(tmp_path, "nan", "-5", "1e300", "", "19.99")
    source = LOADERS["rees46"](path, LoadOptions(strict=False)).source
    assert source["quarantined"] == {"out_of_range": 3}
    assert [e.split(": ", 1)[0] for e in source["examples"]] == [f"{path}:{n}" for n in (2, 3, 4)]
    assert source["rows_read"] == len(REES46.read_text().splitlines()) - 1 - 3
    judge(record_property, QUARANTINED, "", QUARANTINED)


@pytest.mark.parametrize(
    ("loader", "text", "message"),
    [
        (
            "otto",
            '{"session":1,"events":[{"aid":-3,"ts":1659304800,"type":"clicks"}]}',
            "aid -3 is",
        ),
        ("otto", f'{{"session":1,"events":[{{"aid":{2**64},"ts":1,"type":"clicks"}}]}}', "int64"),
        ("jd_micro", f"{2**64}+5+672+2+74 2024535+7+672+294+74", "token 1"),
        ("jd_micro", "2024535+5+-672+2+74", "token 1"),
    ],
)
def test_ids_out_of_range_in_other_formats_are_named(
    tmp_path, loader, text, message, record_property
):
    path = write(tmp_path / ("data.jsonl" if loader == "otto" else "data.txt"), text + "\n")
    action = lambda: LOADERS[loader](path, LoadOptions())  # noqa: E731
    judge(record_property, *call_outcome(action, f"{path}:1: "))
    with pytest.raises(user_error_types(), match=re.escape(message)):
        action()


@pytest.mark.parametrize("loader", ["diginetica", "otto"])
def test_a_utf8_byte_order_mark_is_read_as_excel_writes_it(tmp_path, loader, record_property):
    sample = SAMPLE if loader == "diginetica" else ROOT / "datasets/samples/otto"
    source = sample if sample.is_file() else next(sample.glob("*.jsonl"))
    (tmp_path / "marked").mkdir()
    (tmp_path / "plain").mkdir()
    marked = write(tmp_path / "marked" / source.name, codecs.BOM_UTF8 + source.read_bytes())
    alone = write(tmp_path / "plain" / source.name, source.read_bytes())  # no side files either
    for strict in (True, False):  # the fast reader, and the exact one (which names lines)
        plain = LOADERS[loader](alone, LoadOptions(strict=strict)).events
        read = LOADERS[loader](marked, LoadOptions(strict=strict)).events
        assert len(read) == len(plain) > 0
        assert all(
            np.array_equal(a, b, equal_nan=True)
            for a, b in zip(read.columns().values(), plain.columns().values(), strict=True)
        )
    judge(record_property, RECOVERED, "", RECOVERED)


def test_a_damaged_dataset_cache_is_rebuilt_not_fatal(tmp_path, caplog, record_property):
    from datasets.cache import cached_load

    def load(cache):
        return cached_load("rees46", REES46, LoadOptions(), LOADERS["rees46"], cache, 0)

    first = load(tmp_path)
    (cached,) = tmp_path.glob("rees46-*.npz")
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])  # a truncated copy
    again = load(tmp_path)
    assert again.source["cache"]["status"] == "stored"
    assert "unreadable" in caplog.text
    assert "rebuilding it" in caplog.text
    assert np.array_equal(again.events.item_id, first.events.item_id)
    assert load(tmp_path).source["cache"]["status"] == "hit"
    assert not list(tmp_path.glob(".*")), "a temporary cache file left behind"
    judge(record_property, RECOVERED, "", RECOVERED)


def test_hydras_folder_that_cannot_be_made_is_one_line(tmp_path, record_property):
    write(tmp_path / ".hydra", "a file where Hydra's folder goes")
    args = ["experiment=smoke", "model=random", f"results_dir={tmp_path}"]
    judge(record_property, *cli_outcome(args, "cannot write Hydra's folder", ROOT))


def test_a_full_disk_is_one_line_before_anything_runs(tmp_path, monkeypatch, record_property):
    from benchmark.run import preflight

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(preflight.os, "fsync", full)
    problem = preflight.unwritable(str(tmp_path / "results"))
    assert problem is not None
    outcome = CLEAN if "No space left on device): free disk space" in problem else WRONG
    judge(record_property, outcome, problem)
    assert not [p for p in (tmp_path / "results").rglob("*") if p.is_file()]


# --- the results directory: unwritable, disk full, interrupted writes -----------------------


@pytest.fixture
def smoke(compose_config, tmp_path):
    def _smoke(*overrides: str):
        return compose_config(
            ["experiment=smoke", "model=random", f"results_dir={tmp_path}", *overrides]
        )

    return _smoke


def test_a_results_dir_that_is_a_file_is_one_line(compose_config, tmp_path):
    blocker = write(tmp_path / "results", "not a directory")
    cfg = compose_config(["experiment=smoke", "model=random", f"results_dir={blocker}"])
    with pytest.raises(ResultsWriteError, match="make results_dir writable") as caught:
        run(cfg)
    one_line(caught.value)
    assert blocker.read_text() == "not a directory"


def fail_fsync_after(monkeypatch, ok_calls: int) -> None:
    """Disk full: every fsync after the first ``ok_calls`` fails with ENOSPC."""
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > ok_calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)


def test_disk_full_before_a_rerun_keeps_the_earlier_record(smoke, tmp_path, monkeypatch):
    first = run(smoke())
    before = (first.run_dir / RECORD_FILE).read_text()
    fail_fsync_after(monkeypatch, 0)
    with pytest.raises(ResultsWriteError, match="No space left on device") as caught:
        run(smoke("resume=none"))
    one_line(caught.value)
    assert (first.run_dir / RECORD_FILE).read_text() == before
    assert not list(first.run_dir.glob(".*")), "no temporary file left"


def test_disk_full_mid_run_leaves_a_valid_unfinished_record_that_resumes(
    smoke, tmp_path, monkeypatch
):
    fail_fsync_after(monkeypatch, 2)  # config.yaml and the running record get written
    with pytest.raises(ResultsWriteError):
        run(smoke())
    (record,) = records_under(tmp_path)
    assert record.status == "running"
    monkeypatch.undo()
    resumed = run(smoke())
    assert resumed.decision.action == "rerun"
    assert "unfinished" in resumed.decision.reason
    assert [r.status for r in records_under(tmp_path)] == ["ok"]


def half_write(target: Path) -> None:
    with atomic.atomic_path(target) as tmp:
        tmp.write_text('{"status": "runn')
        raise KeyboardInterrupt  # Ctrl-C (or any error) halfway through the write


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write(tmp_path / "record.json", '{"status": "ok"}')
    with pytest.raises(KeyboardInterrupt):
        half_write(target)
    assert target.read_text() == '{"status": "ok"}'
    assert list(tmp_path.iterdir()) == [target]
    write_atomic(target, '{"status": "failed"}')
    assert json.loads(target.read_text()) == {"status": "failed"}


def test_an_unusable_results_store_is_a_warning_and_the_record_stays(smoke, tmp_path, caplog):
    write(tmp_path / STORE_FILE, b"this is not an SQLite database" * 100)
    result = run(smoke())
    assert result.status == "ok"
    assert json.loads((result.run_dir / RECORD_FILE).read_text())["status"] == "ok"
    assert "results store" in caplog.text
    assert "python -m benchmark.records.store" in caplog.text


def test_an_unreadable_record_is_quarantined_and_the_config_reruns(smoke, tmp_path):
    first = run(smoke())
    write(first.run_dir / RECORD_FILE, "{not json")
    again = run(smoke())
    assert again.status == "ok"
    assert "unreadable" in again.decision.reason
    assert [p.read_text() for p in first.run_dir.glob(f"{RECORD_FILE}.corrupt-*")] == ["{not json"]


# --- checkpoints: never unpickled, one line when wrong --------------------------------------


class LeavesAMark:
    """Unpickling this writes a file: proof that a loader executed code from the file."""

    def __init__(self, mark: Path) -> None:
        self.mark = mark

    def __reduce__(self):
        return (Path.write_text, (self.mark, "code ran"))


def checkpoint_case(tmp_path: Path, case: str) -> Path:
    path = tmp_path / "checkpoint.safetensors"
    if case == "pickle":
        path.write_bytes(pickle.dumps(LeavesAMark(tmp_path / "MARK")))
    elif case == "garbage":
        path.write_bytes(b"\x00\x01 not a safetensors file")
    elif case == "truncated":
        import numpy as np
        from safetensors.numpy import save_file

        save_file({"w": np.ones((64, 64), np.float32)}, str(path), metadata={"model": "lstm"})
        path.write_bytes(path.read_bytes()[:200])
    return path  # "missing": never written


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "pickle"])
def test_a_bad_checkpoint_is_refused_in_one_line_without_running_its_code(
    compose_config, tmp_path, case
):
    path = checkpoint_case(tmp_path, case)
    cfg = compose_config(
        ["experiment=smoke", "model=lstm", f"checkpoint={path}", f"results_dir={tmp_path}"]
    )
    with pytest.raises(user_error_types(), match="checkpoint") as caught:
        run(cfg)
    one_line(caught.value)
    assert not (tmp_path / "MARK").exists()
    (record,) = records_under(tmp_path)
    assert (record.status, record.failed_phase) == ("failed", "train")


# --- nothing in the project loads a file in a way that can run code ----------------------


def unsafe_loads(source: str) -> list[str]:
    """Calls that can execute code from a file: pickle, ``torch.load`` without
    ``weights_only=True``, ``np.load`` without ``allow_pickle=False``, eval/exec, Hydra's
    ``instantiate`` (an import path from a config)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func, kwargs = node.func, {k.arg: k.value for k in node.keywords}
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
        flag = {"np": "allow_pickle", "numpy": "allow_pickle", "torch": "weights_only"}
        safe_value = {"allow_pickle": False, "weights_only": True}
        if owner in ("pickle", "cloudpickle", "dill", "joblib") and name in ("load", "loads"):
            found.append(f"{owner}.{name}")
        elif name == "load" and owner in flag:
            value = kwargs.get(flag[owner])
            if not (isinstance(value, ast.Constant) and value.value is safe_value[flag[owner]]):
                found.append(f"{owner}.load without {flag[owner]}={safe_value[flag[owner]]}")
        elif isinstance(func, ast.Name) and name in ("eval", "exec", "instantiate"):
            found.append(name)
    return found


def test_unsafe_loads_are_recognised():
    assert unsafe_loads("np.load(p)") == ["np.load without allow_pickle=False"]
    assert unsafe_loads("torch.load(p, weights_only=False)") == [
        "torch.load without weights_only=True"
    ]
    assert unsafe_loads("pickle.loads(b); eval(s)") == ["pickle.loads", "eval"]
    assert unsafe_loads("np.load(p, allow_pickle=False); model.eval()") == []


# The one reader of pickles: the data stage's transport to and from its own worker processes,
# through files they write in the stage's private temporary folder (as multiprocessing pipes
# would carry them), never a user's file or a download.
PRIVATE_TRANSPORT = {"benchmark/run/workers.py": ["pickle.loads", "pickle.loads"]}


def test_no_project_code_loads_files_unsafely():
    packages = ("benchmark", "datasets", "models_common", "models_torch", "models_jax")
    offenders = {
        str(path.relative_to(ROOT)): found
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
        if (found := unsafe_loads(path.read_text()))
    }
    assert offenders == PRIVATE_TRANSPORT
